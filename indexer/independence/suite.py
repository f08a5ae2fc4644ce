"""The test battery for one pair of checkpoints, and how its p-values are combined.

Tests (each with its own null hypothesis, see ``indexer.independence.statistics``):

- ``mlp_match`` (robust φ_MATCH): per block pair, Fisher-combined over the block-by-block plan
  (same depth) and min-Bonferroni over the localized block matrix; the two combined by Bonferroni.
  The block map (which blocks of B come from which of A) takes, per block pair, the stronger of
  this and the constrained test, one-to-one by assignment, significant family-wise at 1e-4.
- ``block_units`` (robust, embedding-free φ_BLOCK): per block pair, MLP units matched twice by
  descriptors computed from the block's own weights only (no probe tokens, so blocks transplanted
  under another model's embedding - a passthrough frankenmerge - are still seen); the plan's
  block pairs plus any hinted ones (e.g. proposed by the block signatures), and the localized
  block-by-block matrix for small models; Fisher over the same-depth diagonal and min-Bonferroni
  over every cell, combined by Bonferroni.  Its cells join the block map's evidence.  **It is
  reported but left out of the pair's combined log10 p**: on the full zoos it gave log10 p −7.8
  to independently initialised models (tiny-llama-s1 vs tiny-qwen2) - its approximate null does
  not hold there - and joined unrelated families.
- ``mlp_up`` (constrained φ_U): per block pair, Spearman of the up-row matching vs the identity,
  Fisher-combined.  Needs equal hidden sizes.
- ``embedding_dims`` / ``head_dims`` (constrained): residual dimensions matched over the shared
  probe tokens and tested against the identity; exact null when A's initialisation is
  exchangeable over residual dimensions.  They find a copied embedding or head even when every
  block is unrelated, but not one whose residual stream was permuted or rotated.  (A robust
  variant - two matchings of the dimensions on disjoint token halves - was rejected: independent
  models trained on the same text have similar embedding geometry, and it fired on 4-21 % of the
  zoo's independent pairs at α = 0.01.)

The pair's ``log10_p`` is the Bonferroni combination (m · min p) over the tests that ran, valid
whatever their dependence.

MLPs wider than ``Budget.unit_block`` are tested on a sample of each model's units - the ones
the evidence store keeps (``indexer.stored_model``, ``indexer.unit_selection``): a contiguous
block of first units (one range read per matrix; a derivative in its parent's coordinates keeps
every unit of it in place), and for MLPs wider than 1024 units also canonical units chosen by a
permutation- and rescaling-invariant rule, so that a unit-permuted derivative keeps most of them
too (two position-based samples share only about k² / width units).  φ_MATCH runs on each part
and the two are Bonferroni-combined per block pair.  The nulls are unchanged: each model's sample
depends on its own weights only and treats its units symmetrically, and units are exchangeable
under the nulls.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from pedigree.indexer.block_signatures import MAX_UNITS, zscore_columns
from pedigree.indexer.independence.inputs import ModelEvidence, shared_probes
from pedigree.indexer.independence.logp import log10_bonferroni_min, log10_fisher
from pedigree.indexer.independence.matching import match, unit_rows
from pedigree.indexer.independence.statistics import (
    NULL_BLOCK,
    NULL_CONSTRAINED,
    NULL_ROBUST,
    PairStat,
    against_identity,
    block_units_stat,
    mlp_profiles,
    robust_mlp_stat,
)
from pedigree.indexer.independence.summary import SHARED_BLOCK_FAMILYWISE
from pedigree.indexer.unit_selection import WHOLE_MLP, contiguous_units

MIN_SHARED_PROBES = 16


@dataclass(frozen=True)
class Budget:
    """How much of a pair the battery reads and computes."""

    unit_block: int = WHOLE_MLP  # MLPs wider than this are tested on a sample of units (indexer.unit_selection)
    robust_layers: int = 8  # at most this many block pairs of the plan (evenly spaced) for φ_MATCH
    localized_max_cells: int = 400  # compute the full block-by-block matrix up to this many cells
    probe_limit: int = 512  # unit responses are measured on at most this many shared probe tokens


@dataclass(frozen=True)
class Outcome:
    name: str
    log10_p: float
    null: str
    detail: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {"name": self.name, "log10_p": round(self.log10_p, 4), "null": self.null, "detail": self.detail}


@dataclass
class PairReport:
    a: str
    b: str
    tests: list[Outcome]
    log10_p: float
    layer_map: list[tuple[int, int, float]]  # (block of A, block of B, log10 p) judged shared
    localized: list[list[float]] | None  # log10 p of every block pair, when computed

    def test(self, name: str) -> Outcome | None:
        return next((t for t in self.tests if t.name == name), None)


def _plan(
    a: ModelEvidence, b: ModelEvidence, hint: list[tuple[int, int]] | None, budget: Budget
) -> list[tuple[int, int]]:
    """Block pairs the per-block tests run on: the diagonal for equal depths, else ``hint``."""
    if a.depth == b.depth:
        pairs = [(i, i) for i in range(a.depth)]
    elif hint:
        pairs = sorted(hint)
    else:
        pairs = (
            [(round(i * (a.depth - 1) / max(b.depth - 1, 1)), i) for i in range(b.depth)]
            if a.depth > b.depth
            else [(i, round(i * (b.depth - 1) / max(a.depth - 1, 1))) for i in range(a.depth)]
        )
    if budget.robust_layers and len(pairs) > budget.robust_layers:
        keep = np.linspace(0, len(pairs) - 1, budget.robust_layers).round().astype(int)
        pairs = [pairs[k] for k in sorted(set(keep))]
    return pairs


def first_units(model: ModelEvidence, layer: int, budget: Budget) -> int | None:
    """How many first MLP units of the block the tests use: None for all (at most
    ``budget.unit_block``), else the first units the evidence keeps (``indexer.unit_selection``)."""
    if model.mlp_units(layer) <= budget.unit_block:
        return None
    first = contiguous_units(model.roles.layers[layer])
    return budget.unit_block if first is None else min(first, budget.unit_block)


def _block(model: ModelEvidence, layer: int, budget: Budget) -> tuple[int, int] | None:
    units = first_units(model, layer, budget)
    return None if units is None else (0, units)


class _Profiles:
    """Cached unit responses to the shared probes, per model and block."""

    def __init__(self, model: ModelEvidence, x: torch.Tensor, budget: Budget, *, glu_pair: bool) -> None:
        self.model, self.x, self.budget = model, x, budget
        self.glu_pair = glu_pair  # gate-vs-up needs no down projection
        self.cache: dict[int, dict[str, torch.Tensor]] = {}
        self.canonical_cache: dict[int, dict[str, torch.Tensor] | None] = {}

    def __call__(self, layer: int) -> dict[str, torch.Tensor]:
        if layer not in self.cache:
            span = _block(self.model, layer, self.budget) or (None, None)
            mlp = self.model.mlp(layer, *span, down=not self.glu_pair)
            profiles = mlp_profiles(mlp.gate, mlp.up, mlp.down_t, self.x)
            self.cache[layer] = {name: unit_rows(p) for name, p in profiles.items()}  # normalised once per block
        return self.cache[layer]

    def canonical(self, layer: int) -> dict[str, torch.Tensor] | None:
        """Responses of the block's canonical units: gate and up for a pair of gated blocks, up and
        down for a pair of ungated ones; None when the block has none (or, in a gated-ungated
        pair, for the gated block: its canonical units carry no down columns)."""
        if layer not in self.canonical_cache:
            mlp = self.model.canonical_mlp(layer)
            usable = mlp is not None and (mlp.gate is not None if self.glu_pair else mlp.down_t is not None)
            self.canonical_cache[layer] = (
                {
                    name: unit_rows(p)
                    for name, p in mlp_profiles(
                        mlp.gate if self.glu_pair else None, mlp.up, None if self.glu_pair else mlp.down_t, self.x
                    ).items()
                }
                if mlp is not None and usable
                else None
            )
        return self.canonical_cache[layer]


def _robust_cell(prof_a: _Profiles, prof_b: _Profiles, pair: tuple[int, int]) -> PairStat:
    """φ_MATCH on one block pair: on the first units, and - when both blocks have canonical units
    (``indexer.unit_selection``) - also on those, the two Bonferroni-combined (the stronger
    statistic reported, with both log10 p)."""
    first = robust_mlp_stat(prof_a(pair[0]), prof_b(pair[1]), layers=pair, normalized=True)
    canon_a, canon_b = prof_a.canonical(pair[0]), prof_b.canonical(pair[1])
    if canon_a is None or canon_b is None:
        return first
    canonical = robust_mlp_stat(canon_a, canon_b, layers=pair, normalized=True)
    best = min(first, canonical, key=lambda s: s.log10_p)
    extra = {
        **best.extra,
        "log10_p_first_units": round(first.log10_p, 4),
        "log10_p_canonical_units": round(canonical.log10_p, 4),
    }
    return PairStat(pair[0], pair[1], best.n, best.rho, log10_bonferroni_min([first.log10_p, canonical.log10_p]), extra)


def _robust_mlp(
    a: ModelEvidence,
    b: ModelEvidence,
    xa: torch.Tensor,
    xb: torch.Tensor,
    plan: list[tuple[int, int]],
    budget: Budget,
) -> tuple[Outcome, list[PairStat], list[list[float]] | None]:
    glu_pair = a.glu and b.glu
    prof_a = _Profiles(a, xa, budget, glu_pair=glu_pair)
    prof_b = _Profiles(b, xb, budget, glu_pair=glu_pair)
    stats: dict[tuple[int, int], PairStat] = {pair: _robust_cell(prof_a, prof_b, pair) for pair in plan}
    localized = None
    if a.depth * b.depth <= budget.localized_max_cells:
        for i in range(a.depth):
            for j in range(b.depth):
                if (i, j) not in stats:
                    stats[(i, j)] = _robust_cell(prof_a, prof_b, (i, j))
        localized = [[round(stats[(i, j)].log10_p, 4) for j in range(b.depth)] for i in range(a.depth)]
    cells = list(stats.values())
    parts = [log10_bonferroni_min([s.log10_p for s in cells])]
    if a.depth == b.depth:
        parts.append(log10_fisher([stats[p].log10_p for p in plan]))
    combined = log10_bonferroni_min(parts)
    outcome = Outcome(
        "mlp_match",
        combined,
        NULL_ROBUST,
        {
            "blocks": [stats[p].as_json() for p in plan],
            "unit_block": [_block(a, p[0], budget) for p in plan][:1],
            "cells_tested": len(cells),
            "localized": localized,
        },
    )
    return outcome, cells, localized


def _layer_map(cells: list[PairStat]) -> list[tuple[int, int, float]]:
    """One-to-one block map maximising the evidence, keeping pairs significant family-wise."""
    if not cells:
        return []
    rows = sorted({c.layer_a for c in cells})
    cols = sorted({c.layer_b for c in cells})
    evidence = np.zeros((len(rows), len(cols)))
    by_cell = {(c.layer_a, c.layer_b): c for c in cells}
    for (i, j), c in by_cell.items():
        evidence[rows.index(i), cols.index(j)] = -c.log10_p
    bar = math.log10(SHARED_BLOCK_FAMILYWISE / len(cells))
    picked = linear_sum_assignment(evidence, maximize=True)
    result = []
    for r, c in zip(*picked):
        cell = by_cell.get((rows[r], cols[c]))
        if cell is not None and cell.log10_p < bar:
            result.append((cell.layer_a, cell.layer_b, round(cell.log10_p, 4)))
    return sorted(result)


def block_units_test(
    a: ModelEvidence,
    b: ModelEvidence,
    *,
    hint: list[tuple[int, int]] | None = None,
    budget: Budget | None = None,
    plan: list[tuple[int, int]] | None = None,
    whole_matrix: bool = True,
) -> tuple[Outcome | None, list[PairStat]]:
    """φ_BLOCK (embedding-free) on the plan (default: the battery's), the hinted block pairs and,
    for small models with ``whole_matrix``, every block pair; the outcome and every cell's statistic.
    None when one MLP is gated and the other is not (their units are not alike)."""
    if not a.depth or not b.depth or a.glu != b.glu:
        return None, []
    budget = budget or Budget()
    plan = plan if plan is not None else _plan(a, b, hint, budget)
    cells = sorted(set(plan) | {(i, j) for i, j in hint or [] if 0 <= i < a.depth and 0 <= j < b.depth})
    localized_run = whole_matrix and a.depth * b.depth <= budget.localized_max_cells
    if localized_run:
        cells = [(i, j) for i in range(a.depth) for j in range(b.depth)]

    def span(model: ModelEvidence, layer: int) -> int | None:
        """The units described: at most the signature's Gram sample (``MAX_UNITS``, the first units),
        whose forms count a unit's own row when it is in the sample - beyond it, units would be told
        apart by their index, and independent blocks would match by position."""
        units = first_units(model, layer, budget)
        if units is None and model.mlp_units(layer) > MAX_UNITS:
            return MAX_UNITS
        return units

    def standardized(model: ModelEvidence, layer: int) -> tuple[np.ndarray, np.ndarray]:
        read, write = model.unit_descriptors(layer, span(model, layer))
        return zscore_columns(read), zscore_columns(write)

    z_a = {i: standardized(a, i) for i in sorted({i for i, _ in cells})}  # z-scored once per block
    z_b = {j: standardized(b, j) for j in sorted({j for _, j in cells})}
    stats = {(i, j): block_units_stat(z_a[i], z_b[j], layers=(i, j), standardized=True) for i, j in cells}
    localized = (
        [[round(stats[(i, j)].log10_p, 4) for j in range(b.depth)] for i in range(a.depth)] if localized_run else None
    )
    parts = [log10_bonferroni_min([s.log10_p for s in stats.values()])]
    diagonal = [stats[(i, i)].log10_p for i in range(a.depth) if (i, i) in stats] if a.depth == b.depth else []
    if diagonal:
        parts.append(log10_fisher(diagonal))
    outcome = Outcome(
        "block_units",
        log10_bonferroni_min(parts),
        NULL_BLOCK,
        {
            "blocks": [stats[p].as_json() for p in sorted(set(plan) & set(stats))],
            "unit_block": [span(a, 0)],
            "cells_tested": len(stats),
            "localized": localized,
        },
    )
    return outcome, list(stats.values())


def _constrained_mlp(
    a: ModelEvidence, b: ModelEvidence, plan: list[tuple[int, int]], budget: Budget
) -> tuple[Outcome | None, list[PairStat]]:
    if a.roles.hidden_size != b.roles.hidden_size:
        return None, []
    blocks = []
    for i, j in plan:
        units = min(first_units(a, i, budget) or a.mlp_units(i), first_units(b, j, budget) or b.mlp_units(j))
        m = match(a.raw_up_rows(i, 0, units), b.raw_up_rows(j, 0, units))
        blocks.append(against_identity(m, layers=(i, j)))
    outcome = Outcome(
        "mlp_up", log10_fisher([s.log10_p for s in blocks]), NULL_CONSTRAINED, {"blocks": [s.as_json() for s in blocks]}
    )
    return outcome, blocks


def _block_evidence(robust: list[PairStat], constrained: list[PairStat]) -> list[PairStat]:
    """Per block pair, the stronger of the robust and constrained tests (Bonferroni over both).

    The robust test describes units through each model's own embedding, so it cannot see blocks
    that were moved under a *different* embedding (a tokenizer transplant); the constrained test,
    which compares weights coordinate by coordinate, still can.
    """
    cells: dict[tuple[int, int], list[PairStat]] = {}
    for stat in [*robust, *constrained]:
        cells.setdefault((stat.layer_a, stat.layer_b), []).append(stat)
    merged = []
    for (i, j), stats_ in cells.items():
        best = min(stats_, key=lambda s: s.log10_p)
        merged.append(PairStat(i, j, best.n, best.rho, log10_bonferroni_min([s.log10_p for s in stats_])))
    return merged


NULL_DIMS = "θ_A ⊥ θ_B with A's initialisation exchangeable over residual dimensions"


def _dims_test(name: str, rows_a: torch.Tensor, rows_b: torch.Tensor) -> Outcome:
    """Constrained test on residual dimensions (columns of embedding or head rows)."""
    stat = against_identity(match(rows_a.t(), rows_b.t()))
    return Outcome(f"{name}_dims", stat.log10_p, NULL_DIMS, stat.as_json())


def run_battery(
    a: ModelEvidence, b: ModelEvidence, *, hint: list[tuple[int, int]] | None = None, budget: Budget | None = None
) -> PairReport:
    """Run the battery on A and B (``hint``: block pairs to test when depths differ)."""
    budget = budget or Budget()
    ids_a, ids_b = shared_probes(a, b)
    profile_a, profile_b = ids_a[: budget.probe_limit], ids_b[: budget.probe_limit]
    tests: list[Outcome] = []
    cells: list[PairStat] = []
    localized = None
    plan = _plan(a, b, hint, budget)
    if len(ids_a) >= MIN_SHARED_PROBES:
        xa, xb = a.probe_rows(profile_a), b.probe_rows(profile_b)
        robust, cells, localized = _robust_mlp(a, b, xa, xb, plan, budget)
        tests.append(robust)
        if a.roles.hidden_size == b.roles.hidden_size:
            tests.append(_dims_test("embedding", a.embedding_rows(ids_a), b.embedding_rows(ids_b)))
            head_a, head_b = a.head_rows(ids_a), b.head_rows(ids_b)
            if head_a is not None and head_b is not None:
                tests.append(_dims_test("head", head_a, head_b))
    constrained, constrained_blocks = _constrained_mlp(a, b, plan, budget)
    if constrained is not None:
        tests.append(constrained)
    deciding = list(tests)
    # φ_BLOCK's whole block-by-block matrix is for blocks φ_MATCH cannot see (under another model's
    # embedding); when φ_MATCH's own matrix already maps every block of the shallower model, the
    # embedding-free test runs on the plan and hints only (its off-plan cells would not change the map)
    explained = localized is not None and len(_layer_map(cells)) == min(a.depth, b.depth)
    block_units, block_cells = block_units_test(a, b, hint=hint, budget=budget, plan=plan, whole_matrix=not explained)
    if block_units is not None:
        tests.append(block_units)  # reported, and its cells feed the block map - but it does not decide
    combined = log10_bonferroni_min([t.log10_p for t in deciding]) if deciding else 0.0
    layer_map = _layer_map(_block_evidence([*cells, *block_cells], constrained_blocks))
    return PairReport(a.label, b.label, tests, combined, layer_map, localized)


def unit_correspondence(a: ModelEvidence, b: ModelEvidence, layer_a: int, layer_b: int) -> dict[str, np.ndarray]:
    """Which MLP units of block ``layer_a`` of A correspond to units of block ``layer_b`` of B.

    Both invariant matchings (gate and |up| responses for GLU MLPs, up and down otherwise) are
    computed; ``b_of[i]`` is B's unit for A's unit i where they agree, -1 elsewhere.  For a
    width-pruned B the A units with a partner are the units B kept.
    """
    ids_a, ids_b = shared_probes(a, b)
    xa, xb = a.probe_rows(ids_a), b.probe_rows(ids_b)
    glu_pair = a.glu and b.glu
    mlp_a, mlp_b = a.mlp(layer_a, down=not glu_pair), b.mlp(layer_b, down=not glu_pair)
    pa = mlp_profiles(mlp_a.gate, mlp_a.up, mlp_a.down_t, xa)
    pb = mlp_profiles(mlp_b.gate, mlp_b.up, mlp_b.down_t, xb)
    if "gate" in pa and "gate" in pb:
        first, second = match(pa["gate"], pb["gate"]), match(pa["up"], pb["up"], absolute=True)
    else:
        first, second = match(pa["up"], pb["up"]), match(pa["down"], pb["down"])
    agreed = np.where(first.b_of == second.b_of, first.b_of, -1)
    return {"b_of": agreed, "matched_a_units": np.flatnonzero(agreed >= 0)}
