"""Models indexed from a Hub endpoint: their source URI, and reopening them for later stages.

An indexed model remembers where it was read from.  For a crawled model that is
``<endpoint>#<repo_id>@<sha>`` ('#' never occurs in an endpoint URL's path or in a repo id), so
the independence tests and the lineage stage read exactly the revision that was fingerprinted,
through the same range-reading source.
"""

from __future__ import annotations

import os

from huggingface_hub import HfApi

from pedigree.errors import ModelNotFoundError


def hub_uri(endpoint: str, repo_id: str, sha: str) -> str:
    return f"{endpoint.rstrip('/')}#{repo_id}@{sha}"


def is_hub_uri(source: str | None) -> bool:
    return bool(source) and source.startswith(("http://", "https://")) and "#" in source


def parse_hub_uri(uri: str) -> tuple[str, str, str]:
    """(endpoint, repo id, sha) of a crawled model's source."""
    endpoint, _, rest = uri.partition("#")
    repo_id, _, sha = rest.rpartition("@")
    if not endpoint or not repo_id or not sha:
        raise ModelNotFoundError(f"not a Hub source: {uri!r}")
    return endpoint, repo_id, sha


def open_hub(uri: str, token: str | None = None):
    """The crawled revision of a model, reopened through HTTP range reads."""
    from pedigree.crawler.http_source import HubCheckpoint

    endpoint, repo_id, sha = parse_hub_uri(uri)
    token = token or os.environ.get("HF_TOKEN") or None
    info = HfApi(endpoint=endpoint, token=token).model_info(repo_id, revision=sha)
    return HubCheckpoint(endpoint, repo_id, sha, [s.rfilename for s in info.siblings or []], token=token)
