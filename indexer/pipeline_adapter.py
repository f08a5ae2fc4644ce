"""Ingest of a PEFT LoRA adapter (issue 16, parts 3 and 6; the format: ``indexer.peft_adapter``):
a local folder here, a Hub repo through ``crawler.crawl_adapter``.

An adapter has no fingerprint of its own: it is recorded (status :data:`ADAPTER_STATUS`, its
``config`` the declared LoRA settings and the base's model id) once its factors are shown to fit
the named base's weights.  The base's tensor shapes come from its evidence file (captured at its
ingest, so a crawled base costs no request), or from its source when it has none.  The lineage
build (``indexer.lineage.build``) adds the fixed ``adapter`` edge base -> adapter.  A base that is
not indexed, or that the factors do not fit, makes the adapter ``unsupported`` with the reason.
"""

from __future__ import annotations

import os
import time

from pedigree.errors import PedigreeError, UnsupportedModelError
from pedigree.indexer.evidence_file import EvidenceFile
from pedigree.indexer.evidence_store import current_file
from pedigree.indexer.openers import open_location
from pedigree.indexer.peft_adapter import (
    ADAPTER_ARCHITECTURE,
    ADAPTER_MODEL_TYPE,
    AdapterInfo,
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
    """Validate the adapter folder at ``folder`` against its base in ``store`` and record it (see
    :func:`place_adapter`)."""
    return place_adapter(store, record, existing, read_adapter(folder), started)


def base_shapes(store: Store, base: ModelRecord) -> dict[str, tuple[int, ...]]:
    """Tensor name -> shape of an indexed base: from the tensor headers its evidence file keeps
    (no read of the base), else read from its source."""
    path = current_file(store, base)
    if path is not None:
        try:
            evidence = EvidenceFile(path)
            try:
                return {str(row[0]): tuple(int(n) for n in row[2]) for row in evidence.manifest["tensors"]}
            finally:
                evidence.close()
        except (PedigreeError, KeyError, IndexError, TypeError, ValueError):
            pass  # unreadable or of another layout: the source says
    source = open_location(base.source, base.id)
    try:
        return {name: t.shape for name, t in source.tensors().items()}
    finally:
        source.close()


def base_missing(declared: str) -> str:
    """Why an adapter whose declared base is not indexed is ``unsupported``."""
    return f"adapter base {declared} is not indexed"


def find_base(store: Store, declared: str, adapter_id: str) -> ModelRecord | None:
    """The indexed model an adapter's declared base (``base_model_name_or_path``) names (see
    ``base_candidates``)."""
    for candidate in base_candidates(declared):
        found = store.get_model(candidate)
        if found is not None and found.status == Status.INDEXED and found.id != adapter_id:
            return found
    return None


def place_adapter(
    store: Store, record: ModelRecord, existing: ModelRecord | None, info: AdapterInfo, started: float
) -> IngestOutcome:
    """Check the adapter ``info`` against its base in ``store`` and record it (raises
    UnsupportedModelError when it cannot be placed); the same adapter on the same base revision as
    ``existing`` is ``unchanged`` and writes nothing."""
    record.model_type = ADAPTER_MODEL_TYPE
    record.architecture = ADAPTER_ARCHITECTURE
    record.config = info.as_config()
    record.num_parameters = sum(m.a_shape[0] * m.a_shape[1] + m.b_shape[0] * m.b_shape[1] for m in info.modules)
    base = find_base(store, info.base, record.id)
    if base is None:
        raise UnsupportedModelError(base_missing(info.base))
    try:
        shapes = base_shapes(store, base)
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
