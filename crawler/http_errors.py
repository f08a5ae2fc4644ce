"""What a non-success HTTP answer means: the status (and the Hub's ``X-Error-Code``) -> an error.

A pure mapping, used by every request the crawler sends: 429 and 5xx are :class:`Retryable`;
``RepoNotFound`` / ``RevisionNotFound`` mean the repo is gone; 401/403 mean gated or private; a
404 for the file itself is :class:`Missing` (the caller decides what absence means); a cached
redirect target (a signed CDN URL) that refuses us is :class:`Expired` (resolve again).
"""

from __future__ import annotations

import httpx

from pedigree.crawler.http_retry import Retryable, server_wait
from pedigree.errors import GatedRepoError, RemoteError, RepoGoneError


class Missing(Exception):
    """404 for the file itself (``EntryNotFound``)."""


class Expired(Exception):
    """The cached redirect target refused us (expired signed URL, blob gone): resolve again."""


def answer_error(status: int, headers: httpx.Headers, where: str, *, cached: bool = False) -> Exception:
    """The exception a non-success answer stands for (raise it)."""
    code = headers.get("x-error-code", "")[:100]
    message = headers.get("x-error-message", "")[:200]
    said = f"HTTP {status}" + (f" {code}" if code else "") + (f": {message}" if message else "")
    if status == 429:
        return Retryable("rate", said, status, server_wait(headers))
    if status >= 500:
        return Retryable("server", said, status, server_wait(headers))
    if code in ("RepoNotFound", "RevisionNotFound"):
        return RepoGoneError(
            f"repository or revision not found (deleted, moved or private): {said}", path=where, status=status
        )
    if code == "GatedRepo" or (status in (401, 403) and not cached):
        return GatedRepoError(
            f"access denied (gated or private repo; token missing or not allowed): {said}", path=where, status=status
        )
    if cached and status in (403, 404, 410):
        return Expired(said)
    if status == 404:
        return Missing(said)
    if status == 416:
        return RemoteError(
            f"range not satisfiable (did the file change on the server?): {said}", path=where, status=status
        )
    return RemoteError(f"unexpected answer {said}", path=where, status=status)
