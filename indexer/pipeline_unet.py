"""Ingest of a diffusers ``UNet2DConditionModel`` folder (issue 16, part 5).

A UNet has no vocabulary and no single hidden size, so it has no token-space fingerprint and no
evidence file of the LM kind.  It is recorded (stored status :data:`UNET_STATUS`, reported as
``indexed``) once its roles map every tensor (``indexer.adapters.unet``) and its evidence reads
(``indexer.unet``: block signatures, unit descriptors, raw-weight sketches); ``num_layers`` is its
number of transformer blocks, ``hidden_size`` its widest block.  Like an adapter's, the status
keeps the LM machinery (candidate search, the independence battery, the LM lineage build) from
taking it for a fingerprinted language model.  Relatedness and lineage of the indexed UNets come
from ``pedigree.workspace_unet`` (which reads their evidence again from the recorded sources).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from pedigree.indexer.adapters.unet import UNET_CLASS, UNET_FAMILY, is_unet_config
from pedigree.indexer.card import read_card
from pedigree.indexer.local_checkpoint import open_checkpoint
from pedigree.indexer.local_files import read_small_file
from pedigree.indexer.unet import unet_evidence
from pedigree.results import IngestOutcome
from pedigree.storage.db import ModelRecord, Store
from pedigree.types import Status

UNET_STATUS = "unet"
CONFIG_BYTES = 1 << 20


def is_unet_folder(path: str | os.PathLike[str]) -> bool:
    """A local folder whose config.json (at most 1 MiB, JSON) names ``UNet2DConditionModel``."""
    config = Path(path) / "config.json"
    if not config.is_file():
        return False
    try:
        raw = read_small_file(config, CONFIG_BYTES)
        return raw is not None and is_unet_config(json.loads(raw))
    except (OSError, ValueError):
        return False


def ingest_unet(
    store: Store, record: ModelRecord, existing: ModelRecord | None, folder: str | os.PathLike[str], started: float
) -> IngestOutcome:
    """Record the UNet at ``folder`` (module docstring); an unchanged revision writes nothing.
    Raises ``PedigreeError`` for a UNet that cannot be read (the caller records the failure)."""
    with open_checkpoint(folder) as source:
        record.source_signature = source.stat_signature()
        record.revision = source.revision()
        if existing is not None and existing.status == UNET_STATUS and existing.revision == record.revision:
            return IngestOutcome(
                record.id, Status.UNCHANGED, layers=existing.num_layers, seconds=time.perf_counter() - started
            )
        evidence = unet_evidence(source, record.id)
        card = read_card(source)
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
