"""The ZIP container of PyTorch checkpoints, parsed from byte spans with no file I/O.

Follows PKWARE's APPNOTE.TXT (6.3.x): the end of central directory record (EOCD, section 4.3.16),
the ZIP64 end of central directory locator and record (4.3.14, 4.3.15), central directory file
headers (4.3.12), local file headers (4.3.7), data descriptors (4.3.9) and the ZIP64 extended
information extra field (4.5.3).  Only what a stored (uncompressed) archive needs is accepted:
one disk, no encryption, method 0 for every entry that is read.

Every size and count a file declares is checked against the file size and a fixed cap before
anything is allocated; a hostile archive can only produce a one-line
:class:`~pedigree.errors.CheckpointError`.  The reading itself belongs to the caller
(:mod:`indexer.torch_zip_format` asks for spans; local files and HTTP range reads answer).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from pedigree.errors import CheckpointError

EOCD_SIG = 0x06054B50
ZIP64_LOCATOR_SIG = 0x07064B50
ZIP64_EOCD_SIG = 0x06064B50
CENTRAL_SIG = 0x02014B50
LOCAL_SIG = 0x04034B50
DESCRIPTOR_SIG = 0x08074B50
LOCAL_MAGIC = b"PK\x03\x04"

EOCD_SIZE = 22
ZIP64_LOCATOR_SIZE = 20
ZIP64_EOCD_SIZE = 56
CENTRAL_SIZE = 46
LOCAL_SIZE = 30
MAX_COMMENT = 0xFFFF
TAIL_BYTES = EOCD_SIZE + MAX_COMMENT + ZIP64_LOCATOR_SIZE + ZIP64_EOCD_SIZE
"""Bytes at the end of a file that always hold the EOCD, the ZIP64 locator and the ZIP64 record
(when the record sits right before its locator, as every writer puts it)."""
MAX_ENTRIES = 100_000
"""More entries than any checkpoint shard has (a 1 T-parameter MoE shard holds a few thousand)."""
MAX_CENTRAL_BYTES = 32 * 2**20
"""The largest central directory read."""
MAX_NAME = 1024
"""The longest entry name accepted (torch writes ``<archive>/data/<key>``)."""
DESCRIPTOR_MAX = 24
"""A data descriptor's largest form: signature, CRC and two 8-byte sizes."""

FLAG_ENCRYPTED = 0x0001
FLAG_DESCRIPTOR = 0x0008
_U32 = 0xFFFFFFFF
_U16 = 0xFFFF


@dataclass(frozen=True)
class Directory:
    """Where the central directory lies and how many entries it declares."""

    offset: int
    size: int
    entries: int


@dataclass(frozen=True)
class Entry:
    """One central directory entry: ``offset`` is where its local header starts."""

    name: str
    offset: int
    size: int
    compressed_size: int
    method: int
    flags: int
    crc32: int
    zip64: bool


@dataclass(frozen=True)
class LocalHeader:
    """What a local header adds to its central entry: where the stored bytes begin."""

    data_start: int
    flags: int


def _err(msg: str, path: str) -> CheckpointError:
    return CheckpointError(f"zip archive: {msg}", path=path)


def find_directory(tail: bytes, tail_start: int, file_size: int, path: str) -> Directory:
    """The central directory's place from the last bytes of the file (``tail`` starts at byte
    ``tail_start``; it should hold the last :data:`TAIL_BYTES` bytes or the whole file)."""
    if file_size < EOCD_SIZE:
        raise _err(f"file of {file_size} bytes is too short to be a zip archive", path)
    pos = tail.rfind(struct.pack("<I", EOCD_SIG), 0, len(tail) - EOCD_SIZE + 4)
    while pos >= 0:  # the last signature whose comment length reaches exactly the end
        (comment,) = struct.unpack_from("<H", tail, pos + 20)
        if tail_start + pos + EOCD_SIZE + comment == file_size:
            break
        pos = tail.rfind(struct.pack("<I", EOCD_SIG), 0, pos)
    if pos < 0:
        raise _err("no end of central directory record (truncated, or not a zip file)", path)
    eocd = tail_start + pos
    _, disk, cd_disk, here, total, cd_size, cd_offset, _ = struct.unpack_from("<IHHHHIIH", tail, pos)
    if _U16 in (disk, cd_disk, here, total) or _U32 in (cd_size, cd_offset):
        return _zip64_directory(tail, tail_start, eocd, file_size, path)
    if disk or cd_disk or here != total:
        raise _err("multi-disk archives are not supported", path)
    return _checked(Directory(cd_offset, cd_size, total), eocd, path)


def _zip64_directory(tail: bytes, tail_start: int, eocd: int, file_size: int, path: str) -> Directory:
    loc = eocd - ZIP64_LOCATOR_SIZE - tail_start
    if loc < 0:
        raise _err("ZIP64 fields in the end record but no room for a ZIP64 locator before it", path)
    sig, disk, record_offset, disks = struct.unpack_from("<IIQI", tail, loc)
    if sig != ZIP64_LOCATOR_SIG:
        raise _err("ZIP64 fields in the end record but no ZIP64 locator before it", path)
    if disk or disks != 1:
        raise _err("multi-disk ZIP64 archives are not supported", path)
    rec = record_offset - tail_start
    if not 0 <= rec <= loc - ZIP64_EOCD_SIZE:
        raise _err(f"ZIP64 end record offset {record_offset} is not just before its locator", path)
    sig, _, _, _, disk, cd_disk, here, total, cd_size, cd_offset = struct.unpack_from("<IQHHIIQQQQ", tail, rec)
    if sig != ZIP64_EOCD_SIG:
        raise _err(f"no ZIP64 end record at offset {record_offset}", path)
    if disk or cd_disk or here != total:
        raise _err("multi-disk ZIP64 archives are not supported", path)
    return _checked(Directory(cd_offset, cd_size, total), record_offset, path)


def _checked(d: Directory, end: int, path: str) -> Directory:
    if d.entries > MAX_ENTRIES:
        raise _err(f"{d.entries} entries declared, more than the limit of {MAX_ENTRIES}", path)
    if d.size > MAX_CENTRAL_BYTES:
        raise _err(f"central directory of {d.size} bytes exceeds the {MAX_CENTRAL_BYTES}-byte limit", path)
    if d.offset + d.size > end:
        raise _err(f"central directory [{d.offset}, {d.offset + d.size}) runs past its end record at {end}", path)
    if d.entries * CENTRAL_SIZE > d.size:
        raise _err(f"{d.entries} entries cannot fit a central directory of {d.size} bytes", path)
    return d


def _zip64_extra(extra: bytes, need: list[str], path: str, name: str) -> dict[str, int]:
    """The 8-byte values of the ZIP64 extra field (id 1) for the fields that were 0xFFFFFFFF."""
    if not need:
        return {}
    pos = 0
    while pos + 4 <= len(extra):
        tag, size = struct.unpack_from("<HH", extra, pos)
        body = extra[pos + 4 : pos + 4 + size]
        if len(body) != size:
            break
        if tag == 1:
            if len(body) < 8 * len(need):
                raise _err(f"entry {name!r}: ZIP64 extra field too short", path)
            return {k: struct.unpack_from("<Q", body, 8 * i)[0] for i, k in enumerate(need)}
        pos += 4 + size
    raise _err(f"entry {name!r}: 32-bit fields are 0xFFFFFFFF but there is no ZIP64 extra field", path)


def parse_directory(data: bytes, d: Directory, path: str) -> list[Entry]:
    """Every central directory entry (``data`` is the whole directory, ``d.size`` bytes)."""
    if len(data) != d.size:
        raise _err(f"central directory read {len(data)} of {d.size} bytes", path)
    entries: list[Entry] = []
    pos = 0
    for i in range(d.entries):
        if pos + CENTRAL_SIZE > len(data):
            raise _err(f"central directory ends inside entry {i} of {d.entries} (truncated)", path)
        fields = struct.unpack_from("<IHHHHHHIIIHHHHHII", data, pos)
        sig, flags, method, crc, csize, usize, nlen, xlen, clen, disk, offset = (
            fields[0], fields[3], fields[4], fields[7], fields[8], fields[9], fields[10], fields[11], fields[12],
            fields[13], fields[16],
        )  # fmt: skip
        if sig != CENTRAL_SIG:
            raise _err(f"central directory entry {i} has a bad signature (truncated or corrupt)", path)
        end = pos + CENTRAL_SIZE + nlen + xlen + clen
        if end > len(data):
            raise _err(f"central directory entry {i} runs past the directory's end (truncated)", path)
        if nlen > MAX_NAME:
            raise _err(f"entry {i} has a {nlen}-byte name, longer than {MAX_NAME}", path)
        raw = data[pos + CENTRAL_SIZE : pos + CENTRAL_SIZE + nlen]
        try:
            name = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise _err(f"entry {i} has a name that is not UTF-8", path) from None
        need = [k for k, v in (("usize", usize), ("csize", csize), ("offset", offset)) if v == _U32]
        if disk == _U16:
            need.append("disk")
        big = _zip64_extra(data[pos + CENTRAL_SIZE + nlen : pos + CENTRAL_SIZE + nlen + xlen], need, path, name)
        if need:
            usize, csize, offset = big.get("usize", usize), big.get("csize", csize), big.get("offset", offset)
            disk = big.get("disk", disk)
        if disk:
            raise _err(f"entry {name!r} lies on disk {disk}; multi-disk archives are not supported", path)
        if flags & FLAG_ENCRYPTED:
            raise _err(f"entry {name!r} is encrypted", path)
        entries.append(Entry(name, offset, usize, csize, method, flags, crc, bool(need)))
        pos = end
    return entries


def check_layout(entries: list[Entry], d: Directory, path: str) -> list[Entry]:
    """Entries sorted by offset, refused when two share a name or could overlap (each needs at
    least its local header, name and stored bytes before the next one starts), or when one
    reaches past the central directory."""
    names: set[str] = set()
    for e in entries:
        if e.name in names:
            raise _err(f"entry {e.name!r} appears twice", path)
        names.add(e.name)
    ordered = sorted(entries, key=lambda e: e.offset)
    for e, nxt in zip(ordered, [*ordered[1:], None]):
        limit = d.offset if nxt is None else nxt.offset
        least = e.offset + LOCAL_SIZE + len(e.name.encode()) + e.compressed_size
        if least > limit:
            what = "the central directory" if nxt is None else f"entry {nxt.name!r} at {nxt.offset}"
            raise _err(
                f"entry {e.name!r} at offset {e.offset} ({e.compressed_size} bytes stored) overlaps {what}"
                if e.offset < d.offset
                else f"entry {e.name!r} points past the end of the archive data (offset {e.offset})",
                path,
            )
    return ordered


def parse_local(head: bytes, e: Entry, limit: int, path: str) -> LocalHeader:
    """Check the local header of ``e`` (``head`` starts at ``e.offset``) and find its data;
    the stored bytes must end by ``limit`` (the next entry or the central directory)."""
    if len(head) < LOCAL_SIZE:
        raise _err(f"entry {e.name!r}: local header cut short", path)
    sig, _, flags, method, _, _, _, csize, usize, nlen, xlen = struct.unpack_from("<IHHHHHIIIHH", head)
    if sig != LOCAL_SIG:
        raise _err(f"entry {e.name!r}: no local header at offset {e.offset}", path)
    if head[LOCAL_SIZE : LOCAL_SIZE + nlen] != e.name.encode():
        raise _err(f"entry {e.name!r}: the local header names a different file", path)
    if method != e.method or flags & FLAG_ENCRYPTED:
        raise _err(f"entry {e.name!r}: the local header disagrees with the central directory (method, flags)", path)
    if not (flags & FLAG_DESCRIPTOR and csize == usize == 0) and _U32 not in (csize, usize):
        if (csize, usize) != (e.compressed_size, e.size):
            raise _err(f"entry {e.name!r}: local header says {usize} bytes, the central directory {e.size}", path)
    start = e.offset + LOCAL_SIZE + nlen + xlen
    if start + e.compressed_size > limit:
        raise _err(f"entry {e.name!r}: stored bytes [{start}, {start + e.compressed_size}) run past {limit}", path)
    return LocalHeader(start, flags)


def local_extent(head: bytes, e: Entry, path: str) -> int:
    """Bytes from ``e.offset`` to the end of its local header (``head`` holds its first 30)."""
    if len(head) < LOCAL_SIZE:
        raise _err(f"entry {e.name!r}: local header cut short at offset {e.offset}", path)
    nlen: int
    xlen: int
    nlen, xlen = struct.unpack_from("<HH", head, 26)
    return LOCAL_SIZE + nlen + xlen


def check_descriptor(after: bytes, e: Entry, path: str) -> int:
    """Check the data descriptor right after the stored bytes of ``e`` (``after`` holds up to
    :data:`DESCRIPTOR_MAX` bytes of it); its sizes must be the central directory's.  Returns
    its length."""
    forms = []
    body = after[4:] if after[:4] == struct.pack("<I", DESCRIPTOR_SIG) else after
    skip = len(after) - len(body)
    if len(body) >= 12:
        forms.append((skip + 12, struct.unpack_from("<II", body, 4)))
    if len(body) >= 20:
        forms.append((skip + 20, struct.unpack_from("<QQ", body, 4)))
    for length, (csize, usize) in forms:
        if (csize, usize) == (e.compressed_size, e.size):
            return length
    if not forms:
        raise _err(f"entry {e.name!r}: its data descriptor is cut short", path)
    raise _err(
        f"entry {e.name!r}: the data descriptor's sizes {forms[0][1]} disagree with the central "
        f"directory's ({e.compressed_size}, {e.size})",
        path,
    )
