"""One Hub repo's listing entry, asked for by id (``GET /api/models/{id}?expand=...``): what the
crawler needs to index a single repo without listing the Hub (``Workspace.ingest_hub_repo``, the
service's admin ingest)."""

from __future__ import annotations

from urllib.parse import quote, urlencode

import httpx

from pedigree.crawler.http_fetch import Fetcher
from pedigree.crawler.http_retry import RetryPolicy
from pedigree.crawler.listing import (
    EXPAND,
    MAX_INFO_BYTES,
    BadEntry,
    ListedRepo,
    listed_repo,
    parse_page,
    valid_repo_id,
)
from pedigree.errors import RemoteError, UsageError


def fetch_listed_repo(
    client: httpx.Client, endpoint: str, repo_id: str, *, token: str | None, retry: RetryPolicy | None = None
) -> ListedRepo:
    """The repo as a listing page would describe it (its current sha, files, card's base model);
    UsageError for an id the Hub could not hold, RemoteError when the Hub's answer is unusable."""
    if not valid_repo_id(repo_id):
        raise UsageError(f"not a Hub model id: {repo_id[:100]!r}")
    fetcher = Fetcher(client, endpoint, token=token, retry=retry or RetryPolicy(), budget=None, label=repo_id)
    query = urlencode([("expand", name) for name in EXPAND])
    url = f"{endpoint.rstrip('/')}/api/models/{quote(repo_id, safe='/')}?{query}"
    info, _ = fetcher.read_json(url, repo_id, MAX_INFO_BYTES, parse_page)
    try:
        return listed_repo(info)
    except BadEntry as error:
        raise RemoteError(f"{repo_id}: the Hub's model info is unusable: {error}") from None
