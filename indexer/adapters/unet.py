"""Roles of a diffusers ``UNet2DConditionModel`` checkpoint (Stable Diffusion's UNet layout).

A UNet folder is ``config.json`` with ``"_class_name": "UNet2DConditionModel"`` beside
``diffusion_pytorch_model.safetensors`` (or ``.bin``); a pipeline repo keeps it under ``unet/``.
Tensor names follow diffusers (``models/unets/unet_2d_condition.py``, ``unet_2d_blocks.py``,
``transformers/transformer_2d.py``, ``attention.py``, ``resnet.py``, ``embeddings.py``):

- ``conv_in``, ``time_embedding.linear_1/2`` (``cond_proj``), optional ``class_embedding.*`` /
  ``add_embedding.linear_1/2`` (SDXL), ``conv_norm_out``, ``conv_out``;
- ``{down_blocks.b|mid_block|up_blocks.b}.resnets.r.{norm1,conv1,time_emb_proj,norm2,conv2,conv_shortcut}``;
- ``down_blocks.b.downsamplers.0.conv``, ``up_blocks.b.upsamplers.0.conv``;
- ``{...}.attentions.a.{norm,proj_in,proj_out}`` (``Transformer2DModel``; proj_in/out a 1x1 conv
  or, with ``use_linear_projection``, a linear) and its
  ``transformer_blocks.t.{norm1,attn1.*,norm2,attn2.*,norm3,ff.net.0.proj,ff.net.2}``: attention
  ``to_q/to_k/to_v`` (bias optional) and ``to_out.0``; GEGLU ``ff.net.0.proj`` is [2·inner, dim],
  rows [0, inner) the value and [inner, 2·inner) the gate.

Every tensor gets a role (:attr:`UNetRoles.roles`); a name outside this layout makes the model
unsupported, naming it.  The unit-bearing parts are the transformer blocks (:class:`UNetBlock`:
attention heads and GEGLU units, one width per resolution level); heads per block come from
``num_attention_heads`` or else ``attention_head_dim`` (diffusers' historical naming: in SD 1.x
configs that key holds the head *count*), an int or one entry per down block (up blocks reversed,
the mid block the last).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pedigree.errors import CheckpointError, UnsupportedModelError
from pedigree.indexer.safetensors_format import TensorInfo

UNET_CLASS = "UNet2DConditionModel"
UNET_FAMILY = "unet"
MAX_BLOCKS = 1024

_PLACE = r"(?:down_blocks\.(?P<down>\d+)|up_blocks\.(?P<up>\d+)|mid_block)"
_BLOCK = re.compile(
    _PLACE + r"\.attentions\.(?P<a>\d+)\.transformer_blocks\.(?P<t>\d+)\.(?P<rest>"
    r"norm[123]\.(?:weight|bias)|attn[12]\.to_[qkv]\.(?:weight|bias)|attn[12]\.to_out\.0\.(?:weight|bias)"
    r"|ff\.net\.0\.proj\.(?:weight|bias)|ff\.net\.2\.(?:weight|bias))$"
)
_OTHER = [
    (re.compile(_PLACE + r"\.attentions\.\d+\.(?:norm|proj_in|proj_out)\.(?:weight|bias)$"), "transformer_io"),
    (
        re.compile(
            _PLACE + r"\.resnets\.\d+\.(?:norm1|conv1|time_emb_proj|norm2|conv2|conv_shortcut)\.(?:weight|bias)$"
        ),
        "resnet",
    ),
    (re.compile(r"down_blocks\.\d+\.downsamplers\.0\.conv\.(?:weight|bias)$"), "downsample"),
    (re.compile(r"up_blocks\.\d+\.upsamplers\.0\.conv\.(?:weight|bias)$"), "upsample"),
    (re.compile(r"conv_in\.(?:weight|bias)$"), "conv_in"),
    (re.compile(r"time_embedding\.(?:linear_[12]|cond_proj)\.(?:weight|bias)$"), "time_embedding"),
    (re.compile(r"(?:class_embedding|add_embedding)\.[\w.]+$"), "condition_embedding"),
    (re.compile(r"conv_norm_out\.(?:weight|bias)$"), "conv_norm_out"),
    (re.compile(r"conv_out\.(?:weight|bias)$"), "conv_out"),
]


@dataclass(frozen=True)
class UNetAttention:
    """One attention's weights ([out, in] as stored): q, k, v, out (``to_out.0``)."""

    q: str
    k: str
    v: str
    out: str


@dataclass(frozen=True)
class UNetBlock:
    """One ``BasicTransformerBlock``: ``width`` channels, ``heads`` x ``head_dim`` attention,
    ``units`` GEGLU units; norms are LayerNorms (weight, bias)."""

    index: int
    prefix: str
    width: int
    heads: int
    head_dim: int
    units: int
    context_dim: int
    norms: tuple[str, str, str]  # norm1, norm2, norm3 weights
    self_attn: UNetAttention
    cross_attn: UNetAttention
    ff_in: str  # ff.net.0.proj.weight [2·units, width]: value rows then gate rows
    ff_out: str  # ff.net.2.weight [width, units]


@dataclass(frozen=True)
class UNetRoles:
    """Every tensor's role and the transformer blocks in forward order (down, mid, up)."""

    architecture: str
    blocks: tuple[UNetBlock, ...]
    roles: dict[str, str]
    family: str = UNET_FAMILY

    @property
    def widths(self) -> list[int]:
        return [b.width for b in self.blocks]


def is_unet_config(config: object) -> bool:
    """A diffusers UNet2DConditionModel config.json (``_class_name``)."""
    return isinstance(config, Mapping) and config.get("_class_name") == UNET_CLASS


def _order(match: re.Match[str]) -> tuple[int, int, int, int]:
    if match["down"] is not None:
        return (0, int(match["down"]), int(match["a"]), int(match["t"]))
    if match["up"] is not None:
        return (2, int(match["up"]), int(match["a"]), int(match["t"]))
    return (1, 0, int(match["a"]), int(match["t"]))


def _heads_per_level(config: Mapping[str, Any]) -> list[int] | int:
    value = config.get("num_attention_heads") or config.get("attention_head_dim")
    if isinstance(value, bool) or not isinstance(value, (int, list)):
        raise CheckpointError("config.json names no attention head count (num_attention_heads, attention_head_dim)")
    if isinstance(value, list) and not (value and all(isinstance(h, int) and not isinstance(h, bool) for h in value)):
        raise CheckpointError("config.json's attention head counts are not a list of integers")
    return value


def _heads(config: Mapping[str, Any], order: tuple[int, int, int, int]) -> int:
    value = _heads_per_level(config)
    if isinstance(value, int):
        return value
    kind, level = order[0], order[1]
    if kind == 0:
        index = level
    elif kind == 1:
        index = len(value) - 1
    else:
        index = len(value) - 1 - level
    if not 0 <= index < len(value):
        raise CheckpointError(f"config.json lists {len(value)} head counts, not one for block level {level}")
    return value[index]


def _shape(tensors: Mapping[str, TensorInfo], name: str, ndim: int) -> tuple[int, ...]:
    info = tensors.get(name)
    if info is None:
        raise CheckpointError(f"tensor {name!r} is missing")
    if len(info.shape) != ndim:
        raise CheckpointError(f"tensor {name!r} has shape {list(info.shape)}, expected {ndim} dimensions")
    return tuple(info.shape)


def _block(
    config: Mapping[str, Any],
    tensors: Mapping[str, TensorInfo],
    prefix: str,
    order: tuple[int, int, int, int],
    index: int,
) -> UNetBlock:
    def attention(which: str) -> UNetAttention:
        return UNetAttention(*(f"{prefix}.{which}.{p}.weight" for p in ("to_q", "to_k", "to_v", "to_out.0")))

    self_attn, cross_attn = attention("attn1"), attention("attn2")
    width = _shape(tensors, self_attn.q, 2)[1]
    heads = _heads(config, order)
    for name in (self_attn.k, self_attn.v, cross_attn.q):
        if _shape(tensors, name, 2)[1] != width:
            raise CheckpointError(f"{name} reads {_shape(tensors, name, 2)[1]} channels, the block has {width}")
    inner = _shape(tensors, self_attn.q, 2)[0]
    if heads < 1 or inner % heads:
        raise CheckpointError(f"{prefix}: {inner} attention channels do not split into {heads} heads")
    context = _shape(tensors, cross_attn.k, 2)[1]
    ff_in, ff_out = f"{prefix}.ff.net.0.proj.weight", f"{prefix}.ff.net.2.weight"
    rows, cols = _shape(tensors, ff_in, 2)
    if rows % 2 or cols != width:
        raise CheckpointError(f"{ff_in} has shape [{rows}, {cols}], not a GEGLU [2·units, {width}]")
    if _shape(tensors, ff_out, 2) != (width, rows // 2):
        raise CheckpointError(f"{ff_out} is not [{width}, {rows // 2}]")
    for norm in ("norm1", "norm2", "norm3"):
        if _shape(tensors, f"{prefix}.{norm}.weight", 1) != (width,):
            raise CheckpointError(f"{prefix}.{norm}.weight is not [{width}]")
    return UNetBlock(
        index=index,
        prefix=prefix,
        width=width,
        heads=heads,
        head_dim=inner // heads,
        units=rows // 2,
        context_dim=context,
        norms=(f"{prefix}.norm1.weight", f"{prefix}.norm2.weight", f"{prefix}.norm3.weight"),
        self_attn=self_attn,
        cross_attn=cross_attn,
        ff_in=ff_in,
        ff_out=ff_out,
    )


def unet_roles(config: object, tensors: Mapping[str, TensorInfo]) -> UNetRoles:
    """Map every tensor of a UNet2DConditionModel checkpoint to a role; raise Unsupported for a
    tensor outside the layout, CheckpointError for inconsistent shapes or config."""
    if not is_unet_config(config):
        raise UnsupportedModelError(f"config.json is not a diffusers {UNET_CLASS} config")
    assert isinstance(config, Mapping)
    roles: dict[str, str] = {}
    prefixes: dict[str, tuple[int, int, int, int]] = {}
    unknown = []
    for name in tensors:
        match = _BLOCK.match(name)
        if match is not None:
            prefix = name[: match.start("rest") - 1]
            prefixes[prefix] = _order(match)
            roles[name] = "transformer_block." + re.sub(r"\.(weight|bias)$", "", match["rest"])
            continue
        role = next((r for pattern, r in _OTHER if pattern.match(name)), None)
        if role is None:
            unknown.append(name)
        else:
            roles[name] = role
    if unknown:
        raise UnsupportedModelError(
            f"{len(unknown)} tensors outside the {UNET_CLASS} layout, e.g. {', '.join(sorted(unknown)[:3])}"
        )
    if len(prefixes) > MAX_BLOCKS:
        raise CheckpointError(f"{len(prefixes)} transformer blocks (more than {MAX_BLOCKS})")
    ordered = sorted(prefixes, key=lambda p: prefixes[p])
    blocks = tuple(_block(config, tensors, p, prefixes[p], i) for i, p in enumerate(ordered))
    return UNetRoles(architecture=UNET_CLASS, blocks=blocks, roles=roles)
