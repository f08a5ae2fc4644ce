"""A model of the network link between the crawler and the Hub, for honest benchmarks.

On 127.0.0.1 a download costs a memory copy, so "bytes not read" is worth nothing there.  A
:class:`Link` makes the bundled server behave like a remote Hub: every request waits ``latency``
seconds before it is answered (one round trip), and every body byte passes through one shared
FIFO pipe of ``bandwidth`` bytes/s, whichever connection sends it (parallel connections share
the link, as on a real uplink).  Both a crawler and a ``snapshot_download`` baseline pay the
same link, so their ratio measures what reading fewer bytes buys.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field


@dataclass
class Link:
    """``latency`` seconds per request; ``bandwidth`` bytes/s shared by all connections (None: unlimited)."""

    latency: float = 0.0
    bandwidth: float | None = None
    _free_at: float = field(default=0.0, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def round_trip(self) -> None:
        if self.latency > 0:
            time.sleep(self.latency)

    def transmit(self, nbytes: int) -> None:
        """Block until ``nbytes`` have passed through the shared pipe (FIFO reservation)."""
        if not self.bandwidth or nbytes <= 0:
            return
        with self._lock:
            start = max(time.monotonic(), self._free_at)
            self._free_at = start + nbytes / self.bandwidth
            done = self._free_at
        delay = done - time.monotonic()
        if delay > 0:
            time.sleep(delay)
