"""Calibration of the independence battery's p-values on every architecture variant (issue 18).

    python -m bench.calibration [--pairs 200] [--workers 2] [--live] [--quick] [--group NAME ...]
                                [--start K] [--pool EARLIER.json]

Groups of *independent* pairs (``bench.calibration_set``):

- 14 synthetic groups, ``--pairs`` pairs each, every pair two fresh initialisations of its own
  (no model in two pairs, so the p-values are independent samples): Llama MHA / GQA / MQA /
  tied, Qwen2 (GQA, qkv biases), GPT-2 (non-GLU, tied, pre-LN), GPT-NeoX (parallel residual),
  BERT (post-LN), pairs that differ in depth, MLP width, hidden size (only the shape-free
  tests run) or tokenizer (partial probe overlap), and "wide MLP" pairs (1096-1536 units, gated
  and ungated: the tests' canonical-unit samples, ``indexer.unit_selection``) and "mid MLP" pairs
  (288-512 units, stored and tested whole since capture ev4); shapes, dtype and init scheme drawn
  per pair.
- trained: 21 independently trained Llama-GQA and 21 GPT-2 models (``bench.calibration_trained``),
  and a second and a third batch of 21 GPT-2 (``gpt2-b``, ``gpt2-c``: own seeds, own cut of the
  corpus); all C(21, 2) = 210 pairs of a batch are *clustered* (each model is in 20 pairs): FPR is
  reported on all of them, KS on a matching of disjoint pairs (10 independent pairs) as well.  With
  the first two GPT-2 batches, also every pair of the 42 (861, clustered: ``trained gpt2, both
  batches``), and with all three every pair of the 63 (1,953: ``trained gpt2, three batches``).
- zoo A roots / zoo B roots: every cross-family pair of each zoo (models descending from
  different, independently trained roots) - clustered (a family's members are near-copies).

Per group and test (mlp_match, embedding_dims, head_dims, mlp_up, block_units - reported, not
deciding - and the combined p): n, KS statistic and p against U(0,1), FPR at α = 0.01 and 0.001
with counts, the smallest log10 p and the non-finite count.  Power: every same-family pair of zoo
A and zoo B (count, the weakest combined log10 p, all < −12, non-finite count).

Batteries run from stored evidence (``capture`` -> ``write_evidence`` -> ``StoredModel``), as
the product runs them; ``--live`` runs them on the checkpoints directly.  Held-out rules: nothing
in the battery is tuned on this set or on zoo B; zoo B contributes tokenizer files (cross-tokenizer
group), its cross-family pairs and its same-family pairs (power) only.
Results: bench/results/calibration.json and the BENCHMARKS.md section (not with ``--quick``).
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
from multiprocessing import get_context
from pathlib import Path

import numpy as np
from scipy import stats

from bench.calibration_report import TESTS, compact_rows, markdown, parse_compact_rows
from bench.calibration_set import (
    SYNTHETIC_GROUPS,
    ZOOS,
    FolderPair,
    PairSpec,
    all_pairs,
    disjoint_pairs,
    shape_of,
    synthetic_pairs,
    zoo_pairs,
)
from bench.report import environment, publish
from pedigree.indexer.block_signatures import PROPOSAL_BAR, block_signature_alignment

EXACT_NULL = ("embedding_dims", "head_dims", "mlp_up")
BARS = {"fpr_0.01": 0.01, "fpr_0.001": 0.002, "min_pairs": 200, "ks_p": 0.01, "power_log10_p": -12.0}
QUICK = {"pairs": 6, "trained": 4, "zoo_pairs": 12}


def p_values(report) -> dict[str, float]:
    values = {t.name: t.log10_p for t in report.tests}
    values["combined"] = report.log10_p
    return values


def calibration_stats(rows: list[dict[str, float]]) -> dict[str, dict]:
    """Per test (in :data:`TESTS` order, those present): n, KS statistic and p against U(0,1) (on
    the finite values), FPR at 0.01 and 0.001 as k/n (p = 10^log10_p; a non-finite value counts as
    a rejection), the smallest log10 p and how many values were not finite."""
    out: dict[str, dict] = {}
    for name in [t for t in TESTS if any(t in row for row in rows)]:
        values = np.array([row[name] for row in rows if name in row], dtype=float)
        finite = values[np.isfinite(values)]
        ps = np.power(10.0, finite)
        entry: dict = {"n": int(len(values))}
        if len(ps):
            ks = stats.kstest(ps, "uniform")
            entry.update(ks_statistic=round(float(ks.statistic), 4), ks_p=float(f"{ks.pvalue:.3g}"))
        for alpha, key in ((0.01, "fpr_0.01"), (0.001, "fpr_0.001")):
            k = int(np.sum(ps < alpha)) + int(len(values) - len(finite))
            entry[key] = {"k": k, "n": int(len(values)), "rate": round(k / len(values), 4)}
        entry["min_log10_p"] = round(float(finite.min()), 3) if len(finite) else None
        entry["non_finite"] = int(len(values) - len(finite))
        out[name] = entry
    return out


def bars(group_stats: dict[str, dict], *, independent: bool, variant: bool = True) -> dict:
    """The issue's bars for one group: combined FPR, KS of the exact-null tests (independent samples
    only) and, for a variant group (``variant``), at least 200 pairs."""
    combined = group_stats.get("combined", {})
    out = {
        "combined_fpr_0.01_ok": combined.get("fpr_0.01", {}).get("rate", 1.0) <= BARS["fpr_0.01"],
        "combined_fpr_0.001_ok": combined.get("fpr_0.001", {}).get("rate", 1.0) <= BARS["fpr_0.001"],
    }
    if independent and variant:
        out["pairs_ok"] = combined.get("n", 0) >= BARS["min_pairs"]
    if independent:
        out["ks_exact_nulls_ok"] = all(
            group_stats[t].get("ks_p", 0.0) >= BARS["ks_p"] for t in EXACT_NULL if t in group_stats
        )
    return out


# ---- workers -----------------------------------------------------------------------------------


def _init_worker() -> None:
    import torch

    torch.set_num_threads(1)


def _stored(model, folder: Path):
    """Capture ``model`` (a live ModelTensors) into an evidence file and open it as the product does."""
    from pedigree.indexer.evidence_file import EvidenceFile, write_evidence
    from pedigree.indexer.stored_model import StoredModel, capture

    path = folder / f"{model.label.replace('/', '__').replace(':', '_')}.npz"
    manifest, arrays = capture(model)
    write_evidence(path, manifest, arrays)
    return StoredModel(EvidenceFile(path), model.label)


def synthetic_live(spec) -> object:
    from pedigree.indexer.independence.inputs import ModelTensors
    from pedigree.indexer.sources import StateDictSource

    return ModelTensors(StateDictSource(spec.state_dict(), spec.texts(), spec.label), spec.label)


def run_synthetic(job: tuple[PairSpec, bool]) -> dict:
    """Worker: one synthetic pair's battery (from stored evidence unless ``live``)."""
    from pedigree.indexer.independence.inputs import shared_probes
    from pedigree.indexer.independence.suite import run_battery

    pair, live = job
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="calibration-") as tmp:
        a, b = synthetic_live(pair.a), synthetic_live(pair.b)
        if not live:
            a, b = _stored(a, Path(tmp)), _stored(b, Path(tmp))
        report = run_battery(a, b)
        probes = len(shared_probes(a, b)[0])
        a.close()
        b.close()
    return {
        "group": pair.group,
        "index": pair.index,
        "scheme": pair.scheme,
        "a": {**shape_of(pair.a.config), "tokenizer": pair.a.tokenizer, "init": pair.a.init},
        "b": {**shape_of(pair.b.config), "tokenizer": pair.b.tokenizer, "init": pair.b.init},
        "shared_probes": probes,
        "log10_p": {k: round(v, 4) for k, v in p_values(report).items()},
        "seconds": round(time.perf_counter() - start, 3),
    }


def capture_folder(job: tuple[str, str, str]) -> tuple[str, str]:
    """Worker: capture one checkpoint folder into an evidence file; (label, path)."""
    from pedigree.indexer.block_signatures import block_signatures
    from pedigree.indexer.evidence_file import write_evidence
    from pedigree.indexer.independence.inputs import ModelTensors
    from pedigree.indexer.local_checkpoint import open_checkpoint
    from pedigree.indexer.stored_model import capture

    label, folder, out = job
    model = ModelTensors(open_checkpoint(folder), label)
    try:
        write_evidence(Path(out), *capture(model))
        np.save(_signature_file(out), block_signatures(model.loader, model.roles))
    finally:
        model.close()
    return label, out


def _signature_file(evidence: str) -> Path:
    """Where a captured model's block signatures lie: beside its evidence file."""
    return Path(evidence).with_suffix(".signatures.npy")


def _hint(captured_a: str, captured_b: str) -> list[tuple[int, int]]:
    """The block pairs the product hands the battery for these two models: the block-signature
    alignment at the proposal bar (``indexer.confirm.candidates``), oriented a -> b."""
    sigs_a, sigs_b = np.load(_signature_file(captured_a)), np.load(_signature_file(captured_b))
    return [(i, j) for i, j, _ in block_signature_alignment(sigs_a, sigs_b, bar=PROPOSAL_BAR)]


def run_folder_pair(job: tuple[FolderPair, str, str, bool, list[tuple[int, int]]]) -> dict:
    """Worker: the battery on two models given as evidence files (or, ``live``, checkpoint folders),
    with the block pairs the product would hint (:func:`_hint`)."""
    from pedigree.indexer.evidence_file import EvidenceFile
    from pedigree.indexer.independence.inputs import ModelTensors
    from pedigree.indexer.independence.suite import run_battery
    from pedigree.indexer.local_checkpoint import open_checkpoint
    from pedigree.indexer.stored_model import StoredModel

    pair, path_a, path_b, live, hint = job
    start = time.perf_counter()
    if live:
        a, b = ModelTensors(open_checkpoint(path_a), pair.a), ModelTensors(open_checkpoint(path_b), pair.b)
    else:
        a, b = StoredModel(EvidenceFile(Path(path_a)), pair.a), StoredModel(EvidenceFile(Path(path_b)), pair.b)
    try:
        report = run_battery(a, b, hint=hint)
    finally:
        a.close()
        b.close()
    values = {k: round(v, 4) for k, v in p_values(report).items()}
    return {"a": pair.a, "b": pair.b, "hint": hint, "log10_p": values, "seconds": round(time.perf_counter() - start, 3)}


# ---- driver ------------------------------------------------------------------------------------


class Runner:
    """A pool of ``workers`` processes, and the evidence of folder models captured once per run."""

    def __init__(self, workers: int, live: bool, tmp: Path) -> None:
        self.pool = get_context("spawn").Pool(workers, initializer=_init_worker)
        self.live, self.tmp = live, tmp
        self.evidence: dict[str, str] = {}  # label -> evidence file (or folder when live)
        self.captured: dict[str, str] = {}  # label -> evidence file (block signatures beside it)

    def close(self) -> None:
        self.pool.close()
        self.pool.join()

    def synthetic(self, pairs: list[PairSpec]) -> list[dict]:
        rows = list(self.pool.imap(run_synthetic, [(p, self.live) for p in pairs], chunksize=1))
        return sorted(rows, key=lambda r: (r["group"], r["index"]))

    def folder_pairs(self, pairs: list[FolderPair], folders: dict[str, Path]) -> list[dict]:
        labels = sorted({x for p in pairs for x in (p.a, p.b)} - set(self.evidence))
        jobs = [(m, str(folders[m]), str(self.tmp / f"{k}-{len(self.evidence)}.npz")) for k, m in enumerate(labels)]
        captured = dict(self.pool.imap_unordered(capture_folder, jobs))
        self.captured.update(captured)
        self.evidence.update({m: str(folders[m]) for m in labels} if self.live else captured)
        jobs = [
            (p, self.evidence[p.a], self.evidence[p.b], self.live, _hint(self.captured[p.a], self.captured[p.b]))
            for p in pairs
        ]
        return list(self.pool.imap(run_folder_pair, jobs, chunksize=2))


def _group(rows: list[dict], *, independent: bool, variant: bool = False, note: str = "") -> dict:
    group_stats = calibration_stats([r["log10_p"] for r in rows])
    out = {"pairs": len(rows), "independent_samples": independent, "stats": group_stats}
    out["bars"] = bars(group_stats, independent=independent, variant=variant)
    if note:
        out["note"] = note
    return out


# batches of one architecture trained apart (own seeds, own cut of the corpus), pooled: every pair
# within each batch plus every pair across them (clustered, as each batch's own group)
POOLED_TRAINED = {
    "trained gpt2, both batches (all pairs, clustered)": ("gpt2", "gpt2-b"),
    "trained gpt2, three batches (all pairs, clustered)": ("gpt2", "gpt2-b", "gpt2-c"),
}


def _pooled_trained(
    runner: Runner, name: str, batches: list[tuple[dict[str, Path], list[dict]]], done: dict[tuple[str, str], dict]
) -> tuple[dict, list[dict]]:
    """The group over every pair of the batches' models (within-batch rows reused, cross-batch pairs
    run here unless ``done`` - rows of an earlier pooled group, by (a, b) - has them) and the
    cross-batch rows."""
    folders = {label: path for batch, _ in batches for label, path in batch.items()}
    cross_pairs = [
        FolderPair(name, a, b)
        for i, (first, _) in enumerate(batches)
        for second, _ in batches[i + 1 :]
        for a in sorted(first)
        for b in sorted(second)
    ]
    todo = [p for p in cross_pairs if (p.a, p.b) not in done]
    done.update({(r["a"], r["b"]): r for r in runner.folder_pairs(todo, folders)})
    cross = [done[(p.a, p.b)] for p in cross_pairs]
    rows = [r for _, within in batches for r in within] + cross
    note = f"{len(folders)} models in {len(batches)} batches; {len(cross)} cross-batch pairs"
    return {**_group(rows, independent=False, note=note), "raw": compact_rows(rows)}, cross


def _thin(pairs: list, count: int | None) -> list:
    """``count`` pairs spread over the list (all when None)."""
    if count is None or len(pairs) <= count:
        return pairs
    return [pairs[i] for i in np.linspace(0, len(pairs) - 1, count).round().astype(int)]


def run(
    pairs: int,
    workers: int,
    live: bool,
    quick: bool,
    only: list[str] | None,
    *,
    start: int = 0,
    pool: dict | None = None,
) -> dict:
    """Every wanted group (``only``: names); synthetic groups draw pairs ``[start, start + pairs)``
    and, with ``pool`` (an earlier result), are pooled with that result's rows of the same group."""
    from bench.calibration_trained import ARCHS, MODELS_PER_ARCH, build_trained, training_summary

    wanted = (lambda name: name in only) if only else (lambda name: True)
    trained_count = QUICK["trained"] if quick else MODELS_PER_ARCH
    zoo_limit = QUICK["zoo_pairs"] if quick else None
    result: dict = {"mode": "live" if live else "stored evidence", "quick": quick, "groups": {}, "timing": {}}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="calibration-evidence-") as tmp:
        runner = Runner(workers, live, Path(tmp))
        try:
            variants = tuple(v for v in SYNTHETIC_GROUPS if wanted(v.name))
            for variant in variants:
                t0 = time.perf_counter()
                rows = runner.synthetic(synthetic_pairs(pairs, (variant,), start))
                earlier = parse_compact_rows(pool["groups"][variant.name]["raw"]) if pool else []
                fresh_rows = rows
                rows = earlier + rows
                result["groups"][variant.name] = {
                    **_group(rows, independent=True, variant=True),
                    "description": variant.description,
                    "shared_probes_min": min(r["shared_probes"] for r in rows),
                    "init_schemes": sorted({r["scheme"] for r in rows}),
                    "pair_indices": [start, start + pairs],
                    **({"pooled": {"earlier_pairs": len(earlier), "fresh_pairs": len(fresh_rows)}} if pool else {}),
                    "raw": compact_rows(rows),
                }
                result["timing"][variant.name] = _timing(fresh_rows, time.perf_counter() - t0)
            trained: dict[str, tuple[dict[str, Path], list[dict]]] = {}
            for arch in ARCHS:
                name = f"trained {arch}"
                if not wanted(name):
                    continue
                t0 = time.perf_counter()
                built = build_trained(arch, trained_count, workers)
                folders = {f"{arch}/{f.name}": f for f in built}
                labels = sorted(folders)
                rows = runner.folder_pairs(all_pairs(name, labels), folders)
                trained[arch] = (folders, rows)
                matched = {(p.a, p.b) for p in disjoint_pairs(name, labels)}
                result["groups"][f"{name} (all pairs, clustered)"] = {
                    **_group(rows, independent=False, note=f"each model in {len(labels) - 1} pairs"),
                    "training": training_summary(built),
                    "raw": compact_rows(rows),
                }
                result["groups"][f"{name} (matching, independent)"] = _group(
                    [r for r in rows if (r["a"], r["b"]) in matched], independent=True, note="disjoint pairs only"
                )
                result["timing"][name] = _timing(rows, time.perf_counter() - t0)
            cross_done: dict[tuple[str, str], dict] = {}
            for name, batches in POOLED_TRAINED.items():
                if all(b in trained for b in batches):
                    t0 = time.perf_counter()
                    found = _pooled_trained(runner, name, [trained[b] for b in batches], cross_done)
                    result["groups"][name], cross = found
                    result["timing"][name] = _timing(cross, time.perf_counter() - t0)
            power_rows: list[dict] = []
            for prefix, zoo_name, size in (("A", "a", "full"), ("B", "b", "b-full")):
                name = f"zoo {prefix} roots"
                if not (wanted(name) or wanted("power")):
                    continue
                t0 = time.perf_counter()
                zoo = ZOOS / size
                result.setdefault("zoos", {})[prefix] = zoo_build(zoo, zoo_name)
                cross, same, neither = zoo_pairs(zoo, prefix)
                folders = {
                    f"{prefix}:{m}": zoo / m for m in {x.split(":", 1)[1] for p in cross + same for x in (p.a, p.b)}
                }
                if wanted(name):
                    rows = runner.folder_pairs(_thin(cross, zoo_limit), folders)
                    result["groups"][name] = {
                        **_group(
                            rows,
                            independent=False,
                            note=f"pairs with no common root ancestor; a family's members move together; {neither} "
                            "cross-family pairs that share a root (merges, passthrough) left out",
                        ),
                        "raw": compact_rows(rows),
                    }
                if wanted("power"):
                    power_rows += runner.folder_pairs(_thin(same, zoo_limit), folders)
                result["timing"][name] = round(time.perf_counter() - t0, 1)
            if power_rows:
                result["power"] = power(power_rows)
        finally:
            runner.close()
    result["bars"] = summary(result)
    result["seconds"] = round(time.perf_counter() - started, 1)
    result["environment"] = environment()
    return result


def summary(result: dict) -> dict:
    """Whether the issue's bars hold: over the variant groups, the independent groups and power."""
    variants = {n: g["bars"] for n, g in result["groups"].items() if "pairs_ok" in g["bars"]}
    independent = {n: g["bars"] for n, g in result["groups"].items() if g["independent_samples"]}
    out = {
        "variant_groups_combined_fpr_ok": all(
            b["combined_fpr_0.01_ok"] and b["combined_fpr_0.001_ok"] for b in variants.values()
        )
        if variants
        else None,
        "variant_groups_200_pairs": all(b["pairs_ok"] for b in variants.values()) if variants else None,
        "ks_exact_nulls_not_rejected": all(b["ks_exact_nulls_ok"] for b in independent.values()),
        "failing": sorted(n for n, g in result["groups"].items() if not all(g["bars"].values())),
    }
    if "power" in result:
        out["power_all_below_minus_12"] = result["power"]["all_below_minus_12"]
        out["power_non_finite"] = result["power"]["non_finite"]
    return out


def zoo_build(zoo: Path, name: str) -> dict:
    """The zoo's build as cached: built when absent, else used as it is (its recipe hash is
    recorded, and whether it matches the current zoo code - a full rebuild takes hours)."""
    from pedigree.zoo.build import ZOOS as SPECS
    from pedigree.zoo.build import build_zoo, recipe_hash
    from pedigree.zoo.corpus import build_corpus

    if not (zoo / "truth.json").exists():
        build_zoo(zoo, "full", zoo=name)  # type: ignore[arg-type]
    spec = SPECS[name]
    current = recipe_hash(spec, "full", build_corpus(spec.sizes["full"].chars_per_domain, salt=spec.corpus_salt).sha256)
    built = json.loads((zoo / "zoo.json").read_text()).get("recipe_hash") if (zoo / "zoo.json").exists() else None
    return {"folder": str(zoo.relative_to(ZOOS.parent.parent)), "recipe_hash": built, "current_code": built == current}


def _timing(rows: list[dict], wall: float) -> dict:
    worker = sum(r["seconds"] for r in rows)
    return {
        "pairs": len(rows),
        "wall_seconds": round(wall, 1),
        "worker_seconds_per_pair": round(worker / max(1, len(rows)), 3),
        "wall_seconds_per_pair": round(wall / max(1, len(rows)), 3),
    }


def power(rows: list[dict]) -> dict:
    """Every same-family pair: count, the weakest combined log10 p, all below the bar, non-finite."""
    combined = [r["log10_p"]["combined"] for r in rows]
    finite = [(v, r) for v, r in zip(combined, rows) if math.isfinite(v)]
    worst = max(finite, key=lambda x: x[0]) if finite else (None, None)
    return {
        "pairs": len(rows),
        "max_combined_log10_p": None if worst[0] is None else round(worst[0], 3),
        "weakest_pair": None if worst[1] is None else f"{worst[1]['a']} / {worst[1]['b']}",
        "all_below_minus_12": all(math.isfinite(v) and v < BARS["power_log10_p"] for v in combined),
        "non_finite": sum(not math.isfinite(v) for r in rows for v in r["log10_p"].values()),
        "raw": compact_rows(rows),
    }


def group_names() -> list[str]:
    """What ``--group`` accepts: every synthetic variant, each trained architecture, the zoo groups and
    ``power``."""
    from bench.calibration_trained import ARCHS

    return (
        [v.name for v in SYNTHETIC_GROUPS] + [f"trained {a}" for a in ARCHS] + ["zoo A roots", "zoo B roots", "power"]
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=200, help="independent pairs per synthetic group")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--live", action="store_true", help="run the battery on the checkpoints, not stored evidence")
    parser.add_argument("--quick", action="store_true", help="a few pairs per group; nothing published")
    parser.add_argument("--group", action="append", help="only these groups (repeatable; 'power' for power)")
    parser.add_argument("--no-report", action="store_true", help="write the JSON, leave BENCHMARKS.md")
    parser.add_argument("--json", type=Path, help="with --quick or --group: also write the JSON here")
    parser.add_argument("--start", type=int, default=0, help="first pair index of the synthetic groups (fresh pairs)")
    parser.add_argument("--pool", type=Path, help="an earlier result JSON: pool its rows of the same synthetic groups")
    args = parser.parse_args(argv)
    pairs = QUICK["pairs"] if args.quick else args.pairs
    unknown = [g for g in args.group or [] if g not in group_names()]
    if unknown:
        parser.error(f"unknown --group {unknown[0]!r} (one of: {', '.join(group_names())})")
    if args.pool and not args.group:
        parser.error("--pool needs --group (the groups of the earlier run to extend)")
    try:
        pool = json.loads(args.pool.read_text()) if args.pool else None
    except (OSError, ValueError) as error:
        parser.error(f"--pool {args.pool}: {error}")
    if pool is not None and not isinstance(pool.get("groups"), dict):
        parser.error(f"--pool {args.pool}: not a bench.calibration result (no groups)")
    if pool:
        missing = [g for g in args.group if g in {v.name for v in SYNTHETIC_GROUPS} and g not in pool["groups"]]
        if missing:
            parser.error(f"{args.pool} has no group {missing[0]!r}")
    result = run(pairs, args.workers, args.live, args.quick, args.group, start=args.start, pool=pool)
    command = "python -m bench.calibration" + (f" --pairs {args.pairs}" if args.pairs != 200 else "")
    command += "".join(f' --group "{g}"' for g in args.group or [])
    command += f" --start {args.start}" * bool(args.start) + f" --pool {args.pool}" * bool(args.pool)
    command += " --live" * args.live
    if args.quick or args.group:
        if args.json:
            args.json.write_text(json.dumps(result, indent=2, default=str) + "\n")
        print(markdown(result, command + (" --quick" if args.quick else "")))
        return
    publish("calibration", result, markdown(result, command), report=not args.no_report)


if __name__ == "__main__":
    main()
