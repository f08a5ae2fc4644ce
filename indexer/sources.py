"""Tensor sources: read tensors from a checkpoint, touching only the bytes needed.

:class:`TensorSource` is the interface every stage reads weights through, implemented over a
folder of safetensors files (:class:`indexer.local_checkpoint.LocalCheckpoint`), over HTTP range
requests to a Hub (:class:`crawler.http_source.HubCheckpoint`), and here over an in-memory state
dict (:class:`StateDictSource`).  All of them validate headers with :mod:`indexer.safetensors_format`.
"""

from __future__ import annotations

import bisect
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future
from types import MappingProxyType
from typing import Any, Self

import torch

from pedigree.errors import CheckpointError
from pedigree.indexer import safetensors_format as fmt
from pedigree.indexer.safetensors_format import INDEX_FILE, TORCH_INDEX, TensorInfo, check_plain_name

DEFAULT_TEXT_LIMIT = 64 * 2**20
MAX_CONFIG_BYTES = 4 * 2**20
TEXT_LIMITS = {"config.json": MAX_CONFIG_BYTES}
"""Tighter limits for known small files, whoever reads them: a config.json is a few kB (one with
the label names of 21k classes about 1 MB); a larger one fails the model rather than its parse
costing hundreds of MB and every later read of the record."""


def check_row_bounds(name: str, start: int, stop: int, rows: int, label: str) -> None:
    """``TypeError`` unless both bounds are ints; ``CheckpointError`` unless 0 <= start <= stop <= rows."""
    for v in (start, stop):
        if not isinstance(v, int) or isinstance(v, bool):
            raise TypeError(f"row bounds must be ints, got {v!r}")
    if not 0 <= start <= stop <= rows:
        raise CheckpointError(f"rows [{start}, {stop}) out of range for tensor {name!r} with {rows} rows", path=label)


class TensorSource(ABC):
    """A checkpoint I can read tensors from (local folder now; HTTP range requests later)."""

    label: str
    bytes_read: int
    # set by sources that read safetensors headers (:meth:`_load_weight_headers`)
    metadata: dict[str, str]
    index: dict[str, Any] | None
    index_file: str | None = None  # the shard index read (INDEX_FILE or TORCH_INDEX), if any
    _files: list[str]

    @abstractmethod
    def tensors(self) -> Mapping[str, TensorInfo]:
        """All tensors of all shards, by name."""

    def read_span(self, file: str, begin: int, end: int) -> bytes:
        """Raw bytes ``[begin, end)`` of ``file`` (a shard name as in :attr:`TensorInfo.file`),
        bounds-checked by :meth:`_check_span` and filled by :meth:`_read_into` (sources
        implement those two, or override this)."""
        self._check_span(file, begin, end)
        buf = bytearray(end - begin)
        self._read_into(file, begin, memoryview(buf))
        return bytes(buf)

    def _check_span(self, file: str, begin: int, end: int) -> object:
        """Raise ``CheckpointError`` unless ``[begin, end)`` lies inside weight file ``file``."""
        raise NotImplementedError

    @abstractmethod
    def read_bytes(self, filename: str, max_bytes: int = DEFAULT_TEXT_LIMIT) -> bytes | None:
        """A small file at the checkpoint root (e.g. ``tokenizer.model``), or ``None`` if absent.

        ``CheckpointError`` if it is larger than ``max_bytes`` or the name is not a plain file
        name (no '/', '\\', '..', absolute paths).
        """

    def read_text(self, filename: str, max_bytes: int = DEFAULT_TEXT_LIMIT) -> str | None:
        """:meth:`read_bytes` as UTF-8 text (a leading BOM dropped); ``CheckpointError`` if it is
        not UTF-8.  :data:`TEXT_LIMITS` caps ``max_bytes`` for the files it names."""
        data = self.read_bytes(filename, min(max_bytes, TEXT_LIMITS.get(filename, max_bytes)))
        if data is None:
            return None
        try:
            return data.decode("utf-8-sig")
        except UnicodeDecodeError as e:
            raise CheckpointError(
                f"{filename} is not valid UTF-8 ({e.reason} at byte {e.start})", path=self.label
            ) from None

    def read_json(self, filename: str, max_bytes: int = DEFAULT_TEXT_LIMIT) -> Any | None:
        """:meth:`read_text` parsed as JSON (``None`` if absent; ``CheckpointError`` if bad)."""
        text = self.read_text(filename, max_bytes)
        if text is None:
            return None
        return fmt.loads_json(text, filename, self.label)

    def _read_header(self, file: str) -> tuple[dict[str, TensorInfo], dict[str, str]]:
        """(tensors, metadata) of one weight file's validated header (sources that list shards)."""
        raise NotImplementedError

    def _read_headers(self, files: list[str]) -> dict[str, tuple[dict[str, TensorInfo], dict[str, str]]]:
        """:meth:`_read_header` of every file (one after the other; remote sources overlap them)."""
        return {f: self._read_header(f) for f in files}

    def _missing_index(self, name: str = INDEX_FILE) -> Exception:
        return CheckpointError(f"{name} is listed but could not be read", path=self.label)

    def _load_weight_headers(self, names: list[str], has_file: Callable[[str], bool]) -> Mapping[str, TensorInfo]:
        """Choose the weight files among the checkpoint's root ``names`` (the sharded index first,
        safetensors before PyTorch zip files, other pickles refused), read and validate every
        header and merge them; sets ``_files``, ``index``, ``index_file`` and ``metadata``.
        ``has_file`` says whether a shard the index names exists.  Shards are read by their name:
        ``.bin``/``.pt``/``.pth`` as PyTorch zip checkpoints, the rest as safetensors."""
        self._files = fmt.choose_weight_files(names, self.label)
        weight_map = None
        if self._files in ([INDEX_FILE], [TORCH_INDEX]):
            self.index_file = self._files[0]
            self.index = self.read_json(self.index_file)
            if self.index is None:
                raise self._missing_index(self.index_file)
            weight_map = fmt.parse_index(self.index, self.label, self.index_file)
            self._files = sorted(set(weight_map.values()))
            for f in self._files:
                if not has_file(f):
                    raise CheckpointError(f"shard file {f} listed in {self.index_file} is missing", path=self.label)
        headers = self._read_headers(self._files)
        tensors = fmt.merge_shards(headers, weight_map, self.label)
        for _, meta in headers.values():
            self.metadata.update(meta)
        return MappingProxyType(tensors)

    def info(self, name: str) -> TensorInfo:
        """The :class:`TensorInfo` of ``name``; ``CheckpointError`` if there is none."""
        try:
            return self.tensors()[name]
        except KeyError:
            raise CheckpointError(f"no tensor named {name!r}", path=self.label) from None

    def read(self, name: str) -> torch.Tensor:
        """The whole tensor, native dtype (``F4`` as float32), owning its memory."""
        t = self.info(name)
        return self._fetch(t, t.begin, t.end, t.shape)

    def read_rows(self, name: str, start: int, stop: int) -> torch.Tensor:
        """Rows ``[start, stop)`` of dim 0 as one contiguous read; shape
        ``(stop - start, *shape[1:])`` (a scalar counts as one row)."""
        t = self.info(name)
        check_row_bounds(name, start, stop, t.rows, self.label)
        if t.row_bits % 8:
            raise CheckpointError(f"rows of {t.dtype} tensor {name!r} are not byte-aligned", path=self.label)
        rb = t.row_nbytes
        return self._fetch(t, t.begin + start * rb, t.begin + stop * rb, (stop - start, *t.shape[1:]))

    def _fetch(self, t: TensorInfo, begin: int, end: int, shape: tuple[int, ...]) -> torch.Tensor:
        d = fmt.DTYPES[t.dtype]
        if d.torch_dtype is None or d.packed:
            return fmt.decode(self.read_span(t.file, begin, end), t.dtype, shape)
        out, buf = fmt.allocate(t.dtype, shape)
        if len(buf) != end - begin:  # cannot happen for a validated TensorInfo
            raise CheckpointError(f"span of tensor {t.name!r} does not match its shape", path=self.label)
        if len(buf):
            self._read_into(t.file, begin, buf)
        return fmt.finish(out, t.dtype)

    def _read_into(self, file: str, begin: int, buf: memoryview) -> None:
        """Fill ``buf`` with bytes from ``begin``; sources override to skip the extra copy."""
        buf[:] = self.read_span(file, begin, begin + len(buf))

    def prefetch(self, names: Iterable[str]) -> None:
        """Hint: these whole tensors are about to be read."""
        self.prefetch_rows((name, 0, self.info(name).rows) for name in names)

    def prefetch_rows(  # noqa: B027 - optional hook
        self, reads: Iterable[tuple[str, int, int]], *, gap: int | None = None
    ) -> None:
        """Hint: rows ``[start, stop)`` of these tensors are about to be read (a remote source
        fetches them in coalesced, parallel requests, merging spans closer than ``gap`` bytes -
        its own default when None; a local one needs no hint)."""

    def prefetch_rows_async(self, reads: Iterable[tuple[str, int, int]]) -> Future[None]:
        """:meth:`prefetch_rows` without waiting: the answer is done when the rows are cached
        (here at once, a local source reads on demand)."""
        done: Future[None] = Future()
        try:
            self.prefetch_rows(reads)
            done.set_result(None)
        except Exception as error:  # noqa: BLE001 - handed to whoever waits on the answer
            done.set_exception(error)
        return done

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release open files (no-op by default)."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class StateDictSource(TensorSource):
    """An in-memory ``{name: tensor}`` (plus optional text files) seen as a checkpoint.

    Tensors are laid out as if serialised in name order in one virtual file ``"<memory>"``;
    :meth:`read_span` serves spans inside one tensor, which is all ``read``/``read_rows`` need.
    """

    FILE = "<memory>"

    def __init__(
        self,
        tensors: Mapping[str, torch.Tensor],
        texts: Mapping[str, str | bytes] | None = None,
        label: str = "<state dict>",
    ) -> None:
        self.label, self.bytes_read = label, 0
        self._texts = {k: v.encode() if isinstance(v, str) else bytes(v) for k, v in (texts or {}).items()}
        self._raw: dict[str, torch.Tensor] = {}
        infos: dict[str, TensorInfo] = {}
        offset = 0
        for name in sorted(tensors):
            t = tensors[name]
            dtype = fmt.TORCH_TO_SAFETENSORS.get(getattr(t, "dtype", None))
            if not isinstance(t, torch.Tensor) or dtype is None:
                raise CheckpointError(f"{name!r} is not a tensor of a safetensors dtype", path=label)
            t = t.detach().to("cpu").contiguous()
            self._raw[name] = t.reshape(-1).view(torch.uint8)
            infos[name] = TensorInfo(
                name, dtype, tuple(t.shape), self.FILE, offset, offset + t.numel() * t.element_size()
            )
            offset = infos[name].end
        self._tensors: Mapping[str, TensorInfo] = MappingProxyType(infos)
        self._spans = sorted((i.begin, i.end, i.name) for i in infos.values() if i.end > i.begin)

    def tensors(self) -> Mapping[str, TensorInfo]:
        return self._tensors

    def read_span(self, file: str, begin: int, end: int) -> bytes:
        i = bisect.bisect_right(self._spans, (begin, float("inf"))) - 1
        if file == self.FILE and begin == end:
            return b""
        if file != self.FILE or i < 0 or not self._spans[i][0] <= begin <= end <= self._spans[i][1]:
            raise CheckpointError(f"span [{begin}, {end}) of {file!r} is not inside one tensor", path=self.label)
        b, _, name = self._spans[i]
        self.bytes_read += end - begin
        return self._raw[name][begin - b : end - b].numpy().tobytes()

    def read_bytes(self, filename: str, max_bytes: int = DEFAULT_TEXT_LIMIT) -> bytes | None:
        check_plain_name(filename, what="metadata file", path=self.label)
        data = self._texts.get(filename)
        if data is not None and len(data) > max_bytes:
            raise CheckpointError(f"{filename} is larger than the {max_bytes}-byte limit", path=self.label)
        return data
