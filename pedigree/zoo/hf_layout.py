"""Hugging Face state-dict names <-> the zoo's canonical names (see ``architectures``).

Most tensors map one-to-one.  Two are fused or transposed on the Hub:

* GPT-2 ``Conv1D`` weights are stored [in, out]: canonical W = storedᵀ.  ``attn.c_attn`` is
  [h, 3h] = [W_qᵀ | W_kᵀ | W_vᵀ] (contiguous thirds), its bias [b_q | b_k | b_v].
* GPT-NeoX ``attention.query_key_value`` is [3h, h] interleaved per head: viewed as
  [heads, 3, hd, h], row block (n, 0) is head n's query, (n, 1) its key, (n, 2) its value
  (HF: ``qkv.view(..., heads, 3·hd)`` then ``chunk(3)``).
* BERT's decoder weight is tied to the word embeddings and its bias is ``cls.predictions.bias``;
  tied heads (GPT-2, BERT) have no ``lm_head.weight`` in the file, as HF saves them.
"""

from __future__ import annotations

import torch

from .architectures import Spec, spec_from_config

_LLAMA = [
    ("model.layers.{i}.input_layernorm.weight", "attn_norm.w"),
    ("model.layers.{i}.self_attn.q_proj.weight", "q.w"),
    ("model.layers.{i}.self_attn.q_proj.bias", "q.b"),
    ("model.layers.{i}.self_attn.k_proj.weight", "k.w"),
    ("model.layers.{i}.self_attn.k_proj.bias", "k.b"),
    ("model.layers.{i}.self_attn.v_proj.weight", "v.w"),
    ("model.layers.{i}.self_attn.v_proj.bias", "v.b"),
    ("model.layers.{i}.self_attn.o_proj.weight", "o.w"),
    ("model.layers.{i}.post_attention_layernorm.weight", "mlp_norm.w"),
    ("model.layers.{i}.mlp.gate_proj.weight", "gate.w"),
    ("model.layers.{i}.mlp.up_proj.weight", "up.w"),
    ("model.layers.{i}.mlp.down_proj.weight", "down.w"),
]
_GPT2 = [
    ("transformer.h.{i}.ln_1.weight", "attn_norm.w"),
    ("transformer.h.{i}.ln_1.bias", "attn_norm.b"),
    ("transformer.h.{i}.attn.c_proj.weight", "o.w"),
    ("transformer.h.{i}.attn.c_proj.bias", "o.b"),
    ("transformer.h.{i}.ln_2.weight", "mlp_norm.w"),
    ("transformer.h.{i}.ln_2.bias", "mlp_norm.b"),
    ("transformer.h.{i}.mlp.c_fc.weight", "up.w"),
    ("transformer.h.{i}.mlp.c_fc.bias", "up.b"),
    ("transformer.h.{i}.mlp.c_proj.weight", "down.w"),
    ("transformer.h.{i}.mlp.c_proj.bias", "down.b"),
]
_NEOX = [
    ("gpt_neox.layers.{i}.input_layernorm.weight", "attn_norm.w"),
    ("gpt_neox.layers.{i}.input_layernorm.bias", "attn_norm.b"),
    ("gpt_neox.layers.{i}.post_attention_layernorm.weight", "mlp_norm.w"),
    ("gpt_neox.layers.{i}.post_attention_layernorm.bias", "mlp_norm.b"),
    ("gpt_neox.layers.{i}.attention.dense.weight", "o.w"),
    ("gpt_neox.layers.{i}.attention.dense.bias", "o.b"),
    ("gpt_neox.layers.{i}.mlp.dense_h_to_4h.weight", "up.w"),
    ("gpt_neox.layers.{i}.mlp.dense_h_to_4h.bias", "up.b"),
    ("gpt_neox.layers.{i}.mlp.dense_4h_to_h.weight", "down.w"),
    ("gpt_neox.layers.{i}.mlp.dense_4h_to_h.bias", "down.b"),
]
_BERT = [
    (f"bert.encoder.layer.{{i}}.{hf}.{part}", f"{canon}.{part[0]}")
    for hf, canon in (
        ("attention.self.query", "q"),
        ("attention.self.key", "k"),
        ("attention.self.value", "v"),
        ("attention.output.dense", "o"),
        ("attention.output.LayerNorm", "attn_out_norm"),
        ("intermediate.dense", "up"),
        ("output.dense", "down"),
        ("output.LayerNorm", "mlp_out_norm"),
    )
    for part in ("weight", "bias")
]
_GLOBAL = {
    "llama": [
        ("model.embed_tokens.weight", "embed"),
        ("model.norm.weight", "final_norm.w"),
        ("lm_head.weight", "head.w"),
    ],
    "gpt2": [
        ("transformer.wte.weight", "embed"),
        ("transformer.wpe.weight", "pos_embed"),
        ("transformer.ln_f.weight", "final_norm.w"),
        ("transformer.ln_f.bias", "final_norm.b"),
    ],
    "gpt_neox": [
        ("gpt_neox.embed_in.weight", "embed"),
        ("gpt_neox.final_layer_norm.weight", "final_norm.w"),
        ("gpt_neox.final_layer_norm.bias", "final_norm.b"),
        ("embed_out.weight", "head.w"),
    ],
    "bert": [
        ("bert.embeddings.word_embeddings.weight", "embed"),
        ("bert.embeddings.position_embeddings.weight", "pos_embed"),
        ("bert.embeddings.token_type_embeddings.weight", "type_embed"),
        ("bert.embeddings.LayerNorm.weight", "emb_norm.w"),
        ("bert.embeddings.LayerNorm.bias", "emb_norm.b"),
        ("cls.predictions.transform.dense.weight", "head_dense.w"),
        ("cls.predictions.transform.dense.bias", "head_dense.b"),
        ("cls.predictions.transform.LayerNorm.weight", "head_norm.w"),
        ("cls.predictions.transform.LayerNorm.bias", "head_norm.b"),
        ("cls.predictions.bias", "head.b"),
    ],
}
_LAYER = {"llama": _LLAMA, "qwen2": _LLAMA, "gpt2": _GPT2, "gpt_neox": _NEOX, "bert": _BERT}
_TRANSPOSED = {"o.w", "up.w", "down.w"}  # GPT-2 Conv1D tensors among the one-to-one names


def name_pairs(spec: Spec) -> list[tuple[str, str]]:
    """(HF name, canonical name) for every one-to-one tensor of a model (fused ones excluded)."""
    table = _GLOBAL["llama" if spec.model_type == "qwen2" else spec.model_type]
    pairs = [(hf, c) for hf, c in table if not (c == "head.w" and spec.tied)]
    for i in range(spec.layers):
        pairs += [
            (hf.format(i=i), f"layers.{i}.{c}")
            for hf, c in _LAYER[spec.model_type]
            if not (c.endswith((".b",)) and c[0] in "qkv" and not spec.qkv_bias)
        ]
    return pairs


def to_canonical(config: dict, state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """HF state dict -> canonical dict (views where possible; no copies of untouched tensors)."""
    spec = spec_from_config(config)
    gpt2 = spec.model_type == "gpt2"
    out: dict[str, torch.Tensor] = {}
    for hf, c in name_pairs(spec):
        t = state_dict[hf]
        out[c] = t.t() if gpt2 and c.split(".", 2)[-1] in _TRANSPOSED else t
    h, hd = spec.hidden, spec.head_dim
    for i in range(spec.layers):
        pre = f"layers.{i}."
        if gpt2:
            w, b = (
                state_dict[f"transformer.h.{i}.attn.c_attn.weight"],
                state_dict[f"transformer.h.{i}.attn.c_attn.bias"],
            )
            for j, part in enumerate("qkv"):
                out[pre + part + ".w"] = w[:, j * h : (j + 1) * h].t()
                out[pre + part + ".b"] = b[j * h : (j + 1) * h]
        elif spec.model_type == "gpt_neox":
            w = state_dict[f"gpt_neox.layers.{i}.attention.query_key_value.weight"].view(spec.heads, 3, hd, h)
            b = state_dict[f"gpt_neox.layers.{i}.attention.query_key_value.bias"].view(spec.heads, 3, hd)
            for j, part in enumerate("qkv"):
                out[pre + part + ".w"] = w[:, j].reshape(spec.heads * hd, h)
                out[pre + part + ".b"] = b[:, j].reshape(spec.heads * hd)
    return out


def to_hf(config: dict, canon: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Canonical dict -> HF state dict, contiguous tensors in HF naming."""
    spec = spec_from_config(config)
    gpt2 = spec.model_type == "gpt2"
    out: dict[str, torch.Tensor] = {}
    for hf, c in name_pairs(spec):
        t = canon[c]
        out[hf] = (t.t() if gpt2 and c.split(".", 2)[-1] in _TRANSPOSED else t).contiguous()
    h, hd = spec.hidden, spec.head_dim
    for i in range(spec.layers):
        pre = f"layers.{i}."
        if spec.model_type not in ("gpt2", "gpt_neox"):
            continue
        ws = [canon[pre + part + ".w"] for part in "qkv"]
        bs = [canon[pre + part + ".b"] for part in "qkv"]
        if gpt2:
            out[f"transformer.h.{i}.attn.c_attn.weight"] = torch.cat(ws, dim=0).t().contiguous()
            out[f"transformer.h.{i}.attn.c_attn.bias"] = torch.cat(bs).contiguous()
        elif spec.model_type == "gpt_neox":
            w = torch.stack([x.view(spec.heads, hd, h) for x in ws], dim=1).reshape(3 * spec.heads * hd, h)
            b = torch.stack([x.view(spec.heads, hd) for x in bs], dim=1).reshape(3 * spec.heads * hd)
            out[f"gpt_neox.layers.{i}.attention.query_key_value.weight"] = w.contiguous()
            out[f"gpt_neox.layers.{i}.attention.query_key_value.bias"] = b.contiguous()
    return out
