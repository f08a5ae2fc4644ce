"""Ingest of a diffusers ``UNet2DConditionModel`` folder (issue 16, part 5).

A UNet folder, or a diffusers pipeline folder (``model_index.json``) whose ``unet/`` holds one
(its card is the pipeline's README).  A UNet has no vocabulary and no single hidden size, so it
has no token-space fingerprint and no evidence file of the LM kind.  It is recorded (stored
status :data:`UNET_STATUS`, reported as ``indexed``) once its roles map every tensor
(``indexer.adapters.unet``) and its evidence reads (``indexer.unet``: block signatures, unit
descriptors, raw-weight sketches); ``num_layers`` is its number of transformer blocks,
``hidden_size`` its widest block.  Like an adapter's, the status keeps the LM machinery
(candidate search, the independence battery, the LM lineage build) from taking it for a
fingerprinted language model.  Its evidence (``indexer.unet_evidence``) is captured at ingest
into the evidence store (``indexer.evidence_store``: one content-addressed file per revision,
recipe ``UNET_CAPTURE_VERSION``); relatedness and lineage of the indexed UNets
(``pedigree.workspace_unet``, the UNet families of the lineage build, ``indexer.lineage.build``)
read only that file (:func:`stored_unet`), so deleting the folder after ingest changes no answer.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import torch

from pedigree.errors import CheckpointError, EvidenceMissingError, PedigreeError, UnsupportedModelError
from pedigree.indexer.adapters.unet import UNET_CLASS, UNET_FAMILY, is_unet_config
from pedigree.indexer.bounded_json import loads_json
from pedigree.indexer.card import CARD_FILE, MAX_CARD_BYTES, CardInfo, read_card
from pedigree.indexer.evidence_file import EvidenceFile, write_evidence
from pedigree.indexer.evidence_store import (
    current_file,
    evidence_folder,
    file_name,
    record_capture,
    save_with_evidence,
)
from pedigree.indexer.local_checkpoint import open_checkpoint
from pedigree.indexer.local_files import read_small_file
from pedigree.indexer.sources import StateDictSource, TensorSource
from pedigree.indexer.unet import unet_evidence
from pedigree.indexer.unet_evidence import UNET_CAPTURE_VERSION, StoredUNet, capture_unet
from pedigree.results import IngestOutcome
from pedigree.storage.db import ModelRecord, Store
from pedigree.types import Status

UNET_STATUS = "unet"
CONFIG_BYTES = 1 << 20


def _unet_config(path: Path) -> bool:
    try:
        raw = read_small_file(path, CONFIG_BYTES) if path.is_file() else None
        return raw is not None and is_unet_config(loads_json(raw, "config.json", str(path)))
    except (OSError, ValueError, CheckpointError):  # too large, not a file, not JSON: not a UNet (the LM path says why)
        return False


def unet_folder(path: str | os.PathLike[str]) -> Path | None:
    """The UNet checkpoint a local folder holds: the folder itself when its config.json (at most
    1 MiB, JSON) names ``UNet2DConditionModel``, or the ``unet/`` subfolder of a diffusers
    pipeline folder (``model_index.json`` beside it); else None."""
    root = Path(path)
    if _unet_config(root / "config.json"):
        return root
    if (root / "model_index.json").is_file() and _unet_config(root / "unet" / "config.json"):
        return root / "unet"
    return None


def is_unet_folder(path: str | os.PathLike[str]) -> bool:
    """A UNet folder or a diffusers pipeline folder with a UNet (:func:`unet_folder`)."""
    return unet_folder(path) is not None


def _pipeline_card(root: Path) -> CardInfo:
    """The card of a pipeline folder (its README.md, read as a checkpoint's card is)."""
    try:
        raw = read_small_file(root / CARD_FILE, MAX_CARD_BYTES)
    except CheckpointError:  # too large or not a regular file: no card, as for a checkpoint's README
        raw = None
    return read_card(StateDictSource({}, {CARD_FILE: raw} if raw is not None else {}, label=str(root)))


def ingest_unet(
    store: Store,
    record: ModelRecord,
    existing: ModelRecord | None,
    folder: str | os.PathLike[str],
    started: float,
    *,
    force: bool = False,
) -> IngestOutcome:
    """Record the UNet at ``folder`` (module docstring); unchanged files (same sizes and times, or
    else the same content hash) write nothing unless ``force``.
    Raises ``PedigreeError`` for a UNet that cannot be read (the caller records the failure)."""
    found = unet_folder(folder)
    if found is None:
        raise UnsupportedModelError("no diffusers UNet2DConditionModel config.json in this folder")
    with open_checkpoint(found) as source:
        record.source_signature = source.stat_signature()
        known = existing is not None and existing.status == UNET_STATUS and not force
        if known and existing is not None and existing.source_signature == record.source_signature:
            record.revision = existing.revision  # same sizes and times: not hashed again
        else:
            record.revision = source.revision()
        if known and existing is not None and existing.revision == record.revision:
            if existing.source_signature != record.source_signature and existing.pk is not None:
                store.set_source_signature(existing.pk, record.source_signature)  # touched, not changed
            if current_file(store, existing, UNET_CAPTURE_VERSION) is None:  # indexed before the store: backfill
                capture_unet_source(store, existing, source)
            return IngestOutcome(
                record.id, Status.UNCHANGED, layers=existing.num_layers, seconds=time.perf_counter() - started
            )
        evidence = unet_evidence(source, record.id)
        card = read_card(source) if found == Path(folder) else _pipeline_card(Path(folder))
        record.card = card.as_json()
        record.created_at = card.created_at
        record.config = source.read_json("config.json")
        record.architecture = UNET_CLASS
        record.model_type = UNET_FAMILY
        record.family = UNET_FAMILY
        record.num_layers = len(evidence.blocks)
        record.hidden_size = max(evidence.roles.widths, default=0)
        record.num_parameters = sum(info.numel for info in source.tensors().values())
        captured = capture_unet(evidence, record.config or {}, source)
    record.status = UNET_STATUS
    name = file_name(record.id, record.revision, UNET_CAPTURE_VERSION)
    size = write_evidence(evidence_folder(store) / name, *captured)
    record.pk = save_with_evidence(store, record, None, None, name, size, UNET_CAPTURE_VERSION)
    return IngestOutcome(record.id, Status.INDEXED, layers=record.num_layers, seconds=time.perf_counter() - started)


def save_unet_evidence(
    store: Store, record: ModelRecord, manifest: dict[str, Any], arrays: dict[str, torch.Tensor]
) -> int:
    """Write a saved UNet's evidence file (``indexer.unet_evidence.capture_unet``) and record it
    in the evidence store; its bytes."""
    name = file_name(record.id, record.revision, UNET_CAPTURE_VERSION)
    size = write_evidence(evidence_folder(store) / name, manifest, arrays)
    record_capture(store, record, name, size, UNET_CAPTURE_VERSION)
    return size


def capture_unet_source(store: Store, record: ModelRecord, source: TensorSource) -> int:
    """Read a saved UNet's evidence through an open ``source`` and capture it; its bytes."""
    evidence, config = unet_evidence(source, record.id), source.read_json("config.json") or {}
    return save_unet_evidence(store, record, *capture_unet(evidence, config, source))


def stored_unet(store: Store, record: ModelRecord) -> StoredUNet:
    """A UNet's stored evidence.  Captured at ingest; a UNet indexed before the evidence store (or
    under an older recipe) is backfilled from its recorded folder when that still holds it, else
    EvidenceMissingError ("evidence missing: source unavailable").  A damaged file is dropped and
    captured again when the folder can still be read."""
    path = current_file(store, record, UNET_CAPTURE_VERSION)
    if path is not None:
        try:
            return StoredUNet(EvidenceFile(path), record.id)
        except EvidenceMissingError:
            path.unlink(missing_ok=True)
    found = unet_folder(record.source) if record.source else None
    if found is None:
        raise EvidenceMissingError(f"{record.id}: evidence missing: source unavailable (no UNet at {record.source})")
    try:
        with open_checkpoint(found) as source:
            capture_unet_source(store, record, source)
    except (PedigreeError, OSError) as error:
        raise EvidenceMissingError(f"{record.id}: evidence missing: source unavailable ({error})") from None
    path = current_file(store, record, UNET_CAPTURE_VERSION)
    if path is None:  # cannot happen: just written
        raise EvidenceMissingError(f"{record.id}: evidence missing after capture")
    return StoredUNet(EvidenceFile(path), record.id)
