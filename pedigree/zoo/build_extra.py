"""Building a zoo whose recipes live outside ``build.BUILD_MODULES`` (zoo C, the chains zoo).

Its cache key is zoo A/B's key for the spec (``build.recipe_hash``) plus the SHA-256 of the module
that defines it, so adding or changing such a zoo never rebuilds zoo A or B.
"""

from __future__ import annotations

import fcntl
import hashlib
import time
from pathlib import Path
from typing import Literal

from .build import _build, cached_manifest, recipe_hash
from .corpus import build_corpus
from .spec import ZooSpec


def build_extra_zoo(
    spec: ZooSpec, defined_in: str, out_dir: Path, size: Literal["small", "full"], workers: int | None = None
) -> dict:
    """Build (or reuse) ``spec`` of ``size`` under ``out_dir``; ``defined_in``: the defining module's path."""
    out_dir = Path(out_dir)
    start = time.perf_counter()
    corpus = build_corpus(spec.sizes[size].chars_per_domain, salt=spec.corpus_salt)
    own = hashlib.sha256(Path(defined_in).read_bytes()).hexdigest()
    key = hashlib.sha256(f"{recipe_hash(spec, size, corpus.sha256)}:{own}".encode()).hexdigest()
    cached = cached_manifest(out_dir, key)
    if cached is not None:
        return cached
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    with open(out_dir.parent / f".{out_dir.name}.build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        cached = cached_manifest(out_dir, key)
        if cached is not None:
            return cached
        return _build(spec, out_dir, size, key, corpus, start, None, workers)
