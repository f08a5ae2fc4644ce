"""Strict HTTP reads for one checkpoint (or one listing): HEADs, range GETs, whole small files.

:class:`Fetcher` enforces the rules that keep a hostile or broken server from costing more than
the bytes we asked for:

* every file's size comes from a ``HEAD`` (``X-Linked-Size`` on the Hub's redirect, else
  ``Content-Length``) before any range of it is read or trusted;
* a range GET must answer ``206`` with ``Content-Range: bytes a-b/size`` matching exactly what was
  asked and the known size; a ``200`` (the server ignored ``Range``) is closed before its body is
  read (:class:`~pedigree.errors.RangeNotSupportedError`);
* bodies are streamed into a buffer of the expected length and never beyond it (a JSON page into
  at most its cap); nothing is decompressed; a body that ends early is retried, then
  :class:`~pedigree.errors.TruncatedBodyError`;
* before each request the byte budget is checked (:class:`~pedigree.errors.ByteBudgetExceededError`,
  nothing sent); failures are retried per :mod:`.http_retry` and mapped per :mod:`.http_errors`;
* the token goes only to the endpoint's origin, never to the CDN a redirect points at;
* every request runs under a wall-clock deadline (:mod:`.http_deadline`: its base seconds plus its
  expected body at a minimum rate) and every request of a checkpoint under the model's deadline,
  which a server trickling bytes cannot stretch (:class:`~pedigree.errors.DeadlineExceededError`);
* numbers in headers are ASCII digits of bounded length; a redirect loop or a redirect to
  another scheme (``file://``) is a permanent :class:`~pedigree.errors.RemoteError`, not a retry.
"""

from __future__ import annotations

import json
import random
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TypeVar

import httpx

from pedigree.crawler.http_client import origin, parsed_url
from pedigree.crawler.http_deadline import Deadlines, deadline, expired
from pedigree.crawler.http_errors import Expired, Missing, answer_error
from pedigree.crawler.http_retry import Retryable, RetryPolicy, retrying
from pedigree.crawler.link_estimate import LinkEstimate
from pedigree.errors import (
    ByteBudgetExceededError,
    CheckpointError,
    DeadlineExceededError,
    RangeNotSupportedError,
    RemoteError,
    RepoGoneError,
)

MAX_REDIRECTS = 5
_CONTENT_RANGE = re.compile(r"^\s*bytes\s+([0-9]{1,20})-([0-9]{1,20})/([0-9]{1,20})\s*$", re.IGNORECASE | re.ASCII)
_DIGITS = re.compile(r"^\s*([0-9]{1,20})\s*$", re.ASCII)
_REDIRECTS = (301, 302, 303, 307, 308)
T = TypeVar("T")


@dataclass
class RemoteFile:
    """One file of a revision: where its bytes are read and its size (from a ``HEAD``)."""

    name: str
    resolve_url: str
    url: str  # the redirect target (CDN) when there was one, else ``resolve_url``
    size: int
    commit: str | None = None


def _int_header(value: str | None) -> int | None:
    """A header's non-negative integer (ASCII digits, at most 20 of them), else None."""
    match = _DIGITS.match(value) if value is not None else None
    return int(match.group(1)) if match else None


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
        deadlines: Deadlines | None = None,
    ) -> None:
        self.client, self.retry, self.budget, self.label = client, retry, budget, label
        self.deadlines = deadlines or Deadlines.from_env()
        self.model_deadline: float | None = None  # monotonic time after which no request is sent
        self._origin = origin(httpx.URL(endpoint))
        self._token = token
        self._lock = threading.Lock()
        self._rng = random.Random()
        self._inflight = 0  # bytes reserved by requests in progress (budget)
        self.bytes_read = 0
        self.requests = 0
        self.link = LinkEstimate()

    # -- requests ---------------------------------------------------------------------------
    def start_clock(self, seconds: float) -> None:
        """No request is sent (and none runs) more than ``seconds`` from now; an earlier model
        deadline stays."""
        at = time.monotonic() + seconds
        self.model_deadline = at if self.model_deadline is None else min(self.model_deadline, at)

    @contextmanager
    def _send(
        self, method: str, url: str, *, headers: dict[str, str] | None = None, follow: bool, expect: int = 0
    ) -> Iterator[httpx.Response]:
        """Send one request (streamed) and close the response on exit, read or not; the request,
        body included, must be over within its deadline (``expect``: the body bytes it should bring)."""
        now = time.monotonic()
        if self.model_deadline is not None and now >= self.model_deadline:
            raise DeadlineExceededError(
                "the model's wall-clock deadline passed (the server is too slow); request not sent", path=self.label
            )
        at = now + self.deadlines.for_request(expect)
        at = at if self.model_deadline is None else min(at, self.model_deadline)
        try:
            request = self.client.build_request(
                method, parsed_url(url), headers={"Accept-Encoding": "identity", **(headers or {})}
            )
        except (httpx.InvalidURL, ValueError) as e:
            raise RemoteError(f"cannot request {url[:200]!r}: {e}", path=self.label) from None
        if origin(request.url) != self._origin:
            request.headers.pop("Authorization", None)  # the token is for the Hub, not the CDN
        elif self._token:
            request.headers["Authorization"] = f"Bearer {self._token}"
        self._count(requests=1)
        with deadline(at):
            response = self._answer(request, follow, at - now)
            self._count(requests=len(response.history))
            try:
                yield response
            finally:
                response.close()

    def _answer(self, request: httpx.Request, follow: bool, seconds: float) -> httpx.Response:
        try:
            return self.client.send(request, stream=True, follow_redirects=follow)
        except httpx.TooManyRedirects:
            raise RemoteError(f"redirected too many times from {str(request.url)[:200]}", path=self.label) from None
        except httpx.UnsupportedProtocol as e:
            raise RemoteError(f"redirected to a URL that is not http(s): {e}", path=self.label) from None
        except httpx.TransportError as e:
            if expired():
                raise Retryable("slow", f"no answer within the request's {seconds:.0f} s deadline") from None
            raise Retryable("conn", f"{type(e).__name__}: {e}") from None
        except (httpx.HTTPError, httpx.InvalidURL, ValueError) as e:
            raise RemoteError(f"unusable answer: {type(e).__name__}: {e}", path=self.label) from None

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
        """Run ``op``, retrying per the policy (:func:`~.http_retry.retrying`)."""
        return retrying(self.retry, where, op, self._rng)

    def fail(self, response: httpx.Response, where: str, *, cached: bool = False) -> None:
        """Raise what a non-success answer means (:func:`~.http_errors.answer_error`)."""
        raise answer_error(response.status_code, response.headers, where, cached=cached)

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
        except Missing:
            return None

    # -- GET --------------------------------------------------------------------------------
    def _refreshing(self, rf: RemoteFile, where: str, op: Callable[[], None]) -> None:
        """Run ``op``; if the cached redirect target refuses us, resolve the file again once."""
        try:
            self.with_retries(where, op)
            return
        except Expired:
            pass
        except Missing as e:
            raise RepoGoneError(f"file is no longer on the server ({e})", path=where) from None
        fresh = self.head(rf.name, rf.resolve_url, where)
        if fresh is None:
            raise RepoGoneError("file is no longer on the server", path=where)
        if fresh.size != rf.size:
            raise RepoGoneError(f"file changed on the server (size {rf.size} -> {fresh.size})", path=where)
        rf.url = fresh.url
        try:
            self.with_retries(where, op)
        except (Expired, Missing) as e:
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
                with self._send(
                    "GET", rf.url, headers={"Range": f"bytes={begin}-{end - 1}"}, follow=True, expect=len(buf)
                ) as r:
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
                if expired() and got < len(buf):
                    raise Retryable("slow", _too_slow(got, len(buf)), r.status_code)
        except httpx.TransportError as e:
            if expired():
                raise Retryable("slow", _too_slow(got, len(buf)), r.status_code) from None
            raise Retryable(
                "truncated", f"body ended after {got} of {len(buf)} bytes ({type(e).__name__})", r.status_code
            ) from None
        if got < len(buf):
            raise Retryable("truncated", f"body ended after {got} of {len(buf)} bytes", r.status_code)

    def read_whole(self, rf: RemoteFile, where: str) -> bytes:
        """All ``rf.size`` bytes of a (small) file through one plain GET."""
        out = bytearray(rf.size)

        def once() -> None:
            self._reserve(rf.size, where)
            try:
                with self._send("GET", rf.url, follow=True, expect=rf.size) as r:
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

    def read_json(
        self, url: str, where: str, max_bytes: int, parse: Callable[[bytearray], object] = json.loads
    ) -> tuple[object, httpx.Response]:
        """A JSON document of at most ``max_bytes`` (not decompressed: we ask for ``identity``),
        parsed by ``parse`` (a bounded parser such as :func:`~pedigree.indexer.bounded_json.loads_json`
        caps what the parse costs, not only the bytes); returns it with the response (its headers,
        for paging)."""

        def once() -> tuple[object, httpx.Response]:
            with self._send("GET", url, follow=True, expect=max_bytes) as r:
                if r.status_code != 200:
                    self.fail(r, where)
                encoding = r.headers.get("content-encoding", "identity").lower()
                if encoding != "identity":
                    raise RemoteError(f"refusing a {encoding!r}-encoded answer (asked for identity)", path=where)
                declared = _int_header(r.headers.get("content-length"))
                if declared is not None and declared > max_bytes:
                    raise RemoteError(f"answer of {declared} bytes is over the {max_bytes}-byte limit", path=where)
                body = bytearray()
                try:
                    for chunk in r.iter_raw():
                        self._count(body=len(chunk))
                        body += chunk
                        if len(body) > max_bytes:
                            raise RemoteError(f"answer is over the {max_bytes}-byte limit; stopped reading", path=where)
                        if expired():
                            raise Retryable("slow", _too_slow(len(body), declared))
                except httpx.TransportError as e:
                    if expired():
                        raise Retryable("slow", _too_slow(len(body), declared)) from None
                    raise Retryable("truncated", f"body ended after {len(body)} bytes ({type(e).__name__})") from None
            try:
                return parse(body), r
            except CheckpointError as e:  # a bounded parser's refusal says what was wrong
                raise RemoteError(str(e), path=where) from None
            except (UnicodeDecodeError, ValueError) as e:
                raise RemoteError(f"answer is not JSON: {e}", path=where) from None

        try:
            return self.with_retries(where, once)
        except (Missing, Expired) as e:  # a page has no cached URL to resolve again: the answer is final
            raise RemoteError(f"not found: {e}", path=where, status=404) from None


def _too_slow(got: int, expected: int | None) -> str:
    of = f" of {expected}" if expected is not None else ""
    return f"the request's wall-clock deadline passed after {got}{of} body bytes (the server is too slow)"
