"""Typed results: what the library API (:class:`pedigree.Workspace`) returns.

Every result is a frozen dataclass; ``to_json()`` gives the JSON the CLI prints under ``--json``
(the shapes documented in README.md: later releases add fields, never remove them).  Open-ended
JSON - a test's ``detail``, an edge's ``evidence``, counters - stays a plain dict inside them.
This module is pure data (no pedigree imports), so every layer can produce these types.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields, is_dataclass
from typing import Any

Json = dict[str, Any]


def plain(value: Any) -> Any:
    """``value`` as JSON-ready Python: dataclasses -> dicts (field order), tuples -> lists."""
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in fields(value) if not f.metadata.get("internal")}
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


class JsonResult:
    """Mixin: ``to_json()`` for a result dataclass."""

    def to_json(self) -> Json:
        result = plain(self)
        assert isinstance(result, dict)
        return result


def internal(default: Any = None) -> Any:
    """A field kept on the object but left out of its JSON."""
    return field(default=default, metadata={"internal": True}, compare=False)


# ---- ingest -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class IngestOutcome(JsonResult):
    """What happened to one model at ingest (``status``: a :class:`pedigree.types.Status`)."""

    id: str
    status: str
    error: str | None = None
    layers: int | None = None
    seconds: float = 0.0
    error_kind: str | None = internal()  # the error's class name (GatedRepoError, CheckpointError, ...)

    def to_json(self) -> Json:
        return {**super().to_json(), "seconds": round(self.seconds, 3)}


@dataclass(frozen=True)
class Confirmation(JsonResult):
    """One candidate pair tested at ingest: combined log10 p, Holm-adjusted log10 p (``log10_q``),
    decision (or why not)."""

    a: str
    b: str
    log10_p: float | None = None
    log10_q: float | None = None
    confirmed: bool | None = None
    error: str | None = None


@dataclass(frozen=True)
class GraphBuild(JsonResult):
    """A lineage graph build: how many families were re-assembled and how many edges it has."""

    build_id: int
    mode: str
    models: int
    families: int
    rebuilt: int
    reused: int
    edges: int
    started_at: str
    finished_at: str


@dataclass(frozen=True)
class IngestResult(JsonResult):
    models: tuple[IngestOutcome, ...]
    counts: dict[str, int]
    confirmations: tuple[Confirmation, ...] = ()
    graph: GraphBuild | None = None  # None when no tests ran


# ---- questions --------------------------------------------------------------------------------

BlockPair = tuple[int, int, float]  # (block of A, block of B, cosine)


@dataclass(frozen=True)
class RelatedModel(JsonResult):
    id: str
    score: float
    layers: tuple[BlockPair, ...]


@dataclass(frozen=True)
class Related(JsonResult):
    model: str
    related: tuple[RelatedModel, ...]


@dataclass(frozen=True)
class Link(JsonResult):
    """A lineage edge seen from one end: the other model, the kind of step and its support."""

    id: str
    relation: str
    confidence: float
    log10_p: float | None
    evidence: dict[str, Any]


@dataclass(frozen=True)
class Lineage(JsonResult):
    """A model's place in the current lineage graph (``family_size`` None: not in a family yet).
    ``siblings``: relatives joined by an undirected edge - neither shown to derive from the other
    (e.g. fine-tunes of an ancestor that is not indexed, or a copy whose original is unknown)."""

    parents: tuple[Link, ...] = ()
    ancestors: tuple[str, ...] = ()
    root: str | None = None
    children: tuple[Link, ...] = ()
    family_size: int | None = None
    family: int | None = None
    graph_build: int | None = None
    siblings: tuple[Link, ...] = ()


@dataclass(frozen=True)
class LineageAnswer(JsonResult):
    """``query``: where a model comes from, and the indexed models most related to it."""

    model: str
    related: tuple[RelatedModel, ...]
    parents: tuple[Link, ...]
    ancestors: tuple[str, ...]
    root: str | None
    children: tuple[Link, ...]
    family_size: int | None
    family: int | None
    graph_build: int | None
    siblings: tuple[Link, ...] = ()

    @classmethod
    def of(cls, related: Related, lineage: Lineage) -> LineageAnswer:
        return cls(
            model=related.model, related=related.related, **{f.name: getattr(lineage, f.name) for f in fields(lineage)}
        )


@dataclass(frozen=True)
class Comparison(JsonResult):
    """``compare``: fingerprint score and block map, and (with tests) the independence tests.

    ``layer_map`` rows are ``[i, j, cosine]``, with tests ``[i, j, cosine, log10 p of that block
    pair]``; ``log10_q`` / ``confirmed`` are set when both models are indexed.
    """

    a: str
    b: str
    score: float
    layer_map: tuple[tuple[Any, ...], ...]
    model_cosine: float
    embedding_cosine: float | None
    head_cosine: float | None
    layers: tuple[int, int]
    log10_p: float | None = None
    tests: tuple[dict[str, Any], ...] | None = None
    shared_blocks: tuple[tuple[Any, ...], ...] | None = None
    shared: dict[str, Any] | None = None
    log10_q: float | None = None
    confirmed: bool | None = None


@dataclass(frozen=True)
class PairScore(JsonResult):
    a: str
    b: str
    score: float
    log10_p: float | None = None
    test_error: str | None = None  # why the tests could not run (never "not related")


@dataclass(frozen=True)
class PairMatrix(JsonResult):
    models: tuple[str, ...]
    pairs: tuple[PairScore, ...]


# ---- model cards vs weights -------------------------------------------------------------------


@dataclass(frozen=True)
class WeightsParent(JsonResult):
    id: str
    relation: str
    log10_p: float | None
    confidence: float


@dataclass(frozen=True)
class Discrepancy(JsonResult):
    """A card's declaration the weights contradict (``kind``: see :mod:`pedigree.query.discrepancies`)."""

    model: str
    kind: str
    declared_base_model: str | None
    declared_relation: str | None
    parents_from_weights: tuple[WeightsParent, ...]
    suggested_card: str | None = None
    declared_pair_log10_p: float | None = None
    reason: str | None = None


@dataclass(frozen=True)
class Undeclared(JsonResult):
    model: str
    parents_from_weights: tuple[WeightsParent, ...]
    suggested_card: str


@dataclass(frozen=True)
class Unverifiable(JsonResult):
    model: str
    declared_base_model: str
    reason: str


@dataclass(frozen=True)
class Discrepancies(JsonResult):
    graph_build: int | None
    discrepancies: tuple[Discrepancy, ...] = ()
    undeclared: tuple[Undeclared, ...] = ()
    unverifiable: tuple[Unverifiable, ...] = ()


# ---- the Hub ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class RepoReport(JsonResult):
    """One repo revision a crawl looked at."""

    id: str
    sha: str | None
    status: str
    reason: str | None
    bytes_read: int
    size_bytes: int | None


@dataclass(frozen=True)
class CrawlSummary(JsonResult):
    endpoint: str
    counts: dict[str, int]
    high_water: str | None
    repos: tuple[RepoReport, ...]
    outcomes: tuple[IngestOutcome, ...] = internal(())


@dataclass(frozen=True)
class RepoError(JsonResult):
    id: str
    status: str
    reason: str | None


@dataclass(frozen=True)
class RefreshSummary(JsonResult):
    """``refresh``: crawl -> ingest -> confirm -> graph, recorded as run ``run``."""

    run: int
    endpoint: str
    counts: dict[str, int]
    errors: tuple[RepoError, ...]
    high_water: str | None
    graph: GraphBuild | None
    repos: tuple[RepoReport, ...]


@dataclass(frozen=True)
class RunRecord(JsonResult):
    run_id: int
    kind: str
    endpoint: str | None
    started_at: str
    finished_at: str | None
    status: str
    counts: dict[str, Any]
    errors: list[Any]


@dataclass(frozen=True)
class HighWater(JsonResult):
    endpoint: str
    high_water: str | None
    updated_at: str


@dataclass(frozen=True)
class StatusReport(JsonResult):
    """``status``: the last runs, the crawl high-water marks and what the index holds."""

    runs: tuple[RunRecord, ...]
    high_water: tuple[HighWater, ...]
    crawl: dict[str, int]
    models: dict[str, int]
    evidence: dict[str, int] = field(default_factory=dict)  # models with stored evidence, bytes, missing


@dataclass(frozen=True)
class DemoResult(JsonResult):
    home: str
    zoo: str
    endpoint: str
    refresh: dict[str, int]
    bytes_read: int
    bytes_total: int
    question: str
    answer: LineageAnswer
    truth: dict[str, Any]
