"""``GGUFCheckpoint``: a :class:`~indexer.sources.TensorSource` over one GGUF file.

The file is reached through a :class:`GGUFFile` - byte spans of the ``.gguf`` plus the small files
beside it - so the same class reads a local folder (:class:`LocalGGUFFile`) and, through an
adapter in the crawler, HTTP range requests.  The header is parsed strictly by
:mod:`indexer.gguf_format`; tensors are listed under their Hugging Face names
(:mod:`indexer.gguf_names`) with :class:`GGUFTensorInfo` carrying the ggml type; reading rows reads
only the blocks those rows occupy and dequantizes them (:mod:`indexer.gguf_quant`), undoing
llama.cpp's rotary permutation of q/k rows.  ``config.json`` and ``tokenizer.json`` are the GGUF
metadata's own (built by :mod:`indexer.gguf_names`), whatever lies beside the file; other small
files (the card) come from the folder.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Protocol

import numpy as np
import torch

from pedigree.errors import CheckpointError
from pedigree.indexer import gguf_names
from pedigree.indexer.gguf_format import GGMLType, GGUFHeader, parse_gguf
from pedigree.indexer.gguf_quant import QUANTIZED, check_supported, dequantize
from pedigree.indexer.local_files import open_regular, pread_into, read_small_file
from pedigree.indexer.safetensors_format import TensorInfo, check_plain_name
from pedigree.indexer.sources import DEFAULT_TEXT_LIMIT, TensorSource, check_row_bounds

SUFFIX = ".gguf"
SYNTHESISED = ("config.json", "tokenizer.json")
_OTHER_VOCABULARIES = ("vocab.json", "vocab.txt", "tokenizer.model")
_HASH_CHUNK = 8 * 2**20


@dataclass(frozen=True)
class GGUFTensorInfo(TensorInfo):
    """A GGUF tensor under its Hugging Face name: ``dtype`` is the ggml type's name, ``heads`` the
    heads whose rows the converter permuted for rotary (0: none), ``gguf_name`` its own name."""

    ggml_type: GGMLType
    gguf_name: str
    heads: int

    @property
    def bits(self) -> int:  # whole bits per element, rounded up (only row_nbytes is exact)
        return -(-8 * self.ggml_type.type_size // self.ggml_type.block)

    @property
    def row_bits(self) -> int:
        return 8 * self.row_nbytes

    @property
    def row_nbytes(self) -> int:
        """Bytes of one row of dim 0 (rows shorter than a block round down)."""
        return math.prod(self.shape[1:]) // self.ggml_type.block * self.ggml_type.type_size

    @property
    def quantized(self) -> bool:
        """Stored in a block-quantized ggml type (the weights sit on its grid by construction)."""
        return self.ggml_type.name in QUANTIZED


class GGUFFile(Protocol):
    """Where a GGUF checkpoint's bytes come from."""

    label: str
    name: str  # the .gguf file's name
    size: int
    bytes_read: int

    def read(self, begin: int, end: int) -> bytes: ...

    def read_side(self, filename: str, max_bytes: int) -> bytes | None: ...

    def prefetch(self, spans: list[tuple[int, int]]) -> None: ...

    def revision(self) -> str: ...

    def close(self) -> None: ...


def only_gguf(names: Iterable[str], path: str) -> str | None:
    """The one ``.gguf`` among a folder's file names, None if there is none; ``CheckpointError``
    if there are several (quantization variants or split files)."""
    found = sorted(n for n in names if n.lower().endswith(SUFFIX))
    if len(found) > 1:
        more = ", ..." if len(found) > 5 else ""
        raise CheckpointError(
            f"{len(found)} GGUF files ({', '.join(found[:5])}{more}); pedigree reads a folder holding one",
            path=path,
        )
    return found[0] if found else None


class LocalGGUFFile:
    """A ``.gguf`` in a local folder (size fixed at open; a short read is an error)."""

    def __init__(self, root: str | os.PathLike[str], name: str) -> None:
        self.root, self.name = Path(root), name
        self.label = str(self.root)
        self.bytes_read = 0
        self._lock = threading.Lock()
        self._fd, self.size = open_regular(self.root / name)

    def read(self, begin: int, end: int) -> bytes:
        if not 0 <= begin <= end <= self.size:
            raise CheckpointError(f"span [{begin}, {end}) is outside the file (size {self.size})", path=self.label)
        buf = bytearray(end - begin)
        with self._lock:
            pread_into(self._fd, memoryview(buf), begin, str(self.root / self.name))
            self.bytes_read += len(buf)
        return bytes(buf)

    def read_side(self, filename: str, max_bytes: int) -> bytes | None:
        data = read_small_file(self.root / filename, max_bytes)
        if data is not None:
            self.bytes_read += len(data)
        return data

    def prefetch(self, spans: list[tuple[int, int]]) -> None:
        """Nothing to do locally."""

    def _entries(self, content: bool) -> list[tuple[str, int, str | int]]:
        names = [self.name] + (["README.md"] if (self.root / "README.md").is_file() else [])
        out: list[tuple[str, int, str | int]] = []
        for name in names:
            st = os.stat(self.root / name)
            out.append((name, st.st_size, self._hash(name) if content else st.st_mtime_ns))
        return out

    def _hash(self, name: str) -> str:
        fd, size = open_regular(self.root / name)
        try:
            h = hashlib.sha256()
            buf = bytearray(min(_HASH_CHUNK, size))
            for off in range(0, size, _HASH_CHUNK):
                mv = memoryview(buf)[: min(_HASH_CHUNK, size - off)]
                pread_into(fd, mv, off, str(self.root / name))
                h.update(mv)
            self.bytes_read += size
            return h.hexdigest()
        finally:
            os.close(fd)

    def revision(self) -> str:
        """sha256 over (name, size, sha256) of the .gguf and the card (reads every byte)."""
        return hashlib.sha256(json.dumps(self._entries(True)).encode()).hexdigest()

    def stat_signature(self) -> str:
        """sha256 over (name, size, mtime_ns) of the files :meth:`revision` hashes."""
        return hashlib.sha256(json.dumps(self._entries(False)).encode()).hexdigest()

    def close(self) -> None:
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1


class GGUFCheckpoint(TensorSource):
    """One GGUF file seen as a checkpoint (see the module docstring)."""

    def __init__(self, file: GGUFFile) -> None:
        self.file, self.label = file, file.label
        self.metadata: dict[str, str] = {}
        self.index = None
        self._files = [file.name]
        self._revision: str | None = None
        try:
            self.header: GGUFHeader = parse_gguf(file.read, file.size, f"{file.label}/{file.name}")
            infos: dict[str, TensorInfo] = {}
            for t in self.header.tensors.values():
                name = gguf_names.hf_name(t.name)
                if name in infos:
                    raise CheckpointError(f"two tensors map to {name!r} (one is {t.name!r})", path=self.label)
                heads = gguf_names.permuted_heads(self.header.metadata, t.name, t.shape[0])
                infos[name] = GGUFTensorInfo(
                    name, t.ggml_type.name, t.shape, file.name, t.begin, t.end, t.ggml_type, t.name, heads
                )
            self._tensors: Mapping[str, TensorInfo] = MappingProxyType(infos)
            embedding = infos.get("model.embed_tokens.weight")
            config = gguf_names.config_from_metadata(
                self.header.metadata, set(infos), embedding.rows if embedding else 0
            )
            self._texts = {"config.json": json.dumps(config).encode()}
            vocabulary = gguf_names.tokenizer_json(self.header.metadata)
            if vocabulary is not None:
                self._texts["tokenizer.json"] = vocabulary
        except BaseException:
            file.close()
            raise

    @property
    def bytes_read(self) -> int:  # type: ignore[override]
        return self.file.bytes_read

    @property
    def files(self) -> list[str]:
        return list(self._files)

    def tensors(self) -> Mapping[str, TensorInfo]:
        return self._tensors

    def gguf_info(self, name: str) -> GGUFTensorInfo:
        info = self.info(name)
        assert isinstance(info, GGUFTensorInfo)  # every tensor of this source is one
        return info

    def read_bytes(self, filename: str, max_bytes: int = DEFAULT_TEXT_LIMIT) -> bytes | None:
        check_plain_name(filename, what="metadata file", path=self.label)
        if filename in SYNTHESISED or filename in _OTHER_VOCABULARIES:
            data = self._texts.get(filename)
            if data is not None and len(data) > max_bytes:
                raise CheckpointError(
                    f"{filename} from the GGUF metadata is over the {max_bytes}-byte limit", path=self.label
                )
            return data
        return self.file.read_side(filename, max_bytes)

    def revision(self) -> str:
        if self._revision is None:
            self._revision = self.file.revision()
        return self._revision

    def stat_signature(self) -> str:
        signature = getattr(self.file, "stat_signature", None)
        if not callable(signature):
            raise CheckpointError("this GGUF source has no stat signature", path=self.label)
        return str(signature())

    # -- rows ---------------------------------------------------------------------------------
    def _stored_span(self, t: GGUFTensorInfo, start: int, stop: int) -> tuple[int, int, int, int]:
        """(first stored row, end stored row, byte begin, byte end) holding HF rows [start, stop)."""
        if t.heads and stop > start:
            hd = t.rows // t.heads
            start, stop = start // hd * hd, -(-stop // hd) * hd
        per_row = math.prod(t.shape[1:])
        first, last = start * per_row // t.ggml_type.block, -(-stop * per_row // t.ggml_type.block)
        return start, stop, t.begin + first * t.ggml_type.type_size, t.begin + last * t.ggml_type.type_size

    def read_rows(self, name: str, start: int, stop: int) -> torch.Tensor:
        t = self.gguf_info(name)
        check_row_bounds(name, start, stop, t.rows, self.label)
        check_supported(t.ggml_type, f"tensor {t.gguf_name!r}", self.label)
        a, b, begin, end = self._stored_span(t, start, stop)
        per_row = math.prod(t.shape[1:])
        block_start = (begin - t.begin) // t.ggml_type.type_size * t.ggml_type.block
        values = self._decode(self.file.read(begin, end), t.ggml_type)
        rows = values[a * per_row - block_start : b * per_row - block_start].reshape(b - a, *t.shape[1:])
        if t.heads:
            rows = gguf_names.unpermute_rows(rows, t.rows // t.heads)
        return rows[start - a : stop - a].clone()

    def read(self, name: str) -> torch.Tensor:
        t = self.info(name)
        return self.read_rows(name, 0, t.rows).reshape(t.shape)

    @staticmethod
    def _decode(data: bytes, ggml_type: GGMLType) -> torch.Tensor:
        """F32/F16/BF16 in their own dtype (bit-exact), quantized types as float32."""
        if ggml_type.name == "F16":
            return torch.from_numpy(np.frombuffer(data, dtype="<f2").astype(np.float16))
        if ggml_type.name == "BF16":
            return torch.from_numpy(np.frombuffer(data, dtype="<i2").astype(np.int16)).view(torch.bfloat16)
        return torch.from_numpy(dequantize(data, ggml_type))

    def prefetch_rows(self, reads: Iterable[tuple[str, int, int]], *, gap: int | None = None) -> None:
        spans = []
        for name, start, stop in reads:
            t = self.gguf_info(name)
            if not 0 <= start <= stop <= t.rows:
                raise CheckpointError(f"cannot prefetch rows [{start}, {stop}) of tensor {name!r}", path=self.label)
            if stop > start:
                spans.append(self._stored_span(t, start, stop)[2:])
        self.file.prefetch(spans)

    def close(self) -> None:
        self.file.close()


def open_gguf_folder(root: str | os.PathLike[str], name: str) -> GGUFCheckpoint:
    """The GGUF checkpoint of file ``name`` in folder ``root``."""
    return GGUFCheckpoint(LocalGGUFFile(root, name))


def gguf_weights(names: Iterable[str], path: str) -> str | None:
    """The ``.gguf`` a folder with these file names is read from: its only weights are one GGUF
    (safetensors, when present, win); None otherwise."""
    names = list(names)
    if any(n.endswith(".safetensors") or n == "model.safetensors.index.json" for n in names):
        return None
    return only_gguf(names, path)


def open_gguf_checkpoint(root: str | os.PathLike[str]) -> GGUFCheckpoint | None:
    """The GGUF checkpoint of folder ``root`` when its only weights are one ``.gguf``, else None."""
    path = Path(root)
    if not path.is_dir():
        return None
    name = gguf_weights((p.name for p in path.iterdir()), str(path))
    return None if name is None else open_gguf_folder(path, name)
