"""Fingerprint pictures: deterministic bytes, valid PNG and SVG, locality on the real zoo, the
``fingerprint-image`` command and the HTTP routes of the real app served by uvicorn."""

from __future__ import annotations

import json
import math
import struct
import threading
import time
import zlib
from collections.abc import Iterator
from itertools import combinations
from pathlib import Path
from xml.etree import ElementTree

import httpx
import numpy as np
import pytest
import uvicorn
from scipy import stats
from typer.testing import CliRunner

from pedigree.cli import app as cli_app
from pedigree.indexer.scoring import FingerprintView
from pedigree.query import fingerprint_image as fi
from pedigree.query.related import view_of
from pedigree.storage.db import Store

ROOT_MODEL = "llama-lab/tiny-llama-s1"
PRUNED = "slimming/tiny-llama-depth-pruned"
SVG_NS = "{http://www.w3.org/2000/svg}"
runner = CliRunner()


def read_png(data: bytes) -> tuple[int, int, np.ndarray]:
    """(width, height, pixels) of an 8-bit RGB PNG, checking the signature, every chunk's CRC,
    the chunk order and that the data fill the image exactly."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    position, kinds, idat = 8, [], b""
    width = height = 0
    while position < len(data):
        (length,) = struct.unpack(">I", data[position : position + 4])
        kind, body = data[position + 4 : position + 8], data[position + 8 : position + 8 + length]
        (crc,) = struct.unpack(">I", data[position + 8 + length : position + 12 + length])
        assert crc == zlib.crc32(kind + body) & 0xFFFFFFFF, f"bad CRC in {kind!r}"
        kinds.append(kind)
        if kind == b"IHDR":
            width, height, depth, colour, compression, filtering, interlace = struct.unpack(">IIBBBBB", body)
            assert (depth, colour, compression, filtering, interlace) == (8, 2, 0, 0, 0)
        elif kind == b"IDAT":
            idat += body
        position += 12 + length
    assert position == len(data) and kinds[0] == b"IHDR" and kinds[-1] == b"IEND" and b"IDAT" in kinds
    raw = np.frombuffer(zlib.decompress(idat), dtype=np.uint8)
    assert raw.size == height * (1 + 3 * width)
    rows = raw.reshape(height, 1 + 3 * width)
    assert not rows[:, 0].any()  # filter type 0 on every scanline
    return width, height, rows[:, 1:].reshape(height, width, 3)


@pytest.fixture(scope="module")
def views(indexed_home: Path) -> dict[str, FingerprintView]:
    """Every indexed model's stored fingerprint."""
    with Store(indexed_home / "pedigree.duckdb", read_only=True) as store:
        return {r.id: view_of(store, r.id, fi.stored_version(store, r.id) or "") for r in store.models("indexed")}


@pytest.fixture(scope="module")
def pictures(views: dict[str, FingerprintView]) -> dict[str, fi.FingerprintPicture]:
    return {m: fi.picture_of(v) for m, v in views.items()}


def test_same_fingerprint_same_bytes(indexed_home: Path) -> None:
    with Store(indexed_home / "pedigree.duckdb", read_only=True) as store:
        first, second = fi.stored_picture(store, ROOT_MODEL), fi.stored_picture(store, ROOT_MODEL)
    assert first is not second
    assert fi.png_bytes(first) == fi.png_bytes(second)
    assert fi.png_bytes(first, 3) == fi.png_bytes(second, 3)
    assert fi.svg_text(first) == fi.svg_text(second)


def test_png_is_valid(pictures: dict[str, fi.FingerprintPicture]) -> None:
    picture = pictures[ROOT_MODEL]
    for scale in (1, 2):
        width, height, pixels = read_png(fi.png_bytes(picture, scale))
        assert (width, height) == (fi.WIDTH * scale, fi.HEIGHT * scale)
        assert np.array_equal(pixels, fi.raster(picture, scale))
    assert len({tuple(p) for p in fi.raster(picture).reshape(-1, 3)}) > 20  # a picture, not a flat fill


def test_svg_parses_and_matches_the_raster(pictures: dict[str, fi.FingerprintPicture]) -> None:
    picture = pictures[PRUNED]
    root = ElementTree.fromstring(fi.svg_text(picture, 2))
    assert root.tag == f"{SVG_NS}svg"
    assert (root.get("width"), root.get("height")) == (str(2 * fi.WIDTH), str(2 * fi.HEIGHT))
    assert PRUNED in (root.findtext(f"{SVG_NS}title") or "")
    rects = root.findall(f"{SVG_NS}rect")
    assert picture.blocks == 2  # the model kept 2 of its parent's 4 blocks
    assert len(rects) == 1 + fi.GLYPH_ROWS * 2 * fi.GLYPH_HALF_COLUMNS + fi.STRIP_ROWS * 2
    pixels = fi.raster(picture)
    for rect in rects[1:]:  # each rectangle's colour is the raster's at its corner
        x, y = int(rect.get("x", 0)), int(rect.get("y", 0))
        assert rect.get("fill") == "#{:02x}{:02x}{:02x}".format(*pixels[y, x])


def test_glyph_follows_the_documented_formula() -> None:
    """E[(t - t')²] = (1 - ρ_s)/6 with ρ_s = (6/π) arcsin(ρ/2), for random vectors at cosine ρ."""
    rng = np.random.default_rng(7)
    measured = []
    for rho in (0.0, 0.5, 0.9, 0.99):
        squares = []
        for _ in range(200):
            a = rng.standard_normal(512)
            a /= np.linalg.norm(a)
            other = rng.standard_normal(512)
            other -= (other @ a) * a
            b = rho * a + math.sqrt(1 - rho**2) * other / np.linalg.norm(other)
            squares.append(np.mean((fi.glyph_values(a) - fi.glyph_values(b)) ** 2))
        expected = (1 - 6 / math.pi * math.asin(rho / 2)) / 6
        error = np.std(squares) / math.sqrt(len(squares))
        assert abs(np.mean(squares) - expected) < 4 * error, (rho, np.mean(squares), expected)
        measured.append(np.mean(squares))
    assert measured == sorted(measured, reverse=True)


def test_a_model_without_blocks_still_draws() -> None:
    picture = fi.FingerprintPicture("x/y", fi.glyph_values(np.ones(64)), fi.strip_values(np.zeros((0, 64))))
    pixels = fi.raster(picture)
    assert picture.blocks == 0 and tuple(pixels[fi.STRIP_TOP + 1, fi.MARGIN + 1]) == fi.NO_BLOCKS
    assert read_png(fi.png_bytes(picture))[:2] == (fi.WIDTH, fi.HEIGHT)


def test_relatives_look_alike_on_the_zoo(pictures: dict[str, fi.FingerprintPicture], truth: dict) -> None:
    """On zoo A: every model that has a relative has a relative as its nearest picture, related
    pairs are closer than unrelated ones at the median, and distance falls as cosine rises."""
    rasters = {m: fi.raster(p) for m, p in pictures.items()}
    related: list[float] = []
    unrelated: list[float] = []
    nearest: dict[str, tuple[float, str]] = {}
    for a, b in combinations(sorted(rasters), 2):
        d = fi.image_distance(rasters[a], rasters[b])
        same = truth[a]["family"] == truth[b]["family"]
        (related if same else unrelated).append(d)
        for m, other in ((a, b), (b, a)):
            if m not in nearest or d < nearest[m][0]:
                nearest[m] = (d, other)
    with_relatives = {m for m in rasters if any(truth[o]["family"] == truth[m]["family"] for o in rasters if o != m)}
    assert len(with_relatives) > 10
    strangers = {m: nearest[m][1] for m in with_relatives if truth[nearest[m][1]]["family"] != truth[m]["family"]}
    assert strangers == {}
    assert np.median(related) < np.median(unrelated)
    assert fi.image_distance(rasters[ROOT_MODEL], rasters[ROOT_MODEL]) == 0.0


def test_distance_falls_as_cosine_rises(
    views: dict[str, FingerprintView], pictures: dict[str, fi.FingerprintPicture]
) -> None:
    rasters = {m: fi.raster(p) for m, p in pictures.items()}
    pairs = list(combinations(sorted(views), 2))
    cosines = [float(views[a].model @ views[b].model) for a, b in pairs]
    distances = [fi.image_distance(rasters[a], rasters[b]) for a, b in pairs]
    assert stats.spearmanr(distances, cosines)[0] < 0 and stats.pearsonr(distances, cosines)[0] < 0


# ---- the command -----------------------------------------------------------------------------


def invoke(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(cli_app, list(args), terminal_width=200, env={"COLUMNS": "200"})
    return result.exit_code, result.stdout, result.stderr


def test_cli_writes_png_and_svg(indexed_home: Path, tmp_path: Path, pictures: dict[str, fi.FingerprintPicture]) -> None:
    png, svg = tmp_path / "s1.png", tmp_path / "s1.SVG"
    code, out, _ = invoke("fingerprint-image", ROOT_MODEL, "-o", str(png), "--home", str(indexed_home))
    # one line at 200 columns (it wraps at the terminal's width: the 80-column case is in test_cli_commands)
    assert code == 0 and out.startswith(f"wrote {png} (png, 176 x 208, 4 blocks")
    assert png.read_bytes() == fi.png_bytes(pictures[ROOT_MODEL])
    code, out, _ = invoke(
        "--json", "fingerprint-image", ROOT_MODEL, "-o", str(svg), "--scale", "2", "--home", str(indexed_home)
    )
    assert code == 0
    summary = json.loads(out)
    assert summary == {
        "model": ROOT_MODEL,
        "file": str(svg),
        "format": "svg",
        "bytes": svg.stat().st_size,
        "width": 352,
        "height": 416,
        "blocks": 4,
        "recipe": fi.IMAGE_RECIPE,
    }
    assert svg.read_text() == fi.svg_text(pictures[ROOT_MODEL], 2)


@pytest.mark.parametrize(
    ("model", "output", "home", "message"),
    [
        ("nobody/nothing", "x.png", "indexed", "'nobody/nothing' is not in the index"),
        (ROOT_MODEL, "x.gif", "indexed", "must end in .png or .svg, not '.gif'"),
        (ROOT_MODEL, "x", "indexed", "must end in .png or .svg, not 'nothing'"),
        (ROOT_MODEL, "missing/x.png", "indexed", "does not exist"),
        (ROOT_MODEL, "x.png", "empty", "no index at"),
        (ROOT_MODEL, "x.png", "file", "is a file, not a data folder"),
    ],
)
def test_cli_errors_are_one_line(
    indexed_home: Path, tmp_path: Path, model: str, output: str, home: str, message: str
) -> None:
    homes = {"indexed": indexed_home, "empty": tmp_path / "empty", "file": tmp_path / "a-file"}
    homes["empty"].mkdir()
    homes["file"].write_text("not a data folder")
    args = ("fingerprint-image", model, "-o", str(tmp_path / output), "--home", str(homes[home]))
    code, out, err = invoke(*args)
    assert code == 1 and out == "" and err.count("\n") == 1 and err.startswith("error: ") and message in err
    code, out, _ = invoke(*args, "--json")
    assert code == 1 and message in json.loads(out)["error"]
    assert not (tmp_path / output).exists()


# ---- the HTTP routes -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def served(indexed_home: Path) -> Iterator[str]:
    """The real app over the indexed zoo, served by uvicorn on a free port; yields its base URL."""
    from pedigree.service.app import create_app

    app = create_app(indexed_home)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not (server.started and server.servers):
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        reader = getattr(app.state, "snapshots", None)
        if reader is not None:
            reader.close()


def test_http_svg_and_png(served: str, pictures: dict[str, fi.FingerprintPicture]) -> None:
    with httpx.Client(base_url=served, timeout=30) as client:
        svg = client.get(f"/api/models/{ROOT_MODEL}/fingerprint.svg")
        assert svg.status_code == 200 and svg.headers["content-type"].startswith("image/svg+xml")
        assert svg.text == fi.svg_text(pictures[ROOT_MODEL])
        assert ElementTree.fromstring(svg.content).tag == f"{SVG_NS}svg"
        png = client.get(f"/api/models/{PRUNED}/fingerprint.png", params={"scale": 2})
        assert png.status_code == 200 and png.headers["content-type"] == "image/png"
        assert png.content == fi.png_bytes(pictures[PRUNED], 2)
        assert read_png(png.content)[:2] == (2 * fi.WIDTH, 2 * fi.HEIGHT)
        again = client.get(
            f"/api/models/{PRUNED}/fingerprint.png", params={"scale": 2}, headers={"If-None-Match": png.headers["etag"]}
        )
        assert again.status_code == 304 and again.content == b""
        other = client.get(f"/api/models/{ROOT_MODEL}/fingerprint.png", params={"scale": 2})
        assert other.headers["etag"] != png.headers["etag"]


def test_http_errors(served: str) -> None:
    with httpx.Client(base_url=served, timeout=30) as client:
        for suffix in ("svg", "png"):
            missing = client.get(f"/api/models/nobody/nothing/fingerprint.{suffix}")
            assert missing.status_code == 404
            assert missing.json() == {"error": "'nobody/nothing' is not in the index"}
        too_big = client.get(f"/api/models/{ROOT_MODEL}/fingerprint.png", params={"scale": 99})
        assert too_big.status_code in (400, 422)
