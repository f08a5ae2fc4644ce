"""The bundled Hub server in its own process, for benchmarks that time a client against it.

The Hub is another machine: its request handling must not share the client's Python process
(one GIL) or be counted as the client's work.  :class:`RemoteHub` runs the server
(``python -m pedigree.crawler.hub_server``) as a child process with the simulated link
(:class:`crawler.hub_server.Link`) and a fresh admin token, waits until it answers, and reads its
counters through the admin endpoint ``/_pedigree/stats`` (with that token as a bearer token).
"""

from __future__ import annotations

import json
import secrets
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Self

STARTUP_TIMEOUT = 600.0  # the server hashes every file once when it starts (a 7B checkpoint: minutes)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RemoteHub:
    """``with RemoteHub(root, latency_ms=20, bandwidth_mbs=100) as hub:`` - ``hub.url`` serves
    ``root``; :meth:`stats` is the server's ``StatsSnapshot`` as JSON (log omitted)."""

    def __init__(self, root: Path, *, latency_ms: float = 0.0, bandwidth_mbs: float = 0.0) -> None:
        self.root, self.latency_ms, self.bandwidth_mbs = root, latency_ms, bandwidth_mbs
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.admin_token = secrets.token_urlsafe(24)
        self._process: subprocess.Popen | None = None

    def __enter__(self) -> Self:
        command = [
            sys.executable,
            "-m",
            "pedigree.crawler.hub_server",
            str(self.root),
            "--port",
            str(self.port),
            "--latency-ms",
            str(self.latency_ms),
            "--bandwidth-mbs",
            str(self.bandwidth_mbs),
            f"--admin-token={self.admin_token}",  # one token in 64 starts with "-": never a separate argument
        ]
        self._process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while True:
            try:
                self.reset_stats()
                return self
            except OSError:
                if self._process.poll() is not None:
                    raise RuntimeError(f"hub server exited: {self._process.stderr.read().decode()[-2000:]}") from None
                if time.monotonic() > deadline:
                    self.__exit__()
                    raise TimeoutError(
                        f"hub server on port {self.port} did not answer in {STARTUP_TIMEOUT:g} s"
                    ) from None
                time.sleep(0.2)

    def __exit__(self, *exc: object) -> None:
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
            self._process = None

    def _admin(self, path: str, *, post: bool = False) -> urllib.request.Request:
        url, headers = f"{self.url}/_pedigree/{path}", {"Authorization": f"Bearer {self.admin_token}"}
        return urllib.request.Request(
            url, method="POST" if post else "GET", data=b"" if post else None, headers=headers
        )

    def stats(self, log: bool = False, timeout: float = 30) -> dict:
        with urllib.request.urlopen(self._admin(f"stats?log={int(log)}"), timeout=timeout) as response:
            return json.loads(response.read())

    def reset_stats(self) -> None:
        with urllib.request.urlopen(self._admin("stats/reset", post=True), timeout=5):
            pass
