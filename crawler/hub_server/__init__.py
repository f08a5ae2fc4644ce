"""A Hugging Face Hub-compatible HTTP server over a folder of checkpoints, for crawler tests.

``ROOT/ORG/NAME/`` folders become model repos; the server speaks enough of the Hub API for
huggingface_hub 2.4.0 (``list_models``, ``model_info``, ``list_repo_tree``, ``hf_hub_download``,
``get_safetensors_metadata``) and for a range-reading crawler, with deterministic fault injection
(:mod:`.faults`) and request accounting (:mod:`.stats`).

Modules: :mod:`.repos` (scanning, shas, revisions), :mod:`.cards` (front matter, tags),
:mod:`.api` (JSON endpoints), :mod:`.files` (resolve, CDN, ranges), :mod:`.auth` (tokens, gated,
private), :mod:`.faults`, :mod:`.stats`, :mod:`.app` (HTTP handler, routes, admin),
:mod:`.server` (:class:`HubServer`, :func:`serve`).
"""

from __future__ import annotations

from .faults import (
    FaultConfig,
    IgnoreRange,
    Mutation,
    RateLimit,
    Rule,
    ServerError,
    Slow,
    Truncate,
)
from .link import Link
from .repos import Repo, RepoFile, RepoStore, ScanReport
from .server import HubServer, serve
from .stats import RequestRecord, StatsSnapshot

__all__ = [
    "FaultConfig",
    "HubServer",
    "IgnoreRange",
    "Link",
    "Mutation",
    "RateLimit",
    "Repo",
    "RepoFile",
    "RepoStore",
    "RequestRecord",
    "Rule",
    "ScanReport",
    "ServerError",
    "Slow",
    "StatsSnapshot",
    "Truncate",
    "serve",
]
