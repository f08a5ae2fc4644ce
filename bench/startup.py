"""How fast the CLI answers: ``pedigree --help``, ``status``, and the answers read from the index -
``query`` and ``compare`` of a pair whose tests are stored - as a user runs them.

Each command runs as a fresh process (the console script), ``--runs`` times, alternating with the
baseline when one is given (``--baseline PATH``: another install's ``pedigree`` script, e.g. a
checkout of an earlier commit), so both see the same machine; the median wall time is reported.
Each command also records which of torch, faiss and scipy it imported: none of them for ``--help``
and ``status``, and no torch for ``query`` and the stored ``compare`` (tests/test_answers_without_torch.py).

    python -m bench.startup --runs 15 --baseline /path/to/old/.venv/bin/pedigree
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.report import environment, publish

PROBE = (
    "import sys, runpy\n"
    "sys.argv = [sys.argv[1], *sys.argv[2:]]\n"
    "try:\n"
    "    runpy.run_path(sys.argv[0], run_name='__main__')\n"
    "except SystemExit:\n"
    "    pass\n"
    "heavy = sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'faiss', 'scipy'})\n"
    "sys.stderr.write('HEAVY=' + ','.join(heavy) + '\\n')\n"
)


def timed(script: str, args: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run([script, *args], check=True, capture_output=True)
    return time.perf_counter() - started


def heavy_imports(script: str, args: list[str]) -> list[str]:
    python = str(Path(script).with_name("python"))
    done = subprocess.run(  # outside any checkout: "-c" puts the working folder first on sys.path
        [python, "-c", PROBE, script, *args], capture_output=True, text=True, check=False, cwd=tempfile.gettempdir()
    )
    line = next((x for x in done.stderr.splitlines() if x.startswith("HEAVY=")), "HEAVY=?")
    return [m for m in line[len("HEAVY=") :].split(",") if m]


BASE, TUNED = "llama-lab/tiny-llama-s1", "testsmith/tiny-llama-tests"  # the small zoo's root and a fine-tune


def data_folder(script: str, work: Path) -> Path:
    """A small data folder: the small zoo's root and one fine-tune of it ingested (the pair tested
    at ingest), and one ``compare`` run so that its tests are stored before anything is timed."""
    from bench.zoo_cache import small_zoo_path
    from pedigree.zoo.build import build_zoo  # noqa: F401 - only to fail early without the zoo builder

    zoo = small_zoo_path()
    home = work / "home"
    for model in (BASE, TUNED):
        subprocess.run(
            [script, "ingest", str(zoo / model), "--id", model, "--home", str(home)], check=True, capture_output=True
        )
    subprocess.run([script, "compare", BASE, TUNED, "--home", str(home)], check=True, capture_output=True)
    return home


def run(runs: int, baseline: str | None) -> dict:
    current = shutil.which("pedigree") or str(Path(sys.executable).with_name("pedigree"))
    scripts = {"this commit": current, **({"baseline": baseline} if baseline else {})}
    with tempfile.TemporaryDirectory() as work:
        home = data_folder(current, Path(work))
        commands = {
            "--help": ["--help"],
            "status": ["status", "--home", str(home)],
            "query": ["query", TUNED, "--home", str(home)],
            "compare (tests stored)": ["compare", BASE, TUNED, "--home", str(home)],
        }
        times: dict[str, dict[str, list[float]]] = {label: {c: [] for c in commands} for label in scripts}
        for _ in range(runs):
            for label, script in scripts.items():
                for name, args in commands.items():
                    times[label][name].append(timed(script, args))
        rows = []
        for label, script in scripts.items():
            for name, args in commands.items():
                rows.append(
                    {
                        "install": label,
                        "command": f"pedigree {name}",
                        "median_s": round(statistics.median(times[label][name]), 3),
                        "runs_s": [round(t, 3) for t in times[label][name]],
                        "heavy_imports": heavy_imports(script, args),
                    }
                )
    return {"runs": runs, "rows": rows, "environment": environment()}


def markdown(result: dict) -> str:
    env = result["environment"]
    lines = [
        "## CLI start-up",
        "",
        f"Command: `{env['command']}`  (commit {env['commit']}, {env['date']}, {env['cpus']} CPUs)",
        "",
        f"Each command as a fresh process, {result['runs']} runs alternating between the installs; median wall time. "
        f"`query` and `compare` answer from a data folder holding {BASE} and its fine-tune {TUNED} (the pair's "
        "tests stored at ingest).",
        "",
        "| install | command | median s | heavy modules imported |",
        "|---|---|---|---|",
    ]
    for row in result["rows"]:
        heavy = ", ".join(row["heavy_imports"]) or "none"
        lines.append(f"| {row['install']} | `{row['command']}` | **{row['median_s']}** | {heavy} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.startup", description=__doc__)
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--baseline", help="another install's pedigree script to time in the same run")
    args = parser.parse_args()
    result = run(args.runs, args.baseline)
    publish("startup", result, markdown(result))


if __name__ == "__main__":
    main()
