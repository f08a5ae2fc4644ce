"""Test support: the session-wide small zoo, built once and cached across runs.

``small_zoo_path()`` builds the "small" zoo into ``$PEDIGREE_ZOO_CACHE`` (default
``<repo>/.zoo-cache/small``) unless a finished build with the same recipe hash is already there,
and returns that folder.  An exclusive ``fcntl`` lock next to the folder keeps concurrent test
processes (e.g. pytest-xdist workers) from building it twice.
"""

from __future__ import annotations

import fcntl
import os
from functools import lru_cache
from pathlib import Path

from pedigree.zoo.build import build_zoo

CACHE_ENV = "PEDIGREE_ZOO_CACHE"
REPO_ROOT = Path(__file__).resolve().parents[1]


def small_zoo_dir() -> Path:
    """Where the small zoo lives: ``$PEDIGREE_ZOO_CACHE`` or ``<repo>/.zoo-cache/small``."""
    return Path(os.environ.get(CACHE_ENV) or REPO_ROOT / ".zoo-cache" / "small")


@lru_cache(maxsize=1)
def small_zoo_path() -> Path:
    """Build (or reuse) the small zoo and return its folder (holds truth.json and zoo.json)."""
    out = small_zoo_dir()
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out.parent / f".{out.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            build_zoo(out, "small")
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return out
