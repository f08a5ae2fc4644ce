"""Fault injection for the bundled Hub server - a test and benchmark harness, never installed.

:class:`FaultyHub` is :class:`pedigree.crawler.hub_server.HubServer` with a :class:`FaultEngine`
in its hooks seam (``hub_server/hooks.py``) and ``set_faults``; the server users run as a mirror
has no fault engine and no ``/_pedigree/faults`` endpoint.

Every rule has a *scope* (which requests it watches) and a *trigger* (which of those it hits).
Scopes are request kinds (``api_list``, ``api_info``, ``api_tree``, ``api_other``,
``resolve_head``, ``resolve_get``, ``cdn_head``, ``cdn_get``) or groups: ``api`` (all /api),
``resolve``, ``cdn``, ``files`` (resolve + cdn), ``any``.  Admin paths (``/_pedigree``) are never
faulted.  Each rule counts the requests in its scope (n = 1, 2, ...) and fires when

* ``every`` = k > 0 and n % k == 0, or
* ``count`` = c > 0 and after < n <= after + c  (a storm: the next c requests after ``after``), or
* ``probability`` = p > 0 and the rule's own ``random.Random`` (seeded from ``seed`` and the
  rule's position) draws < p,

and, when none of the three is set, on every request in scope.  ``max_fires`` > 0 caps how often
a rule fires.  ``path`` (a regex searched in the URL path) narrows the scope.  All rules see every
request (a 429 does not stop a 5xx rule from counting); when several fire, the answer is: delay
first (``slow``), then 429 (``rate_limits``) over 5xx (``server_errors``), else the request is
served with ``truncate`` / ``ignore_range`` applied.  Counters restart when the config is set.
Given the same request sequence and seed, the same requests are hit.  Note that a rule counts
every request in its scope, also ones it cannot affect (``truncate`` on a bodiless 302 or HEAD,
``ignore_range`` on a GET without Range): narrow the scope (e.g. ``cdn_get``) to count exactly.

Mutations change ROOT **on disk** (point the server at a copy) and rescan: ``delete_repo``
removes the repo folder, ``delete_file`` one file, ``change_file`` rewrites one file so the sha
moves (text files get a line appended; ``.safetensors`` files get the first data byte XOR 1, so
they stay valid).  A mutation fires once, right *after* the ``after_list_page``-th
``/api/models`` page is computed (before it is sent) or right *before* the ``at_resolve``-th
``/resolve`` request (HEAD or GET) is answered; requests answered by an injected 429/5xx do not
count toward either.
"""

from __future__ import annotations

import dataclasses
import json
import random
import re
import shutil
import struct
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pedigree.crawler.hub_server import HubServer
from pedigree.crawler.hub_server.errors import bad_request
from pedigree.crawler.hub_server.hooks import Decision, ServerHooks
from pedigree.crawler.hub_server.repos import RepoStore
from pedigree.crawler.hub_server.response import Response, json_response

KINDS = ("api_list", "api_info", "api_tree", "api_other", "resolve_head", "resolve_get", "cdn_head", "cdn_get")
GROUPS = {
    "any": KINDS,
    "api": KINDS[:4],
    "resolve": ("resolve_head", "resolve_get"),
    "cdn": ("cdn_head", "cdn_get"),
    "files": KINDS[4:],
}


def in_scope(scope: str, kind: str) -> bool:
    """Whether a request of ``kind`` falls in ``scope`` (a kind or a group name)."""
    return kind == scope or kind in GROUPS.get(scope, ())


@dataclass
class Rule:
    """Scope and trigger shared by every request fault."""

    scope: str = "any"
    every: int = 0
    after: int = 0
    count: int = 0
    probability: float = 0.0
    max_fires: int = 0
    path: str = ""


@dataclass
class RateLimit(Rule):
    """429 with ``RateLimit: "<bucket>";r=0;t=<reset>``, ``RateLimit-Policy`` and ``Retry-After``."""

    scope: str = "api"
    reset: int = 1
    quota: int = 500
    window: int = 300
    bucket: str = ""  # "" -> "api" for /api requests, "resolvers" for resolve/cdn
    retry_after: bool = True


@dataclass
class ServerError(Rule):
    """A 5xx answer (500, 502, 503 or 504) with a JSON error body."""

    status: int = 503


@dataclass
class Slow(Rule):
    """Sleep ``delay`` seconds before answering."""

    delay: float = 0.5


@dataclass
class Truncate(Rule):
    """Declare the full ``Content-Length``, send ``fraction`` of the body, close the connection."""

    scope: str = "files"
    fraction: float = 0.5


@dataclass
class IgnoreRange(Rule):
    """Answer a ranged GET with 200 and the whole file."""

    scope: str = "files"


@dataclass
class Mutation:
    """Change ROOT between listing and download (see the module docstring)."""

    action: Literal["delete_repo", "delete_file", "change_file"]
    repo: str
    file: str = "README.md"
    after_list_page: int = 0
    at_resolve: int = 0


_RULE_TYPES: dict[str, type] = {
    "rate_limits": RateLimit,
    "server_errors": ServerError,
    "slow": Slow,
    "truncate": Truncate,
    "ignore_range": IgnoreRange,
    "mutations": Mutation,
}


@dataclass
class FaultConfig:
    """Everything the server may do wrong; all empty = a well-behaved Hub."""

    seed: int = 0
    rate_limits: list[RateLimit] = field(default_factory=list)
    server_errors: list[ServerError] = field(default_factory=list)
    slow: list[Slow] = field(default_factory=list)
    truncate: list[Truncate] = field(default_factory=list)
    ignore_range: list[IgnoreRange] = field(default_factory=list)
    gated_repos: dict[str, str] = field(default_factory=dict)  # id -> "auto" | "manual"
    private_repos: list[str] = field(default_factory=list)
    mutations: list[Mutation] = field(default_factory=list)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FaultConfig:
        """Build from JSON-like data (the admin endpoint's body; rule objects also accepted).

        Unknown keys are errors; ``gated_repos`` may be a list of ids (all ``"manual"``).
        """
        kwargs: dict[str, Any] = {}
        for key, value in data.items():
            if key in _RULE_TYPES:
                rule = _RULE_TYPES[key]
                kwargs[key] = [item if isinstance(item, rule) else rule(**item) for item in value]
            elif key == "gated_repos":
                kwargs[key] = dict.fromkeys(value, "manual") if isinstance(value, list) else dict(value)
            elif key in ("seed", "private_repos"):
                kwargs[key] = value
            else:
                raise ValueError(f"unknown fault field {key!r}")
        return cls(**kwargs)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class _RuleState:
    def __init__(self, rule: Rule, rng: random.Random) -> None:
        self.rule, self.rng, self.seen, self.fires = rule, rng, 0, 0
        self.pattern = re.compile(rule.path) if rule.path else None

    def hit(self, kind: str, path: str) -> bool:
        r = self.rule
        if not in_scope(r.scope, kind) or (self.pattern and not self.pattern.search(path)):
            return False
        self.seen += 1
        n = self.seen
        draw = self.rng.random() if r.probability > 0 else 1.0
        triggered = not (r.every or r.count or r.probability) or (
            (r.every > 0 and n % r.every == 0)
            or (r.count > 0 and r.after < n <= r.after + r.count)
            or draw < r.probability
        )
        if not triggered or (r.max_fires and self.fires >= r.max_fires):
            return False
        self.fires += 1
        return True


class FaultEngine(ServerHooks):
    """Applies a :class:`FaultConfig`; thread-safe; decisions depend only on request order + seed."""

    def __init__(self, config: FaultConfig | None = None) -> None:
        self._lock = threading.Lock()
        self.set(config or FaultConfig())

    def set(self, config: FaultConfig) -> None:
        """Replace the configuration and restart all counters."""
        with self._lock:
            self.config = config
            self._states: dict[str, list[_RuleState]] = {}
            for name in ("rate_limits", "server_errors", "slow", "truncate", "ignore_range"):
                rules = getattr(config, name)
                self._states[name] = [
                    _RuleState(r, random.Random(f"{config.seed}/{name}/{i}")) for i, r in enumerate(rules)
                ]
            self._pending = list(config.mutations)
            self.list_pages = 0
            self.resolves = 0

    def gated(self, repo_id: str) -> str | None:
        return self.config.gated_repos.get(repo_id)

    def private(self, repo_id: str) -> bool:
        return repo_id in self.config.private_repos

    def decide(self, kind: str, path: str) -> Decision:
        """Evaluate every rule for one request (call once per non-admin request)."""
        d = Decision()
        with self._lock:
            hits = {name: [s.rule for s in states if s.hit(kind, path)] for name, states in self._states.items()}
        for rule in hits["slow"]:
            d.delay += rule.delay  # type: ignore[attr-defined]
            d.fired.append("slow")
        if hits["rate_limits"]:
            rl: RateLimit = hits["rate_limits"][0]  # type: ignore[assignment]
            bucket = rl.bucket or ("api" if kind.startswith("api") else "resolvers")
            d.status, d.message = 429, f"Rate limited: you have reached your '{bucket}' rate limit."
            d.headers = {
                "RateLimit": f'"{bucket}";r=0;t={rl.reset}',
                "RateLimit-Policy": f'"fixed window";"{bucket}";q={rl.quota};w={rl.window}',
            }
            if rl.retry_after:
                d.headers["Retry-After"] = str(rl.reset)
            d.fired.append("rate_limit")
        elif hits["server_errors"]:
            se: ServerError = hits["server_errors"][0]  # type: ignore[assignment]
            d.status, d.message = se.status, f"Injected server error {se.status}"
            d.fired.append("server_error")
        if hits["truncate"]:
            d.truncate = hits["truncate"][0].fraction  # type: ignore[attr-defined]
        if hits["ignore_range"]:
            d.ignore_range = True
        return d

    def after_list_page(self, store: RepoStore) -> None:
        """Count one served /api/models page; carry out the mutations due now (each fires once)."""
        with self._lock:
            self.list_pages += 1
            due = self._take(lambda m: m.after_list_page == self.list_pages)
        _apply(store, due)

    def before_resolve(self, store: RepoStore) -> None:
        """Count one /resolve request; carry out the mutations due now (each fires once)."""
        with self._lock:
            self.resolves += 1
            due = self._take(lambda m: m.at_resolve == self.resolves)
        _apply(store, due)

    def admin(self, name: str, method: str, body: bytes) -> Response | None:
        """``GET|POST /_pedigree/faults``: read or replace the config (JSON :class:`FaultConfig`)."""
        if name != "faults" or method not in ("GET", "POST"):
            return None
        if method == "POST":
            try:
                self.set(FaultConfig.from_dict(json.loads(body or b"{}")))
            except (TypeError, ValueError) as e:
                raise bad_request(f"bad fault config: {e}") from None
        return json_response(self.config.to_dict())

    def _take(self, due: Any) -> list[Mutation]:
        out = [m for m in self._pending if due(m)]
        self._pending = [m for m in self._pending if m not in out]
        return out


def _apply(store: RepoStore, mutations: list[Mutation]) -> None:
    for m in mutations:
        apply_mutation(store.root, m)
    if mutations:
        store.rescan()


def apply_mutation(root: Path, mutation: Mutation) -> None:
    """Carry out one mutation on disk (the caller rescans)."""
    folder = Path(root) / mutation.repo
    if mutation.action == "delete_repo":
        shutil.rmtree(folder, ignore_errors=True)
        return
    target = folder / mutation.file
    if mutation.action == "delete_file":
        target.unlink(missing_ok=True)
    elif mutation.action == "change_file":
        change_file(target)
    else:
        raise ValueError(f"unknown mutation action {mutation.action!r}")


def change_file(path: Path) -> None:
    """Rewrite a file so its content hash changes; safetensors files stay valid."""
    if path.suffix == ".safetensors":
        with open(path, "r+b") as f:
            (n,) = struct.unpack("<Q", f.read(8))
            f.seek(8 + n)
            byte = f.read(1)
            if byte:
                f.seek(8 + n)
                f.write(bytes([byte[0] ^ 1]))
                return
    with open(path, "ab") as f:
        f.write(b"\n<!-- changed -->\n")


class FaultyHub(HubServer):
    """The bundled Hub server with fault injection: ``FaultyHub(root, faults=FaultConfig(...))``."""

    def __init__(self, root: Path | str, *, faults: FaultConfig | None = None, **options: Any) -> None:
        self.engine = FaultEngine(faults)
        super().__init__(root, hooks=self.engine, **options)

    def set_faults(self, faults: FaultConfig | Mapping[str, Any] | None = None, **fields: Any) -> None:
        """Replace the fault config (a FaultConfig, a dict, or keyword fields); counters restart."""
        if isinstance(faults, Mapping) or faults is None:
            faults = FaultConfig.from_dict({**(faults or {}), **fields}) if (faults or fields) else FaultConfig()
        self.engine.set(faults)

    @property
    def faults(self) -> FaultConfig:
        return self.engine.config
