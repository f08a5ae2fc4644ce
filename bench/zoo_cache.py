"""Test support: the session-wide small zoos, built once and cached across runs.

``small_zoo_path()`` builds the "small" zoo A into ``$PEDIGREE_ZOO_CACHE`` (default
``<repo>/.zoo-cache/small``) unless a finished build with the same recipe hash is already there,
and returns that folder; ``small_zoo_b_path()`` does the same for the held-out zoo B in
``$PEDIGREE_ZOO_B_CACHE`` (default ``<repo>/.zoo-cache/b-small``; its hidden models beside it in
``b-small-hidden``).  An exclusive ``fcntl`` lock next to the folder keeps concurrent test
processes (e.g. pytest-xdist workers) from building it twice.
"""

from __future__ import annotations

import fcntl
import os
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pedigree.zoo.build import build_zoo

CACHE_ENV = "PEDIGREE_ZOO_CACHE"
CACHE_B_ENV = "PEDIGREE_ZOO_B_CACHE"
REPO_ROOT = Path(__file__).resolve().parents[1]


def small_zoo_dir() -> Path:
    """Where the small zoo A lives: ``$PEDIGREE_ZOO_CACHE`` or ``<repo>/.zoo-cache/small``."""
    return Path(os.environ.get(CACHE_ENV) or REPO_ROOT / ".zoo-cache" / "small")


def small_zoo_b_dir() -> Path:
    """Where the small zoo B lives: ``$PEDIGREE_ZOO_B_CACHE`` or ``<repo>/.zoo-cache/b-small``."""
    return Path(os.environ.get(CACHE_B_ENV) or REPO_ROOT / ".zoo-cache" / "b-small")


def _built(out: Path, zoo: Literal["a", "b"]) -> Path:
    """Build (or reuse) the small zoo ``zoo`` in ``out`` under a file lock; returns ``out``."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out.parent / f".{out.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            build_zoo(out, "small", zoo=zoo)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return out


@lru_cache(maxsize=1)
def small_zoo_path() -> Path:
    """Build (or reuse) the small zoo A and return its folder (holds truth.json and zoo.json)."""
    return _built(small_zoo_dir(), "a")


@lru_cache(maxsize=1)
def small_zoo_b_path() -> Path:
    """Build (or reuse) the small zoo B and return its folder (hidden models in ``<folder>-hidden``)."""
    return _built(small_zoo_b_dir(), "b")
