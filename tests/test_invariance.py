"""Property tests: fingerprints of real zoo models do not move under function-preserving transforms.

For random compositions of the transforms that preserve each architecture's function (residual
permutation, residual rotation with gains folded, MLP unit permutation and rescaling, head
permutation, per-head V/O and RoPE-commuting Q/K maps, norm-gain rescaling), the fingerprint's
cosine to the original must be >= 0.999 for the model vector, every block, the embedding and the
head when every head and unit is read; with the default sample (fewer units than the zoo's
MLPs have) the transforms that keep units and heads in place stay exact and permuted copies stay
far above unrelated models.  The zoo's own tests check that these transforms leave the logits
unchanged.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from pedigree.indexer.local_checkpoint import open_checkpoint
from pedigree.indexer.pipeline import fingerprint_source
from pedigree.indexer.sampling import SampleSize
from pedigree.indexer.sources import StateDictSource
from pedigree.storage.db import ModelRecord
from pedigree.zoo.transforms import available_kinds, random_function_preserving

TEXT_FILES = ("config.json", "tokenizer.json", "tokenizer_config.json", "vocab.json", "vocab.txt")


def load(folder: Path) -> tuple[dict, dict[str, torch.Tensor], dict[str, str]]:
    with open_checkpoint(folder) as source:
        state = {name: source.read(name).float() for name in source.tensors()}
        texts = {name: text for name in TEXT_FILES if (text := source.read_text(name)) is not None}
    return json.loads(texts["config.json"]), state, texts


WHOLE_BLOCKS = SampleSize(attention_rows=1 << 20, mlp_units=1 << 20)  # every head and unit: the exact invariance


def fingerprint(state: dict[str, torch.Tensor], texts: dict[str, str], sample: SampleSize = WHOLE_BLOCKS):
    return fingerprint_source(StateDictSource(state, texts), ModelRecord(id="t", status="indexed"), sample=sample)


def cosines(a, b) -> dict[str, float]:
    out = {"model": float(a.model @ b.model), "embedding": float(a.embedding @ b.embedding)}
    if a.head is not None:
        out["head"] = float(a.head @ b.head)
    out.update({f"block {i}": float(x @ y) for i, (x, y) in enumerate(zip(a.layers, b.layers))})
    return out


@pytest.fixture(scope="module")
def roots(small_zoo: Path, truth: dict) -> dict[str, tuple]:
    """One trained root model per model_type, loaded with its original fingerprint."""
    chosen: dict[str, tuple] = {}
    for model_id, facts in sorted(truth.items()):
        if facts["relation"] != "root":
            continue
        config, state, texts = load(small_zoo / model_id)
        if config["model_type"] not in chosen:
            chosen[config["model_type"]] = (model_id, config, state, texts, fingerprint(state, texts))
    return chosen


MODEL_TYPES = ["llama", "qwen2", "gpt2", "gpt_neox", "bert"]


@pytest.mark.parametrize("model_type", MODEL_TYPES)
def test_every_transform_kind_alone(roots, model_type):
    model_id, config, state, texts, original = roots[model_type]
    kinds = available_kinds(config)
    assert "residual_permutation" in kinds and "mlp_permutation" in kinds and "head_permutation" in kinds
    for index, kind in enumerate(kinds):
        _, transformed = random_function_preserving(config, state, seed=index + 1, kinds=[kind])
        assert any(not torch.equal(transformed[k], state[k]) for k in state), kind
        got = cosines(original, fingerprint(transformed, texts))
        assert min(got.values()) >= 0.999, (model_id, kind, got)


@pytest.mark.parametrize("model_type", MODEL_TYPES)
@settings(max_examples=8, deadline=None)
@given(seed=st.integers(min_value=0, max_value=2**31 - 1))
def test_random_compositions(roots, model_type, seed):
    model_id, config, state, texts, original = roots[model_type]
    _, transformed = random_function_preserving(config, state, seed=seed)
    got = cosines(original, fingerprint(transformed, texts))
    assert min(got.values()) >= 0.999, (model_id, seed, got)


def test_rotation_is_covered_on_rms_models(roots):
    assert "residual_rotation" in available_kinds(roots["llama"][1])


SMALL_SAMPLE = SampleSize(attention_rows=16, mlp_units=32)  # forces sampling on the small zoo's blocks
EXACT_UNDER_SAMPLING = ("residual_permutation", "residual_rotation", "mlp_rescale", "vo_maps", "qk_maps", "norm_gains")


def test_a_sampled_fingerprint_is_exact_when_the_sample_stays_put_and_close_when_permuted(roots, small_zoo: Path):
    """With fewer rows read than a block has, transforms that keep units and heads in place are
    still exactly invariant; permuting units and heads draws another sample of the same block,
    which must still score far above an independently trained model of the same recipe."""
    _, config, state, texts, _ = roots["llama"]
    original = fingerprint_source(
        StateDictSource(state, texts), ModelRecord(id="t", status="indexed"), sample=SMALL_SAMPLE
    )
    _, sibling_state, sibling_texts = load(small_zoo / "llama-lab/tiny-llama-s2")
    sibling = fingerprint_source(
        StateDictSource(sibling_state, sibling_texts), ModelRecord(id="s", status="indexed"), sample=SMALL_SAMPLE
    )
    unrelated = float(original.model @ sibling.model)  # same recipe, another seed
    for index, kind in enumerate(available_kinds(config)):
        _, transformed = random_function_preserving(config, state, seed=index + 1, kinds=[kind])
        got = cosines(
            original,
            fingerprint_source(
                StateDictSource(transformed, texts), ModelRecord(id="t", status="indexed"), sample=SMALL_SAMPLE
            ),
        )
        if kind in EXACT_UNDER_SAMPLING:
            assert min(got.values()) >= 0.999, (kind, got)
        else:  # mlp_permutation / head_permutation: another sample of the same blocks
            assert got["embedding"] >= 0.999 and got["model"] > unrelated + 0.3, (kind, got, unrelated)


def test_blocks_sketched_together_equal_blocks_sketched_one_at_a_time(roots, monkeypatch):
    """Batching blocks (runs of SKETCH_BATCH, the last run shorter) is only a faster way to the
    same block vectors."""
    import pedigree.indexer.fingerprint as fingerprint_module

    _, _, state, texts, batched = roots["llama"]
    assert len(batched.layers) % 3 != 0  # runs of 3 leave a shorter last run
    monkeypatch.setattr(fingerprint_module, "SKETCH_BATCH", 3)
    by_three = fingerprint(state, texts)
    monkeypatch.setattr(fingerprint_module, "SKETCH_BATCH", 1)
    alone = fingerprint(state, texts)
    for got in (batched, by_three):
        assert torch.allclose(got.layers, alone.layers, atol=1e-5) and torch.allclose(got.model, alone.model, atol=1e-5)


def test_blocks_of_another_layout_start_a_new_sketch_run(roots, monkeypatch):
    """A block whose sampled rows differ in number (here: fewer MLP units) closes the run before
    it: every block vector is still the one it has when sketched alone."""
    import dataclasses

    import pedigree.indexer.fingerprint as fingerprint_module
    from pedigree.indexer.adapters import MatrixLoader, roles_for
    from pedigree.indexer.probes import select_probes
    from pedigree.indexer.vocabulary import read_vocabulary

    _, config, state, texts, _ = roots["llama"]
    source = StateDictSource(state, texts)
    roles = roles_for(config, source.tensors())
    layers = list(roles.layers)
    layers[1] = dataclasses.replace(layers[1], mlp_size=layers[1].mlp_size // 2)
    roles = dataclasses.replace(roles, layers=tuple(layers))
    probes = select_probes(read_vocabulary(source), roles.vocab_size, fingerprint_module.FINGERPRINT_PROBES)
    vectors = {}
    for batch in (4, 1):
        monkeypatch.setattr(fingerprint_module, "SKETCH_BATCH", batch)
        vectors[batch] = fingerprint_module.compute_fingerprint(
            MatrixLoader(source), roles, probes, sample=WHOLE_BLOCKS
        ).layers
    assert len(vectors[1]) == 4 and torch.allclose(vectors[4], vectors[1], atol=1e-5)
