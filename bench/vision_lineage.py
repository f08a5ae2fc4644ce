"""Lineage benchmark on the vision zoo (ViT and CLIP-vision encoders trained on the UCI digits).

    python -m bench.vision_lineage

Builds (or reuses) the vision zoo (``pedigree.zoo.vision``, cached by ``bench/vision_zoo_cache.py``),
ingests it into a fresh data folder - fingerprints and independence tests probed at pixel tokens
(``indexer.adapters.vision``) - and scores it as ``bench/lineage.py`` scores the LLM zoos
(``run_dataset``): relatedness AUC and TPR at 1 % FPR over every pair, directed-edge precision /
recall / F1 for the ``weights``, ``time`` and ``full`` evidence modes, and MoTHer's recipe as a
reference row (given the true families).  Writes ``bench/results/vision_lineage.json`` and the
``vision`` section of BENCHMARKS.md.

The vision zoo is new with this benchmark and nothing was tuned on it: the rules and thresholds are
zoo A's (bench/README.md).
"""

from __future__ import annotations

import argparse
import json

from bench.lineage import run_dataset
from bench.report import environment, update_section, write_json
from bench.vision_zoo_cache import vision_zoo_path

COMMAND = "python -m bench.vision_lineage"


def markdown(result: dict) -> str:
    data = result["dataset"]
    zoo = result["zoo"]
    lines = [
        "## Vision encoders: lineage on the vision zoo (ViT, CLIP vision)",
        "",
        f"Command: `{COMMAND}`  (commit {result['environment']['commit']}, {result['environment']['date']})",
        "",
        f"The vision zoo (`pedigree.zoo.vision`, built in {zoo['build_seconds']} s on CPU): {data['models']} tiny "
        "encoders trained on the UCI 8x8 digits - a ViT base, fine-tunes (augmentations, a label subset, longer "
        "training, a second generation), a merged rank-4 q/v LoRA child, a merge of two fine-tunes, an unrelated "
        "ViT with a fine-tune, and a CLIP-vision base, fine-tune and unrelated base (`CLIPVisionModel` layout).  "
        "Probe rows are *pixel tokens*: the patch embedding's 3·4·4 = 48 columns (`indexer.adapters.vision`).  "
        "Held out: the rules and thresholds are zoo A's, nothing was tuned here.",
        "",
        "| evidence | precision | recall | **F1** | direction acc. | relation acc. | family ARI | "
        "undirected right/found | merges with all parents |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for mode, row in data["modes"].items():
        merges = "".join("✓" if ok else "✗" for ok in row["merges_with_both_parents"].values()) or "-"
        lines.append(
            f"| {mode} | {row['precision']} | {row['recall']} | **{row['f1']}** | {row['direction_accuracy']} | "
            f"{row['relation_accuracy']} | {row['family_ari']} | {row['undirected_right']}/{row['undirected_edges']} "
            f"| {merges} |"
        )
    r, chained = data["relatedness"], data.get("relatedness_linked") or {}
    lines += [
        "",
        "| relatedness AUC | TPR @ 1 % FPR | related pairs never proposed | AUC / TPR, shared ancestor in the graph "
        "(weights) | pairs tested / confirmed | ingest s |",
        "|---|---|---|---|---|---|",
        f"| **{r['auc']}** | {r['tpr_at_1pct_fpr']} | {len(r['related_never_proposed'])} of {r['positives']} | "
        f"{chained.get('auc')} / {chained.get('tpr_at_1pct_fpr')} | {data['pairs_tested']} / "
        f"{data['pairs_confirmed']} | {data['ingest_seconds']} |",
    ]
    for mode, row in data["modes"].items():
        if mode.startswith("MoTHer") or not (row["wrong_edges"] or row["missed_edges"]):
            continue
        lines += ["", f"With `{mode}` evidence:"]
        lines += [
            f"- wrong: {w['parent']} → {w['child']} ({w['relation']}); truth: parent "
            f"{', '.join(w['true_parents']) or 'none'}"
            for w in row["wrong_edges"]
        ]
        lines += [f"- missed: {m['parent']} → {m['child']} ({m['relation']})" for m in row["missed_edges"]]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--no-report", action="store_true", help="write the JSON only, leave BENCHMARKS.md")
    args = parser.parse_args(argv)
    zoo = vision_zoo_path()
    manifest = json.loads((zoo / "zoo.json").read_text())
    result = {
        "zoo": {"path": str(zoo), "recipe_hash": manifest["recipe_hash"], "build_seconds": manifest["build_seconds"]},
        "dataset": run_dataset("vision zoo", zoo),
        "environment": environment(),
    }
    text = markdown(result)
    write_json("vision_lineage", result)
    if not args.no_report:
        update_section("vision", text)
    print(text)


if __name__ == "__main__":
    main()
