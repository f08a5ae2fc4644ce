"""Hub-style errors: an HTTP status plus the ``X-Error-Code`` that huggingface_hub maps to exceptions.

huggingface_hub's ``hf_raise_for_status`` keys on ``X-Error-Code`` (``RepoNotFound``,
``RevisionNotFound``, ``EntryNotFound``, ``GatedRepo``); over ``http://`` a bare 401/404 without
it becomes a generic ``HfHubHTTPError``, so every error this server sends carries the code, the
``X-Error-Message`` header and a JSON body ``{"error": message}``.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class HubError(Exception):
    """An error answer: ``status``, optional ``code`` (``X-Error-Code``), message, extra headers."""

    status: int
    code: str | None
    message: str
    headers: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        return f"{self.status} {self.code or ''}: {self.message}".strip()


def repo_not_found(repo_id: str) -> HubError:
    """404 ``RepoNotFound`` (also what a private repo looks like without an allowed token)."""
    return HubError(404, "RepoNotFound", f"Repository not found: {repo_id}")


def revision_not_found(repo_id: str, revision: str, detail: str = "") -> HubError:
    """404 ``RevisionNotFound``."""
    msg = f"Invalid rev id: {revision} for {repo_id}"
    return HubError(404, "RevisionNotFound", f"{msg} ({detail})" if detail else msg)


def entry_not_found(repo_id: str, path: str, commit: str | None = None) -> HubError:
    """404 ``EntryNotFound``; carries ``X-Repo-Commit`` so clients can cache the absence."""
    headers = {"X-Repo-Commit": commit} if commit else {}
    return HubError(404, "EntryNotFound", f"Entry not found: {repo_id}/{path}", headers)


def bad_request(message: str) -> HubError:
    """400 without an error code (huggingface_hub raises ``BadRequestError``)."""
    return HubError(400, None, message)
