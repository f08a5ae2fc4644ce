"""Mutations of the fault harness (:mod:`bench.hub_faults`): change ROOT on disk, never outside it.

``delete_repo`` removes the repo folder, ``delete_file`` one file, ``change_file`` rewrites one
file so the sha moves (text files get a line appended; ``.safetensors`` files get the first data
byte XOR 1, so they stay valid).  A mutation fires once, right *after* the ``after_list_page``-th
``/api/models`` page is computed (before it is sent) or right *before* the ``at_resolve``-th
``/resolve`` request (HEAD or GET) is answered; requests answered by an injected 429/5xx do not
count toward either.  Point the server at a copy.

A mutation names a repo id (``org/name``) and a relative path inside it; both are checked when the
mutation is made (``ValueError``: 400 on the admin endpoint) and again, resolved with every symlink
followed, right before it runs (:func:`contained`): a target outside the served root
(``../victim``, an absolute path, a symlink out) is refused, and only regular files are written.
"""

from __future__ import annotations

import os
import shutil
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pedigree.crawler.hub_server.paths import contained, open_regular, shown, valid_relative_path, valid_repo_id

MAX_COUNTER = 10**9


@dataclass
class Mutation:
    """Change ROOT between listing and download (see the module docstring)."""

    action: Literal["delete_repo", "delete_file", "change_file"]
    repo: str
    file: str = "README.md"
    after_list_page: int = 0
    at_resolve: int = 0

    def __post_init__(self) -> None:
        if self.action not in ("delete_repo", "delete_file", "change_file"):
            raise ValueError(f"unknown mutation action {shown(str(self.action), 40)!r}")
        if not isinstance(self.repo, str) or not valid_repo_id(self.repo):
            raise ValueError(f"mutation repo must be a repo id (org/name): {shown(repr(self.repo), 80)}")
        if not isinstance(self.file, str) or not valid_relative_path(self.file):
            raise ValueError(f"mutation file must be a relative path inside the repo: {shown(repr(self.file), 80)}")
        for name in ("after_list_page", "at_resolve"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_COUNTER:
                raise ValueError(f"Mutation.{name}: bad value {shown(repr(value), 40)}")


def apply_mutation(root: Path, mutation: Mutation) -> None:
    """Carry out one mutation on disk (the caller rescans).  The target is resolved right before
    (:func:`contained`): ``ValueError`` when it lies outside ``root``; nothing is followed after."""
    if mutation.action == "delete_repo":
        folder = contained(root, mutation.repo)
        if folder.is_dir():
            shutil.rmtree(folder)  # removes symlinks inside, never what they point to
        return
    target = contained(root, mutation.repo, mutation.file)
    if mutation.action == "delete_file":
        if target.is_file():
            target.unlink()
    elif mutation.action == "change_file":
        change_file(target)
    else:
        raise ValueError(f"unknown mutation action {shown(str(mutation.action), 40)!r}")


def change_file(path: Path) -> None:
    """Rewrite a regular file (not a symlink, FIFO or device) so its content hash changes;
    safetensors files stay valid."""
    with open_regular(path, "r+b") as f:
        if path.suffix == ".safetensors":
            (n,) = struct.unpack("<Q", f.read(8))
            f.seek(8 + n)
            byte = f.read(1)
            if byte:
                f.seek(8 + n)
                f.write(bytes([byte[0] ^ 1]))
                return
        f.seek(0, os.SEEK_END)
        f.write(b"\n<!-- changed -->\n")
