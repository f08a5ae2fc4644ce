"""Dequantization of ggml tensor data in numpy, block layouts exactly as ggml defines them.

Reference: ggml ``ggml-common.h`` (the ``block_*`` structs) and ``ggml-quants.c``
(``dequantize_row_*``).  All multi-byte fields are little-endian; ``half`` is IEEE fp16.

====== ===== ============================================================================
type   elems block bytes, in order
====== ===== ============================================================================
Q4_0   32    half d | u8 qs[16]: x[j] = d*((qs[j] & 15) - 8), x[j+16] = d*((qs[j] >> 4) - 8)
Q8_0   32    half d | i8 qs[32]: x[j] = d*qs[j]
Q4_K   256   half d | half dmin | u8 scales[12] | u8 qs[128]; 8 sub-blocks of 32 with 6-bit
             scale sc and min m (``get_scale_min_k4``): x = d*sc*q - dmin*m, q a nibble; each
             32 bytes of qs hold sub-blocks 2i (low nibbles) and 2i+1 (high nibbles)
Q5_K   256   half d | half dmin | u8 scales[12] | u8 qh[32] | u8 qs[128]; as Q4_K with a 5th
             bit: sub-block s takes bit s of qh[l] as 16
Q6_K   256   u8 ql[128] | u8 qh[64] | i8 scales[16] | half d; 16 sub-blocks of 16,
             x = d*scales[s]*(q - 32), q = 4 bits of ql | 2 bits of qh (see :func:`_q6_k`)
====== ===== ============================================================================

``F32``, ``F16`` and ``BF16`` are plain little-endian values.  Every other ggml type is refused
with a one-line :class:`~pedigree.errors.CheckpointError` naming it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt

from pedigree.errors import CheckpointError
from pedigree.indexer.gguf_format import GGMLType

F32Array = npt.NDArray[np.float32]
U8Array = npt.NDArray[np.uint8]

QUANTIZED = ("Q8_0", "Q4_0", "Q4_K", "Q5_K", "Q6_K")
SUPPORTED = ("F32", "F16", "BF16", *QUANTIZED)


def _half(blocks: U8Array, start: int) -> F32Array:
    """The fp16 field at byte ``start`` of every block, as a column of float32."""
    return blocks[:, start : start + 2].copy().view("<f2").astype(np.float32)


def _q8_0(blocks: U8Array) -> F32Array:
    d = _half(blocks, 0)
    return d * blocks[:, 2:34].view(np.int8).astype(np.float32)


def _q4_0(blocks: U8Array) -> F32Array:
    d = _half(blocks, 0)
    qs = blocks[:, 2:18]
    q = np.concatenate([qs & 0x0F, qs >> 4], axis=1).astype(np.float32) - 8.0
    return d * q


def _scale_min_k4(scales: U8Array) -> tuple[F32Array, F32Array]:
    """The eight 6-bit (scale, min) pairs of a Q4_K/Q5_K block (ggml ``get_scale_min_k4``)."""
    s = scales.astype(np.uint16)
    sc = np.empty((len(s), 8), dtype=np.uint16)
    mn = np.empty((len(s), 8), dtype=np.uint16)
    sc[:, :4] = s[:, 0:4] & 63
    mn[:, :4] = s[:, 4:8] & 63
    sc[:, 4:] = (s[:, 8:12] & 0x0F) | ((s[:, 0:4] >> 6) << 4)
    mn[:, 4:] = (s[:, 8:12] >> 4) | ((s[:, 4:8] >> 6) << 4)
    return sc.astype(np.float32), mn.astype(np.float32)


def _k_quant(blocks: U8Array, q: npt.NDArray[Any]) -> F32Array:
    """x = d*sc*q - dmin*m over 8 sub-blocks of 32, ``q`` shaped (blocks, 8, 32)."""
    d, dmin = _half(blocks, 0), _half(blocks, 2)
    sc, mn = _scale_min_k4(blocks[:, 4:16])
    out = (d * sc)[:, :, None] * q.astype(np.float32) - (dmin * mn)[:, :, None]
    return out.reshape(len(blocks), 256)


def _nibbles_k(qs: U8Array) -> U8Array:
    """Q4_K/Q5_K low bits: each 32 bytes give sub-block 2i (low nibbles) then 2i+1 (high)."""
    grouped = qs.reshape(len(qs), 4, 1, 32)
    return np.concatenate([grouped & 0x0F, grouped >> 4], axis=2).reshape(len(qs), 8, 32)


def _q4_k(blocks: U8Array) -> F32Array:
    return _k_quant(blocks, _nibbles_k(blocks[:, 16:144]))


def _q5_k(blocks: U8Array) -> F32Array:
    qh = blocks[:, 16:48]
    high = np.stack([(qh >> s) & 1 for s in range(8)], axis=1)  # (blocks, 8 sub-blocks, 32)
    return _k_quant(blocks, _nibbles_k(blocks[:, 48:176]) | (high << 4))


def _q6_k(blocks: U8Array) -> F32Array:
    """Per half (128 values): l in [0, 32) gives x[l], x[l+32], x[l+64], x[l+96] from
    ql[l] & 15, ql[l+32] & 15, ql[l] >> 4, ql[l+32] >> 4 with qh[l] bits 0-1, 2-3, 4-5, 6-7."""
    n = len(blocks)
    ql = blocks[:, 0:128].reshape(n, 2, 64)
    qh = blocks[:, 128:192].reshape(n, 2, 1, 32)
    low = np.stack([ql[:, :, :32] & 0x0F, ql[:, :, 32:] & 0x0F, ql[:, :, :32] >> 4, ql[:, :, 32:] >> 4], axis=2)
    high = (qh >> np.array([0, 2, 4, 6], dtype=np.uint8).reshape(1, 1, 4, 1)) & 3
    q = (low | (high << 4)).astype(np.float32) - 32.0  # (n, 2 halves, 4 quarters, 32)
    scales = blocks[:, 192:208].view(np.int8).astype(np.float32).reshape(n, 16)
    d = _half(blocks, 208)
    out: F32Array = (d * scales).repeat(16, axis=1) * q.reshape(n, 256)
    return out


_DEQUANT: dict[str, Callable[[U8Array], F32Array]] = {
    "Q8_0": _q8_0,
    "Q4_0": _q4_0,
    "Q4_K": _q4_k,
    "Q5_K": _q5_k,
    "Q6_K": _q6_k,
}


def check_supported(ggml_type: GGMLType, what: str, path: str | None = None) -> None:
    """``CheckpointError`` unless :func:`dequantize` can decode ``ggml_type``."""
    if ggml_type.name not in SUPPORTED:
        raise CheckpointError(
            f"{what} is stored as ggml type {ggml_type.name}, which pedigree does not decode "
            f"(supported: {', '.join(SUPPORTED)})",
            path=path,
        )


def dequantize(data: bytes | bytearray | memoryview, ggml_type: GGMLType) -> F32Array:
    """The float32 values of whole blocks of ``ggml_type`` (a flat array)."""
    check_supported(ggml_type, "tensor data")
    raw: U8Array = np.frombuffer(data, dtype=np.uint8)
    if len(raw) % ggml_type.type_size:
        raise CheckpointError(f"{len(raw)} bytes are not whole {ggml_type.name} blocks of {ggml_type.type_size} bytes")
    if ggml_type.name == "F32":
        return raw.view("<f4").astype(np.float32)
    if ggml_type.name == "F16":
        return raw.view("<f2").astype(np.float32)
    if ggml_type.name == "BF16":
        return (raw.view("<u2").astype(np.uint32) << 16).view(np.float32)
    blocks = raw.reshape(-1, ggml_type.type_size)
    return _DEQUANT[ggml_type.name](blocks).reshape(-1)
