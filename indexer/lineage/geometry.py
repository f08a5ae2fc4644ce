"""The family's update geometry: where in a placed tree a model's parent is (pure, given a
``Geometry`` that answers update cosines from the raw weights).

Fine-tuning moves a model by an update Δ.  Two facts hold on every same-coordinate family of the
zoo and follow from how fine-tuning works:

- **a child's own step is fresh**: cos(p − g, c − p) ≈ 0 (|·| ≤ 0.06 on the zoo's true chains) -
  the child's training starts where the parent's ended and follows its own data;
- **siblings share a direction**: cos(c₁ − p, c₂ − p) ≈ ρ > 0 (ρ = 0.35-0.41 on the zoo) -
  fine-tunes of one model begin from the same point of the same loss surface.

Both hold on zoo A, whose one trained chain has fresh 0.07.  The chains zoo (development, 30 true
chain steps and 33 sibling pairs, with and without weight decay) shows how loosely: fresh −0.33 to
0.41 (median 0.16) and the siblings' shared cosine 0.01 to 0.36 (median 0.17) - a child trained on
data related to its parent's continues part of its direction, and the two ranges overlap, so these
cosines settle a placement only where they are far apart (``python -m bench.lineage_geometry``,
2026-12-06; no constant was changed for it).

So at a node u, the angle between the updates towards two neighbours is ≈ ρ when both are u's
children and ≈ 0 when one of them is u's parent.  Every choice of root orients the tree and so
names each node's parent neighbour; the root is chosen to maximise

    S(r) = Σ_edges log P(edge orientation)  +  Σ_u Σ_{w₁<w₂ ∈ N(u)} −min((c_u(w₁,w₂) − μ)², CLIP) / 2σ²

with μ = 0 when w₁ or w₂ is u's parent under r, else ρ (σ = 0.1, CLIP = 0.3²: one odd angle costs
at most 4.5 nats).  Only trained same-coordinate steps enter the angles (a quantized copy's
rounding is orthogonal to everything).  Moving the root across one edge changes two nodes'
parents, so every root is scored in O(V) (re-rooting).  An edge's orientation is *decided* by
the geometry when the best root on its far side scores ``MARGIN`` nats less.

``siblings_not_children`` then moves a model hung under a sibling up to their common parent when
its update shares the family's sibling cosine with the sibling's, not a fresh step.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import networkx as nx

Geometry = Callable[[int, int, int], "tuple[float, float] | None"]  # (child, parent, grandparent) -> (fresh, shared)
SIBLING_COSINE_PRIOR = 0.35  # cos of two fine-tunes' updates from one base, measured on zoo A (0.35-0.41)
SIGMA = 0.1
CLIP = 0.3**2
MARGIN = 2.0  # nats: the geometry decides an orientation when the other side scores this much less


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


def angle(geometry: Geometry, at: int, w1: int, w2: int) -> float | None:
    """cos(w1 − at, w2 − at): the negated "fresh" cosine of w2 as a child of ``at`` under w1."""
    cosines = geometry(w2, at, w1)
    return None if cosines is None else -cosines[0]


def _term(cosine: float, mean: float) -> float:
    return -min((cosine - mean) ** 2, CLIP) / (2 * SIGMA * SIGMA)


class Orientation:
    """Scores every root of an undirected tree (module docstring)."""

    def __init__(
        self,
        tree: nx.Graph,
        edge_logp: Callable[[int, int], float],
        trained: Callable[[int, int], bool],
        geometry: Geometry | None,
        rho: float = SIBLING_COSINE_PRIOR,
    ) -> None:
        self.tree, self.edge_logp, self.rho = tree, edge_logp, rho
        self.angles: dict[int, dict[tuple[int, int], float]] = {}
        for u in tree:
            neighbours = sorted(w for w in tree[u] if trained(u, w))
            found: dict[tuple[int, int], float] = {}
            if geometry is not None:
                for i, w1 in enumerate(neighbours):
                    for w2 in neighbours[i + 1 :]:
                        cosine = angle(geometry, u, w1, w2)
                        if cosine is not None and math.isfinite(cosine):
                            found[(w1, w2)] = cosine
            self.angles[u] = found

    def node_score(self, u: int, parent: int | None) -> float:
        """Σ over pairs of u's trained neighbours of the angle term, given u's parent."""
        return sum(_term(cosine, 0.0 if parent in pair else self.rho) for pair, cosine in self.angles[u].items())

    def scores(self) -> dict[int, float]:
        """S(r) for every node r (re-rooting from an arbitrary first root)."""
        first = min(self.tree)
        parent = {first: None} | {v: u for u, v in nx.bfs_edges(self.tree, first)}
        total = sum(self.node_score(u, parent[u]) for u in self.tree)
        total += sum(self.edge_logp(p, c) for c, p in parent.items() if p is not None)
        out = {first: total}
        for u, v in nx.bfs_edges(self.tree, first):  # move the root from u to its child v
            before = out[u]  # under root u, v is u's child; under root v, u is v's child
            delta = (
                -self.node_score(u, None)
                + self.node_score(u, v)
                - self.node_score(v, u)
                + self.node_score(v, None)
                - self.edge_logp(u, v)
                + self.edge_logp(v, u)
            )
            out[v] = before + delta
        return out

    def best(self, current_root: int) -> tuple[int, dict[int, float]]:
        scores = self.scores()
        top = max(scores.values())
        root = current_root if scores[current_root] >= top - 1e-9 else max(scores, key=lambda r: (scores[r], -r))
        return root, scores

    def margins(self, root: int, scores: dict[int, float]) -> dict[tuple[int, int], float]:
        """(parent, child) under ``root`` -> S(root) − the best score of a root on the child's side."""
        directed = nx.bfs_tree(self.tree, root)
        out = {}
        for p, c in directed.edges():
            far = nx.descendants(directed, c) | {c}
            out[(p, c)] = scores[root] - max(scores[r] for r in far)
        return out


def orient(
    tree: nx.DiGraph,
    edge_logp: Callable[[int, int], float],
    trained: Callable[[int, int], bool],
    geometry: Geometry | None,
) -> tuple[nx.DiGraph, dict[tuple[int, int], float]]:
    """The tree re-rooted where the orientation score is highest, and each edge's margin."""
    roots = [n for n in tree if tree.in_degree(n) == 0]
    if len(tree) < 2 or len(roots) != 1:
        return tree, {}
    rho = sibling_cosine(tree, geometry) if geometry is not None else SIBLING_COSINE_PRIOR
    orientation = Orientation(tree.to_undirected(), edge_logp, trained, geometry, rho)
    root, scores = orientation.best(roots[0])
    directed = nx.bfs_tree(orientation.tree, root)
    return directed, orientation.margins(root, scores)


def siblings_not_children(
    tree: nx.DiGraph,
    allowed: Callable[[int, int], bool],
    geometry: Geometry,
    trained: Callable[[int, int], bool],
) -> nx.DiGraph:
    """Move v from under u to under u's parent g when v looks like u's sibling, not its child.

    Two children of g whose updates are correlated (similar data, or one a long run that covers
    the other's direction) can be closer to each other than to g, and the arborescence then chains
    them.  A child's own update is a fresh step, nearly orthogonal to its parent's
    (fresh = cos(u − g, v − u) ≈ 0); a sibling shares with u the family's typical sibling cosine
    ρ (shared = cos(u − g, v − g) ≈ ρ).  v is moved up when |shared − ρ| < |fresh|, and keeps
    climbing while the same holds one level up.  Top-down; ``allowed(g, v)``: g may be v's parent.
    Only a step that full training made is weighed (``trained(u, v)``, ``signals.trained_step``): a
    merged adapter is *exactly* low-rank from its parent, which no angle outweighs - its large
    rank-r update made it look like its parent's sibling on a rebuild of zoo C (2026-12-06).
    """
    rho = sibling_cosine(tree, geometry)
    tree = tree.copy()
    for u in list(nx.topological_sort(tree)):
        for v in list(tree.successors(u)):
            if not trained(u, v):
                continue  # an adapter, a quantized or re-cast copy: not a training step (docstring)
            parent = u
            while True:
                grandparents = list(tree.predecessors(parent))
                if not grandparents or not allowed(grandparents[0], v):
                    break
                g = grandparents[0]
                cosines = geometry(v, parent, g)
                if cosines is None or abs(cosines[1] - rho) >= abs(cosines[0]):
                    break
                tree.remove_edge(parent, v)
                tree.add_edge(g, v)
                parent = g
    return tree


LATENT_SHARED = SIBLING_COSINE_PRIOR + 2 * SIGMA  # 0.55: above every true sibling pair of zoo A (≤ 0.53)
LATENT_FRESH = -2 * SIGMA  # -0.2: a chain's child step is fresh (|cos| ≤ 0.09 on zoo A), a latent sibling's is not


def latent_groups(
    tree: nx.DiGraph, trained: Callable[[int, int], bool], geometry: Geometry
) -> tuple[nx.DiGraph, dict[int, tuple[int, tuple[int, ...]]]]:
    """The tree with latent siblings hung under their indexed ancestor, and child -> (that
    ancestor u, the group) for models that descend from u through a model that is not indexed.

    Two fine-tunes c₁, c₂ of an unindexed X that descends from u: their updates from u share X − u,
    so their *shared* cosine cos(c₁ − u, c₂ − u) = (L² + ρ d₁d₂) / √((L² + d₁²)(L² + d₂²)) (L = |X − u|,
    dᵢ = |cᵢ − X|) is well above the sibling cosine ρ of u's own children, while neither's step from the
    other is fresh: cos(c₁ − u, c₂ − c₁) ≈ −d₁ √((1 − ρ)/2) / √(L² + d₁²) < 0 both ways (a chain u → c₁ → c₂
    has a fresh last step, ≈ 0).  A pair is latent when shared ≥ ``LATENT_SHARED`` and both fresh cosines
    are ≤ ``LATENT_FRESH`` (bars from the zoo A prior ρ and σ; on zoo A's true siblings shared ≤ 0.53,
    and the one above 0.41 has a fresh step of −0.05).  Pairs are two children of u, or a child c₁ of u
    and a child c₂ of c₁ (latent siblings are often chained: d(c₁, c₂) < d(u, c₂)); groups are the
    connected latent pairs, every member hung under u.
    """
    tree = tree.copy()

    def latent_pair(u: int, c1: int, c2: int) -> bool:
        one, two = geometry(c2, c1, u), geometry(c1, c2, u)
        if one is None or two is None:
            return False
        return one[1] >= LATENT_SHARED and max(one[0], two[0]) <= LATENT_FRESH

    out: dict[int, tuple[int, tuple[int, ...]]] = {}
    for u in list(nx.topological_sort(tree)):
        if u in out:
            continue  # a latent group's member is not also a latent ancestor
        children = sorted(c for c in tree.successors(u) if trained(u, c))
        links = nx.Graph()
        for i, c1 in enumerate(children):
            for c2 in children[i + 1 :]:
                if latent_pair(u, c1, c2):
                    links.add_edge(c1, c2)
            for c2 in sorted(tree.successors(c1)):
                if trained(c1, c2) and latent_pair(u, c1, c2):
                    links.add_edge(c1, c2)
        for group in nx.connected_components(links):
            members = tuple(sorted(group))
            for c in members:
                for p in list(tree.predecessors(c)):
                    tree.remove_edge(p, c)
                tree.add_edge(u, c)
                out[c] = (u, members)
    return tree, out
