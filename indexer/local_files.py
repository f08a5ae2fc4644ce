"""Plain local files read safely: regular files only (a FIFO or device never blocks a read),
every read bounded by the size seen at open time, a short read an error (never partial data).

Shared by the local tensor sources (:mod:`indexer.local_checkpoint`, :mod:`indexer.gguf_checkpoint`).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from pedigree.errors import CheckpointError


def open_regular(path: Path, expect_size: int | None = None) -> tuple[int, int]:
    """Open ``path`` read-only without blocking on FIFOs; return ``(fd, size)`` of a regular file
    (whose size must be ``expect_size`` when given)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    except OSError as e:
        raise CheckpointError(f"cannot open: {e.strerror}", path=str(path)) from None
    st = os.fstat(fd)
    problem = None if stat.S_ISREG(st.st_mode) else "is not a regular file"
    if problem is None and expect_size not in (None, st.st_size):
        problem = f"size changed from {expect_size} to {st.st_size} bytes since it was opened"
    if problem:
        os.close(fd)
        raise CheckpointError(problem, path=str(path))
    return fd, st.st_size


def pread_into(fd: int, buf: memoryview, offset: int, display: str) -> None:
    """Fill all of ``buf`` from ``offset``; a short read is an error."""
    done = 0
    while done < len(buf):
        try:
            if hasattr(os, "preadv"):
                n = os.preadv(fd, [buf[done:]], offset + done)
            else:  # pragma: no cover - non-POSIX fallback
                chunk = os.pread(fd, len(buf) - done, offset + done)
                n = len(chunk)
                buf[done : done + n] = chunk
        except OSError as e:
            raise CheckpointError(f"read failed at byte {offset + done}: {e.strerror}", path=display) from None
        if n == 0:
            raise CheckpointError(
                f"file ended at byte {offset + done} while reading [{offset}, {offset + len(buf)}) "
                "(it shrank after it was opened)",
                path=display,
            )
        done += n


def read_small_file(path: Path, max_bytes: int) -> bytes | None:
    """The whole of a small regular file (None when it does not exist); larger than ``max_bytes``
    is a ``CheckpointError`` before anything is read."""
    if not os.path.lexists(path):
        return None
    fd, size = open_regular(path)
    try:
        if size > max_bytes:
            raise CheckpointError(f"is {size} bytes, larger than the {max_bytes}-byte limit", path=str(path))
        buf = bytearray(size)
        pread_into(fd, memoryview(buf), 0, str(path))
        return bytes(buf)
    finally:
        os.close(fd)
