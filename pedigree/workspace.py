"""The library API: one data folder (DuckDB + FAISS) and the operations on it.

``pedigree.cli`` is a thin shell over :class:`Workspace`; tests and other programs use it
directly and get typed results (:mod:`pedigree.results`, each with ``to_json()``)::

    from pedigree import Workspace, load_settings

    with Workspace(load_settings("pedigree-data")) as ws:
        ws.ingest("zoo/")
        answer = ws.query("atlas/tinyllama-a")
        print([parent.id for parent in answer.parents])

Opening a workspace costs a DuckDB connection; torch, faiss and the crawler load only when an
operation needs them (``status`` and ``models`` never do).

A workspace that changed the index (ingest, crawl, refresh, a graph build, a newly stored test)
publishes a read-only snapshot of the data folder when it closes (:mod:`pedigree.storage.snapshot`);
the HTTP service reads only snapshots, through ``Workspace(settings, read_only=True)`` over a
snapshot folder, so a refresh in another process never blocks it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pedigree.config import Settings
from pedigree.errors import StorageError
from pedigree.results import (
    Confirmation,
    CrawlSummary,
    Discrepancies,
    GraphBuild,
    IngestOutcome,
    IngestResult,
    LineageAnswer,
    RefreshSummary,
    Related,
    RepoError,
    RepoReport,
    StatusReport,
)
from pedigree.storage.crawl import crawl_counts, finish_run, high_waters, last_runs, start_run
from pedigree.storage.db import ModelRecord, Store
from pedigree.storage.evidence import evidence_summary
from pedigree.storage.lineage import build_info, latest_build
from pedigree.types import RunStatus, Status
from pedigree.workspace_compare import Comparisons

if TYPE_CHECKING:
    import networkx as nx

    from pedigree.crawler.executor import Executor
    from pedigree.crawler.http_retry import RetryPolicy
    from pedigree.storage.vectors import VectorIndexes

ModelStart = Callable[[int, int, str], None]  # (position, total, model id)
ModelDone = Callable[[IngestOutcome], None]
LayerProgress = Callable[[int, int], None]  # (blocks done, blocks)
PairProgress = Callable[[int, int, str], None]  # (pairs done, pairs, label)
RepoStart = Callable[[int, int, str], None]
RepoDone = Callable[[Any], None]
BuildProgress = Callable[[str, int, int], None]

CONFIRM_CANDIDATES = 5  # each new model is tested against its 5 best candidates
COUNTED = (Status.INDEXED, Status.UNCHANGED, Status.FAILED, Status.UNSUPPORTED)
LINEAGE_ONLY = ("adapter", "unet")  # stored statuses of models placed in the graph without a fingerprint


def _errors(result: CrawlSummary) -> tuple[RepoError, ...]:
    settled = (Status.INDEXED, Status.UNCHANGED)
    return tuple(RepoError(r.id, r.status, r.reason) for r in result.repos if r.status not in settled)


class Workspace(Comparisons):
    """One data folder: ``Workspace(settings, create=False)`` refuses a folder with no index.

    ``read_only=True`` opens a published snapshot folder (or any folder) without writing: no
    migration, FAISS indexes rebuilt in memory when stale (``indexes``: share one such set between
    workspaces over the same snapshot), comparisons not stored, operations that write refused.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        create: bool = True,
        read_only: bool = False,
        indexes: VectorIndexes | None = None,
    ) -> None:
        self.settings = settings
        self.read_only = read_only
        if settings.home.exists() and not settings.home.is_dir():
            raise StorageError(f"--home {settings.home} is a file, not a data folder")
        if (read_only or not create) and not settings.db_path.exists():
            raise StorageError(
                f"no index at {settings.db_path}: run `pedigree ingest PATH` first (or set --home / PEDIGREE_HOME)"
            )
        self.store = Store(settings.db_path, read_only=read_only)
        self._indexes = indexes
        self._changed = False  # publish a snapshot on close

    def _writes(self) -> None:
        """Called by every operation that writes: refused read-only, else published on close."""
        if self.read_only:
            raise StorageError(f"{self.settings.home} is open read-only (a published snapshot)")
        self._changed = True

    def publish(self) -> None:
        """Publish a snapshot of the data folder now (:func:`pedigree.storage.snapshot.publish_snapshot`)."""
        from pedigree.storage.snapshot import publish_snapshot

        publish_snapshot(self.store, self.settings.faiss_dir, self.settings.home)
        self._changed = False

    def close(self, *, publish: bool = True) -> None:
        """Close the database, publishing a snapshot first if this workspace changed the index."""
        try:
            if publish and self._changed:
                self.publish()
        finally:
            self.store.close()

    def __enter__(self) -> Workspace:
        return self

    def __exit__(self, *exc: object) -> None:
        if exc[0] is None:
            self.close()
            return
        try:  # an operation failed: what it wrote before failing is published, best effort
            self.close()
        except Exception:  # noqa: BLE001 - the operation's own error is the one to report
            self.store.close()

    @property
    def indexes(self) -> VectorIndexes:
        if self._indexes is None:
            if self.read_only:
                from pedigree.storage.snapshot import SnapshotIndexes

                self._indexes = SnapshotIndexes(self.store, self.settings.faiss_dir, self.settings.vectors)
            else:
                from pedigree.storage.vectors import VectorIndexes

                self._indexes = VectorIndexes(self.store, self.settings.faiss_dir, self.settings.vectors)
        return self._indexes

    # ---- ingest ---------------------------------------------------------------------------

    def ingest(
        self,
        path: str | os.PathLike[str],
        model_id: str | None = None,
        *,
        force: bool = False,
        confirm: int = CONFIRM_CANDIDATES,
        on_start: ModelStart | None = None,
        on_layer: LayerProgress | None = None,
        on_done: ModelDone | None = None,
        on_pair: PairProgress | None = None,
    ) -> IngestResult:
        """Index every checkpoint under ``path``, test each against its ``confirm`` best candidates
        (0: no tests) and rebuild the lineage graph of the families that changed."""
        import pedigree.crawler.remote  # noqa: F401 - a PEFT adapter's crawled base is reopened by its URI
        from pedigree.indexer.pipeline import discover, ingest_checkpoint

        self._writes()
        found = discover(path, model_id)
        outcomes = []
        for position, (found_id, folder) in enumerate(found, start=1):
            if on_start:
                on_start(position, len(found), found_id)
            outcome = ingest_checkpoint(self.store, found_id, folder, force=force, progress=on_layer)
            outcomes.append(outcome)
            if on_done:
                on_done(outcome)
        return self._after_ingest(outcomes, confirm, on_pair)

    def _after_ingest(
        self,
        outcomes: list[IngestOutcome],
        confirm: int,
        on_pair: PairProgress | None,
        executor: Executor | None = None,
    ) -> IngestResult:
        """FAISS catch-up, then the tests for the models just seen (on ``executor``, by default
        here) and the graph of their families."""
        self.sync_indexes()
        confirmations: tuple[Confirmation, ...] = ()
        graph = None
        if confirm > 0:
            from pedigree.indexer.confirm import confirm_new_models

            ready = [o.id for o in outcomes if o.status in (Status.INDEXED, Status.UNCHANGED)]
            confirmations = (executor.confirm if executor else confirm_new_models)(
                self.store, lambda m: self.related(m, confirm).related, ready, progress=on_pair, indexes=self.indexes
            )
            graph = self.build_graph()
        counts = {str(status): sum(o.status == status for o in outcomes) for status in COUNTED}
        return IngestResult(tuple(outcomes), counts, confirmations, graph)

    # ---- the Hub ----------------------------------------------------------------------------

    def crawl(
        self,
        endpoint: str | None = None,
        *,
        token: str | None = None,
        limit: int | None = None,
        retry: RetryPolicy | None = None,
        on_start: RepoStart | None = None,
        on_done: RepoDone | None = None,
    ) -> CrawlSummary:
        """List what changed on the Hub (or a mirror) since the last crawl and index it by range reads."""
        from pedigree.crawler.crawl import crawl, resolve_endpoint

        self._writes()
        run = start_run(self.store, "crawl", resolve_endpoint(endpoint))
        try:
            result = crawl(
                self.store, endpoint, token=token, limit=limit, retry=retry, on_start=on_start, on_done=on_done
            )
        except BaseException as error:
            finish_run(self.store, run, RunStatus.FAILED, {}, [{"error": f"{type(error).__name__}: {error}"}])
            raise
        self.sync_indexes()
        finish_run(self.store, run, RunStatus.OK, result.counts, [e.to_json() for e in _errors(result)])
        return result

    def refresh(
        self,
        endpoint: str | None = None,
        *,
        token: str | None = None,
        limit: int | None = None,
        confirm: int = CONFIRM_CANDIDATES,
        retry: RetryPolicy | None = None,
        on_start: RepoStart | None = None,
        on_done: RepoDone | None = None,
        on_pair: PairProgress | None = None,
        executor: Executor | None = None,
    ) -> RefreshSummary:
        """crawl -> ingest -> confirm -> graph, recorded as one run; ``executor`` runs the crawl
        and the tests (:mod:`pedigree.crawler.executor`: ``local`` by default, or Ray)."""
        from pedigree.crawler.crawl import crawl, resolve_endpoint

        self._writes()
        run = start_run(self.store, "refresh", resolve_endpoint(endpoint))
        edges_before = self._edge_count()
        try:
            crawled = (executor.crawl if executor else crawl)(
                self.store, endpoint, token=token, limit=limit, retry=retry, on_start=on_start, on_done=on_done
            )
            fresh = [o for o in crawled.outcomes if o.status == Status.INDEXED]
            if fresh:
                after = self._after_ingest(fresh, confirm, on_pair, executor)
            else:
                self.sync_indexes()
                after = IngestResult((), {})
        except BaseException as error:
            finish_run(self.store, run, RunStatus.FAILED, {}, [{"error": f"{type(error).__name__}: {error}"}])
            raise
        counts = {
            **crawled.counts,
            "new_models": len(fresh),
            "pairs_tested": sum(c.error is None for c in after.confirmations),
            "pairs_not_tested": sum(c.error is not None for c in after.confirmations),
            "new_edges": max(self._edge_count() - edges_before, 0),
        }
        untested = tuple(RepoError(f"{c.a} ~ {c.b}", "not tested", c.error) for c in after.confirmations if c.error)
        errors = _errors(crawled) + untested
        finish_run(self.store, run, RunStatus.OK, counts, [e.to_json() for e in errors])
        return RefreshSummary(run, crawled.endpoint, counts, errors, crawled.high_water, after.graph, crawled.repos)

    def ingest_hub_repo(
        self,
        repo_id: str,
        endpoint: str | None = None,
        *,
        token: str | None = None,
        confirm: int = CONFIRM_CANDIDATES,
        retry: RetryPolicy | None = None,
    ) -> RefreshSummary:
        """Index one Hub repo by id at its current revision (no listing), confirm it and rebuild
        the graph of its family: a refresh of one repo, recorded as a run of kind ``ingest``."""
        from pedigree.crawler.crawl import crawl_repo, resolve_endpoint
        from pedigree.crawler.crawl_one import fetch_listed_repo
        from pedigree.crawler.http_client import hub_client

        self._writes()
        endpoint = resolve_endpoint(endpoint)
        token = token or os.environ.get("HF_TOKEN") or None
        run = start_run(self.store, "ingest", endpoint)
        try:
            with hub_client(token) as client:
                listed = fetch_listed_repo(client, endpoint, repo_id, token=token, retry=retry)
                state, outcome = crawl_repo(self.store, endpoint, listed, client=client, token=token, retry=retry)
            fresh = [outcome] if outcome is not None and outcome.status in (Status.INDEXED, Status.UNCHANGED) else []
            after = self._after_ingest(fresh, confirm, None) if fresh else IngestResult((), {})
        except BaseException as error:
            finish_run(self.store, run, RunStatus.FAILED, {}, [{"error": f"{type(error).__name__}: {error}"}])
            raise
        report = RepoReport(state.repo_id, state.sha, state.status, state.reason, state.bytes_read, state.size_bytes)
        counts = {state.status: 1, "new_models": len(fresh), "pairs_tested": len(after.confirmations)}
        errors = () if state.status == Status.INDEXED else (RepoError(state.repo_id, state.status, state.reason),)
        finish_run(self.store, run, RunStatus.OK, counts, [e.to_json() for e in errors])
        return RefreshSummary(run, endpoint, counts, errors, None, after.graph, (report,))

    def _edge_count(self) -> int:
        build = latest_build(self.store, "full")
        return 0 if build is None else build_info(self.store, build)["edges"] or 0

    def status(self, limit: int = 10) -> StatusReport:
        """The last runs, the crawl high-water marks and what the index holds."""
        models: dict[str, int] = {}
        for record in self.store.models():
            models[record.status] = models.get(record.status, 0) + 1
        return StatusReport(
            tuple(last_runs(self.store, limit)),
            tuple(high_waters(self.store)),
            crawl_counts(self.store),
            models,
            evidence_summary(self.store),
        )

    def sync_indexes(self) -> None:
        """Bring the FAISS indexes up to date with DuckDB (incrementally, or by a rebuild)."""
        for kind in ("model", "layer"):
            self.indexes.index(kind, self.version)

    # ---- questions ------------------------------------------------------------------------

    def models(self, status: str | None = None) -> list[ModelRecord]:
        return self.store.models(status)

    def related(self, model_id: str, limit: int = 10) -> Related:
        """The indexed models most related to ``model_id`` (fingerprint candidates, exact scores)."""
        from pedigree.query.related import related

        return related(self.store, self.indexes, self.version, model_id, limit)

    def query(self, model_id: str, limit: int = 10, mode: str = "full") -> LineageAnswer:
        """Related models plus the model's place in the lineage graph (parents, ancestors, ...).
        A PEFT adapter or a UNet has no fingerprint to search with (``LINEAGE_ONLY``): its answer
        is its place in the graph, with no related list."""
        from pedigree.query.graph import lineage

        record = self.store.get_model(model_id)
        if record is not None and str(record.status) in LINEAGE_ONLY:
            return LineageAnswer.of(Related(model_id, ()), lineage(self.store, model_id, mode))
        return LineageAnswer.of(self.related(model_id, limit), lineage(self.store, model_id, mode))

    # ---- the lineage graph ----------------------------------------------------------------

    def build_graph(self, mode: str = "full", progress: BuildProgress | None = None) -> GraphBuild:
        import pedigree.crawler.remote  # noqa: F401 - registers the reader of crawled (http) sources
        from pedigree.indexer.lineage.build import build_graph

        self._writes()
        return build_graph(self.store, self.version, mode=mode, progress=progress)

    def family_graph(self, model_id: str, mode: str = "full") -> nx.DiGraph | None:
        from pedigree.query.graph import family_graph

        return family_graph(self.store, model_id, mode)

    def export_graph(
        self, fmt: str, path: str | os.PathLike[str], family_of: str | None = None, mode: str = "full"
    ) -> list[Path]:
        from pedigree.query.graph import export

        return export(self.store, fmt, path, family_of=family_of, mode=mode)

    def discrepancies(self, mode: str = "full") -> Discrepancies:
        from pedigree.query.discrepancies import discrepancies

        return discrepancies(self.store, mode)
