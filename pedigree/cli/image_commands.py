"""``fingerprint-image``: write a model's fingerprint picture as PNG or SVG."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from pedigree.cli import render
from pedigree.cli.app import Home, Json, app, options, reporting, workspace
from pedigree.errors import UsageError

FORMATS = (".png", ".svg")


@app.command("fingerprint-image")
def fingerprint_image(
    ctx: typer.Context,
    model_id: Annotated[str, typer.Argument(metavar="ID", help="An indexed model id (ORG/NAME).")],
    out: Annotated[
        Path, typer.Option("-o", "--output", help="Output file, FILE.png or FILE.svg; its folder must exist.")
    ],
    scale: Annotated[int, typer.Option("--scale", min=1, max=8, help="Pixels per unit (176 x 208 units).")] = 1,
    home: Home = None,
    as_json: Json = False,
) -> None:
    """A picture of the model's fingerprint: relatives look alike, unrelated models look different
    (docs/fingerprint-images.md)."""
    home, as_json = options(ctx, home, as_json)
    with reporting(as_json):
        from pedigree.query.fingerprint_image import HEIGHT, IMAGE_RECIPE, WIDTH, png_bytes, stored_picture, svg_text

        suffix = out.suffix.lower()
        if suffix not in FORMATS:
            raise UsageError(f"-o {out}: the file name must end in .png or .svg, not {suffix or 'nothing'!r}")
        if not out.parent.is_dir():
            raise UsageError(f"-o {out}: the folder {out.parent} does not exist")
        with workspace(home, create=False) as ws:
            picture = stored_picture(ws.store, model_id)
        body = png_bytes(picture, scale) if suffix == ".png" else svg_text(picture, scale).encode()
        out.write_bytes(body)
    summary = {
        "model": model_id,
        "file": str(out),
        "format": suffix[1:],
        "bytes": len(body),
        "width": WIDTH * scale,
        "height": HEIGHT * scale,
        "blocks": picture.blocks,
        "recipe": IMAGE_RECIPE,
    }
    if as_json:
        render.emit_json(summary)
    else:
        line = (
            f"wrote {out} ({summary['format']}, {summary['width']} x {summary['height']}, "
            f"{picture.blocks} blocks, {len(body)} bytes)"
        )
        render.show(render.plain(line))  # wrapped at the terminal's width, as `graph export` does
