"""A hostile Hub listing, through the real CLI in a subprocess and real HTTP on 127.0.0.1.

A small malicious Hub-compatible server (:class:`EvilHub`, a ``ThreadingHTTPServer`` in a thread)
answers ``/api/models`` from a script - bad entries, a gzip bomb, a ``Link`` back to the same page,
cursors that cycle, a ``Link`` to another origin, redirect loops, a redirect to ``file://`` - and
sends the valid neighbour's file requests on to the bundled Hub server (as the Hub sends them to
its CDN).  Each crawl runs as ``python -m pedigree crawl`` in a child process whose peak RSS is
read from its VmHWM (``tests.bounded_cli``) (a watchdog kills it past :data:`KILL_RSS` or :data:`RUN_TIMEOUT`), and each
test asserts: the run ends by itself, under :data:`PEAK_RSS`, without a traceback, the valid
neighbour is indexed, and nothing outside the data folder is touched.
"""

from __future__ import annotations

import gzip
import json
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import duckdb
import pytest

from pedigree.crawler.hub_server import HubServer
from pedigree.crawler.listing import MAX_PAGE_BYTES
from pedigree.indexer.bounded_json import MAX_JSON_CONTAINERS
from tests import bounded_cli
from tests.bounded_cli import BoundedRun

ROOT = Path(__file__).resolve().parents[1]
NEIGHBOUR = "good/neighbour"
BASE_MODEL = "llama-lab/tiny-llama-s1"
PEAK_RSS = 1 * 2**30  # a clean crawl of one small model peaks near 0.5 GiB (torch and DuckDB loaded)
KILL_RSS = 3 * 2**30
RUN_TIMEOUT = 120
TOKEN = "hf_secret_listing_token"


# -- running the CLI with bounds ----------------------------------------------------------------


def run_cli_bounded(args: list[str], *, timeout: float = RUN_TIMEOUT) -> BoundedRun:
    """``python -m pedigree ARGS`` in a child, bounded (``tests.bounded_cli``), without HF_TOKEN."""
    return bounded_cli.run_cli_bounded(args, timeout=timeout, kill_rss=KILL_RSS, drop_env=("HF_TOKEN",))


def run_cli_in_process(args: list[str]) -> BoundedRun:
    """The same CLI in this process (typer's runner): for the cases where memory is not at stake,
    without the child's start-up (peak RSS is not measured: 0)."""
    from cli_runner import runner

    from pedigree.cli import app

    started = time.monotonic()
    result = runner.invoke(app, args)
    stderr = result.stderr
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        stderr += f"Traceback: {result.exception!r}"
    return BoundedRun(result.exit_code, result.stdout, stderr, 0, time.monotonic() - started, None)


def assert_bounded(run: BoundedRun, *, exit_code: int = 0) -> None:
    print(f"crawl: {run.seconds:.1f} s, peak RSS {run.peak_rss / 2**20:.0f} MiB")
    assert not run.killed, run.killed
    assert run.returncode == exit_code, run.stdout[-2000:] + run.stderr[-2000:]
    assert "Traceback" not in run.stdout + run.stderr
    assert "internal error" not in run.stdout + run.stderr
    assert run.peak_rss < PEAK_RSS, f"peak RSS {run.peak_rss / 2**20:.0f} MiB"


# -- the malicious server -----------------------------------------------------------------------

Answer = tuple[int, dict[str, str], bytes]
PageScript = Callable[[int, str], Answer]  # (page number from the cursor, request path) -> answer


@dataclass
class Seen:
    method: str
    path: str
    authorization: str | None


@dataclass
class EvilHub:
    """A Hub-compatible listing from a script; file requests of ``forward`` repos go on to
    ``forward_to`` with a 307 (as the Hub sends downloads to its CDN); ``evil/file-redirect``
    redirects to ``file:///etc/passwd``, ``evil/redirect-loop``'s download URL to itself."""

    page: PageScript
    forward_to: str = ""
    seen: list[Seen] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> EvilHub:
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def log_message(self, *args: object) -> None:
                pass

            def answer(self, status: int, headers: dict[str, str], body: bytes = b"") -> None:
                self.send_response(status)
                for k, v in {"Content-Length": str(len(body)), **headers}.items():
                    self.send_header(k, v)
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def do_GET(self) -> None:
                hub.seen.append(Seen(self.command, self.path, self.headers.get("Authorization")))
                parts = urlsplit(self.path)
                if parts.path == "/api/models":
                    cursor = parse_qs(parts.query).get("cursor", ["1"])[0]
                    self.answer(*hub.page(int(cursor) if cursor.isdigit() else 0, self.path))
                elif parts.path.startswith("/evil/file-redirect/"):
                    self.answer(302, {"Location": "file:///etc/passwd"})
                elif parts.path.startswith("/evil/redirect-loop/"):
                    self.answer(302, {"Location": "/cdn/loop", "X-Linked-Size": "100000"})
                elif parts.path == "/cdn/loop":
                    self.answer(302, {"Location": "/cdn/loop"})
                elif hub.forward_to:
                    self.answer(307, {"Location": hub.forward_to + self.path})
                else:
                    self.answer(404, {"X-Error-Code": "RepoNotFound"})

            do_HEAD = do_GET

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request: object, client_address: object) -> None:
                pass  # the crawler hanging up on a bomb is the point, not a server fault

        self.server = Server(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.shutdown()
        self.server.server_close()

    def listing_requests(self) -> list[Seen]:
        return [s for s in self.seen if s.path.startswith("/api/models?") or s.path == "/api/models"]


def json_page(entries: list[Any], next_url: str | None = None) -> Answer:
    headers = {"Content-Type": "application/json"}
    if next_url:
        headers["Link"] = f'<{next_url}>; rel="next"'
    return 200, headers, json.dumps(entries).encode()


def gzip_bomb(gib: int = 2) -> bytes:
    """``gib`` GiB of zeros as concatenated gzip members (a few MB on the wire)."""
    member = gzip.compress(b"\0" * (64 * 2**20), compresslevel=9)
    return member * (gib * 16)


# -- fixtures -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def good_hub(small_zoo: Path, tmp_path_factory: pytest.TempPathFactory):
    """The bundled server with the valid neighbour (a copy of one small-zoo model)."""
    root = tmp_path_factory.mktemp("good-hub")
    shutil.copytree(small_zoo / BASE_MODEL, root / NEIGHBOUR)
    with HubServer(root) as hub:
        yield hub


@pytest.fixture(scope="module")
def neighbour(good_hub: HubServer) -> dict[str, Any]:
    """The neighbour's listing entry, as the bundled server lists it (its sha and times)."""
    import httpx

    params = [("expand", e) for e in ("sha", "lastModified", "createdAt", "cardData", "siblings", "gated", "private")]
    entries = httpx.get(f"{good_hub.url}/api/models", params=params).json()
    return next(e for e in entries if e["id"] == NEIGHBOUR)


def like(entry: dict[str, Any], **changes: Any) -> dict[str, Any]:
    return {**entry, **changes}


def crawl(endpoint: str, home: Path, *extra: str, timeout: float = RUN_TIMEOUT, child: bool = True) -> BoundedRun:
    """``pedigree crawl --json``: in a child process (memory and time measured) or in this one."""
    args = ["crawl", "--endpoint", endpoint, "--home", str(home), "--json", *extra]
    return run_cli_bounded(args, timeout=timeout) if child else run_cli_in_process(args)


def high_water(home: Path) -> Any:
    conn = duckdb.connect(str(home / "pedigree.duckdb"), read_only=True)
    try:
        row = conn.execute("SELECT high_water FROM crawl_state").fetchone()
    finally:
        conn.close()
    return None if row is None else row[0]


def tree(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*")}


# -- the cases ----------------------------------------------------------------------------------

BAD_ENTRIES: dict[str, tuple[dict[str, Any], str]] = {
    # key: (changes to the neighbour's entry, a distinctive part of the reason)
    "integer id": ({"id": 42}, "not a model id: 42"),
    "id climbing out": ({"id": "o/../../r4"}, "not a model id"),
    "id with escapes": ({"id": "evil/\x1b[31mred"}, "not a model id"),
    "malformed lastModified": ({"id": "evil/bad-date", "lastModified": "2024-13-45T00:00:00.000Z"}, "not a timestamp"),
    "lastModified out of range": (
        {"id": "evil/overflow", "lastModified": "0001-01-01T00:00:00+01:00"},
        "not a timestamp",
    ),
    "lastModified in the future": ({"id": "evil/future", "lastModified": "9999-01-01T00:00:00.000Z"}, "in the future"),
    "string siblings": ({"id": "evil/str-siblings", "siblings": "model.safetensors"}, "not a list"),
    "sibling climbing out": (
        {"id": "evil/sibling", "siblings": [{"rfilename": "../../../etc/passwd"}]},
        "leaves the repo",
    ),
    "sha climbing out": ({"id": "evil/sha", "sha": "../../x"}, "not a commit id"),
}


def test_bad_entries_are_set_aside_and_the_mark_moves_past_the_neighbour(
    good_hub: HubServer, neighbour: dict[str, Any], tmp_path: Path
):
    """One entry with a malformed lastModified, an integer id or a string siblings used to fail
    the listing (0 repos indexed, the mark never moved); each is now set aside with its reason."""
    entries = [like(neighbour, **changes) for changes, _ in BAD_ENTRIES.values()] + [neighbour]
    with EvilHub(lambda n, path: json_page(entries), forward_to=good_hub.url) as evil:
        home = tmp_path / "home"
        first = crawl(evil.url, home)
        assert_bounded(first)
        report = first.report()
        assert report[NEIGHBOUR]["status"] == "indexed"
        reasons = [r["reason"] for r in first.result["repos"] if r["id"] != NEIGHBOUR]
        assert len(reasons) == len(BAD_ENTRIES) and first.result["counts"]["rejected"] == len(BAD_ENTRIES)
        for case, (_, why) in BAD_ENTRIES.items():
            assert any(why in r and "listing entry set aside" in r for r in reasons), (case, reasons)
        assert "\x1b" not in first.stdout  # the id with escapes is reported by position, not written raw
        mark = high_water(home)
        assert mark is not None and mark.isoformat()[:19] == neighbour["lastModified"][:19]
        # the next run is not stuck: it ends the same way, fetches nothing, keeps the mark
        del evil.seen[:]
        second = crawl(evil.url, home, child=False)
        assert_bounded(second)
        assert NEIGHBOUR not in second.report() and high_water(home) == mark
        assert not [s for s in evil.seen if not s.path.startswith("/api/models")]
    assert not [s for s in evil.seen if s.path.startswith("/r4")]  # o/../../r4 never fetched


@pytest.fixture(scope="module")
def bomb() -> bytes:
    return gzip_bomb()


HOSTILE_SECOND_PAGES: dict[str, tuple[Callable[[bytes], Answer], str, bool]] = {
    # case: (the second page's answer, a distinctive part of the reason, run in a child process)
    "gzip bomb": (
        lambda bomb: (200, {"Content-Encoding": "gzip", "Content-Type": "application/json"}, bomb),
        "gzip",
        True,
    ),
    "nested past the recursion limit": (
        lambda _: (200, {}, b"[" * 200_000 + b"]" * 200_000),
        "nested too deeply",
        True,
    ),
    "over the page limit": (lambda _: (200, {}, b"[" + b"0," * (20 * 2**20) + b"0]"), "limit", True),
    "millions of empty objects under the byte cap": (
        lambda _: (200, {}, b"[" + b"{}," * ((MAX_PAGE_BYTES - 2) // 3 - 1) + b"{}]"),
        "JSON objects and arrays",  # counted before the parse (bounded_json), not after
        True,
    ),
    "just under the container bound": (
        lambda _: (200, {}, b"[" + b"{}," * (MAX_JSON_CONTAINERS - 2) + b"{}]"),
        "more than the 1000 asked for",
        True,
    ),
    "not a list": (lambda _: (200, {}, b'{"error": "x"}'), "not a JSON list", False),
    "redirect loop": (lambda _: (302, {"Location": "/api/models?cursor=2"}, b""), "redirected too many times", False),
    "redirect to a file": (lambda _: (302, {"Location": "file:///etc/passwd"}, b""), "not http(s)", False),
    "a next link that is not a URL": (
        lambda _: json_page([], "http://[::1"),
        "not a URL",
        False,
    ),
}


@pytest.mark.parametrize("case", sorted(HOSTILE_SECOND_PAGES))
def test_a_hostile_second_page_stops_the_listing_after_the_first_is_indexed(
    good_hub: HubServer, neighbour: dict[str, Any], bomb: bytes, tmp_path: Path, case: str
):
    """The whole listing used to be collected before anything was indexed: a page that cannot be
    read lost every repo of the run.  Pages are indexed as they arrive now, a hostile page stops
    the listing with its reason, and the mark stays for the next run to list again."""
    second, why, child = HOSTILE_SECOND_PAGES[case]

    def page(n: int, path: str) -> Answer:
        return json_page([neighbour], "/api/models?cursor=2") if n == 1 else second(bomb)

    with EvilHub(page, forward_to=good_hub.url) as evil:
        home = tmp_path / "home"
        run = crawl(evil.url, home, child=child)
        assert_bounded(run)
    report = run.report()
    assert report[NEIGHBOUR]["status"] == "indexed"
    stopped = report["(listing)"]
    assert stopped["status"] == "failed" and "listing stopped after page " in stopped["reason"], stopped
    assert why in stopped["reason"], stopped
    assert run.result["counts"]["listing_stopped"] == 1 and high_water(home) is None


def test_a_gzip_bomb_as_the_first_page_fails_the_run_in_one_line(bomb: bytes, tmp_path: Path):
    with EvilHub(lambda n, path: (200, {"Content-Encoding": "gzip"}, bomb)) as evil:
        run = crawl(evil.url, tmp_path / "home")
    assert_bounded(run, exit_code=1)
    assert "gzip" in run.stdout + run.stderr


def test_a_link_back_to_the_same_page_is_not_followed(good_hub: HubServer, neighbour: dict[str, Any], tmp_path: Path):
    """A Link pointing back at the same page used to be read ~2,000 times in 90 s with nothing
    indexed; the repeated URL now ends the listing before it is asked for again."""
    with EvilHub(lambda n, path: json_page([neighbour], path), forward_to=good_hub.url) as evil:
        run = crawl(evil.url, tmp_path / "home", child=False)
        assert_bounded(run)
        assert len(evil.listing_requests()) == 1
    assert run.report()[NEIGHBOUR]["status"] == "indexed"
    assert "comes back to a page already read" in run.report()["(listing)"]["reason"]


def test_cursors_that_cycle_over_the_same_page_stop_on_the_repeat(
    good_hub: HubServer, neighbour: dict[str, Any], tmp_path: Path
):
    """Every page names a new cursor and lists the same repos: the second page is the last read."""
    with EvilHub(
        lambda n, path: json_page([neighbour], f"/api/models?cursor={n + 1}"), forward_to=good_hub.url
    ) as evil:
        run = crawl(evil.url, tmp_path / "home", child=False)
        assert_bounded(run)
        assert len(evil.listing_requests()) == 2
    assert run.report()[NEIGHBOUR]["status"] == "indexed"
    assert "repeats a page already read" in run.report()["(listing)"]["reason"]


def test_the_token_goes_to_the_endpoint_only(good_hub: HubServer, neighbour: dict[str, Any], tmp_path: Path):
    """The listing's Link names another origin (which also serves as the download CDN): the
    token reaches the endpoint and nothing else; the cross-origin page is never asked for."""
    with EvilHub(lambda n, path: (404, {}, b""), forward_to=good_hub.url) as other:
        other_url = other.url

        def page(n: int, path: str) -> Answer:
            return json_page([neighbour], f"{other_url}/api/models?cursor=2")

        with EvilHub(page, forward_to=other_url) as evil:
            home = tmp_path / "home"
            before = tree(tmp_path)
            run = crawl(evil.url, home, "--token", TOKEN, child=False)
            assert_bounded(run)
        assert {s.authorization for s in evil.seen} == {f"Bearer {TOKEN}"}
        assert other.seen and all(s.authorization is None for s in other.seen)  # the CDN hop: no token
        assert not other.listing_requests()
    assert run.report()[NEIGHBOUR]["status"] == "indexed"
    assert "leaves" in run.report()["(listing)"]["reason"] and TOKEN not in run.stdout + run.stderr
    assert {k: v for k, v in tree(tmp_path).items() if not k.startswith("home")} == before


def test_redirects_to_file_and_redirect_loops_fail_their_repo_for_good(
    good_hub: HubServer, neighbour: dict[str, Any], tmp_path: Path
):
    """A file:// redirect was a transient failure retried on every run, a redirect loop an
    'internal error: TooManyRedirects'; both now fail the repo with a reason, once."""
    entries = [like(neighbour, id="evil/file-redirect"), like(neighbour, id="evil/redirect-loop"), neighbour]
    with EvilHub(lambda n, path: json_page(entries), forward_to=good_hub.url) as evil:
        home = tmp_path / "home"
        first = crawl(evil.url, home, child=False)
        assert_bounded(first)
        report = first.report()
        assert report[NEIGHBOUR]["status"] == "indexed"
        assert report["evil/file-redirect"]["status"] == "failed"
        assert "not http(s)" in report["evil/file-redirect"]["reason"]
        assert report["evil/redirect-loop"]["status"] == "failed"
        assert "redirected too many times" in report["evil/redirect-loop"]["reason"]
        again = crawl(evil.url, home, child=False)
        assert_bounded(again)
        assert again.result["repos"] == []  # not retried while their sha stands


def test_a_listing_that_never_ends_stops_at_the_page_limit(monkeypatch: pytest.MonkeyPatch):
    """Every page lists new repos and names a new cursor: the walk ends at MAX_PAGES (lowered here)."""
    from pedigree.crawler import listing
    from pedigree.crawler.http_client import hub_client

    monkeypatch.setattr(listing, "MAX_PAGES", 3)

    def page(n: int, path: str) -> Answer:
        entry = {"id": f"fake/repo-{n}", "lastModified": "2024-03-01T00:00:00.000Z", "siblings": []}
        return json_page([entry], f"/api/models?cursor={n + 1}")

    read: list[listing.ListingPage] = []
    with EvilHub(page) as evil, hub_client() as client:
        with pytest.raises(listing.ListingStopped, match="past 3 pages"):
            read.extend(listing.listing_pages(client, evil.url, None))
        assert len(evil.listing_requests()) == 3
    assert [r.repo_id for p in read for r in p.repos] == ["fake/repo-1", "fake/repo-2", "fake/repo-3"]
