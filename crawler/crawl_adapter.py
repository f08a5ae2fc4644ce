"""Crawling a PEFT adapter repo (issue 16, part 6): read it by range requests
(:mod:`.http_adapter`), check it against its indexed base and record it as a local adapter folder
is recorded (``indexer.pipeline_adapter``: status ``adapter``, an ``adapter`` edge at graph build;
base not indexed or not fitting: ``unsupported`` with the reason; malformed or hostile: ``failed``).

Order within a run: :mod:`.crawl` sets the adapter repos of the listing aside and crawls them after
every other listed repo (:class:`AdapterQueue`), so an adapter listed before its base - the listing
is newest first, and an adapter is usually newer than its base - still finds the base indexed.  At
most :data:`MAX_WAITING` wait; past that an adapter is crawled where it is listed.

Across runs: an adapter recorded ``unsupported`` because its base was not indexed is settled at its
sha like any repo, so the listing does not bring it back; at the end of every run
(:func:`waiting_adapters`) those whose base is indexed now (crawled since, after a ``retry`` or
past a ``--limit``, or ingested from a folder) are read again at the sha they were crawled at.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx

from pedigree.crawler.http_adapter import HubAdapterReader
from pedigree.crawler.http_retry import RetryPolicy
from pedigree.crawler.listing import ListedRepo
from pedigree.crawler.remote import hub_uri
from pedigree.indexer.peft_adapter import ADAPTER_CONFIG, ADAPTER_WEIGHT_FILES
from pedigree.indexer.pipeline import _record_failure
from pedigree.indexer.pipeline_adapter import base_missing, find_base, place_adapter
from pedigree.results import IngestOutcome
from pedigree.storage.crawl import crawled
from pedigree.storage.db import ModelRecord, Store
from pedigree.types import Status

MAX_WAITING = 100_000
"""Adapter repos one run sets aside for its end (a listed repo is a few hundred bytes)."""


@dataclass
class AdapterQueue:
    """The adapter repos of a run's listing, crawled once the rest of the listing is."""

    waiting: list[ListedRepo] = field(default_factory=list)

    def defer(self, repo: ListedRepo) -> bool:
        """Set ``repo`` aside when it is an adapter repo and there is room; True when it was."""
        if not repo.adapter_only or len(self.waiting) >= MAX_WAITING:
            return False
        self.waiting.append(repo)
        return True

    def drain(self) -> Iterator[ListedRepo]:
        """The repos set aside, in the order they were listed (the queue is left empty)."""
        waiting, self.waiting = self.waiting, []
        yield from waiting


def ingest_hub_adapter(
    store: Store,
    endpoint: str,
    repo: ListedRepo,
    *,
    client: httpx.Client,
    token: str | None,
    retry: RetryPolicy | None = None,
) -> tuple[IngestOutcome, HubAdapterReader]:
    """Read, check and record one adapter repo; never raises for the repo's or the server's
    faults (a transient one is ``retry``, nothing written).  The reader tells what it cost."""
    started = time.perf_counter()
    sha = repo.sha or ""
    record = ModelRecord(
        id=repo.repo_id,
        status=Status.INDEXED,
        source=hub_uri(endpoint, repo.repo_id, sha),
        revision=sha,
        created_at=repo.created_at,
    )
    existing = store.get_model(repo.repo_id)
    reader = HubAdapterReader(
        endpoint, repo.repo_id, repo.sha or "main", repo.files, client=client, token=token, retry=retry
    )
    try:
        return place_adapter(store, record, existing, reader.read(), started), reader
    except Exception as error:  # noqa: BLE001 - one repo's failure must never stop the run
        return _record_failure(store, record, existing, error, started), reader


def waiting_adapters(store: Store, endpoint: str) -> list[ListedRepo]:
    """This endpoint's adapter repos settled as ``unsupported`` because their base was not
    indexed, whose base is indexed now: each as its crawl listed it (sha, times; its two files)."""
    out = []
    for short in store.models(Status.UNSUPPORTED, with_config=False):
        if not (short.error or "").startswith("unsupported: adapter base "):
            continue
        previous = crawled(store, endpoint, short.id)
        record = store.get_model(short.id)
        if previous is None or record is None or previous.status != Status.UNSUPPORTED or previous.sha is None:
            continue
        peft = (record.config or {}).get("peft")
        declared = peft.get("base_model_name_or_path") if isinstance(peft, dict) else None
        weights = peft.get("weights") if isinstance(peft, dict) else None
        if (
            not isinstance(declared, str)
            or weights not in ADAPTER_WEIGHT_FILES
            or record.error != f"unsupported: {base_missing(declared)}"
            or record.source != hub_uri(endpoint, record.id, previous.sha)
            or find_base(store, declared, record.id) is None
        ):
            continue
        out.append(
            ListedRepo(
                record.id,
                previous.sha,
                previous.last_modified,
                previous.created_at,
                (ADAPTER_CONFIG, str(weights)),
                base_model=previous.base_model,
                base_model_relation=previous.base_model_relation,
            )
        )
    return out
