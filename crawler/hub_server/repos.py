"""The repository model: a folder ``ROOT/ORG/NAME/`` of files seen as a Hub model repo.

A scan turns each repo folder into a :class:`Repo` (an immutable snapshot).  The commit ``sha``
is a deterministic 40-hex id: sha1 over the repo id and the sorted (path, content sha256) pairs,
so it moves exactly when a file is added, removed, renamed or changed.  Content digests are
cached by ``(size, mtime_ns, ctime_ns, inode)``, so a rescan only rehashes files that changed.

Revisions: the store keeps, per repo id, the list of shas it has had while the server ran.  Old
content is **not** kept: reading at a superseded sha answers ``RevisionNotFound`` (the message
says "superseded by <new sha>"), as does any sha the repo never had.  ``main`` (also
``refs/heads/main``) and the current sha resolve to the current snapshot.

Timestamps: ``createdAt`` = card ``created_at``, else the earliest file mtime.  ``lastModified`` =
card ``last_modified``, else the latest file mtime; if the sha changed while the server ran, at
least the time that change was seen; an override (:meth:`RepoStore.set_override`) wins over all.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import threading
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from . import cards
from .errors import repo_not_found, revision_not_found

LFS_SUFFIXES = (
    ".safetensors",
    ".bin",
    ".pt",
    ".pth",
    ".ckpt",
    ".h5",
    ".msgpack",
    ".onnx",
    ".gguf",
    ".npz",
    ".npy",
    ".pkl",
    ".model",
    ".tflite",
    ".ot",
    ".arrow",
    ".parquet",
    ".zip",
    ".tar",
    ".gz",
)
"""Suffixes stored as LFS (served by 302 to the CDN path), as in the Hub's default .gitattributes."""

DEFAULT_LARGE_FILE_THRESHOLD = 10 * 2**20
"""Files at least this big are LFS whatever their suffix (the Hub's 10 MB rule)."""

MAIN_REFS = ("main", "refs/heads/main")
_CHUNK = 1 << 20
_SUMMARY_HEADER_CAP = 25_000_000


@dataclass(frozen=True)
class RepoFile:
    """One file of a repo snapshot."""

    path: str
    size: int
    git_oid: str
    sha256: str
    lfs: bool
    abs_path: Path
    mtime: float

    @property
    def pointer_size(self) -> int:
        """Size of the git-lfs pointer file that stands for this file in git."""
        return len(lfs_pointer(self.sha256, self.size))


@dataclass(frozen=True)
class Repo:
    """A scanned model repo (one revision)."""

    id: str
    sha: str
    files: dict[str, RepoFile]
    card: dict[str, Any]
    created_at: datetime
    last_modified: datetime
    gated: bool | str
    private: bool
    downloads: int
    likes: int
    library_name: str | None
    pipeline_tag: str | None
    base_models: tuple[str, ...]
    base_model_relation: str | None
    tags: tuple[str, ...]
    config: dict[str, Any] | None
    safetensors: dict[str, Any] | None
    folder: Path

    @property
    def author(self) -> str:
        return self.id.split("/", 1)[0]

    @property
    def used_storage(self) -> int:
        return sum(f.size for f in self.files.values())


@dataclass
class Override:
    """Per-repo field overrides set through the Python API (``None`` = not overridden)."""

    last_modified: datetime | None = None
    created_at: datetime | None = None
    downloads: int | None = None
    likes: int | None = None


@dataclass(frozen=True)
class ScanReport:
    """What a rescan changed."""

    added: tuple[str, ...] = ()
    changed: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()


def lfs_pointer(sha256: str, size: int) -> bytes:
    """The git-lfs pointer text for a blob."""
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()


def git_blob_oid(data: bytes) -> str:
    """The git blob sha1 of ``data``."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def to_utc(value: Any) -> datetime | None:
    """A card/override timestamp (ISO string, datetime, date, epoch number) as an aware UTC datetime."""
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return datetime.fromtimestamp(value, tz=UTC)
    if isinstance(value, str):
        try:
            return to_utc(datetime.fromisoformat(value.strip().replace("Z", "+00:00")))
        except ValueError:
            return None
    return None


def iso(dt: datetime) -> str:
    """The Hub's timestamp format, ``2024-03-01T00:00:00.000Z``."""
    dt = dt.astimezone(UTC)
    return f"{dt:%Y-%m-%dT%H:%M:%S}.{dt.microsecond // 1000:03d}Z"


def _gated_value(value: Any) -> bool | str:
    if value is True or (isinstance(value, str) and value.lower() in ("true", "yes")):
        return "auto"
    if isinstance(value, str) and value.lower() in ("auto", "manual"):
        return value.lower()
    return False


def _safetensors_params(path: Path, size: int) -> dict[str, int] | None:
    """Parameter counts by dtype from one safetensors header, ``None`` if it does not parse."""
    try:
        with open(path, "rb") as f:
            first = f.read(8)
            if len(first) < 8:
                return None
            (n,) = struct.unpack("<Q", first)
            if n > min(_SUMMARY_HEADER_CAP, size - 8):
                return None
            header = json.loads(f.read(n))
    except (OSError, ValueError, RecursionError):
        return None
    counts: dict[str, int] = {}
    try:
        for name, entry in header.items() if isinstance(header, dict) else ():
            if name == "__metadata__" or not isinstance(entry, dict):
                continue
            numel = 1
            for d in entry.get("shape") or []:
                numel *= int(d)
            counts[str(entry.get("dtype"))] = counts.get(str(entry.get("dtype")), 0) + numel
    except (TypeError, ValueError):
        return None
    return counts


class RepoStore:
    """All repos under ``root``, rescanned on demand; thread-safe snapshot reads."""

    def __init__(self, root: Path, *, large_file_threshold: int = DEFAULT_LARGE_FILE_THRESHOLD) -> None:
        self.root = Path(root)
        self.large_file_threshold = large_file_threshold
        self._lock = threading.RLock()
        self._repos: dict[str, Repo] = {}
        self._blobs: dict[str, RepoFile] = {}
        self._children: dict[str, dict[str, int]] = {}
        self._history: dict[str, list[str]] = {}
        self._changed_at: dict[str, datetime] = {}
        self._overrides: dict[str, Override] = {}
        self._digests: dict[Path, tuple[tuple[int, int, int, int], str, str]] = {}
        self._param_cache: dict[str, dict[str, int] | None] = {}
        self.rescan()

    # ---- reads -------------------------------------------------------------------------------
    def repos(self) -> list[Repo]:
        """All current repos (any order)."""
        return list(self._repos.values())

    def get(self, repo_id: str) -> Repo | None:
        return self._repos.get(repo_id)

    def history(self, repo_id: str) -> list[str]:
        """Every sha the repo has had while the server ran, oldest first (current one last)."""
        return list(self._history.get(repo_id, []))

    def blob(self, sha256: str) -> RepoFile | None:
        """A current file with this content sha256 (the CDN is content-addressed)."""
        return self._blobs.get(sha256)

    def children_count(self, repo_id: str) -> dict[str, int]:
        """``{relation: n}`` over the repos that declare ``repo_id`` as a base model."""
        return dict(self._children.get(repo_id, {}))

    def at_revision(self, repo_id: str, revision: str) -> Repo:
        """The snapshot for ``revision`` (``main`` or the current sha) or a ``HubError``."""
        repo = self._repos.get(repo_id)
        if repo is None:
            raise repo_not_found(repo_id)
        if revision in MAIN_REFS or revision == repo.sha:
            return repo
        if revision in self._history.get(repo_id, []):
            raise revision_not_found(repo_id, revision, f"superseded by {repo.sha}; old content is not kept")
        raise revision_not_found(repo_id, revision)

    # ---- writes ------------------------------------------------------------------------------
    def set_override(self, repo_id: str, **fields: Any) -> None:
        """Override ``last_modified``/``created_at`` (datetime or ISO str), ``downloads``, ``likes``.

        ``None`` clears a field.  Takes effect immediately (a rescan is run).
        """
        with self._lock:
            ov = self._overrides.setdefault(repo_id, Override())
            for name, value in fields.items():
                if name not in Override.__dataclass_fields__:
                    raise TypeError(f"unknown override {name!r}")
                if name in ("last_modified", "created_at") and value is not None:
                    value = to_utc(value)
                    if value is None:
                        raise ValueError(f"bad timestamp for {name}: {fields[name]!r}")
                setattr(ov, name, value)
            self.rescan()

    def rescan(self) -> ScanReport:
        """Re-read ROOT; record sha changes in the history.  Returns what changed."""
        with self._lock:
            now = datetime.now(UTC)
            new: dict[str, Repo] = {}
            for folder in self._repo_folders():
                repo_id = f"{folder.parent.name}/{folder.name}"
                repo = self._scan_repo(repo_id, folder)
                if repo is not None:
                    new[repo_id] = repo
            old = self._repos
            added = tuple(sorted(set(new) - set(old)))
            removed = tuple(sorted(set(old) - set(new)))
            changed = tuple(sorted(i for i in set(new) & set(old) if new[i].sha != old[i].sha))
            for repo_id in changed:
                self._changed_at[repo_id] = now
            for repo_id, repo in new.items():
                hist = self._history.setdefault(repo_id, [])
                if not hist or hist[-1] != repo.sha:
                    hist.append(repo.sha)
                if repo_id in self._changed_at and repo.last_modified < self._changed_at[repo_id]:
                    ov = self._overrides.get(repo_id)
                    if ov is None or ov.last_modified is None:
                        new[repo_id] = replace(repo, last_modified=self._changed_at[repo_id])
            self._repos = new
            self._blobs = {f.sha256: f for r in new.values() for f in r.files.values()}
            self._children = self._count_children(new)
            live = {f.abs_path for r in new.values() for f in r.files.values()}
            self._digests = {p: d for p, d in self._digests.items() if p in live}
            return ScanReport(added, changed, removed)

    # ---- scanning ----------------------------------------------------------------------------
    def _repo_folders(self) -> list[Path]:
        out: list[Path] = []
        if not self.root.is_dir():
            return out
        for org in sorted(self.root.iterdir()):
            if org.is_dir() and not org.name.startswith((".", "_")):
                out.extend(p for p in sorted(org.iterdir()) if p.is_dir() and not p.name.startswith((".", "_")))
        return out

    def _digest(self, path: Path, st: os.stat_result) -> tuple[str, str]:
        """(git blob sha1 of the raw content, sha256), cached by stat key."""
        key = (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)
        hit = self._digests.get(path)
        if hit is not None and hit[0] == key:
            return hit[1], hit[2]
        sha1 = hashlib.sha1(b"blob %d\0" % st.st_size)
        sha256 = hashlib.sha256()
        with open(path, "rb") as f:
            while chunk := f.read(_CHUNK):
                sha1.update(chunk)
                sha256.update(chunk)
        self._digests[path] = (key, sha1.hexdigest(), sha256.hexdigest())
        return sha1.hexdigest(), sha256.hexdigest()

    def _scan_files(self, folder: Path) -> dict[str, RepoFile]:
        files: dict[str, RepoFile] = {}
        for dirpath, dirnames, filenames in os.walk(folder):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for name in sorted(filenames):
                if name.startswith(".") and name != ".gitattributes":
                    continue
                path = Path(dirpath) / name
                try:
                    st = path.stat()
                    raw_oid, sha256 = self._digest(path, st)
                except OSError:
                    continue  # vanished or unreadable mid-scan
                rel = path.relative_to(folder).as_posix()
                lfs = name.endswith(LFS_SUFFIXES) or st.st_size >= self.large_file_threshold
                oid = git_blob_oid(lfs_pointer(sha256, st.st_size)) if lfs else raw_oid
                files[rel] = RepoFile(rel, st.st_size, oid, sha256, lfs, path, st.st_mtime)
        return dict(sorted(files.items()))

    def _scan_repo(self, repo_id: str, folder: Path) -> Repo | None:
        files = self._scan_files(folder)
        if not files:
            return None
        digest = hashlib.sha1(repo_id.encode() + b"\n")
        for f in files.values():
            digest.update(f"{f.path}\0{f.sha256}\n".encode())
        card = cards.read_front_matter(folder / "README.md") if "README.md" in files else {}
        config = _read_json(folder / "config.json") if "config.json" in files else None
        ov = self._overrides.get(repo_id, Override())
        mtimes = [f.mtime for f in files.values()]
        created = ov.created_at or to_utc(card.get("created_at")) or datetime.fromtimestamp(min(mtimes), tz=UTC)
        modified = ov.last_modified or to_utc(card.get("last_modified")) or datetime.fromtimestamp(max(mtimes), tz=UTC)
        base_models, relation = cards.base_models(card)
        library = card.get("library_name") if isinstance(card.get("library_name"), str) else None
        pipeline = card.get("pipeline_tag") if isinstance(card.get("pipeline_tag"), str) else None
        if library is None and config is not None:
            library = "transformers"
        return Repo(
            id=repo_id,
            sha=digest.hexdigest(),
            files=files,
            card=card,
            created_at=created,
            last_modified=modified,
            gated=_gated_value(card.get("gated")),
            private=card.get("private") is True,
            downloads=ov.downloads if ov.downloads is not None else _int(card.get("downloads")),
            likes=ov.likes if ov.likes is not None else _int(card.get("likes")),
            library_name=library,
            pipeline_tag=pipeline,
            base_models=tuple(base_models),
            base_model_relation=relation,
            tags=tuple(cards.computed_tags(card, config, files, library, pipeline, base_models, relation)),
            config=_config_summary(config),
            safetensors=self._summary(files),
            folder=folder,
        )

    def _summary(self, files: dict[str, RepoFile]) -> dict[str, Any] | None:
        """The Hub's ``safetensors`` field: parameters by dtype and total, over all shards."""
        params: dict[str, int] = {}
        seen = False
        for f in files.values():
            if not f.path.endswith(".safetensors"):
                continue
            if f.sha256 not in self._param_cache:
                self._param_cache[f.sha256] = _safetensors_params(f.abs_path, f.size)
            counts = self._param_cache[f.sha256]
            if counts is None:
                continue
            seen = True
            for dtype, n in counts.items():
                params[dtype] = params.get(dtype, 0) + n
        return {"parameters": params, "total": sum(params.values())} if seen else None

    @staticmethod
    def _count_children(repos: dict[str, Repo]) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        for repo in repos.values():
            for parent in repo.base_models:
                rel = repo.base_model_relation or "finetune"
                counts = out.setdefault(parent, {})
                counts[rel] = counts.get(rel, 0) + 1
        return out


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _config_summary(config: Any) -> dict[str, Any] | None:
    """The trimmed ``config`` the Hub returns (architectures, model_type)."""
    if not isinstance(config, dict):
        return None
    return {k: config[k] for k in ("architectures", "model_type") if k in config}


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0
