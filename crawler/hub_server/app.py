"""The HTTP side: request routing, fault application, the body writer, stats, admin endpoints.

Routes (paths are matched before %-decoding, then each segment is decoded):

* ``GET /api/models`` -> listing (:func:`api.list_models`), ``Link: <abs url>; rel="next"``
* ``GET /api/models/{ns}/{name}`` and ``…/revision/{rev}`` -> model info
* ``GET /api/models/{ns}/{name}/tree/{rev}[/{path}]`` -> tree (``Link`` pages)
* ``POST /api/models/{ns}/{name}/paths-info/{rev}`` (form ``paths=…``), ``GET …/auth-check``
* ``HEAD/GET /{ns}/{name}/resolve/{rev}/{file}`` and ``HEAD/GET /_cdn/{sha256}/{name}``
* admin (never faulted nor counted): ``GET /_pedigree/stats[?log=0]``, ``POST /_pedigree/stats/reset``,
  ``POST /_pedigree/rescan``, and whatever the hooks add (the test harness's ``/_pedigree/faults``).
  They exist only on a server started with an admin token (``Settings.admin_token``): without one
  every ``/_pedigree/`` path is 404; with one a request needs ``Authorization: Bearer <token>``
  (none: 401, another: 403).

HTTP/1.1 keep-alive; every answer has a ``Content-Length``.  A truncated body declares the full
length, sends less and closes the connection.  A connection idle for ``Settings.idle_timeout``
seconds is closed.  A ``Content-Length`` that is not a number is 400, one over
:data:`MAX_POST_BODY` 413, a chunked body 411 (each closes the connection).
"""

from __future__ import annotations

import hmac
import os
import time
from dataclasses import dataclass, field
from email.message import Message
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, unquote, urlsplit

from . import api, files
from .auth import Access
from .errors import HubError, repo_not_found
from .hooks import Decision, ServerHooks
from .link import Link
from .paths import open_regular
from .repos import Repo, RepoStore
from .response import Response, error_response, json_response
from .stats import Stats

if TYPE_CHECKING:
    from .server import _HTTPServer

CHUNK = 256 * 1024
MAX_POST_BODY = 8 * 2**20


@dataclass
class Settings:
    """Server knobs.  Page sizes: the Hub's are undocumented (~1000 for models, 1000/50 for tree)."""

    default_page_size: int = 1000
    max_page_size: int = 1000
    tree_page_size: int = 1000
    tree_expand_page_size: int = 50
    cdn_host: str | None = None  # None: redirect to the host the client used; else http://{cdn_host}:{port}
    cdn_ttl: int = 3600
    link: Link = field(default_factory=Link)  # latency and bandwidth of a simulated remote link
    admin_token: str | None = field(default=None, repr=False)  # None: no /_pedigree/ endpoints
    idle_timeout: float = 60.0  # seconds a keep-alive connection may wait for its next request


@dataclass
class Request:
    method: str
    path: str
    query: list[tuple[str, str]]
    headers: Message
    token: str | None
    base_url: str
    body: bytes


@dataclass
class Route:
    """A classified request; CDN requests also name the repo/file/commit they were redirected from."""

    kind: str
    repo: str | None = None
    revision: str | None = None
    file: str | None = None
    blob: str | None = None


class HubApp:
    """Everything the handler needs: repos, hooks, access rules, stats and settings."""

    def __init__(self, store: RepoStore, hooks: ServerHooks, access: Access, settings: Settings) -> None:
        self.store, self.hooks, self.access, self.settings = store, hooks, access, settings
        self.stats = Stats()
        self.port = 0

    def effective(self, repo: Repo) -> tuple[bool | str, bool]:
        """(gated, private) after the fault config's overrides."""
        return self.hooks.gated(repo.id) or repo.gated, repo.private or self.hooks.private(repo.id)

    def visible(self, repo: Repo, token: str | None) -> bool:
        return not self.effective(repo)[1] or self.access.allowed(token, repo.id)

    def repo_for(self, repo_id: str, token: str | None) -> Repo:
        repo = self.store.get(repo_id)
        if repo is None or not self.visible(repo, token):
            raise repo_not_found(repo_id)
        return repo


def classify(method: str, path: str) -> Route:
    """The request kind and the repo/revision/file it names."""
    segs = path.split("/")[1:]
    dec = [unquote(s) for s in segs]
    if segs[:2] == ["api", "models"]:
        if len(segs) == 2 or (len(segs) == 3 and not segs[2]):
            return Route("api_list")
        if len(segs) >= 4:
            repo, rest = f"{dec[2]}/{dec[3]}", segs[4:]
            if not rest:
                return Route("api_info", repo)
            if rest[0] == "revision" and len(rest) >= 2:
                return Route("api_info", repo, unquote("/".join(rest[1:])))
            if rest[0] == "tree" and len(rest) >= 2:
                return Route("api_tree", repo, unquote(rest[1]), unquote("/".join(rest[2:])))
            if rest[0] == "paths-info" and len(rest) >= 2:
                return Route("api_other", repo, unquote(rest[1]), "paths-info")
            if rest[0] == "auth-check":
                return Route("api_other", repo, None, "auth-check")
        return Route("api_other")
    suffix = "head" if method == "HEAD" else "get"
    if segs[:1] == ["_cdn"] and len(segs) >= 3:
        return Route(f"cdn_{suffix}", blob=dec[1])
    if len(segs) >= 5 and segs[2] == "resolve":
        return Route(f"resolve_{suffix}", f"{dec[0]}/{dec[1]}", dec[3], unquote("/".join(segs[4:])))
    return Route("other")


def dispatch(app: HubApp, req: Request, route: Route, decision: Decision) -> Response:
    """Answer a classified, non-admin request (raises HubError for error answers)."""
    kind = route.kind
    if kind == "api_list":
        repos = [r for r in app.store.repos() if app.visible(r, req.token)]
        items, cursor = api.list_models(
            repos,
            app.store,
            req.query,
            access=app.effective,
            default_limit=app.settings.default_page_size,
            max_limit=app.settings.max_page_size,
        )
        app.hooks.after_list_page(app.store)
        link = {"Link": api.next_link(req.base_url, req.path, req.query, cursor)} if cursor else {}
        return json_response(items, headers=link)
    rng = None if decision.ignore_range or req.method != "GET" else req.headers.get("Range")
    if kind.startswith("cdn"):
        sha256 = route.blob or ""
        return files.cdn(app.store.blob(sha256), sha256, route.revision, api.q_get(req.query, "Expires"), rng)
    if route.repo is None:
        raise HubError(404, None, f"Not found: {req.path}")
    if kind.startswith("resolve"):
        app.hooks.before_resolve(app.store)
    repo = app.repo_for(route.repo, req.token)
    gated, private = app.effective(repo)
    if kind == "api_info":
        snap = app.store.at_revision(repo.id, route.revision or "main")
        return json_response(api.model_info(snap, app.store, req.query, gated=gated, private=private))
    if kind == "api_tree":
        snap = app.store.at_revision(repo.id, route.revision or "main")
        size = app.settings.tree_expand_page_size if api.q_bool(req.query, "expand") else app.settings.tree_page_size
        page, cursor = api.tree_page(snap, route.file or "", req.query, size)
        link = {"Link": api.next_link(req.base_url, req.path, req.query, cursor)} if cursor else {}
        return json_response(page, headers=link)
    if kind == "api_other" and route.file == "paths-info":
        snap = app.store.at_revision(repo.id, route.revision or "main")
        form = parse_qsl(req.body.decode("utf-8", errors="replace"), keep_blank_values=True)
        expand = api.q_bool(form, "expand")
        return json_response(api.paths_info(snap, [v for k, v in form if k in ("paths", "paths[]")], expand))
    if kind == "api_other" and route.file == "auth-check":
        app.access.require_files(repo.id, gated, req.token)
        return json_response({})
    if kind.startswith("resolve"):
        app.access.require_files(repo.id, gated, req.token)
        snap = app.store.at_revision(repo.id, route.revision or "main")
        cdn_base = f"http://{app.settings.cdn_host}:{app.port}" if app.settings.cdn_host else req.base_url
        return files.resolve(snap, route.file or "", rng, cdn_base=cdn_base, cdn_ttl=app.settings.cdn_ttl)
    raise HubError(404, None, f"Not found: {req.path}")


def check_admin(app: HubApp, req: Request) -> None:
    """404 without an admin token on the server; 401 without a bearer token; 403 with another."""
    expected = app.settings.admin_token
    if not expected:
        raise HubError(404, None, f"Not found: {req.path}")
    if req.token is None:
        raise HubError(401, None, "admin endpoint: send Authorization: Bearer <admin token>")
    if not hmac.compare_digest(req.token.encode(), expected.encode()):
        raise HubError(403, None, "admin endpoint: wrong admin token")


def admin(app: HubApp, req: Request) -> Response:
    """``/_pedigree/...`` endpoints (the caller has checked the admin token)."""
    name = req.path[len("/_pedigree/") :].strip("/")
    if name == "stats" and req.method == "GET":
        with_log = (api.q_get(req.query, "log") or "1").lower() not in ("0", "false", "no")
        return json_response(app.stats.snapshot().to_json(with_log))
    if name == "stats/reset" and req.method == "POST":
        app.stats.reset()
        return json_response({"ok": True})
    if name == "rescan" and req.method == "POST":
        report = app.store.rescan()
        return json_response({"added": report.added, "changed": report.changed, "removed": report.removed})
    extra = app.hooks.admin(name, req.method, req.body)
    if extra is not None:
        return extra
    raise HubError(404, None, f"Not found: {req.path}")


class HubHandler(BaseHTTPRequestHandler):
    """One connection; HTTP/1.1 keep-alive."""

    server: _HTTPServer  # the server this handler is made for: a TCP address and the app
    protocol_version = "HTTP/1.1"
    server_version = "pedigree-hub"
    disable_nagle_algorithm = True  # headers and body are separate writes: avoid 40 ms delayed-ACK stalls

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the stats log records every request."""

    def do_GET(self) -> None:
        self._handle("GET")

    def do_HEAD(self) -> None:
        self._handle("HEAD")

    def do_POST(self) -> None:
        self._handle("POST")

    def setup(self) -> None:
        super().setup()
        self.connection.settimeout(self.server.app.settings.idle_timeout)  # idle connections end

    def _body_length(self) -> int:
        """The request's ``Content-Length``, bounded; HubError (connection closed) otherwise."""
        if self.headers.get("Transfer-Encoding"):
            self.close_connection = True
            raise HubError(411, None, "Length Required: chunked request bodies are not supported")
        raw = (self.headers.get("Content-Length") or "0").strip()
        if not (raw.isascii() and raw.isdigit()):
            self.close_connection = True
            raise HubError(400, None, "Content-Length is not a non-negative integer")
        if len(raw) > 12 or int(raw) > MAX_POST_BODY:
            self.close_connection = True
            raise HubError(413, None, f"request body over {MAX_POST_BODY} bytes")
        return int(raw)

    def _request(self, method: str) -> Request:
        parts = urlsplit(self.path)
        length = self._body_length()
        body = self.rfile.read(length) if length > 0 else b""
        host = self.headers.get("Host") or f"{self.server.server_address[0]}:{self.server.server_address[1]}"
        return Request(
            method,
            parts.path or "/",
            parse_qsl(parts.query, keep_blank_values=True),
            self.headers,
            Access.token(self.headers),
            f"http://{host}",
            body,
        )

    def _handle(self, method: str) -> None:
        app: HubApp = self.server.app
        head = method == "HEAD"
        try:
            req = self._request(method)
        except HubError as e:
            refused = error_response(e)
            self._write(refused, None, 0 if head else refused.length)
            return
        if req.path.startswith("/_pedigree/") or req.path == "/_pedigree":
            try:
                check_admin(app, req)
                resp = admin(app, req)
            except HubError as e:
                resp = error_response(e)
            except Exception as e:  # noqa: BLE001 - answer, never drop the connection with a traceback
                resp = error_response(HubError(500, None, f"internal error: {type(e).__name__}"))
            resp, fh = self._open(resp, head)
            self._write(resp, fh, 0 if head else resp.length)
            return
        route = classify(method, req.path)
        if route.blob is not None:  # the CDN URL carries where it came from
            route.repo, route.file = api.q_get(req.query, "repo"), api.q_get(req.query, "file")
            route.revision = api.q_get(req.query, "commit")
        decision = app.hooks.decide(route.kind, unquote(req.path))
        app.settings.link.round_trip()
        if decision.delay:
            time.sleep(decision.delay)
        try:
            if decision.status is not None:
                raise HubError(decision.status, None, decision.message, decision.headers)
            resp = dispatch(app, req, route, decision)
        except HubError as e:
            resp = error_response(e)
        except Exception as e:  # noqa: BLE001 - a server bug: answer 500 rather than drop the connection
            resp = error_response(HubError(500, None, f"internal error: {type(e).__name__}: {e}"))
        resp, fh = self._open(resp, head)
        faults = list(decision.fired)
        if decision.ignore_range and route.kind in ("resolve_get", "cdn_get") and req.headers.get("Range"):
            faults.append("ignore_range")
        limit = 0 if head else resp.length
        if decision.truncate is not None and limit > 0:
            limit = max(0, min(limit - 1, int(limit * decision.truncate)))
            self.close_connection = True
            faults.append("truncate")
        # Recorded before writing, so a client that has read the answer always finds it counted.
        seq = app.stats.record(
            method,
            req.path,
            route.kind,
            resp.status,
            limit,
            range=req.headers.get("Range"),
            repo=route.repo,
            file=route.file,
            revision=route.revision,
            faults=tuple(faults),
        )
        sent = self._write(resp, fh, limit)
        if sent != limit:
            app.stats.correct(seq, sent)

    def _open(self, resp: Response, head: bool) -> tuple[Response, Any]:
        """Open the file a response streams (checking it did not change since the scan)."""
        if resp.file is None:
            return resp, None
        fh = None
        try:
            if os.path.realpath(resp.file.path) != str(resp.file.path):
                raise OSError("replaced by a symlink since the last rescan")
            fh = open_regular(resp.file.path)  # no symlink, no FIFO or device
            st = os.fstat(fh.fileno())
            if st.st_size != resp.file.size or st.st_mtime != resp.file.mtime:
                raise OSError("changed on disk since the last rescan")
            if head:
                fh.close()
            return resp, None if head else fh
        except OSError as e:
            if fh is not None:
                fh.close()
            why = e.strerror or str(e) or type(e).__name__
            return error_response(HubError(404, "EntryNotFound", f"{resp.file.path.name}: {why}")), None

    def _write(self, resp: Response, fh: Any, limit: int) -> int:
        """Send headers (full ``Content-Length``) and ``limit`` body bytes; returns the bytes written."""
        self._sent = 0
        try:
            self.send_response(resp.status)
            for key, value in resp.headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(resp.length))
            self.end_headers()
            if limit > 0:
                self._send_body(resp, fh, limit)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        finally:
            if fh is not None:
                fh.close()
        return self._sent

    def _send_body(self, resp: Response, fh: Any, limit: int) -> None:
        if fh is None:
            self.server.app.settings.link.transmit(min(limit, len(resp.body)))
            self.wfile.write(resp.body[:limit])
            self._sent = min(limit, len(resp.body))
            return
        assert resp.file is not None
        while self._sent < limit:  # sendfile: the kernel copies file pages to the socket
            count = min(CHUNK, limit - self._sent)
            self.server.app.settings.link.transmit(count)
            sent = self.connection.sendfile(fh, resp.file.offset + self._sent, count)
            self._sent += sent
            if sent < count:
                self.close_connection = True  # file shrank: the client sees a short body
                break
