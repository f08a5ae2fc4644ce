"""The JSON API: model listing (sort, filter, expand, cursor pages), model info, tree, paths-info.

Pure functions of the repo snapshots and the query; no HTTP here.  Queries are lists of
``(key, value)`` pairs as parsed from the URL (repeated keys kept; ``expand[]`` = ``expand``).

Listing order: descending by the sort key, ties by ascending id; ``direction`` is accepted and
ignored (the Hub always sorts descending).  Pages are keyset cursors over (key, id): an opaque
base64 token; a model that moves ahead of the cursor mid-crawl (e.g. its ``lastModified`` was
bumped) is not seen again in that crawl, as on the Hub.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Callable, Iterable, Sequence
from typing import Any
from urllib.parse import urlencode

from .errors import bad_request, entry_not_found
from .facts import iso
from .repos import Repo, RepoFile, RepoStore

Query = Sequence[tuple[str, str]]

EXPAND_PROPERTIES = (
    "author",
    "baseModels",
    "cardData",
    "childrenModelCount",
    "config",
    "createdAt",
    "disabled",
    "downloads",
    "downloadsAllTime",
    "evalResults",
    "gated",
    "gguf",
    "inference",
    "inferenceProviderMapping",
    "lastModified",
    "library_name",
    "likes",
    "mask_token",
    "model-index",
    "pipeline_tag",
    "private",
    "resourceGroup",
    "safetensors",
    "sha",
    "siblings",
    "spaces",
    "tags",
    "transformersInfo",
    "trendingScore",
    "usedStorage",
    "widgetData",
)
"""Valid ``expand`` values (huggingface_hub 2.4.0); the ones this server cannot compute are omitted."""

LIST_FIELDS = (
    "_id",
    "id",
    "likes",
    "trendingScore",
    "private",
    "downloads",
    "tags",
    "pipeline_tag",
    "library_name",
    "createdAt",
    "modelId",
)
FULL_EXTRA = ("author", "sha", "lastModified", "gated", "disabled", "siblings")
INFO_FIELDS = (
    "_id",
    "id",
    "author",
    "sha",
    "lastModified",
    "private",
    "disabled",
    "gated",
    "downloads",
    "likes",
    "tags",
    "pipeline_tag",
    "library_name",
    "config",
    "cardData",
    "siblings",
    "spaces",
    "createdAt",
    "safetensors",
    "usedStorage",
    "modelId",
)

SORTS: dict[str, Callable[[Repo], Any]] = {
    "createdAt": lambda r: _ms(r.created_at.timestamp()),
    "lastModified": lambda r: _ms(r.last_modified.timestamp()),
    "id": lambda r: r.id,
    "downloads": lambda r: r.downloads,
    "likes": lambda r: r.likes,
    "trendingScore": lambda r: 0,
}
SORT_ALIASES = {
    "created_at": "createdAt",
    "last_modified": "lastModified",
    "trending_score": "trendingScore",
    "modelId": "id",
}
DEFAULT_SORT = "createdAt"
MAX_CURSOR = 2048
MAX_PATHS = 10_000


def _ms(seconds: float) -> int:
    return round(seconds * 1000)


def q_all(query: Query, *keys: str) -> list[str]:
    """Every value of the given keys, comma lists split."""
    return [v.strip() for k, val in query if k in keys for v in val.split(",") if v.strip()]


def q_get(query: Query, key: str, default: str | None = None) -> str | None:
    vals = [v for k, v in query if k == key]
    return vals[-1] if vals else default


def q_bool(query: Query, key: str) -> bool:
    return (q_get(query, key) or "").lower() in ("true", "1", "yes")


def encode_cursor(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data, separators=(",", ":")).encode()).decode().rstrip("=")


def decode_cursor(token: str) -> dict[str, Any]:
    """The cursor's JSON object; 400 when it is longer than :data:`MAX_CURSOR` or not one."""
    if len(token) > MAX_CURSOR:
        raise bad_request(f"Invalid cursor: longer than {MAX_CURSOR} characters")
    try:
        data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    except (binascii.Error, ValueError, RecursionError) as e:
        raise bad_request(f"Invalid cursor: {type(e).__name__}") from None
    if not isinstance(data, dict):
        raise bad_request("Invalid cursor")
    return data


def next_link(base_url: str, path: str, query: Query, cursor: str) -> str:
    """``Link`` header value: absolute URL, the original params in order, the new cursor."""
    params = [(k, v) for k, v in query if k != "cursor"] + [("cursor", cursor)]
    return f'<{base_url}{path}?{urlencode(params)}>; rel="next"'


def object_id(repo_id: str) -> str:
    """A stable 24-hex Mongo-style ``_id``."""
    return hashlib.sha1(repo_id.encode()).hexdigest()[:24]


def sibling(f: RepoFile, blobs: bool) -> dict[str, Any]:
    out: dict[str, Any] = {"rfilename": f.path}
    if blobs:
        out.update(size=f.size, blobId=f.git_oid)
        if f.lfs:
            out["lfs"] = {"size": f.size, "sha256": f.sha256, "pointerSize": f.pointer_size}
    return out


def all_fields(repo: Repo, store: RepoStore, *, gated: bool | str, private: bool, blobs: bool = False) -> dict:
    """Every field this server can produce for a repo (``None`` values are dropped by callers)."""
    base = None
    if repo.base_models:
        base = {
            "relation": repo.base_model_relation,
            "models": [{"_id": object_id(p), "id": p} for p in repo.base_models],
        }
    return {
        "_id": object_id(repo.id),
        "id": repo.id,
        "modelId": repo.id,
        "author": repo.author,
        "sha": repo.sha,
        "lastModified": iso(repo.last_modified),
        "createdAt": iso(repo.created_at),
        "private": private,
        "gated": gated,
        "disabled": False,
        "downloads": repo.downloads,
        "downloadsAllTime": repo.downloads,
        "likes": repo.likes,
        "trendingScore": 0,
        "tags": list(repo.tags),
        "pipeline_tag": repo.pipeline_tag,
        "library_name": repo.library_name,
        "cardData": repo.card or None,
        "config": repo.config,
        "siblings": [sibling(f, blobs) for f in repo.files.values()],
        "spaces": [],
        "safetensors": repo.safetensors,
        "usedStorage": repo.used_storage,
        "baseModels": base,
        "childrenModelCount": store.children_count(repo.id),
    }


def select(fields: dict[str, Any], names: Iterable[str]) -> dict[str, Any]:
    return {n: fields[n] for n in names if fields.get(n) is not None}


def expand_names(query: Query) -> list[str] | None:
    """The requested ``expand`` properties (validated), or ``None`` when absent."""
    names = q_all(query, "expand", "expand[]")
    if not names:
        return None
    bad = [n for n in names if n not in EXPAND_PROPERTIES]
    if bad:
        raise bad_request(f'"expand" must be one of {list(EXPAND_PROPERTIES)}; got {bad}')
    return ["_id", "id", *dict.fromkeys(names)]


def list_models(
    repos: list[Repo],
    store: RepoStore,
    query: Query,
    *,
    access: Callable[[Repo], tuple[bool | str, bool]],
    default_limit: int,
    max_limit: int,
) -> tuple[list[dict[str, Any]], str | None]:
    """One page of ``GET /api/models``: (items, next cursor or ``None`` on the last page).

    ``access(repo)`` gives the effective (gated, private) values; callers pass only visible repos.
    """
    sort = q_get(query, "sort") or DEFAULT_SORT
    sort = SORT_ALIASES.get(sort, sort)
    if sort not in SORTS:
        raise bad_request(f"Invalid sort {sort!r}; one of {sorted(SORTS)}")
    raw_limit = q_get(query, "limit") or str(default_limit)
    if not (raw_limit.isascii() and raw_limit.isdigit()):
        raise bad_request("limit must be a positive integer")
    limit = max(1, min(int(raw_limit) if len(raw_limit) <= 9 else max_limit, max_limit))
    names = expand_names(query)
    if names is None:
        names = list(LIST_FIELDS)
        if q_bool(query, "full"):
            names += FULL_EXTRA
        if q_bool(query, "cardData"):
            names.append("cardData")
        if q_bool(query, "config"):
            names.append("config")

    repos = [r for r in repos if _matches(r, query)]
    key = SORTS[sort]
    repos.sort(key=lambda r: r.id)
    repos.sort(key=key, reverse=True)
    cursor = q_get(query, "cursor")
    if cursor:
        c = decode_cursor(cursor)
        if c.get("s") != sort:
            raise bad_request("Invalid cursor: it was made for another sort")
        ck: Any = c.get("k")  # any JSON value: a comparison that fails is an invalid cursor
        cid: Any = c.get("i")
        try:
            repos = [r for r in repos if key(r) < ck or (key(r) == ck and r.id > cid)]
        except TypeError:
            raise bad_request("Invalid cursor") from None
    page = repos[:limit]
    items = []
    for repo in page:
        gated, private = access(repo)
        items.append(select(all_fields(repo, store, gated=gated, private=private), names))
    more = len(repos) > limit
    return items, encode_cursor({"s": sort, "k": key(page[-1]), "i": page[-1].id}) if more else None


def _matches(repo: Repo, query: Query) -> bool:
    tags = set(repo.tags)
    if any(t not in tags for t in q_all(query, "filter")):
        return False
    author = q_get(query, "author")
    if author and repo.author != author:
        return False
    search = q_get(query, "search")
    if search and search.lower() not in repo.id.lower():
        return False
    pipeline = q_get(query, "pipeline_tag")
    if pipeline and repo.pipeline_tag != pipeline:
        return False
    gated = q_get(query, "gated")
    return gated is None or (gated.lower() == "true") == bool(repo.gated)


def model_info(repo: Repo, store: RepoStore, query: Query, *, gated: bool | str, private: bool) -> dict:
    """``GET /api/models/{id}[/revision/{rev}]``: ``expand`` selects fields; ``blobs=true`` adds sizes."""
    fields = all_fields(repo, store, gated=gated, private=private, blobs=q_bool(query, "blobs"))
    return select(fields, expand_names(query) or INFO_FIELDS)


# ---- tree --------------------------------------------------------------------------------------
def _file_entry(f: RepoFile) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "file", "oid": f.git_oid, "size": f.size, "path": f.path}
    if f.lfs:
        out["lfs"] = {"oid": f.sha256, "size": f.size, "pointerSize": f.pointer_size}
    return out


def _dir_entry(repo: Repo, path: str) -> dict[str, Any]:
    inner = [f"{f.path}\0{f.git_oid}" for f in repo.files.values() if f.path.startswith(path + "/")]
    return {"type": "directory", "oid": hashlib.sha1("\n".join(inner).encode()).hexdigest(), "size": 0, "path": path}


def _expanded(repo: Repo, entry: dict[str, Any]) -> dict[str, Any]:
    entry["lastCommit"] = {"id": repo.sha, "title": "Upload", "date": iso(repo.last_modified)}
    if entry["type"] == "file":
        entry["securityFileStatus"] = {
            "status": "safe",
            "avScan": {"virusFound": False, "virusNames": None},
            "pickleImportScan": None,
        }
    return entry


def tree_entries(repo: Repo, path: str, recursive: bool) -> list[dict[str, Any]]:
    """Entries under ``path`` (``""`` = root), sorted by path; 404 ``EntryNotFound`` if no such folder."""
    path = path.strip("/")
    prefix = path + "/" if path else ""
    if path and not any(p.startswith(prefix) for p in repo.files):
        raise entry_not_found(repo.id, path, repo.sha)
    dirs: set[str] = set()
    files: list[RepoFile] = []
    for f in repo.files.values():
        if not f.path.startswith(prefix):
            continue
        rest = f.path[len(prefix) :].split("/")
        for depth in range(1, len(rest)):
            if recursive or depth == 1:
                dirs.add(prefix + "/".join(rest[:depth]))
        if recursive or len(rest) == 1:
            files.append(f)
    entries = [_dir_entry(repo, d) for d in dirs] + [_file_entry(f) for f in files]
    return sorted(entries, key=lambda e: e["path"])


def tree_page(repo: Repo, path: str, query: Query, page_size: int) -> tuple[list[dict[str, Any]], str | None]:
    """One page of ``GET /api/models/{id}/tree/{rev}[/{path}]`` and the next cursor."""
    entries = tree_entries(repo, path, q_bool(query, "recursive"))
    cursor = q_get(query, "cursor")
    if cursor:
        after = decode_cursor(cursor).get("p", "")
        if not isinstance(after, str):
            raise bad_request("Invalid cursor")
        entries = [e for e in entries if e["path"] > after]
    page = entries[:page_size]
    if q_bool(query, "expand"):
        page = [_expanded(repo, e) for e in page]
    more = len(entries) > page_size
    return page, encode_cursor({"p": page[-1]["path"]}) if more else None


def paths_info(repo: Repo, paths: list[str], expand: bool) -> list[dict[str, Any]]:
    """``POST /api/models/{id}/paths-info/{rev}``: entries for the paths that exist (others skipped)."""
    if len(paths) > MAX_PATHS:
        raise bad_request(f"at most {MAX_PATHS} paths per request")
    out = []
    for p in dict.fromkeys(x.strip("/") for x in paths):
        if p in repo.files:
            entry = _file_entry(repo.files[p])
        elif any(f.startswith(p + "/") for f in repo.files):
            entry = _dir_entry(repo, p)
        else:
            continue
        out.append(_expanded(repo, entry) if expand else entry)
    return out
