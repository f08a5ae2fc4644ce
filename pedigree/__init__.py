"""pedigree: a provenance index for model weights - what is this model derived from?

The library API is :class:`Workspace` (one data folder: DuckDB + FAISS + evidence) and the typed
results it returns; the ``pedigree`` command is a thin shell over it::

    from pedigree import Workspace, load_settings

    with Workspace(load_settings("pedigree-data")) as ws:
        ws.ingest("zoo/")
        print(ws.query("atlas/tinyllama-a").to_json())

Importing pedigree is cheap (torch, faiss and duckdb load only when a workspace needs them) and
changes nothing in the process environment.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pedigree._version import __version__


def _source_checkout_path() -> None:
    """Run from a source checkout, find ``pedigree.crawler`` etc. in their top-level folders.

    The design keeps ``crawler/``, ``indexer/``, ``storage/`` and ``query/`` beside ``pedigree/``;
    an install maps them to ``pedigree.<name>`` (``package-dir`` in pyproject.toml).  When this
    file is imported straight from a checkout (``python -m pytest`` at the repository root, before
    or without an install), the checkout's root joins this package's search path so the same
    names resolve to the same folders.
    """
    here = Path(__file__).resolve().parent
    root = here.parent
    if (root / "pyproject.toml").is_file() and (root / "indexer" / "__init__.py").is_file():
        if not (here / "indexer").exists() and str(root) not in __path__:
            __path__.append(str(root))


_source_checkout_path()

# Public API, imported on first use (PEP 562) so that ``import pedigree`` stays light.
_EXPORTS: dict[str, str] = {
    "Workspace": "pedigree.workspace",
    "IngestResult": "pedigree.results",
    "Related": "pedigree.results",
    "RelatedModel": "pedigree.results",
    "Comparison": "pedigree.results",
    "PairMatrix": "pedigree.results",
    "LineageAnswer": "pedigree.results",
    "RefreshSummary": "pedigree.results",
    "StatusReport": "pedigree.results",
    "Discrepancies": "pedigree.results",
    "GraphBuild": "pedigree.results",
    "Status": "pedigree.types",
    "Settings": "pedigree.config",
    "load_settings": "pedigree.config",
    "PedigreeError": "pedigree.errors",
    "CheckpointError": "pedigree.errors",
    "UnsupportedModelError": "pedigree.errors",
    "ModelNotFoundError": "pedigree.errors",
    "StorageError": "pedigree.errors",
    "RemoteError": "pedigree.errors",
    "UsageError": "pedigree.errors",
}
__all__ = [
    "__version__",
    "Workspace",
    "IngestResult",
    "Related",
    "RelatedModel",
    "Comparison",
    "PairMatrix",
    "LineageAnswer",
    "RefreshSummary",
    "StatusReport",
    "Discrepancies",
    "GraphBuild",
    "Status",
    "Settings",
    "load_settings",
    "PedigreeError",
    "CheckpointError",
    "UnsupportedModelError",
    "ModelNotFoundError",
    "StorageError",
    "RemoteError",
    "UsageError",
]

if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs
    from pedigree.config import Settings, load_settings
    from pedigree.errors import (
        CheckpointError,
        ModelNotFoundError,
        PedigreeError,
        RemoteError,
        StorageError,
        UnsupportedModelError,
        UsageError,
    )
    from pedigree.results import (
        Comparison,
        Discrepancies,
        GraphBuild,
        IngestResult,
        LineageAnswer,
        PairMatrix,
        RefreshSummary,
        Related,
        RelatedModel,
        StatusReport,
    )
    from pedigree.types import Status
    from pedigree.workspace import Workspace


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'pedigree' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
