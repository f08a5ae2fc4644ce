"""The global probe-token list: which embedding rows token-space fingerprints are computed on.

Every model is probed with the *same* ordered list of canonical token keys (see
``indexer.vocabulary``), so that fingerprints of models with different tokenizers stay comparable:
probe ``p`` of model A and probe ``p`` of model B are the same string.  A model uses the probes its
vocabulary contains; the others are absent (zero rows in the token-space matrices).  This follows
HuRef's idea of reading the input embedding at fixed tokens, with the fix from the reference notes:
tokens are matched by normalised string rather than by id or frequency rank, so vocabulary
extension or re-ordering does not move them.

Vision encoders have no tokenizer: their probe rows are *pixel tokens*, the patch embedding's
responses to single lit pixels (``indexer.adapters.vision``).  :func:`pixel_vocabulary` names
pixel ``j`` by the ``j``-th key of the global list, so the probe machinery runs unchanged and two
encoders with the same patch geometry share every pixel.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

import numpy as np

from pedigree.indexer.vocabulary import WORD_BOUNDARY, Vocabulary

MIN_PROBES = 16  # fewer shared probe tokens than this cannot give a meaningful fingerprint


@lru_cache(maxsize=1)
def probe_keys() -> tuple[str, ...]:
    """The ordered global list of canonical probe keys (``␣s`` then ``s`` for each base string)."""
    text = resources.files("pedigree.indexer").joinpath("data/probe_words.txt").read_text(encoding="utf-8")
    keys: list[str] = []
    for line in text.split("\n"):
        if not line or line.startswith("# "):
            continue
        keys.extend((WORD_BOUNDARY + line, line))
    return tuple(dict.fromkeys(keys))


@lru_cache(maxsize=1)
def probe_list_digest() -> str:
    return hashlib.sha256("\n".join(probe_keys()).encode()).hexdigest()[:12]


@dataclass(frozen=True)
class ProbeSelection:
    """The probes a model has: positions in the global list and the model's token ids."""

    positions: np.ndarray  # int64, increasing indices into probe_keys()
    token_ids: np.ndarray  # int64, same length

    def __len__(self) -> int:
        return len(self.positions)

    def within(self, count: int) -> ProbeSelection:
        """The probes among the first ``count`` keys of the global list."""
        keep = self.positions < count
        return ProbeSelection(self.positions[keep], self.token_ids[keep])


def pixel_vocabulary(pixels: int) -> Vocabulary:
    """The synthetic vocabulary of a model probed at ``pixels`` pixel tokens (C·p·p of a patch
    embedding): pixel ``j`` (row ``j``) is the ``j``-th probe key; beyond the list's length the
    remaining pixels are not probed."""
    keys = probe_keys()[:pixels]
    digest = hashlib.sha256(f"pixel-tokens:{pixels}".encode()).hexdigest()
    return Vocabulary(dict(zip(keys, range(len(keys)))), "plain", pixels, digest, f"{pixels} pixel tokens")


def select_probes(vocabulary: Vocabulary, vocab_rows: int, count: int | None = None) -> ProbeSelection:
    """Probes present in ``vocabulary`` whose token id has an embedding row (< ``vocab_rows``),
    among the first ``count`` keys of the global list (all of them by default)."""
    positions, token_ids = [], []
    for position, key in enumerate(probe_keys()[:count]):
        token_id = vocabulary.lookup(key)
        if token_id is not None and 0 <= token_id < vocab_rows:
            positions.append(position)
            token_ids.append(token_id)
    return ProbeSelection(np.asarray(positions, dtype=np.int64), np.asarray(token_ids, dtype=np.int64))
