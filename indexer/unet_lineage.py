"""Lineage of UNets from their evidence (``indexer.unet``): families, merges, a directed tree.

Pure: evidence and pair tests in, a ``networkx.DiGraph`` out (nodes carry ``family``; edges
``relation``, ``directed``, ``confidence`` and ``evidence``, as ``indexer.lineage`` writes them).

1. **Families**: the connected components of the pairs whose UNet test (``indexer.unet.unet_test``)
   is significant after Bonferroni over all pairs tested (``alpha`` family-wise).
2. **Merges**: a member c fitted as a weight average of two relatives u, v - on the raw-weight
   sketches, α = ⟨c − v, u − v⟩ / ‖u − v‖², residual ‖c − (αu + (1 − α)v)‖ over
   min(‖c − u‖, ‖c − v‖) below :data:`MERGE_RESIDUAL` with α in :data:`MERGE_ALPHA` (the LM
   lineage stage's bars, ``indexer.lineage.assemble``) - gets both as parents and is left out of
   the tree.
3. **Tree**: the other members are joined by a minimum spanning arborescence (MoTHer's recipe,
   ``indexer.lineage.arborescence``) on cost(u → v) = d(u, v) + λ · mean(d) · 2 · (1 − P(u → v)),
   λ = 0.3, with d the relative sketch distance and P from the *growth* signal: training adds
   updates nearly orthogonal to the weights, so a child's tensors are larger than its parent's;
   P(u → v) = (1 + g) / 2 with g the mean sign of ‖v_t‖ − ‖u_t‖ over the tensors that differ.
   The tree is then refined by the family's update geometry exactly as the LM lineage stage does
   (``indexer.lineage.geometry``: a child's own step is nearly orthogonal to its parent's, two
   siblings' updates share a direction; re-root, move a model hung under a sibling up, re-root),
   on the sketches.  With creation dates (mode ``time``) a parent is never newer than its child: such an edge
   costs more than any spanning tree without one (the LM lineage stage's time constraint).
4. **Relation**: ``merge``; ``adapter`` when every tensor that differs is an attention q/k/v/out
   matrix and each of their differences has rank ≤ :data:`ADAPTER_RANK` on the sketched rows,
   counting singular values above float32 storage rounding (a merged LoRA); otherwise ``finetune``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import datetime
from itertools import combinations
from typing import Any

import networkx as nx
import torch

from pedigree.indexer.lineage.arborescence import components, minimum_spanning_arborescence
from pedigree.indexer.lineage.geometry import orient, siblings_not_children
from pedigree.indexer.unet import UNetEvidence

LAMBDA = 0.3
MERGE_RESIDUAL = 0.25
MERGE_ALPHA = (0.15, 0.85)
ADAPTER_RANK = 8
ROUNDING = 4 * 2.0**-23  # a few float32 ulps, relative to a matrix's norm: what storing W + ΔW rounds
CHANGED = 1e-6  # relative change of a tensor's sketch below which it counts as unchanged
ATTENTION_MATRICES = (".to_q.weight", ".to_k.weight", ".to_v.weight", ".to_out.0.weight")


def _shared(a: UNetEvidence, b: UNetEvidence) -> list[str]:
    return [n for n, t in a.sketch.items() if n in b.sketch and b.sketch[n].shape == t.shape]


def _flat(e: UNetEvidence, names: list[str]) -> torch.Tensor:
    return (
        torch.cat([e.sketch[n].double().reshape(-1) for n in names]) if names else torch.zeros(0, dtype=torch.float64)
    )


def sketch_distance(a: UNetEvidence, b: UNetEvidence) -> float:
    """‖a − b‖ / rms(‖a‖, ‖b‖) over the shared sketched tensors (1.0 when none are shared)."""
    names = _shared(a, b)
    if not names:
        return 1.0
    x, y = _flat(a, names), _flat(b, names)
    scale = math.sqrt((float(x @ x) + float(y @ y)) / 2)
    return float(torch.linalg.vector_norm(x - y)) / scale if scale > 0 else 0.0


def changed_tensors(a: UNetEvidence, b: UNetEvidence) -> list[str]:
    """Shared tensors whose sketches differ by more than :data:`CHANGED` (relative)."""
    out = []
    for n in _shared(a, b):
        x, y = a.sketch[n].double(), b.sketch[n].double()
        scale = max(float(torch.linalg.vector_norm(x)), float(torch.linalg.vector_norm(y)), 1e-30)
        if float(torch.linalg.vector_norm(x - y)) / scale > CHANGED:
            out.append(n)
    return out


def growth(u: UNetEvidence, v: UNetEvidence) -> float:
    """Mean sign of ‖v_t‖ − ‖u_t‖ over the changed tensors (+1: v larger everywhere)."""
    names = changed_tensors(u, v)
    if not names:
        return 0.0
    signs = [math.copysign(1.0, float(v.sketch[n].double().norm() - u.sketch[n].double().norm())) for n in names]
    return sum(signs) / len(signs)


def merge_fit(c: UNetEvidence, u: UNetEvidence, v: UNetEvidence) -> tuple[float, float] | None:
    """(α, residual ratio) of c ≈ αu + (1 − α)v on the shared sketches (None: nothing to fit)."""
    names = [n for n in _shared(c, u) if n in v.sketch and v.sketch[n].shape == c.sketch[n].shape]
    if not names:
        return None
    x, a, b = _flat(c, names), _flat(u, names), _flat(v, names)
    span = a - b
    denominator = float(span @ span)
    if denominator == 0:
        return None
    alpha = float((x - b) @ span) / denominator
    nearest = min(float(torch.linalg.vector_norm(x - a)), float(torch.linalg.vector_norm(x - b)))
    if nearest == 0:
        return None
    return alpha, float(torch.linalg.vector_norm(x - b - alpha * span)) / nearest


def relation(parent: UNetEvidence, child: UNetEvidence) -> str:
    """``adapter`` (only attention matrices changed, each by a low-rank difference) or ``finetune``."""
    names = changed_tensors(parent, child)
    if not names or not all(n.endswith(ATTENTION_MATRICES) for n in names):
        return "finetune"
    for n in names:
        before, after = parent.sketch[n].double(), child.sketch[n].double()
        singular = torch.linalg.svdvals(after - before)
        # singular values above float32 storage rounding of the weights (and 1e-4 of the largest)
        floor = max(ROUNDING * max(float(before.norm()), float(after.norm())), 1e-4 * float(singular[0]))
        rank = int((singular > floor).sum())
        if rank > ADAPTER_RANK or rank >= min(before.shape):
            return "finetune"
    return "adapter"


def related_pairs(tests: dict[frozenset[str], dict[str, Any]], alpha: float = 0.01) -> list[tuple[str, str]]:
    """Pairs whose log10 p clears Bonferroni over every tested pair at family-wise ``alpha``."""
    if not tests:
        return []
    bar = math.log10(alpha / len(tests))
    return [tuple(sorted(pair)) for pair, test in tests.items() if test["log10_p"] <= bar]  # type: ignore[misc]


def _merges(members: list[str], evidence: dict[str, UNetEvidence]) -> dict[str, tuple[str, str, float, float]]:
    found: dict[str, tuple[str, str, float, float]] = {}
    for c in members:
        best: tuple[str, str, float, float] | None = None
        for u, v in combinations([m for m in members if m != c], 2):
            fit = merge_fit(evidence[c], evidence[u], evidence[v])
            if fit is None:
                continue
            a, residual = fit
            if MERGE_ALPHA[0] < a < MERGE_ALPHA[1] and residual < MERGE_RESIDUAL:
                if best is None or residual < best[3]:
                    best = (u, v, a, residual)
        if best is not None:
            found[c] = best
    return found


def update_cosines(c: UNetEvidence, p: UNetEvidence, g: UNetEvidence) -> tuple[float, float] | None:
    """(fresh, shared) = (cos(p − g, c − p), cos(p − g, c − g)) on the shared sketches: the
    ``Geometry`` of ``indexer.lineage.geometry`` (c a child of p, p of g)."""
    names = [n for n in _shared(c, p) if n in g.sketch and g.sketch[n].shape == c.sketch[n].shape]
    x, y, z = _flat(c, names), _flat(p, names), _flat(g, names)
    step, fresh, shared = y - z, x - y, x - z

    def cosine(a: torch.Tensor, b: torch.Tensor) -> float | None:
        scale = float(torch.linalg.vector_norm(a)) * float(torch.linalg.vector_norm(b))
        return float(a @ b) / scale if scale > 0 else None

    first, second = cosine(step, fresh), cosine(step, shared)
    return None if first is None or second is None else (first, second)


def _tree(
    placed: list[str],
    costs: dict[tuple[str, str], float],
    evidence: dict[str, UNetEvidence],
    confidence: dict[tuple[str, str], float],
    created: Mapping[str, datetime | None] | None,
) -> list[tuple[str, str]]:
    """The arborescence, then the LM lineage stage's refinement by update geometry
    (``indexer.lineage.geometry``: re-rooted where growth and the angles agree best, a model hung
    under a sibling moved up, re-rooted again); time (when given) is never violated."""
    if len(placed) < 2:
        return []
    edges = minimum_spanning_arborescence(placed, costs)
    if len(placed) < 3:
        return edges
    tree = nx.DiGraph([(placed.index(u), placed.index(v)) for u, v in edges])

    def geometry(c: int, p: int, g: int) -> tuple[float, float] | None:
        return update_cosines(evidence[placed[c]], evidence[placed[p]], evidence[placed[g]])

    def edge_logp(u: int, v: int) -> float:
        if _newer(created, placed[u], placed[v]):
            return -1e6
        return math.log(max(confidence[(placed[u], placed[v])], 1e-6))

    def allowed(g: int, v: int) -> bool:
        return not _newer(created, placed[g], placed[v])

    def trained(u: int, v: int) -> bool:
        return True

    tree, _ = orient(tree, edge_logp, trained, geometry)
    tree = siblings_not_children(tree, allowed, geometry, trained)
    tree, _ = orient(tree, edge_logp, trained, geometry)
    return [(placed[u], placed[v]) for u, v in tree.edges()]


def _newer(created: Mapping[str, datetime | None] | None, u: str, v: str) -> bool:
    """u was created after v (both dates known)."""
    if created is None:
        return False
    a, b = created.get(u), created.get(v)
    return a is not None and b is not None and a > b


def unet_lineage(
    evidence: dict[str, UNetEvidence],
    tests: dict[frozenset[str], dict[str, Any]],
    *,
    alpha: float = 0.01,
    created: Mapping[str, datetime | None] | None = None,
) -> nx.DiGraph:
    """The lineage graph of the UNets in ``evidence`` (module docstring); with ``created`` (mode
    ``time``), an edge from a newer to an older model costs more than any tree without one."""
    graph = nx.DiGraph()
    ids = sorted(evidence)
    index = {m: i for i, m in enumerate(ids)}
    links = [(index[a], index[b]) for a, b in related_pairs(tests, alpha)]
    for group in components(list(range(len(ids))), links):
        members = sorted(ids[i] for i in group)
        for m in members:
            graph.add_node(m, family=members[0])
        if len(members) < 2:
            continue
        merges = _merges(members, evidence) if len(members) > 2 else {}
        placed = [m for m in members if m not in merges]
        distance = {(u, v): sketch_distance(evidence[u], evidence[v]) for u in placed for v in placed if u != v}
        mean = sum(distance.values()) / len(distance) if distance else 0.0
        costs, confidence = {}, {}
        late = 2.0 * len(placed) * (max(distance.values(), default=0.0) + LAMBDA * mean * 2.0 + 1.0)
        for (u, v), d in distance.items():
            p = (1.0 + growth(evidence[u], evidence[v])) / 2.0
            confidence[(u, v)] = p
            costs[(u, v)] = d + LAMBDA * mean * 2.0 * (1.0 - p) + (late if _newer(created, u, v) else 0.0)
        for u, v in _tree(placed, costs, evidence, confidence, created):
            graph.add_edge(
                u,
                v,
                relation=relation(evidence[u], evidence[v]),
                directed=True,
                confidence=round(confidence[(u, v)], 4),
                evidence={
                    "distance": round(distance[(u, v)], 6),
                    "signals": {"growth": round(2 * confidence[(u, v)] - 1, 4)},
                },
            )
        for child, (u, v, a, residual) in merges.items():
            for parent, weight in ((u, a), (v, 1 - a)):
                graph.add_edge(
                    parent,
                    child,
                    relation="merge",
                    directed=True,
                    confidence=1.0,
                    evidence={"merge_weight": round(weight, 4), "merge_residual": round(residual, 4), "signals": {}},
                )
        roots = [m for m in members if graph.in_degree(m) == 0]
        for m in members:
            graph.nodes[m]["family"] = roots[0] if len(roots) == 1 else members[0]
    return graph
