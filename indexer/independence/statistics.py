"""The test statistics: matchings turned into Spearman correlations and log10 p-values.

Two families, as in Zhu et al. (ICML 2025):

**Constrained** ``φ_U``: match A's units to B's by their own weights and test the matching against
the identity.  H0: θ_A ⊥ θ_B *and* A's initialisation is exchangeable over units (training is
permutation-equivariant).  Then the matching is a uniform random permutation whatever B is, so
Spearman's ρ against the identity has its permutation null exactly (p: exact for n <= 8, else a
Pearson type II curve with that null's exact variance and kurtosis, floored at the exact 1/n! -
``logp.log10_spearman_permutation_sf``), and so does the number of fixed points (exact tail).
Not robust: a function-preserving permutation or rotation of B destroys the signal (p ~ U(0,1)).

**Robust** ``φ_MATCH``: two *independent* matchings of the same units, each invariant to the
transforms, and test whether they agree.  Units are described by their responses to the probe
tokens through each model's own canonical weights (X̂ Wᵀ), so residual rotations/permutations
cancel; matching both ways before correlating makes a permutation of B's units cancel; |cos|
makes sign flips and rescaling cancel where they are function-preserving.  H0: θ_A ⊥ θ_B, under
which the two matchings are (conjecturally) unrelated.  No exact null exists (the paper's own
words: the gate/up coupling is a conjecture, and independent models that learned similar features
- same data, distillation - match alike more often than chance), so its p-value is *calibrated*:
the t-approximation of Spearman's permutation null gives p_t, and the test reports
p = p_t^γ (log10 p = γ · log10 p_t, :func:`calibrated_robust_log10_p`) with γ =
:data:`ROBUST_CALIBRATION` = 0.8, the largest exponent (step 0.05) at which the block-pair
p-values of zoo A's independently trained pairs (251 pairs, 8,880 cells) no longer exceed their
nominal rate at 10⁻¹…10⁻⁴ (p_t exceeded it 1.10×, 1.36×, 1.91×, 2.25×; ``bench.robust_cells``).
p ≥ p_t always (conservative).  Zoo B, fresh initialisations of every architecture variant and
independently trained models - none used to choose γ - check it (``bench.calibration``).

**Embedding-free** ``φ_BLOCK`` (``block_units``): the robust statistic without the probe tokens,
for blocks that may sit under another model's embedding (a passthrough frankenmerge).  Units are
described by quantities computed from the block's own weights only
(``indexer.block_signatures.matching_descriptors``: quadratic forms of each unit's normalised rows
with the block's QK circuit, head row-space projectors and unit Grams) that residual rotations and
permutations, unit permutations and rescaling, per-head maps and norm gains leave unchanged.  The
units are matched twice - by the descriptors of their read (gate, or up) rows and by those of their
up rows (gated MLPs) or down columns (ungated MLPs), each z-scored within its own block - and the
agreement of the two matchings is tested as for φ_MATCH.  H0: the two blocks were initialised
independently, under which the two matchings are (conjecturally) unrelated; approximate null,
calibrated on the zoo's independent block pairs (``bench/block_signatures.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from pedigree.indexer.block_signatures import zscore_columns
from pedigree.indexer.independence.logp import (
    log10_fixed_points_sf,
    log10_spearman_permutation_sf,
    log10_spearman_sf,
    spearman_rho,
)
from pedigree.indexer.independence.matching import Matching, match, match_nearest

NULL_CONSTRAINED = (
    "θ_A ⊥ θ_B with A's initialisation exchangeable over hidden units "
    "(the unit matching is a uniform random permutation)"
)
NULL_ROBUST = (
    "θ_A ⊥ θ_B (two invariant matchings of the same units are unrelated; approximate null, calibrated: p = p_t^0.8)"
)
ROBUST_CALIBRATION = 0.8  # γ: log10 p = γ · log10 p_t for φ_MATCH (see the module docstring)
NULL_BLOCK = (
    "the two blocks were initialised independently (two embedding-free invariant matchings of their MLP units, "
    "by read rows and by up/down rows, are unrelated; approximate null)"
)


@dataclass(frozen=True)
class PairStat:
    """One statistic on one block pair (or one embedding): ρ over n matched units and its log10 p."""

    layer_a: int
    layer_b: int
    n: int
    rho: float
    log10_p: float
    extra: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {
            "layer_a": self.layer_a,
            "layer_b": self.layer_b,
            "n": self.n,
            "rho": round(float(self.rho), 6),
            "log10_p": round(float(self.log10_p), 4),
            **self.extra,
        }


def against_identity(
    matching: Matching, offset_a: int = 0, offset_b: int = 0, *, layers: tuple[int, int] = (-1, -1)
) -> PairStat:
    """Constrained statistic: Spearman ρ of (A unit index, matched B unit index), one-sided.

    With a square matching at the same positions, also the exact fixed-point test:
    P(F >= k) for the number F of units matched to themselves under a uniform permutation.
    """
    units = matching.matched
    a_index = units + offset_a
    b_index = matching.b_of[units] + offset_b
    n = len(units)
    rho = spearman_rho(a_index, b_index)
    extra: dict[str, Any] = {}
    if n == len(matching.b_of) and offset_a == offset_b:
        fixed = int(np.sum(a_index == b_index))
        extra = {"fixed_points": fixed, "log10_p_fixed_points": round(log10_fixed_points_sf(fixed, n), 4)}
    return PairStat(layers[0], layers[1], n, rho, log10_spearman_permutation_sf(rho, n), extra)


def agreement(first: Matching, second: Matching, *, layers: tuple[int, int] = (-1, -1)) -> PairStat:
    """Robust statistic: Spearman ρ between two matchings of A's units to B's, one-sided."""
    units = np.intersect1d(first.matched, second.matched)
    x, y = first.b_of[units], second.b_of[units]
    rho = spearman_rho(x, y)
    extra = {"agree": int(np.sum(x == y))}
    return PairStat(layers[0], layers[1], len(units), rho, log10_spearman_sf(rho, len(units)), extra)


def calibrated_robust_log10_p(log10_p_t: float) -> float:
    """φ_MATCH's calibrated p: log10 p = γ · log10 p_t (γ = :data:`ROBUST_CALIBRATION`; p ≥ p_t)."""
    return ROBUST_CALIBRATION * log10_p_t


def mlp_profiles(
    gate: torch.Tensor | None, up: torch.Tensor, down_t: torch.Tensor | None, x: torch.Tensor
) -> dict[str, torch.Tensor]:
    """Unit responses to the probe tokens: rows are units, columns probe tokens (X̂ Wᵀ)ᵀ."""
    profiles = {"up": up @ x.t()}
    if gate is not None:
        profiles["gate"] = gate @ x.t()
    if down_t is not None:
        profiles["down"] = down_t @ x.t()
    return profiles


def robust_mlp_stat(
    profiles_a: dict[str, torch.Tensor],
    profiles_b: dict[str, torch.Tensor],
    *,
    layers: tuple[int, int],
    normalized: bool = False,
) -> PairStat:
    """φ_MATCH on one block pair: Spearman ρ of the two matchings, its calibrated log10 p
    (:func:`calibrated_robust_log10_p`; the t-approximation's in ``extra["log10_p_t"]``)
    (``normalized``: the profiles are unit rows already, ``indexer.independence.matching.unit_rows``).

    (The number of units on which the two matchings agree is reported, not tested: independent
    models that learned similar features - a distilled student and its teacher - agree on more
    units than two unrelated matchings would, so a fixed-point null for it fails; ρ stays
    calibrated.)

    GLU MLPs: gate responses matched by cos (the gate's sign is not free) vs up responses matched
    by |cos| (up × s, down ÷ s is function-preserving for any s ≠ 0).  Other MLPs: up responses
    vs down (output) responses, both by cos (only unit permutations preserve a GELU MLP).
    """
    if "gate" in profiles_a and "gate" in profiles_b:
        first = match(profiles_a["gate"], profiles_b["gate"], normalized=normalized)
        second = match(profiles_a["up"], profiles_b["up"], absolute=True, normalized=normalized)
    else:
        first = match(profiles_a["up"], profiles_b["up"], normalized=normalized)
        second = match(profiles_a["down"], profiles_b["down"], normalized=normalized)
    stat = agreement(first, second, layers=layers)
    extra = {**stat.extra, "log10_p_t": round(stat.log10_p, 4)}
    return PairStat(stat.layer_a, stat.layer_b, stat.n, stat.rho, calibrated_robust_log10_p(stat.log10_p), extra)


def block_units_stat(
    descriptors_a: tuple[np.ndarray, np.ndarray],
    descriptors_b: tuple[np.ndarray, np.ndarray],
    *,
    layers: tuple[int, int],
    standardized: bool = False,
) -> PairStat:
    """φ_BLOCK on one block pair: (read, write) unit descriptors of A's and of B's block
    ([units, features] each, see the module docstring); each side z-scored within its block
    (``standardized``: the caller passed them z-scored already, ``zscore_columns``)."""
    z = (lambda x: x) if standardized else zscore_columns
    first = match_nearest(z(descriptors_a[0]), z(descriptors_b[0]))
    second = match_nearest(z(descriptors_a[1]), z(descriptors_b[1]))
    return agreement(first, second, layers=layers)
