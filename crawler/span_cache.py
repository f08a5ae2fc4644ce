"""The prefetch cache of a remote checkpoint: which byte spans to request, and what was received.

:func:`coalesce` is the request plan (pure): spans of one file closer than ``gap`` bytes become one
request, as long as it stays within ``part`` bytes (so one batch keeps every connection busy) and
``max_request``.  :class:`SpanCache` keeps received spans per file, finds a read in them even when
it crosses adjacent spans, and drops the least recently used spans past its byte limit.
"""

from __future__ import annotations

import bisect
import threading
from collections import OrderedDict
from collections.abc import Iterable

Span = tuple[str, int, int]  # (file, begin, end)


def coalesce(spans: Iterable[Span], gap: int, part: int, max_request: int) -> list[Span]:
    """The requests that fetch ``spans``: sorted, nearby spans of a file merged (see module doc)."""
    groups: list[Span] = []
    for file, begin, end in sorted(set(spans)):
        last = groups[-1] if groups else None
        if last is not None and last[0] == file and begin - last[2] < gap and end - last[1] <= min(part, max_request):
            groups[-1] = (file, last[1], max(last[2], end))
        else:
            groups.append((file, begin, end))
    return groups


class SpanCache:
    """Received byte spans, by file; thread-safe; bounded by ``limit`` bytes (LRU eviction).

    ``max_span`` is the longest span ever stored (one request), which bounds how far back a
    lookup searches for a span that covers a position.
    """

    def __init__(self, limit: int, max_span: int) -> None:
        self.limit, self.max_span = limit, max_span
        self._lock = threading.Lock()
        self._spans: OrderedDict[tuple[str, int], tuple[int, memoryview]] = OrderedDict()
        self._starts: dict[str, list[int]] = {}  # sorted span begins per file
        self.size = 0

    def put(self, file: str, begin: int, data: memoryview) -> None:
        """Keep ``data`` as bytes ``[begin, begin + len(data))`` of ``file``."""
        end = begin + len(data)
        with self._lock:
            old = self._spans.get((file, begin))
            if old is None:
                bisect.insort(self._starts.setdefault(file, []), begin)
            if old is None or old[0] < end:
                self.size += (end - begin) - (0 if old is None else old[0] - begin)
                self._spans[(file, begin)] = (end, data.toreadonly())
            while self.size > self.limit and self._spans:
                (f, b), (e, _) = self._spans.popitem(last=False)
                self._starts[f].remove(b)
                self.size -= e - b

    def pieces(self, file: str, begin: int, end: int) -> list[memoryview] | None:
        """Bytes ``[begin, end)`` as consecutive pieces of cached spans (each marked recently
        used), or None when some byte is not cached."""
        pieces = []
        with self._lock:
            starts = self._starts.get(file, [])
            position = begin
            while position < end:
                i = bisect.bisect_right(starts, position)
                while i > 0:  # spans starting at or before ``position``, nearest first
                    i -= 1
                    b = starts[i]
                    e, data = self._spans[(file, b)]
                    if position < e:
                        self._spans.move_to_end((file, b))
                        stop = min(e, end)
                        pieces.append(data[position - b : stop - b])
                        position = stop
                        break
                    if position - b > self.max_span:  # no span is that long
                        return None
                else:
                    return None
        return pieces

    def copy_into(self, file: str, begin: int, buf: memoryview) -> bool:
        """Fill ``buf`` from the cache; False (``buf`` untouched) when some byte is missing."""
        pieces = self.pieces(file, begin, begin + len(buf))
        if pieces is None:
            return False
        at = 0
        for piece in pieces:
            buf[at : at + len(piece)] = piece
            at += len(piece)
        return True

    def clear(self) -> None:
        with self._lock:
            self._spans.clear()
            self._starts.clear()
            self.size = 0
