"""Listing the Hub: which repos are new or changed since the last complete crawl.

Through huggingface_hub (``HfApi(endpoint=...)``; with no endpoint it honours ``HF_ENDPOINT``,
and ``HF_TOKEN`` when no token is given), sorted by ``lastModified`` newest first, with the
fields the crawler needs expanded in the listing itself (sha, times, card data, file names,
gated/private) - so an unchanged Hub costs one page of listing and nothing else.  The walk stops
at the first repo older than the high-water mark.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

from huggingface_hub import HfApi
from huggingface_hub.errors import HfHubHTTPError

from pedigree.crawler.http_retry import RetryPolicy, server_wait
from pedigree.storage.db import naive_utc

EXPAND = ["sha", "lastModified", "createdAt", "cardData", "siblings", "gated", "private"]


@dataclass(frozen=True)
class ListedRepo:
    repo_id: str
    sha: str | None
    last_modified: datetime | None
    created_at: datetime | None
    files: tuple[str, ...]
    gated: bool | str = False
    private: bool = False
    base_model: list[str] | None = None
    base_model_relation: str | None = None

    @property
    def has_safetensors(self) -> bool:
        return any(f.endswith(".safetensors") or f.endswith(".safetensors.index.json") for f in self.files)

    @property
    def pickle_only(self) -> bool:
        return not self.has_safetensors and any(
            f.endswith((".bin", ".pt", ".pth", ".ckpt", ".pkl")) for f in self.files
        )


def _card_field(card, name: str):
    if card is None:
        return None
    value = card.get(name) if hasattr(card, "get") else getattr(card, name, None)
    return value


def listed_repo(info) -> ListedRepo:
    """A ``huggingface_hub.ModelInfo`` as the crawler needs it."""
    card = getattr(info, "card_data", None)
    base = _card_field(card, "base_model")
    if isinstance(base, str):
        base = [base]
    relation = _card_field(card, "base_model_relation")
    return ListedRepo(
        repo_id=info.id,
        sha=info.sha,
        last_modified=info.last_modified,
        created_at=info.created_at,
        files=tuple(s.rfilename for s in (info.siblings or [])),
        gated=info.gated or False,
        private=bool(info.private),
        base_model=list(base) if isinstance(base, list) else None,
        base_model_relation=relation if isinstance(relation, str) else None,
    )


LISTING_ATTEMPTS = 8  # whole-listing attempts on top of huggingface_hub's own per-request retries


def list_changed_with_retries(api: HfApi, since: datetime | None, retry: RetryPolicy | None = None) -> list[ListedRepo]:
    """:func:`list_changed`, started again (with backoff honouring Retry-After / RateLimit) when
    the Hub keeps answering 429 or 5xx past huggingface_hub's own retries; other errors raise."""
    retry = retry or RetryPolicy()
    for attempt in range(LISTING_ATTEMPTS):
        try:
            return list(list_changed(api, since))
        except HfHubHTTPError as error:
            response = error.response
            status = response.status_code if response is not None else None
            if status != 429 and (status is None or status < 500) or attempt == LISTING_ATTEMPTS - 1:
                raise
            time.sleep(retry.delay(attempt, server_wait(response.headers)))
    raise AssertionError("unreachable")


def list_changed(api: HfApi, since: datetime | None) -> Iterator[ListedRepo]:
    """Repos modified at or after ``since`` (all repos when None), newest first."""
    for info in api.list_models(sort="lastModified", expand=EXPAND):
        repo = listed_repo(info)
        if since is not None and repo.last_modified is not None and naive_utc(repo.last_modified) < since:
            return
        yield repo
