"""A malicious Hub-compatible server on 127.0.0.1, and a bounded runner for the real CLI.

:class:`MaliciousHub` answers what the crawler asks - ``/api/models`` (one page, every field the
listing expands) and ``HEAD``/``GET`` (with ``Range``) of ``/{repo}/resolve/{sha}/{file}`` - from
files that are either real bytes (a zoo checkpoint, the valid neighbour) or *virtual*: a
safetensors file as large as its header claims (gigabytes), whose data is generated on demand
and never stored.  Each repo may misbehave: trickle its weight file's body or headers one byte at
a time, or redirect in a loop or to ``file://``.  It counts the body bytes it sends per repo.

:func:`run_cli` runs ``python -m pedigree ...`` in a subprocess and returns its exit status,
output, wall time and peak resident memory (``os.wait4``'s ``ru_maxrss`` of that child alone);
a child past the time or memory bound is killed (so a failing run cannot take the machine down).
"""

from __future__ import annotations

import json
import re
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
_PATTERN = np.random.default_rng(0).standard_normal(4096).astype(np.float32).tobytes()


def virtual_safetensors(tensors: dict[str, list[int]]) -> tuple[bytes, int]:
    """(header bytes, data length) of an F32 safetensors file holding ``tensors`` (name -> shape)."""
    header: dict[str, Any] = {"__metadata__": {"format": "pt"}}
    offset = 0
    for name in sorted(tensors):
        n = 4 * int(np.prod(tensors[name], dtype=np.int64))
        header[name] = {"dtype": "F32", "shape": tensors[name], "data_offsets": [offset, offset + n]}
        offset += n
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text, offset


@dataclass
class RemoteFile:
    """A file of a repo: ``size`` bytes, read by ``read(offset, length)``."""

    size: int
    read: Callable[[int, int], bytes]

    @classmethod
    def real(cls, data: bytes) -> RemoteFile:
        return cls(len(data), lambda offset, length: data[offset : offset + length])

    @classmethod
    def virtual(cls, tensors: dict[str, list[int]]) -> RemoteFile:
        head, data = virtual_safetensors(tensors)

        def read(offset: int, length: int) -> bytes:
            out = bytearray(head[offset : offset + length]) if offset < len(head) else bytearray()
            need = length - len(out)
            if need > 0:
                start = (offset + len(out) - len(head)) % len(_PATTERN)
                out += (_PATTERN * ((start + need) // len(_PATTERN) + 1))[start : start + need]
            return bytes(out)

        return cls(len(head) + data, read)


@dataclass
class RemoteRepo:
    files: dict[str, RemoteFile]
    sha: str
    modified: str
    trickle: str | None = None  # "body" / "headers": the weight file's GETs trickle one byte at a time
    redirect: str | None = None  # "loop" / "file": every GET redirects to itself / to file://
    sent: int = 0  # body bytes sent
    asked: list[float] = field(default_factory=list)  # monotonic times of its requests


@dataclass
class MaliciousHub:
    repos: dict[str, RemoteRepo] = field(default_factory=dict)
    trickle_interval: float = 0.5

    def add(self, repo_id: str, files: dict[str, RemoteFile], **misbehaviour: Any) -> None:
        n = len(self.repos) + 1
        sha = f"{n:040x}"
        self.repos[repo_id] = RemoteRepo(files, sha, f"2024-01-{n:02d}T00:00:00.000Z", **misbehaviour)

    def listing(self) -> list[dict[str, Any]]:
        return [
            {
                "id": repo_id,
                "modelId": repo_id,
                "sha": repo.sha,
                "lastModified": repo.modified,
                "createdAt": repo.modified,
                "siblings": [{"rfilename": name} for name in sorted(repo.files)],
                "cardData": {},
                "gated": False,
                "private": False,
            }
            for repo_id, repo in self.repos.items()
        ]

    def __enter__(self) -> MaliciousHub:
        hub = self
        self._stop = threading.Event()

        class Handler(_Handler):
            server_hub = hub

        self._server = _QuietServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._server.shutdown()
        self._server.server_close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hangs up mid-answer (the crawler at its deadline) is expected here."""


_RESOLVE = re.compile(r"^/(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<file>.+)$")
_RANGE = re.compile(r"^bytes=(\d+)-(\d+)$")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_hub: MaliciousHub

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_HEAD(self) -> None:
        self._answer(head=True)

    def do_GET(self) -> None:
        self._answer(head=False)

    def _plain(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _answer(self, head: bool) -> None:
        hub = self.server_hub
        path = self.path.split("?")[0]
        if path == "/api/models":
            self._plain(200, b"" if head else json.dumps(hub.listing()).encode(), {"Content-Type": "application/json"})
            return
        match = _RESOLVE.match(path)
        repo = hub.repos.get(match["repo"]) if match else None
        remote = repo.files.get(match["file"]) if repo and match else None
        if repo is None or remote is None or match is None:
            self._plain(404, b"", {"X-Error-Code": "EntryNotFound"})
            return
        repo.asked.append(time.monotonic())
        if repo.redirect and not head:
            target = self.path if repo.redirect == "loop" else "file:///etc/passwd"
            self._plain(302, b"", {"Location": target})
            return
        ranged = _RANGE.match(self.headers.get("Range", ""))
        begin, end = (int(ranged[1]), int(ranged[2]) + 1) if ranged else (0, remote.size)
        end = min(end, remote.size)
        headers = {"X-Repo-Commit": repo.sha, "Accept-Ranges": "bytes", "Content-Length": str(end - begin)}
        if ranged:
            headers["Content-Range"] = f"bytes {begin}-{end - 1}/{remote.size}"
        status = 206 if ranged else 200
        slow = not head and repo.trickle is not None and match["file"].endswith(".safetensors")
        if slow and repo.trickle == "headers":
            lines = [f"HTTP/1.1 {status} Partial\r\n", *(f"{k}: {v}\r\n" for k, v in headers.items()), "\r\n"]
            self._trickle("".join(lines).encode(), repo)
            return
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()
        if head:
            return
        if slow:
            self._trickle(remote.read(begin, end - begin), repo)
            return
        for at in range(begin, end, 1 << 20):
            chunk = remote.read(at, min(1 << 20, end - at))
            try:
                self.wfile.write(chunk)
            except OSError:
                self.close_connection = True
                return
            repo.sent += len(chunk)

    def _trickle(self, data: bytes, repo: RemoteRepo) -> None:
        """One byte every ``trickle_interval`` seconds until the client hangs up (or the test ends)."""
        hub = self.server_hub
        self.close_connection = True
        for i in range(len(data)):
            if hub._stop.is_set():
                return
            try:
                self.wfile.write(data[i : i + 1])
                self.wfile.flush()
            except OSError:
                return
            repo.sent += 1
            hub._stop.wait(hub.trickle_interval)
