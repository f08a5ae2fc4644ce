"""The graph build tests every edge it placed on an untested pair, and places the family again when
the tests do not confirm that pair related (``indexer.lineage.build._verified``) - on the small
zoo's real data folder and its stored evidence."""

from __future__ import annotations

import shutil
from pathlib import Path

from pedigree.config import load_settings
from pedigree.indexer.lineage.build import _verified, node_of
from pedigree.indexer.lineage.signals import Pair
from pedigree.indexer.lineage.workers import FamilyJob
from pedigree.storage.relations import get_relation
from pedigree.types import Status
from pedigree.workspace import Workspace

S1, S2, TESTS = "llama-lab/tiny-llama-s1", "llama-lab/tiny-llama-s2", "testsmith/tiny-llama-tests"


def test_an_edge_whose_new_test_does_not_confirm_the_pair_is_placed_again_without_it(
    indexed_home: Path, tmp_path: Path
):
    home = tmp_path / "home"
    shutil.copytree(indexed_home, home)
    with Workspace(load_settings(home)) as ws:
        records = {r.pk: r for r in ws.store.models(Status.INDEXED, with_config=False)}
        pk = {r.id: r.pk for r in records.values()}
        s1, s2, tests = pk[S1], pk[S2], pk[TESTS]
        # whether the ingest proposed (and tested) s2 with s1 or with the fine-tune depends on the
        # zoo build (its weights differ from machine to machine); the premise below needs neither
        # pair tested, so their stored results (if any) are removed first
        with ws.store.transaction() as conn:
            for x, y in ((s1, s2), (tests, s2)):
                for table in ("pair_tests", "relations"):
                    conn.execute(
                        f"DELETE FROM {table} WHERE (model_a = ? AND model_b = ?) OR (model_a = ? AND model_b = ?)",
                        [x, y, y, x],
                    )
        # s2 (an independent root, same recipe, another seed) given a fingerprint distance to s1 far
        # below any other, and a link to s1's fine-tune so that the three form one family; the s1 - s2
        # pair carries no test result, as a pair the ingest never proposed would not
        pairs = {
            frozenset((s1, tests)): Pair(0.3, True, log10_p=-40.0, raw_distance=0.3),
            frozenset((tests, s2)): Pair(0.5, False, log10_p=-30.0),
            frozenset((s1, s2)): Pair(0.01, False),
        }
        nodes = {p: node_of(records[p]) for p in (s1, s2, tests)}
        job = FamilyJob("before", [s1, s2, tests], nodes, pairs, {}, "weights")
        rehashed = []

        def rehash(job: FamilyJob, pairs: dict) -> str:
            rehashed.append(sorted(k for k, p in pairs.items() if p.unrelated))
            return "after"

        [(digest, _, group, edges)] = _verified(ws.store, records, [job], 1, True, rehash)
        relation = get_relation(ws.store, s1, s2)
        assert relation is not None and not relation.confirmed and relation.log10_p > -2
        links = {frozenset((e.parent, e.child)) for e in edges}
        assert frozenset((s1, s2)) not in links and frozenset((tests, s2)) in links
        assert rehashed == [[frozenset((s1, s2))]] and digest == "after" and sorted(group) == sorted(job.group)
        assert all(e.log10_p is not None and e.log10_p < -12 for e in edges if e.parent != s2 and e.child != s2)
