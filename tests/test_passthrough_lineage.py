"""Passthrough (frankenmerge) detection reads two would-be parents that hold copies of one another's
blocks as one lineage (``indexer.lineage.passthrough``) - pure, on hand-made block maps shaped like
the ones measured on zoo B (full) and zoo C (small) rebuilt on another machine."""

from __future__ import annotations

from pedigree.indexer.lineage.passthrough import passthrough_parents
from pedigree.indexer.lineage.signals import Node, Pair
from pedigree.indexer.weight_stats import WeightStats

BASE, CHAT, TESTS, SOUP, FRANKEN, OTHER = 1, 2, 3, 4, 5, 6


def _node(pk: int) -> Node:
    return Node(pk, f"org/m{pk}", stats=WeightStats(layers=4))


def _kept(own: int, other: int, rows: list[tuple[int, int, float]]) -> tuple:
    return ((own, tuple(rows)), (other, tuple((j, i, c) for i, j, c in rows)))


def _family() -> dict[frozenset, Pair]:
    """base -> chat -> tests; soup = a weight average of chat and tests; franken = blocks 0-1 of chat on
    blocks 2-3 of an unrelated model.  Block maps keep only the blocks that moved least, as the
    relative bar of ``structure.layer_map`` does when training moved blocks unevenly: chat's blocks
    0-1 are mapped only to the frankenmerge (which kept them as they are), its blocks 2-3 to the soup."""
    return {
        frozenset((BASE, CHAT)): Pair(0.012, True, log10_p=-200.0, raw_distance=0.012),
        frozenset((CHAT, TESTS)): Pair(
            0.012, True, log10_p=-200.0, raw_distance=0.012, block_map=_kept(CHAT, TESTS, [(3, 3, 0.95)])
        ),
        frozenset((CHAT, SOUP)): Pair(
            0.003, True, log10_p=-300.0, raw_distance=0.003, block_map=_kept(CHAT, SOUP, [(2, 2, 0.99), (3, 3, 0.99)])
        ),
        frozenset((CHAT, FRANKEN)): Pair(
            0.3, False, log10_p=-80.0, block_map=_kept(CHAT, FRANKEN, [(0, 0, 0.995), (1, 1, 0.995)])
        ),
        # the soup and the frankenmerge hold copies of chat's block 0 both: the map keeps one of them
        frozenset((SOUP, FRANKEN)): Pair(0.3, False, log10_p=-70.0, block_map=_kept(SOUP, FRANKEN, [(0, 0, 0.985)])),
        frozenset((OTHER, FRANKEN)): Pair(
            0.3, False, log10_p=-80.0, block_map=_kept(OTHER, FRANKEN, [(2, 2, 0.995), (3, 3, 0.995)])
        ),
    }


def test_a_model_is_no_passthrough_merge_of_two_descendants_that_hold_its_blocks():
    pairs = _family()
    depths = {pk: 4 for pk in (BASE, CHAT, TESTS, SOUP, FRANKEN, OTHER)}
    # chat's blocks are "explained" half by the frankenmerge, half by the soup; the two share a kept
    # block (both took it from chat): one lineage, so chat is not their merge
    assert passthrough_parents(_node(CHAT), pairs, depths) is None
    # the frankenmerge itself: blocks from chat and from a model of another lineage (no block shared)
    assert passthrough_parents(_node(FRANKEN), pairs, depths) == [CHAT, OTHER]


def test_parents_that_share_fewer_than_half_of_their_blocks_are_still_one_lineage():
    pairs = _family()
    depths = {pk: 4 for pk in (BASE, CHAT, TESTS, SOUP, FRANKEN, OTHER)}
    # one shared block of four is under the former bar ("most of their blocks")
    assert 2 * len(pairs[frozenset((SOUP, FRANKEN))].blocks_of(FRANKEN)) < depths[FRANKEN]
    assert passthrough_parents(_node(CHAT), pairs, depths) is None
    # without the shared block the soup and the frankenmerge look like two lineages, and chat like their merge
    del pairs[frozenset((SOUP, FRANKEN))]
    assert passthrough_parents(_node(CHAT), pairs, depths) == [SOUP, FRANKEN]
