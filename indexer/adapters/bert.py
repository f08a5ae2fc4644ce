"""BERT encoders (``BertForMaskedLM`` / ``BertModel`` / other BERT heads): POST-LayerNorm, GELU MLP.

In a post-LN block the LayerNorm sits *after* each residual add, so the gain a matrix reads comes
from the previous norm: layer i's q/k/v read ``embeddings.LayerNorm`` (i = 0) or layer i-1's
``output.LayerNorm``; its MLP reads the same layer's ``attention.output.LayerNorm``::

    bert.embeddings.word_embeddings.weight  (+ position / token_type embeddings)
    bert.embeddings.LayerNorm.{weight,bias}
    bert.encoder.layer.{i}.attention.self.{query,key,value}.weight
    bert.encoder.layer.{i}.attention.output.dense.weight          o
    bert.encoder.layer.{i}.attention.output.LayerNorm.{weight,bias}
    bert.encoder.layer.{i}.intermediate.dense.weight              up
    bert.encoder.layer.{i}.output.dense.weight                    down
    bert.encoder.layer.{i}.output.LayerNorm.{weight,bias}

Old TensorFlow-converted checkpoints call LayerNorm parameters ``gamma``/``beta``; both work.
The MLM decoder is tied to the word embeddings, so there is no separate head.
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

MODEL_TYPES = ("bert",)


def bert_roles(config: Mapping, tensors: Mapping[str, TensorInfo], architecture: str) -> ModelRoles:
    hidden = config_int(config, "hidden_size")
    heads = config_int(config, "num_attention_heads")
    depth = config_int(config, "num_hidden_layers", high=MAX_LAYERS)
    mlp = config_int(config, "intermediate_size", default=4 * hidden)
    prefix = strip_prefix(tensors, ("bert.", ""), "embeddings.word_embeddings.weight")

    def norm(name: str) -> NormRef:
        if prefix + name + ".gamma" in tensors:
            return NormRef(prefix + name + ".gamma", prefix + name + ".beta", kind="layer")
        return NormRef(prefix + name + ".weight", prefix + name + ".bias", kind="layer")

    layers = []
    reads = norm("embeddings.LayerNorm")
    for i in range(depth):
        base = f"{prefix}encoder.layer.{i}."
        layer = LayerRoles(
            index=i,
            attn_norm=reads,
            q=MatrixRef(base + "attention.self.query.weight"),
            k=MatrixRef(base + "attention.self.key.weight"),
            v=MatrixRef(base + "attention.self.value.weight"),
            o=MatrixRef(base + "attention.output.dense.weight"),
            mlp_norm=norm(f"encoder.layer.{i}.attention.output.LayerNorm"),
            up=MatrixRef(base + "intermediate.dense.weight"),
            down=MatrixRef(base + "output.dense.weight"),
            gate=None,
            num_heads=heads,
            num_kv_heads=heads,
            head_dim=hidden // heads,
            mlp_size=mlp,
        )
        layers.append(layer)
        reads = norm(f"encoder.layer.{i}.output.LayerNorm")

    return assemble_roles(
        tensors,
        architecture=architecture,
        family="bert",
        norm_kind="layer",
        hidden=hidden,
        embedding=prefix + "embeddings.word_embeddings.weight",
        head=None,
        final_norm=None,
        layers=layers,
        notes=("post-LayerNorm encoder: each block reads the previous block's output LayerNorm",),
    )
