"""Embedding-free block signatures and the ``block_units`` test on the small zoo plus a frankenmerge.

    python -m bench.block_signatures [--synthetic 40]

The frankenmerge (:func:`make_frankenmerge`) takes blocks 0-1 of llama-lab/tiny-llama-s1 and
blocks 2-3, the embedding, final norm, head and tokenizer of llama-lab/tiny-llama-s2 (two
independently trained roots of one shape).  It is related to both roots and to every model of
both families (cousins through its blocks), and to nothing else.

1. **Blocks**: signature cosine of a block and its counterpart in a related model (same depth,
   same index; the frankenmerge's blocks against their source family's) vs every pair of blocks
   of unrelated models: ROC AUC, TPR at 1 % FPR, the distribution of both, and for comparison
   the same for standardised log singular-value spectra (Σ_h W_q,hᵀ W_k,h, W_down W_up and the
   read rows) - the invariant the signatures replace.
2. **Models**: relatedness = the largest block-signature cosine of the pair (a shared block), vs
   the token-space fingerprint score (``indexer.scoring``), ROC AUC over every pair with the
   frankenmerge pairs included, and each frankenmerge pair's two scores.
3. **Test**: ``block_units`` (embedding-free φ_BLOCK) log10 p on every pair: related pairs
   below -12, independent pairs' calibration (KS against U(0,1), FPR) - the zoo's cross-family
   pairs, the same model's different blocks (independently initialised blocks trained together),
   and ``--synthetic`` pairs of fresh random initialisations - and Benjamini-Hochberg at 1 %.
Results: bench/results/block-signatures.json and the BENCHMARKS.md section.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from itertools import combinations
from pathlib import Path

import numpy as np
import torch
from scipy import stats

from bench.metrics import roc_auc, tpr_at_fpr
from bench.report import environment, publish
from bench.zoo_cache import small_zoo_path
from pedigree.indexer.adapters import MatrixLoader, roles_for
from pedigree.indexer.block_signatures import (
    PROPOSAL_BAR,
    SIGNATURE_BAR,
    block_signature_alignment,
    block_signatures,
    read_block_rows,
)
from pedigree.indexer.independence.inputs import ModelTensors
from pedigree.indexer.independence.logp import log10_benjamini_hochberg
from pedigree.indexer.independence.statistics import block_units_stat
from pedigree.indexer.independence.suite import block_units_test
from pedigree.indexer.local_checkpoint import open_checkpoint
from pedigree.indexer.pipeline import fingerprint_source
from pedigree.indexer.scoring import align_layers
from pedigree.indexer.sources import StateDictSource
from pedigree.indexer.versions import block_signature_version
from pedigree.storage.db import ModelRecord
from pedigree.zoo.models import init_state_dict, load_model, save_checkpoint

S1, S2 = "llama-lab/tiny-llama-s1", "llama-lab/tiny-llama-s2"
FRANKEN = "franken-lab/tiny-llama-passthrough"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")


def make_frankenmerge(zoo: Path, out: Path) -> Path:
    """A passthrough frankenmerge under ``out/ORG/NAME``: blocks 0-1 from s1, blocks 2-3 and
    everything else (embedding, norms, head, tokenizer) from s2."""
    first, second = load_model(zoo / S1), load_model(zoo / S2)
    state = dict(second.state_dict)
    state.update({n: t for n, t in first.state_dict.items() if n.startswith(("model.layers.0.", "model.layers.1."))})
    folder = out / FRANKEN
    save_checkpoint(folder, second.config, state)
    for name in TOKENIZER_FILES:
        if (zoo / S2 / name).exists():
            shutil.copy(zoo / S2 / name, folder / name)
    return folder


def signatures(folder: Path) -> np.ndarray:
    with open_checkpoint(folder) as source:
        return block_signatures(MatrixLoader(source), roles_for(source.read_json("config.json"), source.tensors()))


def spectra(folder: Path) -> np.ndarray:
    """[blocks, 96]: standardised log singular values (top 32) of Σ_h Q_hᵀ K_h, W_down W_up and the read rows."""
    out = []
    with open_checkpoint(folder) as source:
        roles = roles_for(source.read_json("config.json"), source.tensors())
        loader = MatrixLoader(source)
        for layer in roles.layers:
            rows = read_block_rows(loader, roles, layer, units=None, down=True)
            assert rows.down_t is not None
            up = rows.up if rows.up is not None else rows.read
            parts = []
            for matrix in (rows.q.t() @ rows.k, rows.down_t.t() @ up, rows.read):
                s = torch.log(torch.linalg.svdvals(matrix)[:32].clamp_min(1e-30)).numpy()
                parts.append((s - s.mean()) / (s.std() + 1e-30))
            vector = np.concatenate(parts)
            out.append(vector / np.linalg.norm(vector))
    return np.stack(out)


def related_blocks(a: str, b: str, truth: dict, depth: dict[str, int]) -> list[tuple[int, int]]:
    """Block pairs (i of a, j of b) that are the same block by construction."""
    fam = {m: f["family"] for m, f in truth.items()}
    if FRANKEN in (a, b):
        other = b if a == FRANKEN else a
        shared = (0, 1) if fam[other] == S1 else (2, 3) if fam[other] == S2 else ()
        if depth[other] != 4:
            return []
        return [(i, i) for i in shared]
    if fam[a] != fam[b] or depth[a] != depth[b]:
        return []
    reinit = {truth[m]["notes"].get("reinitialised_mlp_layer") for m in (a, b)} - {None}
    return [(i, i) for i in range(depth[a]) if i not in reinit]


def related_models(a: str, b: str, truth: dict) -> bool:
    fam = {m: f["family"] for m, f in truth.items()}
    if FRANKEN in (a, b):
        return fam[b if a == FRANKEN else a] in (S1, S2)
    return fam[a] == fam[b]


def summary(values: list[float]) -> dict:
    v = np.asarray(values, float)
    return {
        "n": int(len(v)),
        "mean": round(float(v.mean()), 4),
        "sd": round(float(v.std()), 4),
        "p5": round(float(np.percentile(v, 5)), 4),
        "p99.9": round(float(np.percentile(v, 99.9)), 4),
        "min": round(float(v.min()), 4),
        "max": round(float(v.max()), 4),
    }


def block_level(vectors: dict[str, np.ndarray], truth: dict, depth: dict[str, int]) -> dict:
    positives, negatives = [], []
    for a, b in combinations(sorted(vectors), 2):
        cosines = vectors[a] @ vectors[b].T
        if related_models(a, b, truth):
            positives += [float(cosines[i, j]) for i, j in related_blocks(a, b, truth, depth)]
        elif vectors[a].shape[1] == vectors[b].shape[1]:
            negatives += cosines.ravel().tolist()
    tpr, threshold = tpr_at_fpr(positives, negatives, 0.01)
    return {
        "auc": round(roc_auc(positives, negatives), 4),
        "tpr_at_1pct_fpr": round(tpr, 4),
        "threshold_at_1pct_fpr": round(threshold, 4),
        "related": summary(positives),
        "unrelated": summary(negatives),
        "related_above_signature_bar": round(float(np.mean(np.asarray(positives) > SIGNATURE_BAR)), 4),
        "related_above_proposal_bar": round(float(np.mean(np.asarray(positives) > PROPOSAL_BAR)), 4),
        "unrelated_above_signature_bar": int(np.sum(np.asarray(negatives) > SIGNATURE_BAR)),
        "unrelated_above_proposal_bar": round(float(np.mean(np.asarray(negatives) > PROPOSAL_BAR)), 4),
    }


def fingerprint_views(folders: dict[str, Path]) -> dict[str, np.ndarray]:
    out = {}
    for model, folder in folders.items():
        with open_checkpoint(folder) as source:
            out[model] = fingerprint_source(source, ModelRecord(id=model, status="indexed")).layers.numpy()
    return out


def synthetic_null(folders: dict[str, Path], count: int) -> list[float]:
    """block_units log10 p of fresh random initialisations (independent by construction)."""
    out: list[float] = []
    shapes = ["llama-lab/tiny-llama-s1", "gpt-lab/tiny-gpt2", "neox-lab/tiny-neox", "bert-lab/tiny-bert"]
    for k in range(count):
        model = shapes[k % len(shapes)]
        config = json.loads((folders[model] / "config.json").read_text())
        texts = {"config.json": json.dumps(config)}
        pair = [
            ModelTensors(StateDictSource(init_state_dict(config, 10_000 + 2 * k + s), texts), f"seed{s}")
            for s in (0, 1)
        ]
        outcome, _ = block_units_test(pair[0], pair[1])
        assert outcome is not None
        out.append(outcome.log10_p)
    return out


def calibration(log10_ps: list[float]) -> dict:
    ps = np.power(10.0, log10_ps)
    ks = stats.kstest(ps, "uniform")
    return {
        "n": int(len(ps)),
        "ks_statistic": round(float(ks.statistic), 4),
        "ks_p": float(f"{ks.pvalue:.3g}"),
        "fpr_0.01": round(float(np.mean(ps < 0.01)), 4),
        "fpr_0.001": round(float(np.mean(ps < 0.001)), 4),
        "min_log10_p": round(float(np.min(log10_ps)), 3),
        # the empirical CDF below U(0,1)'s: p-values larger than uniform (conservative)
        "direction": "conservative" if int(getattr(ks, "statistic_sign", 1)) < 0 else "liberal",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--synthetic", type=int, default=40, help="random-initialisation pairs for the null")
    args = parser.parse_args()
    started = time.perf_counter()
    zoo = small_zoo_path()
    truth = json.loads((zoo / "truth.json").read_text())
    with tempfile.TemporaryDirectory() as scratch:
        folders = {m: zoo / m for m in truth}
        folders[FRANKEN] = make_frankenmerge(zoo, Path(scratch))
        truth = {**truth, FRANKEN: {"family": FRANKEN, "parents": [S1, S2], "relation": "frankenmerge", "notes": {}}}
        t0 = time.perf_counter()
        sigs = {m: signatures(f) for m, f in folders.items()}
        signature_seconds = (time.perf_counter() - t0) / len(folders)
        depth = {m: len(v) for m, v in sigs.items()}
        blocks = {"signature": block_level(sigs, truth, depth)}
        blocks["spectra"] = block_level({m: spectra(f) for m, f in folders.items()}, truth, depth)
        prints = fingerprint_views(folders)
        model_rows = []
        for a, b in combinations(sorted(folders), 2):
            cos = sigs[a] @ sigs[b].T if sigs[a].shape[1] == sigs[b].shape[1] else np.zeros((1, 1))
            model_rows.append(
                {
                    "a": a,
                    "b": b,
                    "related": related_models(a, b, truth),
                    "signature": round(float(cos.max()), 4),
                    "fingerprint": round(align_layers(prints[a], prints[b]).score, 4),
                }
            )
        pos = [r for r in model_rows if r["related"]]
        neg = [r for r in model_rows if not r["related"]]
        models = {
            key: round(roc_auc([r[key] for r in pos], [r[key] for r in neg]), 4) for key in ("signature", "fingerprint")
        }
        franken_rows = [r for r in model_rows if FRANKEN in (r["a"], r["b"]) and r["related"]]
        tensors = {m: ModelTensors(open_checkpoint(f), m) for m, f in folders.items()}
        tests = []
        for row in model_rows:
            outcome, _ = block_units_test(tensors[row["a"]], tensors[row["b"]])
            row["block_units_log10_p"] = None if outcome is None else round(outcome.log10_p, 3)
            if outcome is not None:
                tests.append(row)
        for row in model_rows:
            if FRANKEN in (row["a"], row["b"]):
                other = row["b"] if row["a"] == FRANKEN else row["a"]
                row["alignment"] = [
                    [i, j, round(c, 3)] for i, j, c in block_signature_alignment(sigs[FRANKEN], sigs[other])
                ]
        q_values = log10_benjamini_hochberg([r["block_units_log10_p"] for r in tests])
        for row, q in zip(tests, q_values):
            row["confirmed"] = q < -2
        within = [
            block_units_stat(tensors[m].unit_descriptors(i), tensors[m].unit_descriptors(j), layers=(i, j)).log10_p
            for m in sorted(folders)
            if truth[m]["relation"] in ("root", "frankenmerge")
            for i in range(depth[m])
            for j in range(depth[m])
            if i != j
        ]
        related_tests = [r["block_units_log10_p"] for r in tests if r["related"]]
        independent_tests = [r["block_units_log10_p"] for r in tests if not r["related"]]
        cpt = [r for r in tests if r["related"] and "longrun/tiny-llama-cpt" in (r["a"], r["b"])]
        result = {
            "environment": environment(),
            "version": block_signature_version(),
            "models": len(folders),
            "seconds": round(time.perf_counter() - started, 1),
            "signature_seconds_per_model": round(signature_seconds, 3),
            "blocks": blocks,
            "model_auc": models,
            "model_pairs": {"related": len(pos), "unrelated": len(neg)},
            "frankenmerge_pairs": franken_rows,
            "test": {
                "related_pairs": len(related_tests),
                "related_below_-12": int(sum(p < -12 for p in related_tests)),
                "related_not_below_-12": [
                    (r["a"], r["b"], r["block_units_log10_p"])
                    for r in tests
                    if r["related"] and r["block_units_log10_p"] >= -12
                ],
                "frankenmerge_cousins_max_log10_p": max(r["block_units_log10_p"] for r in franken_rows),
                "frankenmerge_cousins_max_log10_p_but_cpt": max(
                    r["block_units_log10_p"] for r in franken_rows if "longrun/tiny-llama-cpt" not in (r["a"], r["b"])
                ),
                "confirmed_related": int(sum(r["confirmed"] for r in tests if r["related"])),
                "confirmed_unrelated": int(sum(r["confirmed"] for r in tests if not r["related"])),
                "null_zoo_cross_family": calibration(independent_tests),
                "null_within_model_blocks": calibration(within),
                "null_synthetic": calibration(synthetic_null(folders, args.synthetic)) if args.synthetic else None,
                "continued_pretraining_pairs": [(r["a"], r["b"], r["block_units_log10_p"]) for r in cpt],
            },
            "pairs": model_rows,
        }
    publish("block-signatures", result, markdown(result))


def markdown(r: dict) -> str:
    env, sig, spec, t = r["environment"], r["blocks"]["signature"], r["blocks"]["spectra"], r["test"]
    lines = [
        "## Embedding-free block signatures and the block_units test, small zoo + a frankenmerge",
        "",
        f"Command: `{env['command']}`  (commit {env['commit']}, {env['date']}; {r['seconds']} s; "
        f"signature recipe `{r['version']}`, {r['signature_seconds_per_model']} s per model)",
        "",
        f"{r['models']} models: the small zoo and {FRANKEN} (blocks 0-1 of {S1}, blocks 2-3, embedding and head "
        f"of {S2}). Related = same family, or the frankenmerge and any model of either source family.",
        "",
        "| blocks (same block vs blocks of unrelated models) | signature | log-spectra |",
        "|---|---|---|",
        f"| ROC AUC | {sig['auc']} | {spec['auc']} |",
        f"| TPR at 1 % FPR | {sig['tpr_at_1pct_fpr']} | {spec['tpr_at_1pct_fpr']} |",
        f"| same block: cosine mean / 5th pct / min | {sig['related']['mean']} / {sig['related']['p5']} / "
        f"{sig['related']['min']} | {spec['related']['mean']} / {spec['related']['p5']} / {spec['related']['min']} |",
        f"| unrelated: cosine mean ± sd / max | {sig['unrelated']['mean']} ± {sig['unrelated']['sd']} / "
        f"{sig['unrelated']['max']} | {spec['unrelated']['mean']} ± {spec['unrelated']['sd']} / "
        f"{spec['unrelated']['max']} |",
        f"| same block above the map bar {SIGNATURE_BAR} / the proposal bar {PROPOSAL_BAR} | "
        f"{sig['related_above_signature_bar']} / {sig['related_above_proposal_bar']} | |",
        f"| unrelated above {SIGNATURE_BAR} (count) / above {PROPOSAL_BAR} (fraction) | "
        f"{sig['unrelated_above_signature_bar']} / {sig['unrelated_above_proposal_bar']} | |",
        "",
        f"Model relatedness ROC AUC ({r['model_pairs']['related']} related pairs, "
        f"{r['model_pairs']['unrelated']} unrelated): largest block-signature cosine "
        f"**{r['model_auc']['signature']}**, token-space fingerprint score {r['model_auc']['fingerprint']}.",
        "",
        "| frankenmerge pair | signature (max block cosine) | fingerprint score | block map | block_units log10 p |",
        "|---|---|---|---|---|",
    ]
    for row in r["frankenmerge_pairs"]:
        other = row["b"] if row["a"] == FRANKEN else row["a"]
        lines.append(
            f"| {other} | {row['signature']} | {row['fingerprint']} | {row.get('alignment')} | "
            f"{row['block_units_log10_p']} |"
        )
    nulls = [
        ("zoo cross-family pairs", t["null_zoo_cross_family"]),
        ("a model's own different blocks", t["null_within_model_blocks"]),
    ]
    if t["null_synthetic"]:
        nulls.append(("fresh random initialisations", t["null_synthetic"]))
    lines += [
        "",
        f"**block_units test.** Related pairs below log10 p = -12: {t['related_below_-12']} of {t['related_pairs']} "
        f"(not: {t['related_not_below_-12']}); frankenmerge relatives: largest log10 p "
        f"{t['frankenmerge_cousins_max_log10_p_but_cpt']} but for the continued pre-training "
        f"({t['frankenmerge_cousins_max_log10_p']}). "
        f"Benjamini-Hochberg at 1 % over all pairs on this test alone: {t['confirmed_related']} related and "
        f"{t['confirmed_unrelated']} unrelated pairs confirmed.",
        "",
        "Null calibration (per pair: the combined block_units p, Bonferroni over cells and Fisher over the "
        "diagonal; per block pair for a model's own blocks):",
        "",
        "| null sample | n | KS statistic | KS p | direction | FPR α=0.01 | FPR α=0.001 | min log10 p |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, c in nulls:
        lines.append(
            f"| {name} | {c['n']} | {c['ks_statistic']} | {c['ks_p']} | {c['direction']} | {c['fpr_0.01']} | "
            f"{c['fpr_0.001']} | {c['min_log10_p']} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
