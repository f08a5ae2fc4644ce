"""UNet evidence: embedding-free block signatures, unit descriptors and raw-weight sketches of a
diffusers ``UNet2DConditionModel`` (roles: ``indexer.adapters.unet``), and the relatedness test.

**Why not the LM fingerprint.**  A UNet has no vocabulary (no probe tokens) and no single hidden
size: each resolution level has its own width.  What carries lineage is:

1. **The transformer blocks** (``BasicTransformerBlock``: self-attention, cross-attention, GEGLU
   feed-forward), read as the LM machinery reads a block: the self-attention q, k, v rows with
   ``norm1``'s gain folded in, the GEGLU gate rows (read rows) and value rows (up rows) with
   ``norm3``'s gain folded in, and the ``ff.net.2`` columns (down).  LayerNorm removes the mean of
   the channels, so every reader row is also centred (projected off the all-ones direction the
   block never sees).  ``indexer.block_signatures`` then gives each block a signature and two
   unit descriptions (read side, write side) that channel permutations of the block's stream,
   head and GEGLU-unit permutations, per-head maps and gain rescaling leave unchanged - without
   any probe input, so nothing depends on image or text inputs.
2. **Raw-weight sketches** of every tensor (convolutions included, MoTHer's evidence on SD): the
   first :data:`SKETCH_ROWS` output rows of each tensor (whole for 1-D tensors and small ones),
   one contiguous read each.  A fine-tune, a LoRA merge or a soup stays in its parent's
   coordinates, so sketch distances place models within a family; they are never used to decide
   relatedness (a permuted copy would look unrelated).

**The relatedness test** (:func:`unet_test`), per pair of blocks at the same position with the
same shape, two statistics of Zhu et al. (``indexer.independence.statistics``):

- constrained φ_U: A's GEGLU units matched to B's by the cosine of their raw (gate | value |
  down) weights, Spearman ρ of the matching against the identity.  H0: θ_A ⊥ θ_B and A's
  initialisation exchangeable over GEGLU units (i.i.d. initialisation, permutation-equivariant
  training) - the matching is then a uniform random permutation whatever B is: an exact null.
  A function-preserving permutation of B's units or channels removes its power, never its level;
- embedding-free φ_BLOCK: the agreement of two invariant matchings (read-side and write-side
  descriptors), robust to those transforms; approximate null (``NULL_BLOCK``).

The model's log10 p is the Bonferroni minimum over every block statistic (valid whatever the
dependence between blocks).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from pedigree.indexer.adapters.unet import UNetBlock, UNetRoles, unet_roles
from pedigree.indexer.block_signatures import (
    MAX_UNITS,
    BlockRows,
    block_signature,
    matching_descriptors,
)
from pedigree.indexer.independence.logp import log10_bonferroni_min
from pedigree.indexer.independence.matching import match
from pedigree.indexer.independence.statistics import NULL_BLOCK, against_identity, block_units_stat
from pedigree.indexer.sources import TensorSource

RECIPE = "unet1"
SKETCH_ROWS = 16  # output rows of every tensor kept in the raw-weight sketch
NULL_CONSTRAINED_UNET = (
    "θ_A ⊥ θ_B with A's initialisation exchangeable over GEGLU units "
    "(the unit matching is a uniform random permutation): exact"
)


def unet_version() -> str:
    """Names the recipe and the sketch: a change re-indexes every UNet."""
    return f"{RECIPE}-r{SKETCH_ROWS}-u{MAX_UNITS}"


def _centred(rows: torch.Tensor) -> torch.Tensor:
    """Rows projected off the all-ones direction (LayerNorm centres its input)."""
    return rows - rows.mean(dim=1, keepdim=True)


def block_rows(source: TensorSource, block: UNetBlock, units: int | None = MAX_UNITS) -> BlockRows:
    """One transformer block's canonical rows (float64, gains folded, centred): self-attention
    q, k, v; the first ``units`` GEGLU gate (read) and value (up) rows and down columns."""
    n = block.units if units is None else min(units, block.units)
    g1 = source.read(block.norms[0]).double()
    g3 = source.read(block.norms[2]).double()
    attn = block.self_attn

    def reader(name: str, gain: torch.Tensor) -> torch.Tensor:
        return _centred(source.read(name).double() * gain)

    gate = source.read_rows(block.ff_in, block.units, block.units + n).double()  # two contiguous reads
    value = source.read_rows(block.ff_in, 0, n).double()
    return BlockRows(
        q=reader(attn.q, g1),
        k=reader(attn.k, g1),
        v=reader(attn.v, g1),
        head_dim=block.head_dim,
        read=_centred(gate * g3),
        up=_centred(value * g3),
        down_t=source.read(block.ff_out).double()[:, :n].t().contiguous(),
    )


def sketch_rows(source: TensorSource, name: str) -> torch.Tensor:
    """The first :data:`SKETCH_ROWS` output rows of a tensor, [rows, rest] (float32; a 1-D
    tensor is one row)."""
    info = source.info(name)
    if len(info.shape) <= 1:
        return source.read(name).float().reshape(1, -1)
    if info.shape[0] <= SKETCH_ROWS:
        return source.read(name).float().reshape(info.shape[0], -1)
    return source.read_rows(name, 0, SKETCH_ROWS).float().reshape(SKETCH_ROWS, -1)


@dataclass
class BlockEvidence:
    """What the test and the signatures use of one transformer block."""

    shape: tuple[int, int, int]  # (width, heads, units)
    signature: np.ndarray  # [SIGNATURE_DIM], unit length
    read: np.ndarray  # [n, F] read-side unit descriptors
    write: np.ndarray  # [n, F'] write-side unit descriptors
    raw: torch.Tensor  # [n, 3·width] raw (gate | value | down) unit weights, float32


@dataclass
class UNetEvidence:
    """One UNet's evidence: its blocks and its raw-weight sketch (tensor name -> rows)."""

    label: str
    roles: UNetRoles
    blocks: list[BlockEvidence]
    sketch: dict[str, torch.Tensor] = field(default_factory=dict)  # [rows, rest] per tensor

    @property
    def signatures(self) -> np.ndarray:
        return np.stack([b.signature for b in self.blocks]) if self.blocks else np.zeros((0, 0), np.float32)


def block_evidence(rows: BlockRows, shape: tuple[int, int, int]) -> BlockEvidence:
    with torch.no_grad():
        read, write = matching_descriptors(rows)
        raw_rows = torch.cat([rows.read, rows.up if rows.up is not None else rows.read, rows.down_t], dim=1)
        return BlockEvidence(
            shape=shape,
            signature=block_signature(rows),
            read=read.numpy(),
            write=write.numpy(),
            raw=raw_rows.float(),
        )


def unet_evidence(source: TensorSource, label: str) -> UNetEvidence:
    """Roles, per-block evidence and the raw-weight sketch of a UNet checkpoint."""
    roles = unet_roles(source.read_json("config.json"), source.tensors())
    blocks = [block_evidence(block_rows(source, b), (b.width, b.heads, b.units)) for b in roles.blocks]
    sketch = {name: sketch_rows(source, name) for name in sorted(roles.roles)}
    return UNetEvidence(label, roles, blocks, sketch)


def signature_similarity(a: UNetEvidence, b: UNetEvidence) -> float:
    """Mean cosine of the block signatures at the same positions (0 when no block shape matches)."""
    pairs = [(x, y) for x, y in zip(a.blocks, b.blocks) if x.shape == y.shape]
    if not pairs:
        return 0.0
    return float(np.mean([float(x.signature @ y.signature) for x, y in pairs]))


def unet_test(a: UNetEvidence, b: UNetEvidence) -> dict[str, Any]:
    """The relatedness test of two UNets (module docstring): per block pair at the same position
    and shape, constrained φ_U (exact null) and φ_BLOCK (approximate null); combined log10 p is
    the Bonferroni minimum (0 when no block pair is comparable)."""
    stats = []
    for i, (x, y) in enumerate(zip(a.blocks, b.blocks)):
        if x.shape != y.shape:
            continue
        constrained = against_identity(match(x.raw, y.raw), layers=(i, i))
        robust = block_units_stat((x.read, x.write), (y.read, y.write), layers=(i, i))
        stats.append({"test": "unet_constrained", "null": NULL_CONSTRAINED_UNET, **constrained.as_json()})
        stats.append({"test": "unet_block", "null": NULL_BLOCK, **robust.as_json()})
    log10_p = log10_bonferroni_min([s["log10_p"] for s in stats]) if stats else 0.0
    return {
        "log10_p": round(float(log10_p), 4),
        "blocks_compared": len(stats) // 2,
        "signature_cosine": round(signature_similarity(a, b), 4),
        "tests": stats,
    }
