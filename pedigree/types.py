"""Shared vocabulary of every layer: statuses (one spelling, one place) and the records that
pass between the analysis and the storage layers.

:class:`Status` is a ``StrEnum``: its members *are* their strings, so they are stored in DuckDB,
written to JSON and compared with stored values as plain text.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np


class Status(StrEnum):
    """What happened to a model (and to a crawled repo revision)."""

    INDEXED = "indexed"  # fingerprinted and stored
    UNCHANGED = "unchanged"  # already indexed at this revision: nothing read
    FAILED = "failed"  # malformed, hostile or unreadable: the reason is recorded
    UNSUPPORTED = "unsupported"  # well formed, but no adapter for its architecture
    GATED = "gated"  # the Hub refused: gated or private
    GONE = "gone"  # the repo, revision or a weight file vanished
    NO_SAFETENSORS = "no_safetensors"  # no weights pedigree reads (pickle-only repos are never unpickled)
    RETRY = "retry"  # a transient remote failure (rate limits, 5xx, cut bodies): the next run retries

    @property
    def final(self) -> bool:
        """Settled at this revision: not tried again until the revision changes."""
        return self is not Status.RETRY


class RunStatus(StrEnum):
    """How a crawl or refresh run ended."""

    RUNNING = "running"
    OK = "ok"
    FAILED = "failed"


BLOCK_SIGNATURE = "block_sig"  # the vector kind of the embedding-free block signatures (one row per block)


@dataclass(frozen=True)
class VectorRow:
    """One fingerprint vector: ``kind`` model/layer/embedding/head/block_sig (:data:`BLOCK_SIGNATURE`),
    ``layer`` -1 unless a block."""

    kind: str
    layer: int
    vector: np.ndarray


@dataclass(frozen=True)
class Edge:
    """A directed lineage edge between two models (by their primary keys in the index)."""

    parent: int
    child: int
    relation: str
    confidence: float
    log10_p: float | None
    evidence: dict[str, Any]
