"""The repository model: a folder ``ROOT/ORG/NAME/`` of files seen as a Hub model repo.

A scan turns each repo folder into a :class:`Repo` (an immutable snapshot).  The commit ``sha``
is a deterministic 40-hex id: sha1 over the repo id and the sorted (path, content sha256) pairs,
so it moves exactly when a file is added, removed, renamed or changed.  Content digests are
cached by ``(size, mtime_ns, ctime_ns, inode)``, so a rescan only rehashes files that changed, and
hard links of one file (a benchmark serving one checkpoint under many repos) are hashed once.

Revisions: the store keeps, per repo id, the list of shas it has had while the server ran.  Old
content is **not** kept: reading at a superseded sha answers ``RevisionNotFound`` (the message
says "superseded by <new sha>"), as does any sha the repo never had.  ``main`` (also
``refs/heads/main``) and the current sha resolve to the current snapshot.

Timestamps: ``createdAt`` = card ``created_at``, else the earliest file mtime.  ``lastModified`` =
card ``last_modified``, else the latest file mtime; if the sha changed while the server ran, at
least the time that change was seen; an override (:meth:`RepoStore.set_override`) wins over all.

Hostile folders: only regular files inside the served root are served (:func:`paths.walk_repo`:
a symlink out of the root, a FIFO or a device is left out); a folder whose name is not a Hub repo
id, or whose scan fails for any reason, is skipped; a bad fact (card, config, timestamp, header)
is dropped.  Each is recorded in :attr:`RepoStore.skipped` and logged once, one line, on the
``pedigree.hub_server`` logger; the other repos are served.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from . import cards, facts
from .errors import repo_not_found, revision_not_found
from .facts import iso, to_utc
from .paths import Found, open_regular, shown, subfolders, valid_repo_id, walk_repo

log = logging.getLogger("pedigree.hub_server")
__all__ = ["Repo", "RepoFile", "RepoStore", "ScanReport", "iso", "to_utc"]

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
        self._inodes: dict[tuple[int, int], tuple[tuple[int, int, int, int], str, str]] = {}
        self._param_cache: dict[str, dict[str, int] | None] = {}
        self._real_root = Path(os.path.realpath(self.root))
        self.skipped: dict[str, str] = {}
        """What the last scan left out: ``org/name[/file]`` -> one-line reason."""
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
            skipped: dict[str, str] = {}
            for repo_id, folder in self._repo_folders(skipped):
                try:
                    repo = self._scan_repo(repo_id, folder, skipped)
                except Exception as e:  # noqa: BLE001 - one hostile repo must not stop the others
                    skipped[repo_id] = f"repo skipped: {shown(f'{type(e).__name__}: {e}', 200)}"
                    continue
                if repo is not None:
                    new[repo_id] = repo
            self._log_new(skipped)
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
            kept = set(self._digests.values())
            self._inodes = {i: d for i, d in self._inodes.items() if d in kept}
            return ScanReport(added, changed, removed)

    def _log_new(self, skipped: dict[str, str]) -> None:
        """Keep what this scan left out; log each reason once (one line each)."""
        for where, reason in skipped.items():
            if self.skipped.get(where) != reason:
                log.warning("hub server: %s: %s", where, reason)
        self.skipped = skipped

    # ---- scanning ----------------------------------------------------------------------------
    def _repo_folders(self, skipped: dict[str, str]) -> list[tuple[str, Path]]:
        """(repo id, resolved folder) of every ``ORG/NAME`` folder that may be served."""
        out: list[tuple[str, Path]] = []
        self._real_root = Path(os.path.realpath(self.root))
        if not self._real_root.is_dir():
            return out
        for org_name, org in subfolders(self._real_root, self._real_root, "", skipped):
            for name, folder in subfolders(org, self._real_root, f"{org_name}/", skipped):
                repo_id = f"{org_name}/{name}"
                if valid_repo_id(repo_id):
                    out.append((repo_id, folder))
                else:
                    skipped[shown(repo_id)] = "folder skipped: not a repo id (org/name of letters, digits, - _ .)"
        return out

    def _digest(self, path: Path, st: os.stat_result) -> tuple[str, str]:
        """(git blob sha1 of the raw content, sha256), cached by stat key."""
        key = (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)
        hit = self._digests.get(path)
        if hit is None or hit[0] != key:  # a hard link of a file already hashed: the same content
            linked = self._inodes.get((st.st_dev, st.st_ino))
            hit = linked if linked is not None and linked[0] == key else None
        if hit is not None and hit[0] == key:
            self._digests[path] = hit
            return hit[1], hit[2]
        sha1 = hashlib.sha1(b"blob %d\0" % st.st_size)
        sha256 = hashlib.sha256()
        with open_regular(path) as f:
            while chunk := f.read(_CHUNK):
                sha1.update(chunk)
                sha256.update(chunk)
        self._digests[path] = (key, sha1.hexdigest(), sha256.hexdigest())
        if st.st_nlink > 1:
            self._inodes[(st.st_dev, st.st_ino)] = self._digests[path]
        return sha1.hexdigest(), sha256.hexdigest()

    def _scan_files(self, folder: Path, repo_id: str, skipped: dict[str, str]) -> dict[str, RepoFile]:
        files: dict[str, RepoFile] = {}
        for found in walk_repo(folder, self._real_root, skipped, repo_id):
            files[found.rel] = self._repo_file(found, repo_id, skipped)
        return {k: v for k, v in files.items() if v is not None}

    def _repo_file(self, found: Found, repo_id: str, skipped: dict[str, str]) -> Any:
        st = found.st
        try:
            raw_oid, sha256 = self._digest(found.real, st)
        except OSError as e:  # vanished, unreadable or replaced mid-scan
            skipped[shown(f"{repo_id}/{found.rel}")] = f"unreadable: {e.strerror or type(e).__name__}"
            return None
        lfs = found.rel.endswith(LFS_SUFFIXES) or st.st_size >= self.large_file_threshold
        oid = git_blob_oid(lfs_pointer(sha256, st.st_size)) if lfs else raw_oid
        return RepoFile(found.rel, st.st_size, oid, sha256, lfs, found.real, st.st_mtime)

    def _scan_repo(self, repo_id: str, folder: Path, skipped: dict[str, str]) -> Repo | None:
        files = self._scan_files(folder, repo_id, skipped)
        if not files:
            return None
        digest = hashlib.sha1(repo_id.encode() + b"\n")
        for f in files.values():
            digest.update(f"{f.path}\0{f.sha256}\n".encode())
        card, why = cards.read_card(files["README.md"].abs_path) if "README.md" in files else ({}, None)
        if why:
            skipped[f"{repo_id}/README.md"] = why
        config, why = facts.read_json(files["config.json"].abs_path) if "config.json" in files else (None, None)
        if why:
            skipped[f"{repo_id}/config.json"] = f"config ignored: {why}"
        ov = self._overrides.get(repo_id, Override())
        created = ov.created_at or self._card_time(card, "created_at", repo_id, skipped)
        modified = ov.last_modified or self._card_time(card, "last_modified", repo_id, skipped)
        mtimes = [f.mtime for f in files.values()]
        created = created or facts.to_utc(min(mtimes)) or datetime.now(UTC)
        modified = modified or facts.to_utc(max(mtimes)) or datetime.now(UTC)
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
            gated=facts.gated_value(card.get("gated")),
            private=card.get("private") is True,
            downloads=ov.downloads if ov.downloads is not None else facts.count(card.get("downloads")),
            likes=ov.likes if ov.likes is not None else facts.count(card.get("likes")),
            library_name=library,
            pipeline_tag=pipeline,
            base_models=tuple(base_models),
            base_model_relation=relation,
            tags=tuple(cards.computed_tags(card, config, files, library, pipeline, base_models, relation)),
            config=facts.config_summary(config),
            safetensors=self._summary(files, repo_id, skipped),
            folder=folder,
        )

    @staticmethod
    def _card_time(card: dict[str, Any], key: str, repo_id: str, skipped: dict[str, str]) -> datetime | None:
        """A card timestamp, or None (with a reason when the card has one that is not a date)."""
        value = card.get(key)
        when = to_utc(value)
        if value is not None and when is None:
            skipped[f"{repo_id}/README.md:{key}"] = f"{key} ignored: not a date ({shown(repr(value), 60)})"
        return when

    def _summary(self, files: dict[str, RepoFile], repo_id: str, skipped: dict[str, str]) -> dict[str, Any] | None:
        """The Hub's ``safetensors`` field: parameters by dtype and total, over the shards whose
        header parses (one that does not is left out, with a reason)."""
        params: dict[str, int] = {}
        seen = False
        for f in files.values():
            if not f.path.endswith(".safetensors"):
                continue
            if f.sha256 not in self._param_cache:
                self._param_cache[f.sha256] = facts.safetensors_params(f.abs_path, f.size)
            counts = self._param_cache[f.sha256]
            if counts is None:
                skipped[shown(f"{repo_id}/{f.path}")] = (
                    "parameter count ignored: header does not parse or names a bad shape"
                )
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
