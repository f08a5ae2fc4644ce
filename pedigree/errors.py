"""The error hierarchy shared by every stage.

Every error pedigree raises on purpose derives from :class:`PedigreeError`, so a caller (the CLI,
the crawler's per-model loop) can catch one class, record ``str(error)`` for that model and carry
on.  The subclasses say *whose* fault it is:

- :class:`CheckpointError` - the checkpoint itself is unreadable, malformed or hostile (bad
  safetensors header, offsets outside the file, pickle-only weights, ...).  Recorded per model as
  ``failed``; nothing else is affected.
- :class:`UnsupportedModelError` - the checkpoint is well formed but its architecture has no
  adapter yet.  Recorded as ``unsupported: <reason>``.
- :class:`ModelNotFoundError` - a model id asked for is not in the index.
- :class:`StorageError` - the DuckDB file or FAISS indexes are unusable (e.g. a newer schema).
"""

from __future__ import annotations


class PedigreeError(Exception):
    """Base class of every error pedigree raises deliberately."""


class CheckpointError(PedigreeError):
    """A checkpoint cannot be read safely; the message says which file and why."""

    def __init__(self, message: str, *, path: str | None = None) -> None:
        self.path = path
        super().__init__(f"{path}: {message}" if path else message)


class UnsupportedModelError(PedigreeError):
    """A well-formed checkpoint whose architecture pedigree cannot map to roles."""


class ModelNotFoundError(PedigreeError):
    """The model id is not in the index (and is not a checkpoint folder either)."""


class StorageError(PedigreeError):
    """The DuckDB database or the FAISS indexes beside it cannot be used."""
