"""Llama-style decoders: Llama, Mistral, Qwen2/Qwen3, Gemma/Gemma2 (pre-RMSNorm, GLU MLP, RoPE, GQA).

Naming (``model.`` prefix optional, for checkpoints saved from the bare model)::

    model.embed_tokens.weight                       [vocab, hidden]
    model.layers.{i}.input_layernorm.weight         gain read by q/k/v
    model.layers.{i}.self_attn.{q,k,v,o}_proj.weight
    model.layers.{i}.post_attention_layernorm.weight   gain read by gate/up (Llama, Qwen, Mistral, Gemma)
    model.layers.{i}.pre_feedforward_layernorm.weight  gain read by gate/up (Gemma2, Gemma3)
    model.layers.{i}.mlp.{gate,up,down}_proj.weight
    model.norm.weight, lm_head.weight (absent when tied)

Gemma's RMSNorm multiplies by ``1 + weight``; Gemma2's ``post_attention_layernorm`` normalises the
attention *output* (not an input of any matrix), so the MLP reads ``pre_feedforward_layernorm``.
Qwen3's per-head ``q_norm``/``k_norm`` gains scale query/key rows and are folded into q and k.
"""

from __future__ import annotations

from collections.abc import Mapping

from pedigree.indexer.adapters.base import (
    MAX_LAYERS,
    LayerRoles,
    MatrixRef,
    ModelRoles,
    NormRef,
    assemble_roles,
    config_int,
    strip_prefix,
)
from pedigree.indexer.safetensors_format import TensorInfo

MODEL_TYPES = ("llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "gemma3_text")


def llama_roles(config: Mapping, tensors: Mapping[str, TensorInfo], architecture: str) -> ModelRoles:
    model_type = str(config.get("model_type", "llama"))
    hidden = config_int(config, "hidden_size")
    heads = config_int(config, "num_attention_heads")
    kv_heads = config_int(config, "num_key_value_heads", default=heads)
    head_dim = config_int(config, "head_dim", default=hidden // heads)
    mlp = config_int(config, "intermediate_size")
    depth = config_int(config, "num_hidden_layers", high=MAX_LAYERS)
    prefix = strip_prefix(tensors, ("model.", ""), "embed_tokens.weight")
    gemma = model_type.startswith("gemma")
    offset = 1.0 if gemma else 0.0

    def norm(name: str) -> NormRef:
        return NormRef(prefix + name, kind="rms", gain_offset=offset)

    layers = []
    for i in range(depth):
        base = f"{prefix}layers.{i}."
        attn, ffn = base + "self_attn.", base + "mlp."
        mlp_norm_name = "post_attention_layernorm.weight"
        if base + "pre_feedforward_layernorm.weight" in tensors:
            mlp_norm_name = "pre_feedforward_layernorm.weight"
        q_norm = norm(f"layers.{i}.self_attn.q_norm.weight") if attn + "q_norm.weight" in tensors else None
        k_norm = norm(f"layers.{i}.self_attn.k_norm.weight") if attn + "k_norm.weight" in tensors else None
        layers.append(
            LayerRoles(
                index=i,
                attn_norm=norm(f"layers.{i}.input_layernorm.weight"),
                q=MatrixRef(attn + "q_proj.weight"),
                k=MatrixRef(attn + "k_proj.weight"),
                v=MatrixRef(attn + "v_proj.weight"),
                o=MatrixRef(attn + "o_proj.weight"),
                mlp_norm=norm(f"layers.{i}.{mlp_norm_name}"),
                up=MatrixRef(ffn + "up_proj.weight"),
                down=MatrixRef(ffn + "down_proj.weight"),
                gate=MatrixRef(ffn + "gate_proj.weight"),
                num_heads=heads,
                num_kv_heads=kv_heads,
                head_dim=head_dim,
                mlp_size=mlp,
                q_norm=q_norm,
                k_norm=k_norm,
            )
        )

    return assemble_roles(
        tensors,
        architecture=architecture,
        family="llama",
        norm_kind="rms",
        hidden=hidden,
        embedding=prefix + "embed_tokens.weight",
        head="lm_head.weight",
        final_norm=norm("norm.weight"),
        layers=layers,
    )
