"""Tokens, private repos and gated repos.

``tokens`` is either a collection of tokens (each may read every gated/private repo) or a mapping
``token -> repo ids it may read`` (``None`` = all).  Requests send ``Authorization: Bearer <token>``.

* Private repo: invisible (404 ``RepoNotFound``, absent from listings) unless the token may read it.
* Gated repo: metadata (listing, info, tree) is open; file bytes (``/resolve``) need an allowed
  token: no token -> 401 ``GatedRepo``, any other token -> 403 ``GatedRepo``.  The CDN path is a
  signed URL and does not check tokens (as on the Hub).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from email.message import Message

from .errors import HubError

TokenSpec = Mapping[str, Collection[str] | None] | Collection[str]


class Access:
    """Who may read which repo."""

    def __init__(self, tokens: TokenSpec | None = None) -> None:
        self.set_tokens(tokens)

    def set_tokens(self, tokens: TokenSpec | None) -> None:
        if tokens is None:
            self._grants: dict[str, frozenset[str] | None] = {}
        elif isinstance(tokens, Mapping):
            self._grants = {t: None if ids is None else frozenset(ids) for t, ids in tokens.items()}
        else:
            self._grants = dict.fromkeys(tokens, None)

    @staticmethod
    def token(headers: Message) -> str | None:
        """The bearer token of a request, if any."""
        value = headers.get("Authorization") or ""
        scheme, _, token = value.partition(" ")
        return token.strip() or None if scheme.lower() == "bearer" else None

    def allowed(self, token: str | None, repo_id: str) -> bool:
        if token is None or token not in self._grants:
            return False
        ids = self._grants[token]
        return ids is None or repo_id in ids

    def require_files(self, repo_id: str, gated: bool | str, token: str | None) -> None:
        """Raise 401/403 ``GatedRepo`` when file bytes of a gated repo are not allowed."""
        if not gated or self.allowed(token, repo_id):
            return
        if token is None:
            raise HubError(
                401,
                "GatedRepo",
                f"Access to model {repo_id} is restricted. You must have access to "
                "it and be authenticated to access it. Please log in.",
            )
        raise HubError(
            403,
            "GatedRepo",
            f"Access to model {repo_id} is restricted and you are not in the "
            f"authorized list. Visit /{repo_id} to ask for access.",
        )
