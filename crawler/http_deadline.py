"""Wall-clock deadlines for HTTP requests, which a server trickling bytes cannot stretch.

httpx's timeouts are per socket operation: a server that sends one byte every two seconds never
trips a 30 s read timeout, in the status line, the headers or the body.  Here every request runs
under an absolute deadline (:func:`deadline`, a thread-local monotonic time): the network streams
of a :class:`DeadlineTransport` (the crawler's client is built on one) bound each read, write and
connect by the time left, and fail it as a timeout once none is.  :class:`Deadlines` says how long
a request and a model may take (``PEDIGREE_REQUEST_DEADLINE`` / ``PEDIGREE_MODEL_DEADLINE``
override the base seconds).
"""

from __future__ import annotations

import os
import ssl
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpcore
import httpx

REQUEST_ENV = "PEDIGREE_REQUEST_DEADLINE"
MODEL_ENV = "PEDIGREE_MODEL_DEADLINE"
_local = threading.local()


@dataclass(frozen=True)
class Deadlines:
    """How long reading may take, whatever the server does.

    A request may take ``request_base`` seconds plus one second per ``min_rate`` bytes of the
    body it expects, at most ``request_max``; a model (every request, retry and wait of it)
    ``model_base`` seconds plus the same per byte of its read plan, at most ``model_max``.
    """

    request_base: float = 60.0
    request_max: float = 1200.0
    model_base: float = 600.0
    model_max: float = 4 * 3600.0
    min_rate: float = 256 * 1024  # bytes per second: slower than this is not a link we wait for

    @classmethod
    def from_env(cls) -> Deadlines:
        """The defaults, with the base seconds taken from the environment when set (tests, slow links)."""
        request, model = _seconds(REQUEST_ENV), _seconds(MODEL_ENV)
        return cls(
            request_base=request if request is not None else cls.request_base,
            model_base=model if model is not None else cls.model_base,
        )

    def for_request(self, nbytes: int) -> float:
        return min(self.request_max, self.request_base + max(0, nbytes) / self.min_rate)

    def for_model(self, nbytes: int) -> float:
        return min(self.model_max, self.model_base + max(0, nbytes) / self.min_rate)


def _seconds(name: str) -> float | None:
    try:
        value = float(os.environ.get(name, ""))
    except ValueError:
        return None
    return value if 0 < value < 1e7 else None


@contextmanager
def deadline(at: float | None) -> Iterator[None]:
    """Run the block's requests (this thread) under the monotonic deadline ``at`` (None: none;
    nested deadlines keep the earlier)."""
    previous = getattr(_local, "at", None)
    _local.at = at if previous is None else previous if at is None else min(at, previous)
    try:
        yield
    finally:
        _local.at = previous


def remaining() -> float | None:
    """Seconds left to this thread's deadline (None: no deadline; may be <= 0)."""
    at = getattr(_local, "at", None)
    return None if at is None else at - time.monotonic()


def expired() -> bool:
    left = remaining()
    return left is not None and left <= 0


def _bounded(timeout: float | None, error: type[Exception]) -> float | None:
    left = remaining()
    if left is None:
        return timeout
    if left <= 0:
        raise error("the request's wall-clock deadline has passed")
    return left if timeout is None else min(timeout, left)


class _DeadlineStream(httpcore.NetworkStream):
    def __init__(self, inner: httpcore.NetworkStream) -> None:
        self._inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, _bounded(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, _bounded(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(self, *args: Any, **kwargs: Any) -> httpcore.NetworkStream:
        return _DeadlineStream(self._inner.start_tls(*args, **kwargs))

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _DeadlineBackend(httpcore.NetworkBackend):
    def __init__(self, inner: httpcore.NetworkBackend) -> None:
        self._inner = inner

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        stream = self._inner.connect_tcp(
            host, port, _bounded(timeout, httpcore.ConnectTimeout), local_address, socket_options
        )
        return _DeadlineStream(stream)

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.NetworkStream:
        stream = self._inner.connect_unix_socket(path, _bounded(timeout, httpcore.ConnectTimeout), socket_options)
        return _DeadlineStream(stream)

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


_ERRORS: tuple[tuple[type[Exception], type[httpx.TransportError]], ...] = (
    # httpcore's errors as httpx's, the most specific first (what httpx's own transport raises)
    (httpcore.ConnectTimeout, httpx.ConnectTimeout),
    (httpcore.ReadTimeout, httpx.ReadTimeout),
    (httpcore.WriteTimeout, httpx.WriteTimeout),
    (httpcore.PoolTimeout, httpx.PoolTimeout),
    (httpcore.TimeoutException, httpx.TimeoutException),
    (httpcore.ConnectError, httpx.ConnectError),
    (httpcore.ReadError, httpx.ReadError),
    (httpcore.WriteError, httpx.WriteError),
    (httpcore.NetworkError, httpx.NetworkError),
    (httpcore.ProxyError, httpx.ProxyError),
    (httpcore.UnsupportedProtocol, httpx.UnsupportedProtocol),
    (httpcore.LocalProtocolError, httpx.LocalProtocolError),
    (httpcore.RemoteProtocolError, httpx.RemoteProtocolError),
    (httpcore.ProtocolError, httpx.ProtocolError),
)


@contextmanager
def _as_httpx_errors() -> Iterator[None]:
    try:
        yield
    except Exception as error:
        mapped = next((to for source, to in _ERRORS if isinstance(error, source)), None)
        if mapped is None:
            raise
        raise mapped(str(error)) from error


class _Body(httpx.SyncByteStream):
    def __init__(self, stream: Iterable[bytes]) -> None:
        self._stream = stream

    def __iter__(self) -> Iterator[bytes]:
        with _as_httpx_errors():
            yield from self._stream

    def close(self) -> None:
        close = getattr(self._stream, "close", None)
        if close is not None:
            close()


class DeadlineTransport(httpx.BaseTransport):
    """An HTTP/1.1 transport whose connections honour :func:`deadline`: an
    ``httpcore.ConnectionPool`` given a network backend that bounds every connect, read and write
    by the time left (httpx's own ``HTTPTransport`` takes no backend)."""

    def __init__(self, ssl_context: ssl.SSLContext, limits: httpx.Limits) -> None:
        self._pool = httpcore.ConnectionPool(
            ssl_context=ssl_context,
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            http1=True,
            http2=False,
            network_backend=_DeadlineBackend(httpcore.SyncBackend()),
        )

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        assert isinstance(request.stream, httpx.SyncByteStream)
        url = request.url
        core = httpcore.Request(
            method=request.method,
            url=httpcore.URL(scheme=url.raw_scheme, host=url.raw_host, port=url.port, target=url.raw_path),
            headers=request.headers.raw,
            content=request.stream,
            extensions=request.extensions,
        )
        with _as_httpx_errors():
            answer = self._pool.handle_request(core)
        assert isinstance(answer.stream, Iterable)
        return httpx.Response(
            answer.status, headers=answer.headers, stream=_Body(answer.stream), extensions=answer.extensions
        )

    def close(self) -> None:
        self._pool.close()
