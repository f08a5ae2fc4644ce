"""Fuzz of what a server may answer to the crawler's requests (range GETs, HEADs, JSON pages).

A raw TCP server on 127.0.0.1 writes, byte for byte, a response drawn by hypothesis: any status,
``Content-Range`` / ``Content-Length`` that match, lie or are not numbers (huge, negative,
Unicode digits), encodings, redirects (to itself, to ``file://``, to nonsense), bodies exact,
short, long or random, and now and then no HTTP at all.  Whatever it answers, the strict reader
(:class:`~pedigree.crawler.http_fetch.Fetcher`) either returns exactly what a correct answer
carried or raises a :class:`~pedigree.errors.PedigreeError` - never another exception - and
always within its deadline.

The CI budget is ``PEDIGREE_FUZZ_EXAMPLES`` examples per test (default 120, a few seconds);
a longer run: ``PEDIGREE_FUZZ_EXAMPLES=20000 pytest tests/test_fuzz_ranges.py``.
"""

from __future__ import annotations

import socket
import socketserver
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from fuzz_budget import fuzz_settings
from hypothesis import given
from hypothesis import strategies as st

from pedigree.crawler.http_client import hub_client
from pedigree.crawler.http_deadline import Deadlines
from pedigree.crawler.http_fetch import Fetcher, RemoteFile
from pedigree.crawler.http_retry import RetryPolicy
from pedigree.errors import PedigreeError

FILE = bytes(range(256)) * 4  # the true file: 1024 bytes
DEADLINE = 2.0  # seconds a request may take
QUICK = RetryPolicy(attempts=2, base_delay=0.0, max_delay=0.0, jitter=0.0)


@dataclass
class Answer:
    raw: bytes = b""
    status: int = 0
    body: bytes = b""


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    answer = Answer()


class _Handler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        self.request.settimeout(5)
        data = b""
        try:
            while b"\r\n\r\n" not in data and len(data) < 65536:
                chunk = self.request.recv(4096)
                if not chunk:
                    return
                data += chunk
            self.request.sendall(self.server.answer.raw)  # type: ignore[attr-defined]
            self.request.shutdown(socket.SHUT_WR)
        except OSError:
            pass


@pytest.fixture(scope="module")
def server() -> Iterator[_Server]:
    srv = _Server(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


NUMBERS = st.one_of(
    st.integers(min_value=-5, max_value=2000).map(str),
    st.just("9" * 5000),  # past int()'s 4300-digit limit
    st.sampled_from(["²", "١٢", "1e3", " 12 ", "0x10", "", "-0", "+5", "1_0"]),
    st.text(max_size=12),
)


@st.composite
def answers(draw: st.DrawFn, begin: int, end: int) -> Answer:
    """One response to a request for bytes ``[begin, end)`` of :data:`FILE`."""
    if draw(st.integers(0, 19)) == 0:  # no HTTP at all
        return Answer(raw=draw(st.binary(max_size=300)))
    status = draw(
        st.one_of(
            st.sampled_from([200, 206, 206, 206, 301, 302, 307, 404, 403, 416, 429, 500, 503]), st.integers(100, 599)
        )
    )
    exact = FILE[begin:end]
    body = draw(
        st.one_of(
            st.just(exact),
            st.integers(0, max(0, len(exact) - 1)).map(lambda n: exact[:n]),
            st.binary(min_size=1, max_size=64).map(lambda extra: exact + extra),
            st.binary(max_size=600),
            st.just(FILE),
        )
    )
    headers: list[tuple[str, str]] = []
    content_range = draw(
        st.one_of(
            st.just(f"bytes {begin}-{end - 1}/{len(FILE)}"),
            st.tuples(NUMBERS, NUMBERS, NUMBERS).map(lambda t: f"bytes {t[0]}-{t[1]}/{t[2]}"),
            st.sampled_from([f"bytes {begin}-{end - 1}/*", f"bytes {begin + 1}-{end}/{len(FILE)}", "bytes */1024"]),
            st.text(max_size=40),
            st.none(),
        )
    )
    if content_range is not None:
        headers.append(("Content-Range", content_range))
    length = draw(st.one_of(st.just(str(len(body))), NUMBERS, st.none()))
    if length is not None:
        headers.append(("Content-Length", length))
    if draw(st.booleans()):
        headers.append(("Content-Encoding", draw(st.sampled_from(["gzip", "identity", "br", "x"]))))
    if 300 <= status < 400 or draw(st.integers(0, 9)) == 0:
        headers.append(
            ("Location", draw(st.sampled_from(["/f", "file:///etc/passwd", "http://[::1", "//", "ftp://x/"])))
        )
    if draw(st.booleans()):
        headers.append(
            (draw(st.sampled_from(["Retry-After", "X-Error-Code", "RateLimit", "X-Linked-Size"])), draw(NUMBERS))
        )
    head = f"HTTP/1.1 {status} X\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers) + "Connection: close\r\n\r\n"
    return Answer(raw=head.encode("latin-1", errors="replace") + body, status=status, body=body)


def _fetcher(server: _Server) -> tuple[Fetcher, str]:
    url = f"http://127.0.0.1:{server.server_address[1]}/f"
    deadlines = Deadlines(request_base=DEADLINE, request_max=DEADLINE, model_base=60.0)
    return Fetcher(hub_client(), url, token=None, retry=QUICK, budget=None, label="fuzz", deadlines=deadlines), url


def _bounded(started: float) -> None:
    # two attempts, each within its deadline (plus the socket reads that end it)
    assert time.monotonic() - started < QUICK.attempts * (DEADLINE + 1) + 1


@fuzz_settings(120)
@given(data=st.data(), span=st.tuples(st.integers(0, 1023), st.integers(1, 300)))
def test_range_reads_return_exactly_a_correct_answer_or_raise_a_reason(server: _Server, data: st.DataObject, span):
    begin, n = span[0], min(span[1], len(FILE) - span[0])
    answer = data.draw(answers(begin, begin + n))
    answer.raw = _sanitised(answer.raw)
    server.answer = answer
    fetcher, url = _fetcher(server)
    buf = bytearray(n)
    started = time.monotonic()
    try:
        fetcher.read_range(RemoteFile("f", url, url, len(FILE)), begin, memoryview(buf), "fuzz/f")
    except PedigreeError as error:
        assert str(error)
    else:
        assert answer.status == 206
        assert bytes(buf) == answer.body[:n] and len(answer.body) >= n
    finally:
        fetcher.client.close()
    _bounded(started)


@fuzz_settings(120)
@given(data=st.data())
def test_heads_and_json_pages_give_a_size_a_document_or_a_reason(server: _Server, data: st.DataObject):
    answer = data.draw(answers(0, len(FILE)))
    if data.draw(st.booleans()):
        answer.raw = (
            answer.raw.split(b"\r\n\r\n")[0] + b"\r\n\r\n" + data.draw(st.sampled_from([b"[1, 2]", b"{", b"\xff"]))
        )
    server.answer = Answer(raw=_sanitised(answer.raw), status=answer.status, body=answer.body)
    fetcher, url = _fetcher(server)
    started = time.monotonic()
    try:
        if data.draw(st.booleans()):
            found = fetcher.head("f", url, "fuzz/f")
            assert found is None or (isinstance(found.size, int) and found.size >= 0)
        else:
            fetcher.read_json(url, "fuzz/page", 4096)
    except PedigreeError as error:
        assert str(error)
    finally:
        fetcher.client.close()
    _bounded(started)


def _sanitised(raw: bytes) -> bytes:
    """Header lines keep their CRLF framing (values drawn with CR or LF would split lines: that is
    covered by the no-HTTP answers)."""
    head, sep, body = raw.partition(b"\r\n\r\n")
    if not sep:
        return raw
    lines = [line.replace(b"\r", b" ").replace(b"\n", b" ") for line in head.split(b"\r\n")]
    return b"\r\n".join(lines) + sep + body


def test_the_fuzz_server_answers(server: _Server):
    """The harness itself: a correct 206 is read back (so the properties above are not vacuous)."""
    server.answer = Answer(
        raw=f"HTTP/1.1 206 OK\r\nContent-Range: bytes 10-19/{len(FILE)}\r\nContent-Length: 10\r\n\r\n".encode()
        + FILE[10:20],
        status=206,
        body=FILE[10:20],
    )
    fetcher, url = _fetcher(server)
    buf = bytearray(10)
    fetcher.read_range(RemoteFile("f", url, url, len(FILE)), 10, memoryview(buf), "fuzz/f")
    fetcher.client.close()
    assert bytes(buf) == FILE[10:20]
