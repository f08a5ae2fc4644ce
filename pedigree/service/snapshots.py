"""The service's reader: read-only workspaces over the newest published snapshot of a data folder.

The serve process never opens the live ``pedigree.duckdb`` (a refresh in another process holds
its write lock); it reads the snapshots that writing processes publish
(:mod:`pedigree.storage.snapshot`).  On every request :meth:`SnapshotReader.workspace`

1. stats ``<home>/snapshots/CURRENT`` (one system call); when the file changed, the newest snapshot
   is opened and becomes current - requests already running keep the one they started with;
2. leases a :class:`~pedigree.workspace.Workspace` over the current snapshot to the calling thread:
   DuckDB connections are not thread-safe, so each concurrent request gets its own connection
   (a pool per snapshot, grown on demand, all sharing one in-process database and one set of FAISS
   indexes); the lease returns it to the pool.

A snapshot that is no longer current is closed when its last lease returns.  Before any snapshot
exists, requests get :class:`NoSnapshotError` (HTTP 503).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pedigree.config import Settings
from pedigree.errors import PedigreeError, StorageError
from pedigree.storage.db import Store
from pedigree.storage.snapshot import (
    CURRENT,
    Snapshot,
    SnapshotIndexes,
    current_snapshot,
    publish_snapshot,
    snapshots_dir,
)
from pedigree.workspace import Workspace


class NoSnapshotError(PedigreeError):
    """No snapshot has been published in the data folder yet."""


@dataclass
class _OpenSnapshot:
    """A snapshot in use: its shared FAISS indexes, idle workspaces and how many are leased."""

    snapshot: Snapshot
    indexes: SnapshotIndexes
    facts: dict[str, Any]
    idle: list[Workspace] = field(default_factory=list)
    leased: int = 0
    retired: bool = False

    def close(self) -> None:
        for ws in self.idle:
            ws.close(publish=False)
        self.idle.clear()
        self.indexes.store.close()


def snapshot_facts(store: Store, snapshot: Snapshot) -> dict[str, Any]:
    """What identifies a snapshot's answers: its name and publication time, the store generation
    (changes with every model's vectors), the newest graph build and the number of tested pairs.
    ``version`` (the last three) is what ETags are made of."""
    build = store.conn.execute("SELECT max(build_id) FROM lineage_builds").fetchone()
    tested = store.conn.execute("SELECT count(*) FROM relations").fetchone()
    generation = store.generation()
    info = snapshot.info()
    return {
        "name": snapshot.name,
        "published_at": info.get("published_at"),
        "generation": generation,
        "graph_build": build[0] if build else None,
        "tested_pairs": int(tested[0]) if tested else 0,
        "version": f"{generation}.{build[0] if build else 0}.{int(tested[0]) if tested else 0}",
    }


class SnapshotReader:
    """Read-only workspaces over the newest snapshot of ``home`` (thread-safe)."""

    def __init__(self, home: str | os.PathLike[str]) -> None:
        self.home = Path(home)
        self.settings = Settings(home=self.home)
        self._lock = threading.Lock()
        self._current: _OpenSnapshot | None = None
        self._seen: tuple[int, int, int] | None = None  # CURRENT's (inode, mtime ns, size)

    def _pointer_state(self) -> tuple[int, int, int] | None:
        try:
            stat = os.stat(snapshots_dir(self.home) / CURRENT)
        except OSError:
            return None
        return (stat.st_ino, stat.st_mtime_ns, stat.st_size)

    def _open(self, snapshot: Snapshot) -> _OpenSnapshot:
        store = Store(snapshot.db_path, read_only=True)
        try:
            facts = snapshot_facts(store, snapshot)
        except BaseException:
            store.close()
            raise
        return _OpenSnapshot(snapshot, SnapshotIndexes(store, snapshot.faiss_dir, self.settings.vectors), facts)

    def _refresh(self) -> None:
        """Switch to the snapshot CURRENT names if it changed since the last look."""
        state = self._pointer_state()
        if state == self._seen and self._current is not None:
            return
        with self._lock:
            state = self._pointer_state()
            if state == self._seen and self._current is not None:
                return
            snapshot = current_snapshot(self.home)
            if snapshot is None:
                return  # none yet, or CURRENT names a removed folder: keep what is open
            if self._current is None or self._current.snapshot.name != snapshot.name:
                opened = self._open(snapshot)
                previous, self._current = self._current, opened
                if previous is not None:
                    previous.retired = True
                    if previous.leased == 0:
                        previous.close()
            self._seen = state

    def current(self) -> dict[str, Any] | None:
        """The facts of the snapshot requests are answered from now (None: no snapshot yet)."""
        self._refresh()
        opened = self._current
        return None if opened is None else dict(opened.facts)

    @contextmanager
    def workspace(self) -> Iterator[tuple[Workspace, dict[str, Any]]]:
        """A read-only workspace over the current snapshot and that snapshot's facts, for the
        calling thread alone until the block ends."""
        self._refresh()
        with self._lock:
            opened = self._current
            if opened is None:
                raise NoSnapshotError(
                    f"no snapshot of {self.home} has been published yet: run `pedigree ingest` or `pedigree refresh`"
                )
            opened.leased += 1
            ws = opened.idle.pop() if opened.idle else None
        try:
            if ws is None:
                settings = Settings(home=opened.snapshot.path, vectors=self.settings.vectors)
                ws = Workspace(settings, read_only=True, indexes=opened.indexes)
            yield ws, opened.facts
        finally:
            with self._lock:
                opened.leased -= 1
                if ws is not None:
                    opened.idle.append(ws)
                if opened.retired and opened.leased == 0:
                    opened.close()

    def close(self) -> None:
        with self._lock:
            if self._current is not None:
                self._current.retired = True
                if self._current.leased == 0:
                    self._current.close()
                self._current = None
                self._seen = None


def ensure_snapshot(home: str | os.PathLike[str]) -> str:
    """Publish a first snapshot of a data folder that has an index but no snapshot (one written
    before snapshots existed); returns one line saying what was done."""
    settings = Settings(home=Path(home))
    if current_snapshot(settings.home) is not None:
        return "snapshot present"
    if not settings.db_path.exists():
        return f"no index at {settings.db_path} yet: answers start with the first ingest or refresh"
    try:
        store = Store(settings.db_path)
    except StorageError as error:
        return f"no snapshot published (the index is busy: {error}); answers start when the writer finishes"
    try:
        snapshot = publish_snapshot(store, settings.faiss_dir, settings.home)
    finally:
        store.close()
    return f"published snapshot {snapshot.name}"


def reader_for(app: Any, home: str | os.PathLike[str] | None) -> SnapshotReader:
    """The app's one reader (``app.state.snapshots``), created on first use: the API and the
    image routes share it."""
    from pedigree.config import resolve_home

    reader = getattr(app.state, "snapshots", None)
    if reader is None:
        reader = SnapshotReader(resolve_home(home))
        app.state.snapshots = reader
    return reader
