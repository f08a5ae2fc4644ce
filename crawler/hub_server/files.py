"""File bytes: ``/resolve`` (direct or 302 to the CDN path), the CDN path, and HTTP ranges.

Ranges: one ``bytes=a-b`` (end clamped to EOF), ``bytes=a-`` or ``bytes=-n`` (suffix) -> 206 with
``Content-Range: bytes a-b/total``; a first byte at or past EOF (or any range of an empty file)
-> 416 with ``Content-Range: bytes */total``; several ranges (a comma) -> 416 (multi-range is not
supported); a header that does not parse is ignored (200, whole file), as RFC 9110 allows.
Numbers of any length are read without overflow (past 18 digits a number is past any file's end),
so no ``Range`` value can cause a 500.

``/resolve`` for an LFS file (``*.safetensors`` etc. or >= the size threshold) answers 302 to
``{cdn}/_cdn/{sha256}/{name}?repo=…&file=…&commit=…&Expires=…`` with ``X-Repo-Commit``,
``X-Linked-Etag`` (``"sha256"``), ``X-Linked-Size`` and ``ETag`` (the pointer's git oid).  The
CDN answers with ``ETag: "sha256"`` and, because huggingface_hub follows same-origin redirects on
HEAD and then needs them, also ``X-Repo-Commit`` (from the URL) and ``X-Linked-Size``.  Other
files are served directly with ``ETag`` (git blob oid), ``X-Repo-Commit``, ``Accept-Ranges``.
"""

from __future__ import annotations

import re
import time
from urllib.parse import quote, urlencode

from .errors import HubError, entry_not_found
from .repos import Repo, RepoFile
from .response import FileSlice, Response

_RANGE = re.compile(r"^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$", re.IGNORECASE)
_TYPES = {
    ".json": "application/json",
    ".md": "text/markdown; charset=utf-8",
    ".txt": "text/plain; charset=utf-8",
    ".py": "text/x-python; charset=utf-8",
    ".yaml": "text/yaml; charset=utf-8",
}


_HUGE = 10**18
_MAX_RANGE_HEADER = 8192


def _number(digits: str) -> int:
    """A decimal of any length, capped at 10**18 (larger than any file)."""
    digits = digits.lstrip("0") or "0"
    return int(digits) if len(digits) <= 18 else _HUGE


def unsatisfiable(total: int, why: str) -> HubError:
    return HubError(416, None, f"Range Not Satisfiable: {why}", {"Content-Range": f"bytes */{total}"})


def parse_range(header: str | None, total: int) -> tuple[int, int] | None:
    """Inclusive ``(first, last)`` for a ``Range`` header, ``None`` for the whole file; 416 as HubError."""
    if not header:
        return None
    if len(header) > _MAX_RANGE_HEADER:
        return None
    if "," in header:
        raise unsatisfiable(total, "multiple ranges are not supported")
    m = _RANGE.match(header)
    if not m or (not m.group(1) and not m.group(2)):
        return None
    first_s, last_s = m.groups()
    if not first_s:  # suffix: the last n bytes
        n = _number(last_s)
        if n == 0 or total == 0:
            raise unsatisfiable(total, f"an empty suffix range or an empty {total}-byte file")
        return max(0, total - n), total - 1
    first = _number(first_s)
    last = _number(last_s) if last_s else total - 1
    if last_s and last < first:
        return None  # invalid range-spec: ignored
    if first >= total:
        raise unsatisfiable(total, f"the range starts at or past the end of a {total}-byte file")
    return first, min(last, total - 1)


def content_type(name: str) -> str:
    for suffix, ctype in _TYPES.items():
        if name.endswith(suffix):
            return ctype
    return "application/octet-stream"


def file_response(f: RepoFile, range_header: str | None, headers: dict[str, str]) -> Response:
    """200 (whole file) or 206 (one range) for ``f``, body streamed from disk by the writer."""
    span = parse_range(range_header, f.size)
    headers = {"Accept-Ranges": "bytes", "Content-Type": content_type(f.path), **headers}
    if span is None:
        return Response(200, headers, file=FileSlice(f.abs_path, 0, f.size, f.size, f.mtime))
    first, last = span
    headers["Content-Range"] = f"bytes {first}-{last}/{f.size}"
    return Response(206, headers, file=FileSlice(f.abs_path, first, last - first + 1, f.size, f.mtime))


def resolve(snap: Repo, filename: str, range_header: str | None, *, cdn_base: str, cdn_ttl: int) -> Response:
    """``HEAD/GET /{id}/resolve/{rev}/{file}`` once the repo, access and revision are settled."""
    f = snap.files.get(filename)
    if f is None:
        raise entry_not_found(snap.id, filename, snap.sha)
    common = {"X-Repo-Commit": snap.sha, "ETag": f'"{f.git_oid}"'}
    if not f.lfs:
        return file_response(f, range_header, common)
    params = urlencode({"repo": snap.id, "file": f.path, "commit": snap.sha, "Expires": int(time.time()) + cdn_ttl})
    location = f"{cdn_base}/_cdn/{f.sha256}/{quote(f.path.rsplit('/', 1)[-1])}?{params}"
    headers = {
        **common,
        "Location": location,
        "X-Linked-Etag": f'"{f.sha256}"',
        "X-Linked-Size": str(f.size),
        "Accept-Ranges": "bytes",
        "Content-Type": "text/plain; charset=utf-8",
    }
    return Response(302, headers)


def cdn(
    blob: RepoFile | None, sha256: str, commit: str | None, expires: str | None, range_header: str | None
) -> Response:
    """``HEAD/GET /_cdn/{sha256}/{name}``: content-addressed, signed-by-expiry, no token check."""
    if expires is not None:
        expired = not (expires.isascii() and expires.isdigit() and len(expires) <= 18) or int(expires) < time.time()
        if expired:
            raise HubError(403, None, "Request has expired")
    if blob is None:
        raise HubError(404, "EntryNotFound", f"Blob {sha256} does not exist (deleted or changed since the redirect)")
    headers = {"ETag": f'"{sha256}"', "X-Linked-Etag": f'"{sha256}"', "X-Linked-Size": str(blob.size)}
    if commit:
        headers["X-Repo-Commit"] = commit
    return file_response(blob, range_header, headers)
