"""A PEFT LoRA adapter repo read through HTTP range requests (issue 16, part 6).

A repo whose root holds ``adapter_config.json`` and no full weights
(:func:`~indexer.peft_adapter.adapter_only`) is read as an adapter: the config and the *header* of
``adapter_model.safetensors`` (or the zip directory and ``data.pkl`` of ``adapter_model.bin``,
never unpickled) through :class:`~.http_source.HubCheckpoint` - so every file is sized by its
``HEAD`` before a range of it is trusted, a ``HEAD`` for another commit is
:class:`~pedigree.errors.RepoGoneError`, and the config is refused above
:data:`~indexer.peft_adapter.MAX_ADAPTER_CONFIG_BYTES` before its body is asked for.  The source
is opened over those two files only (no card, tokenizer or config.json is fetched) under a byte
budget of :data:`HEADER_BUDGET` while the weights' header is read, then of
:data:`~indexer.peft_adapter.MAX_ADAPTER_CONFIG_BYTES` more for the config, whatever the files
claim.  The LoRA values are not asked for: only the header's first read is speculative (at most
:data:`~.http_source.SPECULATIVE_HEADER_READ` bytes, which covers the whole file of a tiny
adapter).  The config is then parsed within :mod:`~indexer.bounded_json`'s bounds and validated
exactly as a local adapter folder's is (:func:`~indexer.peft_adapter.adapter_info`).
"""

from __future__ import annotations

from collections.abc import Sequence

import httpx

from pedigree.crawler.http_retry import RetryPolicy
from pedigree.crawler.http_source import SPECULATIVE_HEADER_READ, HubCheckpoint
from pedigree.errors import RepoGoneError
from pedigree.indexer.peft_adapter import (
    ADAPTER_CONFIG,
    MAX_ADAPTER_CONFIG_BYTES,
    MAX_ADAPTER_HEADER_BYTES,
    AdapterInfo,
    adapter_info,
    adapter_weights_file,
    no_weights_error,
)

HEADER_BUDGET = 8 + MAX_ADAPTER_HEADER_BYTES + SPECULATIVE_HEADER_READ
"""Most body bytes the adapter weights' header (or zip directory and ``data.pkl``) may cost; an
adapter repo costs at most this plus ``MAX_ADAPTER_CONFIG_BYTES``."""


class HubAdapterReader:
    """Reads one adapter repo revision; :attr:`bytes_read` and :attr:`requests` count what it
    cost (also when it failed after the source opened)."""

    def __init__(
        self,
        endpoint: str,
        repo_id: str,
        revision: str,
        files: Sequence[str],
        *,
        client: httpx.Client,
        token: str | None = None,
        retry: RetryPolicy | None = None,
    ) -> None:
        self.endpoint, self.repo_id, self.revision = endpoint.rstrip("/"), repo_id, revision
        self.files = tuple(f for f in files if "/" not in f)
        self.client, self.token, self.retry = client, token, retry
        self.label = f"{self.endpoint}/{repo_id}@{revision}"
        self.bytes_read = 0
        self.requests = 0
        self.weights_size: int | None = None

    def read(self) -> AdapterInfo:
        """The validated adapter (``CheckpointError`` for a malformed one, ``UnsupportedModelError``
        for another PEFT type, a ``RemoteError`` when the server fails us)."""
        weights = adapter_weights_file(self.files)
        if weights is None:
            raise no_weights_error(self.label)
        source = HubCheckpoint(
            self.endpoint,
            self.repo_id,
            self.revision,
            [ADAPTER_CONFIG, weights],
            token=self.token,
            client=self.client,
            own_client=False,
            budget_bytes=HEADER_BUDGET,
            retry=self.retry,
        )
        try:
            source.budget_bytes = source.bytes_read + MAX_ADAPTER_CONFIG_BYTES
            self.weights_size = source.weight_bytes
            raw = source.read_bytes(ADAPTER_CONFIG, MAX_ADAPTER_CONFIG_BYTES)
            if raw is None:
                raise RepoGoneError(
                    f"{ADAPTER_CONFIG} is listed at this revision but the server does not have it", path=self.label
                )
            shapes = {name: t.shape for name, t in source.tensors().items()}
            return adapter_info(raw, f"{self.label}/{ADAPTER_CONFIG}", shapes, f"{self.label}/{weights}", weights)
        finally:
            self.bytes_read, self.requests = source.bytes_read, source.requests
            source.close()
