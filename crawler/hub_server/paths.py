"""Names and paths under the served root: what may be served, opened or changed, and nothing else.

* Repo ids follow the Hub's grammar (:func:`valid_repo_id`): ``org/name``, each part of ASCII
  letters, digits, ``-``, ``_``, ``.``; no ``--`` or ``..``; at most 96 characters.
* A path inside a repo (:func:`valid_relative_path`) is relative, ``/``-separated, with no empty,
  ``.`` or ``..`` segment, no backslash, no control character.
* :func:`contained` joins such names to the root and resolves every symlink; the result must lie
  inside the resolved root.
* :func:`open_regular` opens a file for reading only if it is a regular file and not a symlink,
  without blocking (a FIFO never stalls the server).
* :func:`walk_repo` lists a repo folder's servable files: regular files, or symlinks that resolve
  to regular files inside the root; everything else is left out with a reason.
* :func:`shown` escapes control characters before a name reaches a log line or a terminal.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

_NAME = re.compile(r"^[A-Za-z0-9_](?:[A-Za-z0-9_.-]{0,94}[A-Za-z0-9_])?$")
MAX_RELATIVE_PATH = 1000
MAX_DEPTH = 16
MAX_FILES_PER_REPO = 20_000


def valid_repo_name(name: str) -> bool:
    """One part of a repo id (the org or the name)."""
    return bool(_NAME.match(name)) and "--" not in name and ".." not in name


def valid_repo_id(repo_id: str) -> bool:
    """``org/name`` in the Hub's grammar."""
    parts = repo_id.split("/")
    return len(parts) == 2 and all(valid_repo_name(p) for p in parts)


def printable_name(name: str) -> bool:
    """A file or folder name that is printable text and valid UTF-8 (no undecodable bytes)."""
    if not name or not name.isprintable():
        return False
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def valid_relative_path(path: str) -> bool:
    """A ``/``-separated path inside a repo: no absolute path, ``..``, ``.``, empty segment or ``\\``."""
    if not path or len(path) > MAX_RELATIVE_PATH or "\\" in path or path.startswith("/"):
        return False
    return all(seg not in ("", ".", "..") and printable_name(seg) for seg in path.split("/"))


def shown(text: str, limit: int = 300) -> str:
    """``text`` safe for one log line: control and undecodable characters escaped, length capped."""
    out = "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in text)
    return out if len(out) <= limit else out[: limit - 3] + "..."


def inside(path: Path, real_root: Path) -> bool:
    """Whether ``path`` resolves (every symlink followed) to ``real_root`` or below it."""
    try:
        return Path(os.path.realpath(path)).is_relative_to(real_root)
    except (OSError, ValueError):
        return False


def contained(root: Path, repo_id: str, file: str | None = None) -> Path:
    """``root/repo_id[/file]`` resolved, or ``ValueError`` when a name is malformed or the resolved
    path leaves the resolved root (``..``, an absolute path, a symlink out)."""
    if not valid_repo_id(repo_id):
        raise ValueError(f"not a repo id (org/name): {shown(repo_id)!r}")
    if file is not None and not valid_relative_path(file):
        raise ValueError(f"not a relative path inside a repo: {shown(file)!r}")
    real_root = Path(os.path.realpath(root))
    target = real_root / repo_id / file if file is not None else real_root / repo_id
    real = Path(os.path.realpath(target))
    if real == real_root or not real.is_relative_to(real_root):
        raise ValueError(f"{shown(str(Path(repo_id, file or '')))!r} resolves outside the served folder")
    return real


def open_regular(path: Path, mode: str = "rb") -> BinaryIO:
    """Open ``path`` only if it is a regular file and not a symlink (``O_NOFOLLOW``), without
    blocking on a FIFO or a device; ``OSError`` otherwise."""
    flags = (os.O_RDWR if "+" in mode else os.O_RDONLY) | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    fd = os.open(path, flags)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise OSError(f"{shown(path.name)}: not a regular file")
        os.set_blocking(fd, True)
        return os.fdopen(fd, mode)  # type: ignore[return-value]
    except BaseException:
        os.close(fd)
        raise


def read_bounded(path: Path, limit: int) -> bytes:
    """At most ``limit`` bytes from the start of a regular file (see :func:`open_regular`)."""
    with open_regular(path) as f:
        return f.read(limit)


@dataclass(frozen=True)
class Found:
    """A servable file: its path inside the repo, its resolved path, its stat."""

    rel: str
    real: Path
    st: os.stat_result


def subfolders(folder: Path, real_root: Path, label: str, skipped: dict[str, str]) -> list[tuple[str, Path]]:
    """(name, resolved path) of the folders in ``folder`` that are not hidden (``.``/``_``); one
    whose name is not printable or that resolves outside ``real_root`` goes to ``skipped``."""
    out: list[tuple[str, Path]] = []
    try:
        entries = list(_entries(folder))
    except OSError as e:
        skipped[shown(label or ".")] = f"unreadable: {e.strerror or type(e).__name__}"
        return out
    for entry in entries:
        if entry.name.startswith((".", "_")):
            continue
        where = shown(label + entry.name)
        try:
            if not entry.is_dir():
                continue
            real = Path(os.path.realpath(entry.path))
        except OSError:
            continue
        if not printable_name(entry.name):
            skipped[where] = "folder skipped: name is not printable UTF-8 text"
        elif real == real_root or not real.is_relative_to(real_root):
            skipped[where] = "folder skipped: symlink to outside the served folder"
        else:
            out.append((entry.name, real))
    return out


def _entries(folder: Path) -> Iterator[os.DirEntry[str]]:
    with os.scandir(folder) as it:
        yield from sorted(it, key=lambda e: e.name)


def walk_repo(folder: Path, real_root: Path, skipped: dict[str, str], label: str) -> list[Found]:
    """The servable files of one repo folder, sorted; what is left out goes to ``skipped``
    (``label/relative path -> reason``).  Iterative; at most :data:`MAX_DEPTH` folders deep;
    ``ValueError`` past :data:`MAX_FILES_PER_REPO` files."""
    found: list[Found] = []
    stack: list[tuple[Path, str, int]] = [(folder, "", 0)]
    while stack:
        current, prefix, depth = stack.pop()
        subdirs: list[tuple[Path, str, int]] = []
        for entry in _entries(current):
            name = entry.name
            rel = prefix + name
            if name.startswith(".") and name != ".gitattributes":
                continue
            where = f"{label}/{rel}"
            if not printable_name(name):
                skipped[shown(where)] = "name is not printable UTF-8 text"
                continue
            path = Path(entry.path)
            try:
                if entry.is_dir(follow_symlinks=False):
                    if depth + 1 >= MAX_DEPTH:
                        skipped[shown(where)] = f"folder more than {MAX_DEPTH} levels deep"
                    else:
                        subdirs.append((path, rel + "/", depth + 1))
                    continue
                if entry.is_symlink():
                    if entry.is_dir():
                        skipped[shown(where)] = "symlinked folder (not followed)"
                        continue
                    if not inside(path, real_root):
                        skipped[shown(where)] = "symlink to outside the served folder"
                        continue
                real = Path(os.path.realpath(path)) if entry.is_symlink() else path
                st = real.stat() if entry.is_symlink() else entry.stat(follow_symlinks=False)
            except OSError as e:
                skipped[shown(where)] = f"unreadable: {e.strerror or type(e).__name__}"
                continue
            if not stat.S_ISREG(st.st_mode):
                skipped[shown(where)] = "not a regular file (FIFO, device, socket)"
                continue
            found.append(Found(rel, real, st))
            if len(found) > MAX_FILES_PER_REPO:
                raise ValueError(f"more than {MAX_FILES_PER_REPO} files")
        stack.extend(reversed(subdirs))
    return sorted(found, key=lambda f: f.rel)
