"""The architecture families pedigree reads, as naming schemes (see :mod:`.schemes`).

Llama-style decoders (Llama, Mistral, Qwen2/Qwen3, Gemma/Gemma2/Gemma3): pre-RMSNorm, GLU MLP,
RoPE, GQA; ``model.`` prefix optional::

    model.embed_tokens.weight                          [vocab, hidden]
    model.layers.{i}.input_layernorm.weight            gain read by q/k/v
    model.layers.{i}.self_attn.{q,k,v,o}_proj.weight
    model.layers.{i}.post_attention_layernorm.weight   gain read by gate/up (Llama, Qwen, Mistral, Gemma)
    model.layers.{i}.pre_feedforward_layernorm.weight  gain read by gate/up (Gemma2, Gemma3)
    model.layers.{i}.mlp.{gate,up,down}_proj.weight
    model.norm.weight, lm_head.weight (absent when tied)

  Gemma's RMSNorm multiplies by ``1 + weight`` (a gain offset of 1); Gemma2's
  ``post_attention_layernorm`` normalises the attention *output*, so its MLP reads
  ``pre_feedforward_layernorm``; Qwen3's per-head ``q_norm``/``k_norm`` are folded into q and k.

GPT-2: pre-LayerNorm, GELU MLP; ``Conv1D`` weights stored ``[in, out]`` (transposed) and q|k|v
fused in ``attn.c_attn.weight`` ``[hidden, 3*hidden]``; ``transformer.`` prefix optional (the
original OpenAI checkpoints have none); ``lm_head`` tied to ``wte``::

    transformer.h.{i}.ln_1 -> attn.c_attn, attn.c_proj (o); ln_2 -> mlp.c_fc (up), mlp.c_proj (down)

GPT-NeoX / Pythia: pre-LayerNorm, parallel residual; ``attention.query_key_value.weight``
``[3*hidden, hidden]`` laid out per head (viewed as ``[heads, 3, head_dim, hidden]``, index 0/1/2
of the second axis is q/k/v); untied ``embed_out.weight``::

    gpt_neox.layers.{i}.input_layernorm -> attention.query_key_value, attention.dense (o)
    gpt_neox.layers.{i}.post_attention_layernorm -> mlp.dense_h_to_4h (up), mlp.dense_4h_to_h (down)

BERT encoders: POST-LayerNorm - the LayerNorm sits after each residual add, so layer i's q/k/v
read ``embeddings.LayerNorm`` (i = 0) or layer i-1's ``output.LayerNorm``, and its MLP reads the
same layer's ``attention.output.LayerNorm``; TensorFlow-converted checkpoints spell the gains
``gamma``/``beta``; the MLM decoder is tied to the word embeddings (no separate head).

MPNet encoders (sentence-transformers' all-mpnet-base-v2): post-LayerNorm like BERT, with the
projections under ``attention.attn.{q,k,v,o}`` and the attention residual's norm at
``attention.LayerNorm``; the relative-position bias (``encoder.relative_attention_bias``) is shared
by all blocks and not a role::

    embeddings.LayerNorm (block 0) or encoder.layer.{i-1}.output.LayerNorm -> attention.attn.{q,k,v}
    encoder.layer.{i}.attention.attn.o (o); attention.LayerNorm -> intermediate.dense (up), output.dense (down)
"""

from __future__ import annotations

from collections.abc import Mapping

from pedigree.indexer.adapters.base import ModelRoles
from pedigree.indexer.adapters.schemes import Scheme, roles_from_scheme
from pedigree.indexer.safetensors_format import TensorInfo

LLAMA = Scheme(
    family="llama",
    norm_kind="rms",
    prefixes=("model.", ""),
    embedding="embed_tokens.weight",
    head="lm_head.weight",
    final_norm="norm",
    block="layers.{i}.",
    projections={
        **{role: f"self_attn.{role}_proj.weight" for role in ("q", "k", "v", "o")},
        **{role: f"mlp.{role}_proj.weight" for role in ("up", "down", "gate")},
    },
    attn_norm="layers.{i}.input_layernorm",
    mlp_norm=("layers.{i}.pre_feedforward_layernorm", "layers.{i}.post_attention_layernorm"),
    qk_norms=("layers.{i}.self_attn.q_norm", "layers.{i}.self_attn.k_norm"),
    mlp_default_ratio=None,
    kv_heads_key="num_key_value_heads",
    head_dim_key="head_dim",
)

GPT2 = Scheme(
    family="gpt2",
    norm_kind="layer",
    prefixes=("transformer.", ""),
    embedding="wte.weight",
    head="lm_head.weight",
    final_norm="ln_f",
    block="h.{i}.",
    projections={"o": "attn.c_proj.weight", "up": "mlp.c_fc.weight", "down": "mlp.c_proj.weight"},
    fused_qkv="attn.c_attn.weight",
    transposed=True,
    attn_norm="h.{i}.ln_1",
    mlp_norm=("h.{i}.ln_2",),
    hidden_keys=("n_embd", "hidden_size"),
    heads_keys=("n_head", "num_attention_heads"),
    depth_keys=("n_layer", "num_hidden_layers"),
    mlp_keys=("n_inner",),
)

GPT_NEOX = Scheme(
    family="gpt_neox",
    norm_kind="layer",
    prefixes=("gpt_neox.", ""),
    embedding="embed_in.weight",
    head="embed_out.weight",
    final_norm="final_layer_norm",
    block="layers.{i}.",
    projections={
        "o": "attention.dense.weight",
        "up": "mlp.dense_h_to_4h.weight",
        "down": "mlp.dense_4h_to_h.weight",
    },
    fused_qkv="attention.query_key_value.weight",
    interleaved_heads=True,
    attn_norm="layers.{i}.input_layernorm",
    mlp_norm=("layers.{i}.post_attention_layernorm",),
)

BERT = Scheme(
    family="bert",
    norm_kind="layer",
    prefixes=("bert.", ""),
    embedding="embeddings.word_embeddings.weight",
    head=None,
    final_norm=None,
    block="encoder.layer.{i}.",
    projections={
        **{role: f"attention.self.{name}.weight" for role, name in (("q", "query"), ("k", "key"), ("v", "value"))},
        "o": "attention.output.dense.weight",
        "up": "intermediate.dense.weight",
        "down": "output.dense.weight",
    },
    first_attn_norm="embeddings.LayerNorm",
    attn_norm="encoder.layer.{prev}.output.LayerNorm",
    mlp_norm=("encoder.layer.{i}.attention.output.LayerNorm",),
    notes=("post-LayerNorm encoder: each block reads the previous block's output LayerNorm",),
)

MPNET = Scheme(
    family="mpnet",
    norm_kind="layer",
    prefixes=("mpnet.", ""),
    embedding="embeddings.word_embeddings.weight",
    head=None,
    final_norm=None,
    block="encoder.layer.{i}.",
    projections={
        **{role: f"attention.attn.{role}.weight" for role in ("q", "k", "v", "o")},
        "up": "intermediate.dense.weight",
        "down": "output.dense.weight",
    },
    first_attn_norm="embeddings.LayerNorm",
    attn_norm="encoder.layer.{prev}.output.LayerNorm",
    mlp_norm=("encoder.layer.{i}.attention.LayerNorm",),
    notes=("post-LayerNorm encoder: each block reads the previous block's output LayerNorm",),
)

# model_type -> scheme
FAMILIES: dict[str, Scheme] = {
    **dict.fromkeys(("llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "gemma3_text"), LLAMA),
    "gpt2": GPT2,
    "gpt_neox": GPT_NEOX,
    "bert": BERT,
    "mpnet": MPNET,
}


def roles_of_family(
    model_type: str, config: Mapping, tensors: Mapping[str, TensorInfo], architecture: str
) -> ModelRoles:
    """The roles of a checkpoint of a known ``model_type`` (Gemma's norms add 1 to their gain)."""
    offset = 1.0 if model_type.startswith("gemma") else 0.0
    return roles_from_scheme(FAMILIES[model_type], config, tensors, architecture, gain_offset=offset)
