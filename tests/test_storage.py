"""DuckDB store and FAISS index manager: migrations, atomic writes, incremental sync, rebuilds."""

from __future__ import annotations

import duckdb
import numpy as np
import pytest

from pedigree.config import VectorIndexSettings
from pedigree.errors import StorageError
from pedigree.storage.db import ModelRecord, Store
from pedigree.storage.schema import SCHEMA_VERSION
from pedigree.storage.vectors import VectorIndexes
from pedigree.types import Status, VectorRow

VERSION = "test-v1"


def unit_rows(rng: np.random.Generator, layers: int, dim: int = 16) -> list[VectorRow]:
    def unit() -> np.ndarray:
        v = rng.standard_normal(dim).astype(np.float32)
        return v / np.linalg.norm(v)

    return [VectorRow("model", -1, unit()), VectorRow("embedding", -1, unit())] + [
        VectorRow("layer", i, unit()) for i in range(layers)
    ]


def test_migrations_are_recorded_and_idempotent(tmp_path):
    path = tmp_path / "p.duckdb"
    Store(path).close()
    Store(path).close()
    conn = duckdb.connect(str(path))
    versions = conn.execute("SELECT version FROM schema_migrations ORDER BY version").fetchall()
    conn.close()
    assert [v for (v,) in versions] == list(range(1, SCHEMA_VERSION + 1))


def test_an_older_store_gets_only_its_pending_migrations(tmp_path):
    from pedigree.storage.schema import MIGRATIONS, current_version

    path = tmp_path / "p.duckdb"
    conn = duckdb.connect(str(path))
    current_version(conn)  # creates schema_migrations
    for number, (name, sql) in enumerate(MIGRATIONS[:2], start=1):  # a store written by an older pedigree
        conn.execute(sql)
        conn.execute("INSERT INTO schema_migrations VALUES (?, ?, now())", [number, name])
    conn.close()
    with Store(path) as store:
        rows = store.conn.execute("SELECT version, name FROM schema_migrations ORDER BY version").fetchall()
        store.save_model(
            ModelRecord(id="org/a", status=Status.INDEXED), unit_rows(np.random.default_rng(2), 1), VERSION
        )
    assert rows == [(number, name) for number, (name, _) in enumerate(MIGRATIONS, start=1)]


def test_newer_schema_is_refused(tmp_path):
    path = tmp_path / "p.duckdb"
    Store(path).close()
    conn = duckdb.connect(str(path))
    conn.execute("INSERT INTO schema_migrations VALUES (?, 'from the future', now())", [SCHEMA_VERSION + 1])
    conn.close()
    with pytest.raises(StorageError, match="upgrade pedigree"):
        Store(path)


def test_save_model_replaces_vectors_atomically_with_tombstones(tmp_path):
    rng = np.random.default_rng(0)
    with Store(tmp_path / "p.duckdb") as store:
        pk = store.save_model(
            ModelRecord(id="org/a", status=Status.INDEXED, config={"x": 1}), unit_rows(rng, 3), VERSION
        )
        first_ids, *_ = store.vector_table("layer", VERSION)
        assert store.generation() == 1 and len(first_ids) == 3
        assert store.save_model(ModelRecord(id="org/a", status=Status.INDEXED), unit_rows(rng, 2), VERSION) == pk
        ids, pks, layers, vectors = store.vector_table("layer", VERSION)
        assert len(ids) == 2 and set(ids).isdisjoint(first_ids) and list(layers) == [0, 1]
        assert set(store.tombstones_since("layer", 1)) == set(first_ids)
        store.save_model(ModelRecord(id="org/a", status=Status.FAILED, error="boom"), None, None)
        assert store.count_model_vectors(pk, VERSION) == 0
        record = store.get_model("org/a")
        assert record.status == Status.FAILED and record.error == "boom" and record.pk == pk


def test_saved_vectors_read_back_bit_exact_with_their_kind_and_layer(tmp_path):
    rows = unit_rows(np.random.default_rng(3), 4, dim=512)
    with Store(tmp_path / "p.duckdb") as store:
        pk = store.save_model(ModelRecord(id="org/a", status=Status.INDEXED), rows, VERSION)
        back = store.vectors_of(pk, VERSION)
    expected = sorted(rows, key=lambda r: (r.kind, r.layer))
    assert [(r.kind, r.layer) for r in back] == [(r.kind, r.layer) for r in expected]
    assert all(np.array_equal(a.vector, b.vector) and a.vector.dtype == np.float32 for a, b in zip(back, expected))


def test_failed_write_rolls_back(tmp_path):
    rng = np.random.default_rng(1)
    with Store(tmp_path / "p.duckdb") as store:
        store.save_model(ModelRecord(id="org/a", status=Status.INDEXED), unit_rows(rng, 2), VERSION)
        bad = unit_rows(rng, 2) + [VectorRow("layer", 5, np.array([np.nan, "x"], dtype=object))]
        with pytest.raises(ValueError):
            store.save_model(ModelRecord(id="org/a", status=Status.INDEXED), bad, VERSION)
        assert store.generation() == 1
        assert store.count_model_vectors(store.get_model("org/a").pk, VERSION) == 4


def _populate(store: Store, count: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    for i in range(count):
        store.save_model(ModelRecord(id=f"org/m{i}", status=Status.INDEXED), unit_rows(rng, 4), VERSION)


def test_index_catches_up_incrementally_and_rebuilds_when_deleted(tmp_path):
    with Store(tmp_path / "p.duckdb") as store:
        _populate(store, 5)
        indexes = VectorIndexes(store, tmp_path / "faiss")
        assert indexes.index("layer", VERSION).ntotal == 20 and indexes.rebuilds == ["layer"]
        _populate(store, 7, seed=1)  # re-saves m0..m4 (new ids, tombstones) and adds m5, m6
        fresh = VectorIndexes(store, tmp_path / "faiss")
        index = fresh.index("layer", VERSION)
        assert fresh.rebuilds == [] and index.ntotal == 28
        ids, _, _, vectors = store.vector_table("layer", VERSION)
        scores, found = fresh.search("layer", VERSION, vectors[:3], 1)
        assert list(found[:, 0]) == list(ids[:3]) and np.allclose(scores[:, 0], 1.0, atol=1e-5)
        for path in (tmp_path / "faiss").iterdir():
            path.unlink()
        again = VectorIndexes(store, tmp_path / "faiss")
        assert again.index("layer", VERSION).ntotal == 28 and again.rebuilds == ["layer"]


def test_corrupt_or_inconsistent_index_is_rebuilt(tmp_path):
    with Store(tmp_path / "p.duckdb") as store:
        _populate(store, 3)
        VectorIndexes(store, tmp_path / "faiss").index("model", VERSION)
        (tmp_path / "faiss" / "model.index").write_bytes(b"not a faiss index")
        indexes = VectorIndexes(store, tmp_path / "faiss")
        assert indexes.index("model", VERSION).ntotal == 3 and indexes.rebuilds == ["model"]
        other = VectorIndexes(store, tmp_path / "faiss")
        assert other.index("model", "another-version").ntotal == 0 and other.rebuilds == ["model"]


@pytest.mark.parametrize("kind", ["ivf", "hnsw"])
def test_approximate_index_above_threshold_finds_exact_neighbours(tmp_path, kind):
    settings = VectorIndexSettings(approximate_above=50, approximate_kind=kind, ivf_lists=4, ivf_probe=4)
    with Store(tmp_path / "p.duckdb") as store:
        _populate(store, 30)
        indexes = VectorIndexes(store, tmp_path / "faiss", settings)
        indexes.index("layer", VERSION)
        manifest = (tmp_path / "faiss" / "manifest.json").read_text()
        assert f'"index_type": "{kind}"' in manifest
        ids, _, _, vectors = store.vector_table("layer", VERSION)
        _, found = indexes.search("layer", VERSION, vectors, 1)
        assert (found[:, 0] == ids).mean() > 0.95
        assert indexes.index("model", VERSION).ntotal == 30  # 30 model vectors: still exact
        assert '"index_type": "flat"' in (tmp_path / "faiss" / "manifest.json").read_text()


def test_ivf_trains_on_an_evenly_spaced_sample_of_a_large_index() -> None:
    from pedigree.storage.vectors import training_sample

    vectors = np.arange(1000, dtype=np.float32).reshape(500, 2)
    assert training_sample(vectors, 600) is vectors  # small enough: every vector
    sample = training_sample(vectors, 50)
    assert sample.shape == (50, 2) and sample[0, 0] == 0 and sample[-1, 0] == 998
    assert len(np.unique(sample[:, 0])) == 50 and sample.flags["C_CONTIGUOUS"]
