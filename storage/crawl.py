"""Crawl state in DuckDB: the high-water mark per endpoint, what each repo was last crawled at,
and the record of every run.

Each repo's row is written in one statement after its work is committed (the model and its
vectors by ``Store.save_model``), and the high-water mark only after a whole listing has been
worked through; so a run killed at any point leaves a state the next run simply continues from.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

from pedigree.results import HighWater, RunRecord
from pedigree.storage.db import Store, naive_utc, utc_now
from pedigree.types import RunStatus, Status


@dataclass(frozen=True)
class CrawledRepo:
    endpoint: str
    repo_id: str
    sha: str | None
    last_modified: datetime | None
    created_at: datetime | None
    status: str
    reason: str | None = None
    base_model: list[str] | None = None
    base_model_relation: str | None = None
    bytes_read: int = 0
    size_bytes: int | None = None
    attempted_at: datetime | None = None


def high_water(store: Store, endpoint: str) -> datetime | None:
    row = store.conn.execute("SELECT high_water FROM crawl_state WHERE endpoint = ?", [endpoint]).fetchone()
    return row[0] if row else None


def set_high_water(store: Store, endpoint: str, mark: datetime | None) -> None:
    store.conn.execute("INSERT OR REPLACE INTO crawl_state VALUES (?, ?, ?)", [endpoint, naive_utc(mark), utc_now()])


def crawled(store: Store, endpoint: str, repo_id: str) -> CrawledRepo | None:
    row = store.conn.execute(
        "SELECT * FROM crawl_models WHERE endpoint = ? AND repo_id = ?", [endpoint, repo_id]
    ).fetchone()
    if row is None:
        return None
    values = list(row)
    values[7] = json.loads(values[7]) if values[7] else None
    return CrawledRepo(*values)


def is_done(previous: CrawledRepo | None, sha: str | None) -> bool:
    """True when the repo was already crawled at this sha to a final status (nothing to fetch)."""
    return previous is not None and previous.sha == sha and Status(previous.status).final


def save_crawled(store: Store, repo: CrawledRepo) -> None:
    store.conn.execute(
        "INSERT OR REPLACE INTO crawl_models VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            repo.endpoint,
            repo.repo_id,
            repo.sha,
            naive_utc(repo.last_modified),
            naive_utc(repo.created_at),
            repo.status,
            repo.reason,
            json.dumps(repo.base_model) if repo.base_model is not None else None,
            repo.base_model_relation,
            repo.bytes_read,
            repo.size_bytes,
            repo.attempted_at or utc_now(),
        ],
    )


def crawl_counts(store: Store, endpoint: str | None = None) -> dict[str, int]:
    where, params = ("WHERE endpoint = ?", [endpoint]) if endpoint else ("", [])
    return dict(
        store.conn.execute(
            f"SELECT status, count(*) FROM crawl_models {where} GROUP BY status ORDER BY status", params
        ).fetchall()
    )


# ---- runs -------------------------------------------------------------------------------------


def start_run(store: Store, kind: str, endpoint: str | None) -> int:
    row = store.conn.execute(
        "INSERT INTO runs (kind, endpoint, started_at, status) VALUES (?, ?, ?, ?) RETURNING run_id",
        [kind, endpoint, utc_now(), RunStatus.RUNNING],
    ).fetchone()
    assert row is not None  # RETURNING yields the inserted row
    return row[0]


def finish_run(store: Store, run_id: int, status: RunStatus, counts: dict, errors: list[dict]) -> None:
    store.conn.execute(
        "UPDATE runs SET finished_at = ?, status = ?, counts = ?, errors = ? WHERE run_id = ?",
        [utc_now(), status, json.dumps(counts), json.dumps(errors), run_id],
    )


def last_runs(store: Store, limit: int = 10) -> list[RunRecord]:
    rows = store.conn.execute(
        "SELECT run_id, kind, endpoint, started_at, finished_at, status, counts, errors FROM runs "
        "ORDER BY run_id DESC LIMIT ?",
        [limit],
    ).fetchall()
    return [
        RunRecord(
            run_id=run_id,
            kind=kind,
            endpoint=endpoint,
            started_at=str(started),
            finished_at=str(finished) if finished else None,
            status=status,
            counts=json.loads(counts) if counts else {},
            errors=json.loads(errors) if errors else [],
        )
        for run_id, kind, endpoint, started, finished, status, counts, errors in rows
    ]


def high_waters(store: Store) -> list[HighWater]:
    rows = store.conn.execute("SELECT endpoint, high_water, updated_at FROM crawl_state ORDER BY endpoint")
    return [HighWater(e, str(h) if h else None, str(u)) for e, h, u in rows.fetchall()]
