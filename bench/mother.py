"""MoTHer's published recipe (Horwitz et al.), as the reference row of the lineage benchmark.

What the official code does (``../shared/reference/lineage-graph.md`` §1), on the same zoo:

- clusters: MoTHer is given the true trees (its clustering takes the true K; here the true
  families), so the row measures placement and direction only - a generous reference;
- distance ℓ_FT(u, v): per square 2-D weight matrix shared by name and shape, the largest signed
  difference W_u − W_v min-max normalised by the extremes of that matrix's differences over the
  family's pairs, then the maximum over matrices (pairs with no shared square matrix: 1);
- direction: Σ over attention-output projections of the excess kurtosis of the flattened weights;
  "specialisation" regime (an edge i -> j is penalised when ku[j] > ku[i]);
- tree: minimum spanning arborescence of M = D + λ · mean(D) · T with λ = 0.3.

Checkpoints are the zoo's own safetensors files (read with ``safetensors``, nothing executed).
"""

from __future__ import annotations

from itertools import combinations
from pathlib import Path

import networkx as nx
import numpy as np
import torch
from safetensors.torch import load_file
from scipy.stats import kurtosis

LAMBDA = 0.3
OUTPUT_PROJECTIONS = ("o_proj", "attn.c_proj", "attention.dense", "attention.output.dense")


def square_matrices(folder: Path) -> dict[str, torch.Tensor]:
    """Every square 2-D weight of a checkpoint folder (all shards), as float32."""
    out: dict[str, torch.Tensor] = {}
    for path in sorted(folder.glob("*.safetensors")):
        for name, tensor in load_file(str(path)).items():
            if tensor.ndim == 2 and tensor.shape[0] == tensor.shape[1]:
                out[name] = tensor.float()
    return out


def output_kurtosis(weights: dict[str, torch.Tensor]) -> float:
    """MoTHer's direction statistic: Σ excess kurtosis of the attention-output projections."""
    return float(
        sum(
            kurtosis(w.flatten().numpy(), fisher=True)
            for name, w in weights.items()
            if any(key in name for key in OUTPUT_PROJECTIONS)
        )
    )


def family_distances(weights: dict[str, dict[str, torch.Tensor]]) -> dict[tuple[str, str], float]:
    """ℓ_FT for every pair of the family (module docstring)."""
    models = sorted(weights)
    diffs: dict[tuple[str, str], dict[str, tuple[float, float]]] = {}
    extremes: dict[str, tuple[float, float]] = {}
    for a, b in combinations(models, 2):
        found = {}
        for name, wa in weights[a].items():
            wb = weights[b].get(name)
            if wb is None or wb.shape != wa.shape:
                continue
            diff = wa - wb
            low, high = float(diff.min()), float(diff.max())
            found[name] = (low, high)
            old = extremes.get(name, (low, high))
            extremes[name] = (min(old[0], low), max(old[1], high))
        diffs[(a, b)] = found
    out = {}
    for (a, b), found in diffs.items():
        normalised = [
            (high - extremes[name][0]) / (extremes[name][1] - extremes[name][0])
            for name, (_, high) in found.items()
            if extremes[name][1] > extremes[name][0]
        ]
        out[(a, b)] = out[(b, a)] = max(normalised) if normalised else 1.0
    return out


def mother_graph(zoo: Path, truth: dict) -> nx.DiGraph:
    """MoTHer's directed graph of the zoo, tree by tree (the true families)."""
    graph = nx.DiGraph()
    families: dict[str, list[str]] = {}
    for model, facts in truth.items():
        families.setdefault(facts["family"], []).append(model)
        graph.add_node(model, family=facts["family"])
    for members in families.values():
        if len(members) < 2:
            continue
        weights = {m: square_matrices(zoo / m) for m in members}
        ku = {m: output_kurtosis(w) for m, w in weights.items()}
        distance = family_distances(weights)
        mean = float(np.mean([distance.get((a, b), 0.0) for a in members for b in members]))
        digraph = nx.DiGraph()
        for a in members:
            for b in members:
                if a != b:
                    penalty = 1.0 if ku[b] > ku[a] else 0.0
                    digraph.add_edge(a, b, weight=distance[(a, b)] + LAMBDA * mean * penalty)
        tree = nx.minimum_spanning_arborescence(digraph, attr="weight")
        for a, b in tree.edges():
            graph.add_edge(a, b, relation="finetune", evidence={}, directed=True)
    return graph
