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
- :class:`UsageError` - a request that cannot be carried out as given (bad option, missing folder).
- :class:`StorageError` - the DuckDB file or FAISS indexes are unusable (e.g. a newer schema).
- :class:`RemoteError` - the remote Hub (or mirror) did not give us what we asked for, with
  subclasses for why: :class:`RangeNotSupportedError` (a range request answered with the whole
  file), :class:`ByteBudgetExceededError` (the per-model byte budget would be exceeded; nothing
  was sent), :class:`TruncatedBodyError` (bodies kept ending early), :class:`RateLimitedError`
  (429 after every retry), :class:`RemoteServerError` (5xx or broken connections after every
  retry), :class:`GatedRepoError` (401/403: gated or private) and :class:`RepoGoneError` (the
  repo, revision or a weight file it listed is gone), :class:`DeadlineExceededError` (the server
  was slower than the request's or the model's wall-clock deadline).  Recorded per model like
  checkpoint errors.

Every message is cut to :data:`MAX_ERROR_CHARS` (:func:`clip`): a hostile input (a shape of two
million dimensions, a header full of names) makes a one-line reason, never megabytes of one.
"""

from __future__ import annotations

MAX_ERROR_CHARS = 1000
"""The longest error text pedigree stores or shows (longer ones keep their start and say how much was cut)."""


def clip(text: str, limit: int = MAX_ERROR_CHARS) -> str:
    """``text`` if it is at most ``limit`` characters, else its start and how many characters were cut."""
    if len(text) <= limit:
        return text
    keep = max(0, limit - 40)
    return f"{text[:keep]}... [{len(text) - keep} more characters]"


class PedigreeError(Exception):
    """Base class of every error pedigree raises deliberately (its text clipped, :func:`clip`)."""

    def __init__(self, *args: object) -> None:
        super().__init__(*(clip(a) if isinstance(a, str) else a for a in args))


class CheckpointError(PedigreeError):
    """A checkpoint cannot be read safely; the message says which file and why."""

    def __init__(self, message: str, *, path: str | None = None) -> None:
        self.path = path
        super().__init__(f"{path}: {message}" if path else message)


class UnsupportedModelError(PedigreeError):
    """A well-formed checkpoint whose architecture pedigree cannot map to roles."""


class ModelNotFoundError(PedigreeError):
    """The model id is not in the index (and is not a checkpoint folder either)."""


class UsageError(PedigreeError):
    """A request that cannot be carried out as given (a bad option value, an output folder that
    does not exist, ...)."""


class EvidenceMissingError(PedigreeError):
    """What a test or the lineage stage needs of an indexed model is not in its evidence store
    (not captured, or the file is gone or unreadable, and the source is unavailable)."""


class StorageError(PedigreeError):
    """The DuckDB database or the FAISS indexes beside it cannot be used."""


class RemoteError(PedigreeError):
    """The remote Hub (or mirror) did not give us what we asked for.

    ``path`` names the repo (and file) asked for, ``status`` the last HTTP status (if any).
    """

    def __init__(self, message: str, *, path: str | None = None, status: int | None = None) -> None:
        self.path = path
        self.status = status
        super().__init__(f"{path}: {message}" if path else message)


class RangeNotSupportedError(RemoteError):
    """A range request was answered without a matching 206 (e.g. 200 with the whole file)."""


class ByteBudgetExceededError(RemoteError):
    """Reading more would exceed the model's byte budget; the request was not sent."""


class TruncatedBodyError(RemoteError):
    """[transient: the crawler retries on its next run] Response bodies ended before the declared
    length on every attempt."""

    transient = True


class RateLimitedError(RemoteError):
    """[transient: the crawler retries on its next run] Still answered 429 Too Many Requests after every retry."""

    transient = True


class RemoteServerError(RemoteError):
    """[transient: the crawler retries on its next run] Still answered 5xx (or the connection kept
    failing) after every retry."""

    transient = True


class GatedRepoError(RemoteError):
    """401/403: the repo is gated or private and our token (if any) may not read it."""


class DeadlineExceededError(RemoteError):
    """[transient: the crawler retries on its next run] The server was slower than the wall-clock
    deadline of a request (after every retry) or of the whole model: a trickle cannot hold a crawl."""

    transient = True


class RepoGoneError(RemoteError):
    """The repo, the revision, or a weight file the revision listed no longer exists."""
