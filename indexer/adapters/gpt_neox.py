"""GPT-NeoX / Pythia (``GPTNeoXForCausalLM``): pre-LayerNorm, parallel residual, partial rotary.

The fused ``attention.query_key_value.weight`` is ``[3*hidden, hidden]`` laid out per head:
viewed as ``[heads, 3, head_dim, hidden]``, index 0/1/2 of the second axis is q/k/v of that head
(transformers' ``GPTNeoXAttention`` splits ``qkv.view(..., heads, 3*head_dim)``)::

    gpt_neox.embed_in.weight
    gpt_neox.layers.{i}.input_layernorm.{weight,bias}           read by query_key_value
    gpt_neox.layers.{i}.attention.query_key_value.weight        [3h, h]
    gpt_neox.layers.{i}.attention.dense.weight                  o
    gpt_neox.layers.{i}.post_attention_layernorm.{weight,bias}  read by dense_h_to_4h
    gpt_neox.layers.{i}.mlp.dense_h_to_4h.weight / dense_4h_to_h.weight
    gpt_neox.final_layer_norm.{weight,bias}; embed_out.weight (untied head)
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

MODEL_TYPES = ("gpt_neox",)


def gpt_neox_roles(config: Mapping, tensors: Mapping[str, TensorInfo], architecture: str) -> ModelRoles:
    hidden = config_int(config, "hidden_size")
    heads = config_int(config, "num_attention_heads")
    depth = config_int(config, "num_hidden_layers", high=MAX_LAYERS)
    mlp = config_int(config, "intermediate_size", default=4 * hidden)
    prefix = strip_prefix(tensors, ("gpt_neox.", ""), "embed_in.weight")

    def norm(name: str) -> NormRef:
        return NormRef(prefix + name + ".weight", prefix + name + ".bias", kind="layer")

    layers = []
    for i in range(depth):
        base = f"{prefix}layers.{i}."
        fused = base + "attention.query_key_value.weight"
        layers.append(
            LayerRoles(
                index=i,
                attn_norm=norm(f"layers.{i}.input_layernorm"),
                q=MatrixRef(fused, part=0, parts=3, interleave_heads=heads),
                k=MatrixRef(fused, part=1, parts=3, interleave_heads=heads),
                v=MatrixRef(fused, part=2, parts=3, interleave_heads=heads),
                o=MatrixRef(base + "attention.dense.weight"),
                mlp_norm=norm(f"layers.{i}.post_attention_layernorm"),
                up=MatrixRef(base + "mlp.dense_h_to_4h.weight"),
                down=MatrixRef(base + "mlp.dense_4h_to_h.weight"),
                gate=None,
                num_heads=heads,
                num_kv_heads=heads,
                head_dim=hidden // heads,
                mlp_size=mlp,
            )
        )

    return assemble_roles(
        tensors,
        architecture=architecture,
        family="gpt_neox",
        norm_kind="layer",
        hidden=hidden,
        embedding=prefix + "embed_in.weight",
        head="embed_out.weight",
        final_norm=norm("final_layer_norm"),
        layers=layers,
    )
