"""Test and benchmark support: the vision zoo (``pedigree.zoo.vision``), built once and cached.

``vision_zoo_path()`` builds the zoo into ``$PEDIGREE_VISION_ZOO_CACHE`` (default
``<repo>/.zoo-cache/vision``) unless a finished build with the same recipe hash is already there,
and returns that folder.  An exclusive ``fcntl`` lock next to the folder keeps concurrent test
processes (pytest-xdist workers) from building it twice - as ``bench/zoo_cache.py`` does for zoo A.
"""

from __future__ import annotations

import fcntl
import os
from functools import lru_cache
from pathlib import Path

from pedigree.zoo.vision import build_vision_zoo

CACHE_ENV = "PEDIGREE_VISION_ZOO_CACHE"
REPO_ROOT = Path(__file__).resolve().parents[1]


def vision_zoo_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV) or REPO_ROOT / ".zoo-cache" / "vision")


@lru_cache(maxsize=1)
def vision_zoo_path() -> Path:
    """Build (or reuse) the vision zoo and return its folder (holds truth.json and zoo.json)."""
    out = vision_zoo_dir()
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out.parent / f".{out.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            build_vision_zoo(out)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return out
