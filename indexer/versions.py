"""Recipe versions of what the index stores, computable without torch.

A data folder's vectors are stored under the fingerprint version (:func:`fingerprint_version`):
any change to the recipe, its dimension, its sample or its probe list re-indexes every model.
Every command that answers from the index needs that string - ``query``, ``compare`` of a tested
pair, ``models`` - but none of them needs torch, whose import alone takes seconds.  So the
constants the version names live here, in a module that imports neither torch nor scipy, and
``indexer.sampling``, ``indexer.fingerprint`` and ``indexer.block_signatures`` take theirs from it.
"""

from __future__ import annotations

from dataclasses import dataclass

from pedigree.indexer.probes import probe_list_digest
from pedigree.indexer.unit_selection import WIDE_FIRST_UNITS

# --- the fingerprint's sample of each block (``indexer.sampling``)
ATTENTION_ROWS = 64
MLP_UNITS = 128

# --- the token-space fingerprint (``indexer.fingerprint``)
FINGERPRINT_RECIPE = "tsi3"  # token-space invariants, recipe 3 (sampled rows, bfloat16 products, 1024-key probe prefix)
DEFAULT_DIM = 512
FINGERPRINT_PROBES = 1024  # the fingerprint uses the probes among the first 1024 keys of the global list

# --- the embedding-free block signatures (``indexer.block_signatures``)
SIGNATURE_RECIPE = "bsig1"
SIGNATURE_DIM = 512
SIGNATURE_ATTENTION_ROWS = 64  # query rows of the sampled heads (whole GQA groups, at least one)
SIGNATURE_UNITS = 256  # MLP units described by the signature (and the Gram sample G of the test)
TAIL_BETA = 4.0  # softmax sharpness over z-scored descriptors: weight on the few most extreme units


@dataclass(frozen=True)
class SampleSize:
    """How much of each block the fingerprint reads (part of the fingerprint version)."""

    attention_rows: int = ATTENTION_ROWS
    mlp_units: int = MLP_UNITS

    @property
    def tag(self) -> str:
        return f"a{self.attention_rows}u{self.mlp_units}"


DEFAULT_SAMPLE = SampleSize()


def projection_seed() -> str:
    """Seeds the block signatures' fixed projection (unchanged since bsig1, so signatures of
    blocks read alike stay equal)."""
    return f"{SIGNATURE_RECIPE}-d{SIGNATURE_DIM}-a{SIGNATURE_ATTENTION_ROWS}u{SIGNATURE_UNITS}b{TAIL_BETA:g}"


def block_signature_version() -> str:
    """Names the signature recipe, dimension and sample.  ``w``: a wide gated MLP is described by
    its first ``WIDE_FIRST_UNITS`` units (``indexer.unit_selection``)."""
    return f"{projection_seed()}w{WIDE_FIRST_UNITS}"


def sketch_version(dim: int, sample: SampleSize) -> str:
    """The token-space recipe, dimension, sample size and probe list (it also seeds the sketches)."""
    return f"{FINGERPRINT_RECIPE}-d{dim}-{sample.tag}-n{FINGERPRINT_PROBES}-p{probe_list_digest()}"


def fingerprint_version(dim: int = DEFAULT_DIM, sample: SampleSize = DEFAULT_SAMPLE) -> str:
    """Names the recipe, dimension, sample size and probe list, and the recipe of the block
    signatures stored with the fingerprint: any change re-indexes every model."""
    return f"{sketch_version(dim, sample)}+{block_signature_version()}"
