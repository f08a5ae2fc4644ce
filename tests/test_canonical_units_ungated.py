"""Canonical MLP units of wide *ungated* MLPs (GPT-2's Conv1D, GPT-NeoX's nn.Linear; issue 13).

A residual- and unit-permuted, drifted copy of a GELU model whose MLP is wider than
``CANONICAL_FROM`` shares only about 256² / width of its first 256 units with its parent, so its
first units alone do not confirm it (measured before this change: combined log10 p −3.9 for a
GPT-2 of 1536 units, live or stored).  Canonical units are chosen by what they are - from the
down projection these blocks read whole anyway - and the pair is confirmed from the stored
evidence.

Real parts: checkpoints written as safetensors folders with the small zoo's tokenizers, captured
with ``indexer.stored_model.capture`` into real evidence files.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from bench import calibration_set as cs
from pedigree.indexer.evidence_file import EvidenceFile, write_evidence
from pedigree.indexer.independence.inputs import ModelTensors
from pedigree.indexer.independence.suite import run_battery
from pedigree.indexer.local_checkpoint import open_checkpoint
from pedigree.indexer.stored_model import StoredModel, capture
from pedigree.indexer.unit_selection import CANONICAL_FROM, CANONICAL_UNITS, WIDE_MLP, canonical_eligible
from pedigree.zoo.models import save_checkpoint
from pedigree.zoo.transforms import apply_steps, plan_function_preserving

WIDTH = 1280  # > CANONICAL_FROM: a wide block
HIDDEN, LAYERS = 128, 2
TYPES = {"gpt2": "A-gpt2", "gpt_neox": "A-neox"}  # Conv1D (transposed) and nn.Linear layouts
KINDS = ["residual_permutation", "mlp_permutation"]


def _with_gains(state: dict[str, torch.Tensor], seed: int) -> dict[str, torch.Tensor]:
    """Norm gains drawn away from 1 (a trained model's are distinct; the canonical rule ranks them)."""
    gen = torch.Generator().manual_seed(seed)
    return {
        k: (0.5 + torch.rand(v.shape, generator=gen)).to(v.dtype)
        if v.ndim == 1 and k.endswith("weight") and ("ln" in k or "norm" in k)
        else v
        for k, v in state.items()
    }


def _drift(state: dict[str, torch.Tensor], seed: int, scale: float = 0.05) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    noise = {k: scale * v.std() * torch.randn(v.shape, generator=gen) for k, v in state.items() if v.ndim == 2}
    return {k: v + noise[k] if k in noise else v for k, v in state.items()}


def save_and_capture(folder: Path, config: dict, tokenizer: str, states: dict[str, dict]) -> dict[str, dict]:
    """Each state written as a checkpoint folder under ``folder`` (with the tokenizer's files) and
    captured into an evidence file beside it: {name: {"live": reader, "stored": evidence}}."""
    models: dict[str, dict] = {}
    for name, state in states.items():
        path = folder / name
        save_checkpoint(path, config, state)
        for file, text in cs.tokenizer_texts(tokenizer).items():
            (path / file).write_text(text)
        manifest, arrays = capture(ModelTensors(open_checkpoint(path), name))
        write_evidence(path.with_suffix(".npz"), manifest, arrays)
        models[name] = {
            "live": ModelTensors(open_checkpoint(path), name),
            "stored": StoredModel(EvidenceFile(path.with_suffix(".npz")), name),
        }
    return models


@pytest.fixture(scope="module")
def family(small_tokenizers, tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    """Per model type: the parent, its permuted drifted child and an unrelated model - live
    readers and stored evidence - and the child's unit permutations."""
    root = tmp_path_factory.mktemp("ungated")
    out: dict[str, dict] = {}
    for model_type, tokenizer in TYPES.items():
        config = cs.model_config(model_type, tokenizer, hidden=HIDDEN, layers=LAYERS, heads=4, intermediate=WIDTH)
        parent = _with_gains(cs.init_state(config, 11, "normal"), 3)
        steps = plan_function_preserving(config, 7, KINDS)
        _, child = apply_steps(config, _drift(parent, 5), steps)
        states = {"parent": parent, "child": child, "other": _with_gains(cs.init_state(config, 99, "normal"), 4)}
        models = save_and_capture(root / model_type, config, tokenizer, states)
        perms = next(s for s in steps if s.kind == "mlp_permutation").params["perms"]
        out[model_type] = {"models": models, "unit_perms": [p.numpy() for p in perms]}
    return out


@pytest.mark.parametrize("model_type", sorted(TYPES))
def test_wide_ungated_blocks_choose_canonical_units_and_keep_their_first_units(family, model_type):
    stored = family[model_type]["models"]["parent"]["stored"]
    assert WIDTH > CANONICAL_FROM
    for layer, roles in enumerate(stored.roles.layers):
        assert roles.gate is None and canonical_eligible(roles)
        assert len(stored.canonical_units(layer)) == CANONICAL_UNITS
        assert stored.manifest["layers"][layer]["kept"] == WIDE_MLP  # the first units stay as they were


@pytest.mark.parametrize("model_type", sorted(TYPES))
def test_a_permuted_childs_canonical_units_are_mostly_its_parents(family, model_type):
    """Under the true unit permutation, far above the k² / width ≈ 3.2 a position-based sample shares."""
    models, perms = family[model_type]["models"], family[model_type]["unit_perms"]
    chance = CANONICAL_UNITS**2 / WIDTH
    for layer in range(LAYERS):
        base = set(models["parent"]["stored"].canonical_units(layer).tolist())
        child = set(perms[layer][models["child"]["stored"].canonical_units(layer)].tolist())
        assert len(base & child) > 5 * chance, (layer, len(base & child))


@pytest.mark.parametrize("model_type", sorted(TYPES))
def test_the_permuted_child_of_an_ungated_model_is_confirmed_from_the_stored_evidence(family, model_type):
    models = family[model_type]["models"]
    child = run_battery(models["parent"]["stored"], models["child"]["stored"])
    unrelated = run_battery(models["parent"]["stored"], models["other"]["stored"])
    assert child.log10_p < -12, child.log10_p
    assert unrelated.log10_p > -2, unrelated.log10_p
    blocks = child.test("mlp_match").detail["blocks"]
    assert all("log10_p_canonical_units" in b for b in blocks)
    # the first units alone stay weak: the canonical units are what confirms the pair
    assert max(b["log10_p_first_units"] for b in blocks) > -12
    assert all(b["log10_p_canonical_units"] < -12 for b in blocks)


@pytest.mark.parametrize("model_type", sorted(TYPES))
@pytest.mark.parametrize("pair", [("parent", "child"), ("parent", "other")])
def test_stored_and_live_batteries_agree_on_ungated_models(family, model_type, pair):
    models = family[model_type]["models"]
    a, b = pair
    live = run_battery(models[a]["live"], models[b]["live"])
    stored = run_battery(models[a]["stored"], models[b]["stored"])
    assert [(t.name, t.log10_p) for t in stored.tests] == [(t.name, t.log10_p) for t in live.tests]
    assert np.isfinite(stored.log10_p)
