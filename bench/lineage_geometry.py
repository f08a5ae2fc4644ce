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

*Centrality* answers what the gated-base case (``bench.gated_base``) asks of the weights: can the
base of a family be told from its fine-tunes when it is missing?  A model r's centrality in its
family is the median over pairs {a, b} of the other trained members of cos(a − r, b − r) (an
update's direction from r; a base's children diverge from it, ≈ ρ, while from a sibling the
others share the direction back to the base), with the median distance from r to them beside
it.  Per true base with at least three trained members, the table lists every member as central as
the base (centrality and median distance both no larger): such a member is where the geometry would
put the base if the base were not indexed.

*Growth signals*: two models alone (a base and its fine-tune, or two fine-tunes of a base that is
not indexed) have no geometry; only the pair's growth signals could direct them.  The benchmark
counts how often ``growth`` (larger in every sampled matrix) fires on true edges and on true sibling
pairs, and how large the attention norm's change is on each.

Development data only (bench/README "The held-out rule"); nothing here sets a constant.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import tempfile
from itertools import combinations
from pathlib import Path

from bench.lineage import ancestry
from bench.report import ROOT, environment, publish
from pedigree.config import load_settings
from pedigree.indexer.lineage.build import evidence_files, node_of
from pedigree.indexer.lineage.evidence import _flat, _sample_layers, raw_sample, update_cosines
from pedigree.indexer.lineage.workers import Models
from pedigree.storage.lineage import pair_evidence
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
                found_rank = {"child": child, "parent_rank": rank, "of": len(near), "nearest": near[0][1]}
                # as a child of each model nearer than its parent (g = the true parent): a true child's
                # cosines (the chain steps above) would make the misplacement geometry, not assembly
                found_rank["as_child_of_nearer"] = [
                    {"model": m, "fresh": round(c[0], 4), "shared": round(c[1], 4)}
                    for _, m in near[: rank - 1]
                    if (c := cosines(child, m, parent))
                ]
                ranks.append(found_rank)
        by_parent: dict[str, list[str]] = {}
        for child in trained:
            by_parent.setdefault(parents[child][0], []).append(child)
        for grand, children in sorted(by_parent.items()):
            for c1, c2 in combinations(sorted(children), 2):
                if found := cosines(c2, c1, grand):
                    siblings.append(
                        {"pair": [c1, c2], "fresh_as_child": round(found[0], 4), "shared": round(found[1], 4)}
                    )
        signals = growth_signals(parents, trained, by_parent, pk, records, pair_evidence(ws.store, with_detail=True))
        centres = []
        for base in sorted(m for m, ps in parents.items() if not ps and m in pk):
            members = [m for m in pk if m in trained and m != base and base in ancestry(truth, m)]
            if len(members) >= 3:
                centres.append(centrality_row(base, members, samples))
    return {
        "chain_steps": chain_steps,
        "siblings": siblings,
        "parent_ranks": ranks,
        "centres": centres,
        "growth": signals,
    }


def growth_signals(
    parents: dict, trained: list[str], by_parent: dict[str, list[str]], pk: dict, records: dict, evidence: dict
) -> dict:
    """The two growth signals (``indexer.lineage.signals``) on true trained edges and true sibling
    pairs: ``growth`` (larger in every sampled matrix: which model the pair evidence names grown)
    and ``norm_growth`` (log of the attention norm's ratio, child over parent, or |·| for siblings)."""
    stats = {m: node_of(records[key]).stats for m, key in pk.items()}

    def grown(a: str, b: str) -> str | None:
        found = evidence.get(frozenset((pk[a], pk[b])))
        child = (found.detail or {}).get("grown_child") if found else None
        return None if child is None else records[child].id

    def log_ratio(a: str, b: str) -> float | None:
        na, nb = stats[a].attention_norm, stats[b].attention_norm
        return math.log(nb / na) if na and nb else None

    edges = {"pairs": 0, "growth_to_child": 0, "growth_to_parent": 0, "norm_grew": 0, "log_norm": []}
    for child in trained:
        parent = parents[child][0]
        if parent not in pk:
            continue
        edges["pairs"] += 1
        flag = grown(parent, child)
        edges["growth_to_child"] += flag == child
        edges["growth_to_parent"] += flag == parent
        if (r := log_ratio(parent, child)) is not None:
            edges["norm_grew"] += r > 0
            edges["log_norm"].append(round(r, 5))
    pairs = {"pairs": 0, "growth_fired": 0, "log_norm": []}
    for children in by_parent.values():
        for a, b in combinations(sorted(children), 2):
            pairs["pairs"] += 1
            pairs["growth_fired"] += grown(a, b) is not None
            if (r := log_ratio(a, b)) is not None:
                pairs["log_norm"].append(round(abs(r), 5))
    return {"true_edges": edges, "sibling_pairs": pairs}


def centrality(at: str, others: list[str], samples: dict) -> tuple[float, float] | None:
    """(median over pairs {a, b} of ``others`` of cos(a − at, b − at), median |a − at|) on raw
    samples; None when fewer than two share ``at``'s shape."""
    x = samples[at]
    offsets = [samples[m] - x for m in others if samples[m].shape == x.shape]
    if len(offsets) < 2:
        return None
    norms = [float(o.norm()) for o in offsets]
    cosines = [float(a @ b) / (na * nb) for (a, na), (b, nb) in combinations(zip(offsets, norms), 2) if na and nb]
    return statistics.median(cosines), statistics.median(norms)


def centrality_row(base: str, members: list[str], samples: dict) -> dict:
    """The base's centrality among its trained descendants, and each descendant's among the rest
    with the base left out (as when the base is not indexed); members as central as the base."""
    own = centrality(base, members, samples)
    row: dict = {"base": base, "members": len(members), "base_centrality": None, "as_central": []}
    if own is None:
        return row
    row["base_centrality"] = [round(own[0], 4), round(own[1], 4)]
    for m in sorted(members):
        found = centrality(m, [o for o in members if o != m], samples)
        if found is not None and found[0] <= own[0] and found[1] <= own[1]:
            row["as_central"].append({"model": m, "centrality": [round(found[0], 4), round(found[1], 4)]})
    return row


def _spread(values: list[float], digits: int = 2) -> str:
    if not values:
        return "-"
    return f"{min(values):.{digits}f} / {statistics.median(values):.{digits}f} / {max(values):.{digits}f}"


def _as_child(rank: dict) -> str:
    """ "; as a child of X: fresh / shared" for the model nearest to it, where the cosines were read."""
    found = rank.get("as_child_of_nearer") or []
    if not found:
        return ""
    first = found[0]
    return f"; as a child of {first['model']}: fresh {first['fresh']:.2f}, shared {first['shared']:.2f}"


def markdown(result: dict, command: str) -> str:
    lines = [
        "## Update geometry on true lineages (issue 12, development zoos)",
        "",
        f"Command: `{command}`  (commit {result['environment']['commit']}, {result['environment']['date']})",
        "",
        "fresh = cos(p − g, c − p) on true chain steps (c a trained child of p, itself a trained child of g); "
        "shared = cos(c₁ − g, c₂ − g) on true sibling pairs; raw q/k/v samples of the first, middle and last "
        "block, as `indexer.lineage.evidence.update_cosines` reads them. Parent rank: the true parent's place "
        "among the model's same-shape family members but its own descendants, by raw distance (1 = nearest); "
        "for a model whose true parent is not the nearest, its fresh / shared cosines as a child of the nearest "
        "(g = its true parent), to read against the true chain steps.",
        "",
        "| dataset | chain steps | fresh min / median / max | sibling pairs | shared min / median / max "
        "| trained models | true parent nearest | not nearest |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, data in result["datasets"].items():
        ranks = data["parent_ranks"]
        missed = [
            f"{r['child']} (rank {r['parent_rank']} of {r['of']}{_as_child(r)})" for r in ranks if r["parent_rank"] > 1
        ]
        lines.append(
            f"| {name} | {len(data['chain_steps'])} | {_spread([s['fresh'] for s in data['chain_steps']])} "
            f"| {len(data['siblings'])} | {_spread([s['shared'] for s in data['siblings']])} | {len(ranks)} "
            f"| {sum(r['parent_rank'] == 1 for r in ranks)} | {', '.join(missed) or '-'} |"
        )
    lines += [
        "",
        "Growth signals (`indexer.lineage.signals`): `growth` - one model larger than the other in every sampled "
        "matrix - on true trained edges (pointing at the child / at the parent) and on true sibling pairs (fired "
        "either way: a parent claim between two siblings); `norm_growth` - |log| of the attention norms' ratio, "
        "min / median / max. Two models alone can be directed only by these.",
        "",
        "| dataset | true edges | growth → child / → parent | attention norm grew | \\|log ratio\\| on edges "
        "| sibling pairs | growth fired | \\|log ratio\\| on siblings |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, data in result["datasets"].items():
        if "growth" not in data:
            continue
        e, p = data["growth"]["true_edges"], data["growth"]["sibling_pairs"]
        lines.append(
            f"| {name} | {e['pairs']} | {e['growth_to_child']} / {e['growth_to_parent']} | {e['norm_grew']} "
            f"| {_spread([abs(x) for x in e['log_norm']], 3)} | {p['pairs']} | {p['growth_fired']} "
            f"| {_spread(p['log_norm'], 3)} |"
        )
    lines += [
        "",
        "Centrality (module docstring): per true base with three or more trained descendants, the median cosine "
        "between the offsets from the base to two of them and the median distance to them; beside it every "
        "descendant whose own median cosine and median distance to the others (the base left out) are both no "
        "larger - a model the weights cannot tell from the base when the base is not indexed.",
        "",
        "| dataset | base | trained descendants | base: median cos / median distance | as central as the base |",
        "|---|---|---|---|---|",
    ]
    for name, data in result["datasets"].items():
        for row in data.get("centres", []):
            own = row["base_centrality"]
            found = ", ".join(
                f"{m['model']} ({m['centrality'][0]:.2f} / {m['centrality'][1]:.3g})" for m in row["as_central"]
            )
            own_text = f"{own[0]:.2f} / {own[1]:.3g}" if own else "-"
            lines.append(f"| {name} | {row['base']} | {row['members']} | {own_text} | {found or '-'} |")
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
