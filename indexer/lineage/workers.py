"""Assembling many families: each family is an independent job, run in worker processes when
there are enough of them to pay for starting the processes.

A :class:`FamilyJob` carries everything the pure assembly needs (nodes, pair evidence, merge
fits, mode) plus, when the sibling-vs-child refinement may read weights, the records of the
family's models and their evidence files so that a worker can open them itself (read-only; no
database access happens in a worker, and no checkpoint is opened).  Workers are *spawned*, not
forked: the parent holds a DuckDB connection and torch thread pools, neither of which survives a fork safely.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

from pedigree.errors import EvidenceMissingError
from pedigree.indexer.evidence_file import EvidenceFile
from pedigree.indexer.lineage.assemble import Node, Pair, assemble
from pedigree.indexer.lineage.evidence import update_cosines
from pedigree.indexer.stored_model import StoredModel
from pedigree.storage.db import ModelRecord
from pedigree.types import Edge

PARALLEL_FROM = 1000  # families to assemble before worker processes are worth their start-up


class Models:
    """Stored evidence per model (``indexer.stored_model``), opened once for the life of one build
    (or one job): ``files`` maps a model's pk to its evidence file; nothing opens a checkpoint."""

    def __init__(self, records: dict[int, ModelRecord], files: dict[int, str]) -> None:
        self.records, self.files = records, files
        self.open: dict[int, StoredModel] = {}

    def __call__(self, pk: int) -> StoredModel:
        if pk not in self.open:
            if pk not in self.files:
                raise EvidenceMissingError(f"{self.records[pk].id}: evidence missing: source unavailable")
            self.open[pk] = StoredModel(EvidenceFile(Path(self.files[pk])), self.records[pk].id)
        return self.open[pk]

    def close(self) -> None:
        for model in self.open.values():
            model.close()
        self.open.clear()


def geometry_from(models: Models) -> Callable[[int, int, int], tuple[float, float] | None]:
    """(child, parent, grandparent) -> update cosines read through ``models``, cached; None where
    not computable."""
    cache: dict[tuple[int, int, int], tuple[float, float] | None] = {}

    def cosines(child: int, parent: int, grandparent: int) -> tuple[float, float] | None:
        key = (child, parent, grandparent)
        if key not in cache:
            try:
                cache[key] = update_cosines(models(child), models(parent), models(grandparent))
            except Exception:  # noqa: BLE001 - no samples, no refinement
                cache[key] = None
        return cache[key]

    return cosines


@dataclass(frozen=True)
class FamilyJob:
    digest: str
    group: list[int]
    nodes: dict[int, Node]
    pairs: dict[frozenset, Pair]
    merges: dict[int, list]
    mode: str
    records: dict[int, ModelRecord] | None = None  # present when stored evidence may be read
    files: dict[int, str] | None = None  # the records' evidence files


Assembled = tuple[str, int, list[int], list[Edge]]  # (digest, root, members, edges)


def assemble_job(job: FamilyJob) -> Assembled:
    models = Models(job.records, job.files or {}) if job.records else None
    try:
        root, edges = assemble(
            job.nodes, job.pairs, job.merges, job.mode, geometry=geometry_from(models) if models else None
        )
    finally:
        if models:
            models.close()
    return job.digest, root, job.group, edges


def default_workers() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def assemble_families(jobs: list[FamilyJob], workers: int | None = None) -> Iterator[Assembled]:
    """Assemble every job (in order), in ``workers`` processes when there are enough jobs."""
    workers = default_workers() if workers is None else workers
    if workers <= 1 or len(jobs) < PARALLEL_FROM:
        yield from map(assemble_job, jobs)
        return
    with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
        yield from pool.map(assemble_job, jobs, chunksize=max(1, len(jobs) // (workers * 16)))
