"""The seam where a test harness may change how the server answers (the server itself never does).

:class:`ServerHooks` is a well-behaved Hub: it decides nothing, gates nothing and changes nothing
on disk.  The fault-injection harness used by tests and benchmarks (``bench/hub_faults.py``, not
installed) subclasses it; the server users run as a mirror (``pedigree hub serve``) always uses
this class as it is.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .repos import RepoStore
    from .response import Response


@dataclass
class Decision:
    """What to do to one request: delay it, answer an error, or serve it altered."""

    delay: float = 0.0
    status: int | None = None
    headers: dict[str, str] = field(default_factory=dict)
    message: str = ""
    truncate: float | None = None
    ignore_range: bool = False
    fired: list[str] = field(default_factory=list)


class ServerHooks:
    """No faults: every request is served as it is."""

    def decide(self, kind: str, path: str) -> Decision:
        """Called once per non-admin request, before it is answered."""
        return Decision()

    def gated(self, repo_id: str) -> str | None:
        """An override of the repo's gating (``"auto"`` / ``"manual"``), or None."""
        return None

    def private(self, repo_id: str) -> bool:
        """Whether to treat the repo as private."""
        return False

    def after_list_page(self, store: RepoStore) -> None:
        """Called after each ``/api/models`` page is computed (before it is sent)."""

    def before_resolve(self, store: RepoStore) -> None:
        """Called before each ``/resolve`` request is answered."""

    def admin(self, name: str, method: str, body: bytes) -> Response | None:
        """Answer an extra ``/_pedigree/<name>`` endpoint, or None for 404."""
        return None
