"""The update geometry the lineage stage reasons with, measured on true lineages (issue 12).

    python -m bench.lineage_geometry [--size full|small] [--no-report]

``indexer.lineage.geometry`` places a model by two cosines of raw-weight updates
(``indexer.lineage.evidence.update_cosines``): for a child c of p (grandparent g) its own step is
*fresh*, cos(p − g, c − p) ≈ 0, and two children c₁, c₂ of g *share* a direction,
cos(c₁ − g, c₂ − g) ≈ ρ.  This benchmark reads both on every true chain step and every true
sibling pair of the development zoos - zoo A (``--size``) and the chains zoo with and without
weight decay - so the claims rest on a command, not on a docstring.  Per trained model with one
true parent it also ranks the true parent among the model's same-shape family members by the raw
distance the placement uses (rank 1: the nearest), which shows where a placement error is a
matter of geometry (the true parent is not the nearest) rather than of the assembly; the model's
own descendants are left out of that ranking (they are near it by construction).

Development data only (bench/README "The held-out rule"); nothing here sets a constant.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from itertools import combinations
from pathlib import Path

from bench.report import ROOT, environment, publish
from pedigree.config import load_settings
from pedigree.indexer.lineage.build import evidence_files
from pedigree.indexer.lineage.evidence import _flat, _sample_layers, raw_sample, update_cosines
from pedigree.indexer.lineage.workers import Models
from pedigree.workspace import Workspace

TRAINED = ("finetune", "vocab_extended")  # relations made by training from the parent's weights


def _datasets(size: str) -> list[tuple[str, Path]]:
    from pedigree.zoo.build import build_zoo
    from pedigree.zoo.recipes_chains import CHAINS, build_chains_zoo

    zoo_a = ROOT / ("bench/.zoo/full" if size == "full" else ".zoo-cache/small")
    if not (zoo_a / "truth.json").exists():
        build_zoo(zoo_a, size)
    out = [("zoo A", zoo_a)]
    for regime in CHAINS:
        folder = ROOT / ".zoo-cache" / "chains" / regime
        build_chains_zoo(folder, regime)
        out.append((regime, folder))
    return out


def descendants(parents: dict[str, list[str]], model: str) -> set[str]:
    """Every model that has ``model`` among its (true) ancestors."""
    found: set[str] = set()
    todo = [model]
    while todo:
        current = todo.pop()
        for child, ps in parents.items():
            if current in ps and child not in found:
                found.add(child)
                todo.append(child)
    return found


def measure(zoo: Path) -> dict:
    """Ingest ``zoo`` into a fresh data folder and read the geometry of its true lineage."""
    truth = json.loads((zoo / "truth.json").read_text())
    parents = {m: f["parents"] for m, f in truth.items()}
    with tempfile.TemporaryDirectory() as home, Workspace(load_settings(home)) as ws:
        ws.ingest(zoo)
        records = {r.pk: r for r in ws.store.models()}
        models = Models(records, evidence_files(ws.store, records))
        pk = {r.id: key for key, r in records.items()}
        samples = {}
        for model_id, key in pk.items():
            stored = models(key)
            samples[model_id] = _flat(raw_sample(stored, _sample_layers(stored.depth)))

        def cosines(child: str, parent: str, grandparent: str) -> tuple[float, float] | None:
            return update_cosines(models(pk[child]), models(pk[parent]), models(pk[grandparent]))

        def distance(a: str, b: str) -> float | None:
            x, y = samples[a], samples[b]
            return None if x.shape != y.shape else float((x - y).norm() / (x.norm() * y.norm()).sqrt())

        trained = [m for m, ps in parents.items() if len(ps) == 1 and truth[m]["relation"] in TRAINED and m in pk]
        chain_steps, siblings, ranks = [], [], []
        for child in trained:
            parent = parents[child][0]
            grand = parents.get(parent, [])
            if len(grand) == 1 and truth[parent]["relation"] in TRAINED and (found := cosines(child, parent, grand[0])):
                chain_steps.append({"child": child, "fresh": round(found[0], 4), "shared": round(found[1], 4)})
            below = descendants(parents, child)
            family = {
                m
                for m in pk
                if m != child and m not in below and truth.get(m, {}).get("family") == truth[child].get("family")
            }
            near = sorted((d, m) for m in family if (d := distance(child, m)) is not None)
            if near and any(m == parent for _, m in near):
                rank = 1 + [m for _, m in near].index(parent)
                ranks.append({"child": child, "parent_rank": rank, "of": len(near), "nearest": near[0][1]})
        by_parent: dict[str, list[str]] = {}
        for child in trained:
            by_parent.setdefault(parents[child][0], []).append(child)
        for grand, children in sorted(by_parent.items()):
            for c1, c2 in combinations(sorted(children), 2):
                if found := cosines(c2, c1, grand):
                    siblings.append(
                        {"pair": [c1, c2], "fresh_as_child": round(found[0], 4), "shared": round(found[1], 4)}
                    )
    return {"chain_steps": chain_steps, "siblings": siblings, "parent_ranks": ranks}


def _spread(values: list[float]) -> str:
    if not values:
        return "-"
    return f"{min(values):.2f} / {statistics.median(values):.2f} / {max(values):.2f}"


def markdown(result: dict, command: str) -> str:
    lines = [
        "## Update geometry on true lineages (issue 12, development zoos)",
        "",
        f"Command: `{command}`  (commit {result['environment']['commit']}, {result['environment']['date']})",
        "",
        "fresh = cos(p − g, c − p) on true chain steps (c a trained child of p, itself a trained child of g); "
        "shared = cos(c₁ − g, c₂ − g) on true sibling pairs; raw q/k/v samples of the first, middle and last "
        "block, as `indexer.lineage.evidence.update_cosines` reads them. Parent rank: the true parent's place "
        "among the model's same-shape family members but its own descendants, by raw distance (1 = nearest).",
        "",
        "| dataset | chain steps | fresh min / median / max | sibling pairs | shared min / median / max "
        "| trained models | true parent nearest | not nearest |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, data in result["datasets"].items():
        ranks = data["parent_ranks"]
        missed = [f"{r['child']} (rank {r['parent_rank']} of {r['of']})" for r in ranks if r["parent_rank"] > 1]
        lines.append(
            f"| {name} | {len(data['chain_steps'])} | {_spread([s['fresh'] for s in data['chain_steps']])} "
            f"| {len(data['siblings'])} | {_spread([s['shared'] for s in data['siblings']])} | {len(ranks)} "
            f"| {sum(r['parent_rank'] == 1 for r in ranks)} | {', '.join(missed) or '-'} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=["small", "full"], default="full", help="zoo A's size")
    parser.add_argument("--no-report", action="store_true", help="write the JSON, leave BENCHMARKS.md")
    args = parser.parse_args(argv)
    result: dict = {"size": args.size, "datasets": {}}
    for name, folder in _datasets(args.size):
        result["datasets"][name] = measure(folder)
    result["environment"] = environment()
    command = f"python -m bench.lineage_geometry --size {args.size}"
    publish("lineage-geometry", result, markdown(result, command), report=not args.no_report)


if __name__ == "__main__":
    main()
