"""How φ_MATCH's block-pair p-values behave on independently trained models: the evidence for
its calibration exponent γ (``indexer.independence.statistics.ROBUST_CALIBRATION``).

    python -m bench.robust_cells [--zoo full] [--raw FILE]

Runs the battery on every pair of a zoo (default zoo A, ``bench/.zoo/full``: γ is chosen there)
and keeps, per pair of *independent* models (no shared ancestor, different families), every cell
of the φ_MATCH block-by-block matrix as the t-approximation gives it (p_t = p^(1/γ) of the stored
value).  Reports the tail ratio #{p_t < 10^-k} / (n 10^-k) for k = 1..4 over all cells and over
the same-depth diagonal, and the largest γ ≤ 1 (step 0.05) at which no ratio exceeds 1 - the rule
that set γ on zoo A.  Run with ``--zoo b-full`` it is a held-out check (nothing is chosen there).
Cells of one pair are dependent and a family's members are near-copies, so these are rates, not
independent samples (``bench.calibration`` has those).  Results: bench/results/robust-cells-<zoo>.json.
"""

from __future__ import annotations

import argparse
import json
from itertools import combinations
from multiprocessing import Pool
from pathlib import Path

import numpy as np

from bench.report import ROOT, environment
from pedigree.indexer.independence.inputs import ModelTensors
from pedigree.indexer.independence.statistics import ROBUST_CALIBRATION
from pedigree.indexer.independence.suite import run_battery
from pedigree.indexer.local_checkpoint import open_checkpoint

_MODELS: dict[tuple[str, str], ModelTensors] = {}


def _model(zoo: str, model_id: str) -> ModelTensors:
    if (zoo, model_id) not in _MODELS:
        _MODELS[(zoo, model_id)] = ModelTensors(open_checkpoint(Path(zoo) / model_id), model_id)
    return _MODELS[(zoo, model_id)]


def _cells(job: tuple[str, str, str]) -> list[list[float]] | None:
    zoo, a, b = job
    test = run_battery(_model(zoo, a), _model(zoo, b)).test("mlp_match")
    localized = test.detail.get("localized") if test else None
    return None if localized is None else [[v / ROBUST_CALIBRATION for v in row] for row in localized]


def _ancestors(truth: dict, model_id: str, seen: set[str] | None = None) -> set[str]:
    seen = set() if seen is None else seen
    if model_id not in seen:
        seen.add(model_id)
        for parent in truth.get(model_id, {}).get("parents", []):
            _ancestors(truth, parent, seen)
    return seen


def independent_pairs(zoo: Path) -> list[tuple[str, str]]:
    truth = json.loads((zoo / "truth.json").read_text())
    models = sorted(m for m in truth if (zoo / m / "config.json").exists())
    return [
        (a, b)
        for a, b in combinations(models, 2)
        if truth[a]["family"] != truth[b]["family"] and not (_ancestors(truth, a) & _ancestors(truth, b))
    ]


def tail_ratios(log10_p: np.ndarray) -> dict[str, float]:
    """#{p < 10^-k} / (n 10^-k), k = 1..4: 1 for a calibrated p, > 1 anti-conservative."""
    n = max(len(log10_p), 1)
    return {f"1e-{k}": round(float(np.sum(log10_p < -k)) / (n * 10.0**-k), 3) for k in range(1, 5)}


def exponent(log10_p: np.ndarray) -> float:
    """The largest γ in (0, 1] (step 0.05) with every tail ratio of γ·log10 p_t at most 1."""
    for gamma in np.arange(1.0, 0.0, -0.05):
        if max(tail_ratios(gamma * log10_p).values()) <= 1.0:
            return round(float(gamma), 2)
    return 0.0


def summarise(matrices: list[list[list[float]]]) -> dict:
    cells = np.array([v for m in matrices for row in m for v in row])
    diagonal = np.array([m[i][i] for m in matrices if len(m) == len(m[0]) for i in range(len(m))])
    return {
        "pairs": len(matrices),
        "cells": len(cells),
        "tail_ratio_cells": tail_ratios(cells),
        "tail_ratio_diagonal": tail_ratios(diagonal),
        "tail_ratio_cells_calibrated": tail_ratios(ROBUST_CALIBRATION * cells),
        "tail_ratio_diagonal_calibrated": tail_ratios(ROBUST_CALIBRATION * diagonal),
        "gamma_rule": exponent(cells),
        "gamma_in_effect": ROBUST_CALIBRATION,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--zoo", default="full", help="bench/.zoo/<name> (full: zoo A; b-full: zoo B, held out)")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    zoo = ROOT / "bench" / ".zoo" / args.zoo
    jobs = [(str(zoo), a, b) for a, b in independent_pairs(zoo)]
    with Pool(args.workers) as pool:
        matrices = [m for m in pool.imap(_cells, jobs, chunksize=8) if m is not None]
    result = {
        **summarise(matrices),
        "zoo": args.zoo,
        "environment": {**environment(), "command": f"python -m bench.robust_cells --zoo {args.zoo}"},
    }
    out = ROOT / "bench" / "results" / f"robust-cells-{args.zoo}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "environment"}, indent=2))


if __name__ == "__main__":
    main()
