"""The work of a distributed refresh, split so that workers never touch DuckDB.

A worker gets plain data and returns plain data:

- :func:`index_repo` (a :class:`RepoJob`): one listed repo read by HTTP range reads - headers,
  fingerprint, block signatures - and its evidence captured into the data folder's ``evidence/``
  directory (content-addressed, written atomically: a shared folder is safe); returns a
  :class:`RepoWork` with the model record and its vectors, or why the repo could not be indexed;
- :func:`battery_on_evidence`: the independence battery on two models' stored evidence files
  (:class:`~pedigree.indexer.stored_model.StoredModel`), as the JSON the store keeps.

The driver is the single writer: :func:`commit_repo` stores a :class:`RepoWork` exactly as the
single-process crawl stores the same repo (the model and its vectors in one transaction, its
evidence row, then the crawl record: the same idempotent per-repo commits); the pairs to test are
chosen by :func:`~pedigree.indexer.confirm.plan_pairs`, as ``confirm_new_models`` chooses them.
Nothing here imports Ray.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from pedigree.crawler.crawl import DEFAULT_BUDGET_FACTOR, ERROR_STATUS, METADATA_ALLOWANCE
from pedigree.crawler.http_gguf import HubGGUFCheckpoint, HubGGUFFile
from pedigree.crawler.http_retry import RetryPolicy
from pedigree.crawler.http_source import HubCheckpoint
from pedigree.crawler.listing import ListedRepo
from pedigree.crawler.remote import hub_uri
from pedigree.errors import EvidenceMissingError, clip
from pedigree.indexer.confirm import report_json
from pedigree.indexer.evidence_file import EvidenceFile, write_evidence
from pedigree.indexer.evidence_store import file_name, save_with_evidence
from pedigree.indexer.fingerprint import DEFAULT_DIM, fingerprint_version
from pedigree.indexer.independence.inputs import ModelTensors
from pedigree.indexer.independence.suite import run_battery
from pedigree.indexer.pipeline import _failure, _unchanged, fingerprint_rows, fingerprint_source, signature_rows
from pedigree.indexer.sources import TensorSource
from pedigree.indexer.stored_model import StoredModel, capture, capture_plan
from pedigree.results import IngestOutcome
from pedigree.storage.crawl import CrawledRepo, save_crawled
from pedigree.storage.db import ModelRecord, Store
from pedigree.types import Status, VectorRow

Hint = list[tuple[int, int]]


@dataclass(frozen=True)
class RepoJob:
    """One listed repo to index (``evidence_dir``: the data folder's ``evidence/``, as the worker sees it)."""

    endpoint: str
    repo: ListedRepo
    evidence_dir: str
    token: str | None = None
    retry: RetryPolicy | None = None
    budget_factor: float = DEFAULT_BUDGET_FACTOR
    dim: int = DEFAULT_DIM


@dataclass
class RepoWork:
    """What a worker made of one repo: ``record`` with its ``rows`` and ``evidence`` (file name,
    bytes) when indexed, else ``failure`` (status, reason); ``transient``: the remote failed us
    (the repo is ``retry``, nothing is written for the model)."""

    record: ModelRecord
    rows: list[VectorRow] | None = None
    evidence: tuple[str, int] | None = None
    layers: int | None = None
    bytes_read: int = 0
    size_bytes: int | None = None
    seconds: float = 0.0
    failure: tuple[str, str] | None = None
    transient: bool = False
    error_kind: str | None = None


def needs_worker(store: Store, endpoint: str, repo: ListedRepo, dim: int = DEFAULT_DIM) -> bool:
    """True when indexing ``repo`` means reading its weights (a worker's job); False for what the
    driver settles without them: a repo already indexed at this revision, an adapter (checked
    against its base in the store), several GGUF files, no weights pedigree reads."""
    if getattr(repo, "adapter_only", False):
        return False
    if repo.gguf_only and len(repo.gguf_files) > 1:
        return False
    if not repo.has_safetensors and not repo.has_torch_weights and not repo.gguf_only:
        return False
    existing = store.get_model(repo.repo_id)
    if existing is None:
        return True
    sha = repo.sha or ""
    probe = ModelRecord(
        id=repo.repo_id, status=Status.INDEXED, source=hub_uri(endpoint, repo.repo_id, sha), revision=sha
    )
    return not _unchanged(store, existing, probe, fingerprint_version(dim))


def _open(job: RepoJob, client: httpx.Client, opened: list[HubCheckpoint | HubGGUFFile]) -> TensorSource:
    """The repo's tensor source with its byte budget, as :func:`~.crawl.crawl_repo` opens it."""
    repo, sha = job.repo, job.repo.sha or "main"
    kwargs = {"token": job.token, "client": client, "retry": job.retry}
    if repo.gguf_only:  # the budget is set from the file's HEAD, before its header is read
        file = HubGGUFFile(job.endpoint, repo.repo_id, sha, repo.files, **kwargs)  # type: ignore[arg-type]
        opened.append(file)
        file.budget_bytes = int(job.budget_factor * file.weight_bytes) + METADATA_ALLOWANCE
        return HubGGUFCheckpoint(file)
    source = HubCheckpoint(job.endpoint, repo.repo_id, sha, repo.files, **kwargs)  # type: ignore[arg-type]
    opened.append(source)
    source.budget_bytes = int(job.budget_factor * source.weight_bytes) + METADATA_ALLOWANCE
    return source


def index_repo(job: RepoJob, client: httpx.Client) -> RepoWork:
    """Worker side: fingerprint, block signatures and evidence of one repo (never raises for the
    repo's or the server's faults; never opens the database)."""
    started = time.perf_counter()
    repo, sha = job.repo, job.repo.sha or ""
    record = ModelRecord(
        id=repo.repo_id, status=Status.INDEXED, source=hub_uri(job.endpoint, repo.repo_id, sha), revision=sha
    )
    opened: list[HubCheckpoint | HubGGUFFile] = []
    source: TensorSource | None = None
    work = RepoWork(record)
    try:
        source = _open(job, client, opened)
        fingerprint = fingerprint_source(source, record, dim=job.dim)
        if record.created_at is None:
            record.created_at = repo.created_at
        source.prefetch_rows(capture_plan(ModelTensors(source, record.id)), gap=1)
        work.rows = fingerprint_rows(fingerprint) + signature_rows(source, record)
        manifest, arrays = capture(ModelTensors(source, record.id))
        name = file_name(record.id, record.revision)
        work.evidence = name, write_evidence(Path(job.evidence_dir) / name, manifest, arrays)
        work.layers = len(fingerprint.layers)
    except Exception as error:  # noqa: BLE001 - one repo's failure must never stop the others
        work.rows, work.evidence = None, None
        work.transient = bool(getattr(error, "transient", False))
        work.failure = (Status.RETRY, clip(str(error))) if work.transient else _failure(error)
        work.error_kind = type(error).__name__
    finally:
        if source is not None:
            source.close()
    if opened:
        work.bytes_read, work.size_bytes = opened[0].bytes_read, opened[0].weight_bytes
    work.seconds = time.perf_counter() - started
    return work


def lost_work(repo: ListedRepo, endpoint: str, why: str) -> RepoWork:
    """A repo whose worker was lost (killed, out of memory, node gone): ``retry`` next run."""
    sha = repo.sha or ""
    record = ModelRecord(
        id=repo.repo_id, status=Status.RETRY, source=hub_uri(endpoint, repo.repo_id, sha), revision=sha
    )
    return RepoWork(record, failure=(Status.RETRY, why), transient=True, error_kind="WorkerLost")


def commit_repo(store: Store, endpoint: str, repo: ListedRepo, work: RepoWork) -> tuple[CrawledRepo, IngestOutcome]:
    """Driver side: store one repo's work as the single-process crawl stores it (model and vectors
    in one transaction, its evidence row, then the crawl record), and say what happened."""
    record, version = work.record, fingerprint_version()
    if work.failure is None and work.rows is not None and work.evidence is not None:
        record.pk = save_with_evidence(store, record, work.rows, version, *work.evidence)
        outcome = IngestOutcome(record.id, Status.INDEXED, layers=work.layers, seconds=work.seconds)
    elif work.transient:  # the remote failed us, not the model: keep what we had, try again later
        reason = work.failure[1] if work.failure else "transient failure"
        outcome = IngestOutcome(record.id, Status.RETRY, reason, seconds=work.seconds, error_kind=work.error_kind)
    else:
        record.status, record.error = work.failure or (Status.FAILED, "no result")
        existing = store.get_model(record.id)
        same = existing is not None and (existing.status, existing.error, existing.revision) == (
            record.status,
            record.error,
            record.revision,
        )
        if not same:
            store.save_model(record, None, None)
        outcome = IngestOutcome(
            record.id, record.status, record.error, seconds=work.seconds, error_kind=work.error_kind
        )
    status = ERROR_STATUS.get(outcome.error_kind or "", outcome.status)
    state = CrawledRepo(
        endpoint,
        repo.repo_id,
        repo.sha,
        repo.last_modified,
        repo.created_at,
        status,
        outcome.error,
        repo.base_model,
        repo.base_model_relation,
        work.bytes_read,
        work.size_bytes,
    )
    save_crawled(store, state)
    return state, outcome


# ---- pair tests -----------------------------------------------------------------------------


def battery_on_evidence(path_a: str, id_a: str, path_b: str, id_b: str, hint: Hint) -> dict | None:
    """Worker side: the battery on two evidence files (``hint`` oriented a -> b), as stored JSON;
    None when a file cannot be read (the driver then tests the pair itself, recapturing it)."""
    try:
        model_a = StoredModel(EvidenceFile(Path(path_a)), id_a)
        model_b = StoredModel(EvidenceFile(Path(path_b)), id_b)
    except EvidenceMissingError:
        return None
    try:
        return report_json(run_battery(model_a, model_b, hint=hint))
    finally:
        model_a.close()
        model_b.close()
