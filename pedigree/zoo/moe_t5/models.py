"""Two more zoo architectures in plain torch: a Mixtral-style mixture-of-experts decoder and a T5
encoder-decoder, computed directly on Hugging Face's parameter names (no canonical renaming).

**Mixtral** (transformers ``modeling_mixtral``): Llama's block - RMSNorm x·rsqrt(mean x² + ε)·g,
RoPE with rotate_half pairing, GQA - whose MLP is a sparse mixture: the router
``block_sparse_moe.gate`` gives E logits per token, the top-k experts (``num_experts_per_tok``)
are weighted by their softmax probabilities renormalised over the k, and expert e computes
``w2(silu(w1 x) ⊙ w3 x)``.  (All experts are evaluated and the unchosen ones weighted 0: the same
function, simpler on CPU at this size.)

**T5** (transformers ``modeling_t5``, v1.1 layout: gated-GELU feed-forward ``wo(gelu_new(wi_0 x) ⊙
wi_1 x)``, untied ``lm_head``): pre-RMSNorm without mean or bias; attention logits are q·k without
the 1/√d scaling, plus a learned relative position bias (``relative_attention_bias`` of block 0,
shared by the stack's blocks; bidirectional buckets in the encoder, causal in the decoder); the
decoder's blocks add cross-attention on the encoder output (no position bias) between
self-attention and feed-forward.  The decoder starts from ``decoder_start_token_id`` (the pad id).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def rms(x: torch.Tensor, gain: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * gain


def _rope(x: torch.Tensor, theta: float) -> torch.Tensor:
    """RoPE over the whole head width of [B, H, T, d] with HF's rotate_half pairing."""
    d, t = x.shape[-1], x.shape[-2]
    inv = 1.0 / theta ** (torch.arange(0, d, 2, dtype=torch.float32) / d)
    angles = torch.outer(torch.arange(t, dtype=torch.float32), inv)
    cos, sin = torch.cat([angles, angles], -1).cos(), torch.cat([angles, angles], -1).sin()
    half = torch.cat([-x[..., d // 2 :], x[..., : d // 2]], -1)
    return x * cos + half * sin


def _heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    b, t, _ = x.shape
    return x.reshape(b, t, heads, -1).transpose(1, 2)


# --- Mixtral ---------------------------------------------------------------------------------


def mixtral_config(vocab: int, hidden: int, layers: int, heads: int, kv_heads: int, experts: int, ffn: int) -> dict:
    """An HF ``MixtralConfig`` as config.json holds it (the fields transformers writes)."""
    return {
        "architectures": ["MixtralForCausalLM"],
        "model_type": "mixtral",
        "vocab_size": vocab,
        "hidden_size": hidden,
        "intermediate_size": ffn,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "num_key_value_heads": kv_heads,
        "head_dim": hidden // heads,
        "num_local_experts": experts,
        "num_experts_per_tok": 2,
        "hidden_act": "silu",
        "max_position_embeddings": 128,
        "rms_norm_eps": 1e-6,
        "rope_theta": 10000.0,
        "router_aux_loss_coef": 0.02,
        "output_router_logits": False,
        "sliding_window": None,
        "attention_dropout": 0.0,
        "tie_word_embeddings": False,
        "bos_token_id": 1,
        "eos_token_id": 2,
    }


def mixtral_init(config: dict, seed: int, std: float = 0.02) -> dict[str, torch.Tensor]:
    """A fresh HF-named Mixtral state dict (normal(0, std) matrices, unit gains)."""
    gen = torch.Generator().manual_seed(seed)
    h, ffn, e = config["hidden_size"], config["intermediate_size"], config["num_local_experts"]
    hd = config["head_dim"]
    q, kv = config["num_attention_heads"] * hd, config["num_key_value_heads"] * hd
    shapes: dict[str, tuple[int, ...]] = {"model.embed_tokens.weight": (config["vocab_size"], h)}
    for i in range(config["num_hidden_layers"]):
        p = f"model.layers.{i}."
        shapes |= {p + "self_attn.q_proj.weight": (q, h), p + "self_attn.k_proj.weight": (kv, h)}
        shapes |= {p + "self_attn.v_proj.weight": (kv, h), p + "self_attn.o_proj.weight": (h, q)}
        shapes[p + "block_sparse_moe.gate.weight"] = (e, h)
        for x in range(e):
            m = f"{p}block_sparse_moe.experts.{x}."
            shapes |= {m + "w1.weight": (ffn, h), m + "w3.weight": (ffn, h), m + "w2.weight": (h, ffn)}
        shapes |= {p + "input_layernorm.weight": (h,), p + "post_attention_layernorm.weight": (h,)}
    shapes |= {"model.norm.weight": (h,), "lm_head.weight": (config["vocab_size"], h)}
    return {n: torch.ones(s) if len(s) == 1 else torch.randn(s, generator=gen) * std for n, s in sorted(shapes.items())}


def _attention(
    p: dict[str, torch.Tensor], pre: str, x: torch.Tensor, heads: int, kv_heads: int, theta: float
) -> torch.Tensor:
    q = _rope(_heads(F.linear(x, p[pre + "q_proj.weight"]), heads), theta)
    k = _rope(_heads(F.linear(x, p[pre + "k_proj.weight"]), kv_heads), theta)
    v = _heads(F.linear(x, p[pre + "v_proj.weight"]), kv_heads)
    k, v = (t.repeat_interleave(heads // kv_heads, dim=1) for t in (k, v))
    out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    return F.linear(out.transpose(1, 2).flatten(2), p[pre + "o_proj.weight"])


def _moe(config: dict, p: dict[str, torch.Tensor], pre: str, x: torch.Tensor) -> torch.Tensor:
    experts, top = config["num_local_experts"], config["num_experts_per_tok"]
    probs = F.softmax(F.linear(x, p[pre + "gate.weight"]).float(), dim=-1)
    weights, chosen = probs.topk(top, dim=-1)
    weights = weights / weights.sum(-1, keepdim=True)
    mix = torch.zeros_like(probs).scatter(-1, chosen, weights)  # [B, T, E], k non-zeros per token
    out = torch.zeros_like(x)
    for e in range(experts):
        m = f"{pre}experts.{e}."
        y = F.linear(F.silu(F.linear(x, p[m + "w1.weight"])) * F.linear(x, p[m + "w3.weight"]), p[m + "w2.weight"])
        out = out + mix[..., e : e + 1] * y
    return out


def mixtral_logits(config: dict, p: dict[str, torch.Tensor], ids: torch.Tensor) -> torch.Tensor:
    """[B, T, vocab] next-token logits of a Mixtral state dict."""
    heads, kv_heads, eps = config["num_attention_heads"], config["num_key_value_heads"], config["rms_norm_eps"]
    x = p["model.embed_tokens.weight"][ids]
    for i in range(config["num_hidden_layers"]):
        pre = f"model.layers.{i}."
        h = rms(x, p[pre + "input_layernorm.weight"], eps)
        x = x + _attention(p, pre + "self_attn.", h, heads, kv_heads, config["rope_theta"])
        x = x + _moe(config, p, pre + "block_sparse_moe.", rms(x, p[pre + "post_attention_layernorm.weight"], eps))
    return F.linear(rms(x, p["model.norm.weight"], eps), p["lm_head.weight"])


# --- T5 --------------------------------------------------------------------------------------


def t5_config(vocab: int, d_model: int, layers: int, heads: int, d_ff: int) -> dict:
    """An HF ``T5Config`` (v1.1: gated-gelu, untied head) as config.json holds it."""
    return {
        "architectures": ["T5ForConditionalGeneration"],
        "model_type": "t5",
        "vocab_size": vocab,
        "d_model": d_model,
        "d_kv": d_model // heads,
        "d_ff": d_ff,
        "num_layers": layers,
        "num_decoder_layers": layers,
        "num_heads": heads,
        "relative_attention_num_buckets": 32,
        "relative_attention_max_distance": 128,
        "feed_forward_proj": "gated-gelu",
        "dense_act_fn": "gelu_new",
        "is_gated_act": True,
        "is_encoder_decoder": True,
        "layer_norm_epsilon": 1e-6,
        "dropout_rate": 0.0,
        "tie_word_embeddings": False,
        "pad_token_id": 0,
        "eos_token_id": 2,
        "decoder_start_token_id": 0,
    }


def t5_init(config: dict, seed: int, std: float = 0.05) -> dict[str, torch.Tensor]:
    """A fresh HF-named T5 state dict (normal(0, std) matrices, unit gains)."""
    gen = torch.Generator().manual_seed(seed)
    h, ff, inner = config["d_model"], config["d_ff"], config["num_heads"] * config["d_kv"]
    shapes: dict[str, tuple[int, ...]] = {"shared.weight": (config["vocab_size"], h)}
    attn = {"q.weight": (inner, h), "k.weight": (inner, h), "v.weight": (inner, h), "o.weight": (h, inner)}
    dense = {"wi_0.weight": (ff, h), "wi_1.weight": (ff, h), "wo.weight": (h, ff)}
    for stack, depth in (("encoder", config["num_layers"]), ("decoder", config["num_decoder_layers"])):
        for i in range(depth):
            b = f"{stack}.block.{i}.layer."
            shapes |= {f"{b}0.SelfAttention.{n}": s for n, s in attn.items()}
            if i == 0:
                buckets = (config["relative_attention_num_buckets"], config["num_heads"])
                shapes[f"{b}0.SelfAttention.relative_attention_bias.weight"] = buckets
            ff_layer = 1 if stack == "encoder" else 2
            if stack == "decoder":
                shapes |= {f"{b}1.EncDecAttention.{n}": s for n, s in attn.items()}
            shapes |= {f"{b}{ff_layer}.DenseReluDense.{n}": s for n, s in dense.items()}
            shapes |= {f"{b}{n}.layer_norm.weight": (h,) for n in range(ff_layer + 1)}
        shapes[f"{stack}.final_layer_norm.weight"] = (h,)
    shapes["lm_head.weight"] = (config["vocab_size"], h)
    return {n: torch.ones(s) if len(s) == 1 else torch.randn(s, generator=gen) * std for n, s in sorted(shapes.items())}


def relative_bucket(relative: torch.Tensor, bidirectional: bool, buckets: int, max_distance: int) -> torch.Tensor:
    """transformers' ``T5Attention._relative_position_bucket``: exact buckets for small offsets,
    logarithmic ones up to ``max_distance``."""
    out = torch.zeros_like(relative)
    if bidirectional:
        buckets //= 2
        out += (relative > 0).long() * buckets
        relative = relative.abs()
    else:
        relative = -torch.clamp(relative, max=0)
    exact = buckets // 2
    large = (
        exact
        + (torch.log(relative.float().clamp(min=1) / exact) / math.log(max_distance / exact) * (buckets - exact)).long()
    )
    large = torch.clamp(large, max=buckets - 1)
    return out + torch.where(relative < exact, relative, large)


def _position_bias(config: dict, table: torch.Tensor, length: int, bidirectional: bool) -> torch.Tensor:
    pos = torch.arange(length)
    bucket = relative_bucket(
        pos[None, :] - pos[:, None],
        bidirectional,
        config["relative_attention_num_buckets"],
        config["relative_attention_max_distance"],
    )
    return table[bucket].permute(2, 0, 1)[None]  # [1, H, T, T]


def _t5_attention(
    p: dict[str, torch.Tensor], pre: str, x: torch.Tensor, kv: torch.Tensor, heads: int, bias: torch.Tensor | None
) -> torch.Tensor:
    q = _heads(F.linear(x, p[pre + "q.weight"]), heads)
    k, v = (_heads(F.linear(kv, p[pre + n]), heads) for n in ("k.weight", "v.weight"))
    scores = q @ k.transpose(-1, -2)  # T5 does not scale by 1/sqrt(d)
    if bias is not None:
        scores = scores + bias
    out = F.softmax(scores.float(), dim=-1) @ v
    return F.linear(out.transpose(1, 2).flatten(2), p[pre + "o.weight"])


def _t5_ff(p: dict[str, torch.Tensor], pre: str, x: torch.Tensor) -> torch.Tensor:
    gated = F.gelu(F.linear(x, p[pre + "wi_0.weight"]), approximate="tanh") * F.linear(x, p[pre + "wi_1.weight"])
    return F.linear(gated, p[pre + "wo.weight"])


def t5_logits(config: dict, p: dict[str, torch.Tensor], source: torch.Tensor, target_in: torch.Tensor) -> torch.Tensor:
    """[B, T_dec, vocab] logits of a T5 state dict for encoder ids ``source`` and decoder inputs."""
    heads, eps = config["num_heads"], config["layer_norm_epsilon"]
    x = p["shared.weight"][source]
    bias = _position_bias(
        config, p["encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight"], x.shape[1], True
    )
    for i in range(config["num_layers"]):
        b = f"encoder.block.{i}.layer."
        x = x + _t5_attention(p, b + "0.SelfAttention.", h := rms(x, p[b + "0.layer_norm.weight"], eps), h, heads, bias)
        x = x + _t5_ff(p, b + "1.DenseReluDense.", rms(x, p[b + "1.layer_norm.weight"], eps))
    memory = rms(x, p["encoder.final_layer_norm.weight"], eps)
    y = p["shared.weight"][target_in]
    t = y.shape[1]
    table = p["decoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight"]
    causal = torch.full((t, t), float("-inf")).triu(1)[None, None]
    bias = _position_bias(config, table, t, False) + causal
    for i in range(config["num_decoder_layers"]):
        b = f"decoder.block.{i}.layer."
        y = y + _t5_attention(p, b + "0.SelfAttention.", h := rms(y, p[b + "0.layer_norm.weight"], eps), h, heads, bias)
        cross = rms(y, p[b + "1.layer_norm.weight"], eps)
        y = y + _t5_attention(p, b + "1.EncDecAttention.", cross, memory, heads, None)
        y = y + _t5_ff(p, b + "2.DenseReluDense.", rms(y, p[b + "2.layer_norm.weight"], eps))
    return F.linear(rms(y, p["decoder.final_layer_norm.weight"], eps), p["lm_head.weight"])
