"""The evidence store: per model revision, one file beside the DuckDB database holding everything
the independence tests and the lineage stage read of that model (``indexer.stored_model``), so
that after ingest nothing opens the checkpoint again.

The ``evidence`` table names each model's file, its revision, the capture recipe
(``CAPTURE_VERSION``) and its size; files are content-addressed by model id, revision and recipe
(``evidence/<sha256>.npz``).  A model indexed before the store existed (or under an older recipe)
is *backfilled* from its source when that is still reachable; otherwise its evidence is reported
missing - "evidence missing: source unavailable" - and its fingerprints stand.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from pedigree.errors import EvidenceMissingError, PedigreeError
from pedigree.indexer.evidence_file import EvidenceFile, write_evidence
from pedigree.indexer.independence.inputs import ModelTensors
from pedigree.indexer.openers import open_location
from pedigree.indexer.sources import TensorSource
from pedigree.indexer.stored_model import CAPTURE_VERSION, StoredModel, capture
from pedigree.storage.db import ModelRecord, Store, put_evidence_row
from pedigree.types import VectorRow

FOLDER = "evidence"


def evidence_folder(store: Store) -> Path:
    return Path(store.path).parent / FOLDER


def file_name(model_id: str, revision: str | None, version: str = CAPTURE_VERSION) -> str:
    """Content address of one capture: sha256 of model id, revision and recipe."""
    key = f"{model_id}\0{revision or ''}\0{version}".encode()
    return hashlib.sha256(key).hexdigest()[:32] + ".npz"


def write_capture(store: Store, record: ModelRecord, source: TensorSource) -> tuple[str, int]:
    """Capture ``record``'s evidence through an open ``source`` into its file: (file name, bytes)."""
    manifest, arrays = capture(ModelTensors(source, record.id))
    name = file_name(record.id, record.revision)
    return name, write_evidence(evidence_folder(store) / name, manifest, arrays)


def record_capture(store: Store, record: ModelRecord, name: str, size: int, version: str = CAPTURE_VERSION) -> None:
    """Point the ``evidence`` row of a saved model at file ``name`` captured by recipe ``version``
    (a UNet's: ``indexer.unet_evidence``), dropping a superseded file."""
    assert record.pk is not None  # a saved record
    old = store.conn.execute("SELECT file FROM evidence WHERE model_pk = ?", [record.pk]).fetchone()
    with store.transaction() as conn:
        put_evidence_row(conn, record.pk, record.revision, version, name, size)
    if old is not None and old[0] != name:
        (evidence_folder(store) / old[0]).unlink(missing_ok=True)


def save_with_evidence(
    store: Store,
    record: ModelRecord,
    rows: list[VectorRow] | None,
    version: str | None,
    name: str,
    size: int,
    recipe: str = CAPTURE_VERSION,
) -> int:
    """Save a model, its vectors and its evidence row in one transaction (a run killed in between
    leaves neither), dropping a superseded file; the model's primary key."""
    old = store.conn.execute(
        "SELECT e.file FROM evidence e JOIN models m ON m.pk = e.model_pk WHERE m.id = ?", [record.id]
    ).fetchone()
    pk = store.save_model(record, rows, version, evidence=(name, size, recipe))
    if old is not None and old[0] != name:
        (evidence_folder(store) / old[0]).unlink(missing_ok=True)
    return pk


def capture_source(store: Store, record: ModelRecord, source: TensorSource) -> int:
    """Capture and record a saved model's evidence; returns its bytes."""
    name, size = write_capture(store, record, source)
    record_capture(store, record, name, size)
    return size


def current_file(store: Store, record: ModelRecord, version: str = CAPTURE_VERSION) -> Path | None:
    """The model's evidence file if one of this recipe (``version``) and revision is recorded and present."""
    row = store.conn.execute("SELECT file, revision, version FROM evidence WHERE model_pk = ?", [record.pk]).fetchone()
    if row is None or row[2] != version or row[1] != record.revision:
        return None
    path = evidence_folder(store) / row[0]
    return path if path.is_file() else None


def ensure_evidence(store: Store, record: ModelRecord) -> Path:
    """The model's current evidence file, backfilled from its source when missing or stale;
    EvidenceMissingError (with the reason) when the source cannot be read."""
    path = current_file(store, record)
    if path is not None:
        return path
    try:
        with open_location(record.source, record.id) as source:
            capture_source(store, record, source)
    except PedigreeError as error:
        raise EvidenceMissingError(f"{record.id}: evidence missing: source unavailable ({error})") from None
    except OSError as error:
        raise EvidenceMissingError(f"{record.id}: evidence missing: source unavailable ({error})") from None
    path = current_file(store, record)
    if path is None:  # cannot happen: just written
        raise EvidenceMissingError(f"{record.id}: evidence missing after capture")
    return path


def open_evidence(store: Store, record: ModelRecord) -> StoredModel:
    """The model's stored evidence (backfilled when needed, see :func:`ensure_evidence`); a damaged
    file is dropped and captured again when the source can still be read."""
    path = ensure_evidence(store, record)
    try:
        return StoredModel(EvidenceFile(path), record.id)
    except EvidenceMissingError as damaged:
        path.unlink(missing_ok=True)
        try:
            return StoredModel(EvidenceFile(ensure_evidence(store, record)), record.id)
        except EvidenceMissingError as error:
            raise EvidenceMissingError(f"{damaged}; {error}") from None


def evidence_sizes(store: Store) -> dict[int, int]:
    """Bytes of each model's evidence file, by model pk."""
    return {int(pk): int(size) for pk, size in store.conn.execute("SELECT model_pk, bytes FROM evidence").fetchall()}
