"""Lineage benchmark on the zoo: directed edges, families, directions, relation types, cards.

    python -m bench.lineage [--size full|small]

Ingests the zoo (fingerprints, independence tests under BH control), then assembles the graph
three ways - ``weights`` (no timestamps, no model cards), ``time`` (+ creation times) and ``full``
(+ the cards' declared base models, some of them deliberately wrong) - and scores each against
truth.json: directed-edge precision / recall / F1 (an edge counts only with the right parent, child
and direction), family clustering ARI, direction accuracy (edges found in either direction that
point the right way), relation-type accuracy (over correct edges), merges with both parents, and
for ``full`` whether ``pedigree discrepancies`` reports every wrong declaration and every
undeclared derivation.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections import Counter
from math import comb
from pathlib import Path

from bench.report import ROOT, environment, publish
from pedigree.config import load_settings
from pedigree.query.graph import current_build, load_graph
from pedigree.workspace import Workspace


def adjusted_rand_index(labels_true: list, labels_pred: list) -> float:
    """ARI (Hubert & Arabie 1985) from the contingency table of two clusterings."""
    n = len(labels_true)
    pairs = Counter(zip(labels_true, labels_pred))
    sum_cells = sum(comb(c, 2) for c in pairs.values())
    sum_true = sum(comb(c, 2) for c in Counter(labels_true).values())
    sum_pred = sum(comb(c, 2) for c in Counter(labels_pred).values())
    expected = sum_true * sum_pred / comb(n, 2) if n > 1 else 0.0
    maximum = (sum_true + sum_pred) / 2
    return 1.0 if maximum == expected else (sum_cells - expected) / (maximum - expected)


def score(truth: dict, graph, discrepancies: dict | None) -> dict:
    """Directed edges are scored against the true parent edges; undirected edges (``directed``
    false: siblings, copies of unknown direction) are never parent claims - they are counted
    apart: right when the two share a latent ancestor or one is the other's parent."""
    true_edges = {(p, c) for c, f in truth.items() for p in f["parents"]}
    found = {(u, v) for u, v, d in graph.edges(data=True) if d.get("directed", True)}
    undirected = [(u, v) for u, v, d in graph.edges(data=True) if not d.get("directed", True)]
    latent = {m: f["latent_parent"] for m, f in truth.items() if f.get("latent_parent")}
    correct = true_edges & found
    precision = len(correct) / len(found) if found else 0.0
    recall = len(correct) / len(true_edges)
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    unordered = {frozenset(e) for e in true_edges}
    placed = [e for e in found if frozenset(e) in unordered]
    ids = sorted(truth)
    ari = adjusted_rand_index([truth[m]["family"] for m in ids], [graph.nodes[m]["family"] for m in ids])
    relation_ok = [graph.edges[e]["relation"] == truth[e[1]]["relation"] for e in correct]
    merges = [m for m, f in truth.items() if f["relation"] == "merge"]
    result = {
        "edges_true": len(true_edges),
        "edges_found": len(found),
        "edges_correct": len(correct),
        "precision": round(precision, 4),
        "recall": round(recall, 4),
        "f1": round(f1, 4),
        "family_ari": round(ari, 4),
        "direction_accuracy": round(sum(e in true_edges for e in placed) / len(placed), 4) if placed else None,
        "relation_accuracy": round(sum(relation_ok) / len(relation_ok), 4) if relation_ok else None,
        "merges_with_both_parents": {m: set(truth[m]["parents"]) <= set(graph.predecessors(m)) for m in merges},
        "undirected_edges": len(undirected),
        "undirected_right": sum(
            frozenset(e) in unordered or (e[0] in latent and latent.get(e[1]) == latent[e[0]]) for e in undirected
        ),
        "wrong_edges": [
            {
                "parent": p,
                "child": c,
                "relation": graph.edges[p, c]["relation"],
                "true_parents": truth[c]["parents"],
                "signals": graph.edges[p, c]["evidence"].get("signals"),
            }
            for p, c in sorted(found - true_edges)
        ],
        "missed_edges": [
            {"parent": p, "child": c, "relation": truth[c]["relation"]} for p, c in sorted(true_edges - found)
        ],
        "relation_errors": [
            {"edge": list(e), "found": graph.edges[e]["relation"], "true": truth[e[1]]["relation"]}
            for e, ok in zip(correct, relation_ok)
            if not ok
        ],
    }
    if discrepancies is not None:
        reported = {d["model"] for d in discrepancies["discrepancies"]}
        wrong = sorted(m for m, f in truth.items() if f.get("declaration") == "wrong")
        missing = sorted(m for m, f in truth.items() if f.get("declaration") == "missing" and f["parents"])
        undeclared = {d["model"]: d for d in discrepancies["undeclared"]}
        result["discrepancies"] = {
            "wrong_declarations": wrong,
            "reported": sorted(reported & set(wrong)),
            "all_wrong_reported": set(wrong) <= reported,
            "false_alarms": sorted(reported - set(wrong)),
            "undeclared_true": missing,
            "undeclared_reported_with_snippet": sorted(
                m for m in missing if undeclared.get(m, {}).get("suggested_card")
            ),
            "all_undeclared_reported": all(undeclared.get(m, {}).get("suggested_card") for m in missing),
            "kinds": {d["model"]: d["kind"] for d in discrepancies["discrepancies"]},
        }
    return result


def run(size: str, zoo: Path) -> dict:
    from pedigree.zoo.build import build_zoo

    build_zoo(zoo, size)
    truth = json.loads((zoo / "truth.json").read_text())
    result: dict = {"size": size, "models": len(truth), "modes": {}}
    with tempfile.TemporaryDirectory() as home, Workspace(load_settings(home)) as ws:
        started = time.perf_counter()
        ingested = ws.ingest(zoo)
        result["ingest_seconds"] = round(time.perf_counter() - started, 1)
        result["pairs_tested"] = len(ingested.confirmations)
        result["pairs_confirmed"] = sum(bool(c.confirmed) for c in ingested.confirmations)
        for mode in ("weights", "time", "full"):
            started = time.perf_counter()
            summary = ws.build_graph(mode)
            seconds = time.perf_counter() - started
            graph = load_graph(ws.store, current_build(ws.store, mode))
            found = score(truth, graph, ws.discrepancies(mode).to_json() if mode == "full" else None)
            result["modes"][mode] = {"build_seconds": round(seconds, 2), "build": summary.to_json(), **found}
    result["environment"] = environment()
    return result


def markdown(result: dict, command: str) -> str:
    lines = [
        f"## Lineage graph, {result['size']} zoo",
        "",
        f"Command: `{command}`  (commit {result['environment']['commit']}, {result['environment']['date']})",
        "",
        f"{result['models']} models; ingest with tests {result['ingest_seconds']} s ({result['pairs_tested']} "
        "candidate pairs tested, "
        f"{result['pairs_confirmed']} confirmed related).",
        "",
        "| evidence | precision | recall | directed-edge F1 | family ARI | direction accuracy | relation accuracy | "
        "merges with both parents |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for mode, row in result["modes"].items():
        merges = ", ".join(f"{'yes' if ok else 'no'}" for ok in row["merges_with_both_parents"].values())
        lines.append(
            f"| {mode} | {row['precision']} | {row['recall']} | **{row['f1']}** | {row['family_ari']} | "
            f"{row['direction_accuracy']} | {row['relation_accuracy']} | {merges} |"
        )
    for mode, row in result["modes"].items():
        if row["wrong_edges"] or row["relation_errors"]:
            lines += ["", f"Errors with `{mode}` evidence:"]
            for wrong in row["wrong_edges"]:
                lines.append(
                    f"- {wrong['parent']} → {wrong['child']} ({wrong['relation']}); truth: parent "
                    f"{', '.join(wrong['true_parents'])}; signals {wrong['signals']}"
                )
            for error in row["relation_errors"]:
                lines.append(
                    f"- relation of {error['edge'][0]} → {error['edge'][1]}: {error['found']}, truth {error['true']}"
                )
    d = result["modes"]["full"].get("discrepancies")
    if d:
        lines += [
            "",
            f"**Discrepancies** (full evidence): wrong declarations {d['wrong_declarations']} - all reported: "
            f"{d['all_wrong_reported']} "
            f"(kinds: { {m: d['kinds'][m] for m in d['reported']} }); other reports: {d['false_alarms'] or 'none'}. "
            f"Undeclared derivations {d['undeclared_true']} - all reported with a card snippet: "
            f"{d['all_undeclared_reported']}.",
        ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=["small", "full"], default="full")
    parser.add_argument("--no-report", action="store_true")
    args = parser.parse_args(argv)
    result = run(
        args.size, ROOT / "bench" / ".zoo" / args.size if args.size == "full" else ROOT / ".zoo-cache" / "small"
    )
    command = f"python -m bench.lineage --size {args.size}"
    publish(f"lineage-{args.size}", result, markdown(result, command), report=not args.no_report)


if __name__ == "__main__":
    main()
