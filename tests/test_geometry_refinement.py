"""``indexer.lineage.geometry.siblings_not_children`` weighs only steps that full training made (pure)."""

from __future__ import annotations

import networkx as nx

from pedigree.indexer.lineage.geometry import SIBLING_COSINE_PRIOR, siblings_not_children

G, U, V, W = 1, 2, 3, 4


def _tree() -> nx.DiGraph:
    # g -> u -> v, and g -> w (a second child of g, so that the family's sibling cosine is measured)
    return nx.DiGraph([(G, U), (U, V), (G, W)])


def _geometry(child: int, parent: int, grandparent: int) -> tuple[float, float]:
    """(fresh, shared): v's step from u is far from fresh and its update shares the siblings' cosine
    with u's - what a sibling hung under u looks like (and a large merged adapter of u, too)."""
    if (child, parent, grandparent) == (V, U, G):
        return 0.3, SIBLING_COSINE_PRIOR
    return 0.0, SIBLING_COSINE_PRIOR  # every other triple: the siblings' typical cosine


def test_a_sibling_hung_under_its_sibling_moves_up_to_their_parent():
    moved = siblings_not_children(_tree(), lambda parent, child: True, _geometry, lambda u, w: True)
    assert set(moved.predecessors(V)) == {G}


def test_an_exact_low_rank_step_is_not_weighed_by_the_angles():
    trained = lambda u, w: (u, w) != (U, V)  # noqa: E731 - v is a merged adapter of u
    kept = siblings_not_children(_tree(), lambda parent, child: True, _geometry, trained)
    assert set(kept.predecessors(V)) == {U}
