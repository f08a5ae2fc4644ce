"""Ingest of a diffusers ``UNet2DConditionModel`` folder (issue 16, part 5).

A UNet folder, or a diffusers pipeline folder (``model_index.json``) whose ``unet/`` holds one
(its card is the pipeline's README).  A UNet has no vocabulary and no single hidden size, so it
has no token-space fingerprint and no evidence file of the LM kind.  It is recorded (stored
status :data:`UNET_STATUS`, reported as ``indexed``) once its roles map every tensor
(``indexer.adapters.unet``) and its evidence reads (``indexer.unet``: block signatures, unit
descriptors, raw-weight sketches); ``num_layers`` is its number of transformer blocks,
``hidden_size`` its widest block.  Like an adapter's, the status keeps the LM machinery
(candidate search, the independence battery, the LM lineage build) from taking it for a
fingerprinted language model.  Relatedness and lineage of the indexed UNets come from
``pedigree.workspace_unet`` (which reads their evidence again from the recorded folders).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from pedigree.errors import CheckpointError, UnsupportedModelError
from pedigree.indexer.adapters.unet import UNET_CLASS, UNET_FAMILY, is_unet_config
from pedigree.indexer.card import CARD_FILE, MAX_CARD_BYTES, CardInfo, read_card
from pedigree.indexer.local_checkpoint import open_checkpoint
from pedigree.indexer.local_files import read_small_file
from pedigree.indexer.sources import StateDictSource
from pedigree.indexer.unet import unet_evidence
from pedigree.results import IngestOutcome
from pedigree.storage.db import ModelRecord, Store
from pedigree.types import Status

UNET_STATUS = "unet"
CONFIG_BYTES = 1 << 20


def _unet_config(path: Path) -> bool:
    try:
        raw = read_small_file(path, CONFIG_BYTES) if path.is_file() else None
        return raw is not None and is_unet_config(json.loads(raw))
    except (OSError, ValueError):
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
    record.status = UNET_STATUS
    store.save_model(record, None, None)
    return IngestOutcome(record.id, Status.INDEXED, layers=record.num_layers, seconds=time.perf_counter() - started)
