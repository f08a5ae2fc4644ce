"""Direction by construction from a pair's structure: the localized layer map and the vocabulary.

**Layer map.**  With C[i, j] the cosine of block i of the deeper model D and block j of the
shallower model S (their fingerprint block vectors), block i *maps* to j when j is its best match
and C[i, j] ≥ 1 − k · max(1 − c*, 10⁻³), where c* is the best match of the pair and k = ``MAP_SLACK``: a
block that is a copy of another (then trained as much as the pair's best-kept block, give or take
k times) - not merely the neighbouring block of the same network (cross-block cosines of one
trained model are 0.35-0.65 on the zoo, far below).  Then

- two or more blocks of D map to one block of S (a many-to-one map): D duplicated S's blocks -
  D is the *up-scaled child* of S (depth up-scaling, SOLAR-style);
- every block of S is the image of exactly one block of D and some blocks of D map to nothing (an
  injective map into the deeper model): S kept a subset of D's blocks - S is the *pruned child*.

A pair whose best match is weak (c* < ``MIN_BEST``: a long continued pre-training) gets no layer
judgement.

**Vocabulary.**  A vocabulary that is a subset of another does not give the direction: a pruned
child keeps a subset of its parent's pieces, an extended child adds pieces to its parent's.  Decided
from the embedding rows of the pieces both share (matched by token string) and of the pieces only
the larger one has ("extra"):

- the shared pieces were *renumbered* (most of them have other token ids in the two tokenizers) and
  their rows are bit-identical - rows were copied to new positions, which is what selecting a
  subset does; extending a tokenizer appends pieces and keeps every existing id
  (``transformers``' ``resize_token_embeddings``, ``tokenizers``' ``add_tokens``): the smaller
  model is the *pruned child*, however the extra rows look (a multilingual vocabulary cut down
  to one language leaves extra rows that can look isotropic next to the kept ones);
- the extra rows look *freshly initialised* - near the embedding mean (median ‖x − μ‖ of the extra
  rows below ``FRESH_SPREAD`` × that of the shared rows; what mean-initialisation does) or isotropic
  (their centred energy in the shared rows' top-k principal subspace nearer the isotropic share k/d
  than to the shared rows' own share; what N(0, σ²) initialisation does) - the larger model is the
  *extended child*;
- the extra rows look trained like the rest and the shared rows are bit-identical - the pieces were
  cut away: the smaller model is the *pruned child*;
- otherwise no judgement (e.g. pruned, then trained).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import torch

from pedigree.indexer.independence.inputs import ModelEvidence

MAP_SLACK = 3.0
MIN_BEST = 0.8
MAP_FLOOR = 1e-3  # the slack never drops below this: identical blocks score 1 only up to float rounding
FRESH_SPREAD = 0.5
T = TypeVar("T")
VOCAB_SAMPLE = 512  # rows sampled from the shared and from the extra pieces
PRINCIPAL_SHARE = 8  # top-k principal directions: k = hidden / 8
RENUMBERED = 0.5  # shared pieces renumbered: fewer than half keep their token id


def layer_map(cosines: np.ndarray) -> list[tuple[int, int, float]]:
    """(row block, column block, cosine) of the localized map (module docstring): each row block
    to its best column block when that is a kept copy.  Empty when the best match is weak."""
    if cosines.size == 0:
        return []
    best = float(cosines.max())
    if best < MIN_BEST:
        return []
    bar = 1.0 - MAP_SLACK * max(1.0 - best, MAP_FLOOR)
    targets = cosines.argmax(axis=1)
    return [(i, int(j), float(cosines[i, j])) for i, j in enumerate(targets) if cosines[i, j] >= bar]


def layer_relation(cosines: np.ndarray) -> str | None:
    """``upscaled`` (the deeper model duplicated blocks: it is the child), ``pruned`` (the shallower
    model kept a subset: it is the child) or None, for a [deeper, shallower] cosine matrix."""
    depth_deep, depth_shallow = cosines.shape
    if depth_deep <= depth_shallow:
        return None
    mapped = layer_map(cosines)
    images = [j for _, j, _ in mapped]
    if any(images.count(j) > 1 for j in set(images)):
        return "upscaled"
    if sorted(images) == list(range(depth_shallow)) and len(mapped) < depth_deep:
        return "pruned"
    return None


@dataclass(frozen=True)
class VocabularyEvidence:
    relation: str | None  # vocab_extended (the larger is the child) | vocab_pruned (the smaller is) | None
    shared: int
    extra: int
    shared_identical: float
    spread_ratio: float
    extra_principal_share: float
    shared_principal_share: float
    isotropic_share: float
    same_ids: float | None = None  # share of the shared pieces with the same token id in both

    def as_json(self) -> dict:
        return {k: (round(v, 6) if isinstance(v, float) else v) for k, v in self.__dict__.items()}


def _spaced(ids: list[T], count: int) -> list[T]:
    if len(ids) <= count:
        return ids
    step = len(ids) / count
    return [ids[int(k * step)] for k in range(count)]


def principal_share(rows: torch.Tensor, basis: torch.Tensor) -> float:
    """Share of the rows' energy inside the span of ``basis`` (orthonormal rows)."""
    total = float((rows * rows).sum())
    return float(((rows @ basis.T) ** 2).sum()) / total if total > 0 else 0.0


def vocabulary_evidence(small: ModelEvidence, large: ModelEvidence) -> VocabularyEvidence | None:
    """Pruned-or-extended evidence for two models whose vocabularies differ in size (``large`` has
    more rows), from each model's hashed vocabulary sample (``vocabulary_rows``: nested, so the
    shared pieces both sampled are compared row for row); None when either has no readable
    vocabulary or they share too few sampled pieces."""
    vocab_s, vocab_l = small.vocabulary, large.vocabulary
    if vocab_s is None or vocab_l is None:
        return None
    pieces_s, _, rows_s = small.vocabulary_rows()
    pieces_l, _, rows_l = large.vocabulary_rows()
    where_s = {piece: k for k, piece in enumerate(pieces_s)}
    shared = [(k, where_s[piece]) for k, piece in enumerate(pieces_l) if piece in where_s]
    extra = [k for k, piece in enumerate(pieces_l) if piece not in vocab_s.tokens]
    shared, extra = _spaced(shared, VOCAB_SAMPLE), _spaced(extra, VOCAB_SAMPLE)
    if len(shared) < 16 or len(extra) < 4:
        return None
    return vocabulary_relation(
        rows_l[[k for k, _ in shared]].float(),
        rows_s[[k for _, k in shared]].float(),
        rows_l[extra].float(),
        same_ids=same_id_share(vocab_s.tokens, vocab_l.tokens),
    )


def same_id_share(tokens_a: dict[str, int], tokens_b: dict[str, int]) -> float | None:
    """Share of the pieces both tokenizers define that carry the same token id in both (None when
    they share none)."""
    shared = tokens_a.keys() & tokens_b.keys()
    if not shared:
        return None
    return sum(tokens_a[piece] == tokens_b[piece] for piece in shared) / len(shared)


def vocabulary_relation(
    shared_large: torch.Tensor, shared_small: torch.Tensor, extra: torch.Tensor, *, same_ids: float | None = None
) -> VocabularyEvidence:
    """The pruned-or-extended judgement (module docstring) from the rows of the shared pieces in
    both models (same order), the larger model's rows of its extra pieces and the share of shared
    pieces that kept their token id (None: unknown)."""
    identical = float((shared_large == shared_small).all(dim=1).float().mean())
    mean = shared_large.mean(dim=0, keepdim=True)
    centred_shared, centred_extra = shared_large - mean, extra - mean
    spread = float(centred_extra.norm(dim=1).median()) / max(float(centred_shared.norm(dim=1).median()), 1e-30)
    k = max(1, shared_large.shape[1] // PRINCIPAL_SHARE)
    basis = torch.linalg.svd(centred_shared.double(), full_matrices=False).Vh[:k].float()
    share_shared = principal_share(centred_shared, basis)
    share_extra = principal_share(centred_extra, basis)
    isotropic = k / shared_large.shape[1]
    fresh = spread < FRESH_SPREAD or abs(share_extra - isotropic) < abs(share_extra - share_shared)
    renumbered = same_ids is not None and same_ids < RENUMBERED
    if identical == 1.0 and (renumbered or not fresh):
        relation: str | None = "vocab_pruned"
    else:
        relation = "vocab_extended" if fresh else None
    return VocabularyEvidence(
        relation, len(shared_large), len(extra), identical, spread, share_extra, share_shared, isotropic, same_ids
    )
