"""Tensor names and shapes of real diffusers ``UNet2DConditionModel`` checkpoints, generated from
their configs the way diffusers builds the modules (``unet_2d_condition.py``, ``unet_2d_blocks.py``).

Checked against the published parameter counts: SD 1.5 686 tensors / 859,520,964 parameters,
SD 2.x 865,910,724, SDXL 2,567,463,684 (with ``add_embedding``).  Only shapes: no weights.
"""

from __future__ import annotations

from pedigree.indexer.safetensors_format import TensorInfo


def unet_shapes(
    channels: tuple[int, ...] = (320, 640, 1280, 1280),
    attention: tuple[bool, ...] = (True, True, True, False),
    *,
    layers: int = 2,
    cross: int = 768,
    linear_projection: bool = False,
    depth: tuple[int, ...] | None = None,
    add_embedding: int = 0,
) -> dict[str, tuple[int, ...]]:
    """name -> shape of a UNet with these down-block ``channels`` (``attention``: CrossAttn block or
    plain, per level; ``depth``: transformer blocks per attention, per level)."""
    shapes: dict[str, tuple[int, ...]] = {}
    depths = depth or (1,) * len(channels)
    temb = channels[0] * 4

    def linear(name: str, rows: int, cols: int, bias: bool = True) -> None:
        shapes[f"{name}.weight"] = (rows, cols)
        if bias:
            shapes[f"{name}.bias"] = (rows,)

    def conv(name: str, rows: int, cols: int, k: int = 3) -> None:
        shapes[f"{name}.weight"] = (rows, cols, k, k)
        shapes[f"{name}.bias"] = (rows,)

    def norm(name: str, c: int) -> None:
        shapes[f"{name}.weight"] = shapes[f"{name}.bias"] = (c,)

    def resnet(p: str, cin: int, cout: int) -> None:
        norm(f"{p}.norm1", cin)
        conv(f"{p}.conv1", cout, cin)
        linear(f"{p}.time_emb_proj", cout, temb)
        norm(f"{p}.norm2", cout)
        conv(f"{p}.conv2", cout, cout)
        if cin != cout:
            conv(f"{p}.conv_shortcut", cout, cin, 1)

    def transformer(p: str, c: int, blocks: int) -> None:
        norm(f"{p}.norm", c)
        for io in ("proj_in", "proj_out"):
            linear(f"{p}.{io}", c, c) if linear_projection else conv(f"{p}.{io}", c, c, 1)
        for t in range(blocks):
            b = f"{p}.transformer_blocks.{t}"
            for k in (1, 2, 3):
                norm(f"{b}.norm{k}", c)
            for attn, context in (("attn1", c), ("attn2", cross)):
                linear(f"{b}.{attn}.to_q", c, c, bias=False)
                linear(f"{b}.{attn}.to_k", c, context, bias=False)
                linear(f"{b}.{attn}.to_v", c, context, bias=False)
                linear(f"{b}.{attn}.to_out.0", c, c)
            linear(f"{b}.ff.net.0.proj", 8 * c, c)
            linear(f"{b}.ff.net.2", c, 4 * c)

    conv("conv_in", channels[0], 4)
    linear("time_embedding.linear_1", temb, channels[0])
    linear("time_embedding.linear_2", temb, temb)
    if add_embedding:
        linear("add_embedding.linear_1", temb, add_embedding)
        linear("add_embedding.linear_2", temb, temb)
    skips, previous = [channels[0]], channels[0]
    for i, c in enumerate(channels):
        for r in range(layers):
            resnet(f"down_blocks.{i}.resnets.{r}", previous if r == 0 else c, c)
            if attention[i]:
                transformer(f"down_blocks.{i}.attentions.{r}", c, depths[i])
            skips.append(c)
        if i < len(channels) - 1:
            conv(f"down_blocks.{i}.downsamplers.0.conv", c, c)
            skips.append(c)
        previous = c
    resnet("mid_block.resnets.0", channels[-1], channels[-1])
    transformer("mid_block.attentions.0", channels[-1], depths[-1])
    resnet("mid_block.resnets.1", channels[-1], channels[-1])
    for i, (c, attends, blocks) in enumerate(zip(channels[::-1], attention[::-1], depths[::-1])):
        for r in range(layers + 1):
            resnet(f"up_blocks.{i}.resnets.{r}", (previous if r == 0 else c) + skips.pop(), c)
            if attends:
                transformer(f"up_blocks.{i}.attentions.{r}", c, blocks)
        if i < len(channels) - 1:
            conv(f"up_blocks.{i}.upsamplers.0.conv", c, c)
        previous = c
    norm("conv_norm_out", channels[0])
    conv("conv_out", 4, channels[0])
    return shapes


def tensor_infos(shapes: dict[str, tuple[int, ...]]) -> dict[str, TensorInfo]:
    """Header entries for the shapes (fp16, laid out one after another)."""
    out, offset = {}, 0
    for name, shape in shapes.items():
        size = 2
        for n in shape:
            size *= n
        out[name] = TensorInfo(name, "F16", shape, "diffusion_pytorch_model.safetensors", offset, offset + size)
        offset += size
    return out
