"""Settings: the one place for paths, fingerprint parameters and vector-index parameters.

The data folder ("home") defaults to ``./pedigree-data`` and is set by ``--home`` or the
``PEDIGREE_HOME`` environment variable.  It holds the DuckDB file (the source of truth) and the
FAISS indexes beside it (derived, rebuilt whenever missing or stale).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_HOME = "pedigree-data"
HOME_ENV = "PEDIGREE_HOME"


@dataclass(frozen=True)
class VectorIndexSettings:
    """When and how FAISS switches from exact to approximate search.

    Below ``approximate_above`` vectors an index is ``IndexFlatIP`` (exact inner product on unit
    vectors = cosine).  Above it, ``approximate_kind`` picks HNSW (no training, good recall) or
    IVF-Flat (trained k-means lists; ``ivf_lists`` 0 = 4*sqrt(n)).
    """

    approximate_above: int = 20_000
    approximate_kind: str = "hnsw"  # "hnsw" | "ivf"
    hnsw_m: int = 32
    hnsw_ef_construction: int = 200
    hnsw_ef_search: int = 128
    ivf_lists: int = 0
    # 64 of 4*sqrt(n) lists: at 1M Hub-like model vectors (4,000 lists; bench/faiss_scale.py, issue 17) nprobe 16
    # missed 1.4 % of a query's relatives (cosine >= 0.5) in its exact top-10, 64 missed 0.5 %, at a
    # p99 of 10.6 ms on 2 cores (4.3 ms at 16)
    ivf_probe: int = 64
    use_gpu: bool = True  # use faiss-gpu when it is installed and a GPU is visible


@dataclass(frozen=True)
class Settings:
    home: Path
    vectors: VectorIndexSettings = field(default_factory=VectorIndexSettings)

    @property
    def db_path(self) -> Path:
        return self.home / "pedigree.duckdb"

    @property
    def faiss_dir(self) -> Path:
        return self.home / "faiss"


def resolve_home(home: str | os.PathLike[str] | None = None) -> Path:
    """``--home`` if given, else ``$PEDIGREE_HOME``, else ``./pedigree-data``."""
    chosen = home if home is not None else os.environ.get(HOME_ENV) or DEFAULT_HOME
    return Path(chosen).expanduser().resolve()


def load_settings(home: str | os.PathLike[str] | None = None) -> Settings:
    return Settings(home=resolve_home(home))
