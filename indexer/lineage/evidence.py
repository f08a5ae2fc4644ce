"""Raw-weight evidence about a related pair (or triple), read through the tensor sources.

All of it compares a small raw sample of each model: the first ``SAMPLE_ROWS`` rows of the query,
key and value projections of up to three matched blocks (first, middle, last), unfolded - exactly
what is stored, in the model's own coordinates.  (Attention rows, because MLP pruning and
re-initialisation leave them in place.)

- ``raw_cosine``: cosine of the two samples.  A fine-tune stays in its parent's coordinates (close
  to 1); a permuted or rotated copy does not (close to 0) although its canonical distance is 0.
- ``raw_distance``: ‖a − b‖ / √(‖a‖ ‖b‖) of the samples: an exact measure of how far training moved
  the weights, used to place models that share coordinates (the sketched fingerprint distance is
  noisier at that scale).
- ``delta_rank_gap``: for pairs in the same coordinates, how exactly low-rank the difference is:
  per changed matrix, min over r <= ``MAX_ADAPTER_RANK`` of σ_{r+1} / σ_r of ΔW (its singular
  values), and the largest of these over the matrices.  A merged rank-r adapter (ΔW = BA) has a
  cliff after σ_r (gap ~0, up to storage rounding); a full fine-tune's spectrum decays smoothly
  (a short fine-tune can still be *approximately* low-rank, which is why the cliff, not the
  energy share, is the test).
- ``whole_block_distance``: for pairs in *other* coordinates, 1 − the mean cosine of the chosen
  blocks' vectors computed from the blocks read whole (every head and unit).  The stored
  fingerprint samples units and heads, which a permutation moves; read whole, a function-preserving
  copy is at distance 0 (up to float rounding) and anything trained is not.
- ``growth``: for pairs in the same coordinates, the fraction of sampled matrices whose norm is
  larger in B than in A.  Training moves weights by updates nearly orthogonal to them, so a child
  is larger than its parent in *every* matrix (1.0 from parent to child); siblings each grew
  their own matrices and weight decay shrinks them, so neither gives a consistent 0 or 1.
- merges: a model c fitted as c ≈ u + α (v − u) from two relatives in the same coordinates; the
  residual ratio ‖c − (u + α(v − u))‖ / min(‖c − u‖, ‖c − v‖) is ~0 for a weight average.
"""

from __future__ import annotations

import torch

from pedigree.errors import EvidenceMissingError
from pedigree.indexer.independence.inputs import RAW_ROWS, ModelEvidence

SAMPLE_ROWS = RAW_ROWS
MAX_ADAPTER_RANK = 16
SAME_COORDINATES = 0.5  # raw cosine above this: the pair shares coordinates (independent ≈ 0)
UNCHANGED = 1e-6  # a matrix whose relative change is below this was not trained


def _sample_layers(depth: int) -> list[int]:
    return sorted({0, depth // 2, depth - 1})


def raw_sample(model: ModelEvidence, layers: list[int]) -> list[torch.Tensor]:
    """[rows of q, k, v] for each layer, raw (``raw_attention_rows``, cached on the model)."""
    cache = model.__dict__.setdefault("_raw_samples", {})
    out = []
    for layer in layers:
        if layer not in cache:
            cache[layer] = model.raw_attention_rows(layer)
        out.extend(cache[layer])
    return out


def _flat(sample: list[torch.Tensor]) -> torch.Tensor:
    return torch.cat([s.flatten() for s in sample]).double()


def rank_gap(delta: torch.Tensor, max_rank: int = MAX_ADAPTER_RANK) -> float:
    """min over r <= max_rank of σ_{r+1}/σ_r for the singular values σ of Δ (0: exactly low rank)."""
    values = torch.linalg.svdvals(delta.double())
    r = min(max_rank, len(values) - 1)
    if r < 1 or values[0] <= 0:
        return 0.0
    ratios = values[1 : r + 1] / torch.clamp(values[:r], min=1e-300)
    return float(ratios.min())


def pair_weight_evidence(a: ModelEvidence, b: ModelEvidence, block_pairs: list[tuple[int, int]]) -> dict:
    """raw cosine, same-coordinates flag and low-rank share of the difference for A and B."""
    if not block_pairs:
        depth = min(a.depth, b.depth)
        block_pairs = [(i, i) for i in range(depth)]
    chosen = [block_pairs[k] for k in _sample_layers(len(block_pairs))]
    sample_a = raw_sample(a, [i for i, _ in chosen])
    sample_b = raw_sample(b, [j for _, j in chosen])
    if any(x.shape != y.shape for x, y in zip(sample_a, sample_b)):
        return {
            "raw_cosine": None,
            "same_coordinates": None,
            "raw_distance": None,
            "delta_rank_gap": None,
            "blocks": chosen,
        }
    fa, fb = _flat(sample_a), _flat(sample_b)
    cosine = float(fa @ fb / (fa.norm() * fb.norm()))
    distance = float((fa - fb).norm() / (fa.norm() * fb.norm()).sqrt())
    same = cosine > SAME_COORDINATES
    gap = whole = growth = None
    changed = []
    if same:
        changed = [(x, y) for x, y in zip(sample_a, sample_b) if float((y - x).norm()) > UNCHANGED * float(x.norm())]
        gap = max((rank_gap(y - x) for x, y in changed), default=None)
        growth = sum(float(y.double().norm()) > float(x.double().norm()) for x, y in changed) / max(len(changed), 1)
    else:  # other coordinates: is it a function-preserving copy?  Ask blocks read whole.
        va, vb = whole_blocks(a, [i for i, _ in chosen]), whole_blocks(b, [j for _, j in chosen])
        if va is not None and vb is not None:
            whole = round(1.0 - float((va * vb).sum(dim=1).mean()), 6)
    return {
        "raw_cosine": round(cosine, 6),
        "same_coordinates": same,
        "raw_distance": round(distance, 8),
        "delta_rank_gap": None if gap is None else round(gap, 6),
        "whole_block_distance": whole,
        "growth": growth,
        "changed_matrices": len(changed),
        "blocks": chosen,
    }


def whole_blocks(model: ModelEvidence, layers: list[int]) -> torch.Tensor | None:
    """Block vectors of ``layers`` read whole (``indexer.fingerprint.whole_block_vectors``), cached
    on the model; None when they were not captured (blocks too large to read whole at ingest)."""
    cache = model.__dict__.setdefault("_whole_blocks", {})
    missing = [i for i in layers if i not in cache]
    if missing:
        try:
            cache.update(zip(missing, model.whole_block_vectors(missing)))
        except EvidenceMissingError:
            return None
    return torch.stack([cache[i] for i in layers])


def merge_fit(child: ModelEvidence, u: ModelEvidence, v: ModelEvidence) -> tuple[float, float] | None:
    """(α, residual ratio) of child ≈ u + α (v − u) on raw samples; None if shapes differ."""
    if not (child.depth == u.depth == v.depth):
        return None
    layers = _sample_layers(child.depth)
    samples = [raw_sample(m, layers) for m in (child, u, v)]
    if any(x.shape != y.shape for s in samples[1:] for x, y in zip(samples[0], s)):
        return None
    c, a, b = (_flat(s) for s in samples)
    direction = b - a
    norm = float(direction @ direction)
    if norm == 0:
        return None
    alpha = float((c - a) @ direction) / norm
    residual = float((c - a - alpha * direction).norm())
    scale = min(float((c - a).norm()), float((c - b).norm()))
    return alpha, (residual / scale if scale > 0 else 0.0)


def update_cosines(
    child: ModelEvidence, parent: ModelEvidence, grandparent: ModelEvidence
) -> tuple[float, float] | None:
    """(fresh, shared) = (cos(p − g, c − p), cos(p − g, c − g)) on raw samples.

    If c is p's child, c's own update c − p is a fresh step, nearly orthogonal to p's update
    p − g (fresh ≈ 0 on zoo A's chain; -0.33 to 0.41 on the chains zoo's, ``bench.lineage_geometry``).
    If c is instead p's sibling (another child of g), its update c − g shares only the family's common
    fine-tuning direction with p's: shared ≈ the cosine typical of siblings.  ``indexer.lineage.assemble``
    compares the two.
    None when the three do not share coordinates and shapes.
    """
    if not (child.depth == parent.depth == grandparent.depth):
        return None
    layers = _sample_layers(child.depth)
    samples = [raw_sample(m, layers) for m in (child, parent, grandparent)]
    if any(x.shape != y.shape for s in samples[1:] for x, y in zip(samples[0], s)):
        return None
    c, p, g = (_flat(s) for s in samples)
    update, own, whole = p - g, c - p, c - g
    norms = float(update.norm()), float(own.norm()), float(whole.norm())
    if min(norms) == 0:
        return None
    return float(update @ own) / (norms[0] * norms[1]), float(update @ whole) / (norms[0] * norms[2])
