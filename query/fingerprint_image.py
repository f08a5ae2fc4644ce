"""A human-readable picture of a model's fingerprint: relatives look alike, strangers do not.

The picture is a fixed function of the stored fingerprint vectors (``indexer.scoring``'s
:class:`FingerprintView`), nothing else, so the same fingerprint always gives the same bytes.

**The glyph** (a 16 x 16 mirror-symmetric mosaic, read like an identicon).  With m̂ the unit model
vector (D numbers) and P a fixed K x D matrix of independent N(0, 1) entries drawn from a seeded
generator (K = 16 x 8 = 128 rows), each tile of the left half shows

    z_k = P_k · m̂ ~ N(0, 1),        t_k = Φ(z_k) ∈ [0, 1]      (Φ the standard normal CDF)

through a perceptual palette (viridis); the right half mirrors the left.  For two fingerprints
with cosine ρ, (z_k, z'_k) is a standard bivariate normal with correlation ρ, so each tile pair
is a draw from the Gaussian copula and

    E[(t_k - t'_k)²] = (1 - ρ_s) / 6,      ρ_s = (6/π) arcsin(ρ / 2)

a decreasing function of ρ alone: identical fingerprints give identical tiles, cosine ≈ 1 (a
fine-tune, a quantised copy, a permuted copy) near-identical ones, cosine ≈ 0 independent ones.
This is random-projection locality-sensitive hashing with the sign replaced by the smooth Φ.

**The block strip** below the glyph: one column per block (layer) of the model, in depth order,
one row per each of 6 further seeded projections of the block's unit vector, t = Φ(Q_r · b̂).  A
model that kept some of its parent's blocks shows them as matching columns.

The module is numpy only (no torch), so the CLI command and the web route stay fast.  PNG is
written here (zlib + struct, 8-bit RGB); SVG is text with one rectangle per tile.
"""

from __future__ import annotations

import hashlib
import math
import struct
import zlib
from dataclasses import dataclass
from functools import lru_cache
from xml.sax.saxutils import escape

import numpy as np

from pedigree.errors import ModelNotFoundError
from pedigree.indexer.scoring import FingerprintView
from pedigree.storage.db import Store
from pedigree.types import Status

IMAGE_RECIPE = "fpimg1"  # seeds the projections: a change of layout or maths changes the name
GLYPH_ROWS = 16
GLYPH_HALF_COLUMNS = 8  # the glyph is GLYPH_ROWS x (2 x GLYPH_HALF_COLUMNS) tiles, mirrored
STRIP_ROWS = 6
SMOOTHING = 1.2  # σ of the glyph's blur, in tiles: shapes a person can see, not per-tile noise
TILE = 10  # pixels per tile at scale 1, gap included
GAP = 1  # background pixels between tiles
MARGIN = 8
STRIP_ROW_HEIGHT = 4
GLYPH_SIDE = TILE * 2 * GLYPH_HALF_COLUMNS  # 160
WIDTH = MARGIN + GLYPH_SIDE + MARGIN  # 176
STRIP_TOP = MARGIN + GLYPH_ROWS * TILE + MARGIN
HEIGHT = STRIP_TOP + STRIP_ROWS * STRIP_ROW_HEIGHT + MARGIN  # 208
BACKGROUND = (244, 244, 245)
NO_BLOCKS = (212, 212, 216)  # the strip of a model without block vectors
# viridis (matplotlib) at t = 0, 1/9, ..., 1: perceptually uniform and colour-blind safe
VIRIDIS = np.array(
    [
        (0x44, 0x01, 0x54),
        (0x48, 0x28, 0x78),
        (0x3E, 0x49, 0x89),
        (0x31, 0x68, 0x8E),
        (0x26, 0x82, 0x8E),
        (0x1F, 0x9E, 0x89),
        (0x35, 0xB7, 0x79),
        (0x6E, 0xCE, 0x58),
        (0xB5, 0xDE, 0x2B),
        (0xFD, 0xE7, 0x25),
    ],
    dtype=np.float64,
)


@dataclass(frozen=True)
class FingerprintPicture:
    """The values a picture shows, each in [0, 1]: ``glyph`` [16, 16] and ``strip`` [6, L]."""

    label: str
    glyph: np.ndarray
    strip: np.ndarray

    @property
    def blocks(self) -> int:
        return int(self.strip.shape[1])


@lru_cache(maxsize=8)
def gaussian_basis(name: str, rows: int, dim: int) -> np.ndarray:
    """A fixed [rows, dim] matrix of N(0, 1) entries seeded by ``IMAGE_RECIPE/name``.

    Uniforms come from PCG64's raw 64-bit stream (stable across numpy versions, unlike the
    Generator's distributions) and become normals by Box-Muller: z = √(-2 ln u₁) cos(2π u₂).
    """
    seed = int.from_bytes(hashlib.sha256(f"{IMAGE_RECIPE}/{name}".encode()).digest()[:16], "little")
    raw = np.random.PCG64(seed).random_raw(2 * rows * dim)
    uniforms = ((raw >> np.uint64(11)).astype(np.float64) + 0.5) / float(1 << 53)  # in (0, 1)
    u1, u2 = uniforms[: rows * dim], uniforms[rows * dim :]
    normals = np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * math.pi * u2)
    basis = normals.reshape(rows, dim)
    basis.setflags(write=False)
    return basis


def normal_cdf(z: np.ndarray) -> np.ndarray:
    """Φ(z) = (1 + erf(z / √2)) / 2, elementwise."""
    erf = np.vectorize(math.erf, otypes=[np.float64])
    values: np.ndarray = 0.5 * (1.0 + erf(np.asarray(z, dtype=np.float64) / math.sqrt(2.0)))
    return values


def _unit(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (a zero row stays zero)."""
    array = np.asarray(vectors, dtype=np.float64)
    norms = np.linalg.norm(array, axis=-1, keepdims=True)
    return array / np.where(norms > 0.0, norms, 1.0)


@lru_cache(maxsize=1)
def smoothing_matrix() -> np.ndarray:
    """S [K, K]: tile k of the left half takes Σ_j S_kj g_j, a Gaussian blur (σ = SMOOTHING tiles)
    of the raw projections g over the half grid (mirrored at the centre line), each row scaled to
    unit length so that every tile stays N(0, 1) and keeps the correlation ρ of the vectors."""
    rows, columns = np.divmod(np.arange(GLYPH_ROWS * GLYPH_HALF_COLUMNS), GLYPH_HALF_COLUMNS)
    dr = rows[:, None] - rows[None, :]
    dc = columns[:, None] - columns[None, :]
    mirrored = columns[:, None] + columns[None, :] + 1 - 2 * GLYPH_HALF_COLUMNS  # distance through the mirror
    weights = np.exp(-(dr**2 + dc**2) / (2 * SMOOTHING**2)) + np.exp(-(dr**2 + mirrored**2) / (2 * SMOOTHING**2))
    matrix: np.ndarray = weights / np.linalg.norm(weights, axis=1, keepdims=True)
    matrix.setflags(write=False)
    return matrix


def glyph_values(model_vector: np.ndarray) -> np.ndarray:
    """[16, 16] tile values: t = Φ(S P m̂) on the left half, mirrored onto the right."""
    model = _unit(model_vector)
    basis = gaussian_basis("glyph", GLYPH_ROWS * GLYPH_HALF_COLUMNS, len(model))
    half = normal_cdf(smoothing_matrix() @ (basis @ model)).reshape(GLYPH_ROWS, GLYPH_HALF_COLUMNS)
    return np.concatenate([half, half[:, ::-1]], axis=1)


def strip_values(layer_vectors: np.ndarray) -> np.ndarray:
    """[6, L] strip values: column l is t = Φ(Q b̂_l) for block l's unit vector b̂_l."""
    layers = np.asarray(layer_vectors, dtype=np.float64)
    if layers.ndim != 2 or len(layers) == 0:
        return np.zeros((STRIP_ROWS, 0), dtype=np.float64)
    basis = gaussian_basis("strip", STRIP_ROWS, layers.shape[1])
    return normal_cdf(basis @ _unit(layers).T)


def picture_of(view: FingerprintView) -> FingerprintPicture:
    """The picture of one fingerprint (module docstring)."""
    return FingerprintPicture(view.label, glyph_values(view.model), strip_values(view.layers))


def palette(values: np.ndarray) -> np.ndarray:
    """Values in [0, 1] to 8-bit RGB through viridis (linear between its 10 stops), shape [..., 3]."""
    t = np.clip(np.asarray(values, dtype=np.float64), 0.0, 1.0) * (len(VIRIDIS) - 1)
    low = np.minimum(np.floor(t).astype(np.int64), len(VIRIDIS) - 2)
    weight = (t - low)[..., None]
    rgb = VIRIDIS[low] * (1.0 - weight) + VIRIDIS[low + 1] * weight
    colours: np.ndarray = np.rint(rgb).astype(np.uint8)
    return colours


def _strip_edges(blocks: int) -> list[int]:
    """Pixel boundaries (scale 1) of the strip's block columns across the glyph's width."""
    return [MARGIN + round(i * GLYPH_SIDE / blocks) for i in range(blocks + 1)]


def _cells(picture: FingerprintPicture) -> list[tuple[int, int, int, int, tuple[int, int, int]]]:
    """Every coloured rectangle of the picture at scale 1: (x, y, width, height, rgb)."""
    cells = []
    colours = palette(picture.glyph)
    for row in range(GLYPH_ROWS):
        for column in range(2 * GLYPH_HALF_COLUMNS):
            x, y = MARGIN + column * TILE, MARGIN + row * TILE
            cells.append((x, y, TILE - GAP, TILE - GAP, _rgb(colours[row, column])))
    strip_height = STRIP_ROWS * STRIP_ROW_HEIGHT
    if picture.blocks == 0:
        cells.append((MARGIN, STRIP_TOP, GLYPH_SIDE, strip_height, NO_BLOCKS))
        return cells
    edges = _strip_edges(picture.blocks)
    strip = palette(picture.strip)
    for block in range(picture.blocks):
        for row in range(STRIP_ROWS):
            x, width = edges[block], edges[block + 1] - edges[block]
            y = STRIP_TOP + row * STRIP_ROW_HEIGHT
            cells.append((x, y, width, STRIP_ROW_HEIGHT, _rgb(strip[row, block])))
    return cells


def _rgb(colour: np.ndarray) -> tuple[int, int, int]:
    return int(colour[0]), int(colour[1]), int(colour[2])


def raster(picture: FingerprintPicture, scale: int = 1) -> np.ndarray:
    """The picture as a [HEIGHT·scale, WIDTH·scale, 3] uint8 array (what the PNG holds)."""
    if scale < 1:
        raise ValueError(f"scale must be a positive integer, not {scale}")
    pixels = np.empty((HEIGHT * scale, WIDTH * scale, 3), dtype=np.uint8)
    pixels[:] = BACKGROUND
    for x, y, width, height, rgb in _cells(picture):
        pixels[y * scale : (y + height) * scale, x * scale : (x + width) * scale] = rgb
    return pixels


def image_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Mean absolute difference of two same-shaped uint8 rasters, over all pixels and channels, / 255."""
    if a.shape != b.shape:
        raise ValueError(f"rasters differ in shape: {a.shape} vs {b.shape}")
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean() / 255.0)


def _chunk(kind: bytes, data: bytes) -> bytes:
    """One PNG chunk: length, type, data, CRC-32 of type + data (big-endian)."""
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def encode_png(pixels: np.ndarray) -> bytes:
    """An 8-bit RGB PNG of a [H, W, 3] uint8 array: signature, IHDR, one IDAT (each scanline with
    filter type 0, deflated at level 9) and IEND."""
    if pixels.ndim != 3 or pixels.shape[2] != 3 or pixels.dtype != np.uint8:
        raise ValueError(f"expected a [H, W, 3] uint8 array, not {pixels.shape} {pixels.dtype}")
    height, width = int(pixels.shape[0]), int(pixels.shape[1])
    scanlines = np.concatenate([np.zeros((height, 1), dtype=np.uint8), pixels.reshape(height, width * 3)], axis=1)
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit truecolour, no interlace
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", zlib.compress(scanlines.tobytes(), 9))
        + _chunk(b"IEND", b"")
    )


def png_bytes(picture: FingerprintPicture, scale: int = 1) -> bytes:
    """The picture as PNG bytes (``scale`` pixels per unit)."""
    return encode_png(raster(picture, scale))


def svg_text(picture: FingerprintPicture, scale: int = 1) -> str:
    """The picture as a standalone SVG document: one ``rect`` per tile and strip cell, titled
    with the model id; its geometry is the PNG's."""
    width, height = WIDTH * scale, HEIGHT * scale
    head = (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" shape-rendering="crispEdges" role="img">'
    )
    lines = [
        head,
        f"<title>fingerprint of {escape(picture.label)}</title>",
        f'<rect width="{WIDTH}" height="{HEIGHT}" fill="{_hex(BACKGROUND)}"/>',
    ]
    for x, y, w, h, rgb in _cells(picture):
        lines.append(f'<rect x="{x}" y="{y}" width="{w}" height="{h}" fill="{_hex(rgb)}"/>')
    lines.append("</svg>")
    return "\n".join(lines) + "\n"


def _hex(rgb: tuple[int, int, int]) -> str:
    return "#{:02x}{:02x}{:02x}".format(*rgb)


def stored_version(store: Store, model_id: str) -> str | None:
    """The fingerprint recipe version the model's vectors are stored under (re-indexing replaces
    all of a model's vectors, so there is one), or None when it has none."""
    row = store.conn.execute(
        "SELECT f.version FROM fingerprints f JOIN models m ON m.pk = f.model_pk "
        "WHERE m.id = ? AND f.kind = 'model' ORDER BY f.generation DESC LIMIT 1",
        [model_id],
    ).fetchone()
    return None if row is None else str(row[0])


def stored_picture(store: Store, model_id: str, version: str | None = None) -> FingerprintPicture:
    """The picture of an indexed model's stored fingerprint (of ``version``; default: the one it
    is stored under, read without loading the fingerprint code and torch), or
    ModelNotFoundError saying why there is none."""
    from pedigree.query.related import view_of

    record = store.get_model(model_id)
    if record is None:
        raise ModelNotFoundError(f"{model_id!r} is not in the index")
    if record.status != Status.INDEXED:
        raise ModelNotFoundError(f"{model_id!r} is in the index but {record.status}: {record.error}")
    chosen = version or stored_version(store, model_id)
    if chosen is None:
        raise ModelNotFoundError(f"{model_id!r} has no stored fingerprint; re-run `pedigree ingest`")
    return picture_of(view_of(store, model_id, chosen))
