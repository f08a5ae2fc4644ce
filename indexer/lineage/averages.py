"""Weight-average merges in a family: which fits count, and placing the merged models last (pure).

A model c fitted as c ≈ u + α (v − u) from two relatives u, v in the same coordinates (residual
ratio below ``MERGE_RESIDUAL``, α inside ``MERGE_ALPHA``; ``indexer.lineage.evidence.merge_fit``)
is a weight average of the two, and gets both as parents.

**Why the averages are placed last.**  An average lies *between* its parents: for every model w on
the path of fine-tunes from u to v (u → w → … → v, each step a fresh update) the average is closer
to w than u or v is - with u → w a step A and w → v a step B (|A| ≈ |B|, A ⊥ B) and α = 1/2,
|c − w| = |B − A| / 2 ≈ 0.71 |A| < |A| = |u − w|.  A spanning tree over distances therefore hangs w
under the average, and the chain the average was made *from* is cut apart (w's child then hangs
on u, past its parent).  That cannot be so: the average was made from v, v descends from w, so w
cannot descend from the average - a cycle.  So the averages are set aside, the rest of the family
is placed without them, each average is given its two fitted parents, and only then may a placed
model move under an average: when it hangs where the average itself would (on the average's nearest
placed relative - placed without the average, a child of it lands there), that edge costs less than
its placement, and the model is not an ancestor of the average (which holds by construction for its
true children: a fine-tune of a merged model, a copy of one).  No threshold is involved beyond the
fit's own.  (A far model - e.g. a long continued pretraining, nearer an average than any other model
because its step correlates with every fine-tune's - hangs elsewhere and is not taken.)
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import networkx as nx

from pedigree.indexer.lineage.signals import Node, time_order

MERGE_RESIDUAL, MERGE_ALPHA = 0.25, (0.15, 0.85)

Fit = tuple[int, int, float, float]  # (u, v, α, residual ratio)


def merge_fits(nodes: dict[int, Node], merges: dict[int, list], mode: str = "weights") -> dict[int, Fit]:
    """child -> its best weight-average fit (a, b, α, residual ratio), where one is good enough.
    With time evidence (``time``/``full``) a fit naming a parent newer than the child is no fit:
    time is a constraint, a parent is never newer than its child."""
    best = {}
    for child, fits in merges.items():
        good = [
            f
            for f in fits
            if child in nodes
            and f[0] in nodes
            and f[1] in nodes
            and f[3] < MERGE_RESIDUAL
            and MERGE_ALPHA[0] < f[2] < MERGE_ALPHA[1]
            and not (mode in ("time", "full") and any(time_order(nodes[p], nodes[child]) < 0 for p in f[:2]))
        ]
        if good:
            best[child] = min(good, key=lambda f: f[3])
    return best


def placed_last(merged: Mapping[int, Fit], originals: list[int]) -> list[int]:
    """The averages to place after the rest, in an order where each one's fitted parents are
    placed before it (an average of averages comes after both).  An average that is not an
    original (a copy stands in for it) or whose parents are not originals stays in the tree, as
    do averages whose fits form a cycle."""
    members = set(originals)
    candidates = {m: fit for m, fit in merged.items() if m in members and fit[0] in members and fit[1] in members}
    order: list[int] = []
    done: set[int] = set()
    progress = True
    while progress:
        progress = False
        for m in sorted(candidates):
            if m in done:
                continue
            if all(p not in candidates or p in done for p in candidates[m][:2]):
                order.append(m)
                done.add(m)
                progress = True
    return order


def attach_averages(
    tree: nx.DiGraph,
    order: list[int],
    merged: Mapping[int, Fit],
    costs: Mapping[tuple[int, int], float],
    placement_cost: Mapping[int, float],
    keep: set[int],
) -> nx.DiGraph:
    """``tree`` (placed without the averages) with each average under its two fitted parents, then
    every placed model that hangs where an average would and that the average explains better moved
    under it (module docstring).

    ``placement_cost``: each placed model's cost where it hangs now (a root's: its root cost);
    ``keep``: models not to move (a latent group's members, placed as such)."""
    graph = tree.copy()
    for m in order:
        graph.add_edge(merged[m][0], m)
        graph.add_edge(merged[m][1], m)
    averages = set(order)
    placed = [n for n in tree if n not in averages]
    anchor = {m: min(placed, key=lambda x: (costs.get((x, m), math.inf), x)) for m in order}
    for w in sorted(n for n in tree if n not in averages and n not in keep):
        best, best_cost = None, placement_cost.get(w)
        for m in order:
            if set(tree.predecessors(w)) != {anchor[m]}:
                continue  # w hangs elsewhere than the average itself would: not its child
            cost = costs.get((m, w))
            if cost is None or (best_cost is not None and cost >= best_cost):
                continue
            if w in nx.ancestors(graph, m) or w == m:
                continue  # the average was made from w's descendants: w cannot descend from it
            best, best_cost = m, cost
        if best is not None:
            graph.remove_edges_from([(p, w) for p in list(graph.predecessors(w))])
            graph.add_edge(best, w)
    return graph
