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
a rule fires.  ``path`` (a glob, :func:`fnmatch.fnmatchcase`, matched against the whole URL path,
e.g. ``*/config.json``; never a regex, so no pattern can stall the server) narrows the scope.  All rules see every
request (a 429 does not stop a 5xx rule from counting); when several fire, the answer is: delay
first (``slow``), then 429 (``rate_limits``) over 5xx (``server_errors``), else the request is
served with ``truncate`` / ``ignore_range`` applied.  Counters restart when the config is set.
Given the same request sequence and seed, the same requests are hit.  Note that a rule counts
every request in its scope, also ones it cannot affect (``truncate`` on a bodiless 302 or HEAD,
``ignore_range`` on a GET without Range): narrow the scope (e.g. ``cdn_get``) to count exactly.

Every field is checked when a config is built (:meth:`FaultConfig.from_dict`, or a rule object's
constructor): types, ranges, scopes; a bad config is a ``ValueError`` (400 on the admin endpoint,
which exists only when the server has an ``admin_token`` and needs it as a bearer token).

Mutations (:mod:`bench.hub_mutations`) change ROOT **on disk** and rescan, confined to the
served root: a target outside it (``../victim``, an absolute path, a symlink out) is refused.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import json
import logging
import math
import random
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.hub_mutations import MAX_COUNTER, Mutation, apply_mutation, change_file
from pedigree.crawler.hub_server import HubServer
from pedigree.crawler.hub_server.errors import bad_request
from pedigree.crawler.hub_server.hooks import Decision, ServerHooks
from pedigree.crawler.hub_server.paths import contained, shown
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


__all__ = ["FaultConfig", "FaultEngine", "FaultyHub", "Mutation", "apply_mutation", "change_file"]
MAX_PATTERN = 256
MAX_DELAY = 60.0
log = logging.getLogger("pedigree.hub_server")


def in_scope(scope: str, kind: str) -> bool:
    """Whether a request of ``kind`` falls in ``scope`` (a kind or a group name)."""
    return kind == scope or kind in GROUPS.get(scope, ())


def _check_fields(obj: Any) -> None:
    """Each field has the type of its default and a sane range; ``ValueError`` otherwise."""
    for f in dataclasses.fields(obj):
        value, default = getattr(obj, f.name), f.default
        if isinstance(default, bool):
            ok = isinstance(value, bool)
        elif isinstance(default, int):
            ok = isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_COUNTER
        elif isinstance(default, float):
            ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
            ok = ok and 0 <= value <= (1.0 if f.name in ("probability", "fraction") else MAX_DELAY)
        else:
            ok = isinstance(value, str) and len(value) <= MAX_PATTERN
        if not ok:
            raise ValueError(f"{type(obj).__name__}.{f.name}: bad value {shown(repr(value), 80)}")


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

    def __post_init__(self) -> None:
        _check_fields(self)
        if self.scope not in KINDS and self.scope not in GROUPS:
            raise ValueError(f"unknown scope {shown(self.scope, 40)!r}; one of {[*GROUPS, *KINDS]}")


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

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 400 <= self.status <= 599:
            raise ValueError(f"ServerError.status must be 4xx or 5xx, not {self.status}")


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
        if not isinstance(data, Mapping):
            raise ValueError("a fault config is a JSON object")
        kwargs: dict[str, Any] = {}
        for key, value in data.items():
            if key in _RULE_TYPES:
                rule = _RULE_TYPES[key]
                if not isinstance(value, list) or len(value) > 1000:
                    raise ValueError(f"{key}: a list of at most 1000 rules")
                kwargs[key] = [item if isinstance(item, rule) else rule(**_fields(item)) for item in value]
            elif key == "gated_repos":
                kwargs[key] = dict.fromkeys(value, "manual") if isinstance(value, list) else dict(value)
            elif key in ("seed", "private_repos"):
                kwargs[key] = value
            else:
                raise ValueError(f"unknown fault field {shown(str(key), 40)!r}")
        return cls(**kwargs)

    def __post_init__(self) -> None:
        if not isinstance(self.seed, int) or isinstance(self.seed, bool):
            raise ValueError("seed must be an integer")
        if not all(isinstance(k, str) and v in ("auto", "manual") for k, v in self.gated_repos.items()):
            raise ValueError('gated_repos: repo id -> "auto" | "manual"')
        if not isinstance(self.private_repos, list) or not all(isinstance(r, str) for r in self.private_repos):
            raise ValueError("private_repos: a list of repo ids")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _fields(item: Any) -> dict[str, Any]:
    if not isinstance(item, Mapping) or not all(isinstance(k, str) for k in item):
        raise ValueError("a rule is a JSON object")
    return dict(item)


class _RuleState:
    def __init__(self, rule: Rule, rng: random.Random) -> None:
        self.rule, self.rng, self.seen, self.fires = rule, rng, 0, 0

    def hit(self, kind: str, path: str) -> bool:
        r = self.rule
        if not in_scope(r.scope, kind) or (r.path and not fnmatch.fnmatchcase(path, r.path)):
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

    def __init__(self, config: FaultConfig | None = None, root: Path | None = None) -> None:
        self._lock = threading.Lock()
        self.root = root
        self.set(config or FaultConfig())

    def set(self, config: FaultConfig) -> None:
        """Replace the configuration and restart all counters; ``ValueError`` when a mutation's
        target resolves outside the served root."""
        if self.root is not None:
            for m in config.mutations:
                contained(self.root, m.repo, m.file)
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
            except (TypeError, ValueError, RecursionError) as e:
                raise bad_request(f"bad fault config: {shown(str(e), 300)}") from None
        return json_response(self.config.to_dict())

    def _take(self, due: Any) -> list[Mutation]:
        out = [m for m in self._pending if due(m)]
        self._pending = [m for m in self._pending if m not in out]
        return out


def _apply(store: RepoStore, mutations: list[Mutation]) -> None:
    for m in mutations:
        try:
            apply_mutation(store.root, m)
        except (OSError, ValueError) as e:
            log.warning("hub faults: %s %s/%s refused: %s", m.action, shown(m.repo), shown(m.file), shown(str(e)))
    if mutations:
        store.rescan()


class FaultyHub(HubServer):
    """The bundled Hub server with fault injection: ``FaultyHub(root, faults=FaultConfig(...))``."""

    def __init__(self, root: Path | str, *, faults: FaultConfig | None = None, **options: Any) -> None:
        self.engine = FaultEngine(faults, Path(root))
        super().__init__(root, hooks=self.engine, **options)

    def set_faults(self, faults: FaultConfig | Mapping[str, Any] | None = None, **fields: Any) -> None:
        """Replace the fault config (a FaultConfig, a dict, or keyword fields); counters restart."""
        if isinstance(faults, Mapping) or faults is None:
            faults = FaultConfig.from_dict({**(faults or {}), **fields}) if (faults or fields) else FaultConfig()
        self.engine.set(faults)

    @property
    def faults(self) -> FaultConfig:
        return self.engine.config
