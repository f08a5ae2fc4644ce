"""FAISS indexes over the fingerprint vectors, derived from DuckDB and rebuilt whenever needed.

One index per vector kind (``model``, ``layer``, ``block_sig`` - the embedding-free block
signatures, searched to propose pairs that share a block under different embeddings) and
fingerprint version, stored in
``<home>/faiss/<kind>.index`` with ``manifest.json`` recording, per kind, the fingerprint version,
the store generation the index reflects, its size and its type.  FAISS ids are DuckDB
``fingerprints.vector_id`` values.

On use, an index is

- loaded as is when the manifest matches the store generation and the size matches DuckDB;
- caught up incrementally when the store moved on (add vectors newer than the manifest's
  generation, remove tombstoned ids);
- rebuilt from DuckDB when it is missing, unreadable, of another version, inconsistent, or when it
  crosses the exact/approximate size threshold of ``VectorIndexSettings``.

Vectors are unit length, so inner product = cosine.  Exact ``IndexFlatIP`` while small; above the
threshold an IVF-Flat (trained on the vectors) or HNSW index.  With faiss-gpu installed and a GPU
visible, flat and IVF searches run on the GPU.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np

from pedigree.config import VectorIndexSettings
from pedigree.storage.db import Store

MANIFEST = "manifest.json"
IVF_TRAIN_PER_LIST = 64  # k-means training sample: this many vectors per list (faiss warns below 39)


@dataclass(frozen=True)
class IndexState:
    version: str
    generation: int
    count: int
    index_type: str


def _gpu_available() -> bool:
    return hasattr(faiss, "StandardGpuResources") and getattr(faiss, "get_num_gpus", lambda: 0)() > 0


class VectorIndexes:
    """Persisted FAISS indexes for one store."""

    def __init__(self, store: Store, directory: str | Path, settings: VectorIndexSettings | None = None) -> None:
        self.store = store
        self.directory = Path(directory)
        self.settings = settings or VectorIndexSettings()
        self._loaded: dict[str, tuple[IndexState, faiss.Index]] = {}
        self._gpu_resources: faiss.StandardGpuResources | None = None
        self.rebuilds: list[str] = []  # kinds rebuilt from DuckDB during this object's life

    # ---- manifest ------------------------------------------------------------------------

    def _manifest(self) -> dict[str, IndexState]:
        try:
            raw = json.loads((self.directory / MANIFEST).read_text())
            return {kind: IndexState(**state) for kind, state in raw.items()}
        except (OSError, ValueError, TypeError):
            return {}

    def _write_manifest(self, kind: str, state: IndexState) -> None:
        manifest = {k: v.__dict__ for k, v in self._manifest().items()}
        manifest[kind] = state.__dict__
        tmp = self.directory / (MANIFEST + ".tmp")
        tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True))
        os.replace(tmp, self.directory / MANIFEST)

    def _path(self, kind: str) -> Path:
        return self.directory / f"{kind}.index"

    # ---- building ------------------------------------------------------------------------

    def _new_index(self, dim: int, vectors: np.ndarray) -> tuple[faiss.Index, str]:
        settings = self.settings
        if len(vectors) <= settings.approximate_above:
            return faiss.IndexIDMap2(faiss.IndexFlatIP(dim)), "flat"
        if settings.approximate_kind == "hnsw":
            hnsw = faiss.IndexHNSWFlat(dim, settings.hnsw_m, faiss.METRIC_INNER_PRODUCT)
            hnsw.hnsw.efConstruction = settings.hnsw_ef_construction
            hnsw.hnsw.efSearch = settings.hnsw_ef_search
            return faiss.IndexIDMap2(hnsw), "hnsw"
        lists = settings.ivf_lists or max(1, int(4 * math.sqrt(len(vectors))))
        quantizer = faiss.IndexFlatIP(dim)
        ivf = faiss.IndexIVFFlat(quantizer, dim, lists, faiss.METRIC_INNER_PRODUCT)
        ivf.train(training_sample(vectors, lists * IVF_TRAIN_PER_LIST))
        ivf.nprobe = settings.ivf_probe
        ivf.own_fields = True
        quantizer.this.disown()  # type: ignore[attr-defined]  # SWIG proxy attribute, not in faiss's stubs
        return ivf, "ivf"

    def rebuild(self, kind: str, version: str) -> faiss.Index:
        """Build the ``kind`` index from DuckDB and persist it with its manifest entry."""
        generation = self.store.generation()
        ids, _, _, vectors = self.store.vector_table(kind, version)
        dim = vectors.shape[1] if len(ids) else 1
        index, index_type = self._new_index(dim, vectors)
        if len(ids):
            index.add_with_ids(vectors, ids)
        self._save(kind, index, IndexState(version, generation, int(index.ntotal), index_type))
        self.rebuilds.append(kind)
        return index

    def _save(self, kind: str, index: faiss.Index, state: IndexState) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        tmp = self._path(kind).with_suffix(".index.tmp")
        faiss.write_index(index, str(tmp))
        os.replace(tmp, self._path(kind))
        self._write_manifest(kind, state)
        self._loaded[kind] = (state, index)

    def _catch_up(self, kind: str, state: IndexState, index: faiss.Index, generation: int) -> faiss.Index | None:
        """Apply the store's changes since ``state.generation``; None if a rebuild is needed."""
        removed = self.store.tombstones_since(kind, state.generation)
        ids, _, _, vectors = self.store.vector_table(kind, state.version, since_generation=state.generation)
        total = self.store.count_vectors(kind, state.version)
        exact = total <= self.settings.approximate_above
        if (state.index_type == "flat") != exact or (len(removed) and state.index_type == "hnsw"):
            return None
        if len(removed):
            index.remove_ids(removed)  # type: ignore[arg-type]  # faiss's Python wrapper takes an id array
        if len(ids):
            if index.d != vectors.shape[1]:
                return None
            index.add_with_ids(vectors, ids)
        if index.ntotal != total:
            return None
        self._save(kind, index, IndexState(state.version, generation, int(index.ntotal), state.index_type))
        return index

    def index(self, kind: str, version: str) -> faiss.Index:
        """The up-to-date index of ``kind`` vectors (loading, catching up or rebuilding it)."""
        generation = self.store.generation()
        cached = self._loaded.get(kind)
        if cached and cached[0].version == version and cached[0].generation == generation:
            return cached[1]
        state = self._manifest().get(kind)
        if state is None or state.version != version or state.generation > generation or not self._path(kind).exists():
            return self.rebuild(kind, version)
        try:
            index = faiss.read_index(str(self._path(kind)))
        except RuntimeError:
            return self.rebuild(kind, version)
        if index.ntotal != state.count:
            return self.rebuild(kind, version)
        if state.generation == generation:
            if index.ntotal != self.store.count_vectors(kind, version):
                return self.rebuild(kind, version)
            self._loaded[kind] = (state, index)
            return index
        caught_up = self._catch_up(kind, state, index, generation)
        return caught_up if caught_up is not None else self.rebuild(kind, version)

    def search(self, kind: str, version: str, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(cosines, vector ids) of the ``k`` nearest ``kind`` vectors for each query row."""
        index = self.index(kind, version)
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        if index.ntotal == 0 or len(queries) == 0:
            return np.zeros((len(queries), 0), np.float32), np.zeros((len(queries), 0), np.int64)
        k = min(k, int(index.ntotal))
        return self._searcher(kind, index).search(queries, k)

    def _searcher(self, kind: str, index: faiss.Index) -> faiss.Index:
        state = self._loaded[kind][0]
        if not (self.settings.use_gpu and state.index_type != "hnsw" and _gpu_available()):
            return index
        if self._gpu_resources is None:
            self._gpu_resources = faiss.StandardGpuResources()
        return faiss.index_cpu_to_gpu(self._gpu_resources, 0, index)


def training_sample(vectors: np.ndarray, size: int) -> np.ndarray:
    """At most ``size`` rows of ``vectors``, evenly spaced (deterministic): k-means on every vector
    of a 1M-model index would take hours on 2 cores (``bench/faiss_scale.py``: a 32,000-vector
    sample trained in 101 s and kept the relatives' recall >= 0.985)."""
    if len(vectors) <= size:
        return vectors
    rows = np.linspace(0, len(vectors) - 1, size).round().astype(np.int64)
    return np.ascontiguousarray(vectors[rows])
