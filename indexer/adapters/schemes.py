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
from dataclasses import dataclass, replace
from typing import Any

from pedigree.errors import CheckpointError
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
QKV_LAYOUTS = ("thirds", "per_head", "q_k_v", "kv_groups")


@dataclass(frozen=True)
class Scheme:
    """Where one architecture family keeps its tensors (names relative to ``prefix + block``).

    ``projections`` maps q/k/v/o/up/down/gate to tensor names relative to the block.  With
    ``fused_qkv`` the q, k and v rows share that one tensor, laid out as ``qkv_layout`` says:

    - ``thirds``: q | k | v, equal blocks (GPT-2's ``c_attn``, after transposing);
    - ``per_head``: per head, its q, k and v rows (GPT-NeoX, Falcon-RW);
    - ``q_k_v``: all q rows, then all k rows, then all v rows - unequal under GQA (Phi-3,
      Falcon-7B's multi-query attention);
    - ``kv_groups``: per key/value head, the rows of the query heads it serves, then its key, then
      its value (Falcon's new decoder architecture).

    With ``fused_gate_up`` the gate rows, then the up rows, share one tensor (Phi-3).  Norm names are
    relative to the model prefix, without the ``.weight`` suffix, and may use ``{i}`` and ``{prev}``
    (post-LN: a block reads the previous block's output norm, block 0 ``first_attn_norm``);
    ``attn_norm`` and ``mlp_norm`` list candidates, the first present wins (a parallel block whose
    attention and MLP read one norm lists it for both).  ``out_norms`` are (role, name) of norms
    applied to what a block writes (Gemma2's post-attention and post-feed-forward norms), mapped
    when present and not already read.  ``variants``: (config flag, its default, field overrides) -
    the first flag that is true in config.json replaces those fields (Falcon's three layouts).
    ``patch_embedding``: the embedding is a vision encoder's patch convolution, probed at pixel
    tokens (``indexer.adapters.vision``).
    """

    family: str
    norm_kind: str  # rms | layer
    prefixes: tuple[str, ...]
    embedding: str
    head: str | None  # absolute name; absent from the checkpoint = tied
    final_norm: str | None
    block: str
    projections: Mapping[str, str]
    attn_norm: str | tuple[str, ...]
    mlp_norm: tuple[str, ...]
    fused_qkv: str | None = None
    qkv_layout: str = "thirds"
    fused_gate_up: str | None = None
    transposed: bool = False
    first_attn_norm: str | None = None
    qk_norms: tuple[str, str] | None = None  # per-head q/k norms (Qwen3), used when present
    out_norms: tuple[tuple[str, str], ...] = ()
    hidden_keys: tuple[str, ...] = ("hidden_size",)
    heads_keys: tuple[str, ...] = ("num_attention_heads",)
    depth_keys: tuple[str, ...] = ("num_hidden_layers",)
    mlp_keys: tuple[str, ...] = ("intermediate_size",)
    mlp_default_ratio: int | None = 4  # MLP width = ratio * hidden when the config is silent
    kv_heads_keys: tuple[str, ...] = ()  # GQA: the config fields with the key/value head count
    kv_heads: int = 0  # a fixed key/value head count (multi-query: 1); 0 = from kv_heads_keys
    head_dim_key: str | None = None
    variants: tuple[tuple[str, bool, Mapping[str, Any]], ...] = ()
    notes: tuple[str, ...] = ()
    patch_embedding: bool = False

    def for_config(self, config: Mapping) -> Scheme:
        """The scheme with the overrides of the first variant whose flag ``config`` sets."""
        for flag, default, overrides in self.variants:
            if config.get(flag, default) is True:
                return replace(self, variants=(), **overrides)
        return self


def _qkv_refs(scheme: Scheme, name: str, heads: int, kv_heads: int, head_dim: int) -> dict[str, MatrixRef]:
    """q, k and v of a fused tensor laid out as ``scheme.qkv_layout``."""
    layout = scheme.qkv_layout
    if layout not in QKV_LAYOUTS:
        raise ValueError(f"unknown q|k|v layout {layout!r}")
    if layout in ("thirds", "per_head") and kv_heads != heads:
        raise CheckpointError(f"a {layout} fused q|k|v needs as many key/value heads as heads ({kv_heads} != {heads})")
    if kv_heads < 1 or heads % kv_heads:
        raise CheckpointError(f"{heads} query heads are not a multiple of {kv_heads} key/value heads")
    sizes: tuple[int, ...]
    if layout == "q_k_v":
        sizes, groups = (heads * head_dim, kv_heads * head_dim, kv_heads * head_dim), 0
    elif layout == "kv_groups":
        sizes, groups = (heads // kv_heads * head_dim, head_dim, head_dim), kv_heads
    else:
        sizes, groups = (), heads if layout == "per_head" else 0
    return {
        role: MatrixRef(name, transpose=scheme.transposed, part=part, parts=3, interleave_heads=groups, sizes=sizes)
        for part, role in enumerate(QKV)
    }


def roles_from_scheme(
    scheme: Scheme,
    config: Mapping,
    tensors: Mapping[str, TensorInfo],
    architecture: str,
    *,
    gain_offset: float = 0.0,
) -> ModelRoles:
    """Build and check the roles of a checkpoint laid out as ``scheme`` says."""
    scheme = scheme.for_config(config)
    hidden = config_int(config, *scheme.hidden_keys)
    heads = config_int(config, *scheme.heads_keys)
    depth = config_int(config, *scheme.depth_keys, high=MAX_LAYERS)
    mlp_default = None if scheme.mlp_default_ratio is None else scheme.mlp_default_ratio * hidden
    mlp = config_int(config, *scheme.mlp_keys, default=mlp_default)
    kv_heads = scheme.kv_heads or (
        config_int(config, *scheme.kv_heads_keys, default=heads) if scheme.kv_heads_keys else heads
    )
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

    def first_present(candidates: list[str]) -> str:
        return next((n for n in candidates if norm(n).weight in tensors), candidates[0])

    attn_norms = (scheme.attn_norm,) if isinstance(scheme.attn_norm, str) else scheme.attn_norm
    layers = []
    for i in range(depth):
        block = prefix + scheme.block.format(i=i)
        refs = {role: MatrixRef(block + name, transpose=scheme.transposed) for role, name in scheme.projections.items()}
        if scheme.fused_qkv is not None:
            refs.update(_qkv_refs(scheme, block + scheme.fused_qkv, heads, kv_heads, head_dim))
        if scheme.fused_gate_up is not None:
            for part, role in enumerate(("gate", "up")):
                refs[role] = MatrixRef(block + scheme.fused_gate_up, transpose=scheme.transposed, part=part, parts=2)
        first = i == 0 and scheme.first_attn_norm is not None
        attn_norm = (
            str(scheme.first_attn_norm) if first else first_present([n.format(i=i, prev=i - 1) for n in attn_norms])
        )
        mlp_norm = first_present([name.format(i=i) for name in scheme.mlp_norm])
        q_norm = k_norm = None
        if scheme.qk_norms is not None and norm(scheme.qk_norms[0].format(i=i)).weight in tensors:
            q_norm, k_norm = (norm(name.format(i=i)) for name in scheme.qk_norms)
        read = {attn_norm, mlp_norm}
        out_norms = tuple(
            (role, norm(name.format(i=i)))
            for role, name in scheme.out_norms
            if name.format(i=i) not in read and norm(name.format(i=i)).weight in tensors
        )
        layers.append(
            LayerRoles(
                index=i,
                attn_norm=norm(attn_norm),
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
                out_norms=out_norms,
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
        patch_embedding=scheme.patch_embedding,
    )
