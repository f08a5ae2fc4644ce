"""The crawl: list what changed, then index each changed repo through HTTP range reads.

Scheduler, downloader and pipeline are kept apart (as in scrapy): :mod:`crawler.listing` decides
*what* to fetch, :mod:`crawler.http_source` *how* bytes are fetched (ranges, retries, budget), and
``indexer.pipeline.ingest_source`` what is done with them.  This module only walks the listing
and keeps the state:

- repos are worked through oldest change first; each is pinned to the sha it was listed at;
- a repo already crawled at that sha to a final status costs nothing (no request at all);
- gated / private (401, 403), deleted (404), pickle-only and unsupported repos are recorded with
  their reason and retried only when their sha changes; transient failures (rate limits, 5xx,
  cut bodies, after the retries) are recorded as ``retry`` and taken up by the next run;
- after each repo the high-water mark advances to the newest ``lastModified`` below which every
  listed repo is settled - so a run killed at any point loses at most the repo in hand, and the
  next run finishes the job.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import datetime

from pedigree.crawler.http_client import hub_client
from pedigree.crawler.http_retry import RetryPolicy
from pedigree.crawler.http_source import HubCheckpoint
from pedigree.crawler.listing import ListedRepo, list_changed
from pedigree.crawler.remote import hub_uri
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

RepoStart = Callable[[int, int, str], None]
RepoDone = Callable[[CrawledRepo], None]


def resolve_endpoint(endpoint: str | None) -> str:
    from huggingface_hub import constants

    return (endpoint or os.environ.get("HF_ENDPOINT") or constants.ENDPOINT).rstrip("/")


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
    """One crawl of ``endpoint``: list changes since the high-water mark and index them
    (``retry``: the backoff policy for listing and range reads)."""
    endpoint = resolve_endpoint(endpoint)
    token = token or os.environ.get("HF_TOKEN") or None
    mark = high_water(store, endpoint)
    with hub_client(token) as client:
        changed = list_changed(client, endpoint, mark, token=token, retry=retry)
        listing = sorted(changed.repos, key=lambda r: (naive_utc(r.last_modified) or datetime.min, r.repo_id))
        repos: list[CrawledRepo] = []
        outcomes: list[IngestOutcome] = []
        settled = [is_done(crawled(store, endpoint, r.repo_id), r.sha) for r in listing]
        pending = [i for i, done in enumerate(settled) if not done]
        counts = {"listed": len(listing), "skipped": len(listing) - len(pending)}
        if changed.rejected:
            counts["rejected"] = len(changed.rejected)
        pending = pending[:limit] if limit is not None else pending
        frontier = _advance(store, endpoint, listing, settled, 0)
        for position, index in enumerate(pending, start=1):
            repo = listing[index]
            if on_start:
                on_start(position, len(pending), repo.repo_id)
            state, outcome = crawl_repo(
                store, endpoint, repo, client=client, token=token, budget_factor=budget_factor, retry=retry
            )
            repos.append(state)
            counts[state.status] = counts.get(state.status, 0) + 1
            if outcome is not None:
                outcomes.append(outcome)
            settled[index] = state.status != Status.RETRY
            frontier = _advance(store, endpoint, listing, settled, frontier)
            if on_done:
                on_done(state)
    mark = high_water(store, endpoint)
    reports = tuple(RepoReport(r.repo_id, r.sha, r.status, r.reason, r.bytes_read, r.size_bytes) for r in repos)
    reports += tuple(
        RepoReport(name, None, Status.FAILED, f"listing entry set aside: {why}", 0, None)
        for name, why in changed.rejected
    )
    return CrawlSummary(endpoint, counts, str(mark) if mark else None, reports, tuple(outcomes))


def _advance(store: Store, endpoint: str, listing: list[ListedRepo], settled: list[bool], frontier: int) -> int:
    """Move the high-water mark to the newest ``lastModified`` below which every listed repo is
    settled; returns the new frontier (index of the first unsettled repo)."""
    start = frontier
    while frontier < len(listing) and settled[frontier]:
        frontier += 1
    if frontier > start and listing[frontier - 1].last_modified is not None:
        set_high_water(store, endpoint, naive_utc(listing[frontier - 1].last_modified))
    return frontier


ERROR_STATUS = {"GatedRepoError": Status.GATED, "RepoGoneError": Status.GONE}


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

    if not repo.has_safetensors:
        reason = "pickle weights only (never unpickled)" if repo.pickle_only else "no safetensors weights"
        return state(Status.NO_SAFETENSORS, reason), None
    opened: list[HubCheckpoint] = []

    def open_source() -> HubCheckpoint:
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
    # UNCHANGED: the model is already indexed at this revision - a run killed after the model's
    # commit and before this crawl record's; the record then says what a clean run says
    status = (
        Status.INDEXED
        if outcome.status == Status.UNCHANGED
        else ERROR_STATUS.get(outcome.error_kind or "", outcome.status)
    )
    return state(status, outcome.error, read, size), outcome
