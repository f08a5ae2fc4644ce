"""A card that names a base the index has not seen (mode ``full``; pure).

On the Hub the base of a family is often not indexed - gated, deleted, or not crawled yet - while
its fine-tunes, prunes and adapters are.  The weights alone then cannot tell a model's sibling from
its parent: two children of the missing base each moved away from it, and the one that moved less
looks like the other's parent (``bench/gated_base.py`` measures it).  Their cards often say more:
``base_model: X`` with X not indexed.

Such a card contradicts a placement under an indexed model p (p is not X).  The card decides when
the weights do not: when p is not clearly the child's nearest candidate - nearer than
(1 − ``DECLARED_DISCOUNT``) × the next candidate that time allows, the same 25 % within which a
card decides between two indexed candidates (``indexer.lineage.assemble``).  The edge p -> child
is then reported undirected (relation ``sibling``, evidence ``declared_base``: related through a
model that is not indexed, neither shown to derive from the other) - never a parent claim against
the card.  A clear placement stands, whatever the card says: a card that names a far ancestor
(``base_model`` of a fine-tune of a fine-tune, a common mistake) does not pull a model away from its
indexed parent.  Copies, merges and members of a latent group (placed by the family geometry)
keep their edges.
"""

from __future__ import annotations

from collections.abc import Callable

from pedigree.indexer.lineage.signals import Node

DECLARED_DISCOUNT = 0.25  # mode full: a declared base_model's distance counts 25 % less


def declared_elsewhere(
    parents: dict[int, list[int]],
    nodes: dict[int, Node],
    distances: dict[frozenset, float],
    candidates: set[int],
    allowed: Callable[[int, int], bool],
    fixed: set[int] | None = None,
) -> dict[tuple[int, int], tuple[str, ...]]:
    """(parent, child) -> the unindexed bases the child's card declares, for every single-parent
    edge between ``candidates`` (the family's originals: no copies) that the card contradicts and
    the weights do not settle (module docstring); children in ``fixed`` (a latent group's members)
    keep their edges.  ``distances``: placement distances by pair; ``allowed(q, c)``: q may be c's
    parent (time, tested relatedness).  Each child looks at the pairs it has evidence for only (a
    family's candidate pairs are sparse), so a family costs O(pairs · ancestors)."""
    neighbours: dict[int, list[tuple[int, float]]] = {}
    for key, distance in distances.items():
        if len(key) == 2:
            a, b = tuple(key)
            neighbours.setdefault(a, []).append((b, distance))
            neighbours.setdefault(b, []).append((a, distance))

    def descends_from(model: int, ancestor: int) -> bool:
        """``ancestor`` is above ``model`` in the placed graph (every parent, merges included)."""
        seen, todo = set(), list(parents.get(model, ()))
        while todo:
            up = todo.pop()
            if up == ancestor:
                return True
            if up not in seen:
                seen.add(up)
                todo.extend(parents.get(up, ()))
        return False

    out: dict[tuple[int, int], tuple[str, ...]] = {}
    for child, placed in sorted(parents.items()):
        if child not in candidates or child in (fixed or set()) or len(placed) != 1 or placed[0] not in candidates:
            continue
        parent, node = placed[0], nodes[child]
        if not node.unindexed_bases or len(node.unindexed_bases) != len(node.declared):
            continue  # no card, or a card that names an indexed base (the declared discount's case)
        placed_distance = distances.get(frozenset((parent, child)))
        others = [
            distance
            for other, distance in neighbours.get(child, ())
            if other != parent and other in candidates and allowed(other, child) and not descends_from(other, child)
        ]
        if placed_distance is None or not others:
            continue
        if placed_distance > (1.0 - DECLARED_DISCOUNT) * min(others):
            out[(parent, child)] = node.unindexed_bases
    return out
