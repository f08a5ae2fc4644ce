"""Build the lineage graph from DuckDB: families, evidence, assembly, a versioned build.

1. **Families** are the connected components of the *confirmed related* pairs (the independence
   tests under Holm family-wise control, ``indexer.confirm``); a model with no confirmed
   relative is a family of one (its own root).
2. **Evidence** for every confirmed pair - fingerprint distance and raw-weight evidence - and
   merge fits are read from DuckDB, computed (through the tensor sources) where missing or stale,
   and stored.
3. Each family whose members and evidence are unchanged since the last build of the same mode is
   **reused**; the others are **assembled** (``indexer.lineage.assemble``) and written as new
   family versions.  The build is recorded with its time and counts.
4. **UNets** (stored status ``unet``: no fingerprint, their own relatedness test) join as their own
   families, built from their stored evidence alone (``indexer.pipeline_unet_graph``) with the
   same edge rows.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import replace

from pedigree.errors import EvidenceMissingError
from pedigree.indexer.confirm import decide, tested_pair
from pedigree.indexer.evidence_store import ensure_evidence
from pedigree.indexer.independence.summary import SUITE_VERSION
from pedigree.indexer.lineage.arborescence import components
from pedigree.indexer.lineage.assemble import (
    ASSEMBLY_VERSION,
    LAMBDA,
    MODES,
    WEIGHTS,
    Node,
    Pair,
)
from pedigree.indexer.lineage.gather import candidate_pairs, ensure_merges, ensure_pair_evidence
from pedigree.indexer.lineage.workers import FamilyJob, Models, assemble_families
from pedigree.indexer.pipeline_adapter import ADAPTER_STATUS, adapter_base
from pedigree.indexer.pipeline_unet_graph import unet_families
from pedigree.indexer.weight_stats import WeightStats
from pedigree.results import GraphBuild
from pedigree.storage.db import ModelRecord, Store, utc_now
from pedigree.storage.lineage import (
    PairEvidence,
    build_info,
    families_of_build,
    finish_build,
    latest_build,
    merge_evidence,
    pair_evidence,
    start_build,
    write_families,
)
from pedigree.storage.relations import confirmed_pairs, get_relation, relations
from pedigree.types import Edge, Status

Progress = Callable[[str, int, int], None]


def node_of(record: ModelRecord, indexed: set[str] | None = None) -> Node:
    """The assembly's view of a model; ``indexed``: the ids of every indexed model, to name the
    declared bases that are not indexed (none named when not given)."""
    card = record.card or {}
    assert record.pk is not None  # a record read from the store
    declared = tuple(card.get("base_model") or ())
    return Node(
        record.pk,
        record.id,
        record.created_at,
        declared,
        WeightStats.from_json(record.weight_stats),
        tuple(base for base in declared if base not in indexed) if indexed is not None else (),
    )


def pair_of(evidence: PairEvidence, log10_p: float | None, unrelated: bool = False) -> Pair:
    """The assembly's view of a pair's stored evidence (``unrelated``: tested, not confirmed)."""
    detail = evidence.detail or {}
    layers = detail.get("layer_map") or {}
    vocabulary = detail.get("vocabulary") or {}
    return Pair(
        evidence.distance,
        evidence.same_coordinates,
        evidence.delta_rank_gap,
        log10_p,
        evidence.raw_distance,
        evidence.whole_block_distance,
        layer_child=layers.get("child"),
        layer_relation=layers.get("relation"),
        vocab_child=vocabulary.get("child"),
        vocab_relation=vocabulary.get("relation"),
        grown_child=detail.get("grown_child"),
        block_map=tuple(
            (int(pk), tuple((int(i), int(j), float(c)) for i, j, c in rows))
            for pk, rows in sorted((detail.get("block_map") or {}).items())
            if pk.isdigit()
        ),
        unrelated=unrelated,
    )


def _with_p_values(store: Store, records, edges: list) -> list:
    """Give every edge the combined log10 p of its pair, running the tests where none ran yet."""
    out = []
    for edge in edges:
        if edge.log10_p is None:
            try:
                result = tested_pair(store, records[edge.parent], records[edge.child])
                edge = replace(edge, log10_p=result["log10_p"])
            except Exception:  # noqa: BLE001 - an edge without a p-value is still an edge
                pass
        out.append(edge)
    return out


def _family_hash(mode: str, nodes: list[Node], records, pairs: dict[frozenset, Pair], merges) -> str:
    payload = {
        "mode": mode,
        "assembly": ASSEMBLY_VERSION,
        "lambda": LAMBDA,
        "weights": WEIGHTS,
        "suite": SUITE_VERSION,
        "nodes": [
            [
                n.pk,
                records[n.pk].revision,
                n.created_at.isoformat() if n.created_at else None,
                list(n.declared),
                list(n.unindexed_bases),
            ]
            for n in nodes
        ],
        # the pairs' log10 p is carried onto edges but does not steer assembly: not hashed, so a
        # p-value first computed for an edge does not force the family's rebuild next time
        "pairs": sorted([sorted(k), *p.hashable()] for k, p in pairs.items()),
        "merges": sorted(
            [pk, [list(map(lambda x: round(x, 6) if isinstance(x, float) else x, f)) for f in sorted(fits)]]
            for pk, fits in merges.items()
            if pk in {n.pk for n in nodes}
        ),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def _job_digest(mode: str, nodes: list[Node], records, pairs: dict[frozenset, Pair], merges, adapters, group) -> str:
    """A family's digest: its :func:`_family_hash` and the adapters attached to its members."""
    digest = _family_hash(mode, nodes, records, pairs, merges)
    attached = sorted(a for a in adapters.values() if a[1] in group)
    if attached:
        digest = hashlib.sha256(json.dumps([digest, attached]).encode()).hexdigest()
    return digest


def build_graph(
    store: Store,
    version: str,
    *,
    mode: str = "full",
    compute_evidence: bool = True,
    progress: Progress | None = None,
    workers: int | None = None,
) -> GraphBuild:
    """Assemble (incrementally) the lineage graph of every indexed model; returns the build summary.

    ``compute_evidence=False`` assembles from the evidence already in DuckDB (no checkpoint is
    read); ``workers`` processes assemble the families (default: one per CPU, for big builds)."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}")
    started = utc_now()
    records: dict[int, ModelRecord] = {}
    for r in store.models(Status.INDEXED, with_config=False):
        assert r.pk is not None  # a record read from the store
        records[r.pk] = r
    adapters = _adapters(store, {r.id: pk for pk, r in records.items()})
    indexed = {r.id for r in records.values()}
    decide(store)  # pairs tested since the last decision (compare, matrix) count too
    confirmed = [(a, b, p) for a, b, p in confirmed_pairs(store, SUITE_VERSION) if a in records and b in records]
    links = [(a, b) for a, b, _ in confirmed]
    log10_p = {frozenset((a, b)): p for a, b, p in confirmed}
    unrelated = {frozenset((r.model_a, r.model_b)) for r in relations(store, SUITE_VERSION) if not r.confirmed}
    files = evidence_files(store, records) if compute_evidence else {}
    models = Models(records, files)
    try:
        evidence = pair_evidence(store, with_detail=True)
        groups = components(sorted(records), links)
        if compute_evidence:
            wanted = set(links) | {
                p for group in groups if len(group) > 1 for p in candidate_pairs(store, group, version)
            }
            evidence = ensure_pair_evidence(store, records, sorted(wanted), evidence, version, models)
        merges = merge_evidence(store)
        last = latest_build(store, mode)
        previous = families_of_build(store, last) if last else {}
        by_family: dict[int, dict[frozenset, PairEvidence]] = {}
        family_of = {pk: index for index, group in enumerate(groups) for pk in group}
        for key, ev in evidence.items():
            a, b = tuple(key)
            if a in family_of and b in family_of and family_of[a] == family_of[b]:
                by_family.setdefault(family_of[a], {})[key] = ev
        kept, jobs = [], []
        for index, group in enumerate(groups):
            if progress:
                progress("gathering evidence", index + 1, len(groups))
            family_evidence = by_family.get(index, {})
            if compute_evidence and len(group) > 2:
                ensure_merges(store, group, family_evidence, merges, models)
            nodes = [node_of(records[pk], indexed) for pk in group]
            pairs = {k: pair_of(e, log10_p.get(k), k in unrelated) for k, e in family_evidence.items()}
            family_merges = {pk: merges[pk] for pk in group if pk in merges}
            digest = _job_digest(mode, nodes, records, pairs, family_merges, adapters, group)
            if digest in previous:
                kept.append(previous[digest].family_id)
                continue
            jobs.append(
                FamilyJob(
                    digest,
                    group,
                    {n.pk: n for n in nodes},
                    pairs,
                    family_merges,
                    mode,
                    {pk: records[pk] for pk in group} if compute_evidence and len(group) > 2 else None,
                    {pk: files[pk] for pk in group if pk in files} if compute_evidence and len(group) > 2 else None,
                )
            )
    finally:
        models.close()
    assembled = []

    def rehash(job: FamilyJob, pairs: dict[frozenset, Pair]) -> str:
        return _job_digest(mode, list(job.nodes.values()), records, pairs, job.merges, adapters, job.group)

    placed = _verified(store, records, jobs, workers, compute_evidence, rehash)
    for done, (digest, root, group, edges) in enumerate(placed, start=1):
        if progress:
            progress("assembling families", done, len(jobs))
        attached = [a for a in sorted(adapters.values()) if a[1] in group]
        if attached:
            group = [*group, *(pk for pk, _, _, _ in attached)]
            edges = [*edges, *(Edge(base, pk, "adapter", 1.0, None, ev) for pk, base, _, ev in attached)]
        assembled.append((digest, root, group, edges))
    if compute_evidence:
        decide(store)
    unets = unet_families(store, mode, previous)  # UNets: their own stored evidence, test and lineage
    kept.extend(unets.kept)
    assembled.extend(unets.assembled)
    model_count, family_count = len(records) + unets.models, len(groups) + unets.families
    if last is not None and not assembled and len(kept) == len(previous):
        info = build_info(store, last)  # nothing changed: the latest build stands, no new version
        return _summary(info, model_count, family_count, rebuilt=0, reused=len(kept))
    build_id = start_build(store, mode, {"lambda": LAMBDA, "weights": WEIGHTS, "suite": SUITE_VERSION}, started)
    new_ids = write_families(store, build_id, assembled)
    finish_build(store, build_id, kept + new_ids, rebuilt=len(new_ids))
    return _summary(build_info(store, build_id), model_count, family_count, rebuilt=len(new_ids), reused=len(kept))


def _verified(store: Store, records, jobs: list[FamilyJob], workers: int | None, test: bool, rehash) -> list:
    """Assemble the jobs; with ``test``, every edge on an untested pair gets its test
    (``_with_p_values``), and a family with an edge whose pair the tests then do not confirm
    related (Holm over every tested pair, ``decide``) is placed again without that pair, under the
    digest ``rehash(job, pairs)`` that the next build will compute for it - until no edge of it is
    refuted (every round excludes at least one more of its finitely many pairs)."""
    done: list = [None] * len(jobs)
    pending = list(enumerate(jobs))
    while pending:
        results = list(assemble_families([job for _, job in pending], workers))
        if test:
            results = [(d, root, group, _with_p_values(store, records, edges)) for d, root, group, edges in results]
            decide(store)
        retry = []
        for (index, job), (digest, root, group, edges) in zip(pending, results):
            done[index] = (digest, root, group, edges)
            failed = {
                key
                for e in edges
                if test
                and (key := frozenset((e.parent, e.child))) in job.pairs
                and not job.pairs[key].unrelated
                and (relation := get_relation(store, e.parent, e.child)) is not None
                and not relation.confirmed
            }
            if failed:
                pairs = {k: replace(p, unrelated=True) if k in failed else p for k, p in job.pairs.items()}
                retry.append((index, replace(job, digest=rehash(job, pairs), pairs=pairs)))
        pending = retry
    return done


def _adapters(store: Store, pks: dict[str, int]) -> dict[int, tuple[int, int, str | None, dict]]:
    """Indexed PEFT adapters whose base is indexed: adapter pk -> (adapter pk, base pk, revision,
    edge evidence).  Their ``adapter`` edge is declared and checked at ingest, not inferred."""
    out = {}
    for record in store.models(ADAPTER_STATUS):
        base = adapter_base(record)
        if record.pk is None or base not in pks:
            continue
        peft = (record.config or {}).get("peft") or {}
        evidence = {"peft": True, "rank": peft.get("r"), "target_modules": peft.get("target_modules")}
        out[record.pk] = (record.pk, pks[base], record.revision, evidence)
    return out


def evidence_files(store: Store, records: dict[int, ModelRecord]) -> dict[int, str]:
    """Each model's evidence file (backfilled from its source when it has none yet); a model whose
    evidence is missing and whose source is gone is left out: its pairs get no weight evidence."""
    files = {}
    for pk, record in records.items():
        try:
            files[pk] = str(ensure_evidence(store, record))
        except EvidenceMissingError:
            continue
    return files


def _summary(info: dict, models: int, families: int, *, rebuilt: int, reused: int) -> GraphBuild:
    return GraphBuild(
        build_id=info["build_id"],
        mode=info["mode"],
        models=models,
        families=families,
        rebuilt=rebuilt,
        reused=reused,
        edges=info["edges"] or 0,
        started_at=str(info["started_at"]),
        finished_at=str(info["finished_at"]),
    )
