"""Graph algorithms of the lineage stage: connected components (union-find) and the minimum
spanning arborescence (Chu-Liu / Edmonds), fast enough for a million-model Hub.

networkx's ``minimum_spanning_arborescence`` copies the whole multigraph at every cycle
contraction; on a 500-member family that is seconds, and a Hub-scale build has thousands of such
families.  This is the textbook recursive algorithm on numpy edge arrays:

1. every node except the root takes its cheapest incoming edge;
2. if those edges form no cycle they are the answer;
3. else every cycle C is contracted to one node: an edge (u -> v ∈ C) enters it at cost
   c(u, v) − c(best_in(v)), edges leaving C keep their cost; solve the contracted graph and
   expand - the edge chosen into C replaces the cycle edge into its head.

The root is free (any node may be it): a virtual root joins every node at a cost larger than any
spanning tree, so exactly one of its edges is used and its target is the cheapest root.
Worst case O(V·E); each level is a few vectorised passes over the edges.  The tests check it
against networkx on random graphs (same total cost).
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import TypeVar

import numpy as np

N = TypeVar("N", bound=Hashable)
Edges = Mapping[tuple[N, N], float]  # (parent, child) -> cost


def _cheapest_incoming(n: int, src: np.ndarray, dst: np.ndarray, cost: np.ndarray, root: int) -> np.ndarray:
    """best[v] = index of v's cheapest incoming edge (-1 for the root); ties: lowest index."""
    candidates = np.flatnonzero((dst != root) & (src != dst))
    order = candidates[np.lexsort((candidates, cost[candidates], dst[candidates]))]
    heads, first = np.unique(dst[order], return_index=True)
    best = np.full(n, -1, dtype=np.int64)
    best[heads] = order[first]
    if (best < 0).sum() > 1:
        missing = [v for v in np.flatnonzero(best < 0) if v != root]
        raise ValueError(f"no spanning arborescence: nodes {missing[:3]} cannot be reached")
    return best


def _find_cycles(parent: list[int], root: int) -> list[list[int]]:
    """Every cycle of the cheapest-incoming graph (one parent per node: cycles are disjoint)."""
    state = [-1] * len(parent)
    cycles = []
    for start in range(len(parent)):
        path, node = [], start
        while node != root and state[node] < 0:
            state[node] = start
            path.append(node)
            node = parent[node]
        if node != root and state[node] == start:
            cycles.append(path[path.index(node) :])
    return cycles


def _arborescence(n: int, src: np.ndarray, dst: np.ndarray, cost: np.ndarray, root: int) -> np.ndarray:
    """chosen[v] = index of the edge into v (-1 for the root) of a minimum arborescence."""
    best = _cheapest_incoming(n, src, dst, cost, root)
    parent = np.where(best >= 0, src[np.maximum(best, 0)], root).tolist()
    cycles = _find_cycles(parent, root)
    if not cycles:
        return best
    in_cycle = np.zeros(n, dtype=bool)
    for cycle in cycles:
        in_cycle[cycle] = True
    label = np.full(n, -1, dtype=np.int64)  # node -> node of the contracted graph
    outer = np.flatnonzero(~in_cycle)
    label[outer] = np.arange(len(outer))
    for index, cycle in enumerate(cycles):
        label[cycle] = len(outer) + index
    new_src, new_dst = label[src], label[dst]
    keep = np.flatnonzero(new_src != new_dst)
    entering = in_cycle[dst[keep]]
    new_cost = cost[keep] - np.where(entering, cost[best[np.where(entering, dst[keep], root)]], 0.0)
    solved = _arborescence(len(outer) + len(cycles), new_src[keep], new_dst[keep], new_cost, int(label[root]))
    chosen = np.full(n, -1, dtype=np.int64)
    edges = keep[solved[solved >= 0]]
    chosen[dst[edges]] = edges
    for cycle in cycles:
        for v in cycle:
            if chosen[v] < 0:
                chosen[v] = best[v]
    return chosen


def minimum_spanning_arborescence(
    nodes: Sequence[N], edges: Edges[N], root_cost: float | None = None
) -> list[tuple[N, N]]:
    """The (parent, child) edges of a minimum-cost spanning arborescence with a free root.

    ``edges`` maps (parent, child) to a cost.  Raises ValueError when no node reaches all others.
    With ``root_cost``, a minimum spanning *forest*: besides the free first root, any node may be
    another root at that cost (taken only where every edge into its subtree costs more).
    """
    n = len(nodes)
    if n <= 1:
        return []
    if n == 2 and root_cost is None:  # the commonest family: one edge, the cheaper direction
        u, v = nodes
        present = [k for k in ((u, v), (v, u)) if k in edges]
        if not present:
            raise ValueError("no spanning arborescence: the two nodes are not joined")
        return [min(present, key=lambda k: (edges[k], present.index(k)))]
    index = {node: i for i, node in enumerate(nodes)}
    keys = list(edges)
    root = n  # the virtual root
    src = np.fromiter((index[u] for u, _ in keys), dtype=np.int64, count=len(keys))
    dst = np.fromiter((index[v] for _, v in keys), dtype=np.int64, count=len(keys))
    cost = np.fromiter((edges[k] for k in keys), dtype=np.float64, count=len(keys))
    big = 1.0 + 2.0 * float(np.abs(cost).sum())
    src = np.concatenate([src, np.full(n, root)])
    dst = np.concatenate([dst, np.arange(n)])
    cost = np.concatenate([cost, np.full(n, big if root_cost is None else root_cost)])
    chosen = _arborescence(n + 1, src, dst, cost, root)
    picked = chosen[:n]
    if root_cost is None and (src[picked] == root).sum() != 1:
        raise ValueError("no spanning arborescence: the graph has no node that reaches all others")
    return [keys[e] for e in sorted(picked) if src[e] != root]


def components(pks: list[int], links: list[tuple[int, int]]) -> list[list[int]]:
    """Connected components (union-find with path halving), each sorted, in order of first member."""
    parent = {pk: pk for pk in pks}

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b in links:
        if a in parent and b in parent:
            ra, rb = find(a), find(b)
            if ra != rb:
                parent[max(ra, rb)] = min(ra, rb)
    groups: dict[int, list[int]] = {}
    for pk in pks:
        groups.setdefault(find(pk), []).append(pk)
    return sorted((sorted(g) for g in groups.values()), key=lambda g: g[0])
