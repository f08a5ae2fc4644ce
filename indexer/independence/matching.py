"""Unit matching: linear assignment on cosine similarity (the paper's Algorithm 2, MATCH).

Rows are units (MLP hidden units, residual dimensions, ...), columns are whatever describes a unit
(its weights, or its activations over probe tokens).  C_ij = cos(row i of A, row j of B), or |cos|
where flipping a unit's sign is function-preserving; the matching maximises Σ C_iπ(i) and is
rectangular when A and B have different numbers of units (≡ zero-padding).  Similarities are
computed in float32 from unit-normalised rows - never as ‖x‖² + ‖y‖² - 2xy in low precision,
the catastrophic-cancellation bug of the released model-tracing code.

``match_nearest`` matches rows described by several standardised numbers (the embedding-free
unit descriptors of ``indexer.block_signatures``) by squared Euclidean distance, in float64.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment


def _unit_rows(matrix: torch.Tensor) -> torch.Tensor:
    matrix = matrix.float()
    norms = torch.linalg.vector_norm(matrix, dim=1, keepdim=True)
    return matrix / torch.clamp(norms, min=1e-30)


def unit_rows(matrix: torch.Tensor) -> torch.Tensor:
    """Rows scaled to unit norm, in float32: what :func:`cosine_matrix` computes from (callers that
    match the same rows many times normalise them once and pass ``normalized=True``)."""
    return _unit_rows(matrix)


def cosine_matrix(a: torch.Tensor, b: torch.Tensor, *, absolute: bool = False, normalized: bool = False) -> np.ndarray:
    """C_ij = cos(a_i, b_j) (or |cos|) as a float32 numpy array [rows of a, rows of b]."""
    c = (a @ b.t()) if normalized else _unit_rows(a) @ _unit_rows(b).t()
    return np.asarray((c.abs() if absolute else c).numpy())


@dataclass(frozen=True)
class Matching:
    """``b_of[i]`` is the unit of B matched to unit i of A, or -1 if unit i is unmatched."""

    b_of: np.ndarray
    similarity: np.ndarray  # C_i,b_of[i] (nan where unmatched)

    @property
    def matched(self) -> np.ndarray:
        return np.flatnonzero(self.b_of >= 0)


def match(a: torch.Tensor, b: torch.Tensor, *, absolute: bool = False, normalized: bool = False) -> Matching:
    """Maximum-total-similarity one-to-one matching of the rows of ``a`` to the rows of ``b``
    (``normalized``: both are :func:`unit_rows` already)."""
    c = cosine_matrix(a, b, absolute=absolute, normalized=normalized)
    rows, cols = linear_sum_assignment(c, maximize=True)
    b_of = np.full(a.shape[0], -1, dtype=np.int64)
    similarity = np.full(a.shape[0], np.nan, dtype=np.float32)
    b_of[rows] = cols
    similarity[rows] = c[rows, cols]
    return Matching(b_of, similarity)


def match_nearest(a: np.ndarray, b: np.ndarray) -> Matching:
    """Minimum-total-squared-distance one-to-one matching of the rows of ``a`` to the rows of
    ``b`` (descriptor vectors on a common scale; rectangular when the counts differ)."""
    a64, b64 = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    cost = (a64 * a64).sum(axis=1)[:, None] + (b64 * b64).sum(axis=1)[None, :] - 2.0 * (a64 @ b64.T)
    rows, cols = linear_sum_assignment(cost)
    b_of = np.full(a64.shape[0], -1, dtype=np.int64)
    similarity = np.full(a64.shape[0], np.nan, dtype=np.float32)
    b_of[rows] = cols
    similarity[rows] = -cost[rows, cols]
    return Matching(b_of, similarity)
