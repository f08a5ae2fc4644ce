"""HTTP plumbing for :mod:`crawler.http_source`: the client, the retry policy and a strict fetcher.

:class:`Fetcher` sends every request of one checkpoint and enforces the rules that keep a hostile
or broken server from costing more than the bytes we asked for:

* every file's size comes from a ``HEAD`` (``X-Linked-Size`` on the Hub's redirect, else
  ``Content-Length``) before any range of it is read or trusted;
* a range GET must answer ``206`` with ``Content-Range: bytes a-b/size`` matching exactly what was
  asked and the known size; a ``200`` (the server ignored ``Range``) is closed before its body is
  read (:class:`~pedigree.errors.RangeNotSupportedError`);
* bodies are streamed into a buffer of the expected length and never beyond it; a body that ends
  early is retried, then :class:`~pedigree.errors.TruncatedBodyError`;
* before each request the byte budget is checked (:class:`~pedigree.errors.ByteBudgetExceededError`,
  nothing sent); 429, 5xx, connection errors and truncated bodies are retried with exponential
  backoff that honours ``Retry-After`` and the IETF ``RateLimit`` header's ``t=``;
* the token goes only to the endpoint's origin, never to the CDN a redirect points at.
"""

from __future__ import annotations

import random
import re
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from functools import lru_cache
from typing import Any, TypeVar

import httpx

from pedigree import __version__
from pedigree.crawler.link_estimate import LinkEstimate
from pedigree.errors import (
    ByteBudgetExceededError,
    GatedRepoError,
    RangeNotSupportedError,
    RateLimitedError,
    RemoteError,
    RemoteServerError,
    RepoGoneError,
    TruncatedBodyError,
)

USER_AGENT = f"pedigree/{__version__} (provenance index crawler) httpx/{httpx.__version__}"
MAX_REDIRECTS = 5
_CONTENT_RANGE = re.compile(r"^\s*bytes\s+(\d+)-(\d+)/(\d+)\s*$", re.IGNORECASE)
_RATELIMIT_T = re.compile(r"(?:^|[;,\s])t\s*=\s*(\d+)")
_REDIRECTS = (301, 302, 303, 307, 308)
T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently a request is retried.

    429/5xx/connection errors/truncated bodies are retried; the delay honours ``Retry-After``
    (seconds or an HTTP date) and the IETF ``RateLimit`` header's ``t=<seconds>`` when present
    (the larger of those and the backoff, capped by ``max_delay``).
    """

    attempts: int = 6  # tries per request (first + retries)
    base_delay: float = 0.25  # seconds, exponential backoff base
    max_delay: float = 20.0
    jitter: float = 0.25  # ± fraction of the delay

    def delay(self, retry: int, hint: float | None = None, rng: random.Random | None = None) -> float:
        """Seconds to sleep before retry number ``retry`` (0 = the first retry)."""
        backoff = min(self.max_delay, self.base_delay * 2.0 ** min(retry, 60))
        backoff *= 1.0 + (rng or random).uniform(-self.jitter, self.jitter)
        return max(0.0, min(self.max_delay, max(backoff, hint or 0.0)))


def server_wait(headers: httpx.Headers) -> float | None:
    """The wait the server asks for: max of ``Retry-After`` and ``RateLimit``'s ``t=``."""
    waits: list[float] = []
    retry_after = headers.get("retry-after", "").strip()
    if retry_after.isdigit():
        waits.append(float(retry_after))
    elif retry_after:
        try:
            waits.append(parsedate_to_datetime(retry_after).timestamp() - time.time())
        except (TypeError, ValueError, IndexError, OverflowError):
            pass
    m = _RATELIMIT_T.search(headers.get("ratelimit", ""))
    if m:
        waits.append(float(m.group(1)))
    return max(0.0, *waits) if waits else None


def hub_client(token: str | None = None, *, max_connections: int = 8, timeout: float = 30.0) -> httpx.Client:
    """HTTP/1.1 keep-alive client with bounded connections (per pool, i.e. per host for a crawler
    talking to one Hub), a pedigree User-Agent, ``Authorization: Bearer <token>`` when given,
    ``follow_redirects=True``."""
    headers = {"User-Agent": USER_AGENT}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections)
    return _CookielessClient(
        headers=headers,
        limits=limits,
        timeout=httpx.Timeout(timeout),
        verify=_tls_context(),
        follow_redirects=True,
        http1=True,
        http2=False,
    )


class _NoCookies(httpx.Cookies):
    """A cookie jar that keeps nothing: the Hub and its CDN authenticate by token and signed URL."""

    def extract_cookies(self, response: httpx.Response) -> None:
        """Ignore ``Set-Cookie`` (httpx would parse every response's headers for it)."""


class _CookielessClient(httpx.Client):
    """An ``httpx.Client`` without a cookie jar: a crawler sends thousands of small range
    requests, and httpx's per-response cookie extraction is a sizeable part of their CPU cost."""

    def __init__(self, **kwargs: Any) -> None:
        self._no_cookies = _NoCookies()
        super().__init__(**kwargs)

    @property  # type: ignore[override]
    def cookies(self) -> httpx.Cookies:
        return self._no_cookies

    @cookies.setter
    def cookies(self, value: object) -> None:
        if value:
            raise ValueError("the crawler's HTTP client keeps no cookies")


@lru_cache(maxsize=4096)
def _parsed(url: str) -> httpx.URL:
    """``httpx.URL(url)``, parsed once (httpx validates a URL character by character)."""
    return httpx.URL(url)


@lru_cache(maxsize=1)
def _tls_context() -> ssl.SSLContext:
    """httpx's default verifying TLS context (certifi's CA bundle), loaded once per process (~50 ms)."""
    return httpx.create_ssl_context()


@dataclass
class RemoteFile:
    """One file of a revision: where its bytes are read and its size (from a ``HEAD``)."""

    name: str
    resolve_url: str
    url: str  # the redirect target (CDN) when there was one, else ``resolve_url``
    size: int
    commit: str | None = None


class _Retry(Exception):
    """A retryable failure: ``kind`` is rate / server / conn / truncated."""

    def __init__(self, kind: str, detail: str, status: int | None = None, wait: float | None = None) -> None:
        super().__init__(detail)
        self.kind, self.detail, self.status, self.wait = kind, detail, status, wait


class _Missing(Exception):
    """404 for the file itself (``EntryNotFound``): the caller decides what absence means."""


class _Expired(Exception):
    """The cached redirect target refused us (expired signed URL, blob gone): resolve again."""


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    return url.scheme, url.host, url.port


def _int_header(value: str | None) -> int | None:
    return int(value) if value is not None and value.strip().isdigit() else None


class Fetcher:
    """Every request of one checkpoint: HEADs, strict range GETs, whole small files.

    ``bytes_read`` counts body bytes received (also of failed attempts); ``requests`` counts HTTP
    requests sent (redirect hops and retries included).
    """

    def __init__(
        self,
        client: httpx.Client,
        endpoint: str,
        *,
        token: str | None,
        retry: RetryPolicy,
        budget: int | None,
        label: str,
    ) -> None:
        self.client, self.retry, self.budget, self.label = client, retry, budget, label
        self._origin = _origin(httpx.URL(endpoint))
        self._token = token
        self._lock = threading.Lock()
        self._rng = random.Random()
        self._inflight = 0  # bytes reserved by requests in progress (budget)
        self.bytes_read = 0
        self.requests = 0
        self.link = LinkEstimate()

    # -- requests ---------------------------------------------------------------------------
    @contextmanager
    def _send(
        self, method: str, url: str, *, headers: dict[str, str] | None = None, follow: bool
    ) -> Iterator[httpx.Response]:
        """Send one request (streamed) and close the response on exit, read or not."""
        request = self.client.build_request(
            method, _parsed(url), headers={"Accept-Encoding": "identity", **(headers or {})}
        )
        if _origin(request.url) != self._origin:
            request.headers.pop("Authorization", None)  # the token is for the Hub, not the CDN
        elif self._token:
            request.headers["Authorization"] = f"Bearer {self._token}"
        self._count(requests=1)
        try:
            response = self.client.send(request, stream=True, follow_redirects=follow)
        except httpx.TransportError as e:
            raise _Retry("conn", f"{type(e).__name__}: {e}") from None
        self._count(requests=len(response.history))
        try:
            yield response
        finally:
            response.close()

    def _count(self, *, requests: int = 0, body: int = 0) -> None:
        with self._lock:
            self.requests += requests
            self.bytes_read += body

    def _reserve(self, n: int, where: str) -> None:
        with self._lock:
            if self.budget is not None and self.bytes_read + self._inflight + n > self.budget:
                raise ByteBudgetExceededError(
                    f"reading {n} more bytes would exceed the byte budget of {self.budget} "
                    f"({self.bytes_read} already read); request not sent",
                    path=where,
                )
            self._inflight += n

    def _release(self, n: int) -> None:
        with self._lock:
            self._inflight -= n

    def with_retries(self, where: str, op: Callable[[], T]) -> T:
        """Run ``op``, retrying :class:`_Retry` failures per the policy; the last one decides the error."""
        attempts = max(1, self.retry.attempts)
        last: _Retry | None = None
        for attempt in range(attempts):
            if last is not None:
                time.sleep(self.retry.delay(attempt - 1, last.wait, self._rng))
            try:
                return op()
            except _Retry as e:
                last = e
        assert last is not None
        why = f"{last.detail} (after {attempts} attempts)"
        if last.kind == "rate":
            raise RateLimitedError(f"rate limited: {why}", path=where, status=last.status)
        if last.kind == "truncated":
            raise TruncatedBodyError(f"truncated body: {why}", path=where, status=last.status)
        raise RemoteServerError(why, path=where, status=last.status)

    def fail(self, response: httpx.Response, where: str, *, cached: bool = False) -> None:
        """Raise what a non-success answer means (retryable ones as :class:`_Retry`)."""
        status = response.status_code
        code = response.headers.get("x-error-code", "")
        message = response.headers.get("x-error-message", "")[:200]
        said = f"HTTP {status}" + (f" {code}" if code else "") + (f": {message}" if message else "")
        if status == 429:
            raise _Retry("rate", said, status, server_wait(response.headers))
        if status >= 500:
            raise _Retry("server", said, status, server_wait(response.headers))
        if code in ("RepoNotFound", "RevisionNotFound"):
            raise RepoGoneError(
                f"repository or revision not found (deleted, moved or private): {said}", path=where, status=status
            )
        if code == "GatedRepo" or (status in (401, 403) and not cached):
            raise GatedRepoError(
                f"access denied (gated or private repo; token missing or not allowed): {said}",
                path=where,
                status=status,
            )
        if cached and status in (403, 404, 410):
            raise _Expired(said)
        if status == 404:
            raise _Missing(said)
        if status == 416:
            raise RemoteError(
                f"range not satisfiable (did the file change on the server?): {said}", path=where, status=status
            )
        raise RemoteError(f"unexpected answer {said}", path=where, status=status)

    # -- HEAD -------------------------------------------------------------------------------
    def head(self, name: str, resolve_url: str, where: str) -> RemoteFile | None:
        """Size and read URL of a file (``None`` if the server says it does not exist)."""

        def once() -> RemoteFile:
            url, commit = resolve_url, None
            for _ in range(MAX_REDIRECTS + 1):
                with self._send("HEAD", url, follow=False) as r:
                    commit = commit or r.headers.get("x-repo-commit")
                    if r.status_code in _REDIRECTS and r.headers.get("location"):
                        url = str(r.url.join(r.headers["location"]))
                        linked = _int_header(r.headers.get("x-linked-size"))
                        if linked is not None:
                            return RemoteFile(name, resolve_url, url, linked, commit)
                        continue
                    if r.status_code == 200:
                        size = _int_header(r.headers.get("content-length"))
                        if size is None:
                            raise RemoteError(
                                "HEAD gave no usable Content-Length: the file size is unknown", path=where, status=200
                            )
                        return RemoteFile(name, resolve_url, url, size, commit)
                    self.fail(r, where)
            raise RemoteError(f"more than {MAX_REDIRECTS} redirects", path=where)

        try:
            return self.with_retries(where, once)
        except _Missing:
            return None

    # -- GET --------------------------------------------------------------------------------
    def _refreshing(self, rf: RemoteFile, where: str, op: Callable[[], None]) -> None:
        """Run ``op``; if the cached redirect target refuses us, resolve the file again once."""
        try:
            self.with_retries(where, op)
            return
        except _Expired:
            pass
        except _Missing as e:
            raise RepoGoneError(f"file is no longer on the server ({e})", path=where) from None
        fresh = self.head(rf.name, rf.resolve_url, where)
        if fresh is None:
            raise RepoGoneError("file is no longer on the server", path=where)
        if fresh.size != rf.size:
            raise RepoGoneError(f"file changed on the server (size {rf.size} -> {fresh.size})", path=where)
        rf.url = fresh.url
        try:
            self.with_retries(where, op)
        except (_Expired, _Missing) as e:
            raise RemoteError(f"the file's download URL keeps refusing us: {e}", path=where) from None

    def read_range(self, rf: RemoteFile, begin: int, buf: memoryview, where: str) -> None:
        """Fill ``buf`` with bytes ``[begin, begin + len(buf))`` of ``rf`` through one range GET."""
        end = begin + len(buf)
        if not buf:
            return
        if not 0 <= begin <= end <= rf.size:
            raise RemoteError(f"range [{begin}, {end}) is outside the file (size {rf.size})", path=where)

        def once() -> None:
            self._reserve(len(buf), where)
            try:
                sent = time.monotonic()
                with self._send("GET", rf.url, headers={"Range": f"bytes={begin}-{end - 1}"}, follow=True) as r:
                    if r.status_code == 200:
                        raise RangeNotSupportedError(
                            f"asked for bytes {begin}-{end - 1} but the server answered 200 with the whole "
                            f"file; aborted without reading it",
                            path=where,
                            status=200,
                        )
                    if r.status_code != 206:
                        self.fail(r, where, cached=rf.url != rf.resolve_url)
                    self._check_206(r, begin, end, rf.size, where)
                    answered = time.monotonic()
                    self._stream_into(r, buf, where)
                    self.link.observe(answered - sent, len(buf), time.monotonic() - answered)
            finally:
                self._release(len(buf))

        self._refreshing(rf, where, once)

    @staticmethod
    def _check_206(r: httpx.Response, begin: int, end: int, size: int, where: str) -> None:
        m = _CONTENT_RANGE.match(r.headers.get("content-range", ""))
        got = tuple(int(x) for x in m.groups()) if m else None
        if got is None or got[:2] != (begin, end - 1):
            raise RangeNotSupportedError(
                f"asked for bytes {begin}-{end - 1} but got 206 with Content-Range {r.headers.get('content-range')!r}",
                path=where,
                status=206,
            )
        if got[2] != size:
            raise RemoteError(
                f"Content-Range says the file has {got[2]} bytes, HEAD said {size} (the file changed on the server?)",
                path=where,
                status=206,
            )
        length = _int_header(r.headers.get("content-length"))
        if length is not None and length != end - begin:
            raise RangeNotSupportedError(
                f"Content-Length {length} does not match the {end - begin}-byte range", path=where, status=206
            )
        if r.headers.get("content-encoding", "identity").lower() != "identity":
            raise RemoteError(
                f"unexpected Content-Encoding {r.headers['content-encoding']!r} on raw bytes",
                path=where,
                status=r.status_code,
            )

    def _stream_into(self, r: httpx.Response, buf: memoryview, where: str) -> None:
        """Read the body into ``buf``: exactly ``len(buf)`` bytes, never more."""
        got = 0
        try:
            for chunk in r.iter_raw():
                n = len(chunk)
                self._count(body=n)
                if got + n > len(buf):
                    raise RemoteError(
                        f"body is longer than the {len(buf)} bytes expected; stopped reading",
                        path=where,
                        status=r.status_code,
                    )
                buf[got : got + n] = chunk
                got += n
        except httpx.TransportError as e:
            raise _Retry(
                "truncated", f"body ended after {got} of {len(buf)} bytes ({type(e).__name__})", r.status_code
            ) from None
        if got < len(buf):
            raise _Retry("truncated", f"body ended after {got} of {len(buf)} bytes", r.status_code)

    def read_whole(self, rf: RemoteFile, where: str) -> bytes:
        """All ``rf.size`` bytes of a (small) file through one plain GET."""
        out = bytearray(rf.size)

        def once() -> None:
            self._reserve(rf.size, where)
            try:
                with self._send("GET", rf.url, follow=True) as r:
                    if r.status_code != 200:
                        self.fail(r, where, cached=rf.url != rf.resolve_url)
                    length = _int_header(r.headers.get("content-length"))
                    if length is not None and length != rf.size:
                        raise RemoteError(
                            f"Content-Length {length} does not match the size {rf.size} from HEAD "
                            "(the file changed on the server?)",
                            path=where,
                            status=200,
                        )
                    self._stream_into(r, memoryview(out), where)
            finally:
                self._release(rf.size)

        if rf.size:
            self._refreshing(rf, where, once)
        return bytes(out)
