"""A GGUF model repo read through HTTP range requests: the remote :class:`GGUFFile` that lets
:class:`~indexer.gguf_checkpoint.GGUFCheckpoint` read a ``.gguf`` on a Hub-compatible endpoint.

Same rules as :mod:`.http_source`: the file's size comes from a ``HEAD`` before any range of it is
trusted, every range is checked against it and is a strict ``206`` (:class:`~.http_fetch.Fetcher`),
small files beside the weights are read only when the revision lists them and their ``HEAD`` size
is within the reader's limit; a ``HEAD`` answered for another commit than the one asked for is
:class:`~pedigree.errors.RepoGoneError`.  The header is read in growing chunks (64 KiB first) by the
GGUF parser; the rows a stage is about to read are prefetched as coalesced spans into a bounded cache.

A crawl bounds a GGUF repo as it bounds a safetensors one (:mod:`.crawl`): the byte budget is set
from the file's ``HEAD`` size before its header is read, the metadata phase runs under the model's
base deadline, and :meth:`HubGGUFCheckpoint.limit_reads` shrinks both to the read plan.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import quote

import httpx

from pedigree.crawler.http_client import hub_client
from pedigree.crawler.http_deadline import Deadlines
from pedigree.crawler.http_fetch import Fetcher, RemoteFile
from pedigree.crawler.http_retry import RetryPolicy
from pedigree.crawler.http_source import PLAN_ALLOWANCE, PLAN_MARGIN
from pedigree.crawler.span_cache import SpanCache, coalesce
from pedigree.errors import CheckpointError, RepoGoneError
from pedigree.indexer.gguf_checkpoint import GGUFCheckpoint, only_gguf

CACHE_LIMIT = 512 * 2**20
MAX_REQUEST = 256 * 2**20
GAP = 64 * 1024
"""Row spans closer than this are fetched by one request."""
CONCURRENCY = 8
_SHA = re.compile(r"^[0-9a-f]{40}$")


class HubGGUFFile:
    """The one ``.gguf`` of a repo revision, read by range requests."""

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
        own_client: bool | None = None,
        deadlines: Deadlines | None = None,
    ) -> None:
        self.endpoint, self.repo_id, self.commit = endpoint.rstrip("/"), repo_id, revision
        self.label = f"{self.endpoint}/{repo_id}@{revision}"
        self._siblings = frozenset(f for f in files if "/" not in f)
        found = only_gguf(self._siblings, self.label)
        if found is None:
            raise CheckpointError("no .gguf file at the repo root", path=self.label)
        self.name = found
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
        self._http.start_clock(self._http.deadlines.model_base)  # the metadata phase: HEAD, header, card
        self._cache = SpanCache(CACHE_LIMIT, MAX_REQUEST)
        self._pool = ThreadPoolExecutor(max_workers=CONCURRENCY, thread_name_prefix="hub-gguf")
        try:
            rf = self._head(self.name)
        except BaseException:
            self.close()
            raise
        if rf is None:
            self.close()
            raise RepoGoneError("the .gguf is listed at this revision but the server does not have it", path=self.label)
        self._rf: RemoteFile = rf
        self.size = rf.size

    @property
    def bytes_read(self) -> int:
        """Body bytes received (header, rows, small files, failed attempts)."""
        return self._http.bytes_read

    @property
    def requests(self) -> int:
        return self._http.requests

    @property
    def weight_bytes(self) -> int:
        """The ``.gguf``'s size (from its ``HEAD``)."""
        return self.size

    @property
    def budget_bytes(self) -> int | None:
        """The cap on body bytes this file may receive (None: no cap)."""
        return self._http.budget

    @budget_bytes.setter
    def budget_bytes(self, value: int | None) -> None:
        self._http.budget = value

    def limit_reads(self, planned: int) -> None:
        """Bound the rest of this model by its read plan exactly as
        :meth:`~.http_source.HubCheckpoint.limit_reads` does (bytes and wall clock)."""
        allowed = self.bytes_read + PLAN_MARGIN * max(0, planned) + PLAN_ALLOWANCE
        self.budget_bytes = allowed if self.budget_bytes is None else min(self.budget_bytes, allowed)
        self._http.model_deadline = time.monotonic() + self._http.deadlines.for_model(planned)

    def _url(self, file: str) -> str:
        return (
            f"{self.endpoint}/{quote(self.repo_id, safe='/')}/resolve/"
            f"{quote(self.commit, safe='')}/{quote(file, safe='/')}"
        )

    def _head(self, file: str) -> RemoteFile | None:
        where = f"{self.label}/{file}"
        rf = self._http.head(file, self._url(file), where)
        if (
            rf is not None
            and rf.commit
            and _SHA.match(self.commit.lower())
            and rf.commit.lower() != self.commit.lower()
        ):
            raise RepoGoneError(
                f"asked for revision {self.commit} but the server answered with commit {rf.commit}", path=where
            )
        return rf

    def read(self, begin: int, end: int) -> bytes:
        if not 0 <= begin <= end <= self.size:
            raise CheckpointError(f"span [{begin}, {end}) is outside the file (size {self.size})", path=self.label)
        if end - begin > MAX_REQUEST:
            raise CheckpointError(f"refusing to read {end - begin} bytes at once", path=self.label)
        buf = memoryview(bytearray(end - begin))
        if buf and not self._cache.copy_into(self.name, begin, buf):
            self._http.read_range(self._rf, begin, buf, f"{self.label}/{self.name}")
            self._cache.put(self.name, begin, buf)  # stages read the same rows again (signatures, capture)
        return bytes(buf)

    def read_side(self, filename: str, max_bytes: int) -> bytes | None:
        if filename not in self._siblings:
            return None
        rf = self._head(filename)
        if rf is None:
            return None
        if rf.size > max_bytes:
            raise CheckpointError(
                f"is {rf.size} bytes, larger than the {max_bytes}-byte limit", path=f"{self.label}/{filename}"
            )
        return self._http.read_whole(rf, f"{self.label}/{filename}")

    def prefetch(self, spans: list[tuple[int, int]]) -> None:
        """Fetch these byte spans into the cache: coalesced, one request each, in parallel."""
        groups = coalesce(((self.name, b, e) for b, e in spans), GAP, MAX_REQUEST, MAX_REQUEST)
        missing = [(b, e) for _, b, e in groups if self._cache.pieces(self.name, b, e) is None]
        for future in [self._pool.submit(self._fetch, b, e) for b, e in missing]:
            future.result()

    def _fetch(self, begin: int, end: int) -> None:
        buf = memoryview(bytearray(end - begin))
        self._http.read_range(self._rf, begin, buf, f"{self.label}/{self.name}")
        self._cache.put(self.name, begin, buf)

    def revision(self) -> str:
        return self.commit

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._cache.clear()
        if self._own_client:
            self._client.close()


class HubGGUFCheckpoint(GGUFCheckpoint):
    """A GGUF checkpoint read from a Hub repo: :class:`GGUFCheckpoint` with the crawler's
    accounting and bounds (``budget_bytes``, ``weight_bytes``, ``requests``, ``limit_reads``)."""

    def __init__(self, file: HubGGUFFile) -> None:
        self.hub_file = file
        super().__init__(file)  # type: ignore[arg-type]  # bytes_read is a read-only property here

    @property
    def budget_bytes(self) -> int | None:
        return self.hub_file.budget_bytes

    @budget_bytes.setter
    def budget_bytes(self, value: int | None) -> None:
        self.hub_file.budget_bytes = value

    @property
    def weight_bytes(self) -> int:
        return self.hub_file.weight_bytes

    @property
    def requests(self) -> int:
        return self.hub_file.requests

    def limit_reads(self, planned: int) -> None:
        self.hub_file.limit_reads(planned)


def open_hub_gguf(
    endpoint: str, repo_id: str, revision: str, files: Sequence[str], **options: object
) -> HubGGUFCheckpoint:
    """The GGUF checkpoint of a repo revision whose weights are one ``.gguf``."""
    return HubGGUFCheckpoint(HubGGUFFile(endpoint, repo_id, revision, files, **options))  # type: ignore[arg-type]
