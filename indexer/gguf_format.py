"""Parsing of the GGUF container (llama.cpp / ggml), with no file I/O of its own.

Follows the GGUF specification (ggml ``docs/gguf.md``), versions 2 and 3 (little-endian)::

    u32 magic "GGUF" | u32 version | u64 tensor_count | u64 metadata_kv_count
    metadata_kv_count x (gguf_string key | u32 value_type | value)
    tensor_count x (gguf_string name | u32 n_dims | u64 dims[n_dims] | u32 ggml_type | u64 offset)
    padding to ``general.alignment`` (default 32) | tensor data

A ``gguf_string`` is ``u64 length | UTF-8 bytes``; an array value is ``u32 element_type | u64
count | elements``.  ``dims[0]`` is the fastest-varying axis, so the row-major shape is the dims
reversed; a tensor's ``offset`` is relative to the start of the data section and a multiple of the
alignment.

The parser reads through a ``read(begin, end) -> bytes`` callable in growing chunks, so a local
file and HTTP range requests share it.  Every count, length and nesting depth is checked against
a fixed cap *before* anything is allocated for it, and the whole header against
:data:`MAX_HEADER_BYTES`; a hostile file only ever produces a one-line
:class:`~pedigree.errors.CheckpointError`.  Version 1 (32-bit counts) and big-endian files are
refused.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from pedigree.errors import CheckpointError

MAGIC = b"GGUF"
VERSIONS = (2, 3)
DEFAULT_ALIGNMENT = 32
MAX_HEADER_BYTES = 64 * 2**20
"""Most bytes of metadata and tensor infos read (a 256k-token vocabulary with merges is ~20 MB)."""
MAX_TENSORS = 1 << 16
MAX_KV = 1 << 16
MAX_KEY_BYTES = 1 << 16
MAX_STRING_BYTES = 4 * 2**20
MAX_ARRAY = 1 << 21
MAX_VALUES = 1 << 21
"""Most strings and arrays (nested ones included) one header may hold: Python objects cost far
more than the bytes they came from, so they are counted, numeric arrays are kept as numpy arrays."""
MAX_DEPTH = 3
MAX_NAME_BYTES = 1024
MAX_DIMS = 4
MAX_ALIGNMENT = 1 << 20
FIRST_READ = 64 * 1024

GGUFValue = Any
"""int | float | bool | str | list[GGUFValue] | numpy array (numeric arrays)."""


@dataclass(frozen=True)
class GGMLType:
    """A ggml tensor type: ``block`` elements are stored in ``type_size`` bytes."""

    name: str
    id: int
    block: int
    type_size: int


_QK_K = 256
GGML_TYPES: dict[int, GGMLType] = {
    t.id: t
    for t in (
        GGMLType("F32", 0, 1, 4),
        GGMLType("F16", 1, 1, 2),
        GGMLType("Q4_0", 2, 32, 2 + 16),
        GGMLType("Q4_1", 3, 32, 2 + 2 + 16),
        GGMLType("Q5_0", 6, 32, 2 + 4 + 16),
        GGMLType("Q5_1", 7, 32, 2 + 2 + 4 + 16),
        GGMLType("Q8_0", 8, 32, 2 + 32),
        GGMLType("Q8_1", 9, 32, 4 + 4 + 32),
        GGMLType("Q2_K", 10, _QK_K, 2 + 2 + _QK_K // 16 + _QK_K // 4),
        GGMLType("Q3_K", 11, _QK_K, 2 + _QK_K // 4 + _QK_K // 8 + 12),
        GGMLType("Q4_K", 12, _QK_K, 2 + 2 + _QK_K // 2 + 12),
        GGMLType("Q5_K", 13, _QK_K, 2 + 2 + _QK_K // 2 + _QK_K // 8 + 12),
        GGMLType("Q6_K", 14, _QK_K, 2 + _QK_K // 2 + _QK_K // 4 + _QK_K // 16),
        GGMLType("Q8_K", 15, _QK_K, 4 + _QK_K + _QK_K // 8),
        GGMLType("IQ2_XXS", 16, _QK_K, 2 + _QK_K // 4),
        GGMLType("IQ2_XS", 17, _QK_K, 2 + _QK_K // 4 + _QK_K // 32),
        GGMLType("IQ3_XXS", 18, _QK_K, 2 + _QK_K // 4 + _QK_K // 8),
        GGMLType("IQ1_S", 19, _QK_K, 2 + _QK_K // 8 + _QK_K // 16),
        GGMLType("IQ4_NL", 20, 32, 2 + 16),
        GGMLType("IQ3_S", 21, _QK_K, 2 + _QK_K // 4 + _QK_K // 8 + _QK_K // 32 + 4),
        GGMLType("IQ2_S", 22, _QK_K, 2 + _QK_K // 4 + _QK_K // 16),
        GGMLType("IQ4_XS", 23, _QK_K, 2 + 2 + _QK_K // 2 + _QK_K // 64),
        GGMLType("I8", 24, 1, 1),
        GGMLType("I16", 25, 1, 2),
        GGMLType("I32", 26, 1, 4),
        GGMLType("I64", 27, 1, 8),
        GGMLType("F64", 28, 1, 8),
        GGMLType("IQ1_M", 29, _QK_K, _QK_K // 8 + _QK_K // 16 + _QK_K // 32),
        GGMLType("BF16", 30, 1, 2),
        GGMLType("TQ1_0", 34, _QK_K, 2 + 4 * 13),
        GGMLType("TQ2_0", 35, _QK_K, 2 + 64),
        GGMLType("MXFP4", 39, 32, 1 + 16),
    )
}
"""Block sizes of the ggml types (ggml.c ``type_traits``): all are parsed and sized; only
:data:`indexer.gguf_quant.SUPPORTED` are decoded."""

# metadata value types: (struct format, numpy dtype) of the fixed-size ones
_SCALARS: dict[int, tuple[str, str]] = {
    0: ("<B", "<u1"),
    1: ("<b", "<i1"),
    2: ("<H", "<u2"),
    3: ("<h", "<i2"),
    4: ("<I", "<u4"),
    5: ("<i", "<i4"),
    6: ("<f", "<f4"),
    7: ("<?", "<u1"),
    10: ("<Q", "<u8"),
    11: ("<q", "<i8"),
    12: ("<d", "<f8"),
}
_STRING, _ARRAY, _BOOL = 8, 9, 7


@dataclass(frozen=True)
class GGUFTensor:
    """One tensor: ``shape`` is row-major (the GGUF dims reversed); ``begin``/``end`` are absolute
    byte offsets in the file."""

    name: str
    ggml_type: GGMLType
    shape: tuple[int, ...]
    begin: int
    end: int

    @property
    def row_nbytes(self) -> int:
        """Bytes of one row of dim 0 (the whole tensor for 0-D and 1-D ones: one "row" each element
        would split blocks, so 1-D tensors count as rows of one block-aligned vector)."""
        rows = self.shape[0] if len(self.shape) > 1 else 1
        return (self.end - self.begin) // rows if rows else 0


@dataclass(frozen=True)
class GGUFHeader:
    """What the header says: metadata by key (file order), tensors by name (file order)."""

    version: int
    metadata: dict[str, GGUFValue]
    tensors: dict[str, GGUFTensor]
    alignment: int
    data_start: int
    header_bytes: int


Reader = Callable[[int, int], bytes]


class _Cursor:
    """Sequential reads over ``read`` with the header's caps; fetches chunks that double in size."""

    def __init__(self, read: Reader, size: int, path: str) -> None:
        self.read, self.size, self.path = read, size, path
        self.buf = bytearray()
        self.pos = 0
        self.chunk = FIRST_READ
        self.values = 0

    def fail(self, message: str) -> CheckpointError:
        return CheckpointError(message, path=self.path)

    def take(self, n: int, what: str) -> bytes:
        end = self.pos + n
        if end > MAX_HEADER_BYTES:
            raise self.fail(f"GGUF header is larger than the {MAX_HEADER_BYTES}-byte limit (reading {what})")
        if end > self.size:
            raise self.fail(f"GGUF file is truncated: {what} runs past the end of the file (size {self.size})")
        while end > len(self.buf):
            stop = min(self.size, MAX_HEADER_BYTES, max(end, len(self.buf) + self.chunk))
            got = self.read(len(self.buf), stop)
            if len(got) != stop - len(self.buf):
                raise self.fail(f"short read of the GGUF header at byte {len(self.buf)}")
            self.buf += got
            self.chunk = min(self.chunk * 2, 16 * 2**20)
        out = bytes(self.buf[self.pos : end])
        self.pos = end
        return out

    def unpack(self, fmt: str, what: str) -> Any:
        return struct.unpack(fmt, self.take(struct.calcsize(fmt), what))[0]

    def count(self, n: int, what: str) -> None:
        self.values += n
        if self.values > MAX_VALUES:
            raise self.fail(f"GGUF metadata holds more than {MAX_VALUES} strings and arrays (at {what})")

    def string(self, limit: int, what: str) -> str:
        n = self.unpack("<Q", what)
        if n > limit:
            raise self.fail(f"{what} is a string of {n} bytes, over the {limit}-byte limit")
        return self.take(n, what).decode("utf-8", errors="replace")

    def value(self, vtype: int, depth: int, what: str) -> GGUFValue:
        if vtype in _SCALARS:
            v = self.unpack(_SCALARS[vtype][0], what)
            return bool(v) if vtype == _BOOL else v
        if vtype == _STRING:
            self.count(1, what)
            return self.string(MAX_STRING_BYTES, what)
        if vtype != _ARRAY:
            raise self.fail(f"{what} has unknown metadata value type {vtype}")
        if depth >= MAX_DEPTH:
            raise self.fail(f"{what} nests arrays more than {MAX_DEPTH} deep")
        etype = self.unpack("<I", what)
        n = self.unpack("<Q", what)
        if n > MAX_ARRAY:
            raise self.fail(f"{what} is an array of {n} elements, over the {MAX_ARRAY}-element limit")
        self.count(1, what)
        if etype in _SCALARS:
            dtype = np.dtype(_SCALARS[etype][1])
            arr: npt.NDArray[Any] = np.frombuffer(self.take(n * dtype.itemsize, what), dtype=dtype)
            return arr.astype(bool) if etype == _BOOL else arr
        if etype not in (_STRING, _ARRAY):
            raise self.fail(f"{what} is an array of unknown value type {etype}")
        return [self.value(etype, depth + 1, what) for _ in range(n)]


def _tensor_info(cur: _Cursor, index: int) -> tuple[str, GGMLType, tuple[int, ...], int]:
    name = cur.string(MAX_NAME_BYTES, f"the name of tensor {index}")
    label = f"tensor {name[:200]!r}"
    n_dims = cur.unpack("<I", label)
    if not 1 <= n_dims <= MAX_DIMS:
        raise cur.fail(f"{label} has {n_dims} dimensions (1 to {MAX_DIMS} allowed)")
    dims = struct.unpack(f"<{n_dims}Q", cur.take(8 * n_dims, label))
    type_id = cur.unpack("<I", label)
    ggml_type = GGML_TYPES.get(type_id)
    if ggml_type is None:
        raise cur.fail(f"{label} has unknown ggml type {type_id}")
    offset = cur.unpack("<Q", label)
    if dims[0] % ggml_type.block:
        raise cur.fail(f"{label}: its rows of {dims[0]} elements do not fill whole {ggml_type.name} blocks")
    return name, ggml_type, tuple(reversed(dims)), offset


def _alignment(metadata: dict[str, GGUFValue], path: str) -> int:
    alignment = metadata.get("general.alignment", DEFAULT_ALIGNMENT)
    if (
        not isinstance(alignment, int)
        or isinstance(alignment, bool)
        or not 1 <= alignment <= MAX_ALIGNMENT
        or alignment & (alignment - 1)
    ):
        raise CheckpointError(f"general.alignment {str(alignment)[:50]} is not a power of two up to 1 MiB", path=path)
    return alignment


def parse_gguf(read: Reader, size: int, path: str) -> GGUFHeader:
    """The validated header of a GGUF file of ``size`` bytes read through ``read(begin, end)``."""
    cur = _Cursor(read, size, path)
    magic = cur.take(4, "the magic number") if size >= 4 else b""
    if magic != MAGIC:
        raise cur.fail(f"not a GGUF file (starts with {magic!r}, not {MAGIC!r})")
    version = cur.unpack("<I", "the version")
    if version not in VERSIONS:
        hint = " (a big-endian file?)" if version & 0xFFFF == 0 else ""
        raise cur.fail(f"GGUF version {version} is not supported (only 2 and 3){hint}")
    n_tensors = cur.unpack("<Q", "the tensor count")
    n_kv = cur.unpack("<Q", "the metadata count")
    if n_tensors > MAX_TENSORS:
        raise cur.fail(f"GGUF header claims {n_tensors} tensors, over the {MAX_TENSORS} limit")
    if n_kv > MAX_KV:
        raise cur.fail(f"GGUF header claims {n_kv} metadata entries, over the {MAX_KV} limit")
    metadata: dict[str, GGUFValue] = {}
    for i in range(n_kv):
        key = cur.string(MAX_KEY_BYTES, f"metadata key {i}")
        what = f"metadata {key[:200]!r}"
        if key in metadata:
            raise cur.fail(f"{what} appears twice")
        metadata[key] = cur.value(cur.unpack("<I", what), 0, what)
    infos = [_tensor_info(cur, i) for i in range(n_tensors)]
    alignment = _alignment(metadata, path)
    data_start = -(-cur.pos // alignment) * alignment
    if data_start > size:
        raise cur.fail(f"GGUF file is truncated: its data section would start at byte {data_start} (size {size})")
    tensors: dict[str, GGUFTensor] = {}
    for name, ggml_type, shape, offset in infos:
        label = f"tensor {name[:200]!r}"
        if name in tensors:
            raise cur.fail(f"{label} appears twice")
        if offset % alignment:
            raise cur.fail(f"{label} data offset {offset} is not a multiple of the alignment {alignment}")
        blocks = math.prod(shape) // ggml_type.block
        nbytes = blocks * ggml_type.type_size
        if data_start + offset + nbytes > size:
            raise cur.fail(
                f"{label} data [{offset}, {offset + nbytes}) runs past the end of the data section "
                f"({size - data_start} bytes)"
            )
        tensors[name] = GGUFTensor(name, ggml_type, shape, data_start + offset, data_start + offset + nbytes)
    spans = sorted((t.begin, t.end, t.name) for t in tensors.values() if t.end > t.begin)
    for (_, prev_end, prev), (begin, _, name) in zip(spans, spans[1:]):
        if begin < prev_end:
            raise cur.fail(f"tensors {prev[:200]!r} and {name[:200]!r} have overlapping data")
    return GGUFHeader(version, metadata, tensors, alignment, data_start, len(cur.buf))
