"""Tasks kept at work while their results are settled in the order they were submitted.

The Ray executor commits repos in listing order (so its database is the single-process one, keys
included) while the tasks finish in any order.  :class:`OrderedWindow` holds the submitted tasks:
at most ``workers`` unfinished at once (``--workers`` is exactly the tasks at work, whatever the
cluster's size), at most ``backlog x workers`` finished ones waiting for an earlier one to be
settled, and each settled - handed to ``settle`` - as soon as it and every task before it are done.
An entry without a task (the driver settles it itself) is settled when it reaches the head.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

T = TypeVar("T")
Wait = Callable[..., tuple[list[Any], list[Any]]]  # ray.wait(refs, num_returns=..., timeout=...)


class OrderedWindow(Generic[T]):
    """Entries ``(item, ref)`` in submission order; ``settle(item, ref)`` is called once per entry,
    in that order, when ``ref`` is done (``ref`` None: at once)."""

    def __init__(self, wait: Wait, workers: int, settle: Callable[[T, Any], None], backlog: int = 4) -> None:
        self._wait, self.workers, self._settle = wait, max(1, workers), settle
        self.limit = max(1, backlog) * self.workers
        self._entries: deque[tuple[T, Any]] = deque()

    def __len__(self) -> int:
        return len(self._entries)

    def items(self) -> Iterator[T]:
        return (item for item, _ in self._entries)

    def add(self, item: T, ref: Any) -> None:
        """Append an entry, then settle what is ready and wait until a worker is free."""
        self._entries.append((item, ref))
        while True:
            self._settle_ready()
            busy = [r for _, r in self._entries if r is not None]
            running = self._wait(busy, num_returns=len(busy), timeout=0)[1] if busy else []
            if len(running) < self.workers and len(self._entries) < self.limit:
                return
            if len(running) >= self.workers:
                self._wait(running, num_returns=1)  # until one of them is done
            else:
                self.settle_head()  # enough results wait for the head: wait for it

    def settle_head(self) -> None:
        """Settle the oldest entry (waiting for its task)."""
        item, ref = self._entries.popleft()
        self._settle(item, ref)

    def drain(self) -> None:
        """Settle every entry, in order."""
        while self._entries:
            self.settle_head()

    def pending(self) -> list[Any]:
        """The tasks not settled yet (to cancel them when the run stops early)."""
        return [ref for _, ref in self._entries if ref is not None]

    def _settle_ready(self) -> None:
        while self._entries:
            ref = self._entries[0][1]
            if ref is not None and not self._wait([ref], num_returns=1, timeout=0)[0]:
                return
            self.settle_head()
