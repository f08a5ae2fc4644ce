"""Listing the Hub: which repos are new or changed since the last complete crawl.

``GET {endpoint}/api/models?sort=lastModified&direction=-1`` with the fields the crawler needs
expanded in the listing itself (sha, times, card data, file names, gated/private), so an unchanged
Hub costs one page and nothing else; the walk follows the ``Link: rel="next"`` pages and stops at
the first repo older than the high-water mark.  :func:`listing_pages` yields the pages as they
arrive, so the crawl indexes a page's repos before it asks for the next one.

The listing is hostile input:

- pages are read with the crawler's strict client (:mod:`.http_fetch`): bounded in bytes and time,
  never decompressed (``identity`` is asked for; an encoded answer is refused), 429 / 5xx retried
  with the crawler's backoff (four times as patiently as a range read);
- the walk ends with :class:`ListingStopped` when a next link leaves the endpoint's origin (the
  token would follow it), repeats a URL or a ``cursor`` already read, brings a page whose repos were
  all on an earlier page, or passes :data:`MAX_PAGES`; or when a page holds more entries than the
  page size asked for; a page is parsed within :mod:`~pedigree.indexer.bounded_json`'s bounds on
  containers, items and depth (:func:`parse_page`), so a page that would cost more to parse than
  its bytes suggest, or nests too deeply, is a :class:`~pedigree.errors.RemoteError` that stops it too;
- each entry is validated on its own (:func:`listed_repo`): an id that is not ``name`` or
  ``org/name`` (ASCII letters, digits, ``-_.``, no ``--`` or ``..``), a sha that is not hex, a time
  that is not an ISO timestamp or lies in the future, file names that are absolute or climb out
  with ``..``, fields of the wrong type - the entry is set aside with its reason, never the page.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any, TypeVar
from urllib.parse import urlencode

import httpx

from pedigree.crawler.http_client import origin
from pedigree.crawler.http_fetch import Fetcher
from pedigree.crawler.http_retry import RetryPolicy
from pedigree.errors import RateLimitedError, RemoteError, RemoteServerError
from pedigree.indexer.bounded_json import loads_json
from pedigree.indexer.peft_adapter import adapter_only
from pedigree.indexer.safetensors_format import TORCH_INDEX, is_torch_weights

EXPAND = ("sha", "lastModified", "createdAt", "cardData", "siblings", "gated", "private")
PAGE_SIZE = 1000
MAX_PAGE_BYTES = 16 * 2**20  # a Hub page of 1,000 models with their file names is a few MB; what its
# parse may build is bounded apart (bounded_json: 16 MiB of ``[{},{},...]`` would be 5.6 million dicts)
MAX_REJECTED_SHOWN = 100  # reasons kept per page; the rest of a page's bad entries are only counted
MAX_INFO_BYTES = 16 * 2**20  # one model's info (100,000 file names fit)
MAX_PAGES = 10_000  # 10 million repos
MAX_SIBLINGS = 100_000
MAX_FILE_NAME = 1024
MAX_BASE_MODELS = 64
MAX_FIELD_CHARS = 200  # a gated mode, a relation
FUTURE_SLACK = timedelta(days=1)  # a lastModified further ahead of our clock would freeze the mark
LISTING_PATIENCE = 4  # a listing page answered 429/5xx gets 4x the attempts of a range read
T = TypeVar("T")
_PART = r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9])?"
REPO_ID = re.compile(rf"(?:{_PART}/)?{_PART}", re.ASCII)  # the Hub's ids (huggingface_hub's validate_repo_id)
SHA = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}", re.ASCII)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


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
    def has_torch_weights(self) -> bool:
        """Root ``.bin``/``.pt``/``.pth`` weights (or their index), read as PyTorch zip checkpoints
        when there are no safetensors (a legacy pickle among them is refused when read)."""
        return any("/" not in f and (f == TORCH_INDEX or is_torch_weights(f)) for f in self.files)

    @property
    def gguf_files(self) -> tuple[str, ...]:
        """The ``.gguf`` files at the repo root (sorted); a repo with neither safetensors nor
        PyTorch weights is read from its GGUF when there is exactly one."""
        return tuple(sorted(f for f in self.files if "/" not in f and f.lower().endswith(".gguf")))

    @property
    def gguf_only(self) -> bool:
        """The repo's weights are GGUF files only (one or more at the root)."""
        return not self.has_safetensors and not self.has_torch_weights and bool(self.gguf_files)

    @property
    def adapter_only(self) -> bool:
        """A PEFT adapter repo: ``adapter_config.json`` and no full weights at the root
        (:func:`~pedigree.indexer.peft_adapter.adapter_only`, the rule for local folders too)."""
        return adapter_only(self.files)

    @property
    def pickle_only(self) -> bool:
        """Pickle files only, none of them a candidate PyTorch zip checkpoint (``.ckpt``, ``.pkl``,
        trainer files)."""
        return (
            not self.has_safetensors
            and not self.has_torch_weights
            and any(f.endswith((".bin", ".pt", ".pth", ".ckpt", ".pkl")) for f in self.files)
        )


@dataclass
class ListingPage:
    """One page of changed repos (newest first) and the entries it set aside (``(id or position, reason)``)."""

    number: int
    repos: list[ListedRepo] = field(default_factory=list)
    rejected: list[tuple[str, str]] = field(default_factory=list)  # the first MAX_REJECTED_SHOWN
    rejected_count: int = 0

    def reject(self, name: str, reason: str) -> None:
        self.rejected_count += 1
        if len(self.rejected) < MAX_REJECTED_SHOWN:
            self.rejected.append((name, reason))


@dataclass
class Listing:
    """The changed repos, newest first, and the entries set aside (``(id or position, reason)``)."""

    repos: list[ListedRepo] = field(default_factory=list)
    rejected: list[tuple[str, str]] = field(default_factory=list)
    rejected_count: int = 0
    pages: int = 0


class BadEntry(ValueError):
    """A listing entry that does not describe a model the crawler can read (``last_modified``:
    its time when that much could be read, so the walk can still stop at the high-water mark)."""

    def __init__(self, reason: str, last_modified: datetime | None = None) -> None:
        super().__init__(reason)
        self.last_modified = last_modified


class ListingStopped(RemoteError):
    """The listing cannot be walked further (a loop, too many pages, a page that cannot be read)."""


def valid_repo_id(value: object) -> bool:
    """``name`` or ``org/name`` as the Hub allows them (no ``..``, no ``--``, at most 96 per part)."""
    return (
        isinstance(value, str)
        and REPO_ID.fullmatch(value) is not None
        and ".." not in value
        and "--" not in value
        and not value.endswith(".git")
    )


def _shown(value: object, limit: int = 60) -> str:
    """``value`` for a reason text: clipped, control characters escaped."""
    return repr(value if not isinstance(value, str) else value[:limit])[: limit + 20]


def hub_time(value: object, name: str, *, now: datetime | None = None) -> datetime | None:
    """A Hub timestamp (``2024-03-01T00:00:00.000Z``) as an aware UTC datetime; None when absent.
    Not a string, not ISO 8601, out of range or (with ``now``) ahead of it -> :class:`BadEntry`."""
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > 64:
        raise BadEntry(f"{name} is not a timestamp: {_shown(value, 40)}")
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        parsed = parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
    except (ValueError, OverflowError):
        raise BadEntry(f"{name} is not a timestamp: {_shown(value, 40)}") from None
    if now is not None and parsed > now + FUTURE_SLACK:
        raise BadEntry(f"{name} is in the future: {value[:40]!r}")
    return parsed


def _names(value: object) -> list[str] | None:
    names = [value] if isinstance(value, str) else value
    if not isinstance(names, list) or not names or len(names) > MAX_BASE_MODELS:
        return None
    if not all(valid_repo_id(v) for v in names):
        return None
    return list(names)


def file_name_problem(name: object) -> str | None:
    """Why ``name`` cannot be a repo file name (None when it can): a relative POSIX path of bounded
    length with no empty, ``.`` or ``..`` part and no control characters."""
    if not isinstance(name, str):
        return "a sibling has no file name"
    if not name or len(name) > MAX_FILE_NAME or _CONTROL.search(name) or "\\" in name:
        return f"a file name is empty, too long or has control characters: {_shown(name)}"
    if name.startswith("/") or any(part in ("", ".", "..") for part in name.split("/")):
        return f"a file name is absolute or leaves the repo: {_shown(name)}"
    return None


def _files(siblings: object) -> tuple[str, ...]:
    if siblings is None:
        return ()
    if not isinstance(siblings, list) or len(siblings) > MAX_SIBLINGS:
        raise BadEntry("siblings is not a list of files")
    files: list[str] = []
    for sibling in siblings:
        name = sibling.get("rfilename") if isinstance(sibling, dict) else None
        problem = file_name_problem(name)
        if problem or not isinstance(name, str):
            raise BadEntry(problem or "a sibling has no file name")
        files.append(name)
    return tuple(files)


def _short_text(value: object) -> str | None:
    return value if isinstance(value, str) and len(value) <= MAX_FIELD_CHARS and not _CONTROL.search(value) else None


def listed_repo(entry: object, *, now: datetime | None = None) -> ListedRepo:
    """One ``/api/models`` entry as the crawler needs it, or :class:`BadEntry` saying why not
    (``now``: also refuse a ``lastModified`` ahead of it)."""
    if not isinstance(entry, dict):
        raise BadEntry("entry is not a JSON object")
    try:
        last_modified = hub_time(entry.get("lastModified"), "lastModified", now=now)
    except BadEntry as error:
        last_modified = None
        first_problem: BadEntry | None = error
    else:
        first_problem = None
    try:
        repo_id = entry.get("id", entry.get("modelId"))
        if not isinstance(repo_id, str) or not valid_repo_id(repo_id):
            raise BadEntry(f"not a model id: {_shown(repo_id)}")
        if first_problem is not None:
            raise first_problem
        sha = entry.get("sha")
        if sha is not None and (not isinstance(sha, str) or not SHA.fullmatch(sha)):
            raise BadEntry(f"sha is not a commit id: {_shown(sha, 40)}")
        files = _files(entry.get("siblings"))
        card = entry.get("cardData")
        card = card if isinstance(card, dict) else {}
        gated = entry.get("gated", False)
        return ListedRepo(
            repo_id=repo_id,
            sha=sha,
            last_modified=last_modified,
            created_at=hub_time(entry.get("createdAt"), "createdAt"),
            files=files,
            gated=gated if isinstance(gated, bool) else (_short_text(gated) or True),
            private=entry.get("private") is True,
            base_model=_names(card.get("base_model")),
            base_model_relation=_short_text(card.get("base_model_relation")),
        )
    except BadEntry as error:
        error.last_modified = last_modified
        raise


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


def _digest(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()


class _Walk:
    """What the walk has seen, in bounded memory: digests of the URLs, cursors and pages read."""

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint
        self.home = origin(httpx.URL(endpoint))
        self.urls: set[bytes] = set()
        self.cursors: set[bytes] = set()
        self.pages: set[bytes] = set()

    def check_next(self, target: httpx.URL, page: int) -> str:
        where = f"{self.endpoint} listing page {page}"
        shown = str(target)[:120]
        if origin(target) != self.home:
            raise ListingStopped(f"the next listing page leaves {self.endpoint}: {shown}", path=where)
        if page > MAX_PAGES:
            raise ListingStopped(f"the listing goes past {MAX_PAGES} pages", path=where)
        url = _digest(str(target))
        cursor = target.params.get("cursor")
        if url in self.urls or (cursor is not None and _digest(cursor) in self.cursors):
            raise ListingStopped(f"the listing comes back to a page already read: {shown}", path=where)
        self.urls.add(url)
        if cursor is not None:
            self.cursors.add(_digest(cursor))
        return str(target)

    def check_page(self, ids: list[str], page: int) -> None:
        """A page listing only repos an earlier page listed, in that order, is a loop."""
        if not ids:
            return
        digest = _digest("\n".join(ids))
        if digest in self.pages:
            raise ListingStopped("the listing repeats a page already read", path=f"{self.endpoint} listing page {page}")
        self.pages.add(digest)


def parse_page(body: bytearray) -> object:
    """A listing page or a model's info, parsed within :mod:`~pedigree.indexer.bounded_json`'s
    bounds on containers, items and depth (a repeated key keeps the last value, as the Hub's
    clients do)."""
    return loads_json(body, "the answer", None, unique_keys=False)


def _page_ids(page: list[Any]) -> list[str]:
    return [e["id"] if isinstance(e, dict) and isinstance(e.get("id"), str) else "" for e in page]


def pages(client: httpx.Client, endpoint: str, token: str | None, retry: RetryPolicy) -> Iterator[list[Any]]:
    """The listing's raw pages, following ``Link: rel="next"`` within the endpoint's origin;
    :class:`ListingStopped` (or the page's :class:`RemoteError`) when it cannot go on."""
    fetcher = Fetcher(client, endpoint, token=token, retry=retry, budget=None, label=endpoint)
    walk = _Walk(endpoint)
    url: str | None = walk.check_next(httpx.URL(first_page_url(endpoint)), 1)
    number = 0
    while url is not None:
        number += 1
        where = f"{endpoint} listing page {number}"
        page, response = _patiently(partial(fetcher.read_json, url, where, MAX_PAGE_BYTES, parse_page))
        if not isinstance(page, list):
            raise ListingStopped("the listing page is not a JSON list", path=where)
        if len(page) > PAGE_SIZE:
            raise ListingStopped(f"the page has {len(page)} entries, more than the {PAGE_SIZE} asked for", path=where)
        walk.check_page(_page_ids(page), number)
        yield page
        following = response.links.get("next", {}).get("url")
        url = None
        if following:
            try:
                target = response.url.join(following)
            except (httpx.InvalidURL, ValueError) as error:
                raise ListingStopped(f"the next listing link is not a URL: {error}", path=where) from None
            url = walk.check_next(target, number + 1)


def _entry_name(entry: object, position: int) -> str:
    name = entry.get("id") if isinstance(entry, dict) else None
    return name if isinstance(name, str) and valid_repo_id(name) else f"entry {position}"


def listing_pages(
    client: httpx.Client,
    endpoint: str,
    since: datetime | None,
    *,
    token: str | None = None,
    retry: RetryPolicy | None = None,
) -> Iterator[ListingPage]:
    """The repos modified at or after ``since`` (all repos when None; naive means UTC), page by
    page as they arrive, newest first; ends at the first repo older than ``since``."""
    if since is not None and since.tzinfo is None:
        since = since.replace(tzinfo=UTC)
    now = datetime.now(UTC)
    position = 0
    for number, page in enumerate(pages(client, endpoint, token, retry or RetryPolicy()), start=1):
        out = ListingPage(number)
        older = False
        for entry in page:
            position += 1
            try:
                repo = listed_repo(entry, now=now)
            except BadEntry as error:
                if since is not None and error.last_modified is not None and error.last_modified < since:
                    older = True
                    break
                out.reject(_entry_name(entry, position), str(error))
                continue
            if since is not None and repo.last_modified is not None and repo.last_modified < since:
                older = True
                break
            out.repos.append(repo)
        yield out
        if older:
            return


def list_changed(
    client: httpx.Client,
    endpoint: str,
    since: datetime | None,
    *,
    token: str | None = None,
    retry: RetryPolicy | None = None,
) -> Listing:
    """The whole listing at once (:func:`listing_pages` collected)."""
    listing = Listing()
    for page in listing_pages(client, endpoint, since, token=token, retry=retry):
        listing.pages += 1
        listing.repos.extend(page.repos)
        listing.rejected.extend(page.rejected)
        listing.rejected_count += page.rejected_count
    return listing
