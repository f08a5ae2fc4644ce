"""Gathering a family's evidence for the lineage stage (read through the tensor sources, stored in
DuckDB so a rebuild reuses it):

- per pair: the fingerprint distance and layer map (``indexer.scoring``), the raw-weight evidence
  (``indexer.lineage.evidence``) and the structural direction evidence - the localized layer map
  and, for vocabularies of different sizes, the pruned-or-extended test
  (``indexer.lineage.structure``);
- per model: merge fits against pairs of its nearest same-coordinate relatives.

Evidence carries ``EVIDENCE_VERSION``: evidence of an older version is recomputed.
"""

from __future__ import annotations

from itertools import combinations

import numpy as np

from pedigree.indexer.lineage.evidence import merge_fit, pair_weight_evidence
from pedigree.indexer.lineage.structure import layer_map, layer_relation, vocabulary_evidence
from pedigree.indexer.lineage.workers import Models
from pedigree.indexer.scoring import FingerprintView, align_layers
from pedigree.storage.db import Store
from pedigree.storage.lineage import PairEvidence, save_merge_evidence, save_pair_evidence
from pedigree.types import BLOCK_SIGNATURE, VectorRow

# 2: layer map, vocabulary; 3: per-matrix growth; 4: block maps; 5: from block signatures; 6: evidence store;
# 7: renumbered vocabularies
EVIDENCE_VERSION = 7
MIN_GROWTH_MATRICES = 6  # a consistent growth is judged over at least this many changed matrices
MERGE_NEIGHBOURS = 4  # merge fits are tried on pairs among a model's 4 closest same-coordinate relatives
ALL_PAIRS_UP_TO = 48  # families up to this size get evidence for every pair, larger ones per-member nearest
NEAREST = 12  # ... the 12 nearest family members by fingerprint


def candidate_pairs(store: Store, group: list[int], version: str) -> list[tuple[int, int]]:
    """Pairs of a family that get evidence: all of them for small families, else each member's
    nearest members by model-vector cosine (a parent that drifted far is still among them)."""
    if len(group) <= ALL_PAIRS_UP_TO:
        return list(combinations(group, 2))
    vectors = np.stack([next(r.vector for r in store.vectors_of(pk, version) if r.kind == "model") for pk in group])
    similarity = vectors @ vectors.T
    pairs: set[tuple[int, int]] = set()
    for index, pk in enumerate(group):
        for other in np.argsort(-similarity[index])[1 : NEAREST + 1]:
            low, high = sorted((pk, group[int(other)]))
            pairs.add((low, high))
    return sorted(pairs)


def signatures(rows: list[VectorRow]) -> np.ndarray:
    """A model's embedding-free block signatures, one row per block (empty when it has none)."""
    found = sorted((row.layer, row.vector) for row in rows if row.kind == BLOCK_SIGNATURE)
    return np.stack([vector for _, vector in found]) if found else np.zeros((0, 0), np.float32)


def structure_evidence(
    a: int, b: int, rows_a: list[VectorRow], rows_b: list[VectorRow], ids: tuple[str, str], models: Models
) -> dict:
    """The pair's block maps, layer-map and vocabulary direction evidence, naming the child by its
    key.  The block map (which blocks are kept copies of the other's, for passthrough merges) is
    read from the embedding-free block signatures when both have them - a transplanted block keeps
    its signature under another model's embedding - else from the fingerprint's block vectors; the
    layer-map direction always from the fingerprint (same embedding: the finer measure)."""
    out: dict = {}
    view_a, view_b = FingerprintView.from_rows(ids[0], rows_a), FingerprintView.from_rows(ids[1], rows_b)
    cosines = align_layers(view_a.layers, view_b.layers).cosines
    sig_a, sig_b = signatures(rows_a), signatures(rows_b)
    blocks = np.clip(sig_a @ sig_b.T, -1.0, 1.0) if len(sig_a) and len(sig_b) else cosines
    out["block_map"] = {
        str(a): [[i, j, round(c, 6)] for i, j, c in layer_map(blocks)],
        str(b): [[j, i, round(c, 6)] for j, i, c in layer_map(blocks.T)],
        "from": "block signatures" if blocks is not cosines else "fingerprint",
    }
    deep, shallow, matrix = (a, b, cosines) if len(view_a.layers) >= len(view_b.layers) else (b, a, cosines.T)
    relation = layer_relation(matrix)
    if relation is not None:
        out["layer_map"] = {"relation": relation, "child": deep if relation == "upscaled" else shallow}
    size_a, size_b = models(a).roles.vocab_size, models(b).roles.vocab_size
    if size_a != size_b:
        small, large = (a, b) if size_a < size_b else (b, a)
        try:
            vocab = vocabulary_evidence(models(small), models(large))
        except Exception as error:  # noqa: BLE001 - no vocabulary judgement, the other evidence stands
            out["vocabulary"] = {"relation": None, "error": str(error)}
        else:
            if vocab is not None:
                child = large if vocab.relation == "vocab_extended" else small if vocab.relation else None
                out["vocabulary"] = {**vocab.as_json(), "child": child}
    return out


def ensure_pair_evidence(
    store: Store, records, links, stored, version: str, models: Models
) -> dict[frozenset, PairEvidence]:
    """Compute (and store) the evidence of every pair in ``links`` that has none of this version
    for the models' current revisions; returns ``stored`` updated."""
    fresh = []
    for a, b in links:
        key, ra, rb = frozenset((a, b)), records[a], records[b]
        ev = stored.get(key)
        revisions = {ev.model_a: ev.revision_a, ev.model_b: ev.revision_b} if ev else {}
        if (
            ev
            and revisions.get(a) == ra.revision
            and revisions.get(b) == rb.revision
            and (ev.detail or {}).get("version") == EVIDENCE_VERSION
        ):
            continue
        rows_a, rows_b = store.vectors_of(a, version), store.vectors_of(b, version)
        view_a, view_b = FingerprintView.from_rows(ra.id, rows_a), FingerprintView.from_rows(rb.id, rows_b)
        alignment = align_layers(view_a.layers, view_b.layers)
        matched = sum(c for _, _, c in alignment.pairs) / max(len(view_a.layers), len(view_b.layers), 1)
        try:
            weights = pair_weight_evidence(models(a), models(b), [(i, j) for i, j, _ in alignment.matches(view_a.dim)])
            weights.update(structure_evidence(a, b, rows_a, rows_b, (ra.id, rb.id), models))
        except Exception as error:  # noqa: BLE001 - evidence is optional; the distance still counts
            weights = {
                "raw_cosine": None,
                "same_coordinates": None,
                "raw_distance": None,
                "delta_rank_gap": None,
                "error": str(error),
            }
        weights["version"] = EVIDENCE_VERSION
        growth = weights.get("growth")
        if growth in (0.0, 1.0) and weights.get("changed_matrices", 0) >= MIN_GROWTH_MATRICES:
            weights["grown_child"] = b if growth == 1.0 else a
        fresh.append(
            PairEvidence(
                a,
                b,
                ra.revision,
                rb.revision,
                round(1.0 - matched, 6),
                weights["same_coordinates"],
                weights["raw_cosine"],
                weights["raw_distance"],
                weights["delta_rank_gap"],
                weights,
                weights.get("whole_block_distance"),
            )
        )
    save_pair_evidence(store, fresh)
    stored.update({frozenset((e.model_a, e.model_b)): e for e in fresh})
    return stored


def ensure_merges(store: Store, family: list[int], evidence, merges, models: Models) -> None:
    """Fit every member as a weight average of pairs of its nearest same-coordinate relatives."""
    rows = []
    for child in family:
        near = sorted(
            ((e.distance, (set(k) - {child}).pop()) for k, e in evidence.items() if child in k and e.same_coordinates),
            key=lambda t: t,
        )[:MERGE_NEIGHBOURS]
        done = {(a, b) for a, b, _, _ in merges.get(child, [])}
        for (_, u), (_, v) in combinations(near, 2):
            u, v = min(u, v), max(u, v)
            if (u, v) in done:
                continue
            try:
                fit = merge_fit(models(child), models(u), models(v))
            except Exception:  # noqa: BLE001 - a model that cannot be sampled is simply not a merge candidate
                fit = None
            if fit is not None:
                rows.append((child, u, v, fit[0], fit[1]))
                merges.setdefault(child, []).append((u, v, fit[0], fit[1]))
    save_merge_evidence(store, rows)
