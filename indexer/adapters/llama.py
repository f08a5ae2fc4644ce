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

from indexer.adapters.base import (
    MAX_LAYERS,
    LayerRoles,
    MatrixRef,
    ModelRoles,
    NormRef,
    check_matrix,
    check_vector,
    config_int,
    embedding_rows,
    strip_prefix,
)
from indexer.safetensors_format import TensorInfo

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
        layer = LayerRoles(
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
        check_matrix(tensors, layer.q, heads * head_dim, hidden)
        check_matrix(tensors, layer.k, kv_heads * head_dim, hidden)
        check_matrix(tensors, layer.v, kv_heads * head_dim, hidden)
        check_matrix(tensors, layer.o, hidden, heads * head_dim)
        check_matrix(tensors, layer.up, mlp, hidden)
        check_matrix(tensors, layer.gate, mlp, hidden)
        check_matrix(tensors, layer.down, hidden, mlp)
        check_vector(tensors, layer.attn_norm.weight, hidden)
        check_vector(tensors, layer.mlp_norm.weight, hidden)
        for per_head in (q_norm, k_norm):
            check_vector(tensors, per_head.weight if per_head else None, head_dim)
        layers.append(layer)

    embedding = MatrixRef(prefix + "embed_tokens.weight")
    vocab = embedding_rows(tensors, embedding, hidden)
    head = MatrixRef("lm_head.weight") if "lm_head.weight" in tensors else None
    if head is not None:
        embedding_rows(tensors, head, hidden)
    final_norm = norm("norm.weight") if prefix + "norm.weight" in tensors else None
    return ModelRoles(
        architecture=architecture,
        family="llama",
        hidden_size=hidden,
        vocab_size=vocab,
        norm_kind="rms",
        embedding=embedding,
        head=head,
        final_norm=final_norm,
        layers=tuple(layers),
        tied=head is None,
    )
