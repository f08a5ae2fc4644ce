"""Lineage questions over the index: related models, pairwise comparison, all-pairs matrix.

Candidates come from FAISS (model vectors and block vectors, so a model that shares only some
blocks - pruned, depth-changed, spliced - is still found); every candidate is then scored exactly
from the vectors in DuckDB (``indexer.scoring``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from itertools import combinations

from pedigree.errors import EvidenceMissingError, ModelNotFoundError
from pedigree.indexer.independence.summary import shared_parts
from pedigree.indexer.scoring import FingerprintView, align_layers, cosine
from pedigree.results import Comparison, PairMatrix, PairScore, Related, RelatedModel
from pedigree.storage.db import Store
from pedigree.storage.vectors import VectorIndexes
from pedigree.types import Status

PairTests = Callable[[str, str, list[tuple[int, int]]], dict]  # (a, b, block hint) -> test results
MODEL_CANDIDATES = 50  # nearest model vectors examined per query
LAYER_CANDIDATES = 20  # nearest block vectors examined per block of the query model


def compare_views(a: FingerprintView, b: FingerprintView) -> Comparison:
    """Score and block map of two fingerprints (see indexer.scoring), without tests."""
    alignment = align_layers(a.layers, b.layers)
    return Comparison(
        a=a.label,
        b=b.label,
        score=round(alignment.score, 6),
        layer_map=tuple((i, j, round(c, 6)) for i, j, c in alignment.matches(a.dim)),
        model_cosine=round(cosine(a.model, b.model) or 0.0, 6),
        embedding_cosine=_rounded(cosine(a.embedding, b.embedding)),
        head_cosine=_rounded(cosine(a.head, b.head)),
        layers=(len(a.layers), len(b.layers)),
    )


def block_log10_p(tests: dict, i: int, j: int) -> float | None:
    """log10 p of the robust test for block i of A against block j of B, if it was computed."""
    robust = next((t for t in tests.get("tests", []) if t["name"] == "mlp_match"), None)
    if robust is None:
        return None
    flipped = tests.get("flipped", False)
    localized = robust["detail"].get("localized")
    if localized:
        return localized[j][i] if flipped else localized[i][j]
    for block in robust["detail"].get("blocks", []):
        if (block["layer_a"], block["layer_b"]) == ((j, i) if flipped else (i, j)):
            return block["log10_p"]
    return None


def with_tests(comparison: Comparison, tests: dict) -> Comparison:
    """Add the independence tests to a fingerprint comparison (``compare``'s JSON).

    ``log10_p`` is the combined p-value of the battery, ``tests`` every test with its null and
    detail, each ``layer_map`` entry gains the robust test's log10 p for that block pair, and
    ``shared_blocks`` is the block map the tests themselves support ([i, j, log10 p]).
    """
    return replace(
        comparison,
        log10_p=tests["log10_p"],
        tests=tuple(tests["tests"]),
        layer_map=tuple((i, j, c, block_log10_p(tests, i, j)) for i, j, c in comparison.layer_map),
        shared_blocks=tuple(tuple(row) for row in tests["layer_map"]),
        shared=shared_parts(tests["tests"], tests["layer_map"]),
        log10_q=tests.get("log10_q"),
        confirmed=tests.get("confirmed"),
    )


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 6)


def view_of(store: Store, model_id: str, version: str) -> FingerprintView:
    """The stored fingerprint of an indexed model, or ModelNotFoundError saying why not."""
    record = store.get_model(model_id)
    if record is None:
        raise ModelNotFoundError(f"{model_id!r} is not in the index")
    if record.status != Status.INDEXED:
        raise ModelNotFoundError(f"{model_id!r} is in the index but {record.status}: {record.error}")
    assert record.pk is not None  # a record read from the store
    rows = store.vectors_of(record.pk, version)
    if not rows:
        raise ModelNotFoundError(f"{model_id!r} has no fingerprint of version {version}; re-run `pedigree ingest`")
    return FingerprintView.from_rows(model_id, rows)


def _candidates(store: Store, indexes: VectorIndexes, version: str, view: FingerprintView, exclude: int) -> set[int]:
    found: set[int] = set()
    _, ids = indexes.search("model", version, view.model[None, :], MODEL_CANDIDATES + 1)
    hits = list(ids.ravel())
    if len(view.layers):
        _, layer_ids = indexes.search("layer", version, view.layers, LAYER_CANDIDATES)
        hits.extend(layer_ids.ravel())
    owners = store.owners([int(i) for i in hits if i >= 0])
    found.update(pk for pk, _ in owners.values())
    found.discard(exclude)
    return found


def related(store: Store, indexes: VectorIndexes, version: str, model_id: str, limit: int = 10) -> Related:
    """The indexed models most related to ``model_id``, best first."""
    record = store.get_model(model_id)
    view = view_of(store, model_id, version)
    assert record is not None and record.pk is not None  # view_of raised otherwise
    candidates = _candidates(store, indexes, version, view, exclude=record.pk)
    records = store.get_models(sorted(candidates))
    results = []
    for pk, other in records.items():
        if other.status != Status.INDEXED:
            continue
        comparison = compare_views(view, FingerprintView.from_rows(other.id, store.vectors_of(pk, version)))
        results.append(RelatedModel(other.id, comparison.score, comparison.layer_map))
    results.sort(key=lambda r: (-r.score, r.id))
    return Related(model_id, tuple(results[:limit]))


def matrix(
    store: Store, version: str, model_ids: Sequence[str] | None = None, pair_tests: PairTests | None = None
) -> PairMatrix:
    """All pairwise scores among ``model_ids`` (default: every indexed model); with ``pair_tests``
    also each pair's combined log10 p (a pair whose tests cannot run - its evidence is missing -
    carries the reason instead)."""
    ids = list(dict.fromkeys(model_ids)) if model_ids else [r.id for r in store.models(Status.INDEXED)]
    views = {model_id: view_of(store, model_id, version) for model_id in ids}
    pairs = []
    for a, b in combinations(views, 2):
        comparison = compare_views(views[a], views[b])
        log10_p, error = None, None
        if pair_tests is not None:
            try:
                log10_p = pair_tests(a, b, [(i, j) for i, j, _ in comparison.layer_map])["log10_p"]
            except EvidenceMissingError as missing:  # reported per pair, never as "not related"
                error = str(missing)
        pairs.append(PairScore(a, b, comparison.score, log10_p, error))
    return PairMatrix(tuple(views), tuple(pairs))
