"""``LocalCheckpoint``: a :class:`~indexer.sources.TensorSource` over a folder of safetensors files
(or, with no safetensors, of PyTorch zip checkpoints: ``pytorch_model.bin``, ``*.pt``).

Safety rules: pickles are never unpickled - a PyTorch zip checkpoint's ``data.pkl`` is read by
the restricted interpreter of :mod:`indexer.torch_zip_format` and a legacy pickle is refused by
its first bytes; every safetensors header is read as exactly 8 + N bytes and validated strictly
(:mod:`indexer.safetensors_format`); every read is bounded by the file size seen at open time,
and a short read (the file shrank) is an error, never a partial tensor.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

from pedigree.errors import CheckpointError
from pedigree.indexer import safetensors_format as fmt
from pedigree.indexer import torch_zip_format
from pedigree.indexer.local_files import open_regular, pread_into, read_small_file
from pedigree.indexer.safetensors_format import TensorInfo, check_plain_name
from pedigree.indexer.sources import DEFAULT_TEXT_LIMIT, TensorSource

if TYPE_CHECKING:
    from pedigree.indexer.gguf_checkpoint import GGUFCheckpoint

METADATA_FILES = (
    "config.json",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.json",
    "merges.txt",
    "vocab.txt",
    "tokenizer.model",
    "README.md",
)
"""Files besides the weights whose size and time make up a folder's stat signature."""
_HASH_CHUNK = 8 * 2**20
_MAX_OPEN_FILES = 8


class LocalCheckpoint(TensorSource):
    """A checkpoint folder: ``model.safetensors``, or shards listed in
    ``model.safetensors.index.json`` (preferred when present), or a single other
    ``*.safetensors`` file.  Headers are parsed eagerly at construction.

    Tensors present in a shard but absent from the index's ``weight_map`` are included (as
    loaders that read whole shards would see them); a ``weight_map`` entry missing from its shard
    and a tensor name present in two shards are errors.
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self.label = str(self.root)
        self.bytes_read = 0
        self._sizes: dict[str, int] = {}
        self._fds: OrderedDict[str, int] = OrderedDict()
        self._lock = threading.RLock()  # guards the fd cache and reads through it
        self._revision: str | None = None
        self.metadata: dict[str, str] = {}
        self.index: dict[str, Any] | None = None
        if not self.root.is_dir():
            raise CheckpointError("not a directory", path=self.label)
        try:
            names = sorted(p.name for p in self.root.iterdir())
            self._tensors: Mapping[str, TensorInfo] = self._load_weight_headers(
                names, lambda f: (self.root / f).exists()
            )
        except BaseException:
            self.close()
            raise

    def _read_header(self, file: str) -> tuple[dict[str, TensorInfo], dict[str, str]]:
        display = str(self.root / file)
        if fmt.is_torch_file(file):
            with self._lock:
                self._fd(file)
                size = self._sizes[file]
            return torch_zip_format.read_header(
                size, lambda spans: self._pread_spans(file, spans), file=file, path=display
            )
        with self._lock:
            fd = self._fd(file)
            size = self._sizes[file]
            first8 = bytearray(min(8, size))
            pread_into(fd, memoryview(first8), 0, display)
            n = fmt.header_length(first8, size, display)
            header = bytearray(n)
            pread_into(fd, memoryview(header), 8, display)
            self.bytes_read += 8 + n
        return fmt.parse_header(header, file_size=size, file=file, path=display)

    def _pread_spans(self, file: str, spans: Sequence[tuple[int, int]]) -> list[bytes]:
        out = []
        for begin, end in spans:
            buf = bytearray(end - begin)
            self._read_into(file, begin, memoryview(buf))
            out.append(bytes(buf))
        return out

    # -- file handles -----------------------------------------------------------------------

    def _fd(self, file: str) -> int:
        with self._lock:
            fd = self._fds.get(file)
            if fd is not None:
                self._fds.move_to_end(file)
                return fd
            fd, self._sizes[file] = open_regular(self.root / file, self._sizes.get(file))
            self._fds[file] = fd
            while len(self._fds) > _MAX_OPEN_FILES:
                os.close(self._fds.popitem(last=False)[1])
            return fd

    def close(self) -> None:
        with self._lock:
            while self._fds:
                os.close(self._fds.popitem()[1])

    def __enter__(self) -> Self:
        return self

    # -- TensorSource -----------------------------------------------------------------------

    def tensors(self) -> Mapping[str, TensorInfo]:
        return self._tensors

    @property
    def files(self) -> list[str]:
        """The safetensors files in use (relative names)."""
        return list(self._files)

    def _check_span(self, file: str, begin: int, end: int) -> None:
        if file not in self._sizes:
            raise CheckpointError(f"{file!r} is not a weight file of this checkpoint", path=self.label)
        if not 0 <= begin <= end <= self._sizes[file]:
            raise CheckpointError(
                f"span [{begin}, {end}) is outside the file (size {self._sizes[file]})", path=str(self.root / file)
            )

    def _read_into(self, file: str, begin: int, buf: memoryview) -> None:
        self._check_span(file, begin, begin + len(buf))
        with self._lock:  # an fd evicted from the cache mid-read could be reused by the OS
            pread_into(self._fd(file), buf, begin, str(self.root / file))
            self.bytes_read += len(buf)

    def read_bytes(self, filename: str, max_bytes: int = DEFAULT_TEXT_LIMIT) -> bytes | None:
        check_plain_name(filename, what="metadata file", path=self.label)
        data = read_small_file(self.root / filename, max_bytes)
        if data is not None:
            self.bytes_read += len(data)
        return data

    # -- identity ---------------------------------------------------------------------------

    def revision(self) -> str:
        """sha256 over sorted ``(name, size, sha256)`` of the weight files (and the index) and the
        known metadata files present (regular files: a FIFO or device under a metadata name is
        left to whoever reads it, which fails or - a card - ignores it).  Reads every byte of them
        (counted in ``bytes_read``); computed once per instance."""
        if self._revision is None:
            names = set(self._files) | {n for n in METADATA_FILES if (self.root / n).is_file()}
            if self.index_file is not None:
                names.add(self.index_file)
            entries = [(n, *self._hash_file(n)) for n in sorted(names)]
            blob = json.dumps(entries, separators=(",", ":")).encode()
            self._revision = hashlib.sha256(blob).hexdigest()
        return self._revision

    def stat_signature(self) -> str:
        """sha256 over sorted ``(name, size, mtime_ns)`` of the files :meth:`revision` hashes.

        Reads no file content: ingest uses it to skip recomputing :meth:`revision` (a full read)
        for a checkpoint whose files have not been touched since it was last indexed.
        """
        names = set(self._files) | {n for n in METADATA_FILES if (self.root / n).is_file()}
        if self.index_file is not None:
            names.add(self.index_file)
        entries = []
        for name in sorted(names):
            stat = os.stat(self.root / name)
            entries.append((name, stat.st_size, stat.st_mtime_ns))
        return hashlib.sha256(json.dumps(entries, separators=(",", ":")).encode()).hexdigest()

    def _hash_file(self, name: str) -> tuple[int, str]:
        display = str(self.root / name)
        fd, size = open_regular(self.root / name, self._sizes.get(name))  # own fd: no cache race
        try:
            h = hashlib.sha256()
            buf = bytearray(min(_HASH_CHUNK, size))
            for off in range(0, size, _HASH_CHUNK):
                mv = memoryview(buf)[: min(_HASH_CHUNK, size - off)]
                pread_into(fd, mv, off, display)
                h.update(mv)
            self.bytes_read += size
            return size, h.hexdigest()
        finally:
            os.close(fd)


def open_checkpoint(path: str | os.PathLike[str]) -> LocalCheckpoint | GGUFCheckpoint:
    """Open a checkpoint folder (``CheckpointError`` if it is not a folder or has no weights); a
    folder whose only weights are one ``.gguf`` opens as a GGUF checkpoint."""
    from pedigree.indexer.gguf_checkpoint import open_gguf_checkpoint  # it imports this module

    return open_gguf_checkpoint(path) or LocalCheckpoint(path)
