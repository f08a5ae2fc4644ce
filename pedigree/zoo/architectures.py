"""The five zoo architectures as one functional transformer over *canonical* parameter names.

Hugging Face stores the same maths under five naming schemes (``model.layers.3.mlp.up_proj``,
``transformer.h.3.mlp.c_fc`` stored transposed, NeoX's head-interleaved fused ``query_key_value``,
...).  The zoo computes on one canonical dictionary (``hf_layout`` converts both ways):

* ``embed`` [V, h]; ``pos_embed`` [P, h] (GPT-2, BERT); ``type_embed`` [2, h], ``emb_norm`` (BERT);
* per layer ``layers.{i}.``: ``attn_norm``/``mlp_norm`` (pre-norm models) or ``attn_out_norm``/
  ``mlp_out_norm`` (BERT's post-LN), ``q``/``k``/``v`` [heads*hd, h], ``o`` [h, heads*hd],
  ``gate`` (SwiGLU only), ``up`` [I, h], ``down`` [h, I];
* ``final_norm`` (pre-norm), ``head`` [V, h] (untied models), BERT's ``head_dense``/``head_norm``
  and decoder bias ``head.b``.

Linear maps are ``.w`` [out, in] (x ↦ x Wᵀ + b, row-vector convention) with optional ``.b``; norms
are ``.w`` (gain) and ``.b`` (LayerNorm bias).  ``forward`` reproduces HF exactly: RMSNorm
x·rsqrt(mean x² + ε)·g, LayerNorm, RoPE with HF's rotate_half pairing (dims j and j + r/2) on the
first r = rotary dims of each head, GQA by repeat_interleave (q head n reads kv head n // G),
SwiGLU down(silu(gate x) ⊙ up x), gelu_new (tanh) for GPT-2 and exact GELU for NeoX/BERT,
sequential / parallel (NeoX) / post-LN (BERT) residuals, tied or untied heads.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

ARCHITECTURES = {
    "llama": "LlamaForCausalLM",
    "qwen2": "Qwen2ForCausalLM",
    "gpt2": "GPT2LMHeadModel",
    "gpt_neox": "GPTNeoXForCausalLM",
    "bert": "BertForMaskedLM",
}


@dataclass(frozen=True)
class Spec:
    """Everything the forward pass needs, parsed from an HF ``config.json``."""

    model_type: str
    vocab_size: int
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int
    max_positions: int
    norm: str  # "rms" | "layer"
    norm_eps: float
    act: str  # "silu_glu" | "gelu_tanh" | "gelu"
    rotary_dims: int  # 0: no rotary embedding
    rope_theta: float
    residual: str  # "sequential" | "parallel" | "post"
    tied: bool
    qkv_bias: bool
    dense_bias: bool  # biases on o, up, down

    @property
    def glu(self) -> bool:
        return self.act == "silu_glu"

    @property
    def causal(self) -> bool:
        return self.model_type != "bert"

    @property
    def learned_positions(self) -> bool:
        return self.model_type in ("gpt2", "bert")

    @property
    def group(self) -> int:
        """q heads per kv head (GQA group size G)."""
        return self.heads // self.kv_heads


@dataclass(frozen=True)
class Dims:
    """Sizes of one model; ``kv_heads`` 0 means "as many as heads"."""

    hidden: int
    layers: int
    heads: int
    intermediate: int
    kv_heads: int = 0
    max_positions: int = 512
    rotary_pct: float = 0.25


def spec_from_config(config: dict) -> Spec:
    """Parse an HF ``config.json`` dictionary of one of the five model types."""
    mt = config["model_type"]
    if mt == "gpt2":
        h, heads = config["n_embd"], config["n_head"]
        return Spec(
            mt,
            config["vocab_size"],
            h,
            config["n_layer"],
            heads,
            heads,
            h // heads,
            config.get("n_inner") or 4 * h,
            config["n_positions"],
            "layer",
            config["layer_norm_epsilon"],
            "gelu_tanh",
            0,
            0.0,
            "sequential",
            True,
            True,
            True,
        )
    h, heads = config["hidden_size"], config["num_attention_heads"]
    if mt in ("llama", "qwen2"):
        hd = config.get("head_dim") or h // heads
        return Spec(
            mt,
            config["vocab_size"],
            h,
            config["num_hidden_layers"],
            heads,
            config.get("num_key_value_heads") or heads,
            hd,
            config["intermediate_size"],
            config["max_position_embeddings"],
            "rms",
            config["rms_norm_eps"],
            "silu_glu",
            hd,
            float(config.get("rope_theta", 10000.0)),
            "sequential",
            bool(config.get("tie_word_embeddings")),
            mt == "qwen2" or bool(config.get("attention_bias")),
            False,
        )
    if mt == "gpt_neox":
        hd = h // heads
        return Spec(
            mt,
            config["vocab_size"],
            h,
            config["num_hidden_layers"],
            heads,
            heads,
            hd,
            config["intermediate_size"],
            config["max_position_embeddings"],
            "layer",
            config["layer_norm_eps"],
            "gelu",
            int(hd * config.get("rotary_pct", 0.25)),
            float(config.get("rotary_emb_base", 10000)),
            "parallel" if config.get("use_parallel_residual", True) else "sequential",
            bool(config.get("tie_word_embeddings")),
            True,
            True,
        )
    if mt == "bert":
        return Spec(
            mt,
            config["vocab_size"],
            h,
            config["num_hidden_layers"],
            heads,
            heads,
            h // heads,
            config["intermediate_size"],
            config["max_position_embeddings"],
            "layer",
            config["layer_norm_eps"],
            "gelu",
            0,
            0.0,
            "post",
            True,
            True,
            True,
        )
    raise ValueError(f"unsupported model_type {mt!r}")


def make_config(model_type: str, dims: Dims, vocab_size: int, ids: dict[str, int | None], dtype: str) -> dict:
    """An HF ``config.json`` dictionary (fields as ``save_pretrained`` writes them)."""
    common = {
        "architectures": [ARCHITECTURES[model_type]],
        "model_type": model_type,
        "torch_dtype": dtype,
        "transformers_version": "4.46.0",
        "use_cache": True,
        "vocab_size": vocab_size,
        "initializer_range": 0.02,
    }
    kv = dims.kv_heads or dims.heads
    if model_type in ("llama", "qwen2"):
        cfg = {
            "attention_dropout": 0.0,
            "bos_token_id": ids["bos"] if ids["bos"] is not None else ids["eos"],
            "eos_token_id": ids["eos"],
            "hidden_act": "silu",
            "hidden_size": dims.hidden,
            "intermediate_size": dims.intermediate,
            "max_position_embeddings": dims.max_positions,
            "num_attention_heads": dims.heads,
            "num_hidden_layers": dims.layers,
            "num_key_value_heads": kv,
            "rms_norm_eps": 1e-6,
            "rope_scaling": None,
            "rope_theta": 10000.0,
            "tie_word_embeddings": False,
        }
        if model_type == "llama":
            cfg.update(attention_bias=False, head_dim=dims.hidden // dims.heads, mlp_bias=False, pretraining_tp=1)
        else:
            cfg.update(max_window_layers=dims.layers, sliding_window=None, use_sliding_window=False)
    elif model_type == "gpt2":
        cfg = {
            "activation_function": "gelu_new",
            "attn_pdrop": 0.0,
            "bos_token_id": ids["bos"],
            "embd_pdrop": 0.0,
            "eos_token_id": ids["eos"],
            "layer_norm_epsilon": 1e-5,
            "n_embd": dims.hidden,
            "n_head": dims.heads,
            "n_inner": dims.intermediate,
            "n_layer": dims.layers,
            "n_positions": dims.max_positions,
            "reorder_and_upcast_attn": False,
            "resid_pdrop": 0.0,
            "scale_attn_by_inverse_layer_idx": False,
            "scale_attn_weights": True,
            "tie_word_embeddings": True,
        }
    elif model_type == "gpt_neox":
        cfg = {
            "attention_bias": True,
            "attention_dropout": 0.0,
            "bos_token_id": ids["bos"],
            "classifier_dropout": 0.1,
            "eos_token_id": ids["eos"],
            "hidden_act": "gelu",
            "hidden_dropout": 0.0,
            "hidden_size": dims.hidden,
            "intermediate_size": dims.intermediate,
            "layer_norm_eps": 1e-5,
            "max_position_embeddings": dims.max_positions,
            "num_attention_heads": dims.heads,
            "num_hidden_layers": dims.layers,
            "rope_scaling": None,
            "rotary_emb_base": 10000,
            "rotary_pct": dims.rotary_pct,
            "tie_word_embeddings": False,
            "use_parallel_residual": True,
        }
    elif model_type == "bert":
        cfg = {
            "attention_probs_dropout_prob": 0.0,
            "classifier_dropout": None,
            "hidden_act": "gelu",
            "hidden_dropout_prob": 0.0,
            "hidden_size": dims.hidden,
            "intermediate_size": dims.intermediate,
            "layer_norm_eps": 1e-12,
            "max_position_embeddings": dims.max_positions,
            "num_attention_heads": dims.heads,
            "num_hidden_layers": dims.layers,
            "pad_token_id": ids["pad"],
            "position_embedding_type": "absolute",
            "type_vocab_size": 2,
        }
    else:
        raise ValueError(f"unsupported model_type {model_type!r}")
    return dict(sorted({**common, **cfg}.items()))


def resize_config(
    config: dict, *, layers: int | None = None, intermediate: int | None = None, vocab_size: int | None = None
) -> dict:
    """A copy of an HF config with new layer count / MLP width / vocabulary size (own field names)."""
    gpt2 = config["model_type"] == "gpt2"
    out = dict(config)
    if layers is not None:
        out["n_layer" if gpt2 else "num_hidden_layers"] = layers
        if "max_window_layers" in out:
            out["max_window_layers"] = layers
    if intermediate is not None:
        out["n_inner" if gpt2 else "intermediate_size"] = intermediate
    if vocab_size is not None:
        out["vocab_size"] = vocab_size
    return out


def canonical_shapes(spec: Spec) -> dict[str, tuple[int, ...]]:
    """Canonical parameter names and shapes, in a fixed order (the init order)."""
    h, q_out, kv_out, inter = spec.hidden, spec.heads * spec.head_dim, spec.kv_heads * spec.head_dim, spec.intermediate
    layer_norm = spec.norm == "layer"
    shapes: dict[str, tuple[int, ...]] = {"embed": (spec.vocab_size, h)}

    def norm(name: str) -> None:
        shapes[name + ".w"] = (h,)
        if layer_norm:
            shapes[name + ".b"] = (h,)

    def linear(name: str, out: int, inp: int, bias: bool) -> None:
        shapes[name + ".w"] = (out, inp)
        if bias:
            shapes[name + ".b"] = (out,)

    if spec.learned_positions:
        shapes["pos_embed"] = (spec.max_positions, h)
    if spec.model_type == "bert":
        shapes["type_embed"] = (2, h)
        norm("emb_norm")
    for i in range(spec.layers):
        pre = f"layers.{i}."
        if spec.residual != "post":
            norm(pre + "attn_norm")
        linear(pre + "q", q_out, h, spec.qkv_bias)
        linear(pre + "k", kv_out, h, spec.qkv_bias)
        linear(pre + "v", kv_out, h, spec.qkv_bias)
        linear(pre + "o", h, q_out, spec.dense_bias)
        norm(pre + ("attn_out_norm" if spec.residual == "post" else "mlp_norm"))
        if spec.glu:
            linear(pre + "gate", inter, h, False)
        linear(pre + "up", inter, h, spec.dense_bias)
        linear(pre + "down", h, inter, spec.dense_bias)
        if spec.residual == "post":
            norm(pre + "mlp_out_norm")
    if spec.residual != "post":
        norm("final_norm")
    if spec.model_type == "bert":
        linear("head_dense", h, h, True)
        norm("head_norm")
        shapes["head.b"] = (spec.vocab_size,)
    elif not spec.tied:
        shapes["head.w"] = (spec.vocab_size, h)
    return shapes


def init_canonical(spec: Spec, seed: int, std: float = 0.02) -> dict[str, torch.Tensor]:
    """Fresh float32 parameters: N(0, std²) matrices (residual writers ``o``/``down`` scaled by
    1/√(2L), GPT-2 style), zero biases, unit norm gains."""
    gen = torch.Generator().manual_seed(seed)
    out: dict[str, torch.Tensor] = {}
    for name, shape in canonical_shapes(spec).items():
        if name.endswith(".b"):
            out[name] = torch.zeros(shape)
        elif len(shape) == 1:
            out[name] = torch.ones(shape)
        else:
            scale = std / math.sqrt(2 * spec.layers) if name.endswith(("o.w", "down.w")) else std
            out[name] = torch.randn(shape, generator=gen) * scale
    return out


def norm(spec: Spec, x: torch.Tensor, p: dict[str, torch.Tensor], name: str) -> torch.Tensor:
    """RMSNorm g ⊙ x / √(mean x² + ε), or LayerNorm g ⊙ (x − μ)/√(σ² + ε) + b."""
    if spec.norm == "rms":
        return p[name + ".w"] * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + spec.norm_eps))
    return F.layer_norm(x, (x.shape[-1],), p[name + ".w"], p[name + ".b"], spec.norm_eps)


def linear(x: torch.Tensor, p: dict[str, torch.Tensor], name: str) -> torch.Tensor:
    """x Wᵀ + b."""
    return F.linear(x, p[name + ".w"], p.get(name + ".b"))


def rope_tables(spec: Spec, length: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """cos/sin of position·θ^(−2j/r), duplicated as [f, f] (HF's rotate_half layout)."""
    r = spec.rotary_dims
    inv = 1.0 / (spec.rope_theta ** (torch.arange(0, r, 2, dtype=torch.float64) / r))
    freqs = torch.outer(torch.arange(length, dtype=torch.float64), inv)
    emb = torch.cat([freqs, freqs], dim=-1)
    return emb.cos().to(dtype), emb.sin().to(dtype)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x·cos + rotate_half(x)·sin on the first r dims of each head (r = cos.shape[-1])."""
    r = cos.shape[-1]
    xr, xp = x[..., :r], x[..., r:]
    rotated = torch.cat([-xr[..., r // 2 :], xr[..., : r // 2]], dim=-1)
    return torch.cat([xr * cos + rotated * sin, xp], dim=-1)


def attention(spec: Spec, x: torch.Tensor, p: dict[str, torch.Tensor], pre: str, rope) -> torch.Tensor:
    """Multi-head (GQA) scaled dot-product attention softmax(q kᵀ/√hd) v, then ``o``."""
    b, t, _ = x.shape
    q = linear(x, p, pre + "q").view(b, t, spec.heads, spec.head_dim).transpose(1, 2)
    k = linear(x, p, pre + "k").view(b, t, spec.kv_heads, spec.head_dim).transpose(1, 2)
    v = linear(x, p, pre + "v").view(b, t, spec.kv_heads, spec.head_dim).transpose(1, 2)
    if rope is not None:
        q, k = apply_rope(q, *rope), apply_rope(k, *rope)
    if spec.group > 1:
        k, v = k.repeat_interleave(spec.group, dim=1), v.repeat_interleave(spec.group, dim=1)
    out = F.scaled_dot_product_attention(q, k, v, is_causal=spec.causal)
    return linear(out.transpose(1, 2).reshape(b, t, spec.heads * spec.head_dim), p, pre + "o")


def mlp(spec: Spec, x: torch.Tensor, p: dict[str, torch.Tensor], pre: str) -> torch.Tensor:
    """down(silu(gate x) ⊙ up x) or down(gelu(up x))."""
    if spec.glu:
        hidden = F.silu(linear(x, p, pre + "gate")) * linear(x, p, pre + "up")
    else:
        hidden = F.gelu(linear(x, p, pre + "up"), approximate="tanh" if spec.act == "gelu_tanh" else "none")
    return linear(hidden, p, pre + "down")


def hidden_states(spec: Spec, p: dict[str, torch.Tensor], ids: torch.Tensor) -> torch.Tensor:
    """Final hidden states [B, T, h] (after the final norm / last post-LN)."""
    t = ids.shape[1]
    x = p["embed"][ids]
    if spec.learned_positions:
        x = x + p["pos_embed"][:t]
    if spec.model_type == "bert":
        x = norm(spec, x + p["type_embed"][0], p, "emb_norm")
    rope = rope_tables(spec, t, x.dtype) if spec.rotary_dims else None
    for i in range(spec.layers):
        pre = f"layers.{i}."
        if spec.residual == "post":
            x = norm(spec, x + attention(spec, x, p, pre, rope), p, pre + "attn_out_norm")
            x = norm(spec, x + mlp(spec, x, p, pre), p, pre + "mlp_out_norm")
        elif spec.residual == "parallel":
            x = (
                x
                + attention(spec, norm(spec, x, p, pre + "attn_norm"), p, pre, rope)
                + mlp(spec, norm(spec, x, p, pre + "mlp_norm"), p, pre)
            )
        else:
            x = x + attention(spec, norm(spec, x, p, pre + "attn_norm"), p, pre, rope)
            x = x + mlp(spec, norm(spec, x, p, pre + "mlp_norm"), p, pre)
    return x if spec.residual == "post" else norm(spec, x, p, "final_norm")


def forward(spec: Spec, p: dict[str, torch.Tensor], ids: torch.Tensor) -> torch.Tensor:
    """Logits [B, T, V]: next-token (causal models) or masked-token (BERT's MLM head)."""
    x = hidden_states(spec, p, ids)
    if spec.model_type == "bert":
        x = norm(spec, F.gelu(linear(x, p, "head_dense")), p, "head_norm")
        return F.linear(x, p["embed"], p["head.b"])
    return F.linear(x, p["embed"] if spec.tied else p["head.w"])
