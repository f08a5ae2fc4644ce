"""How two fingerprints are scored and their blocks matched (pure functions), shared by the
query answers and the lineage stage.

Block vectors are unit-length sketches, so C = L_A L_Bᵀ holds the cosine of every block pair
(i of A, j of B).  The blocks are paired one-to-one by a linear assignment that maximises the
total cosine (rectangular when depths differ, e.g. a layer-dropped model), and

    score(A, B) = Σ_{(i,j) matched} C_ij / min(L_A, L_B)

the mean matched-block cosine over the shallower model: a model that kept 4 of its parent's 6
blocks scores as high as a same-depth copy, a model sharing one block of six scores about 1/6.

A matched pair is reported in the layer map when C_ij ≥ 5/√D: for unrelated blocks the sketch
cosine is approximately N(0, 1/D), so five standard deviations of the projection noise.  (This is
a property of the random projection, not a threshold fitted to any models.)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from pedigree.types import VectorRow


@dataclass(frozen=True)
class LayerAlignment:
    score: float
    pairs: list[tuple[int, int, float]]  # every matched (i, j, cosine)
    cosines: np.ndarray  # [L_A, L_B]

    def matches(self, dim: int) -> list[tuple[int, int, float]]:
        """The matched pairs whose cosine clears the projection-noise bar (5/√D)."""
        bar = layer_match_bar(dim)
        return [pair for pair in self.pairs if pair[2] >= bar]


def layer_match_bar(dim: int) -> float:
    """5 standard deviations of the cosine of two unrelated D-dimensional sketches."""
    return 5.0 / math.sqrt(dim)


def cosine(a: np.ndarray | None, b: np.ndarray | None) -> float | None:
    if a is None or b is None:
        return None
    return float(np.clip(np.dot(a, b), -1.0, 1.0))


def align_layers(layers_a: np.ndarray, layers_b: np.ndarray) -> LayerAlignment:
    """Maximum-weight one-to-one block matching and the resulting score (module docstring)."""
    if len(layers_a) == 0 or len(layers_b) == 0:
        return LayerAlignment(0.0, [], np.zeros((len(layers_a), len(layers_b)), np.float32))
    from scipy.optimize import linear_sum_assignment  # on first use: commands that align no blocks never load it

    cosines = np.clip(layers_a @ layers_b.T, -1.0, 1.0)
    rows, cols = linear_sum_assignment(cosines, maximize=True)
    pairs = [(int(i), int(j), float(cosines[i, j])) for i, j in zip(rows, cols)]
    score = sum(p[2] for p in pairs) / min(len(layers_a), len(layers_b))
    return LayerAlignment(float(score), sorted(pairs), cosines)


@dataclass(frozen=True)
class FingerprintView:
    """One model's fingerprint vectors as numpy arrays (from DuckDB rows or freshly computed)."""

    label: str
    model: np.ndarray
    layers: np.ndarray
    embedding: np.ndarray | None
    head: np.ndarray | None

    @property
    def dim(self) -> int:
        return int(self.model.shape[0])

    @classmethod
    def from_rows(cls, label: str, rows: Sequence[VectorRow]) -> FingerprintView:
        by_kind = {(row.kind, row.layer): row.vector for row in rows}
        layers = sorted((layer, vec) for (kind, layer), vec in by_kind.items() if kind == "layer")
        dim = len(by_kind[("model", -1)])
        return cls(
            label=label,
            model=by_kind[("model", -1)],
            layers=np.stack([vec for _, vec in layers]) if layers else np.zeros((0, dim), np.float32),
            embedding=by_kind.get(("embedding", -1)),
            head=by_kind.get(("head", -1)),
        )
