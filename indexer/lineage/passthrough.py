"""Passthrough merges (frankenmerges): a model assembled from blocks of several models.

A block of model m is *explained* by a relative o when the localized block map names one of o's
blocks as the block it is a kept copy of (``Pair.block_map``: from the fingerprint's block
vectors, or from embedding-free block signatures when the embedding came from elsewhere).  m is a
passthrough merge when

- no single relative explains all of m's blocks (else m is that relative's child - or parent),
- taking for each block the relative that explains it best (highest similarity: the block's
  source, not the source's ancestors or other descendants), at least two relatives each explain
  ``MIN_SHARE`` of m's blocks, and together they explain all but ``MAX_UNEXPLAINED`` of them;
- those relatives do not share most of their blocks with each other (they come from different
  lineages).  Close relatives that split m's blocks between them by a hair - e.g. a parent and
  its other children, around a model whose re-initialised MLP matches none of them - are no
  evidence of stacking.  (A passthrough merge of two near-identical fine-tunes of one base is
  therefore placed under the closer one.)

Its parents are those relatives; they can come from different families, so a family that holds
a passthrough merge may have several roots (one per family it took blocks from).
"""

from __future__ import annotations

from collections import Counter

from pedigree.indexer.lineage.signals import Node, Pair

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


def passthrough_parents(child: Node, pairs: dict[frozenset, Pair], depths: dict[int, int]) -> list[int] | None:
    """The parents of ``child`` if it is a passthrough merge (module docstring), else None;
    ``depths``: every model's number of blocks."""
    depth = child.stats.layers
    explained = explained_blocks(child.pk, pairs)
    if depth < 2 or len(explained) < 2 or any(len(blocks) >= depth for blocks in explained.values()):
        return None
    best: dict[int, int] = {}
    for block in range(depth):
        candidates = [(sim[block], other) for other, sim in explained.items() if block in sim]
        if candidates:
            best[block] = max(candidates, key=lambda t: (t[0], -t[1]))[1]
    shares = Counter(best.values())
    parents = sorted(o for o, n in shares.items() if n >= MIN_SHARE * depth)
    if len(parents) < 2 or depth - sum(shares[o] for o in parents) > MAX_UNEXPLAINED * depth:
        return None
    for i, a in enumerate(parents):
        for b in parents[i + 1 :]:
            pair = pairs.get(frozenset((a, b)))
            if pair is not None and 2 * len(pair.blocks_of(a)) >= max(depths.get(a, 0), 1):
                return None  # a and b share most of their blocks: one lineage
    return parents
