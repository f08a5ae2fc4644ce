"""Reopening an indexed model's checkpoint from the location recorded at ingest.

A model remembers where it was read from: a folder path, or a URI whose scheme says which reader
reopens it (a crawled Hub revision is ``<endpoint>#<repo_id>@<sha>``, read by range requests).
Readers register themselves by scheme (:func:`register_opener`; the crawler registers ``http``
and ``https`` when it is imported), so this layer never imports the crawler.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

from pedigree.errors import ModelNotFoundError
from pedigree.indexer.local_checkpoint import open_checkpoint
from pedigree.indexer.sources import TensorSource

Opener = Callable[[str], TensorSource]
_OPENERS: dict[str, Opener] = {}


def register_opener(scheme: str, opener: Opener) -> None:
    """Read locations ``scheme://...`` with ``opener`` (the last registration wins)."""
    _OPENERS[scheme.lower()] = opener


def location_scheme(location: str) -> str | None:
    """The URI scheme of ``location``, or None for a filesystem path (``C:\\`` included)."""
    scheme = urlsplit(location).scheme.lower()
    return scheme if len(scheme) > 1 else None


def open_location(location: str | None, model_id: str) -> TensorSource:
    """The checkpoint at ``location`` (a folder or a registered URI), or ModelNotFoundError."""
    if not location:
        raise ModelNotFoundError(f"{model_id}: no source location was recorded")
    scheme = location_scheme(location)
    if scheme is not None:
        opener = _OPENERS.get(scheme)
        if opener is None:
            raise ModelNotFoundError(f"{model_id}: no reader for {scheme}:// locations is loaded")
        return opener(location)
    if not Path(location).is_dir():
        raise ModelNotFoundError(f"{model_id}: its checkpoint {location!r} is no longer available")
    return open_checkpoint(location)
