"""Run the real ``pedigree`` CLI in a child process with bounds: the hostile suites' one runner.

The child's peak resident memory is its own address space's high-water mark (VmHWM): written by
the child itself at exit and sampled every 50 ms by a watchdog that kills it past ``timeout``
seconds or ``kill_rss`` bytes (so a regression fails the test instead of taking the machine down)
and says why.  (Not ``wait4``'s ``ru_maxrss``: Linux carries the forking process's high-water mark
into the child's at exec, so a child of a large pytest worker would report the worker's memory.)
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
# runs ``python -m pedigree ARGS`` and writes the process's VmHWM (kB) to argv[1] at exit
LAUNCHER = """
import atexit, runpy, sys
out = sys.argv[1]
def record():
    try:
        with open("/proc/self/status") as status:
            peak = next(line.split()[1] for line in status if line.startswith("VmHWM"))
        with open(out, "w") as f:
            f.write(peak)
    except (OSError, StopIteration):
        pass
atexit.register(record)
sys.argv = ["pedigree", *sys.argv[2:]]
runpy.run_module("pedigree", run_name="__main__", alter_sys=True)
"""


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
    peak_file = Path(tempfile.mkstemp(prefix="pedigree-peak-")[1])
    child = subprocess.Popen(
        [sys.executable, "-c", LAUNCHER, str(peak_file), *args],
        cwd=ROOT,
        env=child_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        errors="replace",
    )
    killed: list[str] = []
    sampled = [0]
    done = threading.Event()

    def watch() -> None:
        while not done.wait(0.05):
            sampled[0] = max(sampled[0], peak_rss(child.pid))
            if time.monotonic() - started > timeout:
                killed.append(f"still running after {timeout} s")
            elif sampled[0] > kill_rss:
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
    _, status, _ = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    done.set()
    for reader in readers:
        reader.join()
    recorded = peak_file.read_text().strip()
    peak_file.unlink()
    return BoundedRun(
        child.returncode,
        outputs.get("stdout", ""),
        outputs.get("stderr", ""),
        max(sampled[0], int(recorded) * 1024 if recorded.isdigit() else 0),
        time.monotonic() - started,
        killed[0] if killed else None,
    )
