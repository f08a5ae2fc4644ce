"""Listing the Hub: which repos are new or changed since the last complete crawl.

``GET {endpoint}/api/models?sort=lastModified&direction=-1`` with the fields the crawler needs
expanded in the listing itself (sha, times, card data, file names, gated/private), so an unchanged
Hub costs one page and nothing else; the walk follows the ``Link: rel="next"`` pages and stops at
the first repo older than the high-water mark.  The pages are read with the crawler's own strict
client (:mod:`.http_fetch`): each page is bounded in bytes and never decompressed, 429 / 5xx /
connection failures are retried with the crawler's backoff (four times as patiently as a range
read), a next link that leaves the endpoint's
origin or comes back to a page already read ends the walk with an error, and an entry that does not
look like a model (no string id, a malformed time, odd file names) is set aside with its reason
instead of failing the listing.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import Any, TypeVar
from urllib.parse import urlencode

import httpx

from pedigree.crawler.http_client import origin
from pedigree.crawler.http_fetch import Fetcher
from pedigree.crawler.http_retry import RetryPolicy
from pedigree.errors import RateLimitedError, RemoteError, RemoteServerError

EXPAND = ("sha", "lastModified", "createdAt", "cardData", "siblings", "gated", "private")
PAGE_SIZE = 1000
MAX_PAGE_BYTES = 64 * 2**20  # a Hub page of 1,000 models with their file names is a few MB
MAX_PAGES = 10_000  # 10 million repos
MAX_SIBLINGS = 100_000
LISTING_PATIENCE = 4  # a listing page answered 429/5xx gets 4x the attempts of a range read
T = TypeVar("T")
REPO_ID = re.compile(r"(?:[A-Za-z0-9][A-Za-z0-9._-]{0,95}/)?[A-Za-z0-9][A-Za-z0-9._-]{0,95}")  # the Hub's ids


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


@dataclass
class Listing:
    """The changed repos, newest first, and the entries set aside (``(id or position, reason)``)."""

    repos: list[ListedRepo] = field(default_factory=list)
    rejected: list[tuple[str, str]] = field(default_factory=list)
    pages: int = 0


class BadEntry(ValueError):
    """A listing entry that does not describe a model the crawler can read."""


def hub_time(value: object, name: str) -> datetime | None:
    """A Hub timestamp (``2024-03-01T00:00:00.000Z``) as an aware UTC datetime; None when absent."""
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > 64:
        raise BadEntry(f"{name} is not a timestamp: {str(value)[:40]!r}")
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise BadEntry(f"{name} is not a timestamp: {value[:40]!r}") from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def _names(value: object) -> list[str] | None:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return list(value)
    return None


def listed_repo(entry: object) -> ListedRepo:
    """One ``/api/models`` entry as the crawler needs it, or :class:`BadEntry` saying why not."""
    if not isinstance(entry, dict):
        raise BadEntry("entry is not a JSON object")
    repo_id = entry.get("id", entry.get("modelId"))
    if not isinstance(repo_id, str) or not REPO_ID.fullmatch(repo_id):
        raise BadEntry(f"not a model id: {str(repo_id)[:60]!r}")
    sha = entry.get("sha")
    if sha is not None and (not isinstance(sha, str) or len(sha) > 64):
        raise BadEntry(f"sha is not a string: {str(sha)[:40]!r}")
    siblings = entry.get("siblings") or []
    if not isinstance(siblings, list) or len(siblings) > MAX_SIBLINGS:
        raise BadEntry("siblings is not a list of files")
    files = []
    for sibling in siblings:
        name = sibling.get("rfilename") if isinstance(sibling, dict) else None
        if not isinstance(name, str):
            raise BadEntry("a sibling has no file name")
        files.append(name)
    card = entry.get("cardData")
    card = card if isinstance(card, dict) else {}
    relation = card.get("base_model_relation")
    gated = entry.get("gated", False)
    return ListedRepo(
        repo_id=repo_id,
        sha=sha,
        last_modified=hub_time(entry.get("lastModified"), "lastModified"),
        created_at=hub_time(entry.get("createdAt"), "createdAt"),
        files=tuple(files),
        gated=gated if isinstance(gated, (bool, str)) else True,
        private=entry.get("private") is True,
        base_model=_names(card.get("base_model")),
        base_model_relation=relation if isinstance(relation, str) else None,
    )


def first_page_url(endpoint: str) -> str:
    params = [("sort", "lastModified"), ("direction", "-1"), ("limit", str(PAGE_SIZE))]
    params += [("expand", name) for name in EXPAND]
    return f"{endpoint.rstrip('/')}/api/models?{urlencode(params)}"


def _patiently(read: Callable[[], T]) -> T:
    """``read`` again while the server keeps answering 429 or 5xx (each call retries on its own):
    without the listing nothing else can start.  A server that cannot be reached fails at once."""
    for attempt in range(LISTING_PATIENCE):
        try:
            return read()
        except (RateLimitedError, RemoteServerError) as error:
            answered = isinstance(error, RateLimitedError) or error.status is not None
            if not answered or attempt == LISTING_PATIENCE - 1:
                raise
    raise AssertionError("unreachable")


def pages(client: httpx.Client, endpoint: str, token: str | None, retry: RetryPolicy) -> Iterator[list[Any]]:
    """The listing's pages, following ``Link: rel="next"`` within the endpoint's origin."""
    fetcher = Fetcher(client, endpoint, token=token, retry=retry, budget=None, label=endpoint)
    home = origin(httpx.URL(endpoint))
    url: str | None = first_page_url(endpoint)
    seen: set[str] = set()
    while url is not None:
        if url in seen or len(seen) >= MAX_PAGES:
            raise RemoteError(f"the listing at {endpoint} does not end (page {len(seen) + 1}: {url[:120]})")
        seen.add(url)
        where = f"{endpoint} listing page {len(seen)}"
        page, response = _patiently(partial(fetcher.read_json, url, where, MAX_PAGE_BYTES))
        if not isinstance(page, list):
            raise RemoteError("the listing page is not a JSON list", path=where)
        yield page
        following = response.links.get("next", {}).get("url")
        url = None
        if following:
            target = response.url.join(following)
            if origin(target) != home:
                raise RemoteError(f"the next listing page leaves {endpoint}: {str(target)[:120]}", path=where)
            url = str(target)


def list_changed(
    client: httpx.Client,
    endpoint: str,
    since: datetime | None,
    *,
    token: str | None = None,
    retry: RetryPolicy | None = None,
) -> Listing:
    """Repos modified at or after ``since`` (all repos when None; naive means UTC), newest first."""
    if since is not None and since.tzinfo is None:
        since = since.replace(tzinfo=UTC)
    listing = Listing()
    position = 0
    for page in pages(client, endpoint, token, retry or RetryPolicy()):
        listing.pages += 1
        for entry in page:
            position += 1
            try:
                repo = listed_repo(entry)
            except BadEntry as error:
                name = entry.get("id") if isinstance(entry, dict) and isinstance(entry.get("id"), str) else None
                listing.rejected.append((name or f"entry {position}", str(error)))
                continue
            if since is not None and repo.last_modified is not None and repo.last_modified < since:
                return listing
            listing.repos.append(repo)
    return listing
