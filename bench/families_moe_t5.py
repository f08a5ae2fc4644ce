"""Mixtral and T5 zoo members (issue 16, part 4): relatedness and lineage, alone and beside zoo A.

    python -m bench.families_moe_t5

Builds (or reuses) the six members of ``pedigree.zoo.moe_t5`` (per family a base, a fine-tune of
it and an unrelated model of the same family: own seed, same data) and scores them with
``bench.lineage.run_dataset``: ingest into a fresh data folder (fingerprints, independence tests
under Benjamini-Hochberg control), relatedness AUC / TPR at 1 % FPR over every pair (-log10 p of
the pair's test, 0 when never proposed; positive when the two share an ancestor) and the lineage
graph's directed-edge precision / recall / F1 against truth.json with ``weights`` (no times, no
cards), ``time`` and ``full`` evidence, MoTHer's recipe as a reference.  The second dataset is
the small zoo A with the six members added (a copy of both in one folder, truth.json merged): the
relatedness AUC over all pairs, over the pairs with at least one new member, and with the
weights-mode graph's shared ancestors (``bench.lineage.relatedness(graph=...)``: zoo A's indirect
relatives are never tested as a pair, so its pair-level AUC is below 1 on its own).  Nothing was
tuned on these members (bench/README.md: held out).

Tests share the cached build at ``$PEDIGREE_ZOO_MOE_T5_CACHE`` or ``<repo>/.zoo-cache/moe-t5``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from itertools import combinations
from pathlib import Path

from bench.lineage import relatedness, run_dataset
from bench.report import ROOT, environment, publish
from bench.zoo_cache import small_zoo_path
from pedigree.config import load_settings
from pedigree.query.graph import current_build, load_graph
from pedigree.workspace import Workspace
from pedigree.zoo.moe_t5.build import build_moe_t5_zoo

CACHE_ENV = "PEDIGREE_ZOO_MOE_T5_CACHE"


def moe_t5_zoo_path() -> Path:
    """Build (or reuse) the Mixtral and T5 members; returns their folder."""
    out = Path(os.environ.get(CACHE_ENV) or ROOT / ".zoo-cache" / "moe-t5")
    build_moe_t5_zoo(out)
    return out


def combined(folders: list[Path], out: Path) -> Path:
    """One zoo folder holding copies of every model of ``folders`` and their merged truth.json."""
    truth: dict = {}
    for folder in folders:
        facts = json.loads((folder / "truth.json").read_text())
        for model_id in facts:
            shutil.copytree(folder / model_id, out / model_id)
        truth.update(facts)
    (out / "truth.json").write_text(json.dumps(truth, indent=2, sort_keys=True) + "\n")
    return out


def run_beside(name: str, zoo: Path, new: set[str]) -> dict:
    """Ingest ``zoo`` (its truth.json holding the ``new`` models among others); relatedness over
    every pair, over the pairs with a new model, each also with the weights graph's shared ancestors."""
    truth = json.loads((zoo / "truth.json").read_text())
    old_pairs = {frozenset(pair) for pair in combinations(sorted(set(truth) - new), 2)}
    with tempfile.TemporaryDirectory() as home, Workspace(load_settings(home)) as ws:
        started = time.perf_counter()
        ingested = ws.ingest(zoo)
        seconds = round(time.perf_counter() - started, 1)
        ws.build_graph("weights")
        graph = load_graph(ws.store, current_build(ws.store, "weights"))
        tests = ingested.confirmations
        return {
            "dataset": name,
            "models": len(truth),
            "ingest_seconds": seconds,
            "pairs_tested": len(tests),
            "pairs_confirmed": sum(bool(c.confirmed) for c in tests),
            "relatedness": relatedness(truth, tests),
            "relatedness_linked": relatedness(truth, tests, graph=graph),
            "relatedness_new_pairs": relatedness(truth, tests, old_pairs),
            "relatedness_new_pairs_linked": relatedness(truth, tests, old_pairs, graph=graph),
        }


def _auc(r: dict | None) -> str:
    return "-" if r is None else f"{r['auc']} / {r['tpr_at_1pct_fpr']} ({r['positives']}+, {r['negatives']}-)"


def markdown(result: dict, command: str) -> str:
    env = result["environment"]
    lines = [
        "## Mixtral (experts as unit groups) and T5 encoder-decoder members (issue 16, part 4)",
        "",
        f"Command: `{command}`  (commit {env['commit']}, {env['date']})",
        "",
        "Six tiny models trained on CPU (`pedigree.zoo.moe_t5`): a Mixtral (4 experts of 32 units, top-2 routing) "
        "and a T5 v1.1-style encoder-decoder (2 + 2 blocks, gated-GELU), each a base, a fine-tune of it on the "
        "tests domain and an unrelated model of the same family (own seed, same data).  Held out: nothing was "
        "tuned on them.  Relatedness is scored over every pair (-log10 p of the pair's test, 0 when never "
        "proposed; positive when the two share an ancestor); the second row adds them to the small zoo A (one "
        "ingest of both) - its pair-level AUC over all pairs is zoo A's own figure (indirect relatives are never "
        "tested as a pair: 0.8556 alone in the lineage section), the pairs with a new member are scored apart.  "
        "'graph': a pair sharing an ancestor in the weights-mode graph scores that answer's strength.",
        "",
        "| dataset | models | pairs tested | confirmed | AUC / TPR @ 1 % FPR, all pairs | the same, graph | "
        "**pairs with a new member** | the same, graph | ingest s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for data in result["datasets"]:
        new = data.get("relatedness_new_pairs", data["relatedness"])
        new_linked = data.get("relatedness_new_pairs_linked", data.get("relatedness_linked"))
        lines.append(
            f"| {data['dataset']} | {data['models']} | {data['pairs_tested']} | {data['pairs_confirmed']} | "
            f"{_auc(data['relatedness'])} | {_auc(data.get('relatedness_linked'))} | **{_auc(new)}** | "
            f"{_auc(new_linked)} | {data['ingest_seconds']} |"
        )
    lines += [
        "",
        "Lineage of the six members (directed edges: right parent, child and direction):",
        "",
        "| evidence | precision | recall | **edge F1** | direction acc. | family ARI | undirected right/found |",
        "|---|---|---|---|---|---|---|",
    ]
    for mode, row in result["datasets"][0]["modes"].items():
        lines.append(
            f"| {mode} | {row['precision']} | {row['recall']} | **{row['f1']}** | {row['direction_accuracy']} | "
            f"{row['family_ari']} | {row['undirected_right']}/{row['undirected_edges']} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--no-report", action="store_true", help="write the JSON only, not BENCHMARKS.md")
    parser.add_argument("--no-zoo-a", action="store_true", help="leave out the run beside zoo A")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    members = moe_t5_zoo_path()
    datasets = [run_dataset("Mixtral + T5 members", members)]
    if not args.no_zoo_a:
        with tempfile.TemporaryDirectory() as scratch:
            both = combined([small_zoo_path(), members], Path(scratch) / "zoo")
            new = set(json.loads((members / "truth.json").read_text()))
            datasets.append(run_beside("zoo A + Mixtral + T5 members", both, new))
    result = {
        "datasets": datasets,
        "build_seconds": json.loads((members / "zoo.json").read_text())["build_seconds"],
        "seconds": round(time.perf_counter() - started, 1),
        "environment": environment(),
    }
    command = "python -m bench.families_moe_t5" + (" --no-zoo-a" if args.no_zoo_a else "")
    publish("families_moe_t5", result, markdown(result, command), report=not args.no_report)


if __name__ == "__main__":
    main()
