"""Serve the real app over real HTTP for tests: uvicorn in a thread on a free 127.0.0.1 port."""

from __future__ import annotations

import shutil
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import uvicorn
from fastapi import FastAPI

from pedigree.service.app import create_app


@dataclass
class Served:
    """A running app: its base URL and the app object (its state: the reader, the admin)."""

    url: str
    app: FastAPI
    home: Path


@contextmanager
def served(home: Path, *, admin_token: str | None = None) -> Iterator[Served]:
    """``create_app(home)`` served by uvicorn on 127.0.0.1:<free port> until the block ends."""
    app = create_app(home, admin_token=admin_token)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(512)
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", access_log=False, timeout_graceful_shutdown=2)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the app did not start")
        time.sleep(0.02)
    try:
        yield Served(f"http://127.0.0.1:{port}", app, Path(home))
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        sock.close()
        reader = getattr(app.state, "snapshots", None)
        if reader is not None:
            reader.close()


def copy_home(source: Path, target: Path) -> Path:
    """A private copy of a data folder (snapshot links kept as links)."""
    shutil.copytree(source, target, symlinks=True)
    return target


def hub_folder(small_zoo: Path, target: Path, models: dict[str, str]) -> Path:
    """A Hub folder holding zoo models under the given ids ({hub id: zoo id})."""
    for hub_id, zoo_id in models.items():
        shutil.copytree(small_zoo / zoo_id, target / hub_id)
    return target
