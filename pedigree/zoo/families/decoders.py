"""Phi-3, Falcon, StarCoder2, Gemma 2 and Gemma 3 decoders as one functional forward (plain torch).

The forward runs on *canonical* parameter names (``layouts`` converts to and from the Hugging Face
names): ``embed`` [V, h], ``final_norm``, ``head`` [V, h] when untied, and per block
``layers.{i}.``: ``attn_norm`` / ``mlp_norm`` (read by q/k/v and by the MLP), Gemma's
``attn_out_norm`` / ``mlp_out_norm`` (applied to what attention and the MLP write), Gemma 3's
per-head ``q_norm`` / ``k_norm``, ``q``/``k``/``v`` [heads·d, h], ``o`` [h, heads·d], ``gate``
(gated MLPs), ``up`` [I, h], ``down`` [h, I].  Linear maps are ``.w`` [out, in] with optional
``.b``; norms ``.w`` (gain) and ``.b`` (LayerNorm bias).

What each family does, after transformers' modeling files (modeling_phi3.py, modeling_falcon.py,
modeling_starcoder2.py, modeling_gemma2.py, modeling_gemma3.py):

* Phi-3: Llama's block (RMSNorm, SwiGLU, RoPE on ``partial_rotary_factor`` of each head, GQA);
* Falcon (``new_decoder_architecture`` with one norm per block, as Falcon2-11B): LayerNorm,
  attention and GELU MLP in parallel reading the same ``input_layernorm``, RoPE, GQA, no biases;
* StarCoder2: LayerNorm, GQA, RoPE, biases on every linear map, ungated ``gelu_pytorch_tanh`` MLP;
* Gemma 2: RMSNorm scaling by ``1 + weight``, embeddings × √h, scores scaled by
  ``query_pre_attn_scalar``^-½ and soft-capped (tanh), norms before *and after* attention and MLP,
  gated ``gelu_pytorch_tanh`` MLP, final logits soft-capped;
* Gemma 3: Gemma 2 without soft-capping, with RMS ``q_norm``/``k_norm`` (``1 + weight``) on each
  head before RoPE, and RoPE base ``rope_local_base_freq`` on sliding-window layers.

Sliding windows are written to config.json but the zoo trains on sequences shorter than the
window, where a sliding-window mask is the causal mask.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

ARCHITECTURES = {
    "phi3": "Phi3ForCausalLM",
    "falcon": "FalconForCausalLM",
    "starcoder2": "Starcoder2ForCausalLM",
    "gemma2": "Gemma2ForCausalLM",
    "gemma3_text": "Gemma3ForCausalLM",
}
GEMMAS = ("gemma2", "gemma3_text")


@dataclass(frozen=True)
class DecoderSpec:
    """What the forward pass needs, parsed from an HF ``config.json``."""

    model_type: str
    vocab_size: int
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int
    norm: str  # rms | layer
    norm_eps: float
    gain_offset: float  # Gemma: the norm multiplies by 1 + weight
    act: str  # silu_glu | gelu_tanh_glu | gelu_tanh | gelu
    parallel: bool  # Falcon: attention and MLP read the same norm, their outputs are summed
    out_norms: bool  # Gemma: norms on what attention and the MLP write
    qk_norms: bool  # Gemma 3
    rotary_dims: int
    rope_thetas: tuple[float, ...]  # per block
    attn_scale: float
    attn_softcap: float | None
    final_softcap: float | None
    embed_scale: float
    tied: bool
    bias: bool  # biases on every linear map (StarCoder2)

    @property
    def glu(self) -> bool:
        return self.act.endswith("_glu")

    @property
    def group(self) -> int:
        return self.heads // self.kv_heads


@dataclass(frozen=True)
class DecoderDims:
    """Sizes of one zoo member."""

    hidden: int = 64
    layers: int = 2
    heads: int = 4
    kv_heads: int = 2
    intermediate: int = 128
    max_positions: int = 128


def _gemma3_thetas(config: dict) -> tuple[float, ...]:
    types = config.get("layer_types") or ["full_attention"] * config["num_hidden_layers"]
    local, full = float(config.get("rope_local_base_freq", 10000.0)), float(config.get("rope_theta", 1e6))
    return tuple(local if t == "sliding_attention" else full for t in types)


def spec_from_config(config: dict) -> DecoderSpec:
    """Parse an HF config of one of the five model types (the fields the zoo writes)."""
    mt = config["model_type"]
    h, heads, layers = config["hidden_size"], config["num_attention_heads"], config["num_hidden_layers"]
    theta = float(config.get("rope_theta", 10000.0))
    common = {"model_type": mt, "vocab_size": config["vocab_size"], "hidden": h, "layers": layers, "heads": heads}
    if mt == "phi3":
        hd = h // heads
        return DecoderSpec(
            **common,
            kv_heads=config.get("num_key_value_heads") or heads,
            head_dim=hd,
            intermediate=config["intermediate_size"],
            norm="rms",
            norm_eps=config["rms_norm_eps"],
            gain_offset=0.0,
            act="silu_glu",
            parallel=False,
            out_norms=False,
            qk_norms=False,
            rotary_dims=int(hd * config.get("partial_rotary_factor", 1.0)),
            rope_thetas=(theta,) * layers,
            attn_scale=hd**-0.5,
            attn_softcap=None,
            final_softcap=None,
            embed_scale=1.0,
            tied=bool(config.get("tie_word_embeddings", False)),
            bias=False,
        )
    if mt == "falcon":
        if not config.get("new_decoder_architecture") or config.get("num_ln_in_parallel_attn") != 1:
            raise ValueError("the zoo's Falcon is the new decoder architecture with one norm per block")
        hd = h // heads
        return DecoderSpec(
            **common,
            kv_heads=config["num_kv_heads"],
            head_dim=hd,
            intermediate=config.get("ffn_hidden_size") or 4 * h,
            norm="layer",
            norm_eps=config["layer_norm_epsilon"],
            gain_offset=0.0,
            act="gelu",
            parallel=True,
            out_norms=False,
            qk_norms=False,
            rotary_dims=hd,
            rope_thetas=(theta,) * layers,
            attn_scale=hd**-0.5,
            attn_softcap=None,
            final_softcap=None,
            embed_scale=1.0,
            tied=bool(config.get("tie_word_embeddings", True)),
            bias=bool(config.get("bias", False)),
        )
    if mt == "starcoder2":
        hd = h // heads
        return DecoderSpec(
            **common,
            kv_heads=config["num_key_value_heads"],
            head_dim=hd,
            intermediate=config["intermediate_size"],
            norm="layer",
            norm_eps=config["norm_epsilon"],
            gain_offset=0.0,
            act="gelu_tanh",
            parallel=False,
            out_norms=False,
            qk_norms=False,
            rotary_dims=hd,
            rope_thetas=(theta,) * layers,
            attn_scale=hd**-0.5,
            attn_softcap=None,
            final_softcap=None,
            embed_scale=1.0,
            tied=bool(config.get("tie_word_embeddings", True)),
            bias=bool(config.get("use_bias", True)),
        )
    if mt in GEMMAS:
        hd = config["head_dim"]
        return DecoderSpec(
            **common,
            kv_heads=config["num_key_value_heads"],
            head_dim=hd,
            intermediate=config["intermediate_size"],
            norm="rms",
            norm_eps=config["rms_norm_eps"],
            gain_offset=1.0,
            act="gelu_tanh_glu",
            parallel=False,
            out_norms=True,
            qk_norms=mt == "gemma3_text",
            rotary_dims=hd,
            rope_thetas=_gemma3_thetas(config) if mt == "gemma3_text" else (theta,) * layers,
            attn_scale=float(config["query_pre_attn_scalar"]) ** -0.5,
            attn_softcap=config.get("attn_logit_softcapping"),
            final_softcap=config.get("final_logit_softcapping"),
            embed_scale=math.sqrt(h),
            tied=bool(config.get("tie_word_embeddings", True)),
            bias=False,
        )
    raise ValueError(f"unsupported model_type {mt!r}")


def canonical_shapes(spec: DecoderSpec) -> dict[str, tuple[int, ...]]:
    """Canonical parameter names and shapes, in a fixed order (the init order)."""
    h, q_out, kv_out = spec.hidden, spec.heads * spec.head_dim, spec.kv_heads * spec.head_dim
    shapes: dict[str, tuple[int, ...]] = {"embed": (spec.vocab_size, h)}

    def norm(name: str, size: int = h) -> None:
        shapes[name + ".w"] = (size,)
        if spec.norm == "layer":
            shapes[name + ".b"] = (size,)

    def linear(name: str, out: int, inp: int) -> None:
        shapes[name + ".w"] = (out, inp)
        if spec.bias:
            shapes[name + ".b"] = (out,)

    for i in range(spec.layers):
        pre = f"layers.{i}."
        norm(pre + "attn_norm")
        linear(pre + "q", q_out, h)
        linear(pre + "k", kv_out, h)
        linear(pre + "v", kv_out, h)
        linear(pre + "o", h, q_out)
        if spec.qk_norms:
            norm(pre + "q_norm", spec.head_dim)
            norm(pre + "k_norm", spec.head_dim)
        if spec.out_norms:
            norm(pre + "attn_out_norm")
            norm(pre + "mlp_out_norm")
        if not spec.parallel:
            norm(pre + "mlp_norm")
        if spec.glu:
            linear(pre + "gate", spec.intermediate, h)
        linear(pre + "up", spec.intermediate, h)
        linear(pre + "down", h, spec.intermediate)
    norm("final_norm")
    if not spec.tied:
        shapes["head.w"] = (spec.vocab_size, h)
    return shapes


def init_canonical(spec: DecoderSpec, seed: int, std: float = 0.02) -> dict[str, torch.Tensor]:
    """Fresh float32 parameters: N(0, std²) matrices (``o``/``down`` scaled by 1/√(2L)), zero
    biases, gains that multiply by one (Gemma's ``1 + weight``: zeros)."""
    gen = torch.Generator().manual_seed(seed)
    out: dict[str, torch.Tensor] = {}
    for name, shape in canonical_shapes(spec).items():
        if name.endswith(".b"):
            out[name] = torch.zeros(shape)
        elif len(shape) == 1:
            out[name] = torch.full(shape, 1.0 - spec.gain_offset)
        else:
            scale = std / math.sqrt(2 * spec.layers) if name.endswith(("o.w", "down.w")) else std
            out[name] = torch.randn(shape, generator=gen) * scale
    return out


def norm(spec: DecoderSpec, x: torch.Tensor, p: dict[str, torch.Tensor], name: str) -> torch.Tensor:
    """RMSNorm (g + offset) ⊙ x / √(mean x² + ε), or LayerNorm."""
    if spec.norm == "rms":
        return (p[name + ".w"] + spec.gain_offset) * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + spec.norm_eps))
    return F.layer_norm(x, (x.shape[-1],), p[name + ".w"], p[name + ".b"], spec.norm_eps)


def linear(x: torch.Tensor, p: dict[str, torch.Tensor], name: str) -> torch.Tensor:
    return F.linear(x, p[name + ".w"], p.get(name + ".b"))


def _rope(x: torch.Tensor, theta: float, dims: int) -> torch.Tensor:
    """HF's rotate_half RoPE on the first ``dims`` of each head (x: [B, heads, T, d])."""
    t = x.shape[-2]
    inv = 1.0 / (theta ** (torch.arange(0, dims, 2, dtype=torch.float64) / dims))
    freqs = torch.outer(torch.arange(t, dtype=torch.float64), inv)
    emb = torch.cat([freqs, freqs], dim=-1)
    cos, sin = emb.cos().to(x.dtype), emb.sin().to(x.dtype)
    xr, xp = x[..., :dims], x[..., dims:]
    rotated = torch.cat([-xr[..., dims // 2 :], xr[..., : dims // 2]], dim=-1)
    return torch.cat([xr * cos + rotated * sin, xp], dim=-1)


def attention(spec: DecoderSpec, x: torch.Tensor, p: dict[str, torch.Tensor], i: int) -> torch.Tensor:
    pre = f"layers.{i}."
    b, t, _ = x.shape
    q = linear(x, p, pre + "q").view(b, t, spec.heads, spec.head_dim).transpose(1, 2)
    k = linear(x, p, pre + "k").view(b, t, spec.kv_heads, spec.head_dim).transpose(1, 2)
    v = linear(x, p, pre + "v").view(b, t, spec.kv_heads, spec.head_dim).transpose(1, 2)
    if spec.qk_norms:
        q, k = norm(spec, q, p, pre + "q_norm"), norm(spec, k, p, pre + "k_norm")
    q, k = _rope(q, spec.rope_thetas[i], spec.rotary_dims), _rope(k, spec.rope_thetas[i], spec.rotary_dims)
    if spec.group > 1:
        k, v = k.repeat_interleave(spec.group, dim=1), v.repeat_interleave(spec.group, dim=1)
    scores = (q @ k.transpose(-1, -2)) * spec.attn_scale
    if spec.attn_softcap is not None:
        scores = torch.tanh(scores / spec.attn_softcap) * spec.attn_softcap
    causal = torch.ones(t, t, dtype=torch.bool).tril()
    scores = scores.masked_fill(~causal, float("-inf"))
    out = torch.softmax(scores, dim=-1) @ v
    return linear(out.transpose(1, 2).reshape(b, t, spec.heads * spec.head_dim), p, pre + "o")


def mlp(spec: DecoderSpec, x: torch.Tensor, p: dict[str, torch.Tensor], pre: str) -> torch.Tensor:
    if spec.act == "silu_glu":
        hidden = F.silu(linear(x, p, pre + "gate")) * linear(x, p, pre + "up")
    elif spec.act == "gelu_tanh_glu":
        hidden = F.gelu(linear(x, p, pre + "gate"), approximate="tanh") * linear(x, p, pre + "up")
    else:
        hidden = F.gelu(linear(x, p, pre + "up"), approximate="tanh" if spec.act == "gelu_tanh" else "none")
    return linear(hidden, p, pre + "down")


def forward(spec: DecoderSpec, p: dict[str, torch.Tensor], ids: torch.Tensor) -> torch.Tensor:
    """Next-token logits [B, T, V]."""
    x = p["embed"][ids] * spec.embed_scale if spec.embed_scale != 1.0 else p["embed"][ids]
    for i in range(spec.layers):
        pre = f"layers.{i}."
        if spec.parallel:
            normed = norm(spec, x, p, pre + "attn_norm")
            x = x + attention(spec, normed, p, i) + mlp(spec, normed, p, pre)
            continue
        a = attention(spec, norm(spec, x, p, pre + "attn_norm"), p, i)
        x = x + (norm(spec, a, p, pre + "attn_out_norm") if spec.out_norms else a)
        m = mlp(spec, norm(spec, x, p, pre + "mlp_norm"), p, pre)
        x = x + (norm(spec, m, p, pre + "mlp_out_norm") if spec.out_norms else m)
    x = norm(spec, x, p, "final_norm")
    logits = F.linear(x, p["embed"] if spec.tied else p["head.w"])
    if spec.final_softcap is not None:
        logits = torch.tanh(logits / spec.final_softcap) * spec.final_softcap
    return logits
