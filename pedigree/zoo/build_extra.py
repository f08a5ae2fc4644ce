"""Building a zoo whose recipes live outside ``build.BUILD_MODULES`` (zoo C, the chains zoo).

Its cache key is ``build.recipe_hash`` of its own spec (the builder's code, the corpus, the zoo's
settings and every recipe), and its module is not among ``build.BUILD_MODULES``, so adding or
changing such a zoo never rebuilds zoo A or B (and refactoring the module that lists its recipes
rebuilds nothing while the recipes stay the same).
"""

from __future__ import annotations

import fcntl
import time
from pathlib import Path
from typing import Literal

from .build import _build, cached_manifest, recipe_hash
from .corpus import build_corpus
from .spec import ZooSpec


def build_extra_zoo(spec: ZooSpec, out_dir: Path, size: Literal["small", "full"], workers: int | None = None) -> dict:
    """Build (or reuse) ``spec`` of ``size`` under ``out_dir``."""
    out_dir = Path(out_dir)
    start = time.perf_counter()
    corpus = build_corpus(spec.sizes[size].chars_per_domain, salt=spec.corpus_salt)
    key = recipe_hash(spec, size, corpus.sha256)
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
