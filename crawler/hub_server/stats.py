"""Request instrumentation: counters by kind and status, body bytes sent, and a per-request log.

Kinds: ``api_list``, ``api_info``, ``api_tree``, ``api_other``, ``resolve_head``, ``resolve_get``,
``cdn_head``, ``cdn_get``; ``range_get`` additionally counts GETs on resolve/CDN paths that carried
a ``Range`` header.  Admin requests (``/_pedigree/...``) are not counted.  ``bytes_sent`` counts
response *body* bytes actually written (a truncated body counts what was sent; HEAD counts 0).
CDN records carry the repo, file and commit of the ``/resolve`` redirect that produced the URL,
so ``bytes_for(repo=…, file=…)`` sums a file's bytes over both paths.  A request is recorded just
before its answer is written, so a client that has read the answer always finds it counted.
"""

from __future__ import annotations

import threading
from collections import Counter, deque
from dataclasses import asdict, dataclass, field, replace
from typing import Any

MAX_LOG = 100_000


@dataclass(frozen=True)
class RequestRecord:
    """One request as served."""

    seq: int
    method: str
    path: str
    kind: str
    status: int
    body_bytes: int
    range: str | None = None
    repo: str | None = None
    file: str | None = None
    revision: str | None = None
    faults: tuple[str, ...] = ()


@dataclass
class StatsSnapshot:
    """A copy of the counters at one moment."""

    requests: dict[str, int] = field(default_factory=dict)
    status: dict[int, int] = field(default_factory=dict)
    bytes_sent: int = 0
    bytes_by_kind: dict[str, int] = field(default_factory=dict)
    log: list[RequestRecord] = field(default_factory=list)

    def count(self, kind: str) -> int:
        """Requests of one kind (or ``range_get`` / ``total``)."""
        return self.requests.get(kind, 0)

    def bytes_for(self, repo: str | None = None, file: str | None = None, kinds: tuple[str, ...] = ()) -> int:
        """Body bytes sent for matching log records (``file`` is the path inside the repo)."""
        return sum(
            r.body_bytes
            for r in self.log
            if (repo is None or r.repo == repo) and (file is None or r.file == file) and (not kinds or r.kind in kinds)
        )

    def to_json(self, with_log: bool = True) -> dict[str, Any]:
        out: dict[str, Any] = {
            "requests": self.requests,
            "status": {str(k): v for k, v in self.status.items()},
            "bytes_sent": self.bytes_sent,
            "bytes_by_kind": self.bytes_by_kind,
        }
        if with_log:
            out["log"] = [asdict(r) for r in self.log]
        return out


class Stats:
    """Thread-safe counters; ``record`` once per answered request."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self._seq = 0
            self._requests: Counter[str] = Counter()
            self._status: Counter[int] = Counter()
            self._bytes: Counter[str] = Counter()
            self._log: deque[RequestRecord] = deque(maxlen=MAX_LOG)

    def record(self, method: str, path: str, kind: str, status: int, body_bytes: int, **extra: Any) -> int:
        """Count one request; returns its sequence number (for :meth:`correct`)."""
        with self._lock:
            self._seq += 1
            self._requests[kind] += 1
            self._requests["total"] += 1
            if method == "GET" and extra.get("range") and kind in ("resolve_get", "cdn_get"):
                self._requests["range_get"] += 1
            self._status[status] += 1
            self._bytes[kind] += body_bytes
            self._log.append(RequestRecord(self._seq, method, path, kind, status, body_bytes, **extra))
            return self._seq

    def correct(self, seq: int, body_bytes: int) -> None:
        """Fix the body bytes of a recorded request (the connection broke mid-body)."""
        with self._lock:
            for i in range(len(self._log) - 1, -1, -1):
                rec = self._log[i]
                if rec.seq == seq:
                    self._bytes[rec.kind] += body_bytes - rec.body_bytes
                    self._log[i] = replace(rec, body_bytes=body_bytes)
                    return

    def snapshot(self) -> StatsSnapshot:
        with self._lock:
            return StatsSnapshot(
                requests=dict(self._requests),
                status=dict(self._status),
                bytes_sent=sum(self._bytes.values()),
                bytes_by_kind=dict(self._bytes),
                log=list(self._log),
            )
