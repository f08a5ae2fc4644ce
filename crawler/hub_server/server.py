"""``HubServer``: the Hub-compatible test server as a Python object (background thread) or a CLI.

    with HubServer(root) as hub:
        api = HfApi(endpoint=hub.url, token=False)
        ...
        assert hub.stats().count("cdn_get") == 0

Tests and benchmarks that need a misbehaving Hub pass ``hooks`` (``bench/hub_faults.py``).
The server binds 127.0.0.1 unless told otherwise; its admin endpoints (``/_pedigree/...``) exist
only when it is given an ``admin_token`` (``--admin-token``), which every admin request must send
as ``Authorization: Bearer <token>``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Collection, Mapping
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any, Self

from .app import HubApp, HubHandler, Settings
from .auth import Access, TokenSpec
from .hooks import ServerHooks
from .link import Link
from .repos import DEFAULT_LARGE_FILE_THRESHOLD, RepoStore, ScanReport
from .stats import StatsSnapshot


class _HTTPServer(ThreadingHTTPServer):
    server_address: tuple[str, int]  # AF_INET: (host, port) as getsockname() gives it
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], app: HubApp) -> None:
        self.app = app
        super().__init__(address, HubHandler)

    def handle_error(self, request, client_address) -> None:
        """A client that hangs up (a crawler aborting a response that ignored Range, a killed
        process) is normal here, not a traceback on stderr."""
        import sys

        if isinstance(sys.exc_info()[1], (ConnectionResetError, BrokenPipeError)):
            return
        super().handle_error(request, client_address)


class HubServer:
    """A Hub-compatible server over ``root`` (``ROOT/ORG/NAME/`` repo folders).

    ``port=0`` picks a free port; :attr:`url` is ``http://host:port`` once started.  ``tokens``:
    see :mod:`crawler.hub_server.auth`.  ``page_size`` / ``max_page_size``: ``/api/models`` page
    size without / with a ``limit`` cap (the Hub's are undocumented; ~1000).  ``cdn_host``: send
    LFS redirects to ``http://{cdn_host}:{port}`` (e.g. ``"localhost"``: a different origin, so
    huggingface_hub's HEAD stops at the 302 as with the real CDN) instead of the request's host.
    ``link``: simulated latency and shared bandwidth (:class:`~crawler.hub_server.link.Link`).
    ``admin_token``: enables the ``/_pedigree/`` admin endpoints for requests that send it (tests,
    benchmarks); ``None`` (the default): they do not exist.  ``idle_timeout``: seconds a
    connection may stay idle before the server closes it.
    """

    def __init__(
        self,
        root: Path | str,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        hooks: ServerHooks | None = None,
        tokens: TokenSpec | None = None,
        large_file_threshold: int = DEFAULT_LARGE_FILE_THRESHOLD,
        page_size: int = 1000,
        max_page_size: int = 1000,
        tree_page_size: int = 1000,
        cdn_host: str | None = None,
        cdn_ttl: int = 3600,
        link: Link | None = None,
        admin_token: str | None = None,
        idle_timeout: float = 60.0,
    ) -> None:
        if admin_token is not None and not admin_token.strip():
            raise ValueError("admin_token must not be empty")
        if not 0 < idle_timeout <= 3600:
            raise ValueError("idle_timeout must be in (0, 3600] seconds")
        self.root = Path(root)
        self.host, self._port = host, port
        self.store = RepoStore(self.root, large_file_threshold=large_file_threshold)
        settings = Settings(
            default_page_size=page_size,
            max_page_size=max(max_page_size, page_size),
            tree_page_size=tree_page_size,
            cdn_host=cdn_host,
            cdn_ttl=cdn_ttl,
            link=link or Link(),
            admin_token=admin_token,
            idle_timeout=idle_timeout,
        )
        self.app = HubApp(self.store, hooks or ServerHooks(), Access(tokens), settings)
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ---- lifecycle -----------------------------------------------------------------------------
    def _bind(self) -> _HTTPServer:
        if self._httpd is None:
            self._httpd = _HTTPServer((self.host, self._port), self.app)
            self.app.port = self._httpd.server_address[1]
        return self._httpd

    def start(self) -> Self:
        """Serve in a daemon thread; returns self."""
        if self._thread is None:
            httpd = self._bind()
            self._thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), name="hub-server", daemon=True)
            self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Serve in the calling thread until interrupted."""
        self._bind().serve_forever()

    def stop(self) -> None:
        """Stop serving and close the socket."""
        if self._httpd is not None:
            if self._thread is not None:
                self._httpd.shutdown()
                self._thread.join(timeout=5)
            self._httpd.server_close()
        self._httpd, self._thread = None, None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        return self._bind().server_address[1]

    @property
    def admin_token(self) -> str | None:
        return self.app.settings.admin_token

    @property
    def admin_headers(self) -> dict[str, str]:
        """``{"Authorization": "Bearer <admin token>"}`` for admin requests (empty without a token)."""
        return {"Authorization": f"Bearer {self.admin_token}"} if self.admin_token else {}

    @property
    def url(self) -> str:
        """``http://host:port`` (no trailing slash): pass it as ``HfApi(endpoint=...)``."""
        return f"http://{self.host}:{self.port}"

    # ---- control -------------------------------------------------------------------------------
    def stats(self) -> StatsSnapshot:
        return self.app.stats.snapshot()

    def reset_stats(self) -> None:
        self.app.stats.reset()

    def rescan(self) -> ScanReport:
        """Re-read ROOT (after adding, changing or deleting repos on disk)."""
        return self.store.rescan()

    def set_tokens(self, tokens: TokenSpec | None) -> None:
        self.app.access.set_tokens(tokens)

    def set_override(self, repo_id: str, **fields: Any) -> None:
        """Override ``last_modified`` / ``created_at`` / ``downloads`` / ``likes`` of a repo."""
        self.store.set_override(repo_id, **fields)

    def history(self, repo_id: str) -> list[str]:
        """Shas the repo has had while the server ran (oldest first)."""
        return self.store.history(repo_id)


def serve(
    root: Path | str,
    host: str = "127.0.0.1",
    port: int = 8000,
    *,
    tokens: Collection[str] | Mapping[str, Collection[str] | None] | None = None,
    announce: Callable[[HubServer], None] | None = None,
    **options: Any,
) -> None:
    """Blocking: serve ``root`` until Ctrl-C (``pedigree hub serve DIR --port N``); ``announce``
    is told the server once it listens (default: one line on stdout)."""
    server = HubServer(root, host=host, port=port, tokens=tokens, **options)
    if announce is None:
        repos, skipped = len(server.store.repos()), len(server.store.skipped)
        left_out = f" ({skipped} folders/files left out, reasons on stderr)" if skipped else ""
        print(f"pedigree hub server: {repos} repos from {server.root} at {server.url}{left_out}", flush=True)
    else:
        announce(server)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
