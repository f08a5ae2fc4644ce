"""Canonical forms: fold away the function-preserving freedoms before anything is compared.

Row-vector convention below (x is a row; PyTorch stores W as [out, in] so ``x @ W.T``).

1. **Norm gains are folded** into every matrix that reads the normalised stream:
   ``W_q <- W_q diag(g)`` (likewise k, v, gate, up; the head reads the final norm).  A model whose
   gains were rescaled (g -> c*g, W -> W/c) or folded (g -> 1, W -> W diag(g)) then has the same
   canonical matrices.  Biases are ignored.
2. **Grouped-query attention is expanded**: query head i uses key/value head ``i // (H / H_kv)``
   (transformers' ``repeat_kv``), so ``W_q^T W_k`` below is the true bilinear form of attention.
3. **Probe rows are normalised** the way the network's first norm would (``x / rms(x)`` for
   RMSNorm models, ``(x - mean) / std`` for LayerNorm models), removing per-token scale.

What stays is invariant under residual-stream permutation and, for RMSNorm models, orthogonal
rotation of the residual stream (every canonical matrix and the probe rows rotate together), hidden
unit permutation/rescaling inside MLPs and head permutation / per-head invertible maps inside
attention (these cancel in the products formed by ``indexer.fingerprint``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from pedigree.indexer.adapters.base import (
    PIXEL_PROBES,
    LayerRoles,
    MatrixLoader,
    MatrixRef,
    ModelRoles,
    NormRef,
)
from pedigree.indexer.sampling import BlockSample


def normalize_rows(x: torch.Tensor, norm_kind: str) -> torch.Tensor:
    """RMSNorm: x / rms(x).  LayerNorm: (x - mean(x)) / std(x).  Gains are not applied here."""
    x = x.float()
    if norm_kind == "layer":
        x = x - x.mean(dim=-1, keepdim=True, dtype=torch.float64).float()
    rms = torch.sqrt((x * x).mean(dim=-1, keepdim=True, dtype=torch.float64))
    return x / torch.clamp(rms, min=1e-30).float()


def _expand_heads(matrix: torch.Tensor, kv_heads: int, heads: int, head_dim: int) -> torch.Tensor:
    """[kv_heads*hd, h] -> [heads*hd, h], repeating each kv head for the query heads it serves."""
    if kv_heads == heads:
        return matrix
    if heads % kv_heads:
        raise ValueError(f"{heads} query heads are not a multiple of {kv_heads} key/value heads")
    blocks = matrix.reshape(kv_heads, head_dim, -1)
    return blocks.repeat_interleave(heads // kv_heads, dim=0).reshape(heads * head_dim, -1)


def _scale_head_rows(matrix: torch.Tensor, gain: torch.Tensor, head_dim: int) -> torch.Tensor:
    """Per-head norm gain (Qwen3 q_norm/k_norm) applied to every head's rows."""
    return (matrix.reshape(-1, head_dim, matrix.shape[-1]) * gain[None, :, None]).reshape(matrix.shape)


@dataclass(frozen=True)
class CanonicalLayer:
    """The sampled rows of one block in canonical form ([rows, hidden], gains folded, kv
    expanded): query rows of the sampled heads and key rows of the kv heads serving them (one
    row per query row), up and gate rows of the sampled MLP units (``indexer.sampling``)."""

    index: int
    q: torch.Tensor  # [q_heads*hd, hidden]
    k: torch.Tensor  # [q_heads*hd, hidden]
    up: torch.Tensor  # [units, hidden]
    gate: torch.Tensor | None  # [units, hidden]; None for ungated MLPs


def canonical_layer(
    loader: MatrixLoader, roles: ModelRoles, layer: LayerRoles, sample: BlockSample | None = None
) -> CanonicalLayer:
    """Read one block's sampled rows (all of them when ``sample`` is None) and fold its gains
    (step 1) and expand its kv heads (step 2)."""
    if sample is None:
        sample = BlockSample(layer.num_kv_heads, layer.num_heads, layer.mlp_size, layer.head_dim)
    hidden = roles.hidden_size
    attn_gain = loader.gain(layer.attn_norm, hidden)
    q = loader.matrix_rows(layer.q, 0, sample.q_rows) * attn_gain
    k = loader.matrix_rows(layer.k, 0, sample.kv_rows) * attn_gain
    if layer.q_norm is not None:
        q = _scale_head_rows(q, loader.gain(layer.q_norm, layer.head_dim), layer.head_dim)
    if layer.k_norm is not None:
        k = _scale_head_rows(k, loader.gain(layer.k_norm, layer.head_dim), layer.head_dim)
    mlp_gain = loader.gain(layer.mlp_norm, hidden)
    gate = None if layer.gate is None else loader.matrix_rows(layer.gate, 0, sample.units) * mlp_gain
    return CanonicalLayer(
        index=layer.index,
        q=q,
        k=_expand_heads(k, kv_heads=sample.kv_heads, heads=sample.q_heads, head_dim=layer.head_dim),
        up=loader.matrix_rows(layer.up, 0, sample.units) * mlp_gain,
        gate=gate,
    )


def probe_rows(loader: MatrixLoader, roles: ModelRoles, token_ids: torch.Tensor) -> torch.Tensor:
    """X̂: the probe tokens' input-embedding rows, normalised as the first norm would (step 3)."""
    return normalize_rows(loader.rows(roles.embedding, token_ids), roles.norm_kind)


def head_ref(roles: ModelRoles) -> MatrixRef | None:
    """The matrix the output head reads tokens from: the LM head, the embedding when tied, None
    for encoders without one (and for vision encoders, whose probes are pixels, not labels)."""
    if roles.family == "bert" or roles.probe_kind == PIXEL_PROBES:
        return None
    return roles.head if roles.head is not None else roles.embedding


def head_rows(loader: MatrixLoader, roles: ModelRoles, token_ids: torch.Tensor) -> torch.Tensor | None:
    """Ô: the probe tokens' output-head rows with the final norm's gain folded in (None: no head)."""
    ref = head_ref(roles)
    if ref is None:
        return None
    final: NormRef | None = roles.final_norm
    return loader.rows(ref, token_ids) * loader.gain(final, roles.hidden_size)
