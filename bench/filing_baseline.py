"""The lineage stage of another checkout on today's zoos, scored by today's scorer.

    git worktree add /tmp/filing 9fec033      # the commit issue 12 was filed against
    python -m bench.filing_baseline --checkout /tmp/filing [--size full|small] [--json PATH]
    python -m bench.filing_baseline --checkout /tmp/filing --independence   # its test battery on zoo A

Issue 12's bar "zoo A no worse than today (0.95 / 0.95 / 1.0)" quotes figures of a zoo A build
that no longer exists: zoo A has been rebuilt since (other trained weights), so those figures and
today's are measured on different models.  This benchmark puts the filing's code on the zoo
builds that ``bench.lineage --cached`` scores today (zoo A and B, and with ``--size small`` zoo C,
the chains and merges zoos), so the two are compared on the same models.

The other checkout runs in its own process, with its folder first on ``PYTHONPATH`` (its packages
shadow this one's): it ingests each zoo into a fresh data folder, builds the graph in the three
evidence modes and prints each graph as JSON; nothing of the other checkout is imported here.  The
graphs are scored by :func:`bench.lineage.score`, so an edge counts the same way in both.  The
driver uses the API that checkout had (``Workspace.ingest``, ``Workspace.build_graph``,
``query.graph.load_graph`` or ``pedigree.query.graph.load_graph``).

``--independence`` does the same for issue 13's "independence benchmark with no figure worse": the
other checkout's ``bench.independence`` (power, and the calibration of zoo A's cross-family pairs)
on today's full zoo A, against today's ``bench.independence`` result on that build.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import networkx as nx

from bench.lineage import datasets, score, wrong_edges_text
from bench.report import RESULTS, environment, publish

MODES = ("weights", "time", "full")

DRIVER = r"""
import json, sys, tempfile
checkout, zoo = sys.argv[1], sys.argv[2]
sys.path.insert(0, checkout)
import pedigree
assert pedigree.__file__.startswith(checkout), pedigree.__file__
from pedigree.config import load_settings
from pedigree.workspace import Workspace
try:
    from pedigree.query.graph import current_build, load_graph
except ImportError:
    from query.graph import current_build, load_graph
out = {}
with tempfile.TemporaryDirectory() as home, Workspace(load_settings(home)) as ws:
    ws.ingest(zoo)
    for mode in ("weights", "time", "full"):
        ws.build_graph(mode)
        graph = load_graph(ws.store, current_build(ws.store, mode))
        nodes = {str(n): {k: d.get(k) for k in ("family", "latent")} for n, d in graph.nodes(data=True)}
        edges = [
            [str(u), str(v), {"relation": d.get("relation"), "directed": d.get("directed", True),
                              "signals": (d.get("evidence") or {}).get("signals")}]
            for u, v, d in graph.edges(data=True)
        ]
        out[mode] = {"nodes": nodes, "edges": edges}
print("GRAPHS " + json.dumps(out, default=str))
"""


INDEPENDENCE_DRIVER = r"""
import json, sys, types
checkout, zoo = sys.argv[1], sys.argv[2]
sys.path.insert(0, checkout)
import bench.independence as independence
assert independence.__file__.startswith(checkout), independence.__file__
for name in ("bench.zoo.build", "pedigree.zoo.build"):  # the zoo is built: never rebuild it in that layout
    stub = types.ModuleType(name)
    stub.build_zoo = lambda *args, **kwargs: None
    sys.modules[name] = stub
from pathlib import Path
result = independence.run("full", Path(zoo), 0)
print("INDEPENDENCE " + json.dumps({"calibration": result["calibration"], "power": result["power"]}, default=str))
"""


def checkout_folder(value: str) -> Path:
    """argparse type: a folder holding a pedigree checkout (its ``pedigree`` package)."""
    folder = Path(value).resolve()
    if not (folder / "pedigree" / "__init__.py").is_file():
        raise argparse.ArgumentTypeError(f"{value}: not a pedigree checkout (no pedigree/__init__.py)")
    return folder


def run_driver(driver: str, tag: str, checkout: Path, zoo: Path) -> dict:
    """Run ``driver`` (Python source) with ``checkout`` first on the path; the JSON it prints after
    ``tag``.  A driver that fails raises RuntimeError with the end of its stderr."""
    done = subprocess.run(
        [sys.executable, "-c", driver, str(checkout), str(zoo)],
        env={**os.environ, "PYTHONPATH": str(checkout)},
        capture_output=True,
        text=True,
        check=False,
        cwd=checkout,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith(f"{tag} ")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"{checkout} on {zoo}: exit {done.returncode}: {done.stderr.strip()[-800:]}")
    return json.loads(lines[-1][len(tag) + 1 :])


def other_checkout_independence(checkout: Path, zoo: Path) -> dict:
    """The other checkout's ``bench.independence`` (power and the zoo's cross-family calibration;
    no synthetic pairs - those do not depend on the zoo build) on ``zoo``, in its own process."""
    return run_driver(INDEPENDENCE_DRIVER, "INDEPENDENCE", checkout, zoo)


def independence_markdown(result: dict, command: str, today_run: dict) -> str:
    """Zoo A's cross-family calibration rows: the other checkout's battery vs today's run."""
    commit = result["checkout_commit"]
    theirs, ours = result["calibration"]["zoo_cross_family_pairs"], today_run["calibration"]["zoo_cross_family_pairs"]
    lines = [
        f"## Independence tests: the filing code ({commit}) on today's full zoo A",
        "",
        f"Command: `{command}`  (commit {result['environment']['commit']}, {result['environment']['date']})",
        "",
        f"The battery of {commit} (the filing of issue 13) on today's zoo A build, against today's "
        f"`bench.independence` run on the same build (commit {today_run['environment']['commit']}): zoo A's "
        "cross-family pairs (clustered: KS p is descriptive).  Weakest same-family pair, filing code: "
        f"{result['power']['max_log10_p']['log10_p']} ({result['power']['pairs']} pairs, all < -12: "
        f"{result['power']['all_below_minus_12']}); today: {today_run['power']['max_log10_p']['log10_p']}.",
        "",
        "| test | n | KS p, filing code | KS p, today | FPR α=0.01, filing code | today "
        "| FPR α=0.001, filing code | today |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for test in sorted(theirs):
        a, b = theirs[test], ours.get(test, {})
        lines.append(
            f"| {test} | {a['n']} | {a['ks_p']} | {b.get('ks_p', 'n/a')} | {a['fpr_0.01']} "
            f"| {b.get('fpr_0.01', 'n/a')} | {a['fpr_0.001']} | {b.get('fpr_0.001', 'n/a')} |"
        )
    return "\n".join(lines)


def other_checkout_graphs(checkout: Path, zoo: Path) -> dict[str, nx.DiGraph]:
    """Ingest ``zoo`` with the code of ``checkout`` (own process) and return its graph per mode."""
    graphs = {}
    for mode, dumped in run_driver(DRIVER, "GRAPHS", checkout, zoo).items():
        graph = nx.DiGraph()
        for node, facts in dumped["nodes"].items():
            graph.add_node(node, family=facts.get("family"), latent=facts.get("latent"))
        for u, v, facts in dumped["edges"]:
            graph.add_edge(
                u, v, relation=facts["relation"], directed=facts["directed"], evidence={"signals": facts["signals"]}
            )
        graphs[mode] = graph
    return graphs


def checkout_commit(checkout: Path) -> str:
    """The short commit a checkout (or worktree) is at; its folder name when it is no git checkout."""
    done = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=checkout, capture_output=True, text=True, check=False
    )
    return done.stdout.strip() or checkout.name


def run(checkout: Path, size: str) -> dict:
    result: dict = {"checkout_commit": checkout_commit(checkout), "size": size, "datasets": []}
    for name, zoo in datasets(size, real=False, cached=True):
        truth = json.loads((zoo / "truth.json").read_text())
        started = time.perf_counter()
        graphs = other_checkout_graphs(checkout, zoo)
        row: dict = {"dataset": name, "models": len(truth), "seconds": round(time.perf_counter() - started, 1)}
        row["modes"] = {mode: score(truth, graphs[mode], None) for mode in MODES}
        result["datasets"].append(row)
        f1 = " / ".join(str(row["modes"][m]["f1"]) for m in MODES)
        print(f"{name}: F1 weights / time / full = {f1} ({row['seconds']} s)", flush=True)
    return result


def today(size: str) -> dict[str, dict]:
    """Today's figures on the same builds, from ``bench.lineage``'s last run (its JSON)."""
    path = RESULTS / f"lineage-{size}.json"
    if not path.exists():
        return {}
    stored = json.loads(path.read_text())
    return {row["dataset"]: row for row in stored["datasets"]} | {"_commit": stored["environment"]["commit"]}


def markdown(result: dict, command: str, current: dict) -> str:
    commit = result["checkout_commit"]
    lines = [
        f"## Lineage: the filing code ({commit}) on today's {result['size']} zoo builds",
        "",
        f"Command: `{command}`  (commit {result['environment']['commit']}, {result['environment']['date']})",
        "",
        f"The lineage stage of {commit} (issue 12 was filed against it) ingests and assembles today's zoo builds - the "
        "ones `bench.lineage --cached` scores - and today's scorer counts its edges, so its figures and today's are "
        "measured on the same models (zoo A has been rebuilt since the filing's 0.95 / 0.95 / 1.0; "
        "bench/filing_baseline.py).  "
        f"Today's F1 is `bench.lineage`'s last run on the same builds (commit {current.get('_commit', '?')}).",
        "",
        "| dataset | evidence | F1, filing code | F1, today | precision / recall, filing code "
        "| wrong edges, filing code |",
        "|---|---|---|---|---|---|",
    ]
    for row in result["datasets"]:
        now = current.get(row["dataset"], {}).get("modes", {})
        for mode in MODES:
            old = row["modes"][mode]
            wrong = wrong_edges_text(old)
            lines.append(
                f"| {row['dataset']} ({row['models']}) | {mode} | **{old['f1']}** | "
                f"{now.get(mode, {}).get('f1', 'n/a')} | {old['precision']} / {old['recall']} | {wrong} |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--checkout", type=checkout_folder, required=True, help="a worktree of the commit to compare with"
    )
    parser.add_argument("--size", choices=["small", "full"], default="full")
    parser.add_argument("--json", type=Path, help="also write the result here")
    parser.add_argument(
        "--independence", action="store_true", help="the other checkout's test battery on today's full zoo A instead"
    )
    parser.add_argument("--no-report", action="store_true")
    args = parser.parse_args(argv)
    if args.independence:
        checkout = args.checkout.resolve()
        zoo = datasets("full", real=False, cached=True)[0][1]
        result = {"checkout_commit": checkout_commit(checkout), **other_checkout_independence(checkout, zoo)}
        result["environment"] = environment()
        today_run = json.loads((RESULTS / "independence-full.json").read_text())
        text = independence_markdown(result, result["environment"]["command"], today_run)
        publish("filing-baseline-independence", result, text, report=not args.no_report)
        return
    result = run(args.checkout.resolve(), args.size)
    result["environment"] = environment()
    if args.json:
        args.json.write_text(json.dumps(result, indent=2, default=str) + "\n")
    text = markdown(result, result["environment"]["command"], today(args.size))
    publish(f"filing-baseline-{args.size}", result, text, report=not args.no_report)


if __name__ == "__main__":
    main()
