"""The crawler's HTTP client: keep-alive, bounded connections, a pedigree User-Agent, no cookies.

One client serves every request of a crawl (listing pages, HEADs, range reads); the token it
carries is sent only to the Hub's own origin (:mod:`.http_fetch` strips it for a CDN).
"""

from __future__ import annotations

import ssl
from functools import lru_cache
from typing import Any

import httpx

from pedigree._version import __version__
from pedigree.crawler.http_deadline import DeadlineTransport

USER_AGENT = f"pedigree/{__version__} (provenance index crawler) httpx/{httpx.__version__}"


def hub_client(token: str | None = None, *, max_connections: int = 8, timeout: float = 30.0) -> httpx.Client:
    """HTTP/1.1 keep-alive client with bounded connections (per pool, i.e. per host for a crawler
    talking to one Hub), a pedigree User-Agent, ``Authorization: Bearer <token>`` when given,
    ``follow_redirects=True``; its transport bounds every request by the wall-clock
    :func:`~.http_deadline.deadline` it runs under (:class:`~.http_deadline.DeadlineTransport`)."""
    headers = {"User-Agent": USER_AGENT}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections)
    return _CookielessClient(
        headers=headers,
        timeout=httpx.Timeout(timeout),
        follow_redirects=True,
        transport=DeadlineTransport(_tls_context(), limits),
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

    @property
    def cookies(self) -> httpx.Cookies:
        return self._no_cookies

    @cookies.setter
    def cookies(self, value: object) -> None:
        if value:
            raise ValueError("the crawler's HTTP client keeps no cookies")


@lru_cache(maxsize=4096)
def parsed_url(url: str) -> httpx.URL:
    """``httpx.URL(url)``, parsed once (httpx validates a URL character by character)."""
    return httpx.URL(url)


@lru_cache(maxsize=1)
def _tls_context() -> ssl.SSLContext:
    """httpx's default verifying TLS context (certifi's CA bundle), loaded once per process (~50 ms)."""
    return httpx.create_ssl_context()


def origin(url: httpx.URL) -> tuple[str, str, int | None]:
    """(scheme, host, port): what must match for a request to carry the token."""
    return url.scheme, url.host, url.port
