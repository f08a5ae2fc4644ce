"""Run the real ``pedigree`` CLI in a child process with bounds: the hostile suites' one runner.

The child's peak resident memory comes from its own rusage (``os.wait4``); a watchdog kills it
past ``timeout`` seconds or ``kill_rss`` bytes of peak resident memory (so a regression fails the
test instead of taking the machine down), and says why.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class BoundedRun:
    returncode: int
    stdout: str
    stderr: str
    peak_rss: int  # bytes
    seconds: float
    killed: str | None  # why the watchdog killed it (time / memory), None when it ended by itself

    @property
    def result(self) -> Any:
        """The run's ``--json`` answer."""
        return json.loads(self.stdout)

    def report(self) -> dict[str, dict[str, Any]]:
        """A crawl's per-repo rows by id."""
        return {r["id"]: r for r in self.result["repos"]}


def peak_rss(pid: int) -> int:
    """The process's peak resident memory so far (VmHWM), 0 once it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    match = re.search(r"^VmHWM:\s+(\d+) kB", status, re.MULTILINE)
    return int(match.group(1)) * 1024 if match else 0


def run_cli_bounded(
    args: Sequence[str],
    *,
    timeout: float,
    kill_rss: int,
    env: dict[str, str] | None = None,
    drop_env: Sequence[str] = (),
) -> BoundedRun:
    """``python -m pedigree ARGS`` in a child process (this checkout first on ``PYTHONPATH``)."""
    child_env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE"}
    child_env.update(env or {})
    for name in drop_env:
        child_env.pop(name, None)
    started = time.monotonic()
    child = subprocess.Popen(
        [sys.executable, "-m", "pedigree", *args],
        cwd=ROOT,
        env=child_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        errors="replace",
    )
    killed: list[str] = []
    done = threading.Event()

    def watch() -> None:
        while not done.wait(0.05):
            if time.monotonic() - started > timeout:
                killed.append(f"still running after {timeout} s")
            elif peak_rss(child.pid) > kill_rss:
                killed.append(f"resident memory over {kill_rss >> 20} MiB")
            if killed:
                child.send_signal(signal.SIGKILL)
                return

    outputs: dict[str, str] = {}
    readers = [
        threading.Thread(target=lambda name=name, pipe=pipe: outputs.__setitem__(name, pipe.read()), daemon=True)
        for name, pipe in (("stdout", child.stdout), ("stderr", child.stderr))
    ]
    for thread in [threading.Thread(target=watch, daemon=True), *readers]:
        thread.start()
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    done.set()
    for reader in readers:
        reader.join()
    return BoundedRun(
        child.returncode,
        outputs.get("stdout", ""),
        outputs.get("stderr", ""),
        usage.ru_maxrss * 1024,
        time.monotonic() - started,
        killed[0] if killed else None,
    )
