"""``HubCheckpoint``: a :class:`~indexer.sources.TensorSource` over HTTP range requests to a
Hugging Face Hub-compatible endpoint (``{endpoint}/{repo_id}/resolve/{revision}/{file}``).

It is the remote twin of :class:`~indexer.local_checkpoint.LocalCheckpoint` and shares its validator
(:mod:`indexer.safetensors_format`), so a hostile header served over HTTP can only ever produce a
:class:`~pedigree.errors.CheckpointError`.  Safety rules:

* pickles are never unpickled: safetensors are read, and with no safetensors PyTorch zip checkpoints
  (``pytorch_model.bin``), whose ``data.pkl`` the restricted interpreter of
  :mod:`indexer.torch_zip_format` reads by range (end records, central directory, local headers),
  a legacy pickle refused by its first bytes;
* every file's size is known (``HEAD``) before any range of it is trusted, and every read is
  bounded by a span checked against that size; a header costs at most two range reads (a
  speculative first read of 64 KiB covers small headers) and is validated strictly;
* a range response must be ``206`` with a ``Content-Range`` matching the request and the size; a
  server that ignores ``Range`` is detected from the status line and the response is closed
  unread (:class:`~pedigree.errors.RangeNotSupportedError`);
* the small files every index reads (model card, config, the first tokenizer file, the shard
  index) are requested in parallel the moment the source opens, and shard headers in parallel
  with each other, so metadata costs a few round trips, not one per file; each is still bounded
  by its ``HEAD`` size and the reader's limit;
* bounded by what is read, not what is claimed: given the read plan (:meth:`HubCheckpoint.limit_reads`)
  the byte budget and the model's deadline (:mod:`.http_deadline`) shrink to it;
* an optional byte budget per model is checked before every request; bodies that end early, 429
  and 5xx are retried (:class:`~crawler.http_retry.RetryPolicy`), then raise a
  :class:`~pedigree.errors.RemoteError` subclass naming the repo/file and why.

Request plumbing: the client (:mod:`.http_client`), retries (:mod:`.http_retry`), answers that are
errors (:mod:`.http_errors`) and strict reads (:mod:`.http_fetch`); the prefetch cache is
:mod:`.span_cache`.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any
from urllib.parse import quote

import httpx

from pedigree.crawler.http_client import hub_client
from pedigree.crawler.http_deadline import Deadlines
from pedigree.crawler.http_fetch import Fetcher, RemoteFile
from pedigree.crawler.http_retry import RetryPolicy
from pedigree.crawler.span_cache import SpanCache, coalesce
from pedigree.errors import CheckpointError, RepoGoneError
from pedigree.indexer import safetensors_format as fmt
from pedigree.indexer import torch_zip_format
from pedigree.indexer.card import MAX_CARD_BYTES
from pedigree.indexer.safetensors_format import INDEX_FILE, TORCH_INDEX, TensorInfo, check_plain_name
from pedigree.indexer.sources import DEFAULT_TEXT_LIMIT, MAX_CONFIG_BYTES, TensorSource
from pedigree.indexer.vocabulary import MAX_TOKENIZER_BYTES, VOCABULARY_FILES

__all__ = ["HubCheckpoint", "RetryPolicy", "hub_client"]

SPECULATIVE_HEADER_READ = 64 * 1024
"""Bytes asked for by a shard's first header read (small headers need no second read)."""
CACHE_LIMIT = 512 * 2**20
"""Most bytes :meth:`HubCheckpoint.prefetch` keeps cached (oldest entries dropped first)."""
MAX_COALESCED = 256 * 2**20
"""Largest single coalesced prefetch request."""
MIN_PART = 2**20
"""A prefetch batch is spread over the connections in requests of at least this many bytes."""
PREFETCH_GAP = 64 * 1024
"""Row spans closer than this are always read by one request (a request costs more than 64 KiB)."""
HEADER_GAP = 4096
"""Header spans closer than this are read by one request (a zip entry's data descriptor and the
next local header are adjacent; tensors in between are skipped unless they are this small)."""
MAX_GAP = 4 * 2**20
"""The largest gap skipped to save a request, however slow the link's round trips."""
DEFAULT_CONCURRENCY = 8
"""Parallel range requests of one prefetch (the crawler's client allows 4 connections per host)."""
EARLY_FILES = {
    "README.md": MAX_CARD_BYTES,
    "config.json": MAX_CONFIG_BYTES,
    INDEX_FILE: DEFAULT_TEXT_LIMIT,
    TORCH_INDEX: DEFAULT_TEXT_LIMIT,
}
"""Small files read by every index and the most bytes fetched of each, requested as soon as a
source opens (with the first of :data:`~indexer.vocabulary.VOCABULARY_FILES` the revision lists)."""
_SHA = re.compile(r"^[0-9a-f]{40}$")
PLAN_MARGIN = 3  # times its read plan a model may read (a whole tensor evicted from the cache is read again)
PLAN_ALLOWANCE = MAX_TOKENIZER_BYTES + 32 * 2**20  # bytes beyond the plan: the small files still to come


class HubCheckpoint(TensorSource):
    """A model repo at one revision, read through HTTP range requests.

    ``files``: the repo's file names (siblings) at ``revision`` (a commit sha).  Weight files are
    chosen exactly like :class:`~indexer.local_checkpoint.LocalCheckpoint` does (the sharded index is
    fetched and parsed when present; pickle-only repos are a ``CheckpointError``); each shard's
    size comes from a ``HEAD``, then its header from at most two range reads.  ``budget_bytes``
    caps the body bytes this instance may receive; ``client`` is shared and not closed by
    :meth:`close` (one made here from ``token`` is).
    """

    def __init__(
        self,
        endpoint: str,
        repo_id: str,
        revision: str,
        files: Sequence[str],
        *,
        token: str | None = None,
        client: httpx.Client | None = None,
        budget_bytes: int | None = None,
        retry: RetryPolicy | None = None,
        concurrency: int = DEFAULT_CONCURRENCY,
        own_client: bool | None = None,
        deadlines: Deadlines | None = None,
    ) -> None:
        self.endpoint = endpoint.rstrip("/")
        self.repo_id, self.commit = repo_id, revision
        self.label = f"{self.endpoint}/{repo_id}@{revision}"
        self._own_client = client is None if own_client is None else own_client
        self._client = client if client is not None else hub_client(token)
        self._http = Fetcher(
            self._client,
            self.endpoint,
            token=token,
            retry=retry or RetryPolicy(),
            budget=budget_bytes,
            label=self.label,
            deadlines=deadlines,
        )
        self._http.start_clock(self._http.deadlines.model_base)  # the metadata phase: headers and small files
        self.concurrency = concurrency
        self._siblings = frozenset(files)
        self._weights: dict[str, RemoteFile] = {}
        self._cache = SpanCache(CACHE_LIMIT, MAX_COALESCED)
        self._ranges = ThreadPoolExecutor(
            max_workers=concurrency, thread_name_prefix="hub-range"
        )  # prefetch queue (FIFO)
        self.metadata: dict[str, str] = {}
        self.index: dict[str, Any] | None = None
        self._pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="hub-metadata")
        vocabulary = [n for n in VOCABULARY_FILES if n in self._siblings][:1]
        self._early: dict[str, Future[tuple[int, bytes | None] | None]] = {
            n: self._pool.submit(self._small_file, n, EARLY_FILES.get(n, MAX_TOKENIZER_BYTES))
            for n in (*EARLY_FILES, *vocabulary)
            if n in self._siblings
        }
        # the shards' headers are asked for with the index when the names say which they are
        self._header_reads = {
            f: self._pool.submit(self._read_header, f)
            for f in (standard_shard_names(self._siblings) if INDEX_FILE in self._siblings else [])
        }
        try:
            names = sorted(n for n in self._siblings if "/" not in n)  # the repo root, like iterdir
            self._tensors: Mapping[str, TensorInfo] = self._load_weight_headers(names, lambda f: f in self._siblings)
        except BaseException:
            self.close()
            raise

    def _missing_index(self, name: str = INDEX_FILE) -> Exception:
        return RepoGoneError(f"{name} is listed at this revision but the server does not have it", path=self.label)

    # -- accounting -------------------------------------------------------------------------
    @property
    def bytes_read(self) -> int:  # type: ignore[override]
        """Body bytes received (all requests: headers, tensors, small files, failed attempts)."""
        return self._http.bytes_read

    @property
    def budget_bytes(self) -> int | None:
        """The cap on body bytes this instance may receive (None: no cap); may be tightened once
        the weight sizes are known."""
        return self._http.budget

    @budget_bytes.setter
    def budget_bytes(self, value: int | None) -> None:
        self._http.budget = value

    def limit_reads(self, planned: int) -> None:
        """Bound the rest of this model by its read plan (``planned`` bytes, from the fingerprint
        and capture recipe): at most :data:`PLAN_MARGIN` times that plus :data:`PLAN_ALLOWANCE`
        more bytes, and :meth:`~crawler.http_deadline.Deadlines.for_model` seconds from now."""
        self.settle()
        allowed = self.bytes_read + PLAN_MARGIN * max(0, planned) + PLAN_ALLOWANCE
        self.budget_bytes = allowed if self.budget_bytes is None else min(self.budget_bytes, allowed)
        self._http.model_deadline = time.monotonic() + self._http.deadlines.for_model(planned)

    @property
    def weight_bytes(self) -> int:
        """Total size of the weight files in use (from their HEAD)."""
        return sum(self._weights[f].size for f in self._files if f in self._weights)

    @property
    def requests(self) -> int:
        """HTTP requests sent (redirect hops and retries included)."""
        return self._http.requests

    @property
    def files(self) -> list[str]:
        """The safetensors files in use (relative names)."""
        return list(self._files)

    def revision(self) -> str:
        """The revision this source reads (the commit sha it was opened at)."""
        return self.commit

    # -- remote files -----------------------------------------------------------------------
    def _url(self, file: str) -> str:
        return (
            f"{self.endpoint}/{quote(self.repo_id, safe='/')}/resolve/"
            f"{quote(self.commit, safe='')}/{quote(file, safe='/')}"
        )

    def _where(self, file: str) -> str:
        return f"{self.label}/{file}"

    def _head(self, file: str) -> RemoteFile | None:
        rf = self._http.head(file, self._url(file), self._where(file))
        if (
            rf is not None
            and rf.commit
            and _SHA.match(self.commit.lower())
            and rf.commit.lower() != self.commit.lower()
        ):
            raise RepoGoneError(
                f"asked for revision {self.commit} but the server answered with commit {rf.commit}",
                path=self._where(file),
            )
        return rf

    def _read_header(self, file: str) -> tuple[dict[str, TensorInfo], dict[str, str]]:
        where = self._where(file)
        rf = self._head(file)
        if rf is None:
            raise RepoGoneError(
                "weight file is listed at this revision but the server has no such file (the repo changed?)", path=where
            )
        self._weights[file] = rf
        first = bytearray(min(rf.size, SPECULATIVE_HEADER_READ))
        self._http.read_range(rf, 0, memoryview(first), where)
        if fmt.is_torch_file(file):
            return torch_zip_format.read_header(
                rf.size, lambda spans: self._read_spans(file, rf, spans), file=file, path=where, head=bytes(first)
            )
        n = fmt.header_length(first[:8], rf.size, where)
        if 8 + n <= len(first):
            header = first[8 : 8 + n]
        else:
            rest = bytearray(8 + n - len(first))
            self._http.read_range(rf, len(first), memoryview(rest), where)
            header = first[8:] + rest
        return fmt.parse_header(header, file_size=rf.size, file=file, path=where)

    def _read_spans(self, file: str, rf: RemoteFile, spans: Sequence[tuple[int, int]]) -> list[bytes]:
        """Spans of a weight file for a header parse (a zip's local headers): those closer than
        :data:`HEADER_GAP` merged into one range request, the requests in parallel."""
        groups = coalesce(((file, b, e) for b, e in spans), HEADER_GAP, MIN_PART, MAX_COALESCED)

        def fetch(begin: int, end: int) -> bytes:
            buf = bytearray(end - begin)
            self._http.read_range(rf, begin, memoryview(buf), self._where(file))
            return bytes(buf)

        futures = [self._ranges.submit(fetch, b, e) for _, b, e in groups]
        got = [(b, future.result()) for (_, b, _), future in zip(groups, futures)]
        out = []
        for begin, end in spans:
            start, data = next((s, d) for s, d in got if s <= begin and end <= s + len(d))
            out.append(data[begin - start : end - start])
        return out

    # -- TensorSource -----------------------------------------------------------------------
    def tensors(self) -> Mapping[str, TensorInfo]:
        return self._tensors

    def _check_span(self, file: str, begin: int, end: int) -> RemoteFile:
        rf = self._weights.get(file) if file in self._files else None
        if rf is None:
            raise CheckpointError(f"{file!r} is not a weight file of this checkpoint", path=self.label)
        if not 0 <= begin <= end <= rf.size:
            raise CheckpointError(f"span [{begin}, {end}) is outside the file (size {rf.size})", path=self._where(file))
        return rf

    def _read_into(self, file: str, begin: int, buf: memoryview) -> None:
        rf = self._check_span(file, begin, begin + len(buf))
        if len(buf) > MAX_COALESCED:  # the read plan keeps every tensor's share below this
            raise CheckpointError(f"refusing to read {len(buf)} bytes at once", path=self._where(file))
        if buf and not self._cache.copy_into(file, begin, buf):
            self._http.read_range(rf, begin, buf, self._where(file))

    def settle(self) -> None:
        """Wait until the early files' and shard headers' requests are answered (their errors
        are raised when read)."""
        pending: tuple[Future[Any], ...] = (*self._early.values(), *self._header_reads.values())
        for future in pending:
            future.exception()

    def _read_headers(self, files: list[str]) -> dict[str, tuple[dict[str, TensorInfo], dict[str, str]]]:
        """Every shard's header, the shards in parallel (each a ``HEAD`` and one or two range
        reads), those already asked for at open taken from that request."""
        if len(files) <= 1 and not self._header_reads:
            return super()._read_headers(files)
        futures = {f: self._header_reads.get(f) or self._pool.submit(self._read_header, f) for f in files}
        return {f: future.result() for f, future in futures.items()}

    def _small_file(self, filename: str, max_bytes: int) -> tuple[int, bytes | None] | None:
        """(size, body) of a small file - body None when it is larger than ``max_bytes`` (nothing
        downloaded) - or None on 404."""
        rf = self._head(filename)
        if rf is None:
            return None
        if rf.size > max_bytes:
            return rf.size, None
        return rf.size, self._http.read_whole(rf, self._where(filename))

    def read_bytes(self, filename: str, max_bytes: int = DEFAULT_TEXT_LIMIT) -> bytes | None:
        """A small file at the repo root; ``None`` if the revision does not list it (no request
        sent) or the server answers 404.  Its size (``HEAD``) is checked against ``max_bytes``
        before it is downloaded, and the body is never read past that size.  Files requested
        when the source opened (:data:`EARLY_FILES`) are taken from that request."""
        check_plain_name(filename, what="metadata file", path=self.label)
        if filename not in self._siblings:
            return None
        early = self._early.get(filename)
        answer = early.result() if early is not None else self._small_file(filename, max_bytes)
        if answer is not None and answer[1] is None and answer[0] <= max_bytes:
            answer = self._small_file(filename, max_bytes)  # asked for early with a smaller limit than this reader's
        if answer is None:
            return None
        size, body = answer
        if body is None or size > max_bytes:
            raise CheckpointError(
                f"is {size} bytes, larger than the {max_bytes}-byte limit", path=self._where(filename)
            )
        return body

    # -- prefetch ---------------------------------------------------------------------------
    def prefetch(self, names: Iterable[str], *, gap: int = 1 << 20) -> None:
        """Read whole tensors ahead (see :meth:`prefetch_rows`)."""
        self.prefetch_rows(((n, 0, self.info(n).rows) for n in names), gap=gap)

    def prefetch_rows(self, reads: Iterable[tuple[str, int, int]], *, gap: int | None = None) -> None:
        """Read rows ``[start, stop)`` of the given tensors ahead and cache them, so that the
        following ``read``/``read_rows`` inside those spans cost no request (see
        :meth:`prefetch_rows_async`, whose answer this waits for)."""
        self.prefetch_rows_async(reads, gap=gap).result()

    def prefetch_rows_async(self, reads: Iterable[tuple[str, int, int]], *, gap: int | None = None) -> Future[None]:
        """Queue the requests that cache rows ``[start, stop)`` of the given tensors; the answer
        is done when all of them are (or holds the first error).  Spans of the same file closer
        than ``gap`` bytes are merged into one request; by default the gap is what a request
        costs on this link in bytes (:meth:`~crawler.link_estimate.LinkEstimate.coalescing_gap`,
        between :data:`PREFETCH_GAP` and :data:`MAX_GAP`).  A merged request stays below
        ``max(MIN_PART, total / concurrency)`` bytes where the spans allow, so one batch keeps
        every connection busy.  Requests of all calls share one first-in-first-out queue served
        by :attr:`concurrency` connections: batches are fetched in the order they were queued,
        back to back, with no idle round trip between them.  The cache is bounded
        (:data:`CACHE_LIMIT`, least recently used dropped first)."""
        if gap is None:
            gap = self._http.link.coalescing_gap(self.concurrency, PREFETCH_GAP, MAX_GAP)
        spans = set()
        for name, start, stop in reads:
            t = self.info(name)
            if not 0 <= start <= stop <= t.rows or t.row_bits % 8:
                raise CheckpointError(f"cannot prefetch rows [{start}, {stop}) of tensor {name!r}", path=self.label)
            if stop > start:
                spans.add((t.file, t.begin + start * t.row_nbytes, t.begin + stop * t.row_nbytes))
        part = max(MIN_PART, sum(end - begin for _, begin, end in spans) // max(self.concurrency, 1))
        groups = coalesce(spans, gap, part, MAX_COALESCED)
        return _all_of([self._ranges.submit(self._fetch_span, *g) for g in groups if self._cache.pieces(*g) is None])

    def _fetch_span(self, file: str, begin: int, end: int) -> None:
        buf = memoryview(bytearray(end - begin))
        self._http.read_range(self._weights[file], begin, buf, self._where(file))
        self._cache.put(file, begin, buf)

    def close(self) -> None:
        """Wait for requests in flight, drop the cache; close the client only if this instance
        created it."""
        self._ranges.shutdown(wait=True, cancel_futures=True)
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._cache.clear()
        if self._own_client:
            self._client.close()


_STANDARD_SHARD = re.compile(r"^(?P<stem>[^/]+)-(?P<part>\d{5})-of-(?P<total>\d{5})\.safetensors$")


def standard_shard_names(names: Iterable[str]) -> list[str]:
    """The root's shard files when their names form exactly one complete standard set
    (``model-00001-of-00004.safetensors`` ...), else none: the index decides either way, this
    only lets their headers be asked for before it arrives."""
    groups: dict[tuple[str, str], set[str]] = {}
    for name in names:
        match = _STANDARD_SHARD.match(name)
        if match:
            groups.setdefault((match["stem"], match["total"]), set()).add(match["part"])
    complete = [
        (stem, total)
        for (stem, total), parts in groups.items()
        if parts == {f"{i:05d}" for i in range(1, int(total) + 1)}
    ]
    if len(complete) != 1:
        return []
    stem, total = complete[0]
    return [f"{stem}-{i:05d}-of-{total}.safetensors" for i in range(1, int(total) + 1)]


def _all_of(futures: list[Future[None]]) -> Future[None]:
    """A future done when every one of ``futures`` is, holding the first error raised."""
    done: Future[None] = Future()
    left = [len(futures)]
    lock = threading.Lock()

    def one_done(future: Future[None]) -> None:
        error = None if future.cancelled() else future.exception()
        with lock:
            left[0] -= 1
            finished = left[0] == 0
            if done.done():
                return
            if future.cancelled():
                done.cancel()
            elif error is not None:
                done.set_exception(error)
            elif finished:
                done.set_result(None)

    if not futures:
        done.set_result(None)
    for future in futures:
        future.add_done_callback(one_done)
    return done
