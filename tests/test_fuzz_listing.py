"""Fuzzing the crawler's reading of a Hub listing: entries, and whole pages through real HTTP.

The properties:

- :func:`~pedigree.crawler.listing.listed_repo` returns a repo whose id, sha and file names pass
  the listing's own grammar, or raises :class:`~pedigree.crawler.listing.BadEntry` with a bounded
  one-line reason - never another exception;
- :func:`~pedigree.crawler.listing.listing_pages` over pages a server on 127.0.0.1 answers with
  fuzzed bodies, ``Link`` headers and encodings ends by itself, after a bounded number of
  requests, either normally or with pedigree's :class:`~pedigree.errors.RemoteError`; a token is
  never sent to another origin; every page it yields holds only valid repos.

Budget: CI runs a fixed number of examples per test (``tests.fuzz_budget``) (a few seconds), derandomized.  A longer,
randomized run::

    PEDIGREE_FUZZ_EXAMPLES=20000 .venv/bin/python -m pytest -q -p no:cacheprovider tests/test_fuzz_listing.py
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from fuzz_budget import fuzz_settings
from hypothesis import given
from hypothesis import strategies as st

from pedigree.crawler.http_client import hub_client
from pedigree.crawler.http_retry import RetryPolicy
from pedigree.crawler.listing import (
    SHA,
    BadEntry,
    ListedRepo,
    file_name_problem,
    listed_repo,
    listing_pages,
    valid_repo_id,
)
from pedigree.errors import RemoteError

MAX_REASON_CHARS = 400
MAX_REQUESTS = 12  # a fuzzed walk: a first page, a few followed links, never a loop
TOKEN = "hf_fuzz_token"

FUZZ = fuzz_settings(150)

# -- entries ------------------------------------------------------------------------------------

JSON_LEAF = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
)
JSON_VALUE = st.recursive(
    JSON_LEAF,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
PARTS = st.sampled_from(["org", "name", "a", "A-b_c.d", "..", ".", "-x", "x-", "--", "a..b", "ü", "x" * 97, ""])
IDS = st.one_of(
    st.builds(lambda a, b: f"{a}/{b}", PARTS, PARTS),
    PARTS,
    st.builds(lambda a, b, c: f"{a}/{b}/{c}", PARTS, PARTS, PARTS),
    st.text(max_size=40),
    JSON_LEAF,
)
TIMES = st.one_of(
    st.sampled_from(
        [
            "2024-03-01T00:00:00.000Z",
            "2024-13-45T00:00:00.000Z",
            "0001-01-01T00:00:00+01:00",
            "9999-12-31T23:59:59-23:59",
            "9999-01-01T00:00:00Z",
            "2024-03-01",
            "",
            "Z",
        ]
    ),
    st.datetimes(timezones=st.just(UTC)).map(lambda d: d.isoformat()),
    JSON_LEAF,
)
FILE_NAMES = st.one_of(
    st.sampled_from(["model.safetensors", "config.json", "../x", "/etc/passwd", "a//b", "a/./b", "x\x00y", "a\\b"]),
    st.text(max_size=20),
    JSON_LEAF,
)
SIBLINGS = st.one_of(
    st.lists(st.one_of(st.builds(lambda n: {"rfilename": n}, FILE_NAMES), JSON_VALUE), max_size=5),
    JSON_VALUE,
)
SHAS = st.one_of(st.just("a" * 40), st.text(alphabet="0123456789abcdefABCDEF./", max_size=70), JSON_LEAF)
FIELDS: dict[str, Any] = {
    "id": IDS,
    "sha": SHAS,
    "lastModified": TIMES,
    "createdAt": TIMES,
    "siblings": SIBLINGS,
    "cardData": st.one_of(
        st.fixed_dictionaries(
            {},
            optional={
                "base_model": st.one_of(IDS, st.lists(IDS, max_size=3)),
                "base_model_relation": JSON_LEAF,
            },
        ),
        JSON_VALUE,
    ),
    "gated": JSON_LEAF,
    "private": JSON_LEAF,
}
ENTRIES = st.one_of(st.fixed_dictionaries({}, optional=FIELDS), JSON_VALUE)


def check_repo(repo: ListedRepo) -> None:
    assert valid_repo_id(repo.repo_id)
    assert repo.sha is None or SHA.fullmatch(repo.sha)
    assert all(file_name_problem(f) is None for f in repo.files)
    assert repo.last_modified is None or repo.last_modified.tzinfo is not None
    assert repo.base_model is None or all(valid_repo_id(b) for b in repo.base_model)
    assert isinstance(repo.gated, (bool, str)) and isinstance(repo.private, bool)


@FUZZ
@given(ENTRIES)
def test_fuzz_entries_are_valid_repos_or_bad_entries(entry: Any) -> None:
    try:
        repo = listed_repo(entry, now=datetime.now(UTC))
    except BadEntry as error:
        reason = str(error)
        assert reason and "\n" not in reason and len(reason) <= MAX_REASON_CHARS, reason
        return
    check_repo(repo)


# -- pages through real HTTP --------------------------------------------------------------------


class Script:
    """What the fuzz server answers to ``/api/models`` (set by each example)."""

    def __init__(self) -> None:
        self.body = b"[]"
        self.headers: dict[str, str] = {}
        self.requests: list[tuple[str, str | None]] = []
        self.lock = threading.Lock()


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # the client hanging up on a page it refuses is expected


@pytest.fixture(scope="module")
def fuzz_server() -> Iterator[tuple[str, str, Script, Script]]:
    """Two servers on 127.0.0.1: the endpoint and another origin its links may name."""
    scripts = (Script(), Script())
    servers = []
    for script in scripts:

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True
            answers = script

            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                with self.answers.lock:
                    self.answers.requests.append((self.path, self.headers.get("Authorization")))
                body = self.answers.body
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                for k, v in self.answers.headers.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(body)

        server = _QuietServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
    endpoint, other = (f"http://127.0.0.1:{server.server_address[1]}" for server in servers)
    yield endpoint, other, scripts[0], scripts[1]
    for server in servers:
        server.shutdown()
        server.server_close()


def _body(entries: list[Any], raw: bytes, kind: int) -> bytes:
    if kind == 0:
        return json.dumps(entries, allow_nan=True).encode()
    if kind == 1:
        return raw
    text = json.dumps(entries, allow_nan=True).encode()
    return text[: len(raw) % (len(text) + 1)]  # a page cut short


LINKS = st.one_of(
    st.none(),
    st.sampled_from(
        [
            "/api/models?cursor=2",
            "/api/models",
            "{self}",
            "{other}/api/models?cursor=2",
            "file:///etc/passwd",
            "http://[::1",
            "//evil.invalid/api/models",
            "?cursor=3",
            "",
        ]
    ),
    st.text(max_size=30),
)


@FUZZ
@given(
    entries=st.lists(ENTRIES, max_size=6),
    raw=st.binary(max_size=200),
    kind=st.integers(0, 2),
    link=LINKS,
    encoding=st.sampled_from([None, None, "gzip", "identity", "br"]),
    since=st.sampled_from([None, datetime(2024, 1, 1, tzinfo=UTC)]),
)
def test_fuzz_listing_pages_end_bounded(
    fuzz_server: tuple[str, str, Script, Script],
    entries: list[Any],
    raw: bytes,
    kind: int,
    link: str | None,
    encoding: str | None,
    since: datetime | None,
) -> None:
    endpoint, other_url, script, other = fuzz_server
    headers: dict[str, str] = {}
    if link is not None:
        target = link.replace("{self}", "/api/models?cursor=1").replace("{other}", other_url)
        if target.isascii() and target.isprintable():  # what an HTTP header can carry
            headers["Link"] = f'<{target}>; rel="next"'
    if encoding:
        headers["Content-Encoding"] = encoding
    for s in (script, other):
        s.body, s.headers, s.requests = _body(entries, raw, kind), headers, []
    walked = 0
    with hub_client(TOKEN) as client:
        try:
            for page in listing_pages(
                client, endpoint, since, token=TOKEN, retry=RetryPolicy(attempts=1, base_delay=0.0)
            ):
                walked += 1
                for repo in page.repos:
                    check_repo(repo)
                for _, reason in page.rejected:
                    assert "\n" not in reason and len(reason) <= MAX_REASON_CHARS
        except RemoteError as error:
            assert len(str(error)) <= 2000
    assert walked <= MAX_REQUESTS and len(script.requests) <= MAX_REQUESTS
    assert all(auth is None for _, auth in other.requests)  # the token stays with the endpoint
    assert not other.requests  # a link to another origin is not followed at all
