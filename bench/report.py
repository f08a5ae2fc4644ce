"""Benchmark results: JSON files under bench/results/ and sections of BENCHMARKS.md.

Each benchmark owns one section of BENCHMARKS.md, delimited by ``<!-- name:start -->`` and
``<!-- name:end -->`` markers, which it rewrites in full with the command that produced it.
"""

from __future__ import annotations

import json
import platform
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
BENCHMARKS = ROOT / "BENCHMARKS.md"
HEADER = (
    "# Benchmarks\n\nEvery figure below was produced by the command shown with it; "
    "raw results are in `bench/results/`.\n"
)


def _module_form(argv: list[str]) -> list[str]:
    """``python -m bench.NAME ...`` as typed (``-m`` leaves the script's full path in argv[0])."""
    script = Path(argv[0]) if argv else None
    if script is not None and script.suffix == ".py" and script.parent.name == "bench":
        return ["-m", f"bench.{script.stem}", *argv[1:]]
    return argv


def environment() -> dict:
    """Where and when a benchmark ran (for the JSON results)."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=False
        ).stdout.strip()
    except OSError:
        commit = ""
    import torch

    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "commit": commit,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpus": torch.get_num_threads(),
        "machine": platform.machine(),
        "command": " ".join([Path(sys.executable).name, *_module_form(sys.argv)]),
    }


def write_json(name: str, payload: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(payload, indent=2, sort_keys=False, default=str) + "\n")
    return path


def update_section(name: str, markdown: str) -> None:
    """Replace (or append) the ``name`` section of BENCHMARKS.md."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    text = BENCHMARKS.read_text() if BENCHMARKS.exists() else HEADER
    block = f"{start}\n{markdown.rstrip()}\n{end}"
    if start in text and end in text:
        before, rest = text.split(start, 1)
        _, after = rest.split(end, 1)
        text = before + block + after
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    BENCHMARKS.write_text(text)


def publish(name: str, result: dict, markdown: str, *, report: bool = True) -> Path:
    """Write ``bench/results/NAME.json``, replace the ``NAME`` section of BENCHMARKS.md with
    ``markdown`` (unless ``report`` is false) and print both."""
    path = write_json(name, result)
    if report:
        update_section(name, markdown)
    print(markdown)
    print(f"\nresults: {path}")
    return path
