"""Seeded random projections that preserve cosine similarity of token-space matrices.

A token-space term is an n x n matrix Z over the probes a model has (rows and columns indexed by
positions in the global probe list).  It is compressed to D numbers by *rank-one Gaussian
sketches*:

    s_k(Z) = u_kᵀ Z v_k,    u_k, v_k ~ N(0, I) over the global probe list,  k = 1..D.

Because E[s_k(Z) s_k(Z')] = <Z, Z'>_F for independent standard normal u_k, v_k (Isserlis), the
cosine of two sketches estimates the cosine of the (zero-padded) matrices, with standard error
about 1/sqrt(D) - a Johnson-Lindenstrauss projection that never materialises the n² x D matrix.

The Gaussian entries come from a counter-based generator (splitmix64 + Box-Muller) keyed by a
string, so the projection is identical on every platform and library version: fingerprints stored
years apart stay comparable as long as the fingerprint version string is the same.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import lru_cache

import numpy as np
import torch

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)


def _splitmix64(state: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser (Steele, Lea & Flood 2014) applied elementwise to uint64 counters."""
    with np.errstate(over="ignore"):
        z = state + _GOLDEN
        z = (z ^ (z >> np.uint64(30))) * _MIX1
        z = (z ^ (z >> np.uint64(27))) * _MIX2
        return z ^ (z >> np.uint64(31))


@lru_cache(maxsize=32)
def gaussian_matrix(seed: str, rows: int, cols: int) -> torch.Tensor:
    """A rows x cols float32 matrix of N(0, 1) entries, a pure function of (seed, rows, cols).

    Box-Muller: g = sqrt(-2 ln u1) * (cos 2πu2, sin 2πu2) with u uniform on (0, 1) taken from the
    top 53 bits of splitmix64 of consecutive counters.
    """
    key = np.uint64(int.from_bytes(hashlib.sha256(seed.encode()).digest()[:8], "little"))
    count = rows * cols
    pairs = (count + 1) // 2
    with np.errstate(over="ignore"):
        counters = key + np.arange(2 * pairs, dtype=np.uint64) * _GOLDEN
    uniform = ((_splitmix64(counters) >> np.uint64(11)).astype(np.float64) + 0.5) * 2.0**-53
    radius = np.sqrt(-2.0 * np.log(uniform[0::2]))
    angle = 2.0 * np.pi * uniform[1::2]
    values = np.concatenate([radius * np.cos(angle), radius * np.sin(angle)])[:count]
    return torch.from_numpy(values.reshape(rows, cols).astype(np.float32))


def offdiagonal_zscore(matrix: torch.Tensor) -> torch.Tensor:
    """Z = (M - μ) / σ with μ, σ over the off-diagonal entries; the diagonal is set to 0.

    The diagonal (a token against itself) is dropped because it carries behaviour every trained
    model shares (e.g. copying), not the idiosyncrasy of one initialisation; z-scoring makes the
    term blind to the global scale and offset of the matrix.
    """
    n = matrix.shape[0]
    m = matrix.float()
    diagonal = torch.diagonal(m).double()
    pairs = n * (n - 1)
    mean = (m.sum(dtype=torch.float64) - diagonal.sum()) / pairs  # sums in float64, entries in float32
    second = ((m * m).sum(dtype=torch.float64) - (diagonal * diagonal).sum()) / pairs
    std = torch.sqrt(torch.clamp(second - mean * mean, min=0.0))
    if not torch.isfinite(std) or std <= 0:
        return torch.zeros_like(m)
    z = (m - float(mean)) / float(std)
    z.fill_diagonal_(0.0)
    return z


@dataclass(frozen=True)
class Projection:
    """The rank-one sketch vectors of one seed restricted to a model's probes (u_k, v_k rows at
    ``positions``) and the sums :func:`sketch_product` needs, computed once per model and term."""

    left: torch.Tensor  # [n, D]
    right: torch.Tensor  # [n, D]
    left_sum: torch.Tensor  # [D] float64
    right_sum: torch.Tensor  # [D] float64
    products: torch.Tensor  # [D, n] float64, u_ki v_ki
    both: torch.Tensor  # [n, 2D]: left and right side by side (one product for a Gram's two sides)

    @classmethod
    def of(cls, seed: str, positions: torch.Tensor, universe: int, dim: int) -> Projection:
        left = gaussian_matrix(seed + "/u", universe, dim)[positions]
        right = gaussian_matrix(seed + "/v", universe, dim)[positions]
        return cls(
            left,
            right,
            left.sum(dim=0).double(),
            right.sum(dim=0).double(),
            (left * right).t().double().contiguous(),
            torch.cat([left, right], dim=1),
        )

    @classmethod
    def of_bf16(cls, seed: str, positions: torch.Tensor, universe: int, dim: int) -> Projection:
        """``of(...).stored_as(torch.bfloat16)``, the same numbers, gathered from per-seed tables
        built once per process (a few ms per model instead of tens)."""
        table = _bf16_table(seed, universe, dim, _prefix(positions))
        rows = positions.long()
        left, right = table.left.index_select(0, rows), table.right.index_select(0, rows)
        return cls(
            table.left16.index_select(0, rows),
            table.right16.index_select(0, rows),
            left.sum(dim=0).double(),
            right.sum(dim=0).double(),
            table.products.index_select(1, rows),
            table.both16.index_select(0, rows),
        )

    def stored_as(self, dtype: torch.dtype) -> Projection:
        """The same projection with u, v kept in ``dtype`` (bfloat16: no conversion per product
        when every product rounds them to bfloat16 anyway)."""
        return replace(self, left=self.left.to(dtype), right=self.right.to(dtype), both=self.both.to(dtype))

    def apply(
        self, z: torch.Tensor, matmul: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = torch.matmul
    ) -> torch.Tensor:
        """s_k = u_kᵀ Z v_k for k < D, from a formed n x n matrix Z (``matmul`` forms Z V)."""
        return (self.left * matmul(z, self.right)).sum(dim=0)


@dataclass(frozen=True)
class _Table:
    """u, v (float32 and bfloat16), (u∘v)ᵀ in float64 and [u | v] for the first ``rows`` global positions."""

    left: torch.Tensor
    right: torch.Tensor
    left16: torch.Tensor
    right16: torch.Tensor
    products: torch.Tensor  # [D, rows]
    both16: torch.Tensor


def _prefix(positions: torch.Tensor) -> int:
    """Rows of the table that cover ``positions``: the next power of two (tables are few)."""
    top = int(positions.max()) + 1 if len(positions) else 1
    return 1 << (top - 1).bit_length()


@lru_cache(maxsize=16)
def _bf16_table(seed: str, universe: int, dim: int, rows: int) -> _Table:
    left = gaussian_matrix(seed + "/u", universe, dim)[:rows]
    right = gaussian_matrix(seed + "/v", universe, dim)[:rows]
    return _Table(
        left,
        right,
        left.to(torch.bfloat16),
        right.to(torch.bfloat16),
        (left * right).t().double().contiguous(),
        torch.cat([left, right], dim=1).to(torch.bfloat16),
    )


def sketch(z: torch.Tensor, positions: torch.Tensor, seed: str, universe: int, dim: int) -> torch.Tensor:
    """s_k = u_kᵀ Z v_k for k < dim, with u, v rows picked at the probes' global ``positions``."""
    return Projection.of(seed, positions, universe, dim).apply(z)


def sketch_product(
    a: torch.Tensor,
    b: torch.Tensor,
    projection: Projection,
    matmul: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = torch.matmul,
) -> torch.Tensor:
    """``sketch(offdiagonal_zscore(a bᵀ), ...)`` for n x r factors: through :func:`sketch_products`
    when r < n (never forming the n x n matrix), else from the formed matrix (``matmul`` forms a bᵀ
    and Z V, e.g. :func:`indexer.bf16.matmul`)."""
    n, r = a.shape
    if r >= n:
        return projection.apply(offdiagonal_zscore(matmul(a, b.t())), matmul)
    return sketch_products(a[None], None if b is a else b[None], projection, matmul)[0]


def sketch_products(
    a: torch.Tensor,
    b: torch.Tensor | None,
    projection: Projection,
    matmul: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = torch.matmul,
) -> torch.Tensor:
    """Row i is ``sketch(offdiagonal_zscore(a_i b_iᵀ), ...)`` for a batch of n x r factors a, b
    ([B, n, r], r < n; ``b`` None: the Grams a_i a_iᵀ, one product serving both sides).  With
    M = a bᵀ, m_i = M_ii, S = Σ_ij M_ij, Q = ‖M‖²_F = Σ (aᵀa ∘ bᵀb):

        μ = (S − Σ m_i) / (n(n−1)),   σ² = (Q − Σ m_i²) / (n(n−1)) − μ²,
        s_k = [ (aᵀu_k)·(bᵀv_k) − μ (Σu_k)(Σv_k) − Σ_i u_ki v_ki (m_i − μ) ] / σ

    which is u_kᵀ Z v_k with Z_ij = (M_ij − μ)/σ off the diagonal and 0 on it: O(n r D) work
    instead of O(n² D), and one product with the projection for the whole batch.  ``matmul``
    forms the O(n r D) products aᵀu, bᵀv; the O(r² n) Grams are float32 (relative error ~1e-6),
    the sums float64.  Returns [B, D] float32 (a zero row where σ = 0)."""
    batch, n, r = a.shape
    af = a.float()
    bf = af if b is None else b.float()
    diagonal = (af * bf).sum(dim=2).double()  # [B, n]: m_i
    pairs = n * (n - 1)
    mean = ((af.sum(dim=1).double() * bf.sum(dim=1).double()).sum(dim=1) - diagonal.sum(dim=1)) / pairs
    gram_a = (af.transpose(1, 2) @ af).double()
    gram_b = gram_a if b is None else (bf.transpose(1, 2) @ bf).double()
    second = ((gram_a * gram_b).sum(dim=(1, 2)) - (diagonal * diagonal).sum(dim=1)) / pairs
    std = torch.sqrt(torch.clamp(second - mean * mean, min=0.0))  # [B]
    columns = af.transpose(1, 2).reshape(batch * r, n)  # every factor column of the batch: one product
    if b is None:
        au, bv = matmul(columns, projection.both).double().reshape(batch, r, -1).chunk(2, dim=2)
    else:
        au = matmul(columns, projection.left).double().reshape(batch, r, -1)
        bv = matmul(bf.transpose(1, 2).reshape(batch * r, n), projection.right).double().reshape(batch, r, -1)
    raw = (au * bv).sum(dim=1)  # [B, D]
    raw -= mean[:, None] * projection.left_sum * projection.right_sum
    raw -= (diagonal - mean[:, None]) @ projection.products.t()
    usable = (torch.isfinite(std) & (std > 0))[:, None]
    return torch.where(usable, raw / torch.where(usable, std[:, None], 1.0), 0.0).float()


def unit_rows(matrix: torch.Tensor) -> torch.Tensor:
    """Each row divided by its norm (zero rows stay zero)."""
    norms = torch.linalg.vector_norm(matrix, dim=-1, keepdim=True)
    return matrix / torch.where(norms > 0, norms, 1.0)


def unit(vector: torch.Tensor) -> torch.Tensor:
    """vector / ||vector|| (zero stays zero): :func:`unit_rows` of one row."""
    return unit_rows(vector)
