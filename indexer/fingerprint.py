"""Token-space invariant fingerprints (HuRef's invariant terms, fixed as the reference notes say).

With X̂ the normalised input-embedding rows of the probe tokens (``indexer.probes``) and each
block's canonical matrices (``indexer.canonical``; x is a row vector, W is [out, in]):

    QK term   M_qk  = (X̂ W_qᵀ)(X̂ W_kᵀ)ᵀ  = X̂ W_qᵀ W_k X̂ᵀ    content part of the attention logits
    OV term   M_ov  = (X̂ W_vᵀ)(X̂ W_o)ᵀ   = X̂ W_vᵀ W_oᵀ X̂ᵀ   what token i writes, read along token j
    MLP term  M_mlp = (X̂ W_upᵀ)(X̂ W_down)ᵀ                    the *ungated* up/down product

Every attacker matrix meets its inverse inside these products: residual permutation or (RMSNorm
models) rotation R rotates X̂ and every matrix (X̂R RᵀWᵀ ...), per-head maps C cancel in
W_qᵀW_k = Σ_h W_q,hᵀ W_k,h and W_vᵀW_oᵀ, MLP unit permutation and per-unit rescaling (up × s,
down ÷ s) cancel in W_upᵀ ∘ W_down, and folded norm gains make gain rescaling invisible.  HuRef's
gated M_f = X̂ (W_gate ⊙ W_up) W_down X̂ᵀ is *not* rotation-invariant, hence the ungated form.
Unlike HuRef (last two layers) every block is fingerprinted, so pruned, depth-changed and spliced
models can be matched layer by layer.

Each n x n term is z-scored over its off-diagonal entries and compressed by a seeded rank-one
Gaussian sketch (``indexer.sketch``) to D numbers; a block's vector is the normalised sum of its
three unit-normalised term sketches (cosine ≈ mean of the three term correlations, HuRef's ICS).
The model vector is the normalised sum of the block vectors.  Two more vectors describe the
embedding (M_emb = X̂ X̂ᵀ) and the output head (M_head = X̂ Ôᵀ with the final gain folded).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from indexer.adapters.base import MatrixLoader, ModelRoles, layer_tensor_names
from indexer.canonical import CanonicalLayer, canonical_layer, head_rows, probe_rows
from indexer.probes import MIN_PROBES, ProbeSelection, probe_keys, probe_list_digest
from indexer.sketch import offdiagonal_zscore, sketch, unit
from pedigree.errors import CheckpointError

RECIPE = "tsi1"  # token-space invariants, recipe 1
DEFAULT_DIM = 512
TERMS = ("qk", "ov", "mlp")


def fingerprint_version(dim: int = DEFAULT_DIM) -> str:
    """Names the recipe, dimension and probe list: any change re-indexes every model."""
    return f"{RECIPE}-d{dim}-p{probe_list_digest()}"


@dataclass(frozen=True)
class Fingerprint:
    """Unit vectors of one model: per block, for the whole model, the embedding and the head."""

    version: str
    model: torch.Tensor  # [D]
    layers: torch.Tensor  # [L, D]
    embedding: torch.Tensor  # [D]
    head: torch.Tensor | None  # [D], None for encoders without an LM head
    probe_count: int

    @property
    def dim(self) -> int:
        return int(self.model.shape[0])


def _term_matrix(left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
    """M = left rightᵀ (n x n) from the two n x r factors of a token-space term."""
    return left @ right.t()


def layer_terms(x: torch.Tensor, layer: CanonicalLayer) -> dict[str, torch.Tensor]:
    """The three n x n token-space matrices of one block (see the module docstring)."""
    return {
        "qk": _term_matrix(x @ layer.q.t(), x @ layer.k.t()),
        "ov": _term_matrix(x @ layer.v.t(), x @ layer.o),
        "mlp": _term_matrix(x @ layer.up.t(), x @ layer.down),
    }


class _Sketcher:
    def __init__(self, probes: ProbeSelection, dim: int, version: str) -> None:
        self.positions = torch.from_numpy(probes.positions)
        self.universe = len(probe_keys())
        self.dim = dim
        self.version = version

    def __call__(self, matrix: torch.Tensor, term: str) -> torch.Tensor:
        z = offdiagonal_zscore(matrix)
        return unit(sketch(z, self.positions, f"{self.version}/{term}", self.universe, self.dim))


def compute_fingerprint(
    loader: MatrixLoader,
    roles: ModelRoles,
    probes: ProbeSelection,
    *,
    dim: int = DEFAULT_DIM,
    progress: Callable[[int, int], None] | None = None,
    on_layer: Callable[[CanonicalLayer], None] | None = None,
) -> Fingerprint:
    """Fingerprint one checkpoint.  ``progress(done, total)`` is called after each block and
    ``on_layer(layer)`` with each block's canonical matrices (to compute more from one read)."""
    if len(probes) < MIN_PROBES:
        raise CheckpointError(f"only {len(probes)} probe tokens found in the vocabulary (need {MIN_PROBES})")
    version = fingerprint_version(dim)
    sketcher = _Sketcher(probes, dim, version)
    token_ids = torch.from_numpy(probes.token_ids)
    with torch.no_grad():
        x = probe_rows(loader, roles, token_ids)
        layer_vectors = []
        for done, layer_roles in enumerate(roles.layers, start=1):
            loader.source.prefetch(layer_tensor_names(layer_roles))  # one coalesced request per block over HTTP
            layer = canonical_layer(loader, roles, layer_roles)
            if on_layer is not None:
                on_layer(layer)
            terms = layer_terms(x, layer)
            layer_vectors.append(unit(sum(sketcher(terms[name], name) for name in TERMS)))
            if progress is not None:
                progress(done, len(roles.layers))
        layers = torch.stack(layer_vectors) if layer_vectors else torch.zeros(0, dim)
        embedding = sketcher(_term_matrix(x, x), "embedding")
        head_matrix = head_rows(loader, roles, token_ids)
        head = sketcher(_term_matrix(x, head_matrix), "head") if head_matrix is not None else None
        model = unit(layers.sum(dim=0)) if len(layer_vectors) else embedding
    return Fingerprint(version, model, layers, embedding, head, len(probes))
