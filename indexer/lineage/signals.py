"""What one pair says about direction and kind (pure): nodes and pair evidence in, signals out.

Direction signals s ∈ {−1, +1} are antisymmetric (+1: u is the parent of v).  Each holds *by
construction* - from how the child was made - not from a fit to any zoo:

==================  ======  ===============================================================
signal              weight  u is the parent of v when ...
==================  ======  ===============================================================
time                hard    u was created before v (modes ``time``/``full``): a constraint,
                            never outvoted - a parent is never newer than its child
declared            3       v's card names u as base_model (mode ``full``); a prior
quantized           4       v sits on an int8 grid and u does not
layer_map           4       the localized layer map: v duplicated u's blocks (many-to-one,
                            ``upscaled``) or kept an injective subset of them (``pruned``)
narrower_mlp        4       v's MLPs are narrower (width pruning; same depth)
vocabulary          4       v's extra pieces look freshly initialised (``vocab_extended``) or
                            v kept a bit-identical subset of u's pieces (``vocab_pruned``)
folded_gains        4       (copies) v is u with norm gains folded into the next matrices
left_coordinates    4       (copies) u shares coordinates with more of the family than v
merge               4       v is fitted as a weight average of u and another relative
growth              2       v is larger than u in every sampled matrix (≥ 6 changed): training
                            adds updates nearly orthogonal to the weights; siblings or weight
                            decay give no consistent sign, and then there is no vote
norm_growth         1       the attention norm grew: a weak tie-breaker only (it decides
                            nothing alone, see ``DECISIVE``)
==================  ======  ===============================================================

``growth`` and ``norm_growth`` are graded: they accumulate along a chain, so every ancestor of v
looks like its parent by them, the more so the further back.  So in placement a signal only ever
*vetoes* (``Direction.against``: evidence that v is u's ancestor raises the cost of u -> v), and
when time orders the pair (modes ``time``/``full``) the graded signals do not vote on its
orientation either - time already orients it.

A pair's direction is *decided* when the signals other than the weak tie-breaker reach
|logit| ≥ ``DECISIVE``; otherwise the family geometry (``indexer.lineage.geometry``) may decide,
and failing that the edge is reported with its direction undetermined.

**Copies.**  Two models of the same structure are copies when they compute the same function up
to storage rounding: in the same coordinates, raw weights within ``COPY_RAW`` (a bfloat16
re-cast is ~0.0011, int8 rounding ~0.006, the smallest training step on the zoo ~0.05) and
fingerprint within ``COPY_FINGERPRINT``; in other coordinates (permuted, rotated, rescaled),
blocks read whole within ``COPY_WHOLE`` (copies measure ≤ 4e-6, int8 rounding 2e-5, training
≥ 8e-3).  A copy's relation is ``copy``, ``permuted`` or ``rotated`` - never ``finetune``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime

from pedigree.indexer.weight_stats import WeightStats

WEIGHTS = {"declared": 3.0, "structure": 4.0, "growth": 2.0, "norm_growth": 1.0}
NORM_SCALE = 0.01  # a 1 % change of the attention norm saturates the tie-breaker
DECISIVE = 2.0  # |logit| from signals other than the tie-breaker that decides a direction
COPY_RAW = 0.003
COPY_FINGERPRINT = 1e-3
COPY_WHOLE = 1e-4
ADAPTER_GAP = 0.05  # a merged rank-r adapter: σ_{r+1}/σ_r of the difference below this
TRAINED_RAW = 0.02  # a same-coordinate step at least this large moved by training (int8: ~0.006)


@dataclass(frozen=True)
class Node:
    pk: int
    id: str
    created_at: datetime | None = None
    declared: tuple[str, ...] = ()
    stats: WeightStats = field(default_factory=WeightStats)
    unindexed_bases: tuple[str, ...] = ()  # the declared bases that are not indexed (``lineage.declared``)


@dataclass(frozen=True)
class Pair:
    distance: float
    same_coordinates: bool | None = None
    delta_rank_gap: float | None = None
    log10_p: float | None = None
    raw_distance: float | None = None
    whole_block_distance: float | None = None  # blocks read whole (other coordinates only), 0 for a copy
    layer_child: int | None = None  # the child by the localized layer map
    layer_relation: str | None = None  # upscaled | pruned
    vocab_child: int | None = None  # the child by the vocabulary test
    vocab_relation: str | None = None  # vocab_extended | vocab_pruned
    grown_child: int | None = None  # larger than the other in every sampled matrix
    # per model of the pair: its blocks that are kept copies of the other's, (own, other's, similarity)
    block_map: tuple[tuple[int, tuple[tuple[int, int, float], ...]], ...] = ()
    unrelated: bool = False  # tested, and the tests did not confirm the pair related

    def blocks_of(self, pk: int) -> tuple[tuple[int, int, float], ...]:
        """Model ``pk``'s blocks matched to the other model's blocks."""
        return next((rows for owner, rows in self.block_map if owner == pk), ())

    def hashable(self) -> list:
        return [
            round(self.distance, 6),
            self.same_coordinates,
            self.delta_rank_gap,
            self.raw_distance,
            self.whole_block_distance,
            self.layer_child,
            self.layer_relation,
            self.vocab_child,
            self.vocab_relation,
            self.grown_child,
            [[owner, [list(row) for row in rows]] for owner, rows in self.block_map],
            *([True] if self.unrelated else []),
        ]


def same_structure(a: WeightStats, b: WeightStats) -> bool:
    return (a.quantized, a.layers, a.mlp_sizes, a.vocab_rows) == (b.quantized, b.layers, b.mlp_sizes, b.vocab_rows)


def copy_kind(u: Node, v: Node, pair: Pair) -> str | None:
    """``copy`` | ``permuted`` | ``rotated`` when u and v compute the same function, else None."""
    if not same_structure(u.stats, v.stats):
        return None
    if pair.same_coordinates:
        if pair.raw_distance is not None and pair.raw_distance <= COPY_RAW and pair.distance <= COPY_FINGERPRINT:
            return "copy"
        return None
    if pair.same_coordinates is False and pair.whole_block_distance is not None:
        if pair.whole_block_distance <= COPY_WHOLE:
            folded = {u.stats.gains_folded, v.stats.gains_folded}
            return "rotated" if folded == {True, False} else "permuted"
    return None


def time_order(u: Node, v: Node) -> int:
    """+1: u is older than v, −1: newer, 0: unknown or equal."""
    if u.created_at is None or v.created_at is None or u.created_at == v.created_at:
        return 0
    return 1 if u.created_at < v.created_at else -1


def structure(u: Node, v: Node, pair: Pair, coordinate_peers: dict[int, int]) -> dict[str, int]:
    """Structural direction signals (+1: u is the parent) by name."""
    a, b = u.stats, v.stats
    signals: dict[str, int] = {}
    if a.quantized != b.quantized:
        signals["quantized"] = 1 if b.quantized else -1
    if pair.layer_child in (u.pk, v.pk):
        signals["layer_map"] = 1 if pair.layer_child == v.pk else -1
    elif a.layers == b.layers and a.mlp_sizes and b.mlp_sizes and sum(a.mlp_sizes) != sum(b.mlp_sizes):
        signals["narrower_mlp"] = 1 if sum(b.mlp_sizes) < sum(a.mlp_sizes) else -1
    if pair.vocab_child in (u.pk, v.pk):
        signals["vocabulary"] = 1 if pair.vocab_child == v.pk else -1
    if copy_kind(u, v, pair) in ("permuted", "rotated"):
        if a.gains_folded != b.gains_folded and None not in (a.gains_folded, b.gains_folded):
            signals["folded_gains"] = 1 if b.gains_folded else -1
        elif coordinate_peers.get(u.pk, 0) != coordinate_peers.get(v.pk, 0):
            signals["left_coordinates"] = 1 if coordinate_peers.get(u.pk, 0) > coordinate_peers.get(v.pk, 0) else -1
    return signals


@dataclass(frozen=True)
class Direction:
    """What the signals say about u -> v.  The weights' probability steers placement; a card's
    declaration only orients an edge the weights placed (and discounts the distance, see
    ``assemble``), so a wrong card cannot pull a model away from its closest relative."""

    probability: float  # P(u is the parent of v) from the weights' signals
    decisive: float  # logit of the weights' signals that can decide alone (not the tie-breaker)
    forbidden: bool  # time says u is newer than v: a constraint, not a vote
    signals: dict
    declared: float = 0.0  # the card's logit (mode full)
    against: float = 0.0  # the summed weight of the weights' signals that say v -> u

    def placement_penalty(self) -> float:
        """How strongly the weights' signals speak against u -> v, in [0, 1): 2σ(against) − 1.

        Evidence *for* u -> v does not lower a placement cost: graded signals accumulate along a
        chain, so rewarding them would prefer a far ancestor to the parent.  Evidence against it -
        including one signal contradicting another - raises the cost.
        """
        return 2.0 * _sigmoid(self.against) - 1.0

    def orientation_logp(self) -> float:
        """log P(u -> v) with the card's declaration, for orienting a placed edge."""
        if self.forbidden:
            return -1e3
        return math.log(max(_sigmoid(math.log(self.probability / (1 - self.probability)) + self.declared), 1e-300))


def direction(
    u: Node,
    v: Node,
    pair: Pair,
    mode: str,
    coordinate_peers: dict[int, int],
    merge_parents: dict[int, tuple[int, int]] | None = None,
) -> Direction:
    """P(u is the parent of v), the decisive part of its logit, the time constraint, the signals."""
    decisive = 0.0
    evidence: dict[str, float] = {}
    merge_parents = merge_parents or {}
    order = time_order(u, v) if mode in ("time", "full") else 0
    if order:
        evidence["time"] = order
    declared = 0.0
    if mode == "full" and (u.id in v.declared) != (v.id in u.declared):
        evidence["declared"] = 1 if u.id in v.declared else -1
        declared = WEIGHTS["declared"] * evidence["declared"]
    against = 0.0
    for name, sign in structure(u, v, pair, coordinate_peers).items():
        evidence[name] = sign
        decisive += WEIGHTS["structure"] * sign
        against += WEIGHTS["structure"] * max(-sign, 0)
    if pair.grown_child in (u.pk, v.pk) and "layer_map" not in evidence and "quantized" not in evidence:
        evidence["growth"] = 1 if pair.grown_child == v.pk else -1
        against += WEIGHTS["growth"] * max(-evidence["growth"], 0)  # a veto, with or without time
        if not order:  # time orients the pair: growth, which accumulates along a chain, does not vote
            decisive += WEIGHTS["growth"] * evidence["growth"]
    for merge_child, other, sign in ((v, u, 1), (u, v, -1)):
        if other.pk in merge_parents.get(merge_child.pk, ()):
            evidence["merge"] = sign
            decisive += WEIGHTS["structure"] * sign
            against += WEIGHTS["structure"] * max(-sign, 0)
    logit = decisive
    nu, nv = u.stats.attention_norm, v.stats.attention_norm
    if nu and nv and nu != nv:
        evidence["norm_growth"] = round(math.log(nv / nu), 6)
        vote = WEIGHTS["norm_growth"] * math.tanh(math.log(nv / nu) / NORM_SCALE)
        against += max(-vote, 0.0)
        if not order:  # time orients the pair: the tie-breaker has nothing left to break
            logit += vote
    ku, kv = u.stats.qk_kurtosis, v.stats.qk_kurtosis
    if ku is not None and kv is not None and ku != kv:
        evidence["kurtosis_drop"] = round(ku - kv, 4)  # recorded, no vote (no regime on the zoo)
    return Direction(_sigmoid(logit), decisive, order < 0, evidence, declared, against)


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-max(-50.0, min(50.0, x))))


def trained_step(u: Node, v: Node, pair: Pair) -> bool:
    """A same-coordinate step that full training made (what the family geometry reasons about).

    A merged low-rank adapter (``delta_rank_gap`` < ``ADAPTER_GAP``) is not one: its update lives in
    a rank-r subspace, nearly orthogonal to any full fine-tune's update by construction, so the
    sibling cosine the geometry expects between two fine-tunes of one model does not apply to it.
    """
    return (
        bool(pair.same_coordinates)
        and u.stats.quantized == v.stats.quantized
        and u.stats.layers == v.stats.layers
        and pair.raw_distance is not None
        and pair.raw_distance >= TRAINED_RAW
        and not low_rank_step(pair)
    )


def low_rank_step(pair: Pair) -> bool:
    """The two differ by a merged low-rank adapter: in the same coordinates, every sampled matrix's
    difference exactly low-rank (σ_{r+1}/σ_r < ``ADAPTER_GAP``) - one derivation step by construction
    (training, averaging or another adapter leaves a full-rank difference)."""
    return bool(pair.same_coordinates) and pair.delta_rank_gap is not None and pair.delta_rank_gap < ADAPTER_GAP


def relation(u: Node, v: Node, pair: Pair) -> str:
    """The kind of step from parent u to child v."""
    a, b = u.stats, v.stats
    if b.quantized and not a.quantized:
        return "quantized"
    if pair.layer_child == v.pk and pair.layer_relation:
        return pair.layer_relation
    if a.layers == b.layers and a.mlp_sizes and b.mlp_sizes and sum(b.mlp_sizes) < sum(a.mlp_sizes):
        return "pruned"
    if a.layers and b.layers and b.layers < a.layers:
        return "pruned"
    if pair.vocab_child == v.pk and pair.vocab_relation:
        return pair.vocab_relation
    kind = copy_kind(u, v, pair)
    if kind:
        return kind
    if low_rank_step(pair):
        return "adapter"
    return "finetune"
