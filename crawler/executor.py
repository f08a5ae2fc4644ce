"""Where a refresh's work runs: in this process (``local``, the default) or on Ray (``ray``).

An :class:`Executor` does the two parallel stages of a refresh - the crawl (list, then index each
changed repo) and the confirmation (test each new model against its candidates) - for
:meth:`pedigree.workspace.Workspace.refresh`, which keeps the rest (the run record, the FAISS
catch-up, the lineage graph).  Both executors write the same database: DuckDB is written by this
process only, one repo at a time, in listing order.

- :class:`LocalExecutor`: :func:`~.crawl.crawl` and :func:`~pedigree.indexer.confirm.confirm_new_models`
  as they are;
- :class:`~.executor_ray.RayExecutor` (``pip install 'pedigree[ray]'``): per-repo tasks for the
  reads, fingerprints and evidence, per-pair tasks for the tests, one request budget per Hub host
  shared by every worker (:mod:`.executor_budget`).  Ray is imported only when it is chosen.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Protocol

from pedigree.errors import UsageError

if TYPE_CHECKING:
    from pedigree.crawler.http_retry import RetryPolicy
    from pedigree.results import Confirmation, CrawlSummary, RelatedModel
    from pedigree.storage.crawl import CrawledRepo
    from pedigree.storage.db import Store
    from pedigree.storage.vectors import VectorIndexes

RepoStart = Callable[[int, int, str], None]
RepoDone = Callable[["CrawledRepo"], None]
PairProgress = Callable[[int, int, str], None]
Candidates = Callable[[str], Sequence["RelatedModel"]]
EXECUTORS = ("local", "ray")


class Executor(Protocol):
    """The crawl and the confirmation of a refresh (see the module docstring)."""

    name: str

    def crawl(
        self,
        store: Store,
        endpoint: str | None = None,
        *,
        token: str | None = None,
        limit: int | None = None,
        retry: RetryPolicy | None = None,
        on_start: RepoStart | None = None,
        on_done: RepoDone | None = None,
    ) -> CrawlSummary: ...

    def confirm(
        self,
        store: Store,
        candidates: Candidates,
        model_ids: list[str],
        *,
        progress: PairProgress | None = None,
        indexes: VectorIndexes | None = None,
    ) -> tuple[Confirmation, ...]: ...

    def close(self) -> None: ...


class LocalExecutor:
    """Everything in this process: the single-process crawl and confirmation."""

    name = "local"

    def crawl(
        self,
        store: Store,
        endpoint: str | None = None,
        *,
        token: str | None = None,
        limit: int | None = None,
        retry: RetryPolicy | None = None,
        on_start: RepoStart | None = None,
        on_done: RepoDone | None = None,
    ) -> CrawlSummary:
        from pedigree.crawler.crawl import crawl

        return crawl(store, endpoint, token=token, limit=limit, retry=retry, on_start=on_start, on_done=on_done)

    def confirm(
        self,
        store: Store,
        candidates: Candidates,
        model_ids: list[str],
        *,
        progress: PairProgress | None = None,
        indexes: VectorIndexes | None = None,
    ) -> tuple[Confirmation, ...]:
        from pedigree.indexer.confirm import confirm_new_models

        return confirm_new_models(store, candidates, model_ids, progress=progress, indexes=indexes)

    def close(self) -> None:
        """Nothing to release."""

    def __enter__(self) -> LocalExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def make_executor(
    name: str = "local", *, address: str | None = None, workers: int | None = None, hub_rate: float | None = None
) -> Executor:
    """The executor called ``name``; ``address`` (``auto`` or ``HOST:PORT``: a Ray cluster; none:
    a local Ray), ``workers`` and ``hub_rate`` (requests per second per Hub host, shared) apply
    to ``ray`` only.  UsageError for an unknown name, options ``local`` does not take, or Ray
    missing."""
    if name == "local":
        given = [
            flag
            for flag, value in (("--address", address), ("--workers", workers), ("--hub-rate", hub_rate))
            if value is not None
        ]
        if given:
            raise UsageError(f"{', '.join(given)} apply to --executor ray only")
        return LocalExecutor()
    if name == "ray":
        from pedigree.crawler.executor_ray import RayExecutor, require_ray

        require_ray()
        return RayExecutor(address=address, workers=workers, hub_rate=hub_rate)
    raise UsageError(f"unknown executor {name!r}: choose one of {', '.join(EXECUTORS)}")
