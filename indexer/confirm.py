"""Confirm candidate pairs with the independence tests and decide which are related.

After ingest, each new model's top-k FAISS candidates (by fingerprint score) are tested with the
battery of ``indexer.independence.suite``; every result is stored in DuckDB with the revisions it
was computed on, and reused while those revisions and the suite version stand.

The fingerprint sees blocks through the model's own embedding, so a model whose blocks came from
another model under a different embedding (a passthrough frankenmerge) is not among its
candidates.  Each new model's embedding-free block signatures (``block_sig`` vectors,
``indexer.block_signatures``) therefore also propose candidates: every model owning a block whose
signature cosine with one of the new model's blocks clears ``PROPOSAL_BAR`` (FAISS search over
all ``block_sig`` vectors), best first, up to ``BLOCK_CANDIDATES``; the matched block pairs are
passed to the battery as its block hint.

Multiple-testing control: **Holm** at family-wise error rate ``FWER_LEVEL`` over every pair tested
with the current suite version.  A pair is *confirmed related* when its Holm-adjusted p-value is
below the level: the probability that *any* confirmed pair is in fact independent is at most 1 %,
whatever the dependence between the tests.  (Benjamini-Hochberg's false discovery rate was used
before: candidates come from fingerprint neighbours, so most tested pairs are related, and BH's bar
loosened with every discovery - on the full zoo it confirmed an independent pair at log10 p −2.26,
and one false link joins two families in the lineage graph.)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from contextlib import closing
from pathlib import Path

import numpy as np

from pedigree.indexer.block_signatures import PROPOSAL_BAR, block_signature_alignment
from pedigree.indexer.evidence_store import open_evidence
from pedigree.indexer.fingerprint import fingerprint_version
from pedigree.indexer.independence.inputs import ModelTensors
from pedigree.indexer.independence.logp import log10_holm
from pedigree.indexer.independence.suite import Budget, PairReport, run_battery
from pedigree.indexer.independence.summary import SUITE_VERSION
from pedigree.indexer.openers import open_location
from pedigree.indexer.sources import TensorSource
from pedigree.results import Confirmation, RelatedModel
from pedigree.storage.db import ModelRecord, Store
from pedigree.storage.relations import (
    get_relation,
    relations,
    save_report,
    set_decisions,
    stored_result,
)
from pedigree.storage.vectors import VectorIndexes
from pedigree.types import BLOCK_SIGNATURE, Status

FWER_LEVEL = 0.01
BLOCK_CANDIDATES = 5  # models proposed per new model by its block signatures
BLOCK_NEIGHBOURS = 20  # nearest block signatures examined per block of the new model
PairProgress = Callable[[int, int, str], None]


def open_record(record: ModelRecord) -> TensorSource:
    """The checkpoint an indexed model was read from: its folder, or its crawled Hub revision."""
    return open_location(record.source, record.id)


def report_json(report: PairReport) -> dict:
    return {
        "log10_p": round(report.log10_p, 4),
        "tests": [t.as_json() for t in report.tests],
        "layer_map": [list(entry) for entry in report.layer_map],
    }


def run_tests(
    a: TensorSource, b: TensorSource, labels: tuple[str, str], *, hint=None, budget: Budget | None = None
) -> dict:
    """The battery on two open checkpoints, as JSON."""
    report = run_battery(ModelTensors(a, labels[0]), ModelTensors(b, labels[1]), hint=hint, budget=budget)
    return report_json(report)


def tested_pair(store: Store, a: ModelRecord, b: ModelRecord, *, hint=None, budget: Budget | None = None) -> dict:
    """Stored results for (a, b) if current, else run the battery on their stored evidence
    (``indexer.evidence_store``: no checkpoint is opened), store and return it."""
    assert a.pk is not None and b.pk is not None  # records read from the store
    cached = stored_result(store, a, b, SUITE_VERSION)
    if cached is not None:
        return cached
    first, second = (a, b) if a.pk < b.pk else (b, a)
    if hint is not None and first is not a:
        hint = [(j, i) for i, j in hint]
    with closing(open_evidence(store, first)) as model_a, closing(open_evidence(store, second)) as model_b:
        result = report_json(run_battery(model_a, model_b, hint=hint, budget=budget))
    save_report(store, first, second, SUITE_VERSION, result)
    result["tested_as"] = [first.id, second.id]
    if first is not a:  # report the block map in the caller's orientation
        result["layer_map"] = [[j, i, p] for i, j, p in result["layer_map"]]
    return result


def decide(store: Store, level: float = FWER_LEVEL) -> int:
    """Holm over every tested pair (the adjusted p is stored as ``log10_q``); returns how many are
    confirmed."""
    current = relations(store, SUITE_VERSION)
    q_values = log10_holm([r.log10_p for r in current])
    bar = math.log10(level)
    set_decisions(store, [(r, q, q < bar) for r, q in zip(current, q_values)])
    return sum(q < bar for q in q_values)


def _signatures(store: Store, pk: int, version: str) -> np.ndarray:
    rows = sorted((r.layer, r.vector) for r in store.vectors_of(pk, version) if r.kind == BLOCK_SIGNATURE)
    return np.stack([vector for _, vector in rows]) if rows else np.zeros((0, 1), np.float32)


def block_candidates(
    store: Store, indexes: VectorIndexes, model_id: str, *, version: str | None = None, limit: int = BLOCK_CANDIDATES
) -> list[tuple[str, list[tuple[int, int, float]]]]:
    """Models sharing a block with ``model_id`` by block signature: (id, block map) with the map
    from :func:`block_signature_alignment` (blocks of ``model_id`` -> blocks of the other), most
    matched blocks first, then the highest cosine: the best source of every block, then others up
    to ``limit``.  FAISS proposes; the map is exact."""
    version = version or fingerprint_version()
    record = store.get_model(model_id)
    if record is None or record.pk is None or record.status != Status.INDEXED:
        return []
    mine = _signatures(store, record.pk, version)
    if not len(mine):
        return []
    cosines, ids = indexes.search(BLOCK_SIGNATURE, version, mine, BLOCK_NEIGHBOURS)
    hits = [int(i) for i, c in zip(ids.ravel(), cosines.ravel()) if i >= 0 and c >= PROPOSAL_BAR]
    owners = {pk for pk, _ in store.owners(hits).values()} - {record.pk}
    found = []
    for other in store.get_models(sorted(owners)).values():
        if other.status != Status.INDEXED or other.pk is None:
            continue
        pairs = block_signature_alignment(mine, _signatures(store, other.pk, version), bar=PROPOSAL_BAR)
        if pairs:
            found.append((other.id, pairs))
    found.sort(key=lambda item: (-len(item[1]), -max(c for _, _, c in item[1]), item[0]))
    # every block's best source is proposed, even when models sharing more blocks would fill the
    # list (a frankenmerge's minority of transplanted blocks comes from a small family)
    best: dict[int, tuple[float, str]] = {}
    for other_id, pairs in found:
        for i, _, c in pairs:
            if c > best.get(i, (-2.0, ""))[0]:
                best[i] = (c, other_id)
    sources = {other_id for _, other_id in best.values()}
    chosen = [item for item in found if item[0] in sources]
    chosen += [item for item in found if item[0] not in sources][: max(0, limit - len(chosen))]
    return sorted(chosen, key=found.index)


def default_indexes(store: Store) -> VectorIndexes:
    """The FAISS indexes beside a store laid out as ``pedigree.config.Settings`` lays them out."""
    return VectorIndexes(store, Path(store.path).parent / "faiss")


def plan_pairs(
    store: Store,
    candidates: Callable[[str], Sequence[RelatedModel]],
    model_ids: Sequence[str],
    indexes: VectorIndexes,
) -> list[tuple[ModelRecord, ModelRecord, list[tuple[int, int]]]]:
    """The pairs :func:`confirm_new_models` tests for ``model_ids``, in order, with their block
    hints (oriented from the pair's first model): each new model's fingerprint candidates, then the
    models sharing a block with it by block signature (the Ray executor plans with it too)."""
    planned: dict[frozenset, tuple[ModelRecord, ModelRecord, list[tuple[int, int]]]] = {}

    def add(record: ModelRecord, other_id: str, hint: list[tuple[int, int]]) -> None:
        other = store.get_model(other_id)
        if other is None or other.status != Status.INDEXED or other.pk == record.pk:
            return
        key = frozenset((record.pk, other.pk))
        if key not in planned:
            planned[key] = (record, other, [])
        first, _, pairs = planned[key]
        oriented = hint if first.pk == record.pk else [(j, i) for i, j in hint]
        pairs.extend(pair for pair in oriented if pair not in pairs)

    for model_id in model_ids:
        record = store.get_model(model_id)
        if record is None or record.status != Status.INDEXED:
            continue
        for row in candidates(model_id):
            add(record, row.id, [(i, j) for i, j, _ in row.layers])
        for other_id, pairs in block_candidates(store, indexes, model_id):
            add(record, other_id, [(i, j) for i, j, _ in pairs])
    return list(planned.values())


def confirm_new_models(
    store: Store,
    candidates: Callable[[str], Sequence[RelatedModel]],
    model_ids: list[str],
    *,
    progress: PairProgress | None = None,
    indexes: VectorIndexes | None = None,
) -> tuple[Confirmation, ...]:
    """Test each new model against its candidates (``candidates(id)`` -> related models, and the
    models sharing a block by block signature, found through ``indexes`` - by default the FAISS
    folder beside the store), then decide; a pair whose test could not run is reported with its
    error, never as unrelated."""
    indexes = indexes if indexes is not None else default_indexes(store)
    plan = plan_pairs(store, candidates, model_ids, indexes)
    tested: list[tuple[ModelRecord, ModelRecord, str | None]] = []
    for done, (a, b, hint) in enumerate(plan, start=1):
        if progress:
            progress(done, len(plan), f"{a.id} ~ {b.id}")
        try:
            tested_pair(store, a, b, hint=hint)
            tested.append((a, b, None))
        except Exception as error:  # noqa: BLE001 - a pair that cannot be tested must not stop the others
            tested.append((a, b, f"{type(error).__name__}: {error}"))
    decide(store)
    results = []
    for a, b, failure in tested:
        assert a.pk is not None and b.pk is not None  # records read from the store
        relation = None if failure else get_relation(store, a.pk, b.pk)
        if relation is None:
            results.append(Confirmation(a.id, b.id, error=failure or "no stored result"))
        else:
            results.append(Confirmation(a.id, b.id, relation.log10_p, relation.log10_q, relation.confirmed))
    return tuple(results)
