"""A tiny conditional UNet in plain torch whose state dict is a diffusers ``UNet2DConditionModel``'s.

The module tree follows diffusers (``models/unets/unet_2d_condition.py``, ``unet_2d_blocks.py``,
``transformers/transformer_2d.py``, ``attention.py``, ``attention_processor.py``, ``resnet.py``,
``embeddings.py``) for the configuration :func:`unet_config` writes: ``CrossAttnDownBlock2D`` /
``UNetMidBlock2DCrossAttn`` / ``CrossAttnUpBlock2D`` at every level, ``layers_per_block`` resnets
per down block (one more per up block), a ``Transformer2DModel`` after each resnet (GroupNorm,
1x1-conv ``proj_in``, ``BasicTransformerBlock``s of self-attention, cross-attention and a GEGLU
feed-forward, 1x1-conv ``proj_out``, residual), sinusoidal timesteps (``flip_sin_to_cos``, shift 0)
into ``time_embedding.linear_1/2``.  So a folder written by :func:`save_unet` -
``config.json`` (``_class_name: UNet2DConditionModel``) and ``diffusion_pytorch_model.safetensors`` -
has exactly the tensor names and shapes a diffusers checkpoint of that configuration has.

Conventions kept from diffusers: GEGLU's ``ff.net.0.proj`` is [2·inner, dim], the first half the
value and the second the gate (``value * gelu(gate)``); ``attention_head_dim`` in the config is
the number of heads per block (diffusers' historical naming: head width = channels / heads);
attention q/k/v have no bias, ``to_out.0`` has one.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


def unet_config(
    channels: tuple[int, ...] = (32, 64),
    *,
    heads: int = 4,
    cross_dim: int = 32,
    groups: int = 8,
    layers_per_block: int = 1,
    sample_size: int = 8,
) -> dict[str, Any]:
    """A ``UNet2DConditionModel`` config.json (the keys diffusers reads for this layout)."""
    levels = len(channels)
    return {
        "_class_name": "UNet2DConditionModel",
        "_diffusers_version": "0.30.0",
        "act_fn": "silu",
        "attention_head_dim": heads,
        "block_out_channels": list(channels),
        "center_input_sample": False,
        "cross_attention_dim": cross_dim,
        "down_block_types": ["CrossAttnDownBlock2D"] * levels,
        "downsample_padding": 1,
        "flip_sin_to_cos": True,
        "freq_shift": 0,
        "in_channels": 1,
        "layers_per_block": layers_per_block,
        "mid_block_scale_factor": 1,
        "mid_block_type": "UNetMidBlock2DCrossAttn",
        "norm_eps": 1e-5,
        "norm_num_groups": groups,
        "out_channels": 1,
        "sample_size": sample_size,
        "transformer_layers_per_block": 1,
        "up_block_types": ["CrossAttnUpBlock2D"] * levels,
        "use_linear_projection": False,
    }


class Attention(nn.Module):
    """diffusers ``Attention`` (to_q, to_k, to_v without bias; ``to_out.0`` with bias)."""

    def __init__(self, dim: int, heads: int, context_dim: int | None = None) -> None:
        super().__init__()
        self.heads = heads
        self.to_q = nn.Linear(dim, dim, bias=False)
        self.to_k = nn.Linear(context_dim or dim, dim, bias=False)
        self.to_v = nn.Linear(context_dim or dim, dim, bias=False)
        self.to_out = nn.ModuleList([nn.Linear(dim, dim), nn.Dropout(0.0)])

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        context = x if context is None else context
        b, n, d = x.shape

        def split(t: torch.Tensor) -> torch.Tensor:
            return t.reshape(b, -1, self.heads, d // self.heads).transpose(1, 2)

        out = F.scaled_dot_product_attention(split(self.to_q(x)), split(self.to_k(context)), split(self.to_v(context)))
        return self.to_out[0](out.transpose(1, 2).reshape(b, n, d))


class GEGLU(nn.Module):
    def __init__(self, dim: int, inner: int) -> None:
        super().__init__()
        self.proj = nn.Linear(dim, 2 * inner)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        value, gate = self.proj(x).chunk(2, dim=-1)
        return value * F.gelu(gate)


class FeedForward(nn.Module):
    """``ff.net.0`` = GEGLU, ``ff.net.1`` dropout, ``ff.net.2`` the output linear (mult 4)."""

    def __init__(self, dim: int, mult: int = 4) -> None:
        super().__init__()
        self.net = nn.ModuleList([GEGLU(dim, dim * mult), nn.Dropout(0.0), nn.Linear(dim * mult, dim)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net[2](self.net[0](x))


class BasicTransformerBlock(nn.Module):
    def __init__(self, dim: int, heads: int, context_dim: int) -> None:
        super().__init__()
        self.norm1, self.attn1 = nn.LayerNorm(dim), Attention(dim, heads)
        self.norm2, self.attn2 = nn.LayerNorm(dim), Attention(dim, heads, context_dim)
        self.norm3, self.ff = nn.LayerNorm(dim), FeedForward(dim)

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        x = x + self.attn1(self.norm1(x))
        x = x + self.attn2(self.norm2(x), context)
        return x + self.ff(self.norm3(x))


class Transformer2DModel(nn.Module):
    def __init__(self, channels: int, heads: int, context_dim: int, groups: int) -> None:
        super().__init__()
        self.norm = nn.GroupNorm(groups, channels, eps=1e-6)
        self.proj_in = nn.Conv2d(channels, channels, 1)
        self.transformer_blocks = nn.ModuleList([BasicTransformerBlock(channels, heads, context_dim)])
        self.proj_out = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        tokens = self.proj_in(self.norm(x)).permute(0, 2, 3, 1).reshape(b, h * w, c)
        for block in self.transformer_blocks:
            tokens = block(tokens, context)
        return x + self.proj_out(tokens.reshape(b, h, w, c).permute(0, 3, 1, 2))


class ResnetBlock2D(nn.Module):
    def __init__(self, channels_in: int, channels_out: int, temb: int, groups: int) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, channels_in, eps=1e-5)
        self.conv1 = nn.Conv2d(channels_in, channels_out, 3, padding=1)
        self.time_emb_proj = nn.Linear(temb, channels_out)
        self.norm2 = nn.GroupNorm(groups, channels_out, eps=1e-5)
        self.conv2 = nn.Conv2d(channels_out, channels_out, 3, padding=1)
        self.conv_shortcut = nn.Conv2d(channels_in, channels_out, 1) if channels_in != channels_out else None

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x))) + self.time_emb_proj(F.silu(temb))[:, :, None, None]
        h = self.conv2(F.silu(self.norm2(h)))
        return (x if self.conv_shortcut is None else self.conv_shortcut(x)) + h


class Sampler(nn.Module):
    """``downsamplers.0.conv`` (3x3, stride 2) or ``upsamplers.0.conv`` (nearest x2, then 3x3)."""

    def __init__(self, channels: int, down: bool) -> None:
        super().__init__()
        self.down = down
        self.conv = nn.Conv2d(channels, channels, 3, stride=2 if down else 1, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x if self.down else F.interpolate(x, scale_factor=2.0, mode="nearest"))


class Level(nn.Module):
    """A ``CrossAttnDownBlock2D``/``CrossAttnUpBlock2D``/``UNetMidBlock2DCrossAttn``'s parameters."""

    def __init__(self, resnets: list[ResnetBlock2D], attentions: list[Transformer2DModel]) -> None:
        super().__init__()
        self.resnets = nn.ModuleList(resnets)
        self.attentions = nn.ModuleList(attentions)


class TinyUNet(nn.Module):
    """``UNet2DConditionModel`` for :func:`unet_config` configs (only the keys that function sets)."""

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__()
        ch = list(config["block_out_channels"])
        heads, ctx, groups = config["attention_head_dim"], config["cross_attention_dim"], config["norm_num_groups"]
        per = config["layers_per_block"]
        temb = 4 * ch[0]
        self.base = ch[0]
        self.conv_in = nn.Conv2d(config["in_channels"], ch[0], 3, padding=1)
        self.time_embedding = nn.Module()
        self.time_embedding.linear_1 = nn.Linear(ch[0], temb)
        self.time_embedding.linear_2 = nn.Linear(temb, temb)

        def attn(c: int) -> Transformer2DModel:
            return Transformer2DModel(c, heads, ctx, groups)

        self.down_blocks = nn.ModuleList()
        skips = [ch[0]]
        previous = ch[0]
        for i, c in enumerate(ch):
            resnets = [ResnetBlock2D(previous if r == 0 else c, c, temb, groups) for r in range(per)]
            level = Level(resnets, [attn(c) for _ in range(per)])
            skips += [c] * per
            if i < len(ch) - 1:
                level.downsamplers = nn.ModuleList([Sampler(c, down=True)])
                skips.append(c)
            self.down_blocks.append(level)
            previous = c
        self.mid_block = Level([ResnetBlock2D(ch[-1], ch[-1], temb, groups) for _ in range(2)], [attn(ch[-1])])
        self.up_blocks = nn.ModuleList()
        for i, c in enumerate(reversed(ch)):
            resnets = []
            for r in range(per + 1):
                resnets.append(ResnetBlock2D((previous if r == 0 else c) + skips.pop(), c, temb, groups))
            level = Level(resnets, [attn(c) for _ in range(per + 1)])
            if i < len(ch) - 1:
                level.upsamplers = nn.ModuleList([Sampler(c, down=False)])
            self.up_blocks.append(level)
            previous = c
        self.conv_norm_out = nn.GroupNorm(groups, ch[0], eps=1e-5)
        self.conv_out = nn.Conv2d(ch[0], config["out_channels"], 3, padding=1)

    def time_features(self, t: torch.Tensor) -> torch.Tensor:
        half = self.base // 2
        frequencies = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32) / half)
        angles = t.float()[:, None] * frequencies[None, :]
        return torch.cat([torch.cos(angles), torch.sin(angles)], dim=1)  # flip_sin_to_cos

    def forward(self, x: torch.Tensor, t: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        temb = self.time_embedding.linear_2(F.silu(self.time_embedding.linear_1(self.time_features(t))))
        h = self.conv_in(x)
        skips = [h]
        for level in self.down_blocks:
            for resnet, attention in zip(level.resnets, level.attentions):
                h = attention(resnet(h, temb), context)
                skips.append(h)
            if hasattr(level, "downsamplers"):
                h = level.downsamplers[0](h)
                skips.append(h)
        mid = self.mid_block
        h = mid.resnets[1](mid.attentions[0](mid.resnets[0](h, temb), context), temb)
        for level in self.up_blocks:
            for resnet, attention in zip(level.resnets, level.attentions):
                h = attention(resnet(torch.cat([h, skips.pop()], dim=1), temb), context)
            if hasattr(level, "upsamplers"):
                h = level.upsamplers[0](h)
        return self.conv_out(F.silu(self.conv_norm_out(h)))
