"""Canonical MLP units (issue 13): a wide gated MLP's stored sample includes units chosen by what
they are, so a unit- and residual-permuted, rescaled derivative is still confirmed from the stored
evidence alone (before: two position-based samples of 256 of 5632 units shared ~12 units, and the
refresh benchmark's permuted 1B children scored log10 p -0.65 to 0 with their base).

Real parts: synthetic Llama-shaped bf16 checkpoints written by ``bench.synthetic_llama`` (the
same generator as the 1B/7B benchmarks, at a width whose MLP is "wide": 1408 units), captured with
``indexer.stored_model.capture`` into real evidence files.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from bench.synthetic_llama import ChildOf, LlamaShape, write_llama
from pedigree.indexer.evidence_file import EvidenceFile, write_evidence
from pedigree.indexer.independence.inputs import ModelTensors
from pedigree.indexer.independence.suite import run_battery
from pedigree.indexer.local_checkpoint import open_checkpoint
from pedigree.indexer.stored_model import StoredModel, capture
from pedigree.indexer.unit_selection import CANONICAL_UNITS, residual_dims, select_units

SHAPE = LlamaShape(layers=4, hidden=512, heads=8, mlp=1408, vocab=4000, layers_per_shard=4)
TRANSFORM_SEED = 3
MODELS = {"base": (1, None), "permuted": (1, ChildOf(seed=1, transform_seed=TRANSFORM_SEED)), "other": (2, None)}


def test_the_choice_is_unchanged_by_permuting_rescaling_and_reordering() -> None:
    """select_units and residual_dims commute with the function-preserving transforms exactly."""
    gen = torch.Generator().manual_seed(0)
    hidden, units = 96, 700
    down = torch.randn(hidden, units, generator=gen).double().numpy()
    gain = (1 + 0.1 * torch.randn(hidden, generator=gen)).double().numpy()
    dims = residual_dims(gain)
    chosen = select_units(down[dims])
    assert len(chosen) == CANONICAL_UNITS and len(set(chosen.tolist())) == CANONICAL_UNITS

    residual = torch.randperm(hidden, generator=gen).numpy()  # new dimension k holds old residual[k]
    unit_perm = torch.randperm(units, generator=gen).numpy()  # new unit k is old unit unit_perm[k]
    scale = (0.5 + 1.5 * torch.rand(units, generator=gen).double().numpy()) * np.where(
        torch.rand(units, generator=gen).numpy() < 0.5, -1.0, 1.0
    )
    down2 = down[residual][:, unit_perm] / scale[unit_perm][None, :]
    gain2 = gain[residual]
    dims2 = residual_dims(gain2)
    assert sorted(residual[dims2].tolist()) == sorted(dims.tolist())  # J moves with the residual stream
    shuffled = np.random.default_rng(1).permutation(dims2)  # the order of J does not matter
    chosen2 = select_units(down2[shuffled])
    assert sorted(unit_perm[chosen2].tolist()) == chosen.tolist()


def test_ties_and_zero_columns_are_decided_by_index() -> None:
    down = np.zeros((4, 10))
    down[0, 7] = 1.0
    assert select_units(down, 3).tolist() == [0, 1, 7]  # the peaked unit, then zero columns by index
    assert residual_dims(np.ones(6), 3).tolist() == [0, 1, 2]


@pytest.fixture(scope="session")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("canonical")
    for name, (seed, child) in MODELS.items():
        write_llama(root / name, SHAPE, seed, child)
    return {name: root / name for name in MODELS}


@pytest.fixture(scope="session")
def models(synthetic: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    """Live readers and stored evidence of each model."""
    folder = tmp_path_factory.mktemp("canonical-evidence")
    out: dict[str, dict] = {}
    for name, path in synthetic.items():
        live = ModelTensors(open_checkpoint(path), name)
        manifest, arrays = capture(ModelTensors(open_checkpoint(path), name))
        write_evidence(folder / f"{name}.npz", manifest, arrays)
        out[name] = {"live": live, "stored": StoredModel(EvidenceFile(folder / f"{name}.npz"), name)}
    return out


def test_a_permuted_rescaled_child_keeps_most_canonical_units(models: dict[str, dict]) -> None:
    """Under the true unit permutation, the child's canonical units are mostly its parent's: far
    above the k²/width ≈ 2.9 a position-based sample would share."""
    chance = CANONICAL_UNITS**2 / SHAPE.mlp
    for layer in range(SHAPE.layers):
        lgen = torch.Generator().manual_seed(TRANSFORM_SEED * 1_000 + layer)  # bench.synthetic_llama's unit permutation
        unit_perm = torch.randperm(SHAPE.mlp, generator=lgen).numpy()
        base = set(models["base"]["stored"].canonical_units(layer).tolist())
        child = set(unit_perm[models["permuted"]["stored"].canonical_units(layer)].tolist())
        assert len(base & child) > 5 * chance, (layer, len(base & child))


def test_the_permuted_child_is_confirmed_from_the_stored_evidence(models: dict[str, dict]) -> None:
    child = run_battery(models["base"]["stored"], models["permuted"]["stored"])
    unrelated = run_battery(models["base"]["stored"], models["other"]["stored"])
    assert child.log10_p < -12, child.log10_p
    assert unrelated.log10_p > -2, unrelated.log10_p
    blocks = child.test("mlp_match").detail["blocks"]
    assert all("log10_p_canonical_units" in b for b in blocks)  # both parts ran on every block pair
    assert min(b["log10_p_canonical_units"] for b in blocks) < min(b["log10_p_first_units"] for b in blocks)


@pytest.mark.parametrize("pair", [("base", "permuted"), ("base", "other")])
def test_stored_and_live_batteries_agree(models: dict[str, dict], pair: tuple[str, str]) -> None:
    a, b = pair
    live = run_battery(models[a]["live"], models[b]["live"])
    stored = run_battery(models[a]["stored"], models[b]["stored"])
    assert [(t.name, t.log10_p) for t in stored.tests] == [(t.name, t.log10_p) for t in live.tests]
    assert np.isfinite(stored.log10_p)
