"""MLPs of WIDE_MLP < width <= WHOLE_MLP units are stored and tested whole (capture ev4, issue 13).

Before ev4 such a block kept its first 256 units only, so a unit-permuted copy shared about
256² / width of them (190 of 256 at 344 units, zoo A's Llama width) and the stored-evidence
battery lost most of its power against the test on every unit (the independence benchmark's
weakest same-family pair fell from log10 p -309 at filing to -38).  Now the evidence keeps every
unit of such a block, and the stored battery is the whole-unit test.

Real parts: checkpoints written as safetensors folders with the small zoo's tokenizers, captured
with ``indexer.stored_model.capture`` into real evidence files.
"""

from __future__ import annotations

import pytest

from bench import calibration_set as cs
from pedigree.indexer.block_signatures import MAX_UNITS
from pedigree.indexer.independence.suite import Budget, run_battery
from pedigree.indexer.unit_selection import WHOLE_MLP, WIDE_MLP, contiguous_units
from pedigree.zoo.transforms import apply_steps, plan_function_preserving
from tests.test_canonical_units_ungated import _drift, _with_gains, save_and_capture

WIDTH = 344  # between WIDE_MLP and WHOLE_MLP: zoo A's Llama MLP width
HIDDEN, LAYERS = 128, 2
TYPES = {"llama": "A-llama", "gpt2": "A-gpt2"}  # gated and ungated
KINDS = ["residual_permutation", "mlp_permutation"]


@pytest.fixture(scope="module")
def family(small_tokenizers, tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    """Per model type: a parent, its residual- and unit-permuted drifted child and an unrelated
    model, each as a live reader of its checkpoint and as its stored evidence."""
    root = tmp_path_factory.mktemp("whole-mlp")
    out: dict[str, dict] = {}
    for model_type, tokenizer in TYPES.items():
        config = cs.model_config(model_type, tokenizer, hidden=HIDDEN, layers=LAYERS, heads=4, intermediate=WIDTH)
        parent = _with_gains(cs.init_state(config, 21, "normal"), 3)
        _, child = apply_steps(config, _drift(parent, 5), plan_function_preserving(config, 7, KINDS))
        states = {"parent": parent, "child": child, "other": _with_gains(cs.init_state(config, 77, "normal"), 4)}
        out[model_type] = save_and_capture(root / model_type, config, tokenizer, states)
    return out


@pytest.mark.parametrize("model_type", sorted(TYPES))
def test_a_block_of_up_to_whole_mlp_units_is_stored_whole(family, model_type):
    stored = family[model_type]["parent"]["stored"]
    assert WIDE_MLP < WIDTH <= WHOLE_MLP
    for layer, roles in enumerate(stored.roles.layers):
        assert roles.mlp_size == WIDTH and contiguous_units(roles) is None
        assert stored.manifest["layers"][layer]["kept"] == WIDTH


@pytest.mark.parametrize("model_type", sorted(TYPES))
def test_the_stored_battery_on_a_permuted_child_is_the_whole_unit_test(family, model_type):
    """Stored evidence gives exactly the live battery on every unit, and that is far stronger than
    the battery on the first WIDE_MLP units a permuted copy only partly shares."""
    models = family[model_type]
    stored = run_battery(models["parent"]["stored"], models["child"]["stored"])
    live = run_battery(models["parent"]["live"], models["child"]["live"])
    first_units = run_battery(models["parent"]["live"], models["child"]["live"], budget=Budget(unit_block=WIDE_MLP))
    assert [(t.name, t.log10_p) for t in stored.tests] == [(t.name, t.log10_p) for t in live.tests]
    assert stored.test("mlp_match").detail["unit_block"] == [None]  # no sample: every unit
    assert first_units.test("mlp_match").detail["unit_block"] == [(0, WIDE_MLP)]
    assert stored.log10_p < -12 and first_units.log10_p < -12
    assert stored.test("mlp_match").log10_p < 2 * first_units.test("mlp_match").log10_p, (
        stored.test("mlp_match").log10_p,
        first_units.test("mlp_match").log10_p,
    )


@pytest.mark.parametrize("model_type", sorted(TYPES))
def test_an_unrelated_model_stays_unconfirmed_on_whole_blocks(family, model_type):
    models = family[model_type]
    report = run_battery(models["parent"]["stored"], models["other"]["stored"])
    assert report.log10_p > -2, report.log10_p
    assert all(t.log10_p > -3 for t in report.tests), [(t.name, t.log10_p) for t in report.tests]
    # the embedding-free test describes at most its Gram sample's units: beyond it a unit's forms
    # would depend on its index (whole 344-unit blocks gave log10 p -22.7 on this unrelated pair)
    assert report.test("block_units").detail["unit_block"] == [MAX_UNITS]
