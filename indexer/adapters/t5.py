"""T5 encoder-decoders (T5, mT5, UMT5) as one stack of blocks: the encoder's, then the decoder's.

Tensor names and config fields follow Hugging Face transformers' ``modeling_t5`` (``T5ForConditionalGeneration``;
mT5 and UMT5 use the same names, UMT5 with a relative position bias in every block)::

    shared.weight                                              [vocab, d_model]  the embedding
    encoder.block.{i}.layer.0.layer_norm.weight                read by SelfAttention.{q,k,v}
    encoder.block.{i}.layer.0.SelfAttention.{q,k,v}.weight     [num_heads*d_kv, d_model]
    encoder.block.{i}.layer.0.SelfAttention.o.weight           [d_model, num_heads*d_kv]
    encoder.block.{i}.layer.1.layer_norm.weight                read by the feed-forward
    encoder.block.{i}.layer.1.DenseReluDense.wi.weight         [d_ff, d_model]   up (ReLU, T5 v1.0)
    encoder.block.{i}.layer.1.DenseReluDense.wi_0 / wi_1       gate / up (gated-gelu: T5 v1.1, mT5, Flan)
    encoder.block.{i}.layer.1.DenseReluDense.wo.weight         [d_model, d_ff]   down
    encoder.final_layer_norm.weight
    decoder.block.{j}.layer.0 ...                              self-attention, as the encoder's
    decoder.block.{j}.layer.1.EncDecAttention.{q,k,v,o}, layer.1.layer_norm    cross-attention
    decoder.block.{j}.layer.2.DenseReluDense..., layer.2.layer_norm            feed-forward
    decoder.final_layer_norm.weight                            read by the head
    lm_head.weight                                             absent when tied (tie_word_embeddings)
    {encoder,decoder}.block.0.layer.0.SelfAttention.relative_attention_bias.weight

T5's ``T5LayerNorm`` is an RMS norm without bias or mean subtraction (``norm_kind = "rms"``).

**Representation.**  Block i < L_enc is encoder block i, block L_enc + j decoder block j (its
self-attention as the block's attention, its ``layer.2`` feed-forward as the MLP): every block has
the q, k, v, o, up(, gate), down the fingerprint and the unit tests read, and a fine-tune keeps
the encoder and the decoder where they were.  Left out of the fingerprint (``ModelRoles.extras``,
listed by ``role_map``): the decoder's cross-attention (its k and v read the encoder's output,
not the residual stream its q reads), the relative position biases (a [buckets, heads] table, not a
map of the residual stream), the encoder's final norm and a stored copy of ``shared`` under
``{encoder,decoder}.embed_tokens``.  A ``T5EncoderModel`` checkpoint (no decoder) is its encoder
blocks alone.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from pedigree.errors import CheckpointError
from pedigree.indexer.adapters.base import (
    MAX_LAYERS,
    LayerRoles,
    MatrixRef,
    ModelRoles,
    NormRef,
    assemble_roles,
    check_matrix,
    check_vector,
    config_int,
)
from pedigree.indexer.safetensors_format import TensorInfo

T5_TYPES = ("t5", "mt5", "umt5")


def _block(
    tensors: Mapping[str, TensorInfo], stack: str, i: int, index: int, ff: int, heads: int, d_kv: int, d_ff: int
) -> LayerRoles:
    """The roles of ``{stack}.block.{i}`` (its feed-forward is ``layer.{ff}``) as block ``index``."""
    block = f"{stack}.block.{i}.layer."
    attn, dense = f"{block}0.SelfAttention.", f"{block}{ff}.DenseReluDense."
    gated = dense + "wi_0.weight" in tensors
    return LayerRoles(
        index=index,
        attn_norm=NormRef(f"{block}0.layer_norm.weight"),
        q=MatrixRef(attn + "q.weight"),
        k=MatrixRef(attn + "k.weight"),
        v=MatrixRef(attn + "v.weight"),
        o=MatrixRef(attn + "o.weight"),
        mlp_norm=NormRef(f"{block}{ff}.layer_norm.weight"),
        up=MatrixRef(dense + ("wi_1.weight" if gated else "wi.weight")),
        down=MatrixRef(dense + "wo.weight"),
        gate=MatrixRef(dense + "wi_0.weight") if gated else None,
        num_heads=heads,
        num_kv_heads=heads,
        head_dim=d_kv,
        mlp_size=d_ff,
    )


def roles_of_t5(config: Mapping[str, Any], tensors: Mapping[str, TensorInfo], architecture: str) -> ModelRoles:
    """The roles of a T5-style encoder-decoder checkpoint (module docstring)."""
    hidden = config_int(config, "d_model")
    heads = config_int(config, "num_heads")
    d_kv = config_int(config, "d_kv", default=hidden // heads)
    d_ff = config_int(config, "d_ff")
    enc_depth = config_int(config, "num_layers", high=MAX_LAYERS)
    has_decoder = "decoder.final_layer_norm.weight" in tensors
    dec_depth = config_int(config, "num_decoder_layers", default=enc_depth, high=MAX_LAYERS) if has_decoder else 0
    if "shared.weight" not in tensors:
        raise CheckpointError("no tensor named 'shared.weight' (the T5 embedding)")
    layers = [_block(tensors, "encoder", i, i, 1, heads, d_kv, d_ff) for i in range(enc_depth)]
    layers += [_block(tensors, "decoder", j, enc_depth + j, 2, heads, d_kv, d_ff) for j in range(dec_depth)]
    extras: list[tuple[str, str]] = []
    inner = heads * d_kv
    for j in range(dec_depth):
        index, block = enc_depth + j, f"decoder.block.{j}.layer.1."
        for role in ("q", "k", "v", "o"):
            ref = MatrixRef(f"{block}EncDecAttention.{role}.weight")
            check_matrix(tensors, ref, *((hidden, inner) if role == "o" else (inner, hidden)))
            extras.append((ref.name, f"layers.{index}.cross_attention.{role}"))
        check_vector(tensors, block + "layer_norm.weight", hidden)
        extras.append((block + "layer_norm.weight", f"layers.{index}.cross_attention_norm"))
    for stack, depth, offset in (("encoder", enc_depth, 0), ("decoder", dec_depth, enc_depth)):
        for i in range(depth):
            name = f"{stack}.block.{i}.layer.0.SelfAttention.relative_attention_bias.weight"
            if name in tensors:
                extras.append((name, f"layers.{offset + i}.relative_attention_bias"))
    for name, role in (
        ("encoder.final_layer_norm.weight", "encoder_final_norm"),
        ("encoder.embed_tokens.weight", "encoder_embedding_copy"),
        ("decoder.embed_tokens.weight", "decoder_embedding_copy"),
    ):
        if name in tensors:
            extras.append((name, role))
    roles = assemble_roles(
        tensors,
        architecture=architecture,
        family="t5",
        norm_kind="rms",
        hidden=hidden,
        embedding="shared.weight",
        head="lm_head.weight" if has_decoder else None,
        final_norm=NormRef("decoder.final_layer_norm.weight") if has_decoder else None,
        layers=layers,
        notes=(
            f"encoder-decoder: blocks 0-{enc_depth - 1} are the encoder's, {enc_depth}-{enc_depth + dec_depth - 1} "
            "the decoder's (self-attention and feed-forward); cross-attention and relative position biases "
            "are not fingerprinted"
            if has_decoder
            else "T5 encoder only; relative position biases are not fingerprinted",
        ),
    )
    return replace(roles, extras=tuple(extras))
