"""One request budget per Hub host, shared by every process of a distributed refresh.

:class:`HostBudget` is a token bucket per host (``rate`` requests per second, bursts of
``burst``) that hands out *reservations*: asked before a request, it answers how long the asker
must wait so that all askers together stay within the rate.  A server that answers 429 or 5xx with
``Retry-After`` / ``RateLimit: t=`` (read by :func:`~.http_retry.server_wait`, as the
single-process crawler reads it) pauses the host for everyone: no reservation is granted before
the pause ends.  A pause is capped at ``max_pause`` seconds - the retry policy's ``max_delay``, the
most the single-process crawler waits on one answer - so a server asking for an hour makes the
affected repos ``retry`` (taken up by the next run), as it does in one process.

The Ray executor (:mod:`.executor_ray`) runs one :class:`HostBudget` as an actor; every worker's
HTTP client asks it through :class:`BudgetedTransport`, which wraps the crawler's transport
(:class:`~.http_deadline.DeadlineTransport`, so the wait counts against the request's
wall-clock deadline like any other delay of the request).  The class itself is plain Python:
tests drive it with their own clock.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import httpx

from pedigree.crawler.http_retry import server_wait

DEFAULT_RATE = 10.0
"""Requests per second per host when none is given (the Hub's documented API quotas are a few
thousand requests per 5 minutes per user; 10/s stays under them with room for retries)."""
DEFAULT_BURST = 20
MAX_EVENTS = 100_000


@dataclass(frozen=True)
class BudgetEvent:
    """One decision of the budget: a ``grant`` (``at`` = when the request may go, ``asked`` = when
    it asked) or a ``pause`` (``at`` = when the host was paused, ``until`` = when it resumes), on
    the budget's clock; ``who`` names the asking process."""

    kind: str
    host: str
    who: str
    asked: float
    at: float
    until: float = 0.0


@dataclass(frozen=True)
class BudgetStats:
    """What the budget did: grants, pauses, and the seconds askers were told to wait in total."""

    grants: int
    pauses: int
    waited: float
    askers: int


class HostBudget:
    """Per-host reservations at ``rate`` requests per second (``None``: no rate, pauses only),
    ``burst`` at once, with server-requested pauses of at most ``max_pause`` seconds.

    ``keep_events``: how many :class:`BudgetEvent` to keep for :meth:`events` (0: none).
    """

    def __init__(
        self,
        rate: float | None = DEFAULT_RATE,
        burst: int = DEFAULT_BURST,
        max_pause: float = 20.0,
        *,
        keep_events: int = 0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if rate is not None and rate <= 0:
            raise ValueError("rate must be positive (or None for no rate)")
        if burst < 1:
            raise ValueError("burst must be at least 1")
        self.rate, self.burst, self.max_pause = rate, burst, max(0.0, max_pause)
        self._clock = clock
        self._next: dict[str, float] = {}  # the host's theoretical arrival time (GCRA)
        self._paused: dict[str, float] = {}
        self._events: deque[BudgetEvent] = deque(maxlen=max(0, min(keep_events, MAX_EVENTS)))
        self._grants = self._pauses = 0
        self._waited = 0.0
        self._askers: set[str] = set()

    def reserve(self, host: str, who: str = "") -> float:
        """Reserve one request to ``host``: the seconds to wait before sending it (0: now)."""
        now = self._clock()
        at = max(now, self._paused.get(host, now))
        if self.rate is not None:
            interval = 1.0 / self.rate
            due = self._next.get(host, now)
            at = max(at, due - (self.burst - 1) * interval)
            self._next[host] = max(due, at) + interval
        self._grants += 1
        self._waited += at - now
        self._askers.add(who)
        if self._events.maxlen:
            self._events.append(BudgetEvent("grant", host, who, now, at))
        return at - now

    def pause(self, host: str, seconds: float, who: str = "") -> float:
        """The server asked for ``seconds`` of quiet on ``host``: no reservation is granted before
        then (at most :attr:`max_pause` from now).  Returns the pause applied."""
        now = self._clock()
        seconds = min(max(0.0, seconds), self.max_pause)
        until = now + seconds
        if until > self._paused.get(host, now):
            self._paused[host] = until
            self._next[host] = max(self._next.get(host, now), until)
            self._pauses += 1
            if self._events.maxlen:
                self._events.append(BudgetEvent("pause", host, who, now, now, until))
        return seconds

    def stats(self) -> BudgetStats:
        return BudgetStats(self._grants, self._pauses, round(self._waited, 6), len(self._askers))

    def events(self) -> list[BudgetEvent]:
        """The kept events, oldest first."""
        return list(self._events)


def host_key(url: httpx.URL) -> str:
    """The budget's key for a request: ``host:port`` (each origin has its own budget)."""
    return f"{url.host}:{url.port or (443 if url.scheme == 'https' else 80)}"


class BudgetedTransport(httpx.BaseTransport):
    """Ask the budget before each request (``ask(host)`` -> seconds to wait) and tell it when the
    server asks for quiet (``tell(host, seconds)`` on a 429 or 5xx carrying a wait).  Redirect hops
    are requests of their own and ask too."""

    def __init__(
        self,
        inner: httpx.BaseTransport,
        ask: Callable[[str], float],
        tell: Callable[[str, float], None],
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._inner, self._ask, self._tell, self._sleep = inner, ask, tell, sleep

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        host = host_key(request.url)
        wait = self._ask(host)
        if wait > 0:
            self._sleep(wait)
        response = self._inner.handle_request(request)
        if response.status_code == 429 or response.status_code >= 500:
            asked = server_wait(response.headers)
            if asked:
                self._tell(host, asked)
        return response

    def close(self) -> None:
        self._inner.close()


def budgeted(client: httpx.Client, ask: Callable[[str], float], tell: Callable[[str, float], None]) -> httpx.Client:
    """``client`` (from :func:`~.http_client.hub_client`) with every request going through the
    budget: its transport is wrapped in place (httpx has no public setter for it)."""
    inner = client._transport  # noqa: SLF001 - the one transport a hub_client has (no mounts)
    client._transport = BudgetedTransport(inner, ask, tell)  # noqa: SLF001
    return client
