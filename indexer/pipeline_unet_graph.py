"""The indexed UNets' relatedness and lineage, answered from the evidence store (issue 16, part 5).

Every UNet's evidence is read from its stored file (``indexer.pipeline_unet.stored_unet``; the
checkpoint is opened only to backfill a UNet indexed before the evidence store, while its folder
still holds it).  :func:`unet_relations` runs the UNet relatedness test (``indexer.unet.unet_test``)
on every pair and builds their lineage (``indexer.unet_lineage``).  The pair tests are recomputed
from stored evidence on each call (milliseconds per pair on the zoo; not stored in DuckDB): all
pairs are tested, fine for the hundreds of UNets a folder holds, not for a crawl.

:func:`unet_families` gives the lineage build (``indexer.lineage.build``) the UNet families as
family versions with the same edge rows as the LM families: each family's members hash is
``unet-<digest>-<k>``, the digest naming the recipe, the mode and every stored UNet's id, revision
and creation date; while that digest is unchanged the previous build's UNet families are reused
and nothing is recomputed.  Mode ``weights`` ignores creation dates; ``time`` and ``full`` pass
them to ``unet_lineage`` (a parent is never newer than its child).  The UNet lineage has no
declared-base signal: ``full`` is ``time`` for UNets.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime
from itertools import combinations
from typing import Any

import networkx as nx

from pedigree.errors import EvidenceMissingError
from pedigree.indexer.independence.summary import SUITE_VERSION
from pedigree.indexer.pipeline_unet import UNET_STATUS, stored_unet
from pedigree.indexer.unet import UNetEvidence, unet_test
from pedigree.indexer.unet_evidence import UNET_CAPTURE_VERSION, StoredUNet
from pedigree.indexer.unet_lineage import unet_lineage
from pedigree.storage.db import ModelRecord, Store
from pedigree.storage.lineage import Family
from pedigree.types import Edge

ALPHA = 0.01  # family-wise level of the UNet relatedness decision (``unet_lineage.related_pairs``)
PREFIX = "unet-"


@dataclass(frozen=True)
class UNetRelations:
    """The UNets' lineage graph (model ids), every pair's test, the UNets whose evidence is missing."""

    graph: nx.DiGraph
    tests: dict[frozenset[str], dict[str, Any]]
    unreadable: dict[str, str]


@dataclass
class UNetFamilies:
    """What the lineage build takes: reused family ids, new family versions, counts."""

    kept: list[int] = field(default_factory=list)
    assembled: list[tuple[str, int, list[int], list[Edge]]] = field(default_factory=list)
    models: int = 0
    families: int = 0


def _open_all(store: Store) -> tuple[dict[str, ModelRecord], dict[str, StoredUNet], dict[str, str]]:
    records: dict[str, ModelRecord] = {}
    stored: dict[str, StoredUNet] = {}
    unreadable: dict[str, str] = {}
    for record in store.models(UNET_STATUS, with_config=False):
        try:
            stored[record.id] = stored_unet(store, record)
            records[record.id] = record
        except EvidenceMissingError as error:
            unreadable[record.id] = str(error)
    return records, stored, unreadable


def _created(records: dict[str, ModelRecord], mode: str) -> dict[str, datetime | None] | None:
    return None if mode == "weights" else {m: r.created_at for m, r in records.items()}


def relations_of(
    stored: dict[str, StoredUNet],
    unreadable: dict[str, str],
    *,
    alpha: float = ALPHA,
    created: dict[str, datetime | None] | None = None,
) -> UNetRelations:
    evidence: dict[str, UNetEvidence] = {m: s.evidence for m, s in stored.items()}
    tests = {frozenset((a, b)): unet_test(evidence[a], evidence[b]) for a, b in combinations(sorted(evidence), 2)}
    return UNetRelations(unet_lineage(evidence, tests, alpha=alpha, created=created), tests, unreadable)


def unet_relations(store: Store, *, alpha: float = ALPHA, mode: str = "weights") -> UNetRelations:
    """Test every pair of indexed UNets on their stored evidence and build their lineage graph."""
    records, stored, unreadable = _open_all(store)
    try:
        return relations_of(stored, unreadable, alpha=alpha, created=_created(records, mode))
    finally:
        for s in stored.values():
            s.close()


def _digest(records: dict[str, ModelRecord], mode: str) -> str:
    payload = {
        "recipe": UNET_CAPTURE_VERSION,
        "suite": SUITE_VERSION,  # the tests' p-value functions
        "alpha": ALPHA,
        "mode": mode,
        "models": [
            [m, r.revision, r.created_at.isoformat() if r.created_at and mode != "weights" else None]
            for m, r in sorted(records.items())
        ],
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:40]


def unet_families(store: Store, mode: str, previous: dict[str, Family]) -> UNetFamilies:
    """The UNet families of a lineage build (module docstring): the previous build's when the
    stored UNets are unchanged, else every family of :func:`unet_relations` as a new version."""
    records, stored, unreadable = _open_all(store)
    try:
        out = UNetFamilies(models=len(records))
        if not records:
            return out
        prefix = f"{PREFIX}{_digest(records, mode)}-"
        out.kept = sorted(f.family_id for h, f in previous.items() if h.startswith(prefix))
        if out.kept:
            out.families = len(out.kept)
            return out
        found = relations_of(stored, unreadable, created=_created(records, mode))
    finally:
        for s in stored.values():
            s.close()
    pk = {m: r.pk for m, r in records.items() if r.pk is not None}
    groups: dict[str, list[str]] = {}
    for m, data in found.graph.nodes(data=True):
        groups.setdefault(data["family"], []).append(m)
    for index, (root, members) in enumerate(sorted(groups.items())):
        edges = [
            Edge(
                pk[u],
                pk[v],
                data["relation"],
                data["confidence"],
                found.tests[frozenset((u, v))]["log10_p"],
                {**data["evidence"], "directed": data["directed"], "test": "unet"},
            )
            for u, v, data in sorted(found.graph.subgraph(members).edges(data=True))
        ]
        out.assembled.append((f"{prefix}{index}", pk[root], sorted(pk[m] for m in members), edges))
    out.families = len(out.assembled)
    return out
