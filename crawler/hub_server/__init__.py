"""A Hugging Face Hub-compatible HTTP server over a folder of checkpoints, for crawler tests.

``ROOT/ORG/NAME/`` folders become model repos; the server speaks enough of the Hub API for
huggingface_hub 2.4.0 (``list_models``, ``model_info``, ``list_repo_tree``, ``hf_hub_download``,
``get_safetensors_metadata``) and for a range-reading crawler, with request accounting
(:mod:`.stats`).  Fault injection is a test harness outside the package (``bench/hub_faults.py``)
that plugs into :mod:`.hooks`.

Hostile input: admin endpoints (``/_pedigree/...``) exist only with an ``admin_token`` and need it;
only regular files inside the served root are served; a hostile repo is skipped, or loses the bad
fact, with a logged reason (:attr:`RepoStore.skipped`); idle connections time out; numeric headers
and cursors are bounded (4xx, never 500).

Modules: :mod:`.repos` (scanning, shas, revisions), :mod:`.paths` (repo ids, containment, safe
opening, the file walk), :mod:`.facts` (bounded card/config/header facts), :mod:`.cards` (front
matter with bounds, tags),
:mod:`.api` (JSON endpoints), :mod:`.files` (resolve, CDN, ranges), :mod:`.auth` (tokens, gated,
private), :mod:`.hooks`, :mod:`.stats`, :mod:`.app` (HTTP handler, routes, admin),
:mod:`.server` (:class:`HubServer`, :func:`serve`).
"""

from __future__ import annotations

from .hooks import Decision, ServerHooks
from .link import Link
from .repos import Repo, RepoFile, RepoStore, ScanReport
from .server import HubServer, serve
from .stats import RequestRecord, StatsSnapshot

__all__ = [
    "Decision",
    "ServerHooks",
    "HubServer",
    "Link",
    "Repo",
    "RepoFile",
    "RepoStore",
    "RequestRecord",
    "ScanReport",
    "StatsSnapshot",
    "serve",
]
