"""Retrying: the backoff policy, what the server asks us to wait, and the retry loop.

429, 5xx, connection errors and bodies cut short are retried with exponential backoff and
jitter; the delay honours ``Retry-After`` (seconds or an HTTP date) and the IETF ``RateLimit``
header's ``t=<seconds>``.  When the attempts run out, the last failure decides the error.
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import TypeVar

import httpx

from pedigree.errors import RateLimitedError, RemoteServerError, TruncatedBodyError

_RATELIMIT_T = re.compile(r"(?:^|[;,\s])t\s*=\s*(\d+)")
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


class Retryable(Exception):
    """A failure worth another attempt: ``kind`` is rate / server / conn / truncated."""

    def __init__(self, kind: str, detail: str, status: int | None = None, wait: float | None = None) -> None:
        super().__init__(detail)
        self.kind, self.detail, self.status, self.wait = kind, detail, status, wait


def retrying(policy: RetryPolicy, where: str, op: Callable[[], T], rng: random.Random | None = None) -> T:
    """Run ``op``, retrying :class:`Retryable` failures per ``policy``; then raise what the last
    one means (:class:`RateLimitedError`, :class:`TruncatedBodyError` or :class:`RemoteServerError`)."""
    attempts = max(1, policy.attempts)
    last: Retryable | None = None
    for attempt in range(attempts):
        if last is not None:
            time.sleep(policy.delay(attempt - 1, last.wait, rng))
        try:
            return op()
        except Retryable as e:
            last = e
    assert last is not None
    why = f"{last.detail} (after {attempts} attempts)"
    if last.kind == "rate":
        raise RateLimitedError(f"rate limited: {why}", path=where, status=last.status)
    if last.kind == "truncated":
        raise TruncatedBodyError(f"truncated body: {why}", path=where, status=last.status)
    raise RemoteServerError(why, path=where, status=last.status)
