"""Naming schemes: one declarative description per architecture family, one builder for all.

A :class:`Scheme` says where a family keeps each role (name templates relative to the block
prefix, with ``{i}`` the block index and ``{prev}`` the previous block's), whether its projections
are stored transposed (GPT-2's ``Conv1D``) or fused (q|k|v in one tensor, optionally laid out per
head as in GPT-NeoX), which config fields give the sizes, and how its norms are spelt.
:func:`roles_from_scheme` turns a scheme, a config.json and the tensor names into checked
:class:`ModelRoles` - the same code for every family, so a new family is a new declaration.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

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

QKV = ("q", "k", "v")


@dataclass(frozen=True)
class Scheme:
    """Where one architecture family keeps its tensors (names relative to ``prefix + block``).

    ``projections`` maps q/k/v/o/up/down/gate to tensor names relative to the block; with
    ``fused_qkv`` the q, k and v are parts 0, 1, 2 of that one tensor (``interleaved_heads``: laid
    out per head).  Norm names are relative to the model prefix, without the ``.weight`` suffix,
    and may use ``{i}`` and ``{prev}`` (post-LN: a block reads the previous block's output norm,
    block 0 ``first_attn_norm``); ``mlp_norm`` lists candidates, the first present wins.
    """

    family: str
    norm_kind: str  # rms | layer
    prefixes: tuple[str, ...]
    embedding: str
    head: str | None  # absolute name; absent from the checkpoint = tied
    final_norm: str | None
    block: str
    projections: Mapping[str, str]
    attn_norm: str
    mlp_norm: tuple[str, ...]
    fused_qkv: str | None = None
    interleaved_heads: bool = False
    transposed: bool = False
    first_attn_norm: str | None = None
    qk_norms: tuple[str, str] | None = None  # per-head q/k norms (Qwen3), used when present
    hidden_keys: tuple[str, ...] = ("hidden_size",)
    heads_keys: tuple[str, ...] = ("num_attention_heads",)
    depth_keys: tuple[str, ...] = ("num_hidden_layers",)
    mlp_keys: tuple[str, ...] = ("intermediate_size",)
    mlp_default_ratio: int | None = 4  # MLP width = ratio * hidden when the config is silent
    kv_heads_key: str | None = None  # GQA: the config field with the key/value head count
    head_dim_key: str | None = None
    notes: tuple[str, ...] = ()


def roles_from_scheme(
    scheme: Scheme,
    config: Mapping,
    tensors: Mapping[str, TensorInfo],
    architecture: str,
    *,
    gain_offset: float = 0.0,
) -> ModelRoles:
    """Build and check the roles of a checkpoint laid out as ``scheme`` says."""
    hidden = config_int(config, *scheme.hidden_keys)
    heads = config_int(config, *scheme.heads_keys)
    depth = config_int(config, *scheme.depth_keys, high=MAX_LAYERS)
    mlp_default = None if scheme.mlp_default_ratio is None else scheme.mlp_default_ratio * hidden
    mlp = config_int(config, *scheme.mlp_keys, default=mlp_default)
    kv_heads = config_int(config, scheme.kv_heads_key, default=heads) if scheme.kv_heads_key else heads
    head_dim = (
        config_int(config, scheme.head_dim_key, default=hidden // heads) if scheme.head_dim_key else hidden // heads
    )
    prefix = strip_prefix(tensors, scheme.prefixes, scheme.embedding)

    def norm(name: str) -> NormRef:
        full = prefix + name
        if scheme.norm_kind == "rms":
            return NormRef(full + ".weight", kind="rms", gain_offset=gain_offset)
        if full + ".gamma" in tensors:  # TensorFlow-converted checkpoints
            return NormRef(full + ".gamma", full + ".beta", kind="layer")
        return NormRef(full + ".weight", full + ".bias", kind="layer")

    def matrix(name: str, **fused: int) -> MatrixRef:
        return MatrixRef(name, transpose=scheme.transposed, **fused)

    layers = []
    for i in range(depth):
        block = prefix + scheme.block.format(i=i)
        refs = {role: matrix(block + name) for role, name in scheme.projections.items()}
        if scheme.fused_qkv is not None:
            interleave = heads if scheme.interleaved_heads else 0
            for part, role in enumerate(QKV):
                refs[role] = matrix(block + scheme.fused_qkv, part=part, parts=3, interleave_heads=interleave)
        first = i == 0 and scheme.first_attn_norm is not None
        attn_norm = scheme.first_attn_norm if first else scheme.attn_norm
        mlp_norms = [name.format(i=i) for name in scheme.mlp_norm]
        mlp_norm = next((n for n in mlp_norms if norm(n).weight in tensors), mlp_norms[0])
        q_norm = k_norm = None
        if scheme.qk_norms is not None and norm(scheme.qk_norms[0].format(i=i)).weight in tensors:
            q_norm, k_norm = (norm(name.format(i=i)) for name in scheme.qk_norms)
        layers.append(
            LayerRoles(
                index=i,
                attn_norm=norm(str(attn_norm).format(i=i, prev=i - 1)),
                q=refs["q"],
                k=refs["k"],
                v=refs["v"],
                o=refs["o"],
                mlp_norm=norm(mlp_norm),
                up=refs["up"],
                down=refs["down"],
                gate=refs.get("gate"),
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
        family=scheme.family,
        norm_kind=scheme.norm_kind,
        hidden=hidden,
        embedding=prefix + scheme.embedding,
        head=scheme.head,
        final_norm=norm(scheme.final_norm) if scheme.final_norm is not None else None,
        layers=layers,
        notes=scheme.notes,
    )
