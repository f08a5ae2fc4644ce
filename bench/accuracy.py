"""Accuracy benchmark: does the fingerprint score separate shared-initialisation pairs?

    python -m bench.accuracy [--size full|small]

Builds (or reuses) the zoo, ingests it into a fresh data folder, scores every pair and reports:
ROC AUC of the score for "shares an initialisation" (same family = ancestor, descendant, sibling
or cousin: positive; different roots, including the same-recipe seeds and the distilled model vs
its teacher: negative), TPR at 1 % FPR, and the score of every derived model to each of its
parents next to the highest negative score.  Results: bench/results/accuracy-<size>.json and the
``accuracy`` section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from bench.metrics import roc_auc, tpr_at_fpr
from bench.report import ROOT, environment, publish
from pedigree.config import load_settings
from pedigree.workspace import Workspace


def label_pairs(truth: dict, pairs: list[dict]) -> tuple[list[dict], list[dict]]:
    """Split scored pairs into positives (same family) and negatives (different roots)."""
    positives, negatives = [], []
    for pair in pairs:
        same = truth[pair["a"]]["family"] == truth[pair["b"]]["family"]
        (positives if same else negatives).append(pair)
    return positives, negatives


def parent_rows(truth: dict, scores: dict[frozenset, float], best_negative: float) -> list[dict]:
    rows = []
    for model_id, facts in sorted(truth.items()):
        for parent in facts.get("parents", []):
            score = scores[frozenset((model_id, parent))]
            rows.append(
                {
                    "model": model_id,
                    "relation": facts["relation"],
                    "parent": parent,
                    "score": score,
                    "margin_over_best_negative": round(score - best_negative, 6),
                }
            )
    return rows


def notable_negatives(truth: dict, negatives: list[dict]) -> dict:
    """The negatives the issue names: same-recipe seeds and the distilled model vs its teacher."""
    notable = {}
    for model_id, facts in truth.items():
        teacher = facts.get("notes", {}).get("distilled_from")
        if teacher:
            notable[f"distilled {model_id} vs teacher {teacher}"] = None
    roots = [m for m, f in truth.items() if f["relation"] == "root" and not f.get("notes", {}).get("distilled_from")]
    for pair in negatives:
        a, b = pair["a"], pair["b"]
        for key in list(notable):
            if key == f"distilled {a} vs teacher {b}" or key == f"distilled {b} vs teacher {a}":
                notable[key] = pair["score"]
        if a in roots and b in roots and truth[a]["architecture"] == truth[b]["architecture"]:
            notable[f"same-recipe roots {a} vs {b}"] = pair["score"]
    return notable


def run(size: str, zoo_dir: Path) -> dict:
    from pedigree.zoo.build import build_zoo

    started = time.perf_counter()
    manifest = build_zoo(zoo_dir, size)
    build_seconds = time.perf_counter() - started
    truth = json.loads((zoo_dir / "truth.json").read_text())
    with tempfile.TemporaryDirectory() as home, Workspace(load_settings(home)) as ws:
        started = time.perf_counter()
        outcomes = ws.ingest(zoo_dir, confirm=0).models
        ingest_seconds = time.perf_counter() - started
        failed = [o.to_json() for o in outcomes if o.status != "indexed"]
        pairs = ws.matrix(tests=False).to_json()["pairs"]
    positives, negatives = label_pairs(truth, pairs)
    pos_scores = [p["score"] for p in positives]
    neg_scores = [p["score"] for p in negatives]
    best_negative = max(negatives, key=lambda p: p["score"])
    tpr, threshold = tpr_at_fpr(pos_scores, neg_scores, 0.01)
    scores = {frozenset((p["a"], p["b"])): p["score"] for p in pairs}
    rows = parent_rows(truth, scores, best_negative["score"])
    same_arch_neg = [p for p in negatives if truth[p["a"]]["architecture"] == truth[p["b"]]["architecture"]]
    return {
        "size": size,
        "models": len(truth),
        "zoo_build_seconds_this_run": round(build_seconds, 1),
        "zoo_build_seconds_when_built": manifest.get("build_seconds"),
        "zoo_recipe": manifest.get("recipe_hash"),
        "ingest_seconds": round(ingest_seconds, 1),
        "not_indexed": failed,
        "positives": len(positives),
        "negatives": len(negatives),
        "roc_auc": roc_auc(pos_scores, neg_scores),
        "roc_auc_same_architecture_negatives": roc_auc(pos_scores, [p["score"] for p in same_arch_neg]),
        "tpr_at_1pct_fpr": tpr,
        "threshold_at_1pct_fpr": threshold,
        "lowest_positive": min(positives, key=lambda p: p["score"]),
        "best_negative": best_negative,
        "derived_vs_parent": rows,
        "all_derived_above_best_negative": all(r["margin_over_best_negative"] > 0 for r in rows),
        "notable_negatives": notable_negatives(truth, negatives),
        "top_negatives": sorted(negatives, key=lambda p: -p["score"])[:8],
        "environment": environment(),
    }


def markdown(result: dict, command: str) -> str:
    lines = [
        f"## Accuracy: fingerprint score, {result['size']} zoo",
        "",
        f"Command: `{command}`  (commit {result['environment']['commit']}, {result['environment']['date']})",
        "",
        f"{result['models']} models, {result['positives']} positive pairs (same family), {result['negatives']} "
        "negative pairs (different roots); "
        f"zoo build {result['zoo_build_seconds_when_built']} s (when built), ingest {result['ingest_seconds']} s.",
        "",
        "| metric | value |",
        "|---|---|",
        f"| ROC AUC (all negatives) | {result['roc_auc']:.4f} |",
        f"| ROC AUC (same-architecture negatives only) | {result['roc_auc_same_architecture_negatives']:.4f} |",
        f"| TPR at 1 % FPR | {result['tpr_at_1pct_fpr']:.4f} |",
        f"| lowest positive pair | {result['lowest_positive']['score']:.4f} ({result['lowest_positive']['a']} / "
        f"{result['lowest_positive']['b']}) |",
        f"| highest negative pair | {result['best_negative']['score']:.4f} ({result['best_negative']['a']} / "
        f"{result['best_negative']['b']}) |",
    ]
    for name, score in result["notable_negatives"].items():
        lines.append(f"| {name} | {score if score is None else f'{score:.4f}'} |")
    lines += [
        "",
        "Every derived model against each of its parents (margin = score − highest negative score):",
        "",
        "| model | relation | parent | score | margin |",
        "|---|---|---|---|---|",
    ]
    for row in result["derived_vs_parent"]:
        lines.append(
            f"| {row['model']} | {row['relation']} | {row['parent']} | {row['score']:.4f} | "
            f"{row['margin_over_best_negative']:+.4f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=["small", "full"], default="full")
    parser.add_argument("--zoo", type=Path, default=None, help="zoo folder [default: bench/.zoo/<size>]")
    parser.add_argument("--no-report", action="store_true", help="do not rewrite BENCHMARKS.md")
    args = parser.parse_args(argv)
    zoo_dir = args.zoo or ROOT / "bench" / ".zoo" / args.size
    result = run(args.size, zoo_dir)
    command = f"python -m bench.accuracy --size {args.size}"
    publish(f"accuracy-{args.size}", result, markdown(result, command), report=not args.no_report)


if __name__ == "__main__":
    main()
