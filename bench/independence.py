"""Independence-test benchmark: power on every zoo transform, localisation, and null calibration.

    python -m bench.independence [--size full|small] [--synthetic 400]

1. **Power**: the battery on every same-family pair of the zoo (every transform, direct and
   indirect relatives); the largest combined log10 p, and any non-finite value.
2. **Localisation**: the layer-dropped model's block map vs the layers it kept, the width-pruned
   model's recovered MLP units, the re-initialised block.
3. **Calibration** over independent pairs: every different-root pair of the zoo (including the
   same-recipe seeds and the distilled model vs its teacher) and ``--synthetic`` pairs of fresh
   random initialisations of the zoo's architectures (its configs and init scales, new seeds).
   Per test: Kolmogorov-Smirnov statistic and p against U(0,1), false-positive rate at
   α = 0.01 and 0.001.  The zoo's cross-family pairs are *clustered* (a family's members are
   near-copies, so their p-values against another family move together); KS assumes independent
   samples, so it is also reported on independent samples only: the root-vs-root pairs plus the
   synthetic pairs.
Results: bench/results/independence-<size>.json and the BENCHMARKS.md section.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from itertools import combinations
from pathlib import Path

import numpy as np
from scipy import stats

from bench.report import ROOT, environment, publish
from pedigree.indexer.independence.inputs import ModelTensors
from pedigree.indexer.independence.suite import run_battery, unit_correspondence
from pedigree.indexer.local_checkpoint import open_checkpoint
from pedigree.indexer.sources import StateDictSource

TEXT_FILES = ("config.json", "tokenizer.json", "tokenizer_config.json")


def p_values(report) -> dict[str, float]:
    values = {t.name: t.log10_p for t in report.tests}
    values["combined"] = report.log10_p
    return values


def calibration(rows: list[dict[str, float]]) -> dict[str, dict]:
    """Per test: n, KS statistic and p vs U(0,1), FPR at 0.01 and 0.001."""
    names = sorted({name for row in rows for name in row})
    out = {}
    for name in names:
        ps = np.power(10.0, [row[name] for row in rows if name in row])
        ks = stats.kstest(ps, "uniform")
        out[name] = {
            "n": int(len(ps)),
            "ks_statistic": round(float(ks.statistic), 4),
            "ks_p": float(f"{ks.pvalue:.3g}"),
            "fpr_0.01": round(float(np.mean(ps < 0.01)), 4),
            "fpr_0.001": round(float(np.mean(ps < 0.001)), 4),
        }
    return out


def power(truth: dict, models: dict[str, ModelTensors]) -> dict:
    pairs = [(a, b) for a, b in combinations(sorted(truth), 2) if truth[a]["family"] == truth[b]["family"]]
    rows, worst, non_finite = [], None, 0
    for a, b in pairs:
        report = run_battery(models[a], models[b])
        values = p_values(report)
        non_finite += sum(not math.isfinite(v) for v in values.values())
        rows.append({"a": a, "b": b, "log10_p": round(report.log10_p, 2)})
        if worst is None or report.log10_p > worst["log10_p"]:
            worst = rows[-1]
    direct = [r for r in rows if r["a"] in truth[r["b"]]["parents"] or r["b"] in truth[r["a"]]["parents"]]
    return {
        "pairs": len(rows),
        "max_log10_p": worst,
        "non_finite": non_finite,
        "all_below_minus_12": all(r["log10_p"] < -12 for r in rows),
        "parent_child": direct,
    }


def localisation(truth: dict, models: dict[str, ModelTensors]) -> dict:
    out = {}
    child = next(m for m, f in truth.items() if f["notes"].get("dropped_layers"))
    report = run_battery(models[truth[child]["parents"][0]], models[child])
    kept = {int(k): v for k, v in truth[child]["notes"]["kept_layers"].items()}
    found = {j: i for i, j, _ in report.layer_map}
    out["layer_dropped"] = {"model": child, "kept_layers": kept, "map_found": found, "exact": found == kept}
    child = next(m for m, f in truth.items() if f["notes"].get("kept_mlp_units"))
    parent = models[truth[child]["parents"][0]]
    recovered = []
    for layer, units in enumerate(truth[child]["notes"]["kept_mlp_units"]):
        hit = unit_correspondence(parent, models[child], layer, layer)["matched_a_units"]
        recovered.append(round(len(set(hit.tolist()) & set(units)) / len(units), 4))
    out["width_pruned"] = {"model": child, "recovered_per_block": recovered, "min": min(recovered)}
    child = next(m for m, f in truth.items() if "reinitialised_mlp_layer" in f["notes"])
    report = run_battery(models[truth[child]["parents"][0]], models[child])
    fresh = truth[child]["notes"]["reinitialised_mlp_layer"]
    blocks = {b["layer_a"]: b["log10_p"] for b in report.test("mlp_match").detail["blocks"]}
    shared = sorted(i for i, j, _ in report.layer_map if i == j)
    out["reinitialised"] = {
        "model": child,
        "layer": fresh,
        "block_log10_p": blocks,
        "shared_blocks": shared,
        "correct": shared == sorted(set(range(models[child].depth)) - {fresh}),
    }
    return out


def synthetic_pairs(zoo: Path, truth: dict, count: int) -> list[dict[str, float]]:
    from pedigree.zoo.models import init_state_dict

    roots = sorted(m for m, f in truth.items() if f["relation"] == "root" and not f["notes"].get("distilled_from"))
    rows = []
    for k in range(count):
        root = roots[k % len(roots)]
        source = open_checkpoint(zoo / root)
        texts = {name: text for name in TEXT_FILES if (text := source.read_text(name)) is not None}
        config = json.loads(texts["config.json"])
        a = ModelTensors(StateDictSource(init_state_dict(config, 10_000 + 2 * k), texts), f"random-{k}a")
        b = ModelTensors(StateDictSource(init_state_dict(config, 10_001 + 2 * k), texts), f"random-{k}b")
        rows.append(p_values(run_battery(a, b)))
    return rows


def run(size: str, zoo: Path, synthetic: int, cached: bool = False) -> dict:
    from pedigree.zoo.build import build_zoo

    if not (cached and (zoo / "truth.json").exists()):  # --cached: the zoo as built, even by older zoo code
        build_zoo(zoo, size)
    truth = json.loads((zoo / "truth.json").read_text())
    models = {m: ModelTensors(open_checkpoint(zoo / m), m) for m in truth}
    started = time.perf_counter()
    result: dict = {"size": size, "models": len(truth)}
    result["power"] = power(truth, models)
    result["localisation"] = localisation(truth, models)
    negatives, root_pairs, named = [], [], {}
    for a, b in combinations(sorted(truth), 2):
        if truth[a]["family"] == truth[b]["family"]:
            continue
        values = p_values(run_battery(models[a], models[b]))
        negatives.append(values)
        if truth[a]["relation"] == truth[b]["relation"] == "root":
            root_pairs.append(values)
        teacher = truth[a]["notes"].get("distilled_from") or truth[b]["notes"].get("distilled_from")
        roots = truth[a]["relation"] == truth[b]["relation"] == "root"
        if teacher in (a, b) or (roots and truth[a]["architecture"] == truth[b]["architecture"] and not teacher):
            named[f"{a} vs {b}"] = round(values["combined"], 3)
    synthetic_rows = synthetic_pairs(zoo, truth, synthetic)
    result["calibration"] = {
        "zoo_cross_family_pairs": calibration(negatives),
        "synthetic_pairs": calibration(synthetic_rows),
        "all_independent_pairs": calibration(negatives + synthetic_rows),
        "independent_samples_(root_pairs_+_synthetic)": calibration(root_pairs + synthetic_rows),
        "named_negatives": named,
    }
    result["raw_log10_p"] = {
        "zoo_cross_family_pairs": negatives,
        "zoo_root_pairs": root_pairs,
        "synthetic_pairs": synthetic_rows,
    }
    result["seconds"] = round(time.perf_counter() - started, 1)
    result["environment"] = environment()
    return result


def markdown(result: dict, command: str) -> str:
    power_, local = result["power"], result["localisation"]
    lines = [
        f"## Independence tests, {result['size']} zoo",
        "",
        f"Command: `{command}`  (commit {result['environment']['commit']}, {result['environment']['date']}; "
        f"{result['seconds']} s)",
        "",
        f"**Power.** {power_['pairs']} same-family pairs (every transform, direct and indirect relatives): "
        f"largest combined log10 p = {power_['max_log10_p']['log10_p']} ({power_['max_log10_p']['a']} / "
        f"{power_['max_log10_p']['b']}); "
        f"all < −12: {power_['all_below_minus_12']}; non-finite values: {power_['non_finite']}.",
        "",
        "**Localisation.** "
        f"Layer-dropped {local['layer_dropped']['model']}: kept {local['layer_dropped']['kept_layers']}, found "
        f"{local['layer_dropped']['map_found']} "
        f"(exact: {local['layer_dropped']['exact']}). Width-pruned {local['width_pruned']['model']}: kept units "
        "recovered per block "
        f"{local['width_pruned']['recovered_per_block']}. Re-initialised block {local['reinitialised']['layer']} of "
        f"{local['reinitialised']['model']}: "
        f"shared blocks {local['reinitialised']['shared_blocks']} (correct: {local['reinitialised']['correct']}).",
        "",
        "**Calibration** (p-values of independent pairs; KS against U(0,1)):",
        "",
        "| pairs | test | n | KS statistic | KS p | FPR α=0.01 | FPR α=0.001 |",
        "|---|---|---|---|---|---|---|",
    ]
    for group, tests in result["calibration"].items():
        if group == "named_negatives":
            continue
        if group == "all_independent_pairs":
            lines.append(
                "| *(the zoo's cross-family pairs are clustered: KS p is not valid on the first and third groups; "
                "the last group has independent samples)* | | | | | | |"
            )
        for name, row in tests.items():
            lines.append(
                f"| {group.replace('_', ' ')} | {name} | {row['n']} | {row['ks_statistic']} | {row['ks_p']} | "
                f"{row['fpr_0.01']} | {row['fpr_0.001']} |"
            )
    lines += [
        "",
        "Named negatives (combined log10 p): "
        + "; ".join(f"{k}: {v}" for k, v in result["calibration"]["named_negatives"].items()),
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=["small", "full"], default="full")
    parser.add_argument("--synthetic", type=int, default=400, help="synthetic independent pairs (fresh random inits)")
    parser.add_argument("--no-report", action="store_true")
    parser.add_argument(
        "--cached", action="store_true", help="use the cached zoo as it is (no rebuild when its recipe moved)"
    )
    args = parser.parse_args(argv)
    result = run(args.size, ROOT / "bench" / ".zoo" / args.size, args.synthetic, args.cached)
    command = f"python -m bench.independence --size {args.size} --synthetic {args.synthetic}" + (
        " --cached" if args.cached else ""
    )
    publish(f"independence-{args.size}", result, markdown(result, command), report=not args.no_report)


if __name__ == "__main__":
    main()
