"""GPT-2 (``GPT2LMHeadModel`` / ``GPT2Model``): pre-LayerNorm, GELU MLP, learned positions.

GPT-2 stores its projections as ``Conv1D`` weights of shape ``[in, out]`` (transposed relative to
``nn.Linear``) and fuses q|k|v into one ``attn.c_attn.weight`` of shape ``[hidden, 3*hidden]``::

    transformer.wte.weight  transformer.wpe.weight
    transformer.h.{i}.ln_1.{weight,bias}       read by c_attn
    transformer.h.{i}.attn.c_attn.weight       [h, 3h]  -> q | k | v after transposing
    transformer.h.{i}.attn.c_proj.weight       [h, h]   -> o
    transformer.h.{i}.ln_2.{weight,bias}       read by c_fc
    transformer.h.{i}.mlp.c_fc.weight          [h, 4h]  -> up
    transformer.h.{i}.mlp.c_proj.weight        [4h, h]  -> down
    transformer.ln_f.{weight,bias}; lm_head tied to wte

The original OpenAI checkpoints have no ``transformer.`` prefix; both spellings are accepted.
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

MODEL_TYPES = ("gpt2",)


def gpt2_roles(config: Mapping, tensors: Mapping[str, TensorInfo], architecture: str) -> ModelRoles:
    hidden = config_int(config, "n_embd", "hidden_size")
    heads = config_int(config, "n_head", "num_attention_heads")
    depth = config_int(config, "n_layer", "num_hidden_layers", high=MAX_LAYERS)
    mlp = config_int(config, "n_inner", default=4 * hidden)
    prefix = strip_prefix(tensors, ("transformer.", ""), "wte.weight")

    def norm(name: str) -> NormRef:
        return NormRef(prefix + name + ".weight", prefix + name + ".bias", kind="layer")

    layers = []
    for i in range(depth):
        base = f"{prefix}h.{i}."
        fused = base + "attn.c_attn.weight"
        layers.append(
            LayerRoles(
                index=i,
                attn_norm=norm(f"h.{i}.ln_1"),
                q=MatrixRef(fused, transpose=True, part=0, parts=3),
                k=MatrixRef(fused, transpose=True, part=1, parts=3),
                v=MatrixRef(fused, transpose=True, part=2, parts=3),
                o=MatrixRef(base + "attn.c_proj.weight", transpose=True),
                mlp_norm=norm(f"h.{i}.ln_2"),
                up=MatrixRef(base + "mlp.c_fc.weight", transpose=True),
                down=MatrixRef(base + "mlp.c_proj.weight", transpose=True),
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
        family="gpt2",
        norm_kind="layer",
        hidden=hidden,
        embedding=prefix + "wte.weight",
        head="lm_head.weight",
        final_norm=norm("ln_f"),
        layers=layers,
    )
