"""The refresh on Ray: per-repo tasks index, per-pair tasks test, this process writes DuckDB.

The driver (the process running ``pedigree refresh --executor ray``) walks the listing exactly as
:func:`~.crawl.crawl` does and keeps its state (skips, ``--limit``, the high-water mark, adapters
after the rest).  Each repo whose weights must be read becomes a task (:func:`~.executor_work.index_repo`:
header reads, fingerprint, block signatures, evidence written to the data folder's shared
``evidence/``); the repos the driver settles without weights (already indexed at this sha, PEFT
adapters checked against their base, repos with no weights pedigree reads) stay on the driver.
At most ``workers`` tasks are at work at once and their results are committed **in listing
order** as they come (:class:`~.executor_window.OrderedWindow`), one repo per commit: the database
is the one the single-process crawl writes, model keys included, and a run killed at any point
loses at most the repos in flight (they are not recorded, so the next run does them).  A worker
lost mid-task leaves its repo ``retry``.

The tests: the driver plans the pairs as :func:`~pedigree.indexer.confirm.confirm_new_models` does
(:func:`~pedigree.indexer.confirm.plan_pairs`), makes sure both evidence files exist, and sends each pair to
a task (:func:`~.executor_work.battery_on_evidence`); it stores each result, then runs
``confirm_new_models`` itself, which finds every result stored and makes the decisions (Holm).

Every HTTP request - the driver's listing and every worker's reads - first asks one
:class:`~.executor_budget.HostBudget` actor (per run) for its slot on that host, and a 429 / 5xx
with ``Retry-After`` pauses the host for every worker.
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import httpx

from pedigree.crawler.crawl import (
    DEFAULT_BUDGET_FACTOR,
    MAX_REJECTED_REPORTED,
    _Frontier,
    _Run,
    _summary,
    crawl_repo,
    resolve_endpoint,
)
from pedigree.crawler.crawl_adapter import AdapterQueue
from pedigree.crawler.executor_budget import DEFAULT_BURST, DEFAULT_RATE, HostBudget, budgeted
from pedigree.crawler.executor_window import OrderedWindow
from pedigree.crawler.executor_work import (
    RepoJob,
    RepoWork,
    battery_on_evidence,
    commit_repo,
    index_repo,
    lost_work,
    needs_worker,
)
from pedigree.crawler.http_client import hub_client
from pedigree.crawler.http_retry import RetryPolicy
from pedigree.crawler.listing import ListedRepo, listing_pages
from pedigree.errors import EvidenceMissingError, RemoteError, UsageError
from pedigree.indexer.confirm import confirm_new_models, default_indexes, plan_pairs
from pedigree.indexer.evidence_store import ensure_evidence, evidence_folder
from pedigree.indexer.independence.summary import SUITE_VERSION
from pedigree.results import Confirmation, CrawlSummary
from pedigree.storage.crawl import crawled, high_water, is_done, set_high_water
from pedigree.storage.db import ModelRecord, Store
from pedigree.storage.relations import save_report, stored_result
from pedigree.storage.vectors import VectorIndexes
from pedigree.types import Status

if TYPE_CHECKING:  # the executor module names the callbacks (and imports this one when Ray is chosen)
    from pedigree.crawler.executor import Candidates, PairProgress, RepoDone, RepoStart

RAY_MISSING = "--executor ray needs Ray, which is not installed: pip install 'pedigree[ray]'"
log = logging.getLogger(__name__)


def require_ray() -> Any:
    """The ``ray`` module, or UsageError naming the extra to install."""
    try:
        import ray
    except ImportError:
        raise UsageError(RAY_MISSING) from None
    return ray


# ---- worker side ------------------------------------------------------------------------------

_clients: dict[str, httpx.Client] = {}  # one budgeted client per worker process and run


def _who() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _budget_calls(budget: Any) -> tuple[Callable[[str], float], Callable[[str, float], None]]:
    """(ask, tell) for :func:`~.executor_budget.budgeted` through the budget actor ``budget``."""
    ray, who = require_ray(), _who()

    def ask(host: str) -> float:
        return float(ray.get(budget.reserve.remote(host, who)))

    def tell(host: str, seconds: float) -> None:
        ray.get(budget.pause.remote(host, seconds, who))

    return ask, tell


def _worker_client(run_key: str, token: str | None, budget: Any) -> httpx.Client:
    client = _clients.get(run_key)
    if client is None:
        for old in _clients.values():  # a worker process serves one run at a time
            old.close()
        _clients.clear()
        client = _clients[run_key] = budgeted(hub_client(token), *_budget_calls(budget))
    return client


def index_task(job: RepoJob, budget: Any, run_key: str) -> RepoWork:
    """A Ray task: one repo indexed in a worker (its HTTP client kept for the next task)."""
    return index_repo(job, _worker_client(run_key, job.token, budget))


# ---- driver side ------------------------------------------------------------------------------


def _check_reachable(address: str) -> None:
    """A ``HOST:PORT`` address that does not answer is one line now, not Ray's minutes of retries."""
    host, _, port = address.rpartition(":")
    if "://" in address or not host or not port.isdigit():
        return  # "auto", "ray://...": Ray says itself, at once, when there is nothing there
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=5).close()
    except OSError as error:
        raise UsageError(f"cannot reach the Ray cluster at {address}: {error}") from None


def _quietly(call: Callable[..., object], *args: Any, **kwargs: Any) -> None:
    """Clean-up that must not hide the error that made it necessary."""
    try:
        call(*args, **kwargs)
    except Exception as error:  # noqa: BLE001 - best effort: a task already done, Ray shutting down
        log.debug("ray clean-up %s failed: %s", getattr(call, "__name__", call), error)


class RayExecutor:
    """A refresh's crawl and tests on Ray (``address``: ``auto``, ``HOST:PORT`` or ``ray://...``
    of a running cluster; None: a local Ray with ``workers`` CPUs, or the Ray this process already
    started).  ``workers``: tasks at work at once (default: the cluster's CPUs); ``hub_rate``:
    requests per second per Hub host for all workers together (default
    :data:`~.executor_budget.DEFAULT_RATE`; 0: no rate, the server's pauses only)."""

    name = "ray"

    def __init__(
        self,
        *,
        address: str | None = None,
        workers: int | None = None,
        hub_rate: float | None = None,
        burst: int = DEFAULT_BURST,
    ) -> None:
        if workers is not None and workers < 1:
            raise UsageError("--workers must be at least 1")
        if hub_rate is not None and hub_rate < 0:
            raise UsageError("--hub-rate must be a number of requests per second (0: no rate, pauses only)")
        rate = DEFAULT_RATE if hub_rate is None else hub_rate or None
        self.address, self.hub_rate, self.burst = address, rate, burst
        self._workers = workers
        self._started = False  # this executor started Ray (and shuts it down on close)
        self.budget_stats: Any = None  # the last crawl's BudgetStats
        self.budget_events: list[Any] = []  # ... and its events when keep_events was set
        self.keep_events = 0

    # -- Ray ----------------------------------------------------------------------------------
    def _ray(self) -> Any:
        ray = require_ray()
        if not ray.is_initialized():
            options: dict[str, Any] = {
                "include_dashboard": False,
                "log_to_driver": False,
                "logging_level": logging.ERROR,
            }
            if self.address is None:
                options["num_cpus"] = self._workers or os.cpu_count() or 1
            else:
                _check_reachable(self.address)
            try:
                ray.init(address=self.address, **options)
            except (ConnectionError, ValueError, RuntimeError) as error:
                raise UsageError(
                    f"cannot start or reach Ray at {self.address or 'a local instance'}: {error}"
                ) from None
            self._started = True
        return ray

    @property
    def workers(self) -> int:
        """Tasks at work at once: ``workers`` as given, else the CPUs Ray has."""
        if self._workers is not None:
            return self._workers
        return max(1, int(self._ray().cluster_resources().get("CPU", 1)))

    def close(self) -> None:
        """Shut Ray down if this executor started it."""
        if self._started:
            require_ray().shutdown()
            self._started = False

    def __enter__(self) -> RayExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the crawl -------------------------------------------------------------------------------
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
        budget_factor: float = DEFAULT_BUDGET_FACTOR,
    ) -> CrawlSummary:
        """One crawl of ``endpoint`` as :func:`~.crawl.crawl` makes it, the repos indexed by Ray tasks."""
        ray = self._ray()
        endpoint = resolve_endpoint(endpoint)
        token = token or os.environ.get("HF_TOKEN") or None
        previous = high_water(store, endpoint)
        run, frontier, adapters = _Run(), _Frontier(), AdapterQueue()
        evidence_dir = str(evidence_folder(store).resolve())
        max_pause = (retry or RetryPolicy()).max_delay
        budget = (
            ray.remote(HostBudget)
            .options(num_cpus=0)
            .remote(self.hub_rate, self.burst, max_pause, keep_events=self.keep_events)
        )
        task = ray.remote(index_task).options(num_cpus=1, max_retries=1)
        run_key = uuid.uuid4().hex
        client = budgeted(hub_client(token), *_budget_calls(budget))

        def settle(repo: ListedRepo, ref: Any) -> None:
            if ref is None:
                state, outcome = crawl_repo(
                    store, endpoint, repo, client=client, token=token, budget_factor=budget_factor, retry=retry
                )
            else:
                try:
                    work = ray.get(ref)
                except ray.exceptions.RayError as error:
                    work = lost_work(repo, endpoint, f"worker lost: {type(error).__name__}: {error}"[:500])
                state, outcome = commit_repo(store, endpoint, repo, work)
            run.repos.append(state)
            run.count(state.status)
            if outcome is not None:
                run.outcomes.append(outcome)
            if on_done:
                on_done(state)
            frontier.saw(repo, state.status != Status.RETRY)

        pending: OrderedWindow[ListedRepo] = OrderedWindow(ray.wait, self.workers, settle)

        def listed(repo: ListedRepo) -> None:
            run.count("listed")
            while any(r.repo_id == repo.repo_id for r in pending.items()):  # listed twice: as one process sees it
                pending.settle_head()
            if is_done(crawled(store, endpoint, repo.repo_id), repo.sha):
                run.count("skipped")
                frontier.saw(repo, True)
                return
            if limit is not None and run.started >= limit:
                frontier.saw(repo, False)
                return
            run.started += 1
            if on_start:
                on_start(run.started, run.counts["listed"] - run.counts["skipped"], repo.repo_id)
            ref = None
            if needs_worker(store, endpoint, repo):
                job = RepoJob(endpoint, repo, evidence_dir, token, retry, budget_factor)
                ref = task.remote(job, budget, run_key)
            pending.add(repo, ref)

        try:
            with client:
                walk = listing_pages(client, endpoint, previous, token=token, retry=retry)
                pages_read = 0
                while True:
                    try:
                        page = next(walk)
                    except StopIteration:
                        break
                    except RemoteError as error:  # the listing's fault: what came before it stands
                        if pages_read == 0:
                            raise
                        run.stopped = f"listing stopped after page {pages_read}: {error}; the next run lists again"
                        break
                    pages_read += 1
                    run.rejected.extend(page.rejected[: max(0, MAX_REJECTED_REPORTED - len(run.rejected))])
                    run.rejected_count += page.rejected_count
                    for repo in page.repos:
                        if not adapters.defer(repo):  # adapters after the rest: their bases first
                            listed(repo)
                pending.drain()
                for repo in adapters.drain():
                    listed(repo)
                pending.drain()
            self.budget_stats = ray.get(budget.stats.remote())
            if self.keep_events:
                self.budget_events = ray.get(budget.events.remote())
        finally:  # a run stopped early (an error, Ctrl-C): its repos in flight are not recorded
            for ref in pending.pending():
                _quietly(ray.cancel, ref, force=True)
            _quietly(ray.kill, budget)
        if run.stopped is None:
            mark = frontier.mark(previous)
            if mark != previous:
                set_high_water(store, endpoint, mark)
        return _summary(store, endpoint, run)

    # -- the tests -------------------------------------------------------------------------------
    def confirm(
        self,
        store: Store,
        candidates: Candidates,
        model_ids: list[str],
        *,
        progress: PairProgress | None = None,
        indexes: VectorIndexes | None = None,
    ) -> tuple[Confirmation, ...]:
        """Test the pairs :func:`~pedigree.indexer.confirm.confirm_new_models` would, in Ray tasks;
        then decide (Holm) over every stored result."""
        ray = self._ray()
        indexes = indexes if indexes is not None else default_indexes(store)
        task = ray.remote(battery_on_evidence).options(num_cpus=1, max_retries=1)
        jobs = []
        for a, b, hint in plan_pairs(store, candidates, model_ids, indexes):
            if stored_result(store, a, b, SUITE_VERSION) is not None:
                continue
            first, second = (a, b) if (a.pk or 0) < (b.pk or 0) else (b, a)
            oriented = hint if first is a else [(j, i) for i, j in hint]
            try:
                path_a, path_b = ensure_evidence(store, first), ensure_evidence(store, second)
            except EvidenceMissingError:
                continue  # confirm_new_models reports the pair with its reason
            jobs.append((first, second, (str(path_a), first.id, str(path_b), second.id, oriented)))
        done = 0

        def settle(pair: tuple[ModelRecord, ModelRecord], ref: Any) -> None:
            nonlocal done
            done += 1
            first, second = pair
            if progress:
                progress(done, len(jobs), f"{first.id} ~ {second.id}")
            try:
                result = ray.get(ref)
            except ray.exceptions.RayError as error:  # the driver tests the pair itself below
                log.warning("pair %s ~ %s: worker failed (%s); tested on the driver", first.id, second.id, error)
                return
            if result is not None:
                save_report(store, first, second, SUITE_VERSION, result)

        window: OrderedWindow[tuple[ModelRecord, ModelRecord]] = OrderedWindow(ray.wait, self.workers, settle)
        try:
            for first, second, args in jobs:
                window.add((first, second), task.remote(*args))
            window.drain()
        finally:
            for ref in window.pending():
                _quietly(ray.cancel, ref, force=True)
        return confirm_new_models(store, candidates, model_ids, indexes=indexes)
