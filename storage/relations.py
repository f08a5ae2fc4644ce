"""Independence-test results in DuckDB: one row per test, one per pair, and the decision.

The decision itself (which pairs are *confirmed related* under multiple-testing control) is made
by ``indexer.confirm`` and written back with :func:`set_decisions`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from pedigree.storage.db import ModelRecord, Store, utc_now


@dataclass(frozen=True)
class Relation:
    model_a: int
    model_b: int
    suite_version: str
    revision_a: str | None
    revision_b: str | None
    log10_p: float
    log10_q: float | None
    confirmed: bool
    layer_map: list
    tests: list[dict]


def save_report(store: Store, a: ModelRecord, b: ModelRecord, suite_version: str, report: dict) -> None:
    """Replace the stored results of pair (a, b) by ``report`` (``log10_p``, ``tests``, ``layer_map``)."""
    now = utc_now()
    with store.transaction() as conn:
        for first, second in ((a.pk, b.pk), (b.pk, a.pk)):
            conn.execute("DELETE FROM pair_tests WHERE model_a = ? AND model_b = ?", [first, second])
            conn.execute("DELETE FROM relations WHERE model_a = ? AND model_b = ?", [first, second])
        rows = [
            (a.pk, b.pk, t["name"], suite_version, a.revision, b.revision, t["log10_p"], json.dumps(t), now)
            for t in report["tests"]
        ]
        if rows:  # DuckDB's executemany refuses an empty parameter list
            conn.executemany("INSERT INTO pair_tests VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
        conn.execute(
            "INSERT INTO relations (model_a, model_b, suite_version, revision_a, revision_b, log10_p, layer_map, "
            "tested_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [
                a.pk,
                b.pk,
                suite_version,
                a.revision,
                b.revision,
                report["log10_p"],
                json.dumps(report["layer_map"]),
                now,
            ],
        )


def get_relation(store: Store, pk_1: int, pk_2: int) -> Relation | None:
    """The stored result for the pair, in whichever order it was tested."""
    row = store.conn.execute(
        "SELECT model_a, model_b, suite_version, revision_a, revision_b, log10_p, log10_q, confirmed, layer_map FROM "
        "relations "
        "WHERE (model_a = ? AND model_b = ?) OR (model_a = ? AND model_b = ?)",
        [pk_1, pk_2, pk_2, pk_1],
    ).fetchone()
    if row is None:
        return None
    tests = store.conn.execute(
        "SELECT detail FROM pair_tests WHERE model_a = ? AND model_b = ? ORDER BY test", [row[0], row[1]]
    ).fetchall()
    return _relation(row, [json.loads(t) for (t,) in tests])


def _relation(row: tuple[Any, ...], tests: list[dict[str, Any]]) -> Relation:
    """A ``relations`` row (model_a, model_b, suite_version, revision_a, revision_b, log10_p,
    log10_q, confirmed, layer_map) with its tests."""
    a, b, suite, revision_a, revision_b, log10_p, log10_q, confirmed, layer_map = row
    return Relation(
        a,
        b,
        suite,
        revision_a,
        revision_b,
        log10_p,
        log10_q,
        confirmed,
        json.loads(layer_map) if layer_map else [],
        tests,
    )


def is_current(relation: Relation | None, a: ModelRecord, b: ModelRecord, suite_version: str) -> bool:
    """True if ``relation`` was computed by this suite version on these exact revisions."""
    if relation is None or relation.suite_version != suite_version:
        return False
    revisions: dict[int | None, str | None] = {
        relation.model_a: relation.revision_a,
        relation.model_b: relation.revision_b,
    }
    return revisions.get(a.pk) == a.revision and revisions.get(b.pk) == b.revision


def relations(store: Store, suite_version: str, *, confirmed_only: bool = False) -> list[Relation]:
    where = "WHERE suite_version = ?" + (" AND confirmed" if confirmed_only else "")
    rows = store.conn.execute(
        "SELECT model_a, model_b, suite_version, revision_a, revision_b, log10_p, log10_q, confirmed, layer_map "
        f"FROM relations {where} ORDER BY model_a, model_b",
        [suite_version],
    ).fetchall()
    return [_relation(row, []) for row in rows]


def confirmed_pairs(store: Store, suite_version: str) -> list[tuple[int, int, float]]:
    """(model_a, model_b, combined log10 p) of every confirmed pair - the lean read a graph build needs."""
    return store.conn.execute(
        "SELECT model_a, model_b, log10_p FROM relations WHERE suite_version = ? AND confirmed ORDER BY model_a, "
        "model_b",
        [suite_version],
    ).fetchall()


def set_decisions(store: Store, decisions: list[tuple[Relation, float, bool]]) -> None:
    """Write (relation, adjusted log10 q, confirmed) for many pairs in one transaction."""
    if not decisions:  # DuckDB's executemany refuses an empty parameter list
        return
    with store.transaction() as conn:
        conn.executemany(
            "UPDATE relations SET log10_q = ?, confirmed = ? WHERE model_a = ? AND model_b = ?",
            [(q, confirmed, r.model_a, r.model_b) for r, q, confirmed in decisions],
        )


def stored_result(store: Store, a: ModelRecord, b: ModelRecord, suite_version: str) -> dict[str, Any] | None:
    """The stored test result for (a, b) in the caller's orientation if it is current (this suite
    version, these revisions), else None."""
    assert a.pk is not None and b.pk is not None  # records read from the store
    relation = get_relation(store, a.pk, b.pk)
    if relation is None or not is_current(relation, a, b, suite_version):
        return None
    flipped = relation.model_a != a.pk
    return {
        "log10_p": relation.log10_p,
        "tests": relation.tests,
        "layer_map": [[j, i, p] for i, j, p in relation.layer_map] if flipped else relation.layer_map,
        "tested_as": [b.id, a.id] if flipped else [a.id, b.id],
        "log10_q": relation.log10_q,
        "confirmed": relation.confirmed if relation.log10_q is not None else None,  # not decided yet
        "cached": True,
    }
