"""Hostile repo folders for the bundled Hub server, and a helper that runs the server's CLI.

:data:`HOSTILE_REPOS` maps a case name to a :class:`HostileRepo`: a builder that writes one repo
folder (``ROOT/evil-lab/...``, or a link that leaves ROOT) next to an ``outside`` folder that must
never be served or changed, and what the server must do with it.  :func:`write_valid_repo` writes
the well-behaved neighbour every case is served beside.  :func:`serve_process` runs
``python -m pedigree.crawler.hub_server`` (or another command) as a child process under a memory
cap and reports its peak RSS and stderr; :func:`folder_state` snapshots a folder to prove nothing
in it changed.  Everything here is tiny on disk.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import resource
import select
import signal
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from tests.bounded_cli import peak_rss

VALID_ID = "good-lab/tiny-valid"
SECRET = "pedigree-outside-secret-7f3a"
CONFIG = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 2}


def safetensors_bytes(shape_json: str = "[2, 2]") -> bytes:
    """One F32 tensor ``w`` of 16 data bytes; ``shape_json`` is written verbatim (e.g. ``[1e400]``)."""
    header = ('{"w": {"dtype": "F32", "shape": ' + shape_json + ', "data_offsets": [0, 16]}}').encode()
    header += b" " * (-len(header) % 8)
    return struct.pack("<Q", len(header)) + header + bytes(range(16))


def write_valid_repo(root: Path, repo_id: str = VALID_ID) -> Path:
    folder = root / repo_id
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(CONFIG))
    (folder / "README.md").write_text("---\nlicense: mit\ncreated_at: 2024-03-01\n---\n# a valid model\n")
    (folder / "model.safetensors").write_bytes(safetensors_bytes())
    return folder


def write_outside(outside: Path) -> Path:
    """The folder beside ROOT that must never be served or changed."""
    outside.mkdir(parents=True, exist_ok=True)
    (outside / "secret.txt").write_text(f"{SECRET}\n")
    victim = outside / "victim"
    victim.mkdir(exist_ok=True)
    (victim / "precious.txt").write_text(f"precious {SECRET}\n")
    (victim / "README.md").write_text("---\nlicense: mit\n---\n")
    return outside


def _repo(root: Path, name: str, card: str | None = None, config: str | None = None) -> Path:
    folder = root / "evil-lab" / name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(config if config is not None else json.dumps(CONFIG))
    if card is not None:
        (folder / "README.md").write_text(f"---\n{card}\n---\n# card\n")
    return folder


def _billion_laughs() -> str:
    lines = ['l0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, 10):
        lines.append(f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]")
    return "\n".join(lines)


def _undecodable_name(root: Path, outside: Path) -> None:
    folder = _repo(root, "odd-names")
    with open(os.path.join(os.fsencode(folder), b"caf\xe9-\xff.txt"), "wb") as f:
        f.write(b"bytes under a name that is not UTF-8\n")


def _org_link(root: Path, outside: Path) -> None:
    leaky = outside / "leak-org" / "leaky"
    leaky.mkdir(parents=True, exist_ok=True)
    (leaky / "config.json").write_text(json.dumps(CONFIG))
    (leaky / "secret.txt").write_text(f"{SECRET}\n")
    (root / "leak-org").symlink_to(outside / "leak-org", target_is_directory=True)


def _control_name(root: Path, outside: Path) -> None:
    folder = root / "evil-lab" / "name\x1b[31mred"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps(CONFIG))


@dataclass(frozen=True)
class HostileRepo:
    """``build(root, outside)``; ``repo``: the id it is served under when it is (None: never);
    ``never_served``: its files that must never be served; ``reason``: a substring of the logged
    reason; ``dropped``: model-info fields that must be absent (a bad fact ignored)."""

    build: Callable[[Path, Path], object]
    repo: str | None
    reason: str
    never_served: tuple[str, ...] = ()
    dropped: tuple[str, ...] = ()


HOSTILE_REPOS: dict[str, HostileRepo] = {
    "config.json nested 200000 deep": HostileRepo(
        lambda root, _: _repo(root, "nested-config", config="[" * 200_000 + "]" * 200_000),
        "evil-lab/nested-config",
        "config ignored: nested too deep",
        dropped=("config",),
    ),
    "YAML alias loop": HostileRepo(
        lambda root, _: _repo(root, "alias-loop", card="a: &a [*a]\nlicense: mit"),
        "evil-lab/alias-loop",
        "card ignored",
        dropped=("cardData",),
    ),
    "billion-laughs card": HostileRepo(
        lambda root, _: _repo(root, "laughs", card=_billion_laughs()),
        "evil-lab/laughs",
        "card ignored",
        dropped=("cardData",),
    ),
    "one long string referenced 200 times": HostileRepo(
        lambda root, _: _repo(root, "amplified", card=f"s: &s {'x' * 500_000}\nt: [{', '.join(['*s'] * 200)}]"),
        "evil-lab/amplified",
        "card ignored",
        dropped=("cardData",),
    ),
    "card nested 5000 deep": HostileRepo(
        lambda root, _: _repo(root, "deep-card", card="x: " + "[" * 5000 + "]" * 5000),
        "evil-lab/deep-card",
        "card ignored",
        dropped=("cardData",),
    ),
    "created_at: 2024-13-45": HostileRepo(
        lambda root, _: _repo(root, "bad-date", card="created_at: 2024-13-45\nlicense: mit"),
        "evil-lab/bad-date",
        "created_at ignored",
    ),
    "created_at out of range": HostileRepo(
        lambda root, _: _repo(root, "far-date", card="created_at: 99999999999999999\nlast_modified: -99999999999999"),
        "evil-lab/far-date",
        "created_at ignored",
    ),
    "created_at: .inf": HostileRepo(
        lambda root, _: _repo(root, "inf-date", card="created_at: .inf\nlast_modified: .nan\nlikes: .inf"),
        "evil-lab/inf-date",
        "created_at ignored",
    ),
    "card tags and datasets not lists": HostileRepo(
        lambda root, _: _repo(root, "odd-tags", card="tags: 5\ndatasets: {a: 1}\nbase_model: 7"),
        "evil-lab/odd-tags",
        "",
    ),
    "safetensors shape [1e400]": HostileRepo(
        lambda root, _: (_repo(root, "inf-shape") / "model.safetensors").write_bytes(safetensors_bytes("[1e400]")),
        "evil-lab/inf-shape",
        "parameter count ignored",
        dropped=("safetensors",),
    ),
    "link to /etc/passwd": HostileRepo(
        lambda root, _: (_repo(root, "passwd-link") / "passwd").symlink_to("/etc/passwd"),
        "evil-lab/passwd-link",
        "symlink to outside the served folder",
        never_served=("passwd",),
    ),
    "link to a file beside the root": HostileRepo(
        lambda root, outside: (_repo(root, "secret-link") / "notes.txt").symlink_to(outside / "secret.txt"),
        "evil-lab/secret-link",
        "symlink to outside the served folder",
        never_served=("notes.txt",),
    ),
    "link to /dev/zero": HostileRepo(
        lambda root, _: (_repo(root, "zero-link") / "weights.bin").symlink_to("/dev/zero"),
        "evil-lab/zero-link",
        "symlink to outside the served folder",
        never_served=("weights.bin",),
    ),
    "FIFO": HostileRepo(
        lambda root, _: os.mkfifo(_repo(root, "fifo") / "model.safetensors"),
        "evil-lab/fifo",
        "not a regular file",
        never_served=("model.safetensors",),
    ),
    "file name not UTF-8": HostileRepo(_undecodable_name, "evil-lab/odd-names", "name is not printable"),
    "org folder linked outside the root": HostileRepo(
        _org_link, None, "symlink to outside the served folder", never_served=("secret.txt",)
    ),
    "repo folder name with an escape sequence": HostileRepo(_control_name, None, "folder skipped"),
}


# ---- the server as a child process ----------------------------------------------------------------
@dataclass
class ServedProcess:
    """A running server: its URL and first stdout line; after it stopped, its stderr and peak RSS."""

    url: str
    banner: str
    process: subprocess.Popen
    stderr: str = ""
    peak_rss_mb: float = 0.0
    returncode: int | None = None
    stop_seconds: float = 0.0
    extra: dict = field(default_factory=dict)


def _memory_cap(cap: int) -> Callable[[], None]:
    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
        signal.signal(signal.SIGINT, signal.SIG_DFL)

    return limit


def _peak_rss_mb(pid: int) -> float:
    return peak_rss(pid) / 2**20


def _first_line(process: subprocess.Popen, deadline: float) -> str:
    assert process.stdout is not None
    while time.monotonic() < deadline and process.poll() is None:
        ready, _, _ = select.select([process.stdout], [], [], 0.1)
        if ready:
            return process.stdout.readline()
    return ""


@contextmanager
def serve_process(
    root: Path, *args: str, command: list[str] | None = None, startup: float = 20.0, memory_cap: int = 2 * 2**30
) -> Iterator[ServedProcess]:
    """Run the server on ``root`` (port 0) until the block ends, then SIGINT it; fails the test if
    it does not print its URL within ``startup`` seconds.  ``memory_cap``: RLIMIT_AS of the child."""
    import pytest

    base = command or [sys.executable, "-m", "pedigree.crawler.hub_server"]
    process = subprocess.Popen(
        [*base, str(root), "--port", "0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        errors="backslashreplace",
        preexec_fn=_memory_cap(memory_cap),
    )
    banner = _first_line(process, time.monotonic() + startup)
    m = re.search(r"(http://127\.0\.0\.1:\d+)", banner)
    if not m:
        process.kill()
        _, err = process.communicate(timeout=30)
        pytest.fail(f"the server did not listen within {startup:g} s (exit {process.returncode}): {err[-1500:]}")
    served = ServedProcess(m.group(1), banner, process)
    try:
        yield served
    finally:
        served.peak_rss_mb = _peak_rss_mb(process.pid)
        started = time.monotonic()
        process.send_signal(signal.SIGINT)
        try:
            _, served.stderr = process.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            _, served.stderr = process.communicate(timeout=20)
        served.stop_seconds = time.monotonic() - started
        served.returncode = process.returncode


def folder_state(folder: Path) -> dict[str, tuple]:
    """Every entry under ``folder`` (links not followed): type, size, mtime and content digest."""
    state: dict[str, tuple] = {}
    for dirpath, dirnames, filenames in os.walk(folder):
        for name in sorted(dirnames + filenames):
            path = Path(dirpath) / name
            st = path.lstat()
            digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() and not path.is_symlink() else ""
            state[str(path.relative_to(folder))] = (st.st_mode, st.st_size, st.st_mtime_ns, digest)
    return state
