"""The independence tests on the real-trained zoo: power on every transform, localisation, wiring."""

from __future__ import annotations

import json
import math
from pathlib import Path

import duckdb
import pytest
from typer.testing import CliRunner

from pedigree.cli import app
from pedigree.indexer.independence.inputs import ModelTensors
from pedigree.indexer.independence.suite import run_battery, unit_correspondence
from pedigree.indexer.local_checkpoint import open_checkpoint


@pytest.fixture(scope="module")
def models(small_zoo: Path, truth: dict) -> dict[str, ModelTensors]:
    return {m: ModelTensors(open_checkpoint(small_zoo / m), m) for m in truth}


def all_numbers(value) -> list[float]:
    if isinstance(value, dict):
        return [n for v in value.values() for n in all_numbers(v)]
    if isinstance(value, (list, tuple)):
        return [n for v in value for n in all_numbers(v)]
    return [float(value)] if isinstance(value, (int, float)) and not isinstance(value, bool) else []


def test_every_parent_child_pair_is_detected(models, truth):
    for child, facts in sorted(truth.items()):
        for parent in facts["parents"]:
            report = run_battery(models[parent], models[child])
            assert report.log10_p < -12, (facts["relation"], child, parent, [(t.name, t.log10_p) for t in report.tests])
            assert all(math.isfinite(n) for t in report.tests for n in all_numbers(t.as_json()["detail"]) + [t.log10_p])


def test_independent_roots_are_not_flagged(models, truth):
    roots = sorted(m for m, f in truth.items() if f["relation"] == "root")
    results = {}
    for i, a in enumerate(roots):
        for b in roots[i + 1 :]:
            results[(a, b)] = run_battery(models[a], models[b]).log10_p
    assert all(math.isfinite(v) for v in results.values())
    assert min(results.values()) > -3, sorted(results.items(), key=lambda kv: kv[1])[:3]


def test_layer_dropped_model_maps_to_the_layers_it_kept(models, truth):
    child = next(m for m, f in truth.items() if f["notes"].get("dropped_layers"))
    kept = {int(new): old for new, old in truth[child]["notes"]["kept_layers"].items()}
    report = run_battery(models[truth[child]["parents"][0]], models[child])
    assert {j: i for i, j, _ in report.layer_map} == kept


def test_width_pruned_models_kept_units_are_recovered(models, truth):
    child = next(m for m, f in truth.items() if f["notes"].get("kept_mlp_units"))
    parent = models[truth[child]["parents"][0]]
    for layer, kept in enumerate(truth[child]["notes"]["kept_mlp_units"]):
        found = unit_correspondence(parent, models[child], layer, layer)["matched_a_units"]
        assert len(set(found.tolist()) & set(kept)) / len(kept) >= 0.9, layer


def test_reinitialised_layer_is_reported_not_shared(models, truth):
    child = next(m for m, f in truth.items() if "reinitialised_mlp_layer" in f["notes"])
    fresh = truth[child]["notes"]["reinitialised_mlp_layer"]
    report = run_battery(models[truth[child]["parents"][0]], models[child])
    shared = {i for i, j, _ in report.layer_map if i == j}
    assert shared == set(range(models[child].depth)) - {fresh}


def test_embedding_is_tested_separately(models, truth):
    child = next(m for m, f in truth.items() if f["relation"] == "finetune" and f["architecture"] == "LlamaForCausalLM")
    report = run_battery(models[truth[child]["parents"][0]], models[child])
    assert report.test("embedding_dims").log10_p < -12 and report.test("head_dims").log10_p < -12
    rotated = next(m for m, f in truth.items() if f["relation"] == "rotated")
    report = run_battery(models[truth[rotated]["parents"][0]], models[rotated])
    assert report.test("embedding_dims").log10_p > -6  # constrained: blind to a rotated residual stream
    assert report.test("mlp_match").log10_p < -12  # robust: not


runner = CliRunner()


def run(*args: str) -> dict:
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def tested_home(small_zoo: Path, tmp_path_factory) -> tuple[Path, dict]:
    home = tmp_path_factory.mktemp("tested-home")
    return home, run("ingest", str(small_zoo), "--home", str(home), "--confirm", "4")


def test_ingest_stores_every_test_with_revisions_and_confirms_under_fdr(tested_home, truth):
    home, result = tested_home
    assert result["confirmations"] and not any(c["error"] for c in result["confirmations"])
    conn = duckdb.connect(str(home / "pedigree.duckdb"), read_only=True)
    rows = conn.execute(
        "SELECT a.id, b.id, t.test, t.revision_a = a.revision AND t.revision_b = b.revision, t.log10_p, t.detail "
        "FROM pair_tests t JOIN models a ON a.pk = t.model_a JOIN models b ON b.pk = t.model_b"
    ).fetchall()
    decisions = conn.execute(
        "SELECT a.id, b.id, r.log10_p, r.log10_q, r.confirmed FROM relations r JOIN models a ON a.pk = r.model_a "
        "JOIN models b ON b.pk = r.model_b"
    ).fetchall()
    conn.close()
    assert rows and all(current for _, _, _, current, _, _ in rows)
    assert {"mlp_match", "mlp_up", "embedding_dims"} <= {test for _, _, test, _, _, _ in rows}
    assert all(json.loads(detail)["null"] for *_, detail in rows)
    for a, b, log10_p, log10_q, confirmed in decisions:
        same_family = truth[a]["family"] == truth[b]["family"]
        assert log10_q >= log10_p - 1e-9
        assert confirmed == same_family, (a, b, log10_p, log10_q)


def test_compare_reports_tests_and_per_block_p_values(tested_home, truth):
    home, _ = tested_home
    child = next(m for m, f in truth.items() if f["notes"].get("dropped_layers"))
    parent = truth[child]["parents"][0]
    result = run("compare", parent, child, "--home", str(home))
    assert result["log10_p"] < -12 and {t["name"] for t in result["tests"]} >= {"mlp_match", "mlp_up"}
    assert all(set(t) == {"name", "log10_p", "null", "detail"} for t in result["tests"])
    assert all(len(entry) == 4 and entry[3] is not None and entry[3] < -12 for entry in result["layer_map"])
    assert {j: i for i, j, _ in result["shared_blocks"]} == {
        int(k): v for k, v in truth[child]["notes"]["kept_layers"].items()
    }
    assert result["confirmed"] is True
    reverse = run("compare", child, parent, "--home", str(home))
    assert reverse["log10_p"] == result["log10_p"] and {i: j for i, j, _ in reverse["shared_blocks"]} == {
        j: i for i, j, _ in result["shared_blocks"]
    }
    quick = run("compare", parent, child, "--home", str(home), "--no-tests")
    assert quick["log10_p"] is None and quick["tests"] is None and quick["score"] == result["score"]


def test_matrix_adds_log10_p(tested_home, truth):
    home, _ = tested_home
    ids = sorted(truth)[:3]
    result = run("matrix", *ids, "--home", str(home))
    assert all(math.isfinite(p["log10_p"]) and p["log10_p"] <= 0 for p in result["pairs"])


def test_copied_embedding_under_new_layers_is_reported_as_such(small_zoo: Path, truth: dict, tmp_path: Path):
    """A 'spliced' model: seed 1's embedding and head on top of seed 2's blocks."""
    import shutil

    from safetensors.torch import save_file

    roots = sorted(
        m
        for m, f in truth.items()
        if f["relation"] == "root" and f["architecture"] == "LlamaForCausalLM" and not f["notes"].get("distilled_from")
    )
    donor, body = roots[0], roots[1]
    with open_checkpoint(small_zoo / donor) as d, open_checkpoint(small_zoo / body) as b:
        state = {name: b.read(name) for name in b.tensors()}
        for name in ("model.embed_tokens.weight", "lm_head.weight"):
            state[name] = d.read(name)
    spliced = tmp_path / "lab" / "spliced"
    spliced.mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in state.items()}, spliced / "model.safetensors")
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json"):
        shutil.copy(small_zoo / body / name, spliced / name)
    home = tmp_path / "home"
    vs_donor = run("compare", str(small_zoo / donor), str(spliced), "--home", str(home))
    vs_body = run("compare", str(small_zoo / body), str(spliced), "--home", str(home))
    assert vs_donor["shared"] == {"blocks": [], "embedding": True, "head": True}, vs_donor["shared"]
    assert vs_donor["log10_p"] < -12  # the models are related - through the embedding only
    # the blocks moved under a foreign embedding: the token-space fingerprint no longer sees them
    # (its probes are that embedding's rows), the weight tests still do
    depth = vs_body["layers"][0]
    assert vs_body["shared"] == {"blocks": [[i, i] for i in range(depth)], "embedding": False, "head": False}, vs_body[
        "shared"
    ]


def test_activation_variant_on_glu_models(small_zoo: Path, truth: dict, tmp_path: Path):
    pytest.importorskip("transformers")
    rotated = next(m for m, f in truth.items() if f["relation"] == "rotated")
    parent = truth[rotated]["parents"][0]
    home = str(tmp_path / "home")
    result = run("compare", str(small_zoo / parent), str(small_zoo / rotated), "--home", home, "--activations")
    activations = next(t for t in result["tests"] if t["name"] == "mlp_activations")
    assert activations["log10_p"] < -12 and result["log10_p"] < -12
    seeds = sorted(
        m
        for m, f in truth.items()
        if f["relation"] == "root" and f["architecture"] == "LlamaForCausalLM" and not f["notes"].get("distilled_from")
    )
    independent = run("compare", str(small_zoo / seeds[0]), str(small_zoo / seeds[1]), "--home", home, "--activations")
    assert next(t for t in independent["tests"] if t["name"] == "mlp_activations")["log10_p"] > -3
    gpt2 = next(m for m, f in truth.items() if f["relation"] == "root" and f["architecture"] == "GPT2LMHeadModel")
    refused = runner.invoke(
        app, ["compare", str(small_zoo / gpt2), str(small_zoo / parent), "--home", home, "--activations", "--json"]
    )
    assert refused.exit_code == 1 and "GLU" in json.loads(refused.stdout)["error"]


def test_a_deep_pair_without_a_block_hint_runs_on_a_subsampled_plan(models, truth):
    """Pairs deeper than the localized matrix allows (a 1B model: 22 x 22 cells) test a few evenly
    spaced diagonal blocks; with no block hint (an unrelated candidate) ``block_units`` combined a
    diagonal it had not computed (KeyError (1, 1) on the 1B refresh benchmark)."""
    from pedigree.indexer.independence.suite import Budget

    budget = Budget(localized_max_cells=1, robust_layers=2)
    child = next(m for m, f in sorted(truth.items()) if f["relation"] == "finetune")
    parent = truth[child]["parents"][0]
    unrelated = next(
        m
        for m, f in sorted(truth.items())
        if f["relation"] == "root"
        and m != parent
        and (models[m].glu, models[m].depth) == (models[parent].glu, models[parent].depth)
    )
    assert models[parent].depth > budget.robust_layers
    related = run_battery(models[parent], models[child], budget=budget)
    independent = run_battery(models[parent], models[unrelated], budget=budget)
    assert related.log10_p < -12 and related.localized is None
    assert math.isfinite(independent.log10_p) and independent.test("block_units") is not None
