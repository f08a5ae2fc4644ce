"""Hugging Face state-dict names <-> the canonical names of ``decoders`` for the five families.

One-to-one names per family below; two families fuse tensors:

* Phi-3 ``self_attn.qkv_proj.weight`` = [q; k; v] (all query rows, then key rows, then value
  rows - unequal blocks under GQA, as ``Phi3Attention`` slices them) and
  ``mlp.gate_up_proj.weight`` = [gate; up] (``Phi3MLP`` chunks gate first);
* Falcon (new decoder architecture) ``self_attention.query_key_value.weight``: per key/value head
  g, the rows of the G = H/KV query heads it serves, then its key, then its value
  (``FalconAttention``: ``view(..., num_kv_heads, G + 2, head_dim)``).

Tied heads have no ``lm_head.weight`` in the file, as ``save_pretrained`` writes them.
"""

from __future__ import annotations

import torch

from .decoders import DecoderSpec, spec_from_config

_GEMMA = [
    ("model.layers.{i}.input_layernorm.weight", "attn_norm.w"),
    ("model.layers.{i}.post_attention_layernorm.weight", "attn_out_norm.w"),
    ("model.layers.{i}.pre_feedforward_layernorm.weight", "mlp_norm.w"),
    ("model.layers.{i}.post_feedforward_layernorm.weight", "mlp_out_norm.w"),
    *((f"model.layers.{{i}}.self_attn.{r}_proj.weight", f"{r}.w") for r in "qkvo"),
    *((f"model.layers.{{i}}.mlp.{r}_proj.weight", f"{r}.w") for r in ("gate", "up", "down")),
]
_LAYER: dict[str, list[tuple[str, str]]] = {
    "phi3": [
        ("model.layers.{i}.input_layernorm.weight", "attn_norm.w"),
        ("model.layers.{i}.post_attention_layernorm.weight", "mlp_norm.w"),
        ("model.layers.{i}.self_attn.o_proj.weight", "o.w"),
        ("model.layers.{i}.mlp.down_proj.weight", "down.w"),
    ],
    "falcon": [
        ("transformer.h.{i}.input_layernorm.weight", "attn_norm.w"),
        ("transformer.h.{i}.input_layernorm.bias", "attn_norm.b"),
        ("transformer.h.{i}.self_attention.dense.weight", "o.w"),
        ("transformer.h.{i}.mlp.dense_h_to_4h.weight", "up.w"),
        ("transformer.h.{i}.mlp.dense_4h_to_h.weight", "down.w"),
    ],
    "starcoder2": [
        ("model.layers.{i}.input_layernorm.weight", "attn_norm.w"),
        ("model.layers.{i}.input_layernorm.bias", "attn_norm.b"),
        ("model.layers.{i}.post_attention_layernorm.weight", "mlp_norm.w"),
        ("model.layers.{i}.post_attention_layernorm.bias", "mlp_norm.b"),
        *(
            (f"model.layers.{{i}}.self_attn.{r}_proj.{part}", f"{r}.{part[0]}")
            for r in "qkvo"
            for part in ("weight", "bias")
        ),
        *(
            (f"model.layers.{{i}}.mlp.{hf}.{part}", f"{c}.{part[0]}")
            for hf, c in (("c_fc", "up"), ("c_proj", "down"))
            for part in ("weight", "bias")
        ),
    ],
    "gemma2": _GEMMA,
    "gemma3_text": [
        *_GEMMA,
        ("model.layers.{i}.self_attn.q_norm.weight", "q_norm.w"),
        ("model.layers.{i}.self_attn.k_norm.weight", "k_norm.w"),
    ],
}
_MODEL = [("model.embed_tokens.weight", "embed"), ("model.norm.weight", "final_norm.w"), ("lm_head.weight", "head.w")]
_GLOBAL: dict[str, list[tuple[str, str]]] = {
    "phi3": _MODEL,
    "falcon": [
        ("transformer.word_embeddings.weight", "embed"),
        ("transformer.ln_f.weight", "final_norm.w"),
        ("transformer.ln_f.bias", "final_norm.b"),
        ("lm_head.weight", "head.w"),
    ],
    "starcoder2": [*_MODEL, ("model.norm.bias", "final_norm.b")],
    "gemma2": _MODEL,
    "gemma3_text": _MODEL,
}


def name_pairs(spec: DecoderSpec) -> list[tuple[str, str]]:
    """(HF name, canonical name) of every one-to-one tensor (fused ones excluded)."""
    pairs = [(hf, c) for hf, c in _GLOBAL[spec.model_type] if not (c == "head.w" and spec.tied)]
    for i in range(spec.layers):
        pairs += [(hf.format(i=i), f"layers.{i}.{c}") for hf, c in _LAYER[spec.model_type]]
    return pairs


def _falcon_groups(spec: DecoderSpec, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """[KV·(G + 2)·d, h]: per key/value head, its G query heads, its key, its value."""
    d, h = spec.head_dim, q.shape[-1]
    qs = q.reshape(spec.kv_heads, spec.group * d, h)
    return torch.cat([qs, k.reshape(spec.kv_heads, d, h), v.reshape(spec.kv_heads, d, h)], dim=1).reshape(-1, h)


def to_canonical(config: dict, state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """HF state dict -> canonical dict (differentiable views: training runs through it)."""
    spec = spec_from_config(config)
    out = {c: state_dict[hf] for hf, c in name_pairs(spec)}
    q_rows, kv_rows, d = spec.heads * spec.head_dim, spec.kv_heads * spec.head_dim, spec.head_dim
    for i in range(spec.layers):
        pre = f"layers.{i}."
        if spec.model_type == "phi3":
            qkv = state_dict[f"model.layers.{i}.self_attn.qkv_proj.weight"]
            out[pre + "q.w"], out[pre + "k.w"], out[pre + "v.w"] = qkv.split([q_rows, kv_rows, kv_rows])
            gate_up = state_dict[f"model.layers.{i}.mlp.gate_up_proj.weight"]
            out[pre + "gate.w"], out[pre + "up.w"] = gate_up.chunk(2)
        elif spec.model_type == "falcon":
            qkv = state_dict[f"transformer.h.{i}.self_attention.query_key_value.weight"]
            grouped = qkv.reshape(spec.kv_heads, spec.group + 2, d, -1)
            out[pre + "q.w"] = grouped[:, :-2].reshape(q_rows, -1)
            out[pre + "k.w"] = grouped[:, -2].reshape(kv_rows, -1)
            out[pre + "v.w"] = grouped[:, -1].reshape(kv_rows, -1)
    return out


def to_hf(config: dict, canon: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Canonical dict -> HF state dict (contiguous tensors)."""
    spec = spec_from_config(config)
    out = {hf: canon[c].contiguous() for hf, c in name_pairs(spec)}
    for i in range(spec.layers):
        pre = f"layers.{i}."
        q, k, v = (canon[pre + r + ".w"] for r in "qkv")
        if spec.model_type == "phi3":
            out[f"model.layers.{i}.self_attn.qkv_proj.weight"] = torch.cat([q, k, v]).contiguous()
            out[f"model.layers.{i}.mlp.gate_up_proj.weight"] = torch.cat([canon[pre + "gate.w"], canon[pre + "up.w"]])
        elif spec.model_type == "falcon":
            out[f"transformer.h.{i}.self_attention.query_key_value.weight"] = _falcon_groups(spec, q, k, v).contiguous()
    return out
