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
  ``pre_feedforward_layernorm`` (the post-attention and ``post_feedforward_layernorm`` norms are
  mapped as output norms, not read); Qwen3's per-head ``q_norm``/``k_norm`` are folded into q and k.

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

Phi-3 / Phi-4 (``phi3``): Llama's layout with q|k|v fused in ``self_attn.qkv_proj.weight``
``[(H + 2·KV)·d, hidden]`` (all query rows, then the key rows, then the value rows: unequal parts
under GQA) and gate|up fused in ``mlp.gate_up_proj.weight`` ``[2·mlp, hidden]`` (gate first, as
``Phi3MLP`` chunks it)::

    model.layers.{i}.input_layernorm -> self_attn.qkv_proj (q, k, v), self_attn.o_proj (o)
    model.layers.{i}.post_attention_layernorm -> mlp.gate_up_proj (gate, up), mlp.down_proj (down)

Falcon (``falcon``; ``RefinedWebModel`` configs of the first Falcon-7B uploads): LayerNorm, GELU
MLP, ``transformer.h.{i}.``; ``self_attention.query_key_value`` holds q|k|v in one of three
layouts chosen by config.json as ``FalconAttention`` does - ``new_decoder_architecture``: per
key/value head (``num_kv_heads``, old name ``n_head_kv``) its queries, key and value;
``multi_query`` (the default): all queries then one key and one value head; neither: per head.
Parallel attention and MLP read ``ln_attn`` / ``ln_mlp`` when the block has two norms, else both
read ``input_layernorm``; a sequential block (``parallel_attn`` false) has its MLP read
``post_attention_layernorm``; ``lm_head`` is tied to ``word_embeddings`` by default::

    transformer.h.{i}.(ln_attn | input_layernorm) -> self_attention.query_key_value, self_attention.dense (o)
    transformer.h.{i}.(ln_mlp | post_attention_layernorm | input_layernorm) -> mlp.dense_h_to_4h, mlp.dense_4h_to_h

StarCoder2 (``starcoder2``): Llama's names and GQA with LayerNorm (biases everywhere, ignored)
and an ungated GELU MLP ``mlp.c_fc`` (up) / ``mlp.c_proj`` (down); head tied by default.

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
    out_norms=(
        ("attn_out_norm", "layers.{i}.post_attention_layernorm"),
        ("mlp_out_norm", "layers.{i}.post_feedforward_layernorm"),
    ),
    mlp_default_ratio=None,
    kv_heads_keys=("num_key_value_heads",),
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
    qkv_layout="per_head",
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

PHI3 = Scheme(
    family="phi3",
    norm_kind="rms",
    prefixes=("model.", ""),
    embedding="embed_tokens.weight",
    head="lm_head.weight",
    final_norm="norm",
    block="layers.{i}.",
    projections={"o": "self_attn.o_proj.weight", "down": "mlp.down_proj.weight"},
    fused_qkv="self_attn.qkv_proj.weight",
    qkv_layout="q_k_v",
    fused_gate_up="mlp.gate_up_proj.weight",
    attn_norm="layers.{i}.input_layernorm",
    mlp_norm=("layers.{i}.post_attention_layernorm",),
    mlp_default_ratio=None,
    kv_heads_keys=("num_key_value_heads",),
    head_dim_key="head_dim",
)

FALCON = Scheme(
    family="falcon",
    norm_kind="layer",
    prefixes=("transformer.", ""),
    embedding="word_embeddings.weight",
    head="lm_head.weight",
    final_norm="ln_f",
    block="h.{i}.",
    projections={
        "o": "self_attention.dense.weight",
        "up": "mlp.dense_h_to_4h.weight",
        "down": "mlp.dense_4h_to_h.weight",
    },
    fused_qkv="self_attention.query_key_value.weight",
    qkv_layout="per_head",  # neither flag: multi-head attention, q/k/v interleaved per head
    attn_norm=("h.{i}.ln_attn", "h.{i}.input_layernorm"),
    mlp_norm=("h.{i}.ln_mlp", "h.{i}.post_attention_layernorm", "h.{i}.input_layernorm"),
    hidden_keys=("hidden_size", "n_embed"),
    heads_keys=("num_attention_heads", "n_head"),
    depth_keys=("num_hidden_layers", "n_layer"),
    mlp_keys=("ffn_hidden_size",),
    variants=(
        (
            "new_decoder_architecture",
            False,
            {"qkv_layout": "kv_groups", "kv_heads_keys": ("num_kv_heads", "n_head_kv")},
        ),
        ("multi_query", True, {"qkv_layout": "q_k_v", "kv_heads": 1}),
    ),
)

STARCODER2 = Scheme(
    family="starcoder2",
    norm_kind="layer",
    prefixes=("model.", ""),
    embedding="embed_tokens.weight",
    head="lm_head.weight",
    final_norm="norm",
    block="layers.{i}.",
    projections={
        **{role: f"self_attn.{role}_proj.weight" for role in ("q", "k", "v", "o")},
        "up": "mlp.c_fc.weight",
        "down": "mlp.c_proj.weight",
    },
    attn_norm="layers.{i}.input_layernorm",
    mlp_norm=("layers.{i}.post_attention_layernorm",),
    mlp_default_ratio=None,
    kv_heads_keys=("num_key_value_heads",),
    head_dim_key="head_dim",
)

# model_type -> scheme
FAMILIES: dict[str, Scheme] = {
    **dict.fromkeys(("llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "gemma3_text"), LLAMA),
    "gpt2": GPT2,
    "gpt_neox": GPT_NEOX,
    "bert": BERT,
    "mpnet": MPNET,
    "phi3": PHI3,
    **dict.fromkeys(("falcon", "RefinedWebModel"), FALCON),
    "starcoder2": STARCODER2,
}


def roles_of_family(
    model_type: str, config: Mapping, tensors: Mapping[str, TensorInfo], architecture: str
) -> ModelRoles:
    """The roles of a checkpoint of a known ``model_type`` (Gemma's norms add 1 to their gain)."""
    offset = 1.0 if model_type.startswith("gemma") else 0.0
    return roles_from_scheme(FAMILIES[model_type], config, tensors, architecture, gain_offset=offset)
