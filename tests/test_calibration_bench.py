"""The calibration benchmark (bench.calibration, issue 18): its pair builders make what they claim,
no model is in two pairs of a group, the statistics are exact on known inputs, and the battery from
stored evidence equals the live battery."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from bench import calibration_set as cs
from bench.calibration import bars, calibration_stats, run_synthetic
from bench.calibration_report import compact_rows, parse_compact_rows
from pedigree.indexer.unit_selection import CANONICAL_FROM, WHOLE_MLP, WIDE_MLP
from pedigree.zoo.architectures import spec_from_config

PAIRS = 8  # per group, for the shape checks


@pytest.fixture(scope="module")
def groups(small_tokenizers) -> dict[str, list[cs.PairSpec]]:
    out: dict[str, list[cs.PairSpec]] = {}
    for pair in cs.synthetic_pairs(PAIRS):
        out.setdefault(pair.group, []).append(pair)
    return out


def specs(pair: cs.PairSpec):
    return spec_from_config(pair.a.config), spec_from_config(pair.b.config)


def test_variant_groups_make_what_they_claim(groups):
    assert len(groups) == len(cs.SYNTHETIC_GROUPS) == 14
    for name, pairs in groups.items():
        assert len(pairs) == PAIRS
        for pair in pairs:
            a, b = specs(pair)
            assert 64 <= a.hidden <= 128 and 2 <= a.layers <= 6 and 2 <= b.layers <= 6
            if name == "llama MHA untied":
                assert a.model_type == "llama" and a.kv_heads == a.heads and not a.tied
            elif name == "llama GQA":
                assert a.model_type == "llama" and a.kv_heads == a.heads // 2 > 0 and not a.tied
            elif name == "llama MQA":
                assert a.model_type == "llama" and a.kv_heads == 1 < a.heads and not a.tied
            elif name == "llama tied":
                assert a.model_type == "llama" and a.tied and b.tied
            elif name == "qwen2 GQA":
                assert a.model_type == "qwen2" and a.qkv_bias and a.kv_heads == a.heads // 2
            elif name == "gpt2":
                assert (
                    a.model_type == "gpt2" and not a.glu and a.tied and a.residual == "sequential" and a.norm == "layer"
                )
            elif name == "gpt_neox":
                assert a.residual == "parallel" and not a.tied
            elif name == "bert":
                assert a.residual == "post"
            elif name == "wide MLP":  # canonical-unit samples (indexer.unit_selection), gated or not
                assert a.intermediate in (1096, 1280, 1536) and a.intermediate > CANONICAL_FROM
            elif name == "mid MLP":  # stored and tested whole since capture ev4 (indexer.unit_selection)
                assert WIDE_MLP < a.intermediate <= WHOLE_MLP
            if not name.startswith("cross-"):
                assert pair.a.config == pair.b.config  # one shape, two initialisations
    assert {a.glu for p in groups["llama GQA"] + groups["gpt2"] for a in specs(p)} == {True, False}
    assert {a.glu for p in groups["wide MLP"] for a in specs(p)} == {True, False}
    assert {a.glu for p in groups["mid MLP"] for a in specs(p)} == {True, False}
    assert all(specs(p)[0].layers != specs(p)[1].layers for p in groups["cross-depth"])
    for pair in groups["cross-width"]:
        a, b = specs(pair)
        assert a.hidden == b.hidden and a.intermediate != b.intermediate
    assert all(specs(p)[0].hidden != specs(p)[1].hidden for p in groups["cross-hidden"])
    # depths and widths vary within a group; both init schemes and both dtypes appear
    assert len({specs(p)[0].layers for p in groups["llama GQA"]}) > 1
    assert len({specs(p)[0].hidden for p in groups["llama GQA"]}) > 1
    assert {p.scheme for p in groups["gpt2"]} == {"normal", "fan_in", "mixed"}
    assert {p.a.config["torch_dtype"] for pairs in groups.values() for p in pairs} == {"float32", "bfloat16"}


def test_cross_tokenizer_pairs_overlap_partially(groups):
    from bench.calibration import synthetic_live
    from pedigree.indexer.independence.inputs import shared_probes

    for pair in groups["cross-tokenizer"][:3]:
        assert pair.a.tokenizer != pair.b.tokenizer
        assert pair.a.config["vocab_size"] >= cs.tokenizer_size(pair.a.tokenizer)
        a, b = synthetic_live(pair.a), synthetic_live(pair.b)
        shared = len(shared_probes(a, b)[0])
        assert 16 <= shared < min(len(a.probes.token_ids), len(b.probes.token_ids))


def test_init_schemes_have_their_scales(groups):
    pair = groups["llama GQA"][0]
    config = {**pair.a.config, "torch_dtype": "float32"}
    normal, fan_in = cs.init_state(config, 1, "normal"), cs.init_state(config, 1, "fan_in")
    embed = "model.embed_tokens.weight"
    assert normal[embed].std().item() == pytest.approx(0.02, rel=0.05)
    assert fan_in[embed].std().item() == pytest.approx(1.0, rel=0.05)
    up = "model.layers.0.mlp.up_proj.weight"
    bound = 1 / math.sqrt(fan_in[up].shape[1])
    assert fan_in[up].abs().max().item() <= bound and fan_in[up].abs().max().item() > 0.9 * bound
    bf16 = next(p for p in groups["gpt2"] if p.a.config["torch_dtype"] == "bfloat16")
    assert all(t.dtype == torch.bfloat16 for t in bf16.a.state_dict().values())


def test_no_model_in_two_pairs(groups):
    for pairs in groups.values():
        models = [(m.seed, m.init, m.label) for p in pairs for m in (p.a, p.b)]
        assert len({seed for seed, _, _ in models}) == len(models)
        assert len({label for _, _, label in models}) == len(models)
    labels = [f"m{i}" for i in range(21)]
    clustered, matching = cs.all_pairs("t", labels), cs.disjoint_pairs("t", labels)
    assert len(clustered) == 210 and len(matching) == 10
    used = [m for p in matching for m in (p.a, p.b)]
    assert len(set(used)) == len(used) == 20


def test_a_later_start_draws_fresh_pairs_that_extend_a_run(small_tokenizers):
    variant = next(v for v in cs.SYNTHETIC_GROUPS if v.name == "qwen2 GQA")
    first, later = cs.synthetic_pairs(4, (variant,)), cs.synthetic_pairs(4, (variant,), start=4)
    assert [p.index for p in later] == [4, 5, 6, 7]
    assert cs.synthetic_pairs(8, (variant,)) == first + later  # the same pairs as one longer run
    seeds = [m.seed for p in first + later for m in (p.a, p.b)]
    assert len(set(seeds)) == len(seeds)


def test_compact_rows_parse_back_for_pooling():
    rows = [
        {"a": "m1", "b": "m2", "scheme": "mixed", "shared_probes": 443, "log10_p": {"mlp_up": -0.25, "combined": 0.0}},
        {"a": "m3", "b": "m4", "scheme": "normal", "shared_probes": 390, "log10_p": {"mlp_match": -1.5}},
    ]
    parsed = parse_compact_rows(compact_rows(rows))
    assert parsed == rows
    assert calibration_stats([r["log10_p"] for r in parsed]) == calibration_stats([r["log10_p"] for r in rows])


def test_statistics_known_answers():
    grid = [{"combined": math.log10((i + 0.5) / 100)} for i in range(100)]  # p = 0.005, 0.015, ..., 0.995
    out = calibration_stats(grid)["combined"]
    assert out["n"] == 100 and out["ks_statistic"] == pytest.approx(0.005, abs=1e-4) and out["ks_p"] > 0.99
    assert out["fpr_0.01"] == {"k": 1, "n": 100, "rate": 0.01}
    assert out["fpr_0.001"] == {"k": 0, "n": 100, "rate": 0.0}
    rows = [
        {"mlp_up": -3.5, "combined": -3.5},  # p < 0.001
        {"mlp_up": -2.5, "combined": -2.5},  # 0.001 < p < 0.01
        {"mlp_up": -0.5, "combined": 0.0},
        {"mlp_up": -float("inf"), "combined": -0.1},  # a non-finite value counts as a rejection
        {"combined": float("nan")},
    ]
    stats = calibration_stats(rows)
    assert list(stats) == ["mlp_up", "combined"]
    assert stats["mlp_up"]["fpr_0.01"] == {"k": 3, "n": 4, "rate": 0.75}
    assert stats["mlp_up"]["fpr_0.001"] == {"k": 2, "n": 4, "rate": 0.5}
    assert stats["mlp_up"]["non_finite"] == 1 and stats["mlp_up"]["min_log10_p"] == -3.5
    assert stats["combined"]["fpr_0.01"]["k"] == 3 and stats["combined"]["non_finite"] == 1
    # 201 pairs, 2 below 0.01 (0.995 %), none below 0.001; one mlp_up p-value of 0.63 (KS p > 0.01)
    ok = bars(calibration_stats(grid * 2 + [{"combined": -0.2, "mlp_up": -0.2}]), independent=True)
    assert ok == {
        "combined_fpr_0.01_ok": True,
        "combined_fpr_0.001_ok": True,
        "pairs_ok": True,
        "ks_exact_nulls_ok": True,
    }
    bad = bars(calibration_stats([{"combined": -2.5, "mlp_up": -5.0}] * 3), independent=True)
    assert bad == {
        "combined_fpr_0.01_ok": False,
        "combined_fpr_0.001_ok": True,
        "pairs_ok": False,
        "ks_exact_nulls_ok": False,
    }


def test_stored_evidence_equals_live_battery(groups):
    for pair in (groups["llama GQA"][1], groups["gpt2"][3], groups["cross-tokenizer"][0]):
        stored, live = run_synthetic((pair, False)), run_synthetic((pair, True))
        assert stored["log10_p"] == live["log10_p"]
        assert set(stored["log10_p"]) >= {"mlp_match", "mlp_up", "combined"}
        assert all(np.isfinite(v) for v in stored["log10_p"].values())


def test_zoo_pairs_split_by_common_root(tmp_path: Path):
    import json

    def entry(family: str, parents: list[str], **extra) -> dict:
        return {"family": family, "parents": parents, "relation": "root" if not parents else "finetune", **extra}

    zoo = tmp_path / "z"
    truth = {
        "a/root": entry("a/root", []),
        "a/ft": entry("a/root", ["a/root"]),
        "b/root": entry("b/root", []),
        "b/sft": entry("b/root", [], latent_parent="b/hidden"),
        "m/passthrough": entry("a/root", ["a/ft", "b/root"]),
    }
    for model in truth:
        (zoo / model).mkdir(parents=True)
        (zoo / model / "config.json").write_text("{}")
    (zoo / "truth.json").write_text(json.dumps(truth))
    (tmp_path / "z-hidden").mkdir()
    (tmp_path / "z-hidden" / "truth.json").write_text(json.dumps({"b/hidden": entry("b/root", ["b/root"])}))
    assert cs.zoo_roots(zoo)["b/sft"] == {"b/root"}
    independent, same, neither = cs.zoo_pairs(zoo, "Z")
    assert {(p.a, p.b) for p in independent} == {
        ("Z:a/ft", "Z:b/root"),
        ("Z:a/ft", "Z:b/sft"),
        ("Z:a/root", "Z:b/root"),
        ("Z:a/root", "Z:b/sft"),
    }
    assert len(same) == 4  # family a: three models (the passthrough is in it), family b: two
    assert neither == 2  # the passthrough (family a) with b/root and b/sft


def test_the_later_gpt2_batches_are_the_same_recipe_with_their_own_seeds_and_corpus_cuts():
    from bench.calibration_trained import ARCHS, MODELS_PER_ARCH, corpus_slice
    from pedigree.zoo.corpus import build_corpus

    batches = [ARCHS[name] for name in ("gpt2", "gpt2-b", "gpt2-c")]
    assert len({(a.model_type, a.dims, a.tokenizer_root) for a in batches}) == 1
    seeds = {a.name: set(range(a.seed_base, a.seed_base + MODELS_PER_ARCH)) for a in ARCHS.values()}
    data = {a.name: set(range(a.seed_base + 1000, a.seed_base + 1000 + MODELS_PER_ARCH)) for a in ARCHS.values()}
    every = [s for found in (seeds, data) for s in found.values()]
    assert all(x.isdisjoint(y) for i, x in enumerate(every) for y in every[i + 1 :])  # no seed used twice
    assert len({a.corpus_salt for a in batches}) == 3
    chars = 20_000
    cuts = [corpus_slice(build_corpus(chars, salt=a.corpus_salt).domains, 0) for a in batches]
    assert len(set(cuts)) == 3  # another cut of the stdlib text per batch


def test_an_unknown_group_is_a_one_line_usage_error(capsys):
    from bench.calibration import group_names, main

    with pytest.raises(SystemExit) as stopped:
        main(["--group", "trained gpt2-z"])
    assert stopped.value.code == 2
    assert "unknown --group 'trained gpt2-z'" in capsys.readouterr().err
    assert {"trained gpt2", "trained gpt2-b", "cross-width", "power"} <= set(group_names())
