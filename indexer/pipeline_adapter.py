"""Ingest of a PEFT LoRA adapter folder (issue 16, part 3; the format: ``indexer.peft_adapter``).

An adapter has no fingerprint of its own: it is recorded (status :data:`ADAPTER_STATUS`, its
``config`` the declared LoRA settings and the base's model id) once its factors are shown to fit
the named base's weights, read from the base's tensor headers.  The lineage build
(``indexer.lineage.build``) adds the fixed ``adapter`` edge base -> adapter.  A base that is not
indexed, or that the factors do not fit, makes the adapter ``unsupported`` with the reason.
"""

from __future__ import annotations

import os
import time

from pedigree.errors import PedigreeError, UnsupportedModelError
from pedigree.indexer.openers import open_location
from pedigree.indexer.peft_adapter import (
    ADAPTER_ARCHITECTURE,
    ADAPTER_MODEL_TYPE,
    base_candidates,
    check_fit,
    read_adapter,
)
from pedigree.results import IngestOutcome
from pedigree.storage.db import ModelRecord, Store
from pedigree.types import Status

ADAPTER_STATUS = "adapter"
"""The stored status of an indexed adapter: not ``indexed``, so the fingerprint-based code
(tests, search, evidence) never takes it for a fingerprinted model; ingest reports it ``indexed``."""


def adapter_base(record: ModelRecord) -> str | None:
    """The base model id an indexed adapter record points to."""
    peft = (record.config or {}).get("peft")
    base = peft.get("base_id") if isinstance(peft, dict) else None
    return base if isinstance(base, str) else None


def ingest_adapter(
    store: Store, record: ModelRecord, existing: ModelRecord | None, folder: str | os.PathLike[str], started: float
) -> IngestOutcome:
    """Validate the adapter at ``folder`` against its base in ``store`` and record it (raises
    PedigreeError for a malformed adapter, UnsupportedModelError when it cannot be placed); the same
    adapter on the same base revision as ``existing`` is ``unchanged`` and writes nothing."""
    info = read_adapter(folder)
    record.model_type = ADAPTER_MODEL_TYPE
    record.architecture = ADAPTER_ARCHITECTURE
    record.config = info.as_config()
    record.num_parameters = sum(m.a_shape[0] * m.a_shape[1] + m.b_shape[0] * m.b_shape[1] for m in info.modules)
    base = None
    for candidate in base_candidates(info.base):
        found = store.get_model(candidate)
        if found is not None and found.status == Status.INDEXED and found.id != record.id:
            base = found
            break
    if base is None:
        raise UnsupportedModelError(f"adapter base {info.base} is not indexed")
    try:
        source = open_location(base.source, base.id)
        try:
            shapes = {name: t.shape for name, t in source.tensors().items()}
        finally:
            source.close()
    except PedigreeError as error:
        raise UnsupportedModelError(f"adapter base {base.id} cannot be read to check the fit ({error})") from None
    check_fit(info, base.id, shapes)
    record.config["peft"]["base_id"] = base.id
    record.config["peft"]["base_revision"] = base.revision
    record.family = base.family
    record.hidden_size = base.hidden_size
    record.num_layers = base.num_layers
    record.status = ADAPTER_STATUS
    if existing is not None and (existing.status, existing.source, existing.config) == (
        record.status,
        record.source,
        record.config,
    ):  # the same adapter on the same base: nothing to write
        return IngestOutcome(record.id, Status.UNCHANGED, seconds=time.perf_counter() - started)
    store.save_model(record, None, None)
    return IngestOutcome(record.id, Status.INDEXED, seconds=time.perf_counter() - started)
