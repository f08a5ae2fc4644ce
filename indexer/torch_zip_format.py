"""PyTorch zip checkpoints (``pytorch_model.bin``, ``*.pt`` written by ``torch.save`` with torch >=
1.6) read by byte ranges, without unpickling.

The layout is the one ``torch/serialization.py`` (``_save``) and caffe2's ``PyTorchStreamWriter``
write: a stored (uncompressed) ZIP archive whose entries all sit under one folder
``<archive>/`` - ``data.pkl`` (the state dict, pickled with tensors as persistent storage ids),
``byteorder`` (``little``), ``data/<key>`` (each storage's raw little-endian bytes, 64-byte
aligned by a padding extra field) and a few small records.  Newer torch writes each entry with a
data descriptor (flag bit 3) and zero sizes in the local header.

:func:`read_header` finds the end records and the central directory (:mod:`indexer.zip_archive`)
from the file's last bytes, reads ``data.pkl`` and the local header of every storage entry by
range, interprets ``data.pkl`` with the restricted reader of :mod:`indexer.restricted_pickle`
and maps every tensor to a :class:`~indexer.safetensors_format.TensorInfo` whose bytes lie
inside its storage entry.  Reading is the caller's: it passes a function that answers a batch of
``(begin, end)`` spans (local ``pread``s, or parallel HTTP range requests).  A legacy (non-zip)
pickle is refused by its first bytes.
"""

from __future__ import annotations

import bisect
import zlib
from collections.abc import Callable, Sequence

from pedigree.errors import CheckpointError
from pedigree.indexer import zip_archive as zipf
from pedigree.indexer.restricted_pickle import ITEM_BYTES, MAX_PICKLE_BYTES, read_state_dict
from pedigree.indexer.safetensors_format import TensorInfo

SNIFF_BYTES = 8
LOCAL_WINDOW = 192
"""Bytes read after a local header's fixed part and name: torch's padding extra field (at most
64 + 4 bytes) and a ZIP64 extra field fit."""
MAX_SMALL_RECORD = 64

SpanReader = Callable[[Sequence[tuple[int, int]]], list[bytes]]
"""Reads a batch of ``[begin, end)`` spans of one file (every span inside the file)."""


def sniff(first: bytes, path: str) -> None:
    """Refuse anything but a zip archive from the file's first bytes, saying what it is."""
    if first[:4] == zipf.LOCAL_MAGIC:
        return
    if first[:1] == b"\x80" and first[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        raise CheckpointError(
            "a legacy (non-zip) PyTorch pickle, which is never unpickled; re-save it with torch >= 1.6 "
            "or as safetensors",
            path=path,
        )
    if first[:2] in (b"PK",):
        raise CheckpointError("a zip archive that does not start with a local file header", path=path)
    raise CheckpointError(f"not a PyTorch zip checkpoint (starts with {first[:8]!r})", path=path)


class _Bytes:
    """The spans of one file read so far; answers a span from one piece or asks the reader."""

    def __init__(self, size: int, read: SpanReader, head: bytes) -> None:
        self.size, self.read = size, read
        self.starts: list[int] = []
        self.pieces: dict[int, bytes] = {}
        if head:
            self._add(0, head)

    def _add(self, begin: int, piece: bytes) -> None:
        if len(piece) > len(self.pieces.get(begin, b"")):
            if begin not in self.pieces:
                bisect.insort(self.starts, begin)
            self.pieces[begin] = piece

    def _have(self, begin: int, end: int) -> bytes | None:
        i = bisect.bisect_right(self.starts, begin) - 1
        for start in (self.starts[i] if i >= 0 else None, 0):  # the nearest piece, or the head
            piece = self.pieces.get(start) if start is not None else None
            if piece is not None and start is not None and start <= begin and end <= start + len(piece):
                return piece[begin - start : end - start]
        return None

    def fetch(self, spans: Sequence[tuple[int, int]]) -> None:
        wanted = sorted({(max(0, b), min(self.size, e)) for b, e in spans if e > b})
        missing = [s for s in wanted if self._have(*s) is None]
        if missing:
            for (begin, _), piece in zip(missing, self.read(missing)):
                self._add(begin, piece)

    def get(self, begin: int, end: int) -> bytes:
        end = min(end, self.size)
        found = self._have(begin, end)
        if found is None:
            self.fetch([(begin, end)])
            found = self._have(begin, end)
        if found is None or len(found) != end - begin:  # a reader that answered short
            raise CheckpointError(f"could not read bytes [{begin}, {end})")
        return found


def read_header(
    size: int, read: SpanReader, *, file: str, path: str, head: bytes = b""
) -> tuple[dict[str, TensorInfo], dict[str, str]]:
    """(tensors, metadata) of a PyTorch zip checkpoint of ``size`` bytes, like
    :func:`~indexer.safetensors_format.parse_header`; ``head`` is any bytes already read from
    offset 0."""
    data = _Bytes(size, read, head)
    sniff(data.get(0, min(size, SNIFF_BYTES)), path)
    tail_start = max(0, size - zipf.TAIL_BYTES)
    d = zipf.find_directory(data.get(tail_start, size), tail_start, size, path)
    ordered = zipf.check_layout(zipf.parse_directory(data.get(d.offset, d.offset + d.size), d, path), d, path)
    prefix = ordered[0].name.split("/", 1)[0] + "/" if "/" in ordered[0].name else ""
    if not prefix or any(not e.name.startswith(prefix) for e in ordered):
        raise CheckpointError("zip archive: entries do not all lie under one archive folder", path=path)
    by_name = {e.name: e for e in ordered}
    limits = {e.name: nxt.offset for e, nxt in zip(ordered, ordered[1:])} | {ordered[-1].name: d.offset}
    pkl = by_name.get(prefix + "data.pkl")
    if pkl is None:
        raise CheckpointError(f"zip archive has no {prefix}data.pkl (not a torch.save checkpoint)", path=path)
    if pkl.size > MAX_PICKLE_BYTES:
        raise CheckpointError(f"data.pkl of {pkl.size} bytes exceeds the {MAX_PICKLE_BYTES}-byte limit", path=path)
    byteorder = by_name.get(prefix + "byteorder")
    storages = [e for e in ordered if e.name.startswith(prefix + "data/")]
    small = [e for e in (pkl, byteorder) if e is not None]
    for e in (*small, *storages):
        if e.method != 0 or e.compressed_size != e.size:
            raise CheckpointError(
                f"zip archive: entry {e.name!r} is compressed (method {e.method}, {e.compressed_size} bytes "
                f"for {e.size}); only stored entries are read",
                path=path,
            )
    if byteorder is not None and byteorder.size > MAX_SMALL_RECORD:
        raise CheckpointError(f"zip archive: byteorder record of {byteorder.size} bytes", path=path)
    # one batch: the small records whole, every storage's local header, and the bytes before the
    # next entry where a data descriptor sits (adjacent spans, so an HTTP reader merges them)
    spans = [(e.offset, e.offset + zipf.LOCAL_SIZE + len(e.name.encode()) + LOCAL_WINDOW + e.size) for e in small]
    spans += [(e.offset, e.offset + zipf.LOCAL_SIZE + len(e.name.encode()) + LOCAL_WINDOW) for e in storages]
    spans += [(limits[e.name] - zipf.DESCRIPTOR_MAX, limits[e.name]) for e in (*small, *storages) if _described(e)]
    data.fetch([(b, min(e, size)) for b, e in spans])
    starts = {e.name: _locate(data, e, limits[e.name], path) for e in (*small, *storages)}
    raw = data.get(starts[pkl.name], starts[pkl.name] + pkl.size)
    if zlib.crc32(raw) != pkl.crc32:
        raise CheckpointError("zip archive: data.pkl does not match its CRC-32", path=path)
    if byteorder is not None:
        order = data.get(starts[byteorder.name], starts[byteorder.name] + byteorder.size)
        if order != b"little":
            raise CheckpointError(f"byteorder record says {order[:16]!r}; only little-endian is read", path=path)
    tensors: dict[str, TensorInfo] = {}
    for name, t in read_state_dict(raw, path).items():
        entry = by_name.get(f"{prefix}data/{t.storage.key}")
        if entry is None:
            raise CheckpointError(f"tensor {name[:200]!r}: storage {t.storage.key!r} has no data entry", path=path)
        if entry.size != t.storage.nbytes:
            raise CheckpointError(
                f"tensor {name[:200]!r}: storage {t.storage.key!r} of {t.storage.nbytes} bytes is stored in "
                f"{entry.size} bytes",
                path=path,
            )
        item = ITEM_BYTES[t.storage.dtype]
        begin = starts[entry.name] + t.offset * item
        numel = 1
        for n in t.shape:
            numel *= n
        tensors[name] = TensorInfo(name, t.storage.dtype, t.shape, file, begin, begin + numel * item)
    return tensors, {}


def _described(e: zipf.Entry) -> bool:
    return bool(e.flags & zipf.FLAG_DESCRIPTOR)


def _locate(data: _Bytes, e: zipf.Entry, limit: int, path: str) -> int:
    """Where ``e``'s stored bytes begin, after checking its local header and data descriptor."""
    extent = zipf.local_extent(data.get(e.offset, min(e.offset + zipf.LOCAL_SIZE, limit)), e, path)
    local = zipf.parse_local(data.get(e.offset, min(e.offset + extent, limit)), e, limit, path)
    if local.flags & zipf.FLAG_DESCRIPTOR or _described(e):
        end = local.data_start + e.size
        zipf.check_descriptor(data.get(end, min(end + zipf.DESCRIPTOR_MAX, limit)), e, path)
    return local.data_start
