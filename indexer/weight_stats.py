"""Per-model weight statistics for the lineage stage (computed at ingest, stored in DuckDB).

- ``qk_kurtosis``: MoTHer's direction signal, made transform-invariant and computed from the rows
  the fingerprint samples.  MoTHer sums the excess kurtosis of raw attention weights, which a
  residual rotation changes (mixing entries Gaussianises them).  Here, per sampled head h, the
  singular values of the QK circuit A_h = W_q,hᵀ W_k,h (gains folded) - invariant to residual
  rotations/permutations and per-head maps - pooled over the sampled heads of a block.  From
  traces of hd x hd matrices, no SVD: with Q = W_q,h W_q,hᵀ and K = W_k,h W_k,hᵀ,
  ‖A_h‖²_F = tr(QK), ‖A_hᵀA_h‖²_F = tr((QK)²); E[σ²] = Σ_h tr(QK) / m, E[σ⁴] = Σ_h tr((QK)²) / m
  (m = heads × hd), kurtosis = E[σ⁴] / E[σ²]² − 3; averaged over blocks.  On the zoo a child is
  *less* kurtotic than its parent after training (MoTHer's "specialisation" regime; see
  BENCHMARKS.md).
- ``int8_grid``: fraction of sampled rows lying on a symmetric per-row int8 grid (step =
  max|w|/127), with a tolerance that survives half-precision storage - a quantised round trip.
  A matrix the checkpoint stores block-quantized (GGUF Q8_0, Q4_0, K-quants: per-block scales,
  which no per-row grid sees) counts as on the grid.
- ``attention_norm``: Σ over blocks of ‖W_q,S‖² + ‖W_k,S‖² over the sampled heads S (canonical,
  gains folded).
  Training moves weights by updates roughly orthogonal to them, so the norm grows from parent to
  child (every trained edge of the full zoo; see BENCHMARKS.md).
- ``gains_folded``: every norm gain is exactly 1 (what folding gains into the next matrices, e.g.
  before a residual rotation, leaves behind).
- ``layers``, ``mlp_sizes``, ``vocab_rows``, ``hidden``: structure (pruning, vocab extension).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch

from pedigree.indexer.adapters import MatrixLoader, ModelRoles
from pedigree.indexer.canonical import CanonicalLayer

GRID_ROWS = 32  # rows sampled per matrix for the int8-grid test
GRID_TOLERANCE = 0.08  # mean |w/step − round(w/step)|: ~0.25 for unquantised weights


@dataclass
class WeightStats:
    qk_kurtosis: float | None = None
    attention_norm: float | None = None
    int8_grid: float | None = None
    gains_folded: bool | None = None
    layers: int = 0
    hidden: int = 0
    vocab_rows: int = 0
    mlp_sizes: list[int] = field(default_factory=list)

    def as_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict | None) -> WeightStats:
        return cls(**{k: v for k, v in (data or {}).items() if k in cls.__dataclass_fields__})

    @property
    def quantized(self) -> bool:
        return self.int8_grid is not None and self.int8_grid > 0.9


def qk_spectral_kurtosis(layer: CanonicalLayer, head_dim: int) -> float:
    """Excess kurtosis of the symmetrised singular values of the sampled heads' W_q,hᵀ W_k,h
    (trace formulas over hd x hd matrices, see the module docstring)."""
    q = layer.q.reshape(-1, head_dim, layer.q.shape[-1])
    k = layer.k.reshape(-1, head_dim, layer.k.shape[-1])
    qk = (q @ q.transpose(1, 2)).double() @ (k @ k.transpose(1, 2)).double()  # [heads, hd, hd]; Grams in float32
    m = qk.shape[0] * head_dim
    second = float(torch.diagonal(qk, dim1=1, dim2=2).sum()) / m
    fourth = float(torch.diagonal(qk @ qk, dim1=1, dim2=2).sum()) / m
    return fourth / (second * second) - 3.0 if second > 0 else 0.0


def int8_grid_fraction(rows: torch.Tensor) -> float:
    """Fraction of rows whose entries sit on the per-row grid max|w|/127 (within tolerance)."""
    rows = rows.float()  # the residual is compared with a tolerance of 0.08 steps: float32 is exact enough
    step = rows.abs().amax(dim=1, keepdim=True) / 127.0
    ok = step.squeeze(1) > 0
    if not bool(ok.any()):
        return 0.0
    scaled = rows[ok] / step[ok]
    residual = (scaled - scaled.round()).abs().mean(dim=1)
    return float((residual < GRID_TOLERANCE).float().mean())


class StatsAccumulator:
    """Collects the statistics while the fingerprint walks the blocks (no extra reads of matrices)."""

    def __init__(self, loader: MatrixLoader, roles: ModelRoles) -> None:
        self.loader, self.roles = loader, roles
        self.kurtosis: list[float] = []
        self.grid: list[float] = []
        self.norm = 0.0

    def add(self, layer: CanonicalLayer) -> None:
        roles = self.roles.layers[layer.index]
        self.kurtosis.append(qk_spectral_kurtosis(layer, roles.head_dim))
        self.norm += sum(float((m * m).sum(dtype=torch.float64)) for m in (layer.q, layer.k))
        for ref in (roles.up, roles.q):
            if getattr(self.loader.source.info(ref.name), "quantized", False):
                self.grid.append(1.0)  # stored block-quantized (a GGUF Q8_0, Q4_K, ...): on its grid by construction
                continue
            if ref.transpose or ref.parts != 1:
                rows = self.loader.matrix(ref)[:GRID_ROWS]
            else:  # raw rows (gains not folded), one small range read
                rows = self.loader.source.read_rows(ref.name, 0, min(GRID_ROWS, self.loader.source.info(ref.name).rows))
            self.grid.append(int8_grid_fraction(rows))

    def finish(self) -> WeightStats:
        gains = []
        for layer in self.roles.layers:
            for norm in (layer.attn_norm, layer.mlp_norm):
                if norm is not None and norm.weight is not None:
                    gains.append(bool(torch.all(self.loader.gain(norm, self.roles.hidden_size) == 1.0)))
        return WeightStats(
            qk_kurtosis=sum(self.kurtosis) / len(self.kurtosis) if self.kurtosis else None,
            attention_norm=self.norm if self.kurtosis else None,
            int8_grid=sum(self.grid) / len(self.grid) if self.grid else None,
            gains_folded=all(gains) if gains else None,
            layers=len(self.roles.layers),
            hidden=self.roles.hidden_size,
            vocab_rows=self.roles.vocab_size,
            mlp_sizes=[layer.mlp_size for layer in self.roles.layers],
        )
