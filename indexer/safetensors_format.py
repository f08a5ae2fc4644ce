"""Parsing and decoding of the safetensors format, with no file I/O.

A safetensors file is ``u64 N (little-endian) | N bytes of JSON header | data``.  The header maps
tensor names to ``{"dtype", "shape", "data_offsets": [begin, end]}`` (offsets relative to the
start of the data section) plus an optional ``"__metadata__"`` object of strings.

Everything here works on bytes and sizes so that the local reader (:mod:`indexer.sources`) and a
later HTTP range-request reader share one strict validator: a hostile header can only ever produce
a :class:`~pedigree.errors.CheckpointError`, never an ``IndexError``/``MemoryError``/a tensor
that points outside the file.

Sub-byte dtypes: ``F4`` (float4 e2m1, two values per byte, low nibble first, as torch's
``float4_e2m1fn_x2`` stores them) is decoded to ``float32`` with the *logical* header shape (the
header counts F4 elements, not bytes).  ``F6_E2M3``/``F6_E3M2`` parse and validate but their bit
packing is not pinned down by the format, so :func:`decode` refuses them clearly.
"""

from __future__ import annotations

import math
import struct
import sys
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from pedigree.errors import CheckpointError
from pedigree.indexer.bounded_json import loads_json as loads_json

MAX_HEADER_BYTES = 100_000_000
"""The safetensors limit on the JSON header size."""

METADATA_KEY = "__metadata__"
SINGLE_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
TORCH_SINGLE = "pytorch_model.bin"
TORCH_INDEX = "pytorch_model.bin.index.json"
TORCH_SUFFIXES = (".bin", ".pt", ".pth")
"""Weight files read as PyTorch zip checkpoints (:mod:`indexer.torch_zip_format`) when a folder
has no safetensors; ``.ckpt``/``.pkl`` are not (Lightning and plain pickles hold more than a
state dict)."""
TRAINER_FILES = ("training_args.bin", "optimizer.pt", "scheduler.pt", "scaler.pt", "rng_state")
"""Name starts of trainer files beside the weights (pickles of Python objects, never weights)."""


@dataclass(frozen=True)
class DType:
    """One safetensors dtype: its header name, bit width and what :func:`decode` returns.

    ``torch_dtype`` is the dtype of decoded tensors (``float32`` for the packed ``F4``), or
    ``None`` when this torch cannot decode it.  ``swap_bytes`` is the byte-order unit (1 = none).
    """

    name: str
    bits: int
    torch_dtype: torch.dtype | None
    swap_bytes: int = 1

    @property
    def packed(self) -> bool:
        """True for sub-byte dtypes, whose elements do not each occupy whole bytes."""
        return self.bits < 8


def _dt(name: str, bits: int, attr: str, swap: int | None = None) -> DType:
    tdt = getattr(torch, attr, None)
    return DType(name, bits, tdt, swap if swap is not None else max(1, bits // 8))


DTYPES: dict[str, DType] = {
    d.name: d
    for d in (
        _dt("F64", 64, "float64"),
        _dt("F32", 32, "float32"),
        _dt("F16", 16, "float16"),
        _dt("BF16", 16, "bfloat16"),
        _dt("I64", 64, "int64"),
        _dt("I32", 32, "int32"),
        _dt("I16", 16, "int16"),
        _dt("I8", 8, "int8"),
        _dt("U64", 64, "uint64"),
        _dt("U32", 32, "uint32"),
        _dt("U16", 16, "uint16"),
        _dt("U8", 8, "uint8"),
        _dt("BOOL", 8, "bool"),
        _dt("C64", 64, "complex64", swap=4),  # two little-endian f32 halves
        _dt("F8_E4M3", 8, "float8_e4m3fn"),
        _dt("F8_E5M2", 8, "float8_e5m2"),
        _dt("F8_E4M3FNUZ", 8, "float8_e4m3fnuz"),
        _dt("F8_E5M2FNUZ", 8, "float8_e5m2fnuz"),
        _dt("F8_E8M0", 8, "float8_e8m0fnu"),
        DType("F4", 4, torch.float32),  # float4_e2m1, unpacked to float32 by decode()
        DType("F6_E2M3", 6, None),
        DType("F6_E3M2", 6, None),
    )
}

TORCH_TO_SAFETENSORS: dict[torch.dtype, str] = {
    d.torch_dtype: d.name for d in DTYPES.values() if d.torch_dtype is not None and not d.packed
}
"""Reverse map for unpacked dtypes (used by in-memory sources)."""


@dataclass(frozen=True)
class TensorInfo:
    """Where one tensor lives: ``begin``/``end`` are absolute byte offsets in ``file``."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    file: str
    begin: int
    end: int

    @property
    def bits(self) -> int:
        """Bits per element."""
        return DTYPES[self.dtype].bits

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        return self.end - self.begin

    @property
    def rows(self) -> int:
        """Length of dim 0 (1 for a scalar)."""
        return self.shape[0] if self.shape else 1

    @property
    def row_bits(self) -> int:
        """Bits of one row (one element for 1-D and 0-D tensors)."""
        return math.prod(self.shape[1:]) * self.bits

    @property
    def row_nbytes(self) -> int:
        """Bytes of one row; for sub-byte dtypes rounded down (see :attr:`row_bits`)."""
        return self.row_bits // 8


def header_length(first8: bytes | bytearray | memoryview, file_size: int, path: str) -> int:
    """Decode and check the leading u64 header length against the limit and the file size."""
    if len(first8) < 8:
        raise CheckpointError(f"file has fewer than 8 bytes ({len(first8)}); not a safetensors file", path=path)
    n: int
    (n,) = struct.unpack("<Q", bytes(first8[:8]))
    if n > MAX_HEADER_BYTES:
        raise CheckpointError(f"header of {n} bytes exceeds the 100 MB limit", path=path)
    if 8 + n > file_size:
        raise CheckpointError(f"header length {n} runs past the end of the file (size {file_size})", path=path)
    return n


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _numel_bits(shape: tuple[int, ...], bits: int, limit_bits: int) -> int | None:
    """numel * bits, or ``None`` (without building huge ints) once it exceeds ``limit_bits``."""
    if 0 in shape:
        return 0
    total = bits
    for d in shape:
        total *= d
        if total > limit_bits:
            return None
    return total


def _short(shape: Any) -> str:
    s = repr(shape)
    return s if len(s) <= 120 else s[:117] + "..."


def _parse_entry(name: str, entry: Any, data_size: int, header_end: int, file: str, path: str) -> TensorInfo:
    def bad(msg: str) -> CheckpointError:
        return CheckpointError(f"tensor {name[:200]!r}: {msg}", path=path)

    if not isinstance(entry, dict):
        raise bad(f"header entry is a {type(entry).__name__}, not an object")
    for key in ("dtype", "shape", "data_offsets"):
        if key not in entry:
            raise bad(f"header entry has no {key!r}")
    dtype = entry["dtype"]
    if not isinstance(dtype, str) or dtype not in DTYPES:
        raise bad(f"unknown dtype {str(dtype)[:50]!r}")
    shape = entry["shape"]
    if not isinstance(shape, list) or not all(_is_int(d) and d >= 0 for d in shape):
        raise bad(f"shape {_short(shape)} is not a list of non-negative integers")
    offsets = entry["data_offsets"]
    if not isinstance(offsets, list) or len(offsets) != 2 or not all(_is_int(o) and o >= 0 for o in offsets):
        raise bad(f"data_offsets {_short(offsets)} are not two non-negative integers")
    begin, end = offsets
    if begin > end:
        raise bad(f"data_offsets [{begin}, {end}] have begin after end")
    if end > data_size:
        raise bad(f"data_offsets [{begin}, {end}] reach beyond the end of the data section ({data_size} bytes)")
    shape_t = tuple(shape)
    bits = DTYPES[dtype].bits
    span = end - begin
    nbits = _numel_bits(shape_t, bits, 8 * span)
    if nbits is None:
        raise bad(
            f"dtype {dtype} and shape {_short(shape_t)} need more than {span} bytes, which "
            f"does not match the {span}-byte span of data_offsets"
        )
    if nbits % 8:
        raise bad(f"{dtype} shape {_short(shape_t)} does not fill whole bytes")
    if nbits // 8 != span:
        raise bad(
            f"dtype {dtype} and shape {_short(shape_t)} need {nbits // 8} bytes, which does "
            f"not match the {span}-byte span of data_offsets"
        )
    return TensorInfo(name, dtype, shape_t, file, header_end + begin, header_end + end)


def parse_header(
    header: bytes | bytearray | memoryview, *, file_size: int, file: str, path: str
) -> tuple[dict[str, TensorInfo], dict[str, str]]:
    """Strictly validate a header (the N JSON bytes) of a file of ``file_size`` bytes.

    Returns ``(tensors, metadata)``; ``TensorInfo.begin``/``end`` are absolute file offsets.
    Holes between tensors are tolerated; overlapping spans are not.
    """
    n = len(header)
    data_size = file_size - 8 - n
    if data_size < 0:
        raise CheckpointError(f"header length {n} runs past the end of the file (size {file_size})", path=path)
    obj = loads_json(header, "safetensors header", path)
    if not isinstance(obj, dict):
        raise CheckpointError(f"safetensors header is a JSON {type(obj).__name__}, not a JSON object", path=path)
    metadata: dict[str, str] = {}
    raw_meta = obj.pop(METADATA_KEY, None)
    if raw_meta is not None:
        if not isinstance(raw_meta, dict) or not all(isinstance(v, str) for v in raw_meta.values()):
            raise CheckpointError("__metadata__ is not an object of string values", path=path)
        metadata = raw_meta
    tensors: dict[str, TensorInfo] = {}
    for name, entry in obj.items():
        tensors[name] = _parse_entry(name, entry, data_size, 8 + n, file, path)
    spans = sorted((t.begin, t.end, t.name) for t in tensors.values() if t.end > t.begin)
    for (_, prev_end, prev), (begin, _, cur) in zip(spans, spans[1:]):
        if begin < prev_end:
            raise CheckpointError(f"tensors {prev[:200]!r} and {cur[:200]!r} have overlapping data spans", path=path)
    return tensors, metadata


_F4_MAGNITUDES = [0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0]  # e2m1 codes 0-7; bit 3 is the sign
_F4_VALUES = torch.tensor(_F4_MAGNITUDES + [-v for v in _F4_MAGNITUDES], dtype=torch.float32)


def expected_nbytes(dtype: str, shape: tuple[int, ...]) -> int:
    """Bytes a tensor of ``dtype`` and ``shape`` occupies (sub-byte dtypes rounded up)."""
    return (math.prod(shape) * DTYPES[dtype].bits + 7) // 8


def allocate(dtype: str, shape: tuple[int, ...]) -> tuple[torch.Tensor, memoryview]:
    """An uninitialised tensor for a byte-sized dtype and a writable view of its raw bytes,
    so a reader can fill it in place; call :func:`finish` afterwards."""
    info = DTYPES[dtype]
    if info.torch_dtype is None or info.packed:
        raise CheckpointError(f"dtype {dtype} cannot be read in place")
    t = torch.empty(shape, dtype=info.torch_dtype)
    return t, t.reshape(-1).view(torch.uint8).numpy().data.cast("B")


def finish(t: torch.Tensor, dtype: str) -> torch.Tensor:
    """Fix up a tensor filled with raw little-endian bytes (byte order, bool normalisation)."""
    info = DTYPES[dtype]
    raw = t.reshape(-1).view(torch.uint8)
    if info.name == "BOOL":
        raw.copy_(raw != 0)  # a hostile byte 2 must not become an invalid bool
    elif sys.byteorder == "big" and info.swap_bytes > 1 and raw.numel():
        raw.copy_(raw.view(-1, info.swap_bytes).flip(1).reshape(-1))
    return t


def decode(data: bytes | bytearray | memoryview, dtype: str, shape: tuple[int, ...]) -> torch.Tensor:
    """Decode raw little-endian tensor bytes into a tensor that owns its memory.

    Byte-sized dtypes come back in their native torch dtype; ``F4`` comes back as ``float32``.
    """
    info = DTYPES.get(dtype)
    if info is None:
        raise CheckpointError(f"unknown dtype {dtype!r}")
    shape = tuple(shape)
    want = expected_nbytes(dtype, shape)
    if len(data) != want:
        raise CheckpointError(f"got {len(data)} bytes for a {dtype} tensor of shape {_short(shape)} (expected {want})")
    if info.torch_dtype is None:
        raise CheckpointError(f"dtype {dtype} is not supported for decoding")
    if info.name == "F4":
        if math.prod(shape) % 2:
            raise CheckpointError(f"F4 shape {_short(shape)} does not fill whole bytes")
        raw = torch.from_numpy(np.frombuffer(data, dtype=np.uint8).copy())
        codes = torch.stack((raw & 0x0F, raw >> 4), dim=1).reshape(-1)  # low nibble first
        return _F4_VALUES[codes.long()].reshape(shape)
    t, buf = allocate(dtype, shape)
    if want:
        np.frombuffer(buf, dtype=np.uint8)[:] = np.frombuffer(data, dtype=np.uint8)
    return finish(t, dtype)


# -- checkpoint layout (pure: works on file names and parsed headers) ------------------------


def check_plain_name(name: Any, *, what: str, path: str) -> str:
    """Accept only a plain file name at the checkpoint root (no separators, '..', absolute)."""
    if (
        not isinstance(name, str)
        or not name
        or name in (".", "..")
        or "/" in name
        or "\\" in name
        or "\x00" in name
        or ":" in name
    ):
        raise CheckpointError(f"{what} {str(name)[:200]!r} is not a plain file name", path=path)
    return name


def is_torch_file(name: str) -> bool:
    """Whether a weight file is read as a PyTorch zip checkpoint (by its name)."""
    return name.lower().endswith(TORCH_SUFFIXES)


def is_torch_weights(name: str) -> bool:
    """A ``.bin``/``.pt``/``.pth`` name that is not a trainer file (``training_args.bin``, ...)."""
    return is_torch_file(name) and not name.lower().startswith(TRAINER_FILES)


def choose_weight_files(names: list[str], path: str) -> list[str]:
    """Pick the weights among a checkpoint's root file names: ``[INDEX_FILE]`` (sharded; the
    index wins when present), else ``model.safetensors``, else the only ``*.safetensors``; with
    no safetensors, ``[TORCH_INDEX]``, else ``pytorch_model.bin``, else the only other
    ``.bin``/``.pt``/``.pth`` (PyTorch zip checkpoints; a legacy pickle is refused when read).
    Folders with only other pickles get an error saying they are never read."""
    formats = (
        (INDEX_FILE, SINGLE_FILE, lambda n: n.endswith(".safetensors"), "safetensors"),
        (TORCH_INDEX, TORCH_SINGLE, is_torch_weights, "PyTorch"),
    )
    for index, single, is_weights, label in formats:
        if index in names:
            return [index]
        if single in names:
            return [single]
        found = sorted(n for n in names if is_weights(n))
        if len(found) == 1:
            return found
        if found:
            shown = ", ".join(found[:5]) + (", ..." if len(found) > 5 else "")
            raise CheckpointError(f"{len(found)} {label} files ({shown}) but no {index}", path=path)
    if any(n.lower().endswith(PICKLE_SUFFIXES) for n in names):
        raise CheckpointError(
            "no safetensors or PyTorch zip weights; pickle checkpoints (.ckpt, .pkl, trainer files) are never read",
            path=path,
        )
    raise CheckpointError("no weights found (no *.safetensors or pytorch_model.bin file)", path=path)


def parse_index(index: Any, path: str, name: str = INDEX_FILE) -> dict[str, str]:
    """The validated ``weight_map`` (tensor -> plain shard file name) of a parsed index (``name``:
    the index file, :data:`INDEX_FILE` or :data:`TORCH_INDEX`)."""
    if not isinstance(index, dict) or not isinstance(index.get("weight_map"), dict):
        raise CheckpointError(f"{name} has no weight_map object", path=path)
    weight_map: dict[str, str] = index["weight_map"]
    if not weight_map:
        raise CheckpointError(f"{name} has an empty weight_map", path=path)
    for tensor, f in weight_map.items():
        check_plain_name(f, what=f"shard file of tensor {tensor[:200]!r}", path=path)
        if name == TORCH_INDEX and not is_torch_file(f):
            raise CheckpointError(f"{name} names shard {f[:200]!r}, which is not a .bin/.pt/.pth file", path=path)
    return weight_map


def merge_shards(
    headers: dict[str, tuple[dict[str, TensorInfo], dict[str, str]]], weight_map: dict[str, str] | None, path: str
) -> dict[str, TensorInfo]:
    """All tensors of all shards.  A name in two shards, a ``weight_map`` entry missing from its
    shard, or no tensors at all is an error; shard tensors absent from the map are included."""
    tensors: dict[str, TensorInfo] = {}
    for f, (shard, _) in headers.items():
        for name, t in shard.items():
            if name in tensors:
                raise CheckpointError(
                    f"tensor {name[:200]!r} appears in more than one shard ({tensors[name].file}, {f})", path=path
                )
            tensors[name] = t
    for name, f in (weight_map or {}).items():
        if name not in tensors or tensors[name].file != f:
            raise CheckpointError(
                f"tensor {name[:200]!r} listed in weight_map for shard {f} is not in that shard", path=path
            )
    if not tensors:
        raise CheckpointError("the checkpoint contains no tensors", path=path)
    return tensors
