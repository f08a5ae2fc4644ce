"""What a request costs on the link to a Hub, learnt from the crawler's own range GETs.

Used to decide when reading the bytes between two wanted spans is cheaper than a second request.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

THROUGHPUT_SAMPLE = 256 * 1024
"""Bodies at least this large measure the link's throughput (smaller ones mostly its latency)."""


@dataclass
class LinkEstimate:
    """What one request costs on this link, learnt from the range GETs: the round trip (time to
    the answer's headers, a running minimum) and the throughput of bodies of at least
    :data:`THROUGHPUT_SAMPLE` bytes (exponentially weighted)."""

    round_trip: float | None = None
    throughput: float | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def observe(self, waited: float, nbytes: int, streaming: float) -> None:
        with self._lock:
            self.round_trip = waited if self.round_trip is None else min(self.round_trip, waited)
            if nbytes >= THROUGHPUT_SAMPLE and streaming > 0:
                rate = nbytes / streaming
                self.throughput = rate if self.throughput is None else 0.7 * self.throughput + 0.3 * rate

    def coalescing_gap(self, concurrency: int, low: int, high: int) -> int:
        """Bytes worth skipping to save a request: round trip × throughput / parallel requests
        (reading a gap costs gap / throughput; a request costs a round trip shared by
        ``concurrency`` connections), clamped to [low, high]; ``low`` until both are known."""
        with self._lock:
            if self.round_trip is None or self.throughput is None:
                return low
            return int(min(max(self.round_trip * self.throughput / max(concurrency, 1), low), high))
