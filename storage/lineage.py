"""The lineage graph in DuckDB: evidence, versioned family builds, edges.

A *build* (``lineage_builds``) is one assembly run with its time and counts.  It consists of
family versions (``build_families`` -> ``families``): a family whose members and evidence did not
change keeps its family version from the previous build, so each build re-assembles only the
families that changed.  The current graph is the latest build's families and their edges.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from pedigree.storage.db import Store, utc_now
from pedigree.types import Edge


@dataclass(frozen=True)
class PairEvidence:
    model_a: int
    model_b: int
    revision_a: str | None
    revision_b: str | None
    distance: float
    same_coordinates: bool | None
    raw_cosine: float | None
    raw_distance: float | None
    delta_rank_gap: float | None
    detail: dict
    whole_block_distance: float | None = None  # other coordinates: blocks read whole (0: a copy)


@dataclass(frozen=True)
class Family:
    family_id: int
    members_hash: str
    root: int | None
    size: int
    built_at: datetime
    build_id: int


# ---- evidence ---------------------------------------------------------------------------------


def save_pair_evidence(store: Store, rows: list[PairEvidence]) -> None:
    if not rows:
        return
    with store.transaction() as conn:
        for ev in rows:
            conn.execute(
                "DELETE FROM pair_evidence WHERE (model_a = ? AND model_b = ?) OR (model_a = ? AND model_b = ?)",
                [ev.model_a, ev.model_b, ev.model_b, ev.model_a],
            )
        conn.executemany(
            "INSERT INTO pair_evidence VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    e.model_a,
                    e.model_b,
                    e.revision_a,
                    e.revision_b,
                    e.distance,
                    e.same_coordinates,
                    e.raw_cosine,
                    e.raw_distance,
                    e.delta_rank_gap,
                    json.dumps(e.detail),
                    e.whole_block_distance,
                )
                for e in rows
            ],
        )


def pair_evidence(store: Store, *, with_detail: bool = False) -> dict[frozenset, PairEvidence]:
    """Every pair's evidence; the JSON ``detail`` (for people, not for assembly) only on request."""
    rows = store.conn.execute(
        "SELECT model_a, model_b, revision_a, revision_b, distance, same_coordinates, raw_cosine, raw_distance, "
        "delta_rank_gap, "
        f"{'detail' if with_detail else 'NULL'}, whole_block_distance FROM pair_evidence"
    ).fetchall()
    return {
        frozenset((r[0], r[1])): PairEvidence(
            r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], json.loads(r[9]) if r[9] else {}, r[10]
        )
        for r in rows
    }


def save_merge_evidence(store: Store, rows: list[tuple[int, int, int, float, float]]) -> None:
    if not rows:
        return
    with store.transaction() as conn:
        conn.executemany(
            "DELETE FROM merge_evidence WHERE child = ? AND parent_a = ? AND parent_b = ?", [r[:3] for r in rows]
        )
        conn.executemany("INSERT INTO merge_evidence VALUES (?, ?, ?, ?, ?)", rows)


def merge_evidence(store: Store) -> dict[int, list[tuple[int, int, float, float]]]:
    """child -> [(parent_a, parent_b, alpha, residual_ratio)]."""
    out: dict[int, list] = {}
    for child, a, b, alpha, ratio in store.conn.execute("SELECT * FROM merge_evidence").fetchall():
        out.setdefault(child, []).append((a, b, alpha, ratio))
    return out


# ---- builds -----------------------------------------------------------------------------------


def start_build(store: Store, mode: str, params: dict, started_at: datetime | None = None) -> int:
    row = store.conn.execute(
        "INSERT INTO lineage_builds (started_at, mode, params) VALUES (?, ?, ?) RETURNING build_id",
        [started_at or utc_now(), mode, json.dumps(params)],
    ).fetchone()
    assert row is not None  # RETURNING yields the inserted row
    return row[0]


def latest_build(store: Store, mode: str | None = None) -> int | None:
    where, params = ("WHERE finished_at IS NOT NULL" + (" AND mode = ?" if mode else ""), [mode] if mode else [])
    row = store.conn.execute(f"SELECT max(build_id) FROM lineage_builds {where}", params).fetchone()
    return row[0] if row and row[0] is not None else None


def families_of_build(store: Store, build_id: int) -> dict[str, Family]:
    """members hash -> family version, for the families of one build."""
    rows = store.conn.execute(
        "SELECT f.* FROM families f JOIN build_families b ON b.family_id = f.family_id WHERE b.build_id = ?", [build_id]
    ).fetchall()
    return {r[1]: Family(*r) for r in rows}


def write_families(
    store: Store, build_id: int, assembled: Sequence[tuple[str, int | None, list[int], list[Edge]]]
) -> list[int]:
    """Insert assembled family versions (members hash, root, members, edges) in bulk; their ids."""
    import numpy as np

    if not assembled:
        return []
    with store.transaction() as conn:
        ids = [r[0] for r in conn.execute("SELECT nextval('family_id_seq') FROM range(?)", [len(assembled)]).fetchall()]
        built = utc_now()
        conn.register(
            "new_families",
            {
                "family_id": np.asarray(ids, dtype=np.int64),
                "members_hash": np.asarray([a[0] for a in assembled], dtype=object),
                "root": np.asarray([-1 if a[1] is None else a[1] for a in assembled], dtype=np.int64),
                "size": np.asarray([len(a[2]) for a in assembled], dtype=np.int64),
            },
        )
        conn.execute(
            "INSERT INTO families SELECT family_id, members_hash, nullif(root, -1), size, ?, ? FROM new_families",
            [built, build_id],
        )
        member_family = np.concatenate([np.full(len(a[2]), fid, dtype=np.int64) for fid, a in zip(ids, assembled)])
        member_pk = np.concatenate([np.asarray(a[2], dtype=np.int64) for a in assembled])
        conn.register("new_members", {"family_id": member_family, "model_pk": member_pk})
        conn.execute("INSERT INTO family_members SELECT * FROM new_members")
        edges = [(fid, e) for fid, a in zip(ids, assembled) for e in a[3]]
        if edges:
            conn.register(
                "new_edges",
                {
                    "family_id": np.asarray([f for f, _ in edges], dtype=np.int64),
                    "parent": np.asarray([e.parent for _, e in edges], dtype=np.int64),
                    "child": np.asarray([e.child for _, e in edges], dtype=np.int64),
                    "relation": np.asarray([e.relation for _, e in edges], dtype=object),
                    "confidence": np.asarray([e.confidence for _, e in edges], dtype=np.float64),
                    "log10_p": np.asarray(
                        [np.nan if e.log10_p is None else e.log10_p for _, e in edges], dtype=np.float64
                    ),
                    "evidence": np.asarray([json.dumps(e.evidence) for _, e in edges], dtype=object),
                },
            )
            conn.execute(
                "INSERT INTO lineage_edges SELECT family_id, parent, child, relation, confidence, "
                "CASE WHEN isnan(log10_p) THEN NULL ELSE log10_p END, evidence FROM new_edges"
            )
        for name in ("new_families", "new_members") + (("new_edges",) if edges else ()):
            conn.unregister(name)
    return ids


def finish_build(store: Store, build_id: int, family_ids: list[int], rebuilt: int) -> None:
    import numpy as np

    with store.transaction() as conn:
        conn.register(
            "current",
            {
                "build_id": np.full(len(family_ids), build_id, dtype=np.int64),
                "family_id": np.asarray(family_ids, dtype=np.int64),
            },
        )
        conn.execute("INSERT INTO build_families SELECT * FROM current")
        conn.unregister("current")
        counted = conn.execute(
            "SELECT count(*) FROM lineage_edges e JOIN build_families b ON b.family_id = e.family_id WHERE "
            "b.build_id = ?",
            [build_id],
        ).fetchone()
        assert counted is not None  # an aggregate always yields a row
        edges = counted[0]
        conn.execute(
            "UPDATE lineage_builds SET finished_at = ?, families = ?, rebuilt = ?, edges = ? WHERE build_id = ?",
            [utc_now(), len(family_ids), rebuilt, edges, build_id],
        )


# ---- the current graph ------------------------------------------------------------------------


def graph_edges(store: Store, build_id: int, family_id: int | None = None) -> list[tuple[int, Edge]]:
    """(family id, edge) for every edge of a build (optionally one family)."""
    sql = "SELECT e.* FROM lineage_edges e JOIN build_families b ON b.family_id = e.family_id WHERE b.build_id = ?" + (
        " AND e.family_id = ?" if family_id is not None else ""
    )
    rows = store.conn.execute(sql, [build_id] + ([family_id] if family_id is not None else [])).fetchall()
    return [(r[0], Edge(r[1], r[2], r[3], r[4], r[5], json.loads(r[6]) if r[6] else {})) for r in rows]


def family_of_model(store: Store, build_id: int, model_pk: int) -> Family | None:
    row = store.conn.execute(
        "SELECT f.* FROM families f JOIN build_families b ON b.family_id = f.family_id "
        "JOIN family_members m ON m.family_id = f.family_id WHERE b.build_id = ? AND m.model_pk = ?",
        [build_id, model_pk],
    ).fetchone()
    return Family(*row) if row else None


def members(store: Store, family_id: int) -> list[int]:
    return [
        m
        for (m,) in store.conn.execute(
            "SELECT model_pk FROM family_members WHERE family_id = ? ORDER BY model_pk", [family_id]
        ).fetchall()
    ]


def build_info(store: Store, build_id: int) -> dict:
    row = store.conn.execute("SELECT * FROM lineage_builds WHERE build_id = ?", [build_id]).fetchone()
    assert row is not None, f"no lineage build {build_id}"
    keys = ["build_id", "started_at", "finished_at", "mode", "families", "rebuilt", "edges", "params"]
    info = dict(zip(keys, row))
    info["params"] = json.loads(info["params"]) if info["params"] else {}
    return info
