"""What a route returns: status, headers and a body held in memory or a slice of a file."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import HubError


@dataclass
class FileSlice:
    """``length`` bytes of ``path`` from ``offset``; ``mtime``/``size`` are checked before sending."""

    path: Path
    offset: int
    length: int
    size: int
    mtime: float


@dataclass
class Response:
    """An answer; the writer adds ``Content-Length`` from the body or the file slice."""

    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    file: FileSlice | None = None

    @property
    def length(self) -> int:
        return self.file.length if self.file is not None else len(self.body)


def _header_safe(text: str) -> str:
    return text.encode("latin-1", errors="replace").decode("latin-1").replace("\r", " ").replace("\n", " ")


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    body = json.dumps(data, separators=(",", ":")).encode()
    return Response(status, {"Content-Type": "application/json; charset=utf-8", **(headers or {})}, body)


def error_response(error: HubError) -> Response:
    """JSON ``{"error": message}`` with ``X-Error-Code`` (when set) and ``X-Error-Message``."""
    headers = {"X-Error-Message": _header_safe(error.message), **error.headers}
    if error.code:
        headers["X-Error-Code"] = error.code
    return json_response({"error": error.message}, error.status, headers)
