"""The crawl: list what changed, and index each changed repo through HTTP range reads as its
listing page arrives.

Scheduler, downloader and pipeline are kept apart (as in scrapy): :mod:`crawler.listing` decides
*what* to fetch, :mod:`crawler.http_source` *how* bytes are fetched (ranges, retries, budget), and
``indexer.pipeline.ingest_source`` what is done with them.  This module only walks the listing
and keeps the state:

- the listing is read page by page (newest change first) and each page's repos are indexed before
  the next page is asked for, so a listing that breaks off (a loop, a page that cannot be read)
  still leaves the repos of the pages before it indexed; the stop is reported as ``(listing)``
  with its reason, and the next run lists again (a failure of the first page fails the run);
- each repo is pinned to the sha it was listed at; a repo already crawled at that sha to a final
  status costs nothing (no request at all);
- a repo whose weights are one ``.gguf`` (no safetensors, no PyTorch weights) is read from it by
  range requests (:mod:`.http_gguf`) under the same byte budget and deadlines; several ``.gguf``
  files (quantization variants, split files) are ``unsupported`` with their names;
- a PEFT adapter repo (``adapter_config.json``, no full weights) is read by range requests
  (:mod:`.crawl_adapter`: its config and weights header only) and checked against its indexed
  base; adapter repos are crawled after the rest of the listing, so a base listed in the same run
  is indexed first;
- gated / private (401, 403), deleted (404), pickle-only and unsupported repos are recorded with
  their reason and retried only when their sha changes; transient failures (rate limits, 5xx,
  cut bodies, after the retries) are recorded as ``retry`` and taken up by the next run;
- an entry of the listing that does not describe a model is set aside with its reason and holds
  nothing up;
- once the listing has been read to its end (or to the first repo older than the high-water
  mark), the mark moves to the ``lastModified`` of the oldest repo still unsettled (a ``retry``,
  one left over by ``--limit``), or to the newest one listed when every repo is settled; it never
  moves back.  A run killed at any point loses at most the repo in hand: every repo's record is
  written when it is done, and the next run skips what is settled.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from pedigree.crawler.crawl_adapter import AdapterQueue, ingest_hub_adapter, waiting_adapters
from pedigree.crawler.http_client import hub_client
from pedigree.crawler.http_gguf import HubGGUFCheckpoint, HubGGUFFile
from pedigree.crawler.http_retry import RetryPolicy
from pedigree.crawler.http_source import HubCheckpoint
from pedigree.crawler.listing import ListedRepo, listing_pages
from pedigree.crawler.remote import hub_uri
from pedigree.errors import RemoteError
from pedigree.indexer.pipeline import ingest_source
from pedigree.results import CrawlSummary, IngestOutcome, RepoReport
from pedigree.storage.crawl import (
    CrawledRepo,
    crawled,
    high_water,
    is_done,
    save_crawled,
    set_high_water,
)
from pedigree.storage.db import Store, naive_utc
from pedigree.types import Status

DEFAULT_BUDGET_FACTOR = (
    1.05  # a model may read at most its weights' size (+5 %, + metadata): a runaway server cannot make us read more
)
METADATA_ALLOWANCE = 64 * 2**20
LISTING = "(listing)"  # the report's id for the listing itself
MAX_REJECTED_REPORTED = 1000  # entries set aside that a run reports one by one (all are counted)

RepoStart = Callable[[int, int, str], None]
RepoDone = Callable[[CrawledRepo], None]


def resolve_endpoint(endpoint: str | None) -> str:
    from huggingface_hub import constants

    return (endpoint or os.environ.get("HF_ENDPOINT") or constants.ENDPOINT).rstrip("/")


@dataclass
class _Frontier:
    """What the high-water mark may become, in constant memory: the oldest ``lastModified`` of a
    repo left unsettled and the newest one listed (``blocked``: an unsettled repo had no time)."""

    oldest_unsettled: datetime | None = None
    newest: datetime | None = None
    blocked: bool = False

    def saw(self, repo: ListedRepo, settled: bool) -> None:
        when = naive_utc(repo.last_modified)
        if when is not None and (self.newest is None or when > self.newest):
            self.newest = when
        if settled:
            return
        if when is None:
            self.blocked = True
        elif self.oldest_unsettled is None or when < self.oldest_unsettled:
            self.oldest_unsettled = when

    def mark(self, previous: datetime | None) -> datetime | None:
        """The new mark (``previous`` when it cannot move)."""
        if self.blocked:
            return previous
        candidate = self.oldest_unsettled if self.oldest_unsettled is not None else self.newest
        if candidate is None or (previous is not None and candidate <= previous):
            return previous
        return candidate


@dataclass
class _Run:
    counts: dict[str, int] = field(default_factory=lambda: {"listed": 0, "skipped": 0})
    repos: list[CrawledRepo] = field(default_factory=list)
    outcomes: list[IngestOutcome] = field(default_factory=list)
    rejected: list[tuple[str, str]] = field(default_factory=list)
    rejected_count: int = 0
    stopped: str | None = None
    started: int = 0

    def count(self, key: str, n: int = 1) -> None:
        self.counts[key] = self.counts.get(key, 0) + n


def crawl(
    store: Store,
    endpoint: str | None = None,
    *,
    token: str | None = None,
    limit: int | None = None,
    budget_factor: float = DEFAULT_BUDGET_FACTOR,
    retry: RetryPolicy | None = None,
    on_start: RepoStart | None = None,
    on_done: RepoDone | None = None,
) -> CrawlSummary:
    """One crawl of ``endpoint``: list changes since the high-water mark and index them as the
    listing's pages arrive (``retry``: the backoff policy for listing and range reads; ``limit``:
    at most that many repos indexed, the newest changes first)."""
    endpoint = resolve_endpoint(endpoint)
    token = token or os.environ.get("HF_TOKEN") or None
    previous = high_water(store, endpoint)
    run, frontier, adapters = _Run(), _Frontier(), AdapterQueue()
    with hub_client(token) as client:
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
                if adapters.defer(repo):  # crawled after the rest: their bases first
                    continue
                settled = _crawl_listed(
                    store, endpoint, repo, run, client, token, limit, budget_factor, retry, on_start, on_done
                )
                frontier.saw(repo, settled)
        for repo in adapters.drain():
            settled = _crawl_listed(
                store, endpoint, repo, run, client, token, limit, budget_factor, retry, on_start, on_done
            )
            frontier.saw(repo, settled)
        for repo in waiting_adapters(store, endpoint):  # settled earlier, their base indexed since
            _crawl_listed(
                store, endpoint, repo, run, client, token, limit, budget_factor, retry, on_start, on_done, again=True
            )
    if run.stopped is None:
        mark = frontier.mark(previous)
        if mark != previous:
            set_high_water(store, endpoint, mark)
    return _summary(store, endpoint, run)


def _crawl_listed(
    store: Store,
    endpoint: str,
    repo: ListedRepo,
    run: _Run,
    client,
    token: str | None,
    limit: int | None,
    budget_factor: float,
    retry: RetryPolicy | None,
    on_start: RepoStart | None,
    on_done: RepoDone | None,
    *,
    again: bool = False,
) -> bool:
    """Index one listed repo unless it is settled at its sha or the limit is reached; True when
    it is settled afterwards (``again``: a settled repo taken up again, not a listed one)."""
    if not again:
        run.count("listed")
        if is_done(crawled(store, endpoint, repo.repo_id), repo.sha):
            run.count("skipped")
            return True
    if limit is not None and run.started >= limit:
        return False
    run.started += 1
    if on_start:
        on_start(run.started, run.counts["listed"] - run.counts["skipped"], repo.repo_id)
    state, outcome = crawl_repo(
        store, endpoint, repo, client=client, token=token, budget_factor=budget_factor, retry=retry
    )
    run.repos.append(state)
    run.count(state.status)
    if outcome is not None:
        run.outcomes.append(outcome)
    if on_done:
        on_done(state)
    return state.status != Status.RETRY


def _summary(store: Store, endpoint: str, run: _Run) -> CrawlSummary:
    if run.rejected_count:
        run.counts["rejected"] = run.rejected_count
    reports = [RepoReport(r.repo_id, r.sha, r.status, r.reason, r.bytes_read, r.size_bytes) for r in run.repos]
    reports += [
        RepoReport(name, None, Status.FAILED, f"listing entry set aside: {why}", 0, None) for name, why in run.rejected
    ]
    if run.stopped is not None:
        run.counts["listing_stopped"] = 1
        reports.append(RepoReport(LISTING, None, Status.FAILED, run.stopped, 0, None))
    mark = high_water(store, endpoint)
    return CrawlSummary(endpoint, run.counts, str(mark) if mark else None, tuple(reports), tuple(run.outcomes))


ERROR_STATUS = {"GatedRepoError": Status.GATED, "RepoGoneError": Status.GONE}


def gguf_variants(names: tuple[str, ...]) -> str:
    """Why a repo with several root ``.gguf`` files is not read (their first names shown)."""
    shown = ", ".join(n[:100] for n in names[:5]) + (", ..." if len(names) > 5 else "")
    return f"{len(names)} GGUF files ({shown}); pedigree reads a repo whose weights are one .gguf"


def crawl_repo(
    store: Store,
    endpoint: str,
    repo: ListedRepo,
    *,
    client,
    token: str | None,
    budget_factor: float = DEFAULT_BUDGET_FACTOR,
    retry: RetryPolicy | None = None,
) -> tuple[CrawledRepo, IngestOutcome | None]:
    """Fetch and index one listed repo; never raises for the repo's or the server's faults."""

    def state(status: str, reason: str | None = None, bytes_read: int = 0, size: int | None = None) -> CrawledRepo:
        crawled_repo = CrawledRepo(
            endpoint,
            repo.repo_id,
            repo.sha,
            repo.last_modified,
            repo.created_at,
            status,
            reason,
            repo.base_model,
            repo.base_model_relation,
            bytes_read,
            size,
        )
        save_crawled(store, crawled_repo)
        return crawled_repo

    if repo.adapter_only:  # a PEFT adapter: checked against its base, no fingerprint of its own
        outcome, reader = ingest_hub_adapter(store, endpoint, repo, client=client, token=token, retry=retry)
        return state(_crawl_status(outcome), outcome.error, reader.bytes_read, reader.weights_size), outcome
    if repo.gguf_only and len(repo.gguf_files) > 1:
        return state(Status.UNSUPPORTED, f"unsupported: {gguf_variants(repo.gguf_files)}"), None
    if not repo.has_safetensors and not repo.has_torch_weights and not repo.gguf_only:
        reason = "pickle weights only (never unpickled)" if repo.pickle_only else "no safetensors weights"
        return state(Status.NO_SAFETENSORS, reason), None
    opened: list[HubCheckpoint | HubGGUFFile] = []

    def open_source() -> HubCheckpoint | HubGGUFCheckpoint:
        if repo.gguf_only:  # the budget is set from the file's HEAD, before its header is read
            file = HubGGUFFile(
                endpoint, repo.repo_id, repo.sha or "main", repo.files, token=token, client=client, retry=retry
            )
            opened.append(file)
            file.budget_bytes = int(budget_factor * file.weight_bytes) + METADATA_ALLOWANCE
            return HubGGUFCheckpoint(file)
        source = HubCheckpoint(
            endpoint, repo.repo_id, repo.sha or "main", repo.files, token=token, client=client, retry=retry
        )
        opened.append(source)
        source.budget_bytes = int(budget_factor * source.weight_bytes) + METADATA_ALLOWANCE
        return source

    outcome = ingest_source(
        store,
        repo.repo_id,
        open_source,
        revision=repo.sha or "",
        uri=hub_uri(endpoint, repo.repo_id, repo.sha or ""),
        created_at=repo.created_at,
    )
    read = opened[0].bytes_read if opened else 0
    size = opened[0].weight_bytes if opened else None
    return state(_crawl_status(outcome), outcome.error, read, size), outcome


def _crawl_status(outcome: IngestOutcome) -> str:
    """The crawl record's status of an ingest outcome.  UNCHANGED: the model is already indexed at
    this revision - a run killed after the model's commit and before this crawl record's; the
    record then says what a clean run says."""
    if outcome.status == Status.UNCHANGED:
        return Status.INDEXED
    return ERROR_STATUS.get(outcome.error_kind or "", outcome.status)
