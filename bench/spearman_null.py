"""How exact is the constrained tests' null (issue 18)?  The p-value function against the true
permutation distribution, and what the issue's calibration bars ask of a perfectly calibrated test.

    python -m bench.spearman_null [--permutations 2000000]

The constrained tests (``mlp_up``, ``embedding_dims``, ``head_dims``) match A's units (or residual
dimensions) to B's and compute Spearman's ρ of the matching against the identity.  Under their null
(A's initialisation exchangeable over units, θ_A ⊥ θ_B) the matching is a *uniform random
permutation* whatever the models are, so the whole calibration question of these tests is how well
their p-value function matches the tail of ρ over uniform permutations of n units - which needs no
models, only permutations.  Per n: the exact tail is estimated from ``--permutations`` uniform
permutations; at the permutation quantiles of level α the table gives reported p / exact tail (below
1: anti-conservative) for the function the tests use since suite ind8,
``logp.log10_spearman_permutation_sf`` (exact for n <= 8, else a Pearson type II curve matched to
the null's first four moments: variance 1/(n − 1), kurtosis 3(25n³ − 38n² − 35n + 72) /
(25 n (n + 1)(n − 1))), and for the Student-t approximation they used up to ind7
(``logp.log10_spearman_sf``, still the robust tests' p_t).

Second part: the issue's bars ask, per variant group of N independent pairs, FPR ≤ 1 % at α = 0.01
and ≤ 0.2 % at α = 0.001 for the combined p.  For a combined test whose false-positive rate is
exactly α·c (c = 1: perfectly calibrated), the probability that all G groups meet a bar is
P(Binomial(N, α·c) ≤ ⌊bar·N⌋)^G - printed for the run's N = 1000 and G = 12.
Results: bench/results/spearman_null.json and the BENCHMARKS.md section.
"""

from __future__ import annotations

import argparse
import math

import numpy as np
from scipy import stats

from bench.report import environment, publish
from pedigree.indexer.independence.logp import log10_spearman_permutation_sf, log10_spearman_sf

SIZES = (8, 12, 16, 32, 64, 128, 256)
ALPHAS = (1e-2, 1e-3, 1e-4, 1e-5)


def permutation_rhos(n: int, count: int, seed: int) -> np.ndarray:
    """Spearman's ρ against the identity of ``count`` uniform permutations of n (sorted)."""
    rng = np.random.default_rng(seed)
    ranks, out, done = np.arange(n), [], 0
    while done < count:
        m = min(100_000, count - done)
        perms = np.argsort(rng.random((m, n), dtype=np.float32), axis=1)
        out.append(1 - 6 * ((perms - ranks) ** 2).sum(1) / (n * (n * n - 1)))
        done += m
    return np.sort(np.concatenate(out))


def tail_table(count: int) -> list[dict]:
    rows = []
    for k, n in enumerate(SIZES):
        rhos = permutation_rhos(n, count, seed=1000 + k)
        for alpha in ALPHAS:
            r = float(rhos[int(len(rhos) * (1 - alpha))])
            exact = float(np.mean(rhos >= r))
            hits = int(np.sum(rhos >= r))
            rows.append(
                {
                    "n": n,
                    "alpha": alpha,
                    "rho": round(r, 5),
                    "exact_tail": exact,
                    "exceedances": hits,
                    "used_ratio": round(10 ** log10_spearman_permutation_sf(r, n) / exact, 3),
                    "t_ratio": round(10 ** log10_spearman_sf(r, n) / exact, 3),
                }
            )
    return rows


def bar_pass_probability(pairs: int = 1000, groups: int = 12) -> list[dict]:
    out = []
    for alpha, bar in ((0.01, 0.01), (0.001, 0.002)):
        allowed = math.floor(bar * pairs + 1e-9)
        for c in (0.8, 1.0, 1.06):
            one = float(stats.binom.cdf(allowed, pairs, alpha * c))
            out.append(
                {
                    "alpha": alpha,
                    "bar": bar,
                    "rate_over_alpha": c,
                    "pairs": pairs,
                    "groups": groups,
                    "one_group": round(one, 4),
                    "all_groups": round(one**groups, 4),
                }
            )
    return out


def markdown(result: dict, command: str) -> str:
    env = result["environment"]
    lines = [
        "## The constrained tests' null: Spearman tail vs uniform permutations (issue 18)",
        "",
        f"Command: `{command}`  (commit {env['commit']}, {env['date']}; {result['seconds']} s)",
        "",
        "Under the constrained tests' null the unit matching is a uniform random permutation, so their calibration "
        "is the accuracy of the p-value function on uniform permutations (no models needed).  Ratio = reported p / "
        f"exact tail at the exact level-α quantile of ρ ({result['permutations']:,} permutations per n; below 1: "
        "anti-conservative).  Used (suite ind8 on): exact for n ≤ 8, else a Pearson type II curve (scaled Beta) "
        "with the null's exact variance and kurtosis; t: the Student-t approximation the tests used up to ind7.",
        "",
        "| n | α | ρ at the quantile | exceedances | used: exact / Pearson II (ind8) | t approximation (ind7) |",
        "|---|---|---|---|---|---|",
    ]
    for row in result["tails"]:
        lines.append(
            f"| {row['n']} | {row['alpha']:g} | {row['rho']} | {row['exceedances']} | {row['used_ratio']} | "
            f"{row['t_ratio']} |"
        )
    lines += [
        "",
        "What the issue's bars ask of a combined test whose false-positive rate is exactly c·α, with 1000 "
        "independent pairs in each of 12 variant groups: P(one group meets the bar) and P(all 12 do).",
        "",
        "| α | bar | c | one group | all 12 groups |",
        "|---|---|---|---|---|",
    ]
    for row in result["bars"]:
        lines.append(
            f"| {row['alpha']} | ≤ {row['bar']:.1%} | {row['rate_over_alpha']} | {row['one_group']} | "
            f"{row['all_groups']} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--permutations", type=int, default=2_000_000)
    args = parser.parse_args()
    import time

    started = time.perf_counter()
    result = {
        "permutations": args.permutations,
        "tails": tail_table(args.permutations),
        "bars": bar_pass_probability(),
    }
    result["seconds"] = round(time.perf_counter() - started, 1)
    result["environment"] = environment()
    command = "python -m bench.spearman_null" + (
        f" --permutations {args.permutations}" if args.permutations != 2_000_000 else ""
    )
    publish("spearman_null", result, markdown(result, command))


if __name__ == "__main__":
    main()
