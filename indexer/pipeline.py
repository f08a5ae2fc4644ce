"""Ingest: checkpoint folder -> roles -> canonical fingerprint (and the embedding-free block
signatures, ``indexer.block_signatures``) -> one atomic DuckDB write.

Each model is handled on its own: a malformed or hostile checkpoint, or an architecture without an
adapter, is recorded with its status and reason and the next model goes on.  Re-ingesting a model
whose files are unchanged (same size and mtime, or else the same content hash) writes nothing.
"""

from __future__ import annotations

import os
import time
import traceback
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from pedigree.errors import CheckpointError, PedigreeError, UnsupportedModelError, clip
from pedigree.indexer.adapters import MatrixLoader, ModelRoles, roles_for
from pedigree.indexer.adapters.base import PIXEL_PROBES
from pedigree.indexer.block_signatures import block_signatures
from pedigree.indexer.card import read_card
from pedigree.indexer.evidence_store import save_with_evidence, write_capture
from pedigree.indexer.fingerprint import (
    DEFAULT_DIM,
    DEFAULT_SAMPLE,
    FINGERPRINT_PROBES,
    Fingerprint,
    compute_fingerprint,
    fingerprint_version,
)
from pedigree.indexer.gguf_checkpoint import GGUFCheckpoint
from pedigree.indexer.independence.inputs import ModelTensors
from pedigree.indexer.local_checkpoint import LocalCheckpoint, open_checkpoint
from pedigree.indexer.peft_adapter import is_adapter_folder
from pedigree.indexer.pipeline_adapter import ingest_adapter
from pedigree.indexer.pipeline_plan import read_plan
from pedigree.indexer.pipeline_unet import ingest_unet, is_unet_folder
from pedigree.indexer.probes import pixel_vocabulary, select_probes
from pedigree.indexer.safetensors_format import INDEX_FILE, SINGLE_FILE
from pedigree.indexer.sampling import SampleSize
from pedigree.indexer.sources import TensorSource
from pedigree.indexer.stored_model import capture_plan
from pedigree.indexer.vocabulary import find_vocabulary_file, parse_vocabulary
from pedigree.indexer.weight_stats import StatsAccumulator
from pedigree.results import IngestOutcome
from pedigree.storage.db import ModelRecord, Store
from pedigree.types import BLOCK_SIGNATURE, Status, VectorRow

LayerProgress = Callable[[int, int], None]


def is_checkpoint_folder(path: Path) -> bool:
    """A folder that holds a config.json, safetensors or PyTorch weights (a legacy pickle is rejected when read)."""
    if not path.is_dir():
        return False
    names = {p.name for p in path.iterdir()}
    return (
        bool({"config.json", SINGLE_FILE, INDEX_FILE} & names)
        or any(n.endswith((".safetensors", ".bin", ".pt", ".pth", ".gguf")) for n in names)
        or ("model_index.json" in names and is_unet_folder(path))  # a diffusers pipeline's unet/
    )


def discover(path: str | os.PathLike[str], model_id: str | None = None) -> list[tuple[str, Path]]:
    """(model id, folder) pairs under ``path``: one checkpoint folder, or ``ORG/NAME/`` folders."""
    root = Path(path)
    if not root.is_dir():
        raise CheckpointError("not a directory", path=str(root))
    if is_checkpoint_folder(root):
        return [(model_id or f"{root.resolve().parent.name}/{root.resolve().name}", root)]
    if model_id is not None:
        raise CheckpointError("--id names one model, but this folder is not a checkpoint", path=str(root))
    found = []
    for org in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for name in sorted(p for p in org.iterdir() if p.is_dir() and not p.name.startswith(".")):
            if is_checkpoint_folder(name):
                found.append((f"{org.name}/{name.name}", name))
    found.sort(key=lambda item: is_adapter_folder(item[1]))  # adapters after the bases they are checked against
    return found


def describe(source: TensorSource, record: ModelRecord) -> ModelRoles:
    """Fill ``record`` with what config.json, the card and the tensors say; return the roles."""
    card = read_card(source)  # a README too large or not UTF-8 is an ignored card, never a failed model
    record.card = card.as_json()
    record.created_at = card.created_at
    config = source.read_json("config.json")
    if isinstance(config, dict):
        record.config = config
        record.model_type = config.get("model_type") if isinstance(config.get("model_type"), str) else None
        architectures = config.get("architectures")
        if isinstance(architectures, list) and architectures and isinstance(architectures[0], str):
            record.architecture = architectures[0]
    tensors = source.tensors()
    record.num_parameters = sum(info.numel for info in tensors.values())
    roles = roles_for(config, tensors)
    record.architecture = roles.architecture
    record.family = roles.family
    record.num_layers = len(roles.layers)
    record.hidden_size = roles.hidden_size
    return roles


def fingerprint_source(
    source: TensorSource,
    record: ModelRecord,
    *,
    dim: int = DEFAULT_DIM,
    progress: LayerProgress | None = None,
    sample: SampleSize = DEFAULT_SAMPLE,
) -> Fingerprint:
    """Roles, the read plan (``indexer.pipeline_plan``: a tensor or model too large to sample
    fails here, and a remote source's byte budget and deadline shrink to the plan), vocabulary
    and probes, then the fingerprint (raises PedigreeError on any problem)."""
    roles = describe(source, record)
    planned = read_plan(source, roles)
    limit_reads = getattr(source, "limit_reads", None)
    if callable(limit_reads):
        limit_reads(planned)
    if roles.probe_kind == PIXEL_PROBES:  # a vision encoder: pixel tokens, no tokenizer
        vocabulary = pixel_vocabulary(roles.vocab_size)
    else:
        tokenizer_file = find_vocabulary_file(source)
        if tokenizer_file is None:
            raise UnsupportedModelError("no tokenizer files (tokenizer.json, vocab.json, vocab.txt or tokenizer.model)")
        vocabulary = parse_vocabulary(*tokenizer_file)
    record.tokenizer_hash = vocabulary.digest
    probes = select_probes(vocabulary, roles.vocab_size, FINGERPRINT_PROBES)
    loader = MatrixLoader(source)
    stats = StatsAccumulator(loader, roles)
    fingerprint = compute_fingerprint(
        loader, roles, probes, dim=dim, sample=sample, progress=progress, on_layer=stats.add
    )
    record.weight_stats = stats.finish().as_json()
    return fingerprint


def fingerprint_rows(fingerprint: Fingerprint) -> list[VectorRow]:
    rows = [
        VectorRow("model", -1, fingerprint.model.numpy()),
        VectorRow("embedding", -1, fingerprint.embedding.numpy()),
    ]
    if fingerprint.head is not None:
        rows.append(VectorRow("head", -1, fingerprint.head.numpy()))
    rows.extend(VectorRow("layer", i, vector.numpy()) for i, vector in enumerate(fingerprint.layers))
    return rows


def signature_rows(source: TensorSource, record: ModelRecord) -> list[VectorRow]:
    """One ``block_sig`` row per block (``record`` already described by :func:`describe`)."""
    roles = roles_for(record.config, source.tensors())
    signatures = block_signatures(MatrixLoader(source), roles)
    return [VectorRow(BLOCK_SIGNATURE, i, vector) for i, vector in enumerate(signatures)]


def _failure(error: BaseException) -> tuple[str, str]:
    if isinstance(error, UnsupportedModelError):
        return Status.UNSUPPORTED, f"unsupported: {error}"
    if isinstance(error, PedigreeError):
        return Status.FAILED, clip(str(error))
    if isinstance(error, RecursionError):
        return Status.FAILED, "a file of the checkpoint is nested too deeply to read (recursion limit reached)"
    if isinstance(error, MemoryError):
        return Status.FAILED, "out of memory while indexing this model"
    detail = traceback.format_exception_only(type(error), error)[-1].strip()
    return Status.FAILED, clip(f"internal error while indexing: {detail}")


def _unchanged(store: Store, existing: ModelRecord, record: ModelRecord, version: str) -> bool:
    if existing.status != Status.INDEXED or existing.revision != record.revision or existing.source != record.source:
        return False
    assert existing.pk is not None  # a record read from the store
    return store.count_model_vectors(existing.pk, version) > 0


def ingest_checkpoint(
    store: Store,
    model_id: str,
    folder: str | os.PathLike[str],
    *,
    force: bool = False,
    dim: int = DEFAULT_DIM,
    progress: LayerProgress | None = None,
) -> IngestOutcome:
    """Index one checkpoint folder under ``model_id``; never raises for a bad checkpoint."""
    started = time.perf_counter()
    version = fingerprint_version(dim)
    record = ModelRecord(id=model_id, status=Status.INDEXED, source=str(Path(folder).resolve()))
    existing = store.get_model(model_id)
    if is_adapter_folder(folder):  # a PEFT adapter: an `adapter` edge to its base, no fingerprint
        try:
            return ingest_adapter(store, record, existing, folder, started)
        except Exception as error:  # noqa: BLE001 - one model's failure must never stop the others
            return _record_failure(store, record, existing, error, started)
    if is_unet_folder(folder):  # a diffusers UNet: its own evidence and lineage (indexer.pipeline_unet)
        try:
            return ingest_unet(store, record, existing, folder, started, force=force)
        except Exception as error:  # noqa: BLE001 - one model's failure must never stop the others
            return _record_failure(store, record, existing, error, started)
    source: LocalCheckpoint | GGUFCheckpoint | None = None
    try:
        source = open_checkpoint(folder)
        record.source_signature = source.stat_signature()
        if not force and existing is not None and existing.source_signature == record.source_signature:
            record.revision = existing.revision
            if _unchanged(store, existing, record, version):
                return IngestOutcome(
                    model_id, Status.UNCHANGED, layers=existing.num_layers, seconds=time.perf_counter() - started
                )
        record.revision = source.revision()
        if not force and existing is not None and _unchanged(store, existing, record, version):
            assert existing.pk is not None  # a record read from the store
            store.set_source_signature(existing.pk, record.source_signature)
            return IngestOutcome(
                model_id, Status.UNCHANGED, layers=existing.num_layers, seconds=time.perf_counter() - started
            )
        return _index(store, record, source, existing, version, dim, progress, started)
    except Exception as error:  # noqa: BLE001 - one model's failure must never stop the others
        return _record_failure(store, record, existing, error, started)
    finally:
        if source is not None:
            source.close()


def ingest_source(
    store: Store,
    model_id: str,
    open_source: Callable[[], TensorSource],
    *,
    revision: str,
    uri: str,
    created_at: datetime | None = None,
    force: bool = False,
    dim: int = DEFAULT_DIM,
    progress: LayerProgress | None = None,
) -> IngestOutcome:
    """Index a checkpoint read through any tensor source (the crawler's HTTP range reads), pinned
    to ``revision`` and remembered as ``uri``; an unchanged revision opens nothing.  Never raises
    for a bad checkpoint or a remote failure: the model is recorded with its reason."""
    started = time.perf_counter()
    version = fingerprint_version(dim)
    record = ModelRecord(id=model_id, status=Status.INDEXED, source=uri, revision=revision)
    existing = store.get_model(model_id)
    if not force and existing is not None and _unchanged(store, existing, record, version):
        return IngestOutcome(
            model_id, Status.UNCHANGED, layers=existing.num_layers, seconds=time.perf_counter() - started
        )
    source: TensorSource | None = None
    try:
        source = open_source()
        return _index(store, record, source, existing, version, dim, progress, started, created_at)
    except Exception as error:  # noqa: BLE001 - one model's failure must never stop the others
        return _record_failure(store, record, existing, error, started)
    finally:
        if source is not None:
            source.close()


def _index(
    store: Store,
    record: ModelRecord,
    source: TensorSource,
    existing: ModelRecord | None,
    version: str,
    dim: int,
    progress: LayerProgress | None,
    started: float,
    created_at: datetime | None = None,
) -> IngestOutcome:
    fingerprint = fingerprint_source(source, record, dim=dim, progress=progress)
    if record.created_at is None:
        record.created_at = created_at
    # what the signatures and the evidence read beyond the fingerprint, fetched once (remote sources cache it)
    source.prefetch_rows(capture_plan(ModelTensors(source, record.id)), gap=1)
    rows = fingerprint_rows(fingerprint) + signature_rows(source, record)
    evidence = write_capture(store, record, source)  # what the tests and lineage will read: never the source again
    record.pk = save_with_evidence(store, record, rows, version, *evidence)
    return IngestOutcome(
        record.id, Status.INDEXED, layers=len(fingerprint.layers), seconds=time.perf_counter() - started
    )


def _record_failure(
    store: Store, record: ModelRecord, existing: ModelRecord | None, error: BaseException, started: float
) -> IngestOutcome:
    if getattr(error, "transient", False):  # the remote failed us, not the model: keep what we had, try again later
        return IngestOutcome(
            record.id,
            Status.RETRY,
            clip(str(error)),
            seconds=time.perf_counter() - started,
            error_kind=type(error).__name__,
        )
    record.status, record.error = _failure(error)
    same = existing is not None and (existing.status, existing.error, existing.revision) == (
        record.status,
        record.error,
        record.revision,
    )
    if not same:
        store.save_model(record, None, None)
    return IngestOutcome(
        record.id, record.status, record.error, seconds=time.perf_counter() - started, error_kind=type(error).__name__
    )
