"""p-values in log10 space that never underflow (pure functions).

Every function here returns log10 p.  A p-value of 10^-40000 is an ordinary finite number in this
representation; nothing is ever rounded to 0 (scipy's ``t.sf`` and ``betainc`` underflow below
about 1e-308, which the model-tracing code reports as "ε").
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from functools import lru_cache

import numpy as np
from scipy import special

LN10 = math.log(10.0)
_SCIPY_SAFE = 1e-280  # above this scipy's betainc is accurate; below it we use the log-space series


def _log_betainc_series(a: float, b: float, x: float) -> float:
    """ln I_x(a, b) for 0 < x < 1 by the hypergeometric series, summed in linear space.

        I_x(a, b) = x^a (1-x)^b / (a B(a, b)) · Σ_k c_k,   c_0 = 1,  c_{k+1} = c_k (a+b+k)/(a+1+k) x

    (DLMF 8.17.8 with 2F1(a+b, 1; a+1; x)).  Every ratio is at most r = (a+b)/(a+1) · x, so for
    r < 1 (b <= 1 and any x < 1, or b = a and x < 1/2 - the two uses here) the terms fall
    geometrically and the sum is at most 1/(1-r): no overflow, and the prefactor is in logs.
    """
    total, term, k = 1.0, 1.0, 0
    while True:
        term *= (a + b + k) / (a + 1.0 + k) * x
        total += term
        k += 1
        if term < 1e-17 * total or k > 10_000_000:
            break
    log_prefix: float = a * math.log(x) + b * math.log1p(-x) - math.log(a) - special.betaln(a, b)
    return log_prefix + math.log(total)


def log10_betainc(a: float, b: float, x: float) -> float:
    """log10 of the regularized incomplete beta function I_x(a, b), finite for every x in (0, 1]."""
    if x <= 0.0:
        return -math.inf
    if x >= 1.0:
        return 0.0
    value = float(special.betainc(a, b, x))
    if value > _SCIPY_SAFE:
        return math.log10(value)
    return _log_betainc_series(a, b, x) / LN10


def log10_factorial(n: int) -> float:
    return float(special.gammaln(n + 1)) / LN10


def log10_spearman_sf(rho: float, n: int, *, floor_at_permutation: bool = True) -> float:
    """One-sided log10 P(ρ' >= ρ) for Spearman's ρ of n pairs under independence.

    Student-t approximation of the permutation null (the paper's Algorithm 3):
    t = ρ √((n-2)/(1-ρ²)) ~ t_{n-2}, whose upper tail is ½ I_{1-ρ²}((n-2)/2, ½) for ρ > 0.

    ρ is computed from a permutation, and the exact permutation tail can never be below 1/n!
    (the probability of the single most extreme permutation); near ρ = 1 the t approximation
    drops below that (to 0 at ρ = 1), so the result is floored at -log10(n!) unless
    ``floor_at_permutation`` is False.  A perfect match of 11008 units gives about -39,700.
    """
    if n < 3 or not math.isfinite(rho):
        return 0.0
    rho = min(max(rho, -1.0), 1.0)
    nu = n - 2
    if rho <= 0:
        x = 1.0 - rho * rho
        return math.log10(max(1.0 - 0.5 * float(special.betainc(nu / 2.0, 0.5, x)), 0.5))
    tail = math.log10(0.5) + log10_betainc(nu / 2.0, 0.5, 1.0 - rho * rho) if rho < 1.0 else -math.inf
    return max(tail, -log10_factorial(n)) if floor_at_permutation else tail


def spearman_null_kurtosis(n: int) -> float:
    """Kurtosis of Spearman's ρ over uniform random permutations of n (exact):

    β₂ = 3 (25n³ − 38n² − 35n + 72) / (25 n (n + 1)(n − 1))    (its variance is 1/(n − 1))
    """
    return 3 * (25 * n**3 - 38 * n**2 - 35 * n + 72) / (25 * n * (n + 1) * (n - 1))


EXACT_UP_TO = 8  # n <= this: the permutation tail by enumerating all n! permutations


@lru_cache(maxsize=EXACT_UP_TO)
def _exact_spearman_sums(n: int) -> np.ndarray:
    """Σ (i − π(i))² of every permutation π of n, sorted (n! values)."""
    perms = np.array(list(itertools.permutations(range(n))), dtype=np.int64)
    return np.sort(((perms - np.arange(n)) ** 2).sum(axis=1))


def log10_spearman_permutation_sf(rho: float, n: int) -> float:
    """One-sided log10 P(ρ' >= ρ) for ρ' = Spearman's ρ of a *uniform random permutation* of n
    against the identity - the constrained tests' null (``statistics.against_identity``).

    n <= ``EXACT_UP_TO``: exact, by enumerating the n! permutations.  Larger n: the symmetric
    Pearson type II curve with the null's exact first four moments (mean 0, variance 1/(n − 1),
    kurtosis β₂ of :func:`spearman_null_kurtosis`): ρ' ≈ s (2B − 1) with B ~ Beta(a, a),

        a = (6 / (3 − β₂) − 3) / 2,   s = √((2a + 1) / (n − 1)),   P(ρ' >= ρ) = I_{(1 − ρ/s)/2}(a, a).

    The Student-t approximation (:func:`log10_spearman_sf`) is the same family with the variance
    alone (a = (n − 2)/2, s = 1); it is anti-conservative in the tail (reported / exact at 1e-4:
    0.52 for n = 16, 0.72 for n = 32, 0.86 for n = 64).  This curve is at least 0.93 of the exact
    tail for n = 12..256 at 1e-2..1e-5, within 5 % at 1e-4 for n >= 32, and conservative in the
    deep tail of small n and near ρ = 1 (``bench.spearman_null``).  Floored at −log10(n!), the
    probability of the single most extreme permutation.
    """
    if n < 3 or not math.isfinite(rho):
        return 0.0
    rho = min(max(rho, -1.0), 1.0)
    if n <= EXACT_UP_TO:
        sums = _exact_spearman_sums(n)
        bound = (1.0 - rho) * n * (n * n - 1) / 6.0  # ρ' >= ρ  <=>  Σd² <= this
        count = int(np.searchsorted(sums, bound + 1e-9, side="right"))
        return math.log10(max(count, 1) / len(sums))
    kurtosis = spearman_null_kurtosis(n)
    a = (6.0 / (3.0 - kurtosis) - 3.0) / 2.0
    scale = math.sqrt((2.0 * a + 1.0) / (n - 1))
    y = (1.0 - rho / scale) / 2.0
    if y >= 0.5:
        return math.log10(min(float(special.betainc(a, a, y)), 1.0))
    return float(max(log10_betainc(a, a, y), -log10_factorial(n)))


def log10_fixed_points_sf(k: int, n: int) -> float:
    """Exact log10 P(F >= k) for F = number of fixed points of a uniform random permutation of n.

    P(F = j) = (1/j!) Σ_{i=0}^{n-j} (-1)^i / i!   (derangements), summed over j >= k in log space.
    """
    if k <= 0:
        return 0.0
    k = min(k, n)
    # s[m] = Σ_{i<=m} (-1)^i / i!  converges to 1/e fast; exact values for small m
    s = np.empty(n + 1)
    partial, term = 0.0, 1.0
    for m in range(n + 1):
        if m:
            term /= -m
        partial += term
        s[m] = partial
    j = np.arange(k, n + 1)
    weights = s[n - j]
    positive = weights > 0  # s[1] = 0: exactly n-1 fixed points is impossible
    logs = -special.gammaln(j[positive] + 1) + np.log(weights[positive])
    return float(special.logsumexp(logs) / LN10)


def log10_fisher(log10_ps: Sequence[float]) -> float:
    """Fisher's method in log space: X = -2 Σ ln p_i ~ χ²_{2L} under H0, p = P(χ²_{2L} >= X).

    For even degrees of freedom the χ² tail is Poisson: P(χ²_{2L} >= X) = e^{-y} Σ_{k<L} y^k/k!
    with y = X/2, evaluated with logsumexp so it stays finite for any X.
    """
    values = [v for v in log10_ps if math.isfinite(v)]
    if not values:
        return 0.0
    y = -LN10 * sum(values)
    if y <= 0:
        return 0.0
    k = np.arange(len(values))
    log_tail = -y + special.logsumexp(k * math.log(y) - special.gammaln(k + 1))
    return float(min(log_tail / LN10, 0.0))


def log10_bonferroni_min(log10_ps: Sequence[float]) -> float:
    """log10 of min(1, m · min_i p_i): valid for any dependence between the m tests."""
    values = [v for v in log10_ps if not math.isnan(v)]
    if not values:
        return 0.0
    return float(min(0.0, min(values) + math.log10(len(values))))


def log10_benjamini_hochberg(log10_ps: Sequence[float]) -> list[float]:
    """Benjamini-Hochberg adjusted q-values (log10), in the input order.

    q_(i) = min_{j >= i} p_(j) · m / j over the ascending order; controls the false discovery
    rate at level q under independence or positive dependence of the tests.
    """
    m = len(log10_ps)
    if m == 0:
        return []
    order = np.argsort(np.asarray(log10_ps, dtype=float), kind="stable")
    adjusted = np.empty(m)
    running = 0.0
    for rank in range(m, 0, -1):
        index = order[rank - 1]
        candidate = log10_ps[index] + math.log10(m / rank)
        running = min(running, candidate)
        adjusted[index] = min(running, 0.0)
    return adjusted.tolist()


def log10_holm(log10_ps: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values (log10), in the input order.

    p̃_(i) = max_{j <= i} min(1, (m − j + 1) · p_(j)) over the ascending order; rejecting every
    p̃ < α controls the family-wise error rate - the probability of *any* false rejection - at α,
    whatever the dependence between the tests.
    """
    m = len(log10_ps)
    if m == 0:
        return []
    order = np.argsort(np.asarray(log10_ps, dtype=float), kind="stable")
    adjusted = np.empty(m)
    running = -math.inf
    for rank in range(1, m + 1):
        index = order[rank - 1]
        candidate = min(log10_ps[index] + math.log10(m - rank + 1), 0.0)
        running = max(running, candidate)
        adjusted[index] = running
    return adjusted.tolist()


def spearman_rho(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman's ρ: the Pearson correlation of the ranks of x and y (no ties expected)."""
    if len(x) < 3:
        return 0.0
    rx = np.argsort(np.argsort(x, kind="stable"), kind="stable").astype(float)
    ry = np.argsort(np.argsort(y, kind="stable"), kind="stable").astype(float)
    rx -= rx.mean()
    ry -= ry.mean()
    denominator = math.sqrt(float(rx @ rx) * float(ry @ ry))
    return float(rx @ ry / denominator) if denominator > 0 else 0.0
