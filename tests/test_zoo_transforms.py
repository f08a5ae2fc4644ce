"""The zoo's architectures, checkpoint layout and weight transforms (bench/zoo).

Random tiny models (float64) for the maths; one real trained small-zoo model per architecture
for the function-preserving compositions; Hugging Face ``transformers`` (when importable) as the
reference for the forward pass and the state-dict layout.
"""

from __future__ import annotations

import json

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pedigree.zoo import lossy
from pedigree.zoo.architectures import Dims, make_config
from pedigree.zoo.hf_layout import to_canonical, to_hf
from pedigree.zoo.models import init_state_dict, load_model, logits, save_checkpoint
from pedigree.zoo.tokenization import KINDS, extend_tokenizer, train_tokenizer
from pedigree.zoo.transforms import (
    KINDS as TRANSFORM_KINDS,
)
from pedigree.zoo.transforms import (
    available_kinds,
    haar_orthogonal,
    map_qk,
    random_function_preserving,
    random_invertible,
    rescale_mlp,
    rotate_residual,
)

ARCHS = {
    "llama": Dims(32, 2, 4, 48, kv_heads=2),
    "qwen2": Dims(32, 2, 4, 48, kv_heads=2),
    "gpt2": Dims(32, 2, 4, 64),
    "gpt_neox": Dims(32, 2, 4, 64, rotary_pct=0.5),
    "bert": Dims(32, 2, 4, 64),
}
IDS = {"bos": 1, "eos": 2, "pad": 0}
VOCAB = 101


def tiny(model_type: str, seed: int = 0) -> tuple[dict, dict[str, torch.Tensor]]:
    """A random float64 model whose gains and biases are perturbed away from their init."""
    config = make_config(model_type, ARCHS[model_type], VOCAB, IDS, "float32")
    gen = torch.Generator().manual_seed(seed + 1)
    sd = {k: (v + 0.1 * torch.randn(v.shape, generator=gen)).double() for k, v in init_state_dict(config, seed).items()}
    return config, sd


def batch(seed: int = 0, vocab: int = VOCAB) -> torch.Tensor:
    return torch.randint(0, vocab, (2, 11), generator=torch.Generator().manual_seed(seed))


def max_rel_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).abs().max() / a.abs().max()).item()


@pytest.mark.parametrize("model_type", list(ARCHS))
def test_hf_layout_round_trip(model_type: str) -> None:
    config, sd = tiny(model_type)
    back = to_hf(config, to_canonical(config, sd))
    assert set(back) == set(sd)
    assert all(torch.equal(back[k], sd[k]) for k in sd)


@pytest.mark.parametrize("model_type", list(ARCHS))
def test_every_valid_transform_preserves_logits(model_type: str) -> None:
    config, sd = tiny(model_type)
    x = batch()
    base = logits(config, sd, x, torch.float64)
    kinds = available_kinds(config)
    assert {"residual_permutation", "mlp_permutation", "head_permutation", "vo_maps", "qk_maps"} <= set(kinds)
    assert ("residual_rotation" in kinds) == (model_type in ("llama", "qwen2"))
    for kind in kinds:
        new_config, new_sd = random_function_preserving(config, sd, seed=7, kinds=[kind])
        assert max_rel_diff(base, logits(new_config, new_sd, x, torch.float64)) < 1e-10, kind
        moved = max((new_sd[k] - sd[k]).abs().max().item() for k in sd)
        assert moved > 1e-3, f"{kind} left the weights unchanged"


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**31 - 1), model_type=st.sampled_from(sorted(ARCHS)))
def test_random_compositions_preserve_logits(seed: int, model_type: str) -> None:
    config, sd = tiny(model_type, seed % 5)
    x = batch(seed % 7)
    new_config, new_sd = random_function_preserving(config, sd, seed)
    assert max_rel_diff(logits(config, sd, x, torch.float64), logits(new_config, new_sd, x, torch.float64)) < 1e-10


def test_invalid_transforms_are_refused() -> None:
    config, sd = tiny("gpt2")
    with pytest.raises(ValueError):
        random_function_preserving(config, sd, 0, kinds=["residual_rotation"])
    with pytest.raises(ValueError):
        rotate_residual(config, sd, haar_orthogonal(32, torch.Generator().manual_seed(0)))
    with pytest.raises(ValueError):
        rescale_mlp(config, sd, [torch.full((64,), 2.0, dtype=torch.float64)] * 2)
    bert_config, _ = tiny("bert")
    assert "norm_gains" not in available_kinds(bert_config)


def test_qk_map_must_commute_with_rope() -> None:
    """A generic invertible Q/K map is function-preserving without RoPE, not with it."""
    gen = torch.Generator().manual_seed(3)
    for model_type, preserved in (("gpt2", True), ("llama", False)):
        config, sd = tiny(model_type)
        heads = ARCHS[model_type].kv_heads or ARCHS[model_type].heads
        mats = [torch.stack([random_invertible(8, gen) for _ in range(heads)]) for _ in range(2)]
        x = batch()
        diff = max_rel_diff(logits(config, sd, x, torch.float64), logits(*map_qk(config, sd, mats), x, torch.float64))
        assert (diff < 1e-10) == preserved, model_type


@pytest.mark.parametrize("model_type", list(ARCHS))
def test_lossy_transforms_change_logits(model_type: str) -> None:
    config, sd = tiny(model_type)
    x = batch()
    base = logits(config, sd, x, torch.float64)

    def changed(new_config: dict, new_sd: dict) -> float:
        return max_rel_diff(base, logits(new_config, new_sd, x, torch.float64)[..., :VOCAB])

    assert 1e-6 < changed(*lossy.int8_roundtrip(config, sd)) < 0.2
    dropped_config, dropped = lossy.drop_layers(config, sd, [0])
    assert changed(dropped_config, dropped) > 1e-3
    keep = lossy.top_mlp_units(config, sd, 16)
    assert all(len(k) == 16 and k == sorted(k) for k in keep)
    assert changed(*lossy.prune_mlp(config, sd, keep)) > 1e-3
    assert changed(*lossy.reinit_mlp(config, sd, 1, seed=0)) > 1e-3
    other_config, other = tiny(model_type, seed=9)
    assert changed(*lossy.average(config, [sd, other])) > 1e-3
    assert changed(*lossy.average(config, [sd, sd])) < 1e-12
    ext_config, ext = lossy.extend_vocab(config, sd, 5, seed=0)
    assert ext_config["vocab_size"] == VOCAB + 5
    ext_logits = logits(ext_config, ext, x, torch.float64)
    assert ext_logits.shape[-1] == VOCAB + 5
    # the old tokens' raw logits keep their values, but the next-token distribution changes
    assert not torch.allclose(ext_logits.softmax(-1)[..., :VOCAB], base.softmax(-1))


def test_layer_drop_and_width_prune_configs() -> None:
    config, sd = tiny("gpt2")
    new_config, new_sd = lossy.drop_layers(config, sd, [1])
    assert new_config["n_layer"] == 1 and not any(".h.1." in k for k in new_sd)
    assert torch.equal(new_sd["transformer.h.0.mlp.c_fc.weight"], sd["transformer.h.0.mlp.c_fc.weight"])
    config, sd = tiny("llama")
    keep = lossy.top_mlp_units(config, sd, 24)
    pruned_config, pruned = lossy.prune_mlp(config, sd, keep)
    assert pruned_config["intermediate_size"] == 24
    assert torch.equal(pruned["model.layers.1.mlp.up_proj.weight"], sd["model.layers.1.mlp.up_proj.weight"][keep[1]])


@pytest.mark.parametrize("shards", [1, 3])
def test_checkpoint_round_trip(tmp_path, shards: int) -> None:
    config, sd = tiny("gpt_neox")
    files = save_checkpoint(tmp_path, config, sd, dtype="bfloat16", num_shards=shards)
    assert len(files) == shards
    if shards > 1:
        index = json.loads((tmp_path / "model.safetensors.index.json").read_text())
        assert set(index["weight_map"]) == set(sd)
    model = load_model(tmp_path, dtype=None)
    assert model.config["torch_dtype"] == "bfloat16"
    assert all(model.state_dict[k].dtype == torch.bfloat16 for k in sd)
    assert all(torch.equal(model.state_dict[k], sd[k].to(torch.bfloat16)) for k in sd)


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_tokenizer_training_is_deterministic(kind: str) -> None:
    text = "\n".join(f"def function_{i}(value, other):\n    return value * {i} + other  # note {i}" for i in range(300))
    first, second = train_tokenizer(kind, text, 400), train_tokenizer(kind, text, 400)
    assert first.to_str() == second.to_str()
    extended = extend_tokenizer(first, ["function_42", "other_value"])
    assert extended.get_vocab_size() == first.get_vocab_size() + 2
    assert extended.token_to_id("function_42") == first.get_vocab_size()


def test_real_zoo_models_keep_their_function() -> None:
    """Random compositions on one real trained small-zoo model per architecture."""
    from bench.zoo_cache import small_zoo_path

    root = small_zoo_path()
    truth = json.loads((root / "truth.json").read_text())
    per_arch = {}
    for model_id, entry in sorted(truth.items()):
        if entry["relation"] == "root" and "distilled_from" not in entry["notes"]:
            per_arch.setdefault(entry["model_type"], model_id)
    assert set(per_arch) == set(ARCHS)
    for k, (_model_type, model_id) in enumerate(sorted(per_arch.items())):
        model = load_model(root / model_id, dtype=torch.float64)
        x = batch(k, model.spec.vocab_size)
        base = model.logits(x, torch.float64)
        for seed in range(3):
            kinds = None if seed else list(available_kinds(model.config))
            new_config, new_sd = random_function_preserving(model.config, model.state_dict, 100 + seed, kinds)
            assert max_rel_diff(base, logits(new_config, new_sd, x, torch.float64)) < 1e-9, (model_id, seed)


def test_transform_kinds_are_documented() -> None:
    assert set(TRANSFORM_KINDS) == {
        "residual_permutation",
        "residual_rotation",
        "norm_gains",
        "mlp_permutation",
        "mlp_rescale",
        "head_permutation",
        "vo_maps",
        "qk_maps",
    }


@pytest.mark.parametrize("model_type", list(ARCHS))
def test_matches_hugging_face_transformers(tmp_path, model_type: str) -> None:
    """Our forward pass and layout against HF's own classes (skipped without transformers)."""
    transformers = pytest.importorskip("transformers")
    config, sd = tiny(model_type)
    save_checkpoint(tmp_path, config, sd, dtype="float32")
    cls = transformers.AutoModelForMaskedLM if model_type == "bert" else transformers.AutoModelForCausalLM
    hf_model, info = cls.from_pretrained(tmp_path, output_loading_info=True, attn_implementation="eager")
    assert not any(info.get(k) for k in ("missing_keys", "unexpected_keys", "mismatched_keys")), info
    x = batch()
    with torch.no_grad():
        theirs = hf_model.eval()(input_ids=x).logits
    ours = load_model(tmp_path).logits(x)
    assert max_rel_diff(theirs, ours) < 1e-5
