"""The DuckDB store: the source of truth for models and their fingerprint vectors.

Every change a model makes - its row plus all its vectors - happens in one transaction, together
with a bump of the store ``generation``; replaced vectors leave tombstones.  FAISS indexes
(``storage.vectors``) remember the generation they reflect and catch up from these tables, or
are rebuilt from them, so they can always be deleted.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb

from pedigree.errors import StorageError
from pedigree.storage.schema import migrate
from pedigree.types import VectorRow

if TYPE_CHECKING:  # numpy loads with the first vector read: `pedigree status` never needs it
    import numpy as np


def utc_now() -> datetime:
    """Now, as the naive UTC timestamps the DuckDB tables hold."""
    return datetime.now(UTC).replace(tzinfo=None)


def naive_utc(value: datetime | None) -> datetime | None:
    """An aware datetime as naive UTC (naive ones are taken to be UTC already)."""
    if value is None or value.tzinfo is None:
        return value
    return value.astimezone(UTC).replace(tzinfo=None)


@dataclass
class ModelRecord:
    """One row of ``models``."""

    id: str
    status: str
    revision: str | None = None
    source: str | None = None
    source_signature: str | None = None
    error: str | None = None
    architecture: str | None = None
    model_type: str | None = None
    family: str | None = None
    config: dict | None = None
    tokenizer_hash: str | None = None
    num_layers: int | None = None
    hidden_size: int | None = None
    num_parameters: int | None = None
    card: dict | None = None
    weight_stats: dict | None = None
    created_at: datetime | None = None
    indexed_at: datetime = field(default_factory=lambda: datetime.now(UTC).replace(tzinfo=None))
    pk: int | None = None


_COLUMNS = [f.name for f in fields(ModelRecord) if f.name != "pk"]
_JSON_COLUMNS = {"config", "card", "weight_stats"}


def put_evidence_row(
    conn: duckdb.DuckDBPyConnection, pk: int, revision: str | None, recipe: str, file: str, size: int
) -> None:
    """Point model ``pk``'s one ``evidence`` row at ``file`` (inside the caller's transaction)."""
    conn.execute("DELETE FROM evidence WHERE model_pk = ?", [pk])
    conn.execute("INSERT INTO evidence VALUES (?, ?, ?, ?, ?, ?)", [pk, revision, recipe, file, size, utc_now()])


class Store:
    """A DuckDB file holding models and fingerprints (created and migrated on open)."""

    def __init__(self, path: str | Path, *, read_only: bool = False) -> None:
        self.path = Path(path)
        if not read_only:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        elif not self.path.exists():
            raise StorageError(f"no index at {self.path}: run `pedigree ingest` first")
        try:
            self.conn = duckdb.connect(str(self.path), read_only=read_only)
        except duckdb.Error as error:
            raise StorageError(f"cannot open {self.path}: {error}") from None
        if not read_only:
            migrate(self.conn)

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[duckdb.DuckDBPyConnection]:
        self.conn.execute("BEGIN TRANSACTION")
        try:
            yield self.conn
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    # ---- models -------------------------------------------------------------------------

    def _record(self, row: tuple) -> ModelRecord:
        values = dict(zip(["pk", *_COLUMNS], row))
        for column in _JSON_COLUMNS:
            if values[column] is not None:
                values[column] = json.loads(values[column])
        return ModelRecord(**values)

    def get_model(self, model_id: str) -> ModelRecord | None:
        row = self.conn.execute(f"SELECT pk, {', '.join(_COLUMNS)} FROM models WHERE id = ?", [model_id]).fetchone()
        return self._record(row) if row else None

    def get_models(self, pks: Sequence[int]) -> dict[int, ModelRecord]:
        if not pks:
            return {}
        rows = self.conn.execute(
            f"SELECT pk, {', '.join(_COLUMNS)} FROM models WHERE pk IN (SELECT unnest(?))", [list(map(int, pks))]
        ).fetchall()
        return {row[0]: self._record(row) for row in rows}

    def models(self, status: str | None = None, *, with_config: bool = True) -> list[ModelRecord]:
        """Models (by id), optionally of one status; ``with_config=False`` leaves ``config`` out
        (the bulk of a row, not needed to assemble the graph of a million models)."""
        where, params = ("WHERE status = ?", [status]) if status else ("", [])
        columns = [c if with_config or c != "config" else "NULL" for c in _COLUMNS]
        rows = self.conn.execute(f"SELECT pk, {', '.join(columns)} FROM models {where} ORDER BY id", params).fetchall()
        return [self._record(row) for row in rows]

    def generation(self) -> int:
        row = self.conn.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()
        assert row is not None  # the migration inserts the generation row
        return int(row[0])

    def save_model(
        self,
        record: ModelRecord,
        vectors: Sequence[VectorRow] | None,
        version: str | None,
        evidence: tuple[str, int, str] | None = None,
    ) -> int:
        """Insert or update ``record`` and replace all its vectors with ``vectors``, atomically.

        ``vectors`` None (a failed or unsupported model) removes whatever vectors the model had.
        ``evidence`` (file, bytes, capture recipe) points the model's ``evidence`` row at its
        captured file in the same transaction: a run killed mid-commit leaves neither or both.
        Returns the model's primary key.
        """
        import numpy as np

        values = [
            json.dumps(getattr(record, c))
            if c in _JSON_COLUMNS and getattr(record, c) is not None
            else getattr(record, c)
            for c in _COLUMNS
        ]
        with self.transaction() as conn:
            row = conn.execute("SELECT pk FROM models WHERE id = ?", [record.id]).fetchone()
            generation = self.generation() + 1
            if row is None:  # a new row: no vectors, tests or edges refer to its fresh pk yet
                placeholders = ", ".join("?" for _ in _COLUMNS)
                inserted = conn.execute(
                    f"INSERT INTO models ({', '.join(_COLUMNS)}) VALUES ({placeholders}) RETURNING pk", values
                ).fetchone()
                assert inserted is not None  # RETURNING yields the inserted row
                pk = inserted[0]
            else:
                pk = row[0]
                assignments = ", ".join(f"{c} = ?" for c in _COLUMNS if c != "id")
                conn.execute(
                    f"UPDATE models SET {assignments} WHERE pk = ?",
                    [v for c, v in zip(_COLUMNS, values) if c != "id"] + [pk],
                )
                conn.execute(
                    "INSERT INTO vector_tombstones SELECT vector_id, kind, ? FROM fingerprints WHERE model_pk = ?",
                    [generation, pk],
                )
                conn.execute("DELETE FROM fingerprints WHERE model_pk = ?", [pk])
                for table in ("pair_tests", "relations", "pair_evidence"):  # results on the old weights no longer hold
                    conn.execute(f"DELETE FROM {table} WHERE model_a = ? OR model_b = ?", [pk, pk])
                conn.execute("DELETE FROM merge_evidence WHERE ? IN (child, parent_a, parent_b)", [pk])
            if vectors:
                # one statement for all rows (a row-by-row executemany costs ~1.5 ms per vector);
                # unnest keeps their order
                conn.execute(
                    "INSERT INTO fingerprints (model_pk, version, kind, layer, generation, vector) "
                    "SELECT ?, ?, kind, layer, ?, vector FROM (SELECT unnest(?) AS kind, unnest(?) AS layer, "
                    "unnest(?) AS vector)",
                    [
                        pk,
                        version,
                        generation,
                        [v.kind for v in vectors],
                        [v.layer for v in vectors],
                        [np.asarray(v.vector, dtype=np.float32) for v in vectors],
                    ],
                )
            if evidence is not None:
                put_evidence_row(conn, pk, record.revision, evidence[2], evidence[0], evidence[1])
            conn.execute("UPDATE meta SET value = ? WHERE key = 'generation'", [str(generation)])
        record.pk = pk
        return pk

    # ---- vectors ------------------------------------------------------------------------

    def vectors_of(self, model_pk: int, version: str) -> list[VectorRow]:
        import numpy as np

        rows = self.conn.execute(
            "SELECT kind, layer, vector FROM fingerprints WHERE model_pk = ? AND version = ? ORDER BY kind, layer",
            [model_pk, version],
        ).fetchall()
        return [VectorRow(kind, layer, np.asarray(vector, dtype=np.float32)) for kind, layer, vector in rows]

    def vector_table(
        self, kind: str, version: str, *, since_generation: int = -1
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(vector ids, model pks, layers, vectors [n, D]) of one kind, newer than a generation."""
        import numpy as np

        result = self.conn.execute(
            "SELECT vector_id, model_pk, layer, vector FROM fingerprints WHERE kind = ? AND version = ? AND "
            "generation > ? ORDER BY vector_id",
            [kind, version, since_generation],
        ).fetchnumpy()
        ids = np.asarray(result["vector_id"], dtype=np.int64)
        if len(ids) == 0:
            return ids, ids.copy(), ids.copy(), np.zeros((0, 0), dtype=np.float32)
        vectors = np.stack([np.asarray(v, dtype=np.float32) for v in result["vector"]])
        return ids, np.asarray(result["model_pk"], dtype=np.int64), np.asarray(result["layer"], dtype=np.int64), vectors

    def count_model_vectors(self, model_pk: int, version: str) -> int:
        row = self.conn.execute(
            "SELECT count(*) FROM fingerprints WHERE model_pk = ? AND version = ?", [model_pk, version]
        ).fetchone()
        assert row is not None  # an aggregate always yields a row
        return int(row[0])

    def set_source_signature(self, model_pk: int, signature: str) -> None:
        """Remember the files' stat signature of an unchanged model (vectors untouched)."""
        self.conn.execute("UPDATE models SET source_signature = ? WHERE pk = ?", [signature, model_pk])

    def count_vectors(self, kind: str, version: str) -> int:
        row = self.conn.execute(
            "SELECT count(*) FROM fingerprints WHERE kind = ? AND version = ?", [kind, version]
        ).fetchone()
        assert row is not None  # an aggregate always yields a row
        return int(row[0])

    def tombstones_since(self, kind: str, generation: int) -> np.ndarray:
        import numpy as np

        rows = self.conn.execute(
            "SELECT vector_id FROM vector_tombstones WHERE kind = ? AND generation > ?", [kind, generation]
        ).fetchall()
        return np.asarray([r[0] for r in rows], dtype=np.int64)

    def owners(self, vector_ids: Sequence[int]) -> dict[int, tuple[int, int]]:
        """vector id -> (model pk, layer) for the given ids."""
        if len(vector_ids) == 0:
            return {}
        rows = self.conn.execute(
            "SELECT vector_id, model_pk, layer FROM fingerprints WHERE vector_id IN (SELECT unnest(?))",
            [[int(v) for v in vector_ids]],
        ).fetchall()
        return {vid: (pk, layer) for vid, pk, layer in rows}
