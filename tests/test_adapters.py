"""Architecture adapters map each naming scheme to the same roles and orientations."""

from __future__ import annotations

import pytest
import torch

from pedigree.errors import CheckpointError, UnsupportedModelError
from pedigree.indexer.adapters import MatrixLoader, roles_for
from pedigree.indexer.canonical import canonical_layer
from pedigree.indexer.sampling import BlockSample
from pedigree.indexer.sources import StateDictSource

H, HEADS, MLP = 8, 2, 12


def r(*shape: int) -> torch.Tensor:
    return torch.randn(*shape)


def llama_state(prefix: str = "model.", heads: int = HEADS, kv: int = 1) -> dict[str, torch.Tensor]:
    hd = H // heads
    sd = {f"{prefix}embed_tokens.weight": r(20, H), f"{prefix}norm.weight": r(H)}
    p = f"{prefix}layers.0."
    sd.update(
        {
            p + "input_layernorm.weight": r(H),
            p + "post_attention_layernorm.weight": r(H),
            p + "self_attn.q_proj.weight": r(heads * hd, H),
            p + "self_attn.k_proj.weight": r(kv * hd, H),
            p + "self_attn.v_proj.weight": r(kv * hd, H),
            p + "self_attn.o_proj.weight": r(H, heads * hd),
            p + "mlp.gate_proj.weight": r(MLP, H),
            p + "mlp.up_proj.weight": r(MLP, H),
            p + "mlp.down_proj.weight": r(H, MLP),
        }
    )
    return sd


LLAMA = dict(
    model_type="llama",
    architectures=["LlamaForCausalLM"],
    hidden_size=H,
    num_attention_heads=HEADS,
    num_key_value_heads=1,
    intermediate_size=MLP,
    num_hidden_layers=1,
    vocab_size=20,
)


def roles_and_loader(config, sd):
    source = StateDictSource(sd)
    return roles_for(config, source.tensors()), MatrixLoader(source)


@pytest.mark.parametrize("prefix", ["model.", ""])
def test_llama_roles_fold_gains_and_expand_gqa(prefix):
    sd = llama_state(prefix)
    roles, loader = roles_and_loader(LLAMA, sd)
    assert roles.family == "llama" and roles.tied and roles.vocab_size == 20
    layer = canonical_layer(loader, roles, roles.layers[0])
    g = sd[f"{prefix}layers.0.input_layernorm.weight"]
    k = sd[f"{prefix}layers.0.self_attn.k_proj.weight"] * g
    assert torch.allclose(layer.k, torch.cat([k, k]))  # one kv head serves both query heads
    # The canonical product equals the true attention logits summed over heads.
    x = r(5, H)
    hd = H // HEADS
    q = (x * g) @ sd[f"{prefix}layers.0.self_attn.q_proj.weight"].t()
    kk = (x * g) @ sd[f"{prefix}layers.0.self_attn.k_proj.weight"].t()
    logits = sum(q[:, h * hd : (h + 1) * hd] @ kk.t() for h in range(HEADS))
    assert torch.allclose((x @ layer.q.t()) @ (x @ layer.k.t()).t(), logits, atol=1e-4)
    assert torch.allclose(
        layer.up, sd[f"{prefix}layers.0.mlp.up_proj.weight"] * sd[f"{prefix}layers.0.post_attention_layernorm.weight"]
    )


def test_gemma_gain_offset_and_qwen3_head_norms():
    sd = llama_state()
    sd["model.layers.0.self_attn.q_norm.weight"] = r(H // HEADS)
    sd["model.layers.0.self_attn.k_norm.weight"] = r(H // HEADS)
    roles, loader = roles_and_loader(dict(LLAMA, model_type="gemma"), sd)
    assert torch.allclose(loader.gain(roles.layers[0].attn_norm, H), sd["model.layers.0.input_layernorm.weight"] + 1)
    layer = canonical_layer(loader, roles, roles.layers[0])
    expected = (
        sd["model.layers.0.self_attn.q_proj.weight"] * (sd["model.layers.0.input_layernorm.weight"] + 1)
    ).reshape(HEADS, -1, H)
    expected = expected * (sd["model.layers.0.self_attn.q_norm.weight"] + 1)[None, :, None]
    assert torch.allclose(layer.q, expected.reshape(H, H))


def test_gpt2_conv1d_and_fused_qkv():
    q, k, v, o, up, down = r(H, H), r(H, H), r(H, H), r(H, H), r(4 * H, H), r(H, 4 * H)
    sd = {
        "wte.weight": r(20, H),
        "wpe.weight": r(16, H),
        "ln_f.weight": r(H),
        "ln_f.bias": r(H),
        "h.0.ln_1.weight": torch.ones(H),
        "h.0.ln_1.bias": r(H),
        "h.0.ln_2.weight": torch.ones(H),
        "h.0.ln_2.bias": r(H),
        "h.0.attn.c_attn.weight": torch.cat([q, k, v]).t().contiguous(),
        "h.0.attn.c_attn.bias": r(3 * H),
        "h.0.attn.c_proj.weight": o.t().contiguous(),
        "h.0.mlp.c_fc.weight": up.t().contiguous(),
        "h.0.mlp.c_proj.weight": down.t().contiguous(),
    }
    config = dict(model_type="gpt2", n_embd=H, n_head=HEADS, n_layer=1, vocab_size=20)
    roles, loader = roles_and_loader(config, sd)
    assert roles.norm_kind == "layer" and roles.tied
    layer = canonical_layer(loader, roles, roles.layers[0])
    roles0 = roles.layers[0]
    for got, want in (
        (layer.q, q),
        (layer.k, k),
        (loader.matrix(roles0.v), v),
        (loader.matrix(roles0.o), o),
        (layer.up, up),
        (loader.matrix(roles0.down), down),
    ):
        assert torch.equal(got, want)
    sample = BlockSample(kv_heads=1, q_heads=1, units=3, head_dim=H // HEADS)  # transposed: read whole, then cut
    part = canonical_layer(loader, roles, roles0, sample)
    assert torch.equal(part.q, q[: H // HEADS]) and torch.equal(part.up, up[:3])


def test_gpt_neox_per_head_interleaved_qkv():
    hd = H // HEADS
    q, k, v = r(H, H), r(H, H), r(H, H)
    fused = torch.stack([q.reshape(HEADS, hd, H), k.reshape(HEADS, hd, H), v.reshape(HEADS, hd, H)], dim=1).reshape(
        3 * H, H
    )
    p = "gpt_neox.layers.0."
    sd = {
        "gpt_neox.embed_in.weight": r(20, H),
        "embed_out.weight": r(20, H),
        "gpt_neox.final_layer_norm.weight": r(H),
        "gpt_neox.final_layer_norm.bias": r(H),
        p + "input_layernorm.weight": torch.ones(H),
        p + "input_layernorm.bias": r(H),
        p + "post_attention_layernorm.weight": torch.ones(H),
        p + "post_attention_layernorm.bias": r(H),
        p + "attention.query_key_value.weight": fused,
        p + "attention.dense.weight": r(H, H),
        p + "mlp.dense_h_to_4h.weight": r(4 * H, H),
        p + "mlp.dense_4h_to_h.weight": r(H, 4 * H),
    }
    config = dict(
        model_type="gpt_neox", hidden_size=H, num_attention_heads=HEADS, num_hidden_layers=1, intermediate_size=4 * H
    )
    roles, loader = roles_and_loader(config, sd)
    layer = canonical_layer(loader, roles, roles.layers[0])
    assert torch.equal(layer.q, q) and torch.equal(layer.k, k) and torch.equal(loader.matrix(roles.layers[0].v), v)
    assert not roles.tied and roles.head.name == "embed_out.weight"
    # a sample of whole heads is one contiguous span of the interleaved tensor: rows [0, 3 * hd)
    assert roles.layers[0].q.stored_rows(0, hd, H) == (0, 3 * hd)
    part = canonical_layer(loader, roles, roles.layers[0], BlockSample(kv_heads=1, q_heads=1, units=5, head_dim=hd))
    assert torch.equal(part.q, q[:hd]) and torch.equal(part.k, k[:hd])


@pytest.mark.parametrize("names", [("weight", "bias"), ("gamma", "beta")])
def test_bert_post_layernorm_reads_previous_norm(names):
    w, b = names
    sd = {
        "bert.embeddings.word_embeddings.weight": r(20, H),
        f"bert.embeddings.LayerNorm.{w}": r(H),
        f"bert.embeddings.LayerNorm.{b}": r(H),
    }
    for i in range(2):
        p = f"bert.encoder.layer.{i}."
        for name in ("attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense"):
            sd[p + name + ".weight"] = r(H, H)
        sd[p + "intermediate.dense.weight"], sd[p + "output.dense.weight"] = r(4 * H, H), r(H, 4 * H)
        for ln in ("attention.output.LayerNorm", "output.LayerNorm"):
            sd[f"{p}{ln}.{w}"], sd[f"{p}{ln}.{b}"] = r(H), r(H)
    config = dict(
        model_type="bert", hidden_size=H, num_attention_heads=HEADS, num_hidden_layers=2, intermediate_size=4 * H
    )
    roles, loader = roles_and_loader(config, sd)
    assert roles.layers[0].attn_norm.weight == f"bert.embeddings.LayerNorm.{w}"
    assert roles.layers[1].attn_norm.weight == f"bert.encoder.layer.0.output.LayerNorm.{w}"
    assert roles.layers[1].mlp_norm.weight == f"bert.encoder.layer.1.attention.output.LayerNorm.{w}"
    assert roles.head is None


def test_unknown_and_moe_architectures_are_unsupported():
    tensors = StateDictSource({"x": r(2)}).tensors()
    with pytest.raises(UnsupportedModelError, match="no adapter for model_type 'mamba'"):
        roles_for({"model_type": "mamba"}, tensors)
    with pytest.raises(UnsupportedModelError, match="mixture-of-experts"):
        roles_for(dict(LLAMA, model_type="olmoe", num_experts=64), tensors)  # Mixtral and Qwen-MoE are read (moe.py)
    with pytest.raises(UnsupportedModelError, match="no model_type"):
        roles_for({}, tensors)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (dict(num_hidden_layers=10**9), "num_hidden_layers"),
        (dict(num_hidden_layers=2), "missing tensor"),
        (dict(hidden_size="8"), "hidden_size"),
        (dict(intermediate_size=13), "expected"),
    ],
)
def test_inconsistent_config_is_a_checkpoint_error(change, message):
    source = StateDictSource(llama_state())
    with pytest.raises(CheckpointError, match=message):
        roles_for(dict(LLAMA, **change), source.tensors())


def test_role_map_names_every_projection():
    roles, _ = roles_and_loader(LLAMA, llama_state())
    role_map = roles.role_map()
    assert role_map["model.layers.0.self_attn.q_proj.weight"] == "layers.0.q"
    assert role_map["model.embed_tokens.weight"] == "embedding"
    assert role_map["model.layers.0.post_attention_layernorm.weight"] == "layers.0.mlp_norm"
