"""Mixtral (experts as unit groups) and T5 (encoder then decoder blocks) on their real-trained zoo
members (``pedigree.zoo.moe_t5``): every tensor has a role, stacked expert matrices read the right
rows, function-preserving permutations (experts, units inside experts, T5's feed-forward units and
heads) leave the fingerprint where it was, and the real CLI relates each fine-tune to its base and
nothing else."""

from __future__ import annotations

import json
import os
from itertools import combinations
from pathlib import Path

import pytest
import torch
from cli_runner import cli

from pedigree.indexer.adapters import MatrixLoader, roles_for
from pedigree.indexer.local_checkpoint import open_checkpoint
from pedigree.indexer.pipeline import fingerprint_source
from pedigree.indexer.sampling import SampleSize
from pedigree.indexer.sources import StateDictSource
from pedigree.storage.db import ModelRecord
from pedigree.zoo.moe_t5 import models
from pedigree.zoo.moe_t5.build import build_moe_t5_zoo

REPO = Path(__file__).resolve().parents[1]
TEXT_FILES = ("config.json", "tokenizer.json", "tokenizer_config.json")
WHOLE = SampleSize(attention_rows=1 << 20, mlp_units=1 << 20)
MIXTRAL, MIXTRAL_FT, MIXTRAL_S2 = "moe-lab/tiny-mixtral", "moe-lab/tiny-mixtral-tests", "expert-works/tiny-mixtral-s2"
T5, T5_FT, T5_S2 = "t5-lab/tiny-t5", "t5-lab/tiny-t5-tests", "seq2seq-works/tiny-t5-s2"


@pytest.fixture(scope="session")
def moe_t5_zoo() -> Path:
    """The six members, built once and cached like zoo A (``$PEDIGREE_ZOO_MOE_T5_CACHE`` or
    ``<repo>/.zoo-cache/moe-t5``; the cache key is the recipe)."""
    out = Path(os.environ.get("PEDIGREE_ZOO_MOE_T5_CACHE") or REPO / ".zoo-cache" / "moe-t5")
    build_moe_t5_zoo(out)
    return out


def load(folder: Path) -> tuple[dict, dict[str, torch.Tensor], dict[str, str]]:
    with open_checkpoint(folder) as source:
        state = {name: source.read(name).float() for name in source.tensors()}
        texts = {name: text for name in TEXT_FILES if (text := source.read_text(name)) is not None}
    return json.loads(texts["config.json"]), state, texts


def fingerprint(state: dict[str, torch.Tensor], texts: dict[str, str], sample: SampleSize = WHOLE):
    return fingerprint_source(StateDictSource(state, texts), ModelRecord(id="t", status="indexed"), sample=sample)


def min_cosine(a, b) -> float:
    pairs = [(a.model, b.model), (a.embedding, b.embedding), (a.head, b.head), *zip(a.layers, b.layers)]
    return min(float(x @ y) for x, y in pairs)


@pytest.mark.parametrize("model_id", [MIXTRAL, T5])
def test_roles_map_every_tensor(moe_t5_zoo: Path, model_id: str) -> None:
    config, state, texts = load(moe_t5_zoo / model_id)
    roles = roles_for(config, StateDictSource(state, texts).tensors())
    role_map = roles.role_map()
    assert set(role_map) == set(state)
    if model_id == MIXTRAL:
        assert roles.family == "mixtral" and len(roles.layers) == 2
        assert all(layer.mlp_size == 4 * 32 for layer in roles.layers)
        assert role_map["model.layers.1.block_sparse_moe.experts.2.w3.weight"] == "layers.1.up[2]"
        assert role_map["model.layers.1.block_sparse_moe.experts.2.w1.weight"] == "layers.1.gate[2]"
        assert role_map["model.layers.1.block_sparse_moe.experts.2.w2.weight"] == "layers.1.down[2]"
        assert role_map["model.layers.0.block_sparse_moe.gate.weight"] == "layers.0.router"
    else:
        assert roles.family == "t5" and len(roles.layers) == 4 and not roles.tied
        assert role_map["decoder.block.0.layer.0.SelfAttention.q.weight"] == "layers.2.q"
        assert role_map["decoder.block.1.layer.2.DenseReluDense.wi_0.weight"] == "layers.3.gate"
        assert role_map["decoder.block.1.layer.2.DenseReluDense.wi_1.weight"] == "layers.3.up"
        assert role_map["decoder.block.1.layer.1.EncDecAttention.k.weight"] == "layers.3.cross_attention.k"
        assert role_map["decoder.final_layer_norm.weight"] == "final_norm"
        assert role_map["lm_head.weight"] == "head"


def test_stacked_experts_read_the_right_rows(moe_t5_zoo: Path) -> None:
    """Rows and columns of the expert stack, read by range, are the experts' own, in order -
    also across an expert boundary."""
    config, state, texts = load(moe_t5_zoo / MIXTRAL)
    source = StateDictSource(state, texts)
    layer = roles_for(config, source.tensors()).layers[1]
    loader = MatrixLoader(source)
    expert = "model.layers.1.block_sparse_moe.experts.{}.{}.weight"
    up = torch.cat([state[expert.format(e, "w3")] for e in range(4)])
    down = torch.cat([state[expert.format(e, "w2")] for e in range(4)], dim=1)
    assert torch.equal(loader.matrix(layer.up), up) and torch.equal(loader.matrix(layer.down), down)
    assert torch.equal(loader.matrix_rows(layer.up, 20, 70), up[20:70])
    assert torch.equal(loader.matrix_rows(layer.down, 5, 9), down[5:9])
    assert loader.stored_reads(layer.up, 20, 70) == [
        (expert.format(0, "w3"), 20, 32),
        (expert.format(1, "w3"), 0, 32),
        (expert.format(2, "w3"), 0, 6),
    ]
    assert loader.matrix_row_count(layer.up) == 128 and loader.matrix_row_count(layer.down) == 64


def _permute_mixtral(config: dict, state: dict[str, torch.Tensor], seed: int) -> dict[str, torch.Tensor]:
    """Experts permuted (router rows with them) and units permuted inside every expert."""
    gen = torch.Generator().manual_seed(seed)
    out = dict(state)
    experts, ffn = config["num_local_experts"], config["intermediate_size"]
    for i in range(config["num_hidden_layers"]):
        moe = f"model.layers.{i}.block_sparse_moe."
        order = torch.randperm(experts, generator=gen)
        out[moe + "gate.weight"] = state[moe + "gate.weight"][order]
        for new, old in enumerate(order.tolist()):
            units = torch.randperm(ffn, generator=gen)
            src, dst = f"{moe}experts.{old}.", f"{moe}experts.{new}."
            out[dst + "w1.weight"] = state[src + "w1.weight"][units]
            out[dst + "w3.weight"] = state[src + "w3.weight"][units]
            out[dst + "w2.weight"] = state[src + "w2.weight"][:, units]
    return out


def _permute_t5(config: dict, state: dict[str, torch.Tensor], seed: int) -> dict[str, torch.Tensor]:
    """Every block's feed-forward units and self-attention heads permuted (the relative position
    bias's head columns with the heads)."""
    gen = torch.Generator().manual_seed(seed)
    out = dict(state)
    heads, d_kv = config["num_heads"], config["d_kv"]
    for stack, ff, depth in (("encoder", 1, "num_layers"), ("decoder", 2, "num_decoder_layers")):
        order = torch.randperm(heads, generator=gen)  # one order per stack: blocks share the bias table
        rows = (order[:, None] * d_kv + torch.arange(d_kv)).flatten()
        bias = f"{stack}.block.0.layer.0.SelfAttention.relative_attention_bias.weight"
        out[bias] = state[bias][:, order]
        for i in range(config[depth]):
            attn, dense = f"{stack}.block.{i}.layer.0.SelfAttention.", f"{stack}.block.{i}.layer.{ff}.DenseReluDense."
            for name in ("q", "k", "v"):
                out[f"{attn}{name}.weight"] = state[f"{attn}{name}.weight"][rows]
            out[attn + "o.weight"] = state[attn + "o.weight"][:, rows]
            units = torch.randperm(config["d_ff"], generator=gen)
            out[dense + "wi_0.weight"] = state[dense + "wi_0.weight"][units]
            out[dense + "wi_1.weight"] = state[dense + "wi_1.weight"][units]
            out[dense + "wo.weight"] = state[dense + "wo.weight"][:, units]
    return out


@pytest.mark.parametrize("model_id", [MIXTRAL, T5])
def test_permutations_keep_function_and_fingerprint(moe_t5_zoo: Path, model_id: str) -> None:
    config, state, texts = load(moe_t5_zoo / model_id)
    permute = _permute_mixtral if model_id == MIXTRAL else _permute_t5
    ids = torch.randint(0, config["vocab_size"], (2, 24), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        if model_id == MIXTRAL:
            run = lambda p: models.mixtral_logits(config, p, ids)  # noqa: E731
        else:
            run = lambda p: models.t5_logits(config, p, ids[:, :12], ids[:, 12:])  # noqa: E731
        reference = run(state)
    unrelated = fingerprint(*load(moe_t5_zoo / (MIXTRAL_S2 if model_id == MIXTRAL else T5_S2))[1:])
    original = fingerprint(state, texts)
    default = fingerprint(state, texts, SampleSize())
    for seed in (1, 2):
        permuted = permute(config, state, seed)
        assert any(not torch.equal(permuted[k], state[k]) for k in state)
        with torch.no_grad():
            assert torch.allclose(run(permuted), reference, atol=1e-4)  # the same function
        assert min_cosine(original, fingerprint(permuted, texts)) >= 0.999
        # the default sample holds every unit and head of these blocks: exact there too
        assert min_cosine(default, fingerprint(permuted, texts, SampleSize())) >= 0.999
    assert float(original.model @ unrelated.model) < 0.9


def test_cli_relates_each_fine_tune_to_its_base_only(moe_t5_zoo: Path, tmp_path_factory) -> None:
    home = tmp_path_factory.mktemp("moe-t5-home")
    result = cli("ingest", str(moe_t5_zoo), "--home", str(home))
    assert result["counts"] == {"indexed": 6, "unchanged": 0, "failed": 0, "unsupported": 0}
    tests = {frozenset((c["a"], c["b"])): c for c in result["confirmations"]}
    assert set(tests) == {
        frozenset(pair) for pair in combinations(sorted(json.loads((moe_t5_zoo / "truth.json").read_text())), 2)
    }
    for base, child in ((MIXTRAL, MIXTRAL_FT), (T5, T5_FT)):
        pair = tests.pop(frozenset((base, child)))
        assert pair["confirmed"] and pair["log10_p"] < -12, pair
        placed = cli("query", child, "--home", str(home))
        assert [p["id"] for p in placed["parents"]] == [base] and placed["parents"][0]["relation"] == "finetune"
        assert cli("query", base, "--home", str(home))["parents"] == []
    assert not any(c["confirmed"] for c in tests.values()), [c for c in tests.values() if c["confirmed"]]
    assert min(c["log10_p"] for c in tests.values()) > -12  # unrelated and cross-family pairs


def _transformers_folder(tmp_path: Path, name: str, model) -> Path:
    folder = tmp_path / name
    model.save_pretrained(folder)
    return folder


def test_transformers_checkpoints_map_every_tensor(tmp_path: Path) -> None:
    """Checkpoints saved by transformers itself (random tiny configs): Qwen2-MoE (shared expert as
    extras; its q/k/v biases are, as for Qwen2, not roles), Qwen3-MoE (``num_local_experts`` as
    transformers 5 writes it), mT5, UMT5 (a position bias per block) and a ReLU T5 (``wi``)."""
    transformers = pytest.importorskip("transformers")
    small = dict(vocab_size=64, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1)
    moe = dict(small, intermediate_size=24, moe_intermediate_size=8, num_experts=3)
    t5 = dict(vocab_size=64, d_model=16, d_kv=4, d_ff=8, num_layers=2, num_heads=2)
    cases = {
        "qwen2_moe": transformers.Qwen2MoeForCausalLM(
            transformers.Qwen2MoeConfig(**moe, shared_expert_intermediate_size=12)
        ),
        "qwen3_moe": transformers.Qwen3MoeForCausalLM(transformers.Qwen3MoeConfig(**moe, head_dim=8)),
        "mt5": transformers.MT5ForConditionalGeneration(transformers.MT5Config(**t5, feed_forward_proj="gated-gelu")),
        "umt5": transformers.UMT5ForConditionalGeneration(transformers.UMT5Config(**t5)),
        "t5": transformers.T5ForConditionalGeneration(transformers.T5Config(**t5, num_decoder_layers=3)),
    }
    for name, model in cases.items():
        with open_checkpoint(_transformers_folder(tmp_path, name, model)) as source:
            tensors = source.tensors()
            roles = roles_for(source.read_json("config.json"), tensors)
            unmapped = set(tensors) - set(roles.role_map())
        if name == "qwen2_moe":
            assert unmapped and all(n.endswith(("q_proj.bias", "k_proj.bias", "v_proj.bias")) for n in unmapped)
            assert (
                roles.role_map()["model.layers.1.mlp.shared_expert.up_proj.weight"] == "layers.1.shared_expert.up_proj"
            )
        else:
            assert not unmapped, (name, sorted(unmapped))
        if name.endswith("moe"):
            assert roles.layers[0].mlp_size == 3 * 8 and roles.layers[0].up.stack
        else:
            assert len(roles.layers) == (5 if name == "t5" else 4)
            assert (roles.layers[0].gate is None) == (name == "t5")  # T5Config's default is ReLU (``wi``)


def test_zoo_forward_matches_transformers(moe_t5_zoo: Path) -> None:
    """The zoo's plain-torch forward is transformers' own on the saved folders."""
    transformers = pytest.importorskip("transformers")
    ids = torch.randint(0, 500, (2, 16), generator=torch.Generator().manual_seed(1))
    config, state, _ = load(moe_t5_zoo / MIXTRAL)
    hf = transformers.MixtralForCausalLM.from_pretrained(moe_t5_zoo / MIXTRAL).eval()
    with torch.no_grad():
        assert torch.allclose(hf(ids).logits, models.mixtral_logits(config, state, ids), atol=1e-4)
    config, state, _ = load(moe_t5_zoo / T5)
    hf = transformers.T5ForConditionalGeneration.from_pretrained(moe_t5_zoo / T5).eval()
    with torch.no_grad():
        got = hf(input_ids=ids[:, :8], decoder_input_ids=ids[:, 8:]).logits
        assert torch.allclose(got, models.t5_logits(config, state, ids[:, :8], ids[:, 8:]), atol=1e-4)
