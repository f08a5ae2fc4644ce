"""PERMTEST (the paper's Algorithm 1): a p-value for any statistic, by simulated exchangeable copies.

Under H0 - θ_A ⊥ θ_B and A's initialisation invariant in distribution under a group Π of
output-preserving transforms, with Π-equivariant training - the statistic on (π(θ_A), θ_B) for
π ~ Unif(Π) has the same distribution as on (θ_A, θ_B).  With T copies,

    p = (1 + #{t : φ_t >= φ_observed}) / (T + 1)

("at least as similar"; ties count against rejection) is a valid p-value, uniform on
{1/(T+1), ..., 1} under H0.  Its power is bounded by the compute spent: p >= 1/(T+1).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

Statistic = Callable[[np.random.Generator | None], float]


def permtest(statistic: Statistic, *, copies: int = 99, seed: int = 0) -> tuple[float, dict[str, Any]]:
    """(log10 p, detail) for ``statistic``; ``statistic(None)`` is the observed value and
    ``statistic(rng)`` its value on a copy of A transformed by a random element of Π."""
    observed = statistic(None)
    rng = np.random.default_rng(seed)
    null = np.array([statistic(rng) for _ in range(copies)])
    at_least = int(np.sum(null >= observed))
    p = (1 + at_least) / (copies + 1)
    return math.log10(p), {
        "observed": observed,
        "copies": copies,
        "at_least_as_similar": at_least,
        "null_mean": float(null.mean()),
        "null_std": float(null.std()),
    }


def l2_statistic(units_a: Sequence[torch.Tensor], units_b: Sequence[torch.Tensor]) -> Statistic:
    """φ_ℓ2 = −Σ_ℓ ‖U_A^(ℓ) − U_B^(ℓ)‖_F over per-block unit matrices (rows = units); Π permutes
    A's units independently in every block.  Larger = more similar."""

    def statistic(rng: np.random.Generator | None) -> float:
        total = 0.0
        for a, b in zip(units_a, units_b):
            rows = min(len(a), len(b))
            if rng is not None:
                a = a[torch.from_numpy(rng.permutation(len(a)))]
            total -= float(torch.linalg.matrix_norm(a[:rows] - b[:rows]))
        return total

    return statistic
