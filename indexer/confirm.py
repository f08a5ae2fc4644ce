"""Confirm candidate pairs with the independence tests and decide which are related.

After ingest, each new model's top-k FAISS candidates (by fingerprint score) are tested with the
battery of ``indexer.independence.suite``; every result is stored in DuckDB with the revisions it
was computed on, and reused while those revisions and the suite version stand.

Multiple-testing control: **Benjamini-Hochberg** at false discovery rate ``FDR_LEVEL`` over every
pair tested with the current suite version.  A pair is *confirmed related* when its BH-adjusted
q-value is below the level: among all confirmed pairs, the expected fraction of pairs that are in
fact independent is at most 1 %.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from pedigree.indexer.independence.inputs import ModelTensors
from pedigree.indexer.independence.logp import log10_benjamini_hochberg
from pedigree.indexer.independence.suite import SUITE_VERSION, Budget, PairReport, run_battery
from pedigree.indexer.openers import open_location
from pedigree.indexer.sources import TensorSource
from pedigree.results import Confirmation, RelatedModel
from pedigree.storage.db import ModelRecord, Store
from pedigree.storage.relations import (
    get_relation,
    is_current,
    relations,
    save_report,
    set_decisions,
)
from pedigree.types import Status

FDR_LEVEL = 0.01
PairProgress = Callable[[int, int, str], None]


def open_record(record: ModelRecord) -> TensorSource:
    """The checkpoint an indexed model was read from: its folder, or its crawled Hub revision."""
    return open_location(record.source, record.id)


def report_json(report: PairReport) -> dict:
    return {
        "log10_p": round(report.log10_p, 4),
        "tests": [t.as_json() for t in report.tests],
        "layer_map": [list(entry) for entry in report.layer_map],
    }


def run_tests(
    a: TensorSource, b: TensorSource, labels: tuple[str, str], *, hint=None, budget: Budget | None = None
) -> dict:
    """The battery on two open checkpoints, as JSON."""
    report = run_battery(ModelTensors(a, labels[0]), ModelTensors(b, labels[1]), hint=hint, budget=budget)
    return report_json(report)


def tested_pair(store: Store, a: ModelRecord, b: ModelRecord, *, hint=None, budget: Budget | None = None) -> dict:
    """Stored results for (a, b) if current, else run the battery, store and return it."""
    assert a.pk is not None and b.pk is not None  # records read from the store
    relation = get_relation(store, a.pk, b.pk)
    if relation is not None and is_current(relation, a, b, SUITE_VERSION):
        flipped = relation.model_a != a.pk
        return {
            "log10_p": relation.log10_p,
            "tests": relation.tests,
            "layer_map": [[j, i, p] for i, j, p in relation.layer_map] if flipped else relation.layer_map,
            "tested_as": [b.id, a.id] if flipped else [a.id, b.id],
            "log10_q": relation.log10_q,
            "confirmed": relation.confirmed,
            "cached": True,
        }
    first, second = (a, b) if a.pk < b.pk else (b, a)
    if hint is not None and first is not a:
        hint = [(j, i) for i, j in hint]
    with open_record(first) as source_a, open_record(second) as source_b:
        result = run_tests(source_a, source_b, (first.id, second.id), hint=hint, budget=budget)
    save_report(store, first, second, SUITE_VERSION, result)
    result["tested_as"] = [first.id, second.id]
    if first is not a:  # report the block map in the caller's orientation
        result["layer_map"] = [[j, i, p] for i, j, p in result["layer_map"]]
    return result


def decide(store: Store, level: float = FDR_LEVEL) -> int:
    """Benjamini-Hochberg over every tested pair; returns how many are confirmed."""
    current = relations(store, SUITE_VERSION)
    q_values = log10_benjamini_hochberg([r.log10_p for r in current])
    bar = math.log10(level)
    set_decisions(store, [(r, q, q < bar) for r, q in zip(current, q_values)])
    return sum(q < bar for q in q_values)


def confirm_new_models(
    store: Store,
    candidates: Callable[[str], Sequence[RelatedModel]],
    model_ids: list[str],
    *,
    progress: PairProgress | None = None,
) -> tuple[Confirmation, ...]:
    """Test each new model against its candidates (``candidates(id)`` -> related models), then
    decide; a pair whose test could not run is reported with its error, never as unrelated."""
    plan: list[tuple[ModelRecord, ModelRecord, list]] = []
    seen: set[frozenset] = set()
    for model_id in model_ids:
        record = store.get_model(model_id)
        if record is None or record.status != Status.INDEXED:
            continue
        for row in candidates(model_id):
            other = store.get_model(row.id)
            if other is None or other.status != Status.INDEXED or frozenset((record.pk, other.pk)) in seen:
                continue
            key = frozenset((record.pk, other.pk))
            seen.add(key)
            plan.append((record, other, [(i, j) for i, j, _ in row.layers]))
    tested: list[tuple[ModelRecord, ModelRecord, str | None]] = []
    for done, (a, b, hint) in enumerate(plan, start=1):
        if progress:
            progress(done, len(plan), f"{a.id} ~ {b.id}")
        try:
            tested_pair(store, a, b, hint=hint)
            tested.append((a, b, None))
        except Exception as error:  # noqa: BLE001 - a pair that cannot be tested must not stop the others
            tested.append((a, b, f"{type(error).__name__}: {error}"))
    decide(store)
    results = []
    for a, b, failure in tested:
        assert a.pk is not None and b.pk is not None  # records read from the store
        relation = None if failure else get_relation(store, a.pk, b.pk)
        if relation is None:
            results.append(Confirmation(a.id, b.id, error=failure or "no stored result"))
        else:
            results.append(Confirmation(a.id, b.id, relation.log10_p, relation.log10_q, relation.confirmed))
    return tuple(results)
