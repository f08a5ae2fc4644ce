"""The library behind the CLI: one data folder (DuckDB + FAISS) and the operations on it.

``pedigree.cli`` is a thin shell over :class:`Workspace`; tests and other programs can use it
directly::

    with Workspace(load_settings("pedigree-data")) as ws:
        ws.ingest("zoo/")
        print(ws.query("atlas/tinyllama-a"))
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from pedigree.config import Settings
from pedigree.crawler.crawl import CrawlResult, RepoDone, RepoStart, crawl, resolve_endpoint
from pedigree.crawler.http_retry import RetryPolicy
from pedigree.errors import ModelNotFoundError, StorageError
from pedigree.indexer.confirm import (
    CONFIRM_CANDIDATES,
    PairProgress,
    confirm_new_models,
    open_record,
    run_tests,
    tested_pair,
)
from pedigree.indexer.fingerprint import fingerprint_version
from pedigree.indexer.independence.activations import activation_test
from pedigree.indexer.independence.inputs import ModelTensors
from pedigree.indexer.independence.logp import log10_bonferroni_min
from pedigree.indexer.lineage.build import build_graph
from pedigree.indexer.local_checkpoint import open_checkpoint
from pedigree.indexer.pipeline import (
    IngestOutcome,
    LayerProgress,
    discover,
    fingerprint_source,
    ingest_checkpoint,
    is_checkpoint_folder,
)
from pedigree.indexer.sources import TensorSource
from pedigree.query.discrepancies import discrepancies
from pedigree.query.graph import export, family_graph, lineage
from pedigree.query.related import (
    FingerprintView,
    compare_views,
    matrix,
    related,
    view_of,
    with_tests,
)
from pedigree.storage.crawl import crawl_counts, finish_run, high_waters, last_runs, start_run
from pedigree.storage.db import STATUS_INDEXED, ModelRecord, Store
from pedigree.storage.lineage import build_info, latest_build
from pedigree.storage.vectors import VectorIndexes

ModelStart = Callable[[int, int, str], None]  # (position, total, model id)
ModelDone = Callable[[IngestOutcome], None]


def _errors(result: CrawlResult) -> list[dict]:
    return [
        {"id": r.repo_id, "status": r.status, "reason": r.reason}
        for r in result.repos
        if r.status not in (STATUS_INDEXED, "unchanged")
    ]


@dataclass(frozen=True)
class IngestResult:
    outcomes: list[IngestOutcome]
    confirmations: list[dict]  # pairs tested, with log10 p / q and the confirmed decision
    graph: dict | None  # the lineage build summary (None when no tests ran)


class Workspace:
    def __init__(self, settings: Settings, *, create: bool = True) -> None:
        self.settings = settings
        if not create and not settings.db_path.exists():
            raise StorageError(
                f"no index at {settings.db_path}: run `pedigree ingest PATH` first (or set --home / PEDIGREE_HOME)"
            )
        self.store = Store(settings.db_path)
        self.indexes = VectorIndexes(self.store, settings.faiss_dir, settings.vectors)
        self.version = fingerprint_version()

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> Workspace:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

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

    def _after_ingest(self, outcomes: list[IngestOutcome], confirm: int, on_pair: PairProgress | None) -> IngestResult:
        """FAISS catch-up, then the tests for the models just seen and the graph of their families."""
        self.sync_indexes()
        confirmations: list[dict] = []
        graph = None
        if confirm > 0:
            ready = [o.id for o in outcomes if o.status in (STATUS_INDEXED, "unchanged")]
            confirmations = confirm_new_models(
                self.store, lambda m: self.related(m, confirm)["related"], ready, progress=on_pair
            )
            graph = self.build_graph()
        return IngestResult(outcomes, confirmations, graph)

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
    ) -> CrawlResult:
        """List what changed on the Hub (or a mirror) since the last crawl and index it by range reads."""
        run = start_run(self.store, "crawl", resolve_endpoint(endpoint))
        try:
            result = crawl(
                self.store, endpoint, token=token, limit=limit, retry=retry, on_start=on_start, on_done=on_done
            )
        except Exception as error:
            finish_run(self.store, run, "failed", {}, [{"error": f"{type(error).__name__}: {error}"}])
            raise
        self.sync_indexes()
        finish_run(self.store, run, "ok", result.counts(), _errors(result))
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
    ) -> dict:
        """crawl -> ingest -> confirm -> graph, recorded as one run; returns the summary."""
        run = start_run(self.store, "refresh", resolve_endpoint(endpoint))
        edges_before = self._edge_count()
        try:
            crawled_result = crawl(
                self.store, endpoint, token=token, limit=limit, retry=retry, on_start=on_start, on_done=on_done
            )
            fresh = [o for o in crawled_result.outcomes if o.status == STATUS_INDEXED]
            after = self._after_ingest(fresh, confirm, on_pair) if fresh else IngestResult([], [], None)
            if not fresh:
                self.sync_indexes()
        except Exception as error:
            finish_run(self.store, run, "failed", {}, [{"error": f"{type(error).__name__}: {error}"}])
            raise
        counts = {
            **crawled_result.counts(),
            "new_models": len(fresh),
            "pairs_tested": len(after.confirmations),
            "new_edges": max(self._edge_count() - edges_before, 0),
        }
        errors = _errors(crawled_result)
        finish_run(self.store, run, "ok", counts, errors)
        return {
            "run": run,
            "endpoint": crawled_result.endpoint,
            "counts": counts,
            "errors": errors,
            "high_water": crawled_result.high_water,
            "graph": after.graph,
            "repos": [
                {
                    "id": r.repo_id,
                    "sha": r.sha,
                    "status": r.status,
                    "reason": r.reason,
                    "bytes_read": r.bytes_read,
                    "size_bytes": r.size_bytes,
                }
                for r in crawled_result.repos
            ],
        }

    def _edge_count(self) -> int:
        build = latest_build(self.store, "full")
        return 0 if build is None else build_info(self.store, build)["edges"] or 0

    def status(self, limit: int = 10) -> dict:
        """The last runs, the crawl high-water marks and what the index holds."""
        models = {}
        for record in self.store.models():
            models[record.status] = models.get(record.status, 0) + 1
        return {
            "runs": last_runs(self.store, limit),
            "high_water": high_waters(self.store),
            "crawl": crawl_counts(self.store),
            "models": models,
        }

    def sync_indexes(self) -> None:
        """Bring the FAISS indexes up to date with DuckDB (incrementally, or by a rebuild)."""
        for kind in ("model", "layer"):
            self.indexes.index(kind, self.version)

    # ---- questions ------------------------------------------------------------------------

    def models(self, status: str | None = None) -> list[ModelRecord]:
        return self.store.models(status)

    def related(self, model_id: str, limit: int = 10) -> dict:
        """The indexed models most related to ``model_id`` (fingerprint candidates, exact scores)."""
        return related(self.store, self.indexes, self.version, model_id, limit)

    def query(self, model_id: str, limit: int = 10, mode: str = "full") -> dict:
        """Related models plus the model's place in the lineage graph (parents, ancestors, ...)."""
        return {**self.related(model_id, limit), **lineage(self.store, model_id, mode)}

    # ---- the lineage graph ----------------------------------------------------------------

    def build_graph(self, mode: str = "full", progress=None) -> dict:
        return build_graph(self.store, self.version, mode=mode, progress=progress)

    def family_graph(self, model_id: str, mode: str = "full"):
        return family_graph(self.store, model_id, mode)

    def export_graph(
        self, fmt: str, path: str | os.PathLike[str], family_of: str | None = None, mode: str = "full"
    ) -> list[Path]:
        return export(self.store, fmt, path, family_of=family_of, mode=mode)

    def discrepancies(self, mode: str = "full") -> dict:
        return discrepancies(self.store, mode)

    def _indexed(self, ref: str) -> ModelRecord | None:
        record = self.store.get_model(ref)
        return record if record is not None and record.status == STATUS_INDEXED else None

    def view(self, ref: str) -> FingerprintView:
        """A model by index id, or else by checkpoint folder path (fingerprinted on the fly)."""
        if self._indexed(ref) is not None:
            return view_of(self.store, ref, self.version)
        if is_checkpoint_folder(Path(ref)):
            with open_checkpoint(ref) as source:
                fingerprint = fingerprint_source(source, ModelRecord(id=ref, status=STATUS_INDEXED))
            return FingerprintView(
                label=ref,
                model=fingerprint.model.numpy(),
                layers=fingerprint.layers.numpy(),
                embedding=fingerprint.embedding.numpy(),
                head=None if fingerprint.head is None else fingerprint.head.numpy(),
            )
        if self.store.get_model(ref) is not None:
            return view_of(self.store, ref, self.version)  # raises with the model's status
        raise ModelNotFoundError(f"{ref!r} is neither an indexed model id nor a checkpoint folder")

    def _source(self, ref: str) -> TensorSource:
        record = self._indexed(ref)
        return open_record(record) if record is not None else open_checkpoint(ref)

    def tests(self, a: str, b: str, hint: list[tuple[int, int]] | None = None) -> dict:
        """The independence tests for A and B (stored and reused when both are indexed)."""
        record_a, record_b = self._indexed(a), self._indexed(b)
        if record_a is not None and record_b is not None:
            result = tested_pair(self.store, record_a, record_b, hint=hint)
        else:
            with ExitStack() as stack:
                source_a = stack.enter_context(self._source(a))
                source_b = stack.enter_context(self._source(b))
                result = run_tests(source_a, source_b, (a, b), hint=hint)
                result["tested_as"] = [a, b]
        result["flipped"] = result["tested_as"][0] != a
        return result

    def _folder(self, ref: str) -> str:
        record = self._indexed(ref)
        return record.source if record is not None else ref

    def activation_test(self, a: str, b: str) -> dict:
        """The robust test on real forward-pass activations (needs ``transformers``)."""
        with ExitStack() as stack:
            source_a = stack.enter_context(self._source(a))
            source_b = stack.enter_context(self._source(b))
            return activation_test(
                ModelTensors(source_a, a), ModelTensors(source_b, b), self._folder(a), self._folder(b)
            )

    def compare(self, a: str, b: str, *, tests: bool = True, activations: bool = False) -> dict:
        comparison = compare_views(self.view(a), self.view(b))
        if not tests:
            return comparison
        hint = [(i, j) for i, j, _ in comparison["layer_map"]]
        results = self.tests(a, b, hint)
        if activations:
            results = dict(results, tests=[*results["tests"], self.activation_test(a, b)])
            results["log10_p"] = round(log10_bonferroni_min([t["log10_p"] for t in results["tests"]]), 4)
        return with_tests(comparison, results)

    def matrix(self, model_ids: Sequence[str] | None = None, *, tests: bool = True) -> dict:
        """All pairwise fingerprint scores (and combined log10 p) among the given models."""
        return matrix(self.store, self.version, model_ids, self.tests if tests else None)
