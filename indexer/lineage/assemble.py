"""Assemble one family into a directed graph (pure: nodes + evidence in, edges out).

The MoTHer recipe (Horwitz et al.) - a minimum spanning arborescence of the family's directed
graph, with a cost that adds a direction penalty to the distance - generalised to fused evidence:

    cost(u -> v) = d(u, v) + λ · mean(d) · 2 · (1 − P(u -> v)),    λ = 0.3 (MoTHer's value)
    P(u -> v)    = σ( Σ_k w_k s_k(u, v) )

The distance d is the fingerprint distance (1 − mean matched-block cosine over the *deeper*
model, so a layer-dropped model is not "close" to everything), except for pairs that share
coordinates, where the exact raw-weight distance is used, rescaled to the fingerprint scale by the
median ratio of the two on the family's own pairs (a sketched cosine is too noisy to order
fine-tunes a few per cent apart).  A model that shares its coordinates with relatives is not
placed under a model in other coordinates (that would take a transform *and* training): such an
edge costs the full direction penalty, unless it is a function-preserving copy.  The direction
signals s_k ∈ [−1, 1] are antisymmetric:

=============  =======  ====================================================================
signal         weight   u is the parent of v when ...
=============  =======  ====================================================================
time           6        u was created before v (modes ``time`` and ``full``)
declared       3        v's card names u as base_model (mode ``full``); a prior, not a fact
structure      4 each   v is quantized and u is not; v has fewer blocks, narrower MLPs or a
                        larger vocabulary; v is a function-preserving copy of u that folded
                        its norm gains, or that left the coordinates the rest of the family
                        shares (a permuted/rotated copy is a leaf)
kurtosis       0        recorded, not used: MoTHer's kurtosis regime.  The OV-spectrum kurtosis
                        dropped parent -> child on 18/20 changing zoo edges, but it needs whole
                        o/v matrices; the QK-circuit kurtosis of the fingerprint's sampled heads
                        rises on 13 and drops on 7 (``python -m bench.direction_regime``): no
                        regime, so no vote
norm_growth    2        tanh(ln(n_v / n_u) / 0.01): training grows the attention weights' norm
merge          4        v is fitted as a weight average of u and another relative
=============  =======  ====================================================================

The weights are fixed priors (strong for time and structure, weaker for cards and kurtosis), not
fitted to any benchmark.  In mode ``full`` a declared base model's distance also counts 25 % less: the card can decide
between candidates the weights place within 25 % of each other (two fine-tunes of one base on the
same data look like parent and child to the weights), not overrule a clear placement.
A model that the arborescence hung under a sibling is moved up when the geometry of the updates
says sibling, not child (``_siblings_not_children``: a child's own step is orthogonal to its
parent's, a sibling's update shares the family's typical sibling cosine).  After that, a model
fitted as a weight average of two
relatives (residual ratio < 0.25, 0.15 < α < 0.85) gets both as parents: the family becomes a
DAG.  Each edge gets a relation, the direction probability as confidence, the pair's combined
log10 p and the evidence that decided it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import networkx as nx

from pedigree.indexer.lineage.arborescence import components, minimum_spanning_arborescence
from pedigree.indexer.weight_stats import WeightStats
from pedigree.types import Edge

ASSEMBLY_VERSION = "mother-fused-7"  # bump when the assembly changes (families are rebuilt)
LAMBDA = 0.3
WEIGHTS = {"time": 6.0, "declared": 3.0, "structure": 4.0, "kurtosis": 0.0, "norm_growth": 2.0}
KURTOSIS_SCALE = 0.5
NORM_SCALE = 0.01  # a 1 % change of the attention norm is a clear signal
COPY_DISTANCE = 0.005  # function-preserving copies score >= 0.995 on blocks read whole (exactly invariant)
ADAPTER_GAP = 0.05  # a merged rank-r adapter: σ_{r+1}/σ_r of the difference below this
MERGE_RESIDUAL, MERGE_ALPHA = 0.25, (0.15, 0.85)
DECLARED_DISCOUNT = 0.25  # mode full: a declared base_model's distance counts 25 % less
MODES = ("weights", "time", "full")


@dataclass(frozen=True)
class Node:
    pk: int
    id: str
    created_at: datetime | None = None
    declared: tuple[str, ...] = ()
    stats: WeightStats = field(default_factory=WeightStats)


@dataclass(frozen=True)
class Pair:
    distance: float
    same_coordinates: bool | None = None
    delta_rank_gap: float | None = None
    log10_p: float | None = None
    raw_distance: float | None = None
    whole_block_distance: float | None = None  # blocks read whole (other coordinates only), 0 for a copy

    @property
    def is_copy(self) -> bool:
        """A function-preserving copy: other coordinates, yet the same canonical blocks - judged on
        blocks read whole when the evidence has them (the stored block vectors sample units and
        heads, which a permutation moves), else on the fingerprint distance."""
        close = self.whole_block_distance if self.whole_block_distance is not None else self.distance
        return self.same_coordinates is False and close < COPY_DISTANCE


def placement_distances(pairs: dict[frozenset, Pair]) -> dict[frozenset, float]:
    """Per pair, the distance the arborescence uses (see the module docstring)."""
    ratios = sorted(p.distance / p.raw_distance for p in pairs.values() if p.same_coordinates and p.raw_distance)
    scale = ratios[len(ratios) // 2] if ratios else 1.0
    return {
        k: (scale * p.raw_distance if p.same_coordinates and p.raw_distance is not None else p.distance)
        for k, p in pairs.items()
    }


def _structure(u: Node, v: Node, pair: Pair, coordinate_peers: dict[int, int]) -> dict[str, int]:
    """Structural signals (+1: u is the parent) with the name of each."""
    a, b = u.stats, v.stats
    signals: dict[str, int] = {}
    if a.quantized != b.quantized:
        signals["quantized"] = 1 if b.quantized else -1
    if a.layers and b.layers and a.layers != b.layers:
        signals["fewer_blocks"] = 1 if b.layers < a.layers else -1
    elif a.mlp_sizes and b.mlp_sizes and sum(a.mlp_sizes) != sum(b.mlp_sizes):
        signals["narrower_mlp"] = 1 if sum(b.mlp_sizes) < sum(a.mlp_sizes) else -1
    if a.vocab_rows and b.vocab_rows and a.vocab_rows != b.vocab_rows:
        signals["larger_vocabulary"] = 1 if b.vocab_rows > a.vocab_rows else -1
    if pair.is_copy:
        if a.gains_folded != b.gains_folded and None not in (a.gains_folded, b.gains_folded):
            signals["folded_gains"] = 1 if b.gains_folded else -1
        elif coordinate_peers.get(u.pk, 0) != coordinate_peers.get(v.pk, 0):
            signals["left_family_coordinates"] = (
                1 if coordinate_peers.get(u.pk, 0) > coordinate_peers.get(v.pk, 0) else -1
            )
    return signals


def direction(
    u: Node,
    v: Node,
    pair: Pair,
    mode: str,
    coordinate_peers: dict[int, int],
    merge_parents: dict[int, tuple[int, int]] | None = None,
) -> tuple[float, dict]:
    """P(u is the parent of v) and the signals behind it."""
    logit = 0.0
    evidence: dict[str, float] = {}
    merge_parents = merge_parents or {}
    if mode in ("time", "full") and u.created_at and v.created_at and u.created_at != v.created_at:
        evidence["time"] = 1 if u.created_at < v.created_at else -1
        logit += WEIGHTS["time"] * evidence["time"]
    if mode == "full" and (u.id in v.declared) != (v.id in u.declared):
        evidence["declared"] = 1 if u.id in v.declared else -1
        logit += WEIGHTS["declared"] * evidence["declared"]
    for name, sign in _structure(u, v, pair, coordinate_peers).items():
        evidence[name] = sign
        logit += WEIGHTS["structure"] * sign
    ku, kv = u.stats.qk_kurtosis, v.stats.qk_kurtosis
    if ku is not None and kv is not None and ku != kv:
        evidence["kurtosis_drop"] = round(ku - kv, 4)
        logit += WEIGHTS["kurtosis"] * math.tanh((ku - kv) / KURTOSIS_SCALE)
    nu, nv = u.stats.attention_norm, v.stats.attention_norm
    if nu and nv and nu != nv:
        evidence["norm_growth"] = round(math.log(nv / nu), 6)
        logit += WEIGHTS["norm_growth"] * math.tanh(math.log(nv / nu) / NORM_SCALE)
    for merge_child, other, sign in ((v, u, 1), (u, v, -1)):
        if other.pk in merge_parents.get(merge_child.pk, ()):
            evidence["merge"] = sign
            logit += WEIGHTS["structure"] * sign
    return 1.0 / (1.0 + math.exp(-logit)), evidence


def relation(u: Node, v: Node, pair: Pair) -> str:
    """The kind of step from parent u to child v."""
    a, b = u.stats, v.stats
    if b.quantized and not a.quantized:
        return "quantized"
    if (a.layers and b.layers < a.layers) or (a.mlp_sizes and b.mlp_sizes and sum(b.mlp_sizes) < sum(a.mlp_sizes)):
        return "pruned"
    if a.vocab_rows and b.vocab_rows > a.vocab_rows:
        return "vocab_extended"
    if pair.is_copy:
        return "rotated" if b.gains_folded and not a.gains_folded else "permuted"
    if pair.same_coordinates and pair.delta_rank_gap is not None and pair.delta_rank_gap < ADAPTER_GAP:
        return "adapter"
    return "finetune"


def merge_fits(nodes: dict[int, Node], merges: dict[int, list]) -> dict[int, tuple[int, int, float, float]]:
    """child -> its best weight-average fit (a, b, α, residual ratio), where one is good enough."""
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
        ]
        if good:
            best[child] = min(good, key=lambda f: f[3])
    return best


def copy_groups(
    nodes: dict[int, Node], pairs: dict[frozenset, Pair], peers: dict[int, int], mode: str
) -> dict[int, int]:
    """node -> representative, grouping function-preserving copies (canonical distance ~0, other
    coordinates).  The representative is the member living in the family's shared coordinates
    (most same-coordinate relatives), then the one the direction signals say is the original."""
    copies = [(a, b) for a, b in (tuple(key) for key, pair in pairs.items() if pair.is_copy)]
    representative = {}
    for members in components(list(nodes), copies):

        def originality(pk: int, members: list[int] = members) -> tuple:
            wins = sum(
                direction(nodes[pk], nodes[o], pairs.get(frozenset((pk, o)), Pair(0.0)), mode, peers)[0] > 0.5
                for o in members
                if o != pk
            )
            return (-peers.get(pk, 0), -wins, pk)

        best = min(members, key=originality)
        for pk in members:
            representative[pk] = best
    return representative


Geometry = Callable[[int, int, int], "tuple[float, float] | None"]  # (child, parent, grandparent) -> (fresh, shared)
SIBLING_COSINE_PRIOR = 0.35  # cos of two fine-tunes' updates from one base, measured on the zoo (0.35-0.41)


def sibling_cosine(tree: nx.DiGraph, geometry: Geometry) -> float:
    """The family's typical cosine between two children's updates, cos(c1 − g, c2 − g), over the
    siblings the arborescence placed (median); the zoo-measured prior when there are none."""
    values = []
    for g in tree:
        children = sorted(tree.successors(g))
        for c1, c2 in zip(children, children[1:]):
            cosines = geometry(c2, c1, g)
            if cosines is not None:
                values.append(cosines[1])
    return sorted(values)[len(values) // 2] if values else SIBLING_COSINE_PRIOR


def _siblings_not_children(tree: nx.DiGraph, best_edge: dict, geometry: Geometry) -> nx.DiGraph:
    """Move v from under u to under u's parent g when v looks like u's sibling, not its child.

    Two children of g whose updates are correlated (similar data, or one a long run that covers
    the other's direction) can be closer to each other than to g, and the arborescence then chains
    them.  A child's own update is a fresh step, nearly orthogonal to its parent's
    (fresh = cos(u − g, v − u) ≈ 0); a sibling shares with u the family's typical sibling cosine
    ρ (shared = cos(u − g, v − g) ≈ ρ).  v is moved up when |shared − ρ| < |fresh|, and keeps
    climbing while the same holds one level up (a fine-tune of the root hung under a grandchild
    climbs to the root).  Top-down.
    """
    rho = sibling_cosine(tree, geometry)
    tree = tree.copy()
    for u in list(nx.topological_sort(tree)):
        for v in list(tree.successors(u)):
            parent = u
            while True:
                grandparents = list(tree.predecessors(parent))
                if not grandparents or (grandparents[0], v) not in best_edge:
                    break
                g = grandparents[0]
                cosines = geometry(v, parent, g)
                if cosines is None or abs(cosines[1] - rho) >= abs(cosines[0]):
                    break
                tree.remove_edge(parent, v)
                tree.add_edge(g, v)
                parent = g
    return tree


def assemble(
    nodes: dict[int, Node],
    pairs: dict[frozenset, Pair],
    merges: dict[int, list],
    mode: str = "full",
    geometry: Geometry | None = None,
) -> tuple[int, list[Edge]]:
    """(root, edges) of one family: function-preserving copies are grouped under their original,
    the originals joined by a minimum spanning arborescence on fused costs (siblings taken for
    children are moved up when ``geometry`` can tell), then merge parents."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}")
    if len(nodes) == 1:
        return next(iter(nodes)), []
    peers: dict[int, int] = {pk: 0 for pk in nodes}
    for key, pair in pairs.items():
        if pair.same_coordinates:
            for pk in key:
                peers[pk] += 1
    merged = merge_fits(nodes, merges)
    merge_parents = {child: (f[0], f[1]) for child, f in merged.items()}
    representative = copy_groups(nodes, pairs, peers, mode)
    originals = sorted(set(representative.values()))
    distances = placement_distances(pairs)
    mean_distance = max(sum(distances.values()) / max(len(distances), 1), 1e-6)
    decided: dict[tuple[int, int], tuple[float, dict]] = {}
    best_edge: dict[tuple[int, int], float] = {}
    for key, pair in sorted(pairs.items(), key=lambda kv: sorted(kv[0])):
        u, v = sorted(key)
        for parent, child in ((u, v), (v, u)):
            decided[(parent, child)] = direction(nodes[parent], nodes[child], pair, mode, peers, merge_parents)
    direct_pairs = {
        frozenset((representative[a], representative[b]))
        for a, b in map(sorted, pairs)
        if frozenset((representative[a], representative[b])) == frozenset((a, b))
    }
    for key, pair in sorted(pairs.items(), key=lambda kv: sorted(kv[0])):
        u, v = sorted(key)
        ru, rv = sorted((representative[u], representative[v]))
        if ru == rv:
            continue
        # an edge between groups is judged on the originals; a copy lends its (canonical) distance
        # only where the originals themselves have no evidence
        direct = frozenset((ru, rv)) == key
        if not direct and frozenset((ru, rv)) in direct_pairs:
            continue
        rep_pair = pair if direct else Pair(pair.distance)
        for parent, child in ((ru, rv), (rv, ru)):
            p, _ = (
                decided[(parent, child)]
                if direct
                else direction(nodes[parent], nodes[child], rep_pair, mode, peers, merge_parents)
            )
            foreign = rep_pair.same_coordinates is False and peers.get(child, 0) > 0
            distance = distances[key] if direct else pair.distance
            if mode == "full" and nodes[parent].id in nodes[child].declared:
                distance *= 1.0 - DECLARED_DISCOUNT
            cost = distance + LAMBDA * mean_distance * 2.0 * ((1.0 - p) + (1.0 if foreign else 0.0))
            best_edge[(parent, child)] = min(cost, best_edge.get((parent, child), math.inf))
    costs = {(ru, rv): cost + 1e-9 * ru for (ru, rv), cost in best_edge.items()}  # deterministic ties
    tree = nx.DiGraph(minimum_spanning_arborescence(originals, costs))
    tree.add_nodes_from(originals)
    if geometry is not None and len(originals) > 2:
        tree = _siblings_not_children(tree, best_edge, geometry)
    parents: dict[int, list[int]] = {child: [parent] for parent, child in tree.edges()}
    for pk, rep in representative.items():
        if pk != rep:
            parents[pk] = [rep]
    full_tree = nx.DiGraph([(ps[0], c) for c, ps in parents.items()])
    full_tree.add_nodes_from(nodes)
    for child, fit in list(merged.items()):
        descendants = nx.descendants(full_tree, child)
        if representative[child] == child and fit[0] not in descendants and fit[1] not in descendants:
            parents[child] = [fit[0], fit[1]]
        else:
            del merged[child]
    root = next(pk for pk in originals if pk not in parents)
    edges = []
    for child, ps in sorted(parents.items()):
        for parent in ps:
            pair = pairs.get(frozenset((parent, child)), Pair(distance=math.nan))
            p, evidence = decided.get((parent, child), (0.5, {}))
            kind = "merge" if child in merged else relation(nodes[parent], nodes[child], pair)
            detail: dict[str, Any] = {
                "distance": round(pair.distance, 6),
                "raw_distance": pair.raw_distance,
                "same_coordinates": pair.same_coordinates,
                "direction_probability": round(p, 4),
                "signals": evidence,
            }
            if child in merged:
                detail["merge"] = {"alpha": round(merged[child][2], 4), "residual_ratio": round(merged[child][3], 4)}
            if representative[child] != child:
                detail["copy_of"] = nodes[parent].id
            edges.append(Edge(parent, child, kind, round(p, 4), pair.log10_p, detail))
    return root, edges
