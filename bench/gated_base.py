"""Lineage when a family's base is not indexed: the gated-base case.

    python -m bench.gated_base [--size full|small] [--checkout DIR]

On the Hub the base of many families cannot be read (a gated or deleted repo): a crawler then
indexes fine-tunes, prunes, adapters and merges of a model it never sees.  Zoos A-C have a latent
ancestor only *below* an indexed one (zoo B's cobalt-sft pair, zoo C's private fine-tunes); here
zoo A's Llama family loses its root and the models that compute the root's function in other
coordinates or on another grid (its permuted, rotated and int8 copies - each of them would stand in
for the base):

- the derived zoo is a folder of links to zoo A's models (``bench/.zoo/<size>-gated-base``, rebuilt
  from zoo A's ``truth.json`` on every run) whose ``truth.json`` gives the base's children no parent
  and ``latent_parent`` = the base, so the scorer counts an edge from a latent node to them as right
  and any parent edge among them as wrong;
- it is scored like every lineage dataset (``bench.lineage.run_dataset``: the three evidence modes
  and MoTHer's recipe) and, with ``--checkout``, also by another checkout's lineage stage
  (``bench.filing_baseline``).

Zoo A is the development zoo, so this dataset is development data too: a rule set on it is
measured on zoos B and C.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from bench.filing_baseline import MODES, checkout_commit, checkout_folder, other_checkout_graphs
from bench.lineage import run_dataset, score, wrong_edges_text
from bench.report import ROOT, environment, publish

BASE = "llama-lab/tiny-llama-s1"
STAND_INS = ("copy", "permuted", "rotated", "quantized")  # relations whose model computes the base's function


def without_base(zoo: Path, out: Path, base: str = BASE) -> dict:
    """Write ``out``: links to every model of ``zoo`` but ``base`` and its stand-ins (children whose
    relation is in :data:`STAND_INS`), with a truth in which ``base``'s other children have no parent
    and ``latent_parent`` = ``base``.  Returns that truth."""
    truth = json.loads((zoo / "truth.json").read_text())
    if base not in truth:
        raise ValueError(f"{base} is not in {zoo}")
    dropped = {base} | {m for m, f in truth.items() if f["parents"] == [base] and f["relation"] in STAND_INS}
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    kept: dict = {}
    for model, facts in sorted(truth.items()):
        if model in dropped:
            continue
        facts = dict(facts)
        if base in facts["parents"]:
            facts["parents"] = [p for p in facts["parents"] if p != base]
            if not facts["parents"]:
                facts["latent_parent"] = base
        kept[model] = facts
        (out / model).parent.mkdir(parents=True, exist_ok=True)
        (out / model).symlink_to((zoo / model).resolve(), target_is_directory=True)
    (out / "truth.json").write_text(json.dumps(kept, indent=2) + "\n")
    return kept


def markdown(result: dict, command: str) -> str:
    row = result["today"]
    lines = [
        f"## Lineage when the base is not indexed (zoo A {result['size']} without {BASE})",
        "",
        f"Command: `{command}`  (commit {result['environment']['commit']}, {result['environment']['date']})",
        "",
        f"Zoo A {result['size']} without its Llama root and the root's {len(result['dropped']) - 1} stand-ins "
        f"({', '.join(result['dropped'][1:])}): {row['models']} models; the root's other children are siblings "
        "of a base the index never sees, as a gated base's family looks to a crawler (bench/gated_base.py).  "
        "An edge from a latent node, or an undirected edge, between two of them is right; a parent edge between "
        "two of them is wrong.",
        "",
        "| code | evidence | precision | recall | **F1** | undirected right/found | latent nodes | wrong edges |",
        "|---|---|---|---|---|---|---|---|",
    ]
    rows = [("today", row["modes"])]
    if result.get("other"):
        rows.append((f"{result['other']['commit']} (filing)", result["other"]["modes"]))
    for code, modes in rows:
        for mode in (*MODES, "MoTHer (reference)"):
            if mode not in modes:
                continue
            m = modes[mode]
            wrong = wrong_edges_text(m)
            lines.append(
                f"| {code} | {mode} | {m['precision']} | {m['recall']} | **{m['f1']}** | "
                f"{m['undirected_right']}/{m['undirected_edges']} | {m['latent_nodes']} | {wrong} |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=["small", "full"], default="full")
    parser.add_argument("--checkout", type=checkout_folder, help="also score another checkout's lineage stage on it")
    parser.add_argument("--no-report", action="store_true")
    args = parser.parse_args(argv)
    base = ROOT / "bench" / ".zoo" if args.size == "full" else ROOT / ".zoo-cache"
    zoo = base / ("full" if args.size == "full" else "small")
    if not (zoo / "truth.json").exists():
        from pedigree.zoo.build import build_zoo

        build_zoo(zoo, args.size)
    folder = ROOT / "bench" / ".zoo" / f"{args.size}-gated-base"
    truth = without_base(zoo, folder)
    original = json.loads((zoo / "truth.json").read_text())
    result: dict = {
        "size": args.size,
        "dropped": sorted(set(original) - set(truth), key=lambda m: (m != BASE, m)),
        "today": run_dataset(f"zoo A {args.size} without its base", folder),
    }
    if args.checkout:
        graphs = other_checkout_graphs(args.checkout.resolve(), folder)
        modes = {mode: score(truth, graphs[mode], None) for mode in MODES}
        result["other"] = {"commit": checkout_commit(args.checkout.resolve()), "modes": modes}
    result["environment"] = environment()
    name = f"gated-base-{args.size}"
    publish(name, result, markdown(result, result["environment"]["command"]), report=not args.no_report)


if __name__ == "__main__":
    main()
