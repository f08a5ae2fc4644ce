"""Assemble one family into a directed graph (pure: nodes + evidence in, edges out).

1. **Copies** - models that compute the same function as another (``signals.copy_kind``) - are
   grouped (every pair of a group must be a copy: no chaining through near-copies) and stand in
   for each other; each group is represented by the member living in the family's shared
   coordinates, then the oldest, then the one the structure names the original.
2. **Placement.**  The originals are joined by a minimum spanning arborescence (MoTHer's recipe,
   Horwitz et al.) on fused costs

       cost(u -> v) = d(u, v) + λ · mean(d) · 2 · (2σ(A(u -> v)) − 1),    λ = 0.3 (MoTHer's value)

   where d is the fingerprint distance, or for pairs that share coordinates the exact raw-weight
   distance rescaled to the fingerprint scale (median ratio over the family's pairs), and
   A(u -> v) sums the weight of the direction signals (``indexer.lineage.signals``) that say
   v -> u.  Evidence *for* u -> v lowers no cost (MoTHer's 1 − P did): graded signals accumulate
   along a chain, and rewarding them drew a grandchild past its parent to a far ancestor.  Time is a constraint:
   no edge runs from a newer to an older model - a model every candidate parent of which is newer
   is a root of its own (its parent is not indexed), at a cost below any such edge.  A model that shares
   coordinates with relatives is not placed under a model in other coordinates (that would take a
   transform *and* training) - such an edge costs the full direction penalty.  A pair the
   independence tests ran on and did not confirm related is no placement candidate: the graph
   never names as parent a model the tests could not relate to the child (``indexer.lineage.build``
   tests every edge placed on an untested pair, and places its family again if one fails).
3. **Orientation and refinement** (``indexer.lineage.geometry``): the tree is re-rooted where
   the signals and the family's update geometry agree best; a model hung under a sibling is moved
   up; the tree is re-rooted again.  An edge whose orientation no signal or geometry decides is
   reported *undirected*: ``sibling`` (related, neither shown to derive from the other - e.g.
   two fine-tunes of an ancestor that is not indexed, or two models of different depth that the
   layer map does not derive from each other, ``unexplained_depth``) or, for copies, the copy
   relation with ``directed: false``.
4. **Merges**: a model fitted as a weight average of two relatives (residual ratio < 0.25,
   0.15 < α < 0.85) is placed after the rest (``indexer.lineage.averages``: it lies between its
   parents, so it must not take the models between them as children) and gets both as parents: the
   family becomes a DAG.  Passthrough merges, and the
   models derived from them, are placed apart (``indexer.lineage.passthrough``).

In mode ``full`` a declared base model's distance also counts 25 % less: the card can decide
between candidates the weights place within 25 % of each other, not overrule a clear placement.
Each edge carries a relation, the direction probability as confidence, the pair's log10 p and the
evidence that decided it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import networkx as nx

from pedigree.indexer.lineage.arborescence import components, minimum_spanning_arborescence
from pedigree.indexer.lineage.averages import attach_averages, merge_fits, placed_last
from pedigree.indexer.lineage.declared import DECLARED_DISCOUNT, declared_elsewhere
from pedigree.indexer.lineage.geometry import MARGIN, Geometry, latent_groups, orient, siblings_not_children
from pedigree.indexer.lineage.passthrough import explained_blocks, set_aside
from pedigree.indexer.lineage.signals import (
    ADAPTER_GAP,
    WEIGHTS,
    Direction,
    Node,
    Pair,
    copy_kind,
    direction,
    low_rank_step,
    relation,
    trained_step,
)
from pedigree.types import Edge

__all__ = ["ASSEMBLY_VERSION", "LAMBDA", "MODES", "WEIGHTS", "Node", "Pair", "assemble"]

ASSEMBLY_VERSION = "mother-fused-22"  # bump when the assembly changes (families are rebuilt)
LAMBDA = 0.3
FORBIDDEN = 1e3  # cost added to an edge that time forbids; another root costs FORBIDDEN / 2
MODES = ("weights", "time", "full")


def placement_distances(pairs: dict[frozenset, Pair], nodes: dict[int, Node]) -> dict[frozenset, float]:
    """Per pair, the distance the arborescence uses (see the module docstring).  The raw distance
    measures the step on matched blocks only: for models of different depth the fingerprint
    distance, which counts every unmatched block, is a floor."""
    ratios = sorted(p.distance / p.raw_distance for p in pairs.values() if p.same_coordinates and p.raw_distance)
    scale = ratios[len(ratios) // 2] if ratios else 1.0
    out = {}
    for key, p in pairs.items():
        if low_rank_step(p) and p.raw_distance is not None and p.delta_rank_gap is not None:
            # one merged adapter apart: a single derivation step however large the update, the more
            # exactly low-rank the shorter (an exact adapter 0, one at the gap bar a plain step)
            out[key] = scale * p.raw_distance * p.delta_rank_gap / ADAPTER_GAP
        elif p.same_coordinates and p.raw_distance is not None:
            depths = {nodes[pk].stats.layers for pk in key}
            out[key] = scale * p.raw_distance if len(depths) == 1 else max(scale * p.raw_distance, p.distance)
        else:
            out[key] = p.distance
    return out


def copy_groups(
    nodes: dict[int, Node], pairs: dict[frozenset, Pair], peers: dict[int, int], mode: str
) -> dict[int, int]:
    """node -> representative.  Groups grow from the closest copy pairs, joining two groups only
    when every cross pair is itself a copy (a clique)."""
    group = {pk: frozenset([pk]) for pk in nodes}
    copies = sorted(
        (p.whole_block_distance if p.whole_block_distance is not None else p.distance, sorted(k))
        for k, p in pairs.items()
        if len(k) == 2 and copy_kind(nodes[min(k)], nodes[max(k)], p)
    )
    for _, (a, b) in copies:
        ga, gb = group[a], group[b]
        if ga == gb:
            continue
        if all(
            (q := pairs.get(frozenset((x, y)))) is not None and copy_kind(nodes[x], nodes[y], q) for x in ga for y in gb
        ):
            merged = ga | gb
            for pk in merged:
                group[pk] = merged

    def originality(pk: int, members: frozenset) -> tuple:
        dated = nodes[pk].created_at if mode in ("time", "full") and nodes[pk].created_at else None
        wins = sum(
            direction(nodes[pk], nodes[o], pairs[frozenset((pk, o))], "weights", peers).decisive > 0
            for o in members
            if o != pk
        )
        return (-peers.get(pk, 0), dated is None, dated.timestamp() if dated else 0.0, -wins, pk)

    return {pk: min(members, key=lambda m: originality(m, members)) for pk, members in group.items()}


def _costs(
    nodes: dict[int, Node],
    pairs: dict[frozenset, Pair],
    representative: dict[int, int],
    decided: dict[tuple[int, int], Direction],
    peers: dict[int, int],
    mode: str,
    distances: dict[frozenset, float],
) -> dict[tuple[int, int], float]:
    """(parent, child) -> placement cost between originals (module docstring); ``distances``: the
    group's :func:`placement_distances`."""
    mean_distance = max(sum(distances.values()) / max(len(distances), 1), 1e-6)
    best: dict[tuple[int, int], float] = {}
    for key, pair in sorted(pairs.items(), key=lambda kv: sorted(kv[0])):
        if pair.unrelated:
            continue  # no parent edge where the independence tests did not confirm the pair related
        u, v = sorted(key)
        ru, rv = representative[u], representative[v]
        direct = (ru, rv) in ((u, v), (v, u))
        if ru == rv or (not direct and frozenset((ru, rv)) in pairs):
            continue  # a copy lends its (canonical) distance only where the originals have no evidence
        for parent, child in ((ru, rv), (rv, ru)):
            if direct:
                d = decided[(parent, child)]
                distance = distances[key]
            else:
                d = direction(nodes[parent], nodes[child], Pair(pair.distance), mode, peers)
                distance = pair.distance
            foreign = pair.same_coordinates is False and peers.get(child, 0) > 0 and direct
            if mode == "full" and nodes[parent].id in nodes[child].declared:
                distance *= 1.0 - DECLARED_DISCOUNT
            cost = distance + LAMBDA * mean_distance * 2.0 * (d.placement_penalty() + (1.0 if foreign else 0.0))
            cost += FORBIDDEN if d.forbidden else 0.0
            best[(parent, child)] = min(cost + 1e-9 * parent, best.get((parent, child), math.inf))
    return best


def _place(
    nodes: dict[int, Node],
    pairs: dict[frozenset, Pair],
    originals: list[int],
    costs: dict[tuple[int, int], float],
    decided: dict[tuple[int, int], Direction],
    geometry: Geometry | None,
) -> tuple[nx.DiGraph, dict[tuple[int, int], float], dict[int, tuple[int, tuple[int, ...]]]]:
    """The originals' tree, each edge's orientation margin (nats) and the children that descend
    from their placed parent through an unindexed model (``geometry.latent_groups``)."""
    inside = set(originals)
    costs = {k: c for k, c in costs.items() if k[0] in inside and k[1] in inside}
    tree = nx.DiGraph(minimum_spanning_arborescence(originals, costs, root_cost=FORBIDDEN / 2))
    tree.add_nodes_from(originals)

    def edge_logp(parent: int, child: int) -> float:
        d = decided.get((parent, child))
        return 0.0 if d is None else d.orientation_logp()

    def trained(u: int, w: int) -> bool:
        pair = pairs.get(frozenset((u, w)))
        return pair is not None and trained_step(nodes[u], nodes[w], pair)

    def allowed(parent: int, child: int) -> bool:
        return (parent, child) in costs and not decided[(parent, child)].forbidden

    def orient_each(forest: nx.DiGraph) -> tuple[nx.DiGraph, dict[tuple[int, int], float]]:
        out, margins = nx.DiGraph(), {}
        for part in nx.weakly_connected_components(forest):
            oriented, found = orient(forest.subgraph(part).copy(), edge_logp, trained, geometry)
            out.update(oriented)
            margins.update(found)
        return out, margins

    tree, margins = orient_each(tree)
    latent: dict[int, tuple[int, tuple[int, ...]]] = {}
    if geometry is not None and len(originals) > 2:
        tree = siblings_not_children(tree, allowed, geometry, trained)
        tree, margins = orient_each(tree)
        tree, latent = latent_groups(tree, trained, geometry)
    return tree, margins, latent


@dataclass
class _Placed:
    """What assembling (part of) a family decided, per node and per edge."""

    parents: dict[int, list[int]] = field(default_factory=dict)
    margins: dict[tuple[int, int], float] = field(default_factory=dict)
    representative: dict[int, int] = field(default_factory=dict)
    decided: dict[tuple[int, int], Direction] = field(default_factory=dict)
    merged: dict[int, tuple[int, int, float, float]] = field(default_factory=dict)
    passthrough: dict[int, list[int]] = field(default_factory=dict)
    roots: list[int] = field(default_factory=list)
    latent: dict[int, tuple[int, tuple[int, ...]]] = field(default_factory=dict)
    below: dict[int, int] = field(default_factory=dict)  # placed below a passthrough merge
    declared_base: dict[tuple[int, int], tuple[str, ...]] = field(default_factory=dict)  # lineage.declared


def _related_groups(members: list[int], pairs: dict[frozenset, Pair]) -> list[list[int]]:
    """Components of the confirmed-related pairs among ``members`` (all pairs when none carries a
    test result, as in hand-made families)."""
    inside = [k for k in pairs if len(k) == 2 and k <= set(members)]
    tested = [k for k in inside if pairs[k].log10_p is not None]
    return components(members, [tuple(k) for k in (tested or inside)])


def _assemble_group(
    nodes: dict[int, Node], pairs: dict[frozenset, Pair], merges: dict[int, list], mode: str, geometry, placed: _Placed
) -> None:
    """Place one group of related models (copies, arborescence, orientation, weight averages)."""
    if len(nodes) == 1:
        only = next(iter(nodes))
        placed.representative[only] = only
        placed.roots.append(only)
        return
    peers: dict[int, int] = {pk: 0 for pk in nodes}
    for key, pair in pairs.items():
        if pair.same_coordinates:
            for pk in key:
                peers[pk] += 1
    merged = merge_fits(nodes, merges, mode)
    merge_parents = {child: (f[0], f[1]) for child, f in merged.items()}
    decided: dict[tuple[int, int], Direction] = {}
    for key, pair in pairs.items():
        u, v = sorted(key)
        for parent, child in ((u, v), (v, u)):
            decided[(parent, child)] = direction(nodes[parent], nodes[child], pair, mode, peers, merge_parents)
    representative = copy_groups(nodes, pairs, peers, mode)
    originals = sorted(set(representative.values()))
    distances = placement_distances(pairs, nodes)
    costs = _costs(nodes, pairs, representative, decided, peers, mode, distances)
    last = placed_last(merged, originals)
    placed_first = [pk for pk in originals if pk not in last]
    tree, margins, latent = _place(nodes, pairs, placed_first, costs, decided, geometry)
    if last:
        now = {c: costs.get((p, c), -math.inf) for p, c in tree.edges()}  # no cost known: stays
        now |= {pk: FORBIDDEN / 2 for pk in placed_first if tree.in_degree(pk) == 0}
        tree = attach_averages(tree, last, merged, costs, now, set(latent))
    parents: dict[int, list[int]] = {child: sorted(tree.predecessors(child)) for child in tree if tree.in_degree(child)}
    for pk, rep in representative.items():
        if pk != rep:
            parents[pk] = [rep]
    first_parents = nx.DiGraph([(ps[0], c) for c, ps in parents.items()])
    first_parents.add_nodes_from(nodes)
    for child, fit in list(merged.items()):
        descendants = nx.descendants(first_parents, child)
        if representative[child] == child and fit[0] not in descendants and fit[1] not in descendants:
            parents[child] = [fit[0], fit[1]]
        else:
            del merged[child]
    placed.parents.update(parents)
    placed.margins.update(margins)
    placed.representative.update(representative)
    placed.decided.update(decided)
    placed.merged.update(merged)
    placed.latent.update({c: found for c, found in latent.items() if c not in merged})
    placed.roots.append(next(pk for pk in originals if pk not in parents))
    if mode == "full":
        placed.declared_base.update(
            declared_elsewhere(
                parents,
                nodes,
                distances,
                set(originals),
                lambda q, c: (q, c) in costs and not decided[(q, c)].forbidden,
                set(latent) | set(merged),
            )
        )


def assemble(
    nodes: dict[int, Node],
    pairs: dict[frozenset, Pair],
    merges: dict[int, list],
    mode: str = "full",
    geometry: Geometry | None = None,
) -> tuple[int, list[Edge]]:
    """(root, edges) of one family (module docstring).  Passthrough merges (``passthrough``) are
    set aside, the rest is placed group by group of related models, and each passthrough merge
    gets the parents it took its blocks from; the root returned is that of the largest group."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}")
    if len(nodes) == 1:
        return next(iter(nodes)), []
    passthrough, below = set_aside(nodes, pairs, mode, placement_distances(pairs, nodes))
    core = sorted(pk for pk in nodes if pk not in passthrough and pk not in below)
    placed = _Placed(passthrough=passthrough, below=below)
    groups = sorted(_related_groups(core, pairs) if passthrough else [core], key=len, reverse=True)
    for group in groups:
        members = set(group)
        _assemble_group(
            {pk: nodes[pk] for pk in group},
            {k: p for k, p in pairs.items() if k <= members},
            merges,
            mode,
            geometry,
            placed,
        )
    for child, parents in [*passthrough.items(), *((c, [p]) for c, p in below.items())]:
        placed.parents[child] = parents
        placed.representative[child] = child
        for parent in parents:
            pair = pairs.get(frozenset((parent, child)), Pair(distance=math.nan))
            placed.decided[(parent, child)] = direction(nodes[parent], nodes[child], pair, mode, {})
    edges = [
        _edge(nodes, pairs, placed, parent, child) for child, ps in sorted(placed.parents.items()) for parent in ps
    ]
    return placed.roots[0], edges


def unexplained_depth(u: Node, v: Node, pair: Pair) -> bool:
    """u and v differ in depth and the localized layer map names no derivation between them.

    Training never changes a model's depth: a child with more or fewer blocks than its parent was
    built by dropping or duplicating blocks, which the layer map shows as an injective or a
    many-to-one map.  Without it the pair is related through a common ancestor (e.g. two students
    initialised from different layers of one teacher that is not indexed) - a sibling link, never
    a parent edge, even when time orders the two.
    """
    depths = u.stats.layers, v.stats.layers
    return bool(depths[0] and depths[1] and depths[0] != depths[1] and pair.layer_child is None)


def _edge(nodes: dict[int, Node], pairs: dict[frozenset, Pair], placed: _Placed, parent: int, child: int) -> Edge:
    pair = pairs.get(frozenset((parent, child)), Pair(distance=math.nan))
    d = placed.decided.get((parent, child), Direction(0.5, 0.0, False, {}))
    merged, margins = placed.merged, placed.margins
    is_copy = placed.representative[child] != child or (
        child in placed.below and copy_kind(nodes[parent], nodes[child], pair) is not None
    )
    is_merge = child in merged or child in placed.passthrough
    kind = "merge" if is_merge else relation(nodes[parent], nodes[child], pair)
    if is_copy:
        directed = abs(d.decisive) + abs(d.declared) > 0 or (d.signals.get("time") or 0) != 0
    elif not is_merge and unexplained_depth(nodes[parent], nodes[child], pair):
        directed = False  # neither is shown to derive from the other, whatever time says
    else:
        directed = is_merge or margins.get((parent, child), math.inf) >= MARGIN
    declared_base = placed.declared_base.get((parent, child)) if not (is_copy or is_merge) else None
    if declared_base:
        directed = False  # the card names a base that is not indexed and the weights do not settle it
    if not directed and not is_copy:
        kind = "sibling"
    detail: dict[str, Any] = {
        "distance": round(pair.distance, 6),
        "raw_distance": pair.raw_distance,
        "same_coordinates": pair.same_coordinates,
        "direction_probability": round(d.probability, 4),
        "directed": directed,
        "signals": d.signals,
    }
    if (parent, child) in margins:
        detail["orientation_margin"] = round(min(margins[(parent, child)], 1e6), 3)
    if child in merged:
        detail["merge"] = {"alpha": round(merged[child][2], 4), "residual_ratio": round(merged[child][3], 4)}
    if child in placed.passthrough:
        detail["passthrough"] = {"blocks": sorted(explained_blocks(child, pairs).get(parent, {}))}
    if is_copy:
        detail["copy_of"] = nodes[parent].id
    if declared_base:
        detail["declared_base"] = list(declared_base)
    latent = placed.latent.get(child)
    if latent is not None and latent[0] == parent and directed and not is_copy and not is_merge:
        detail["latent_ancestor"] = [nodes[pk].id for pk in latent[1]]  # parent -> (unindexed) -> these
    margin = margins.get((parent, child))
    confidence = d.probability if margin is None else 1.0 / (1.0 + math.exp(-min(margin, 50.0)))
    return Edge(parent, child, kind, round(confidence, 4), pair.log10_p, detail)
