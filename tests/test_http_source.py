"""``crawler.http_source.HubCheckpoint``: range reads through real HTTP against the bundled Hub server
(faults, stats, gated repos), checked bit for bit against ``LocalCheckpoint``."""

from __future__ import annotations

import json
import re
import shutil
import struct
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import torch
from hostile import HOSTILE_CASES, HOSTILE_MESSAGES
from huggingface_hub import HfApi
from safetensors.torch import save_file

from bench.hub_faults import FaultConfig, FaultyHub, IgnoreRange, RateLimit, ServerError, Truncate, change_file
from pedigree.crawler.http_client import USER_AGENT, hub_client
from pedigree.crawler.http_retry import RetryPolicy, server_wait
from pedigree.crawler.http_source import (
    EARLY_FILES,
    SPECULATIVE_HEADER_READ,
    HubCheckpoint,
    standard_shard_names,
)
from pedigree.crawler.hub_server import Link
from pedigree.crawler.link_estimate import LinkEstimate
from pedigree.errors import (
    ByteBudgetExceededError,
    CheckpointError,
    GatedRepoError,
    PedigreeError,
    RangeNotSupportedError,
    RateLimitedError,
    RemoteError,
    RemoteServerError,
    RepoGoneError,
    TruncatedBodyError,
)
from pedigree.indexer.local_checkpoint import LocalCheckpoint
from pedigree.indexer.safetensors_format import INDEX_FILE
from pedigree.indexer.vocabulary import VOCABULARY_FILES

SINGLE = "llama-lab/tiny-llama-s1"
SHARDED = "longrun/tiny-llama-cpt"
ZOO_REPOS = [
    SINGLE,
    SHARDED,
    "mirror-models/tiny-llama-spin",
    "gpt-lab/tiny-gpt2",
    "bert-lab/tiny-bert",
    "quantfolk/tiny-llama-int8",
]
BIG = "synth/big-tensor"  # one 24 MiB tensor: a multi-MB shard, bigger than loopback socket buffers
BIG_HEADER = "synth/big-header"  # header > SPECULATIVE_HEADER_READ
LOCAL_ONLY = {"weights_is_directory", "fifo_weights"}  # no such thing over HTTP
NOT_SCANNABLE = {"deeply_nested_json"}  # the bundled server's scan dies on it (RecursionError): mocked
HOSTILE = sorted(set(HOSTILE_CASES) - LOCAL_ONLY - NOT_SCANNABLE)
FAST = RetryPolicy(attempts=4, base_delay=0.01, max_delay=0.2, jitter=0.1)
QKV = [f"model.layers.0.self_attn.{p}_proj.weight" for p in "qkv"]


def _hostile_id(case: str) -> str:
    return f"hostile/{case.replace('_', '-')}"


def _write_big(d: Path) -> None:
    d.mkdir(parents=True)
    g = torch.Generator().manual_seed(0)
    save_file(
        {"big": torch.randn(3072, 2048, generator=g), "tail": torch.arange(16, dtype=torch.float32)},
        str(d / "model.safetensors"),
    )
    (d / "config.json").write_text('{"model_type": "synthetic"}')


def _write_big_header(d: Path) -> None:
    """A valid file whose JSON header is 100 000 bytes (space padded), so it needs a second read."""
    d.mkdir(parents=True)
    header = json.dumps({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}).encode()
    data = struct.pack("<ff", 1.5, -2.0)
    (d / "model.safetensors").write_bytes(struct.pack("<Q", 100_000) + header.ljust(100_000) + data)


@pytest.fixture(scope="module")
def root(small_zoo: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("hub-root")
    for repo in ZOO_REPOS:
        shutil.copytree(small_zoo / repo, root / repo)
    _write_big(root / BIG)
    _write_big_header(root / BIG_HEADER)
    for case in HOSTILE:
        HOSTILE_CASES[case](root / _hostile_id(case))
    return root


@pytest.fixture(scope="module")
def hub(root: Path) -> Iterator[FaultyHub]:
    with FaultyHub(root, tokens={"tok-ok": None}) as server:
        yield server


@pytest.fixture(autouse=True)
def _clean(request: pytest.FixtureRequest) -> Iterator[None]:
    """Every test starts with a well-behaved server and zeroed stats (when it uses ``hub``)."""
    server = request.getfixturevalue("hub") if "hub" in request.fixturenames else None
    if server is not None:
        server.set_faults(FaultConfig())
        server.reset_stats()
    yield
    if server is not None:
        server.set_faults(FaultConfig())


@pytest.fixture()
def fresh(small_zoo: Path, tmp_path: Path) -> Iterator[FaultyHub]:
    """A server over its own copy of two repos, for tests that change files on disk."""
    for repo in (SINGLE, SHARDED):
        shutil.copytree(small_zoo / repo, tmp_path / "root" / repo)
    with FaultyHub(tmp_path / "root") as server:
        yield server


def _siblings(server: FaultyHub, repo: str) -> tuple[str, list[str]]:
    info = HfApi(endpoint=server.url, token=False).model_info(repo, files_metadata=False)
    return info.sha, [s.rfilename for s in info.siblings]


def _open(server: FaultyHub, repo: str, **kw: object) -> HubCheckpoint:
    """Open ``repo`` and wait for the early files, so that request and byte counts are exact."""
    sha, files = _siblings(server, repo)
    source = HubCheckpoint(server.url, repo, sha, files, **{"retry": FAST, **kw})  # type: ignore[arg-type]
    source.settle()
    return source


def _same_bits(a: torch.Tensor, b: torch.Tensor) -> bool:
    return (
        a.dtype == b.dtype
        and a.shape == b.shape
        and torch.equal(a.reshape(-1).view(torch.uint8), b.reshape(-1).view(torch.uint8))
    )


def _cdn_bytes(server: FaultyHub, seq_after: int = 0) -> int:
    return sum(r.body_bytes for r in server.stats().log if r.kind == "cdn_get" and r.seq > seq_after)


# ---- correctness -----------------------------------------------------------------------------------
@pytest.mark.parametrize("repo", ZOO_REPOS)
def test_reads_match_local_checkpoint_bit_for_bit(hub: FaultyHub, root: Path, repo: str) -> None:
    local = LocalCheckpoint(root / repo)
    with _open(hub, repo) as remote:
        sha = _siblings(hub, repo)[0]
        assert remote.label == f"{hub.url}/{repo}@{sha}" and remote.revision() == sha
        assert dict(remote.tensors()) == dict(local.tensors())
        assert remote.files == local.files and remote.metadata == local.metadata and remote.index == local.index
        for name, t in remote.tensors().items():
            assert _same_bits(remote.read(name), local.read(name)), name
            if t.rows >= 3:
                assert _same_bits(remote.read_rows(name, 1, 3), local.read_rows(name, 1, 3)), name
        assert remote.read_bytes("config.json") == (root / repo / "config.json").read_bytes()
        assert remote.read_json("config.json") == local.read_json("config.json")
    local.close()


def test_open_costs_one_head_and_one_range_per_shard_plus_the_early_files(hub: FaultyHub) -> None:
    _, files = _siblings(hub, SHARDED)
    early = [f for f in (*EARLY_FILES, next(v for v in VOCABULARY_FILES if v in files)) if f in files]
    assert {"config.json", INDEX_FILE, "tokenizer.json"} <= set(early)
    with _open(hub, SHARDED) as src:
        src.settle()
        s = hub.stats()
        # each early file (card, config, shard index, tokenizer): HEAD + GET;
        # each shard: HEAD + one speculative range read
        assert (s.count("resolve_head"), s.count("range_get")) == (len(early) + 2, 2)
        assert s.count("total") - s.count("api_info") == 2 * len(early) + 4 == src.requests
        assert src.bytes_read == s.bytes_sent - s.bytes_by_kind["api_info"]
        assert all(r.range == f"bytes=0-{SPECULATIVE_HEADER_READ - 1}" for r in s.log if r.range)
        assert src.read_bytes("tokenizer.json") is not None and src.read_json("config.json") is not None
        assert hub.stats().count("total") == s.count("total")  # the early files cost no second request


def test_standard_shard_names_are_recognised_only_as_one_complete_set() -> None:
    two = ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]
    assert standard_shard_names([*two, "config.json", INDEX_FILE]) == two
    assert standard_shard_names(two[:1]) == []  # incomplete: the index decides, nothing is asked for early
    assert standard_shard_names([*two, "other-00001-of-00001.safetensors"]) == []  # two sets: which one is the index's?
    assert standard_shard_names(["sub/model-00001-of-00001.safetensors", "model-1-of-1.safetensors"]) == []


def test_an_index_that_names_other_shards_wins_over_the_standard_names(fresh: FaultyHub) -> None:
    """Headers of standard-named shards are asked for before the index arrives; when the index
    names other files, those are the weights (and the early reads cost a HEAD and 64 KiB each)."""
    repo = fresh.root / SHARDED
    index = json.loads((repo / INDEX_FILE).read_text())
    renamed = {f: f"weights-{i}.safetensors" for i, f in enumerate(sorted(set(index["weight_map"].values())))}
    for old, new in renamed.items():
        shutil.copyfile(repo / old, repo / new)
    index["weight_map"] = {t: renamed[f] for t, f in index["weight_map"].items()}
    (repo / INDEX_FILE).write_text(json.dumps(index))
    fresh.rescan()
    with _open(fresh, SHARDED) as src:
        assert src.files == sorted(renamed.values())
        assert src.weight_bytes == sum((repo / f).stat().st_size for f in renamed.values())
        local = LocalCheckpoint(repo)
        assert set(src.tensors()) == set(local.tensors())
        name = min(src.tensors())
        assert _same_bits(src.read(name), local.read(name))
        stale = fresh.stats().log
        for f in renamed:  # asked for early, never used
            assert [r.range for r in stale if r.file == f and r.range] == [f"bytes=0-{SPECULATIVE_HEADER_READ - 1}"]


def test_early_files_keep_every_reader_limit(fresh: FaultyHub) -> None:
    """A card over the early limit is not downloaded when the source opens, yet a reader with a
    larger limit still gets it; an empty tokenizer file is an empty file, not an error."""
    card = "---\nlicense: mit\n---\n" + "x" * (EARLY_FILES["README.md"] + 10)
    (fresh.root / SINGLE / "README.md").write_text(card)
    (fresh.root / SINGLE / "tokenizer.json").write_text("")
    fresh.rescan()
    with _open(fresh, SINGLE) as src:
        src.settle()
        assert fresh.stats().bytes_for(repo=SINGLE, file="README.md") == 0  # HEAD only: over the early limit
        with pytest.raises(CheckpointError, match="larger than"):
            src.read_bytes("README.md", max_bytes=EARLY_FILES["README.md"])
        assert src.read_text("README.md", max_bytes=2 * len(card)) == card
        assert src.read_bytes("tokenizer.json") == b""


def test_large_header_takes_exactly_two_range_reads(hub: FaultyHub, root: Path) -> None:
    with _open(hub, BIG_HEADER) as src:
        assert hub.stats().count("range_get") == 2 and src.requests == 3
        assert src.read("w").tolist() == [1.5, -2.0]
        assert src.bytes_read == (root / BIG_HEADER / "model.safetensors").stat().st_size


def test_read_span_is_bounds_checked_without_a_request(hub: FaultyHub) -> None:
    with _open(hub, SINGLE) as src:
        before = src.requests
        size = src._weights["model.safetensors"].size
        for file, begin, end in [
            ("model.safetensors", 0, size + 1),
            ("model.safetensors", 5, 4),
            ("config.json", 0, 1),
            ("../model.safetensors", 0, 1),
        ]:
            with pytest.raises(CheckpointError):
                src.read_span(file, begin, end)
        with pytest.raises(CheckpointError, match="out of range"):
            src.read_rows("lm_head.weight", 0, 10**6)
        assert src.read_span("model.safetensors", 7, 7) == b""
        assert src.requests == before


# ---- prefetch -------------------------------------------------------------------------------------
def test_prefetch_coalesces_and_later_reads_are_free(hub: FaultyHub, root: Path) -> None:
    local = LocalCheckpoint(root / SINGLE)
    with _open(hub, SINGLE) as src:
        before = src.requests
        src.prefetch(QKV)
        assert 0 < src.requests - before < len(QKV)
        after_prefetch = src.requests
        assert _same_bits(src.read_rows(QKV[0], 0, 2), local.read_rows(QKV[0], 0, 2))  # partial: stays cached
        for name in QKV:
            assert _same_bits(src.read(name), local.read(name))
        assert _same_bits(src.read(QKV[0]), local.read(QKV[0]))  # kept until evicted (LRU): read twice, fetched once
        assert src.requests == after_prefetch
    with _open(hub, SINGLE) as src:
        before = src.requests
        src.prefetch(QKV, gap=1)  # k is 16 KiB away from q/v (o_proj sits between): two requests
        assert src.requests == before + 2
    local.close()


def test_prefetch_rows_reads_only_those_rows_in_parallel_requests(hub: FaultyHub, root: Path) -> None:
    local = LocalCheckpoint(root / SINGLE)
    emb = "model.embed_tokens.weight"
    info = local.info(emb)
    rows = [3, 4, 5, 200, 201, 400]  # three runs far apart (rows are 256 B; the gap rule merges < 64 B apart only)
    with _open(hub, SINGLE) as src:
        src.settle()
        hub.reset_stats()
        before, read_before = src.requests, src.bytes_read
        src.prefetch_rows([(emb, r, r + 1) for r in rows] + [(QKV[0], 0, 8)], gap=64)
        assert src.requests - before == 4  # 3 runs of the embedding + the q rows
        assert src.bytes_read - read_before == (6 * info.row_nbytes + 8 * local.info(QKV[0]).row_nbytes)
        after = src.requests
        for r in rows:
            assert _same_bits(src.read_rows(emb, r, r + 1), local.read_rows(emb, r, r + 1))
        assert _same_bits(src.read_rows(QKV[0], 2, 6), local.read_rows(QKV[0], 2, 6))
        assert src.requests == after  # all from the cache
        assert _same_bits(src.read_rows(emb, 6, 7), local.read_rows(emb, 6, 7))  # not prefetched: one request
        assert src.requests == after + 1
        with pytest.raises(CheckpointError, match="cannot prefetch rows"):
            src.prefetch_rows([(emb, 0, info.rows + 1)])
    local.close()


def test_coalescing_gap_is_what_a_request_costs_on_the_link() -> None:
    link = LinkEstimate()
    assert link.coalescing_gap(4, 65536, 4 << 20) == 65536  # nothing learnt yet: the floor
    link.observe(0.040, 1000, 0.001)  # small body: a round trip, no throughput sample
    assert link.round_trip == 0.040 and link.throughput is None
    link.observe(0.020, 1 << 20, 0.01)  # 1 MiB in 10 ms: ~100 MB/s; the round trip is the minimum seen
    assert link.round_trip == 0.020 and link.coalescing_gap(4, 65536, 4 << 20) == int(0.020 * 104857600 / 4)
    link.observe(5.0, 100 << 20, 0.1)  # a faster body (1 GB/s) moves the throughput up (weighted)
    assert link.round_trip == 0.020 and link.throughput > 300e6
    assert link.coalescing_gap(1, 65536, 4 << 20) == 4 << 20  # clamped


def test_a_read_across_adjacent_prefetched_spans_is_served_from_the_cache(hub: FaultyHub, root: Path) -> None:
    """Two prefetches of adjacent rows, then one read covering both: assembled from the two
    cached spans, no request."""
    local = LocalCheckpoint(root / SINGLE)
    emb = "model.embed_tokens.weight"
    with _open(hub, SINGLE) as src:
        src.prefetch_rows([(emb, 10, 20)])
        src.prefetch_rows([(emb, 20, 35)])
        before = src.requests
        assert _same_bits(src.read_rows(emb, 12, 33), local.read_rows(emb, 12, 33))
        assert src.requests == before
        assert _same_bits(src.read_rows(emb, 30, 36), local.read_rows(emb, 30, 36))  # row 35 is not cached: one request
        assert src.requests == before + 1
    local.close()


def test_queued_prefetches_are_fetched_in_the_order_they_were_queued(hub: FaultyHub, root: Path) -> None:
    """``prefetch_rows_async`` batches share one first-in-first-out queue: with one connection the
    server sees their requests in the order they were queued, and each answer holds its batch."""
    local = LocalCheckpoint(root / SINGLE)
    names = [f"model.layers.{i}.mlp.up_proj.weight" for i in (1, 0)] + ["model.embed_tokens.weight"]
    with _open(hub, SINGLE, concurrency=1) as src:
        hub.reset_stats()
        batches = [src.prefetch_rows_async([(name, 0, 4)], gap=1) for name in names]
        for batch in batches:
            batch.result(timeout=30)
        spans = [r.range for r in hub.stats().log if r.range]
        begins = [src.info(name).begin for name in names]
        assert [int(span.split("=")[1].split("-")[0]) for span in spans] == begins
        before = src.requests
        for name in names:
            assert _same_bits(src.read_rows(name, 0, 4), local.read_rows(name, 0, 4))
        assert src.requests == before
    local.close()


def test_prefetch_merges_farther_rows_once_the_link_is_known_to_be_slow(root: Path) -> None:
    emb = "model.embed_tokens.weight"
    local = LocalCheckpoint(root / SINGLE)
    far = 400 * local.info(emb).row_nbytes  # rows 0 and 400: farther apart than the 64 KiB floor
    assert far > 65536
    with FaultyHub(root, link=Link(latency=0.02)) as server, _open(server, SINGLE) as src:
        before = src.requests
        src.prefetch_rows([(emb, 0, 1), (emb, 400, 401)])
        assert src.requests - before == 2  # throughput not measured yet: the floor applies
        src.read_span("model.safetensors", 0, 300_000)  # a large body measures the throughput
        before = src.requests
        src.prefetch_rows([(emb, 100, 101), (emb, 500, 501)])
        assert src.requests - before == 1  # a 20 ms round trip is worth more than the gap
        assert _same_bits(src.read_rows(emb, 500, 501), local.read_rows(emb, 500, 501))
    local.close()


# ---- hostile servers --------------------------------------------------------------------------------
def test_ignored_range_is_detected_and_the_body_not_downloaded(hub: FaultyHub, root: Path) -> None:
    size = (root / BIG / "model.safetensors").stat().st_size
    assert size > 24 * 2**20
    with _open(hub, BIG) as src:
        hub.set_faults(FaultConfig(ignore_range=[IgnoreRange(scope="cdn_get")]))
        hub.reset_stats()
        before, requests = src.bytes_read, src.requests
        with pytest.raises(RangeNotSupportedError, match="answered 200 with the whole file") as e:
            src.read("tail")
        assert BIG in str(e.value) and "model.safetensors" in str(e.value)
        assert src.bytes_read - before <= src.info("tail").nbytes and src.requests == requests + 1
        deadline = time.monotonic() + 5  # the server corrects its count once its write fails
        while _cdn_bytes(hub) > size // 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _cdn_bytes(hub) < size // 2
        hub.set_faults(FaultConfig())
        assert src.read("tail").tolist() == list(range(16))  # the source is still usable


def test_byte_budget_is_checked_before_sending(hub: FaultyHub) -> None:
    with pytest.raises(ByteBudgetExceededError, match="budget of 1000"):
        _open(hub, BIG, budget_bytes=1000)
    assert hub.stats().count("range_get") == 0
    with _open(hub, BIG) as probe:
        probe.settle()
        opened = probe.bytes_read
    with _open(hub, BIG, budget_bytes=opened + 100) as src:
        src.settle()
        hub.reset_stats()
        assert src.read("tail").numel() == 16  # 64 bytes fit
        with pytest.raises(ByteBudgetExceededError, match=BIG) as e:
            src.read("big")
        assert "request not sent" in str(e.value) and isinstance(e.value, RemoteError)
        assert hub.stats().count("range_get") == 1 and src.bytes_read == opened + 64


def test_truncated_bodies_are_retried(hub: FaultyHub, root: Path) -> None:
    local = LocalCheckpoint(root / SINGLE)
    with _open(hub, SINGLE) as src:
        hub.set_faults(FaultConfig(truncate=[Truncate(scope="cdn_get", count=2, fraction=0.5)]))
        hub.reset_stats()
        before = src.requests
        assert _same_bits(src.read("lm_head.weight"), local.read("lm_head.weight"))
        assert src.requests == before + 3
        assert [("truncate" in r.faults) for r in hub.stats().log] == [True, True, False]
        hub.set_faults(FaultConfig(truncate=[Truncate(scope="cdn_get")]))
        with pytest.raises(TruncatedBodyError, match=r"after 4 attempts") as e:
            src.read("model.embed_tokens.weight")
        assert SINGLE in str(e.value) and "body ended after" in str(e.value)
    local.close()


def test_rate_limit_storm_is_retried_then_gives_up(hub: FaultyHub) -> None:
    with _open(hub, SINGLE) as src:
        hub.set_faults(FaultConfig(rate_limits=[RateLimit(scope="cdn_get", count=3, reset=0)]))
        before = src.requests
        assert src.read("model.norm.weight").numel() > 0
        assert src.requests == before + 4 and hub.stats().status[429] == 3
        hub.set_faults(FaultConfig(rate_limits=[RateLimit(scope="files", reset=0)]))
        with pytest.raises(RateLimitedError, match="429") as e:
            src.read("lm_head.weight")
        assert e.value.status == 429 and SINGLE in str(e.value)


def test_retry_delay_honours_retry_after_and_ratelimit_headers(hub: FaultyHub) -> None:
    policy = RetryPolicy(attempts=3, base_delay=0.01, max_delay=0.4, jitter=0.0)
    with _open(hub, SINGLE, retry=policy) as src:
        for retry_after in (True, False):  # Retry-After: 1, or only RateLimit: ...;t=1
            hub.set_faults(
                FaultConfig(rate_limits=[RateLimit(scope="cdn_get", count=1, reset=1, retry_after=retry_after)])
            )
            started = time.monotonic()
            src.read("model.norm.weight")
            assert time.monotonic() - started >= 0.39  # waited t=1, capped at max_delay
    assert server_wait(httpx.Headers({"Retry-After": "3", "RateLimit": '"api";r=0;t=7'})) == 7
    assert server_wait(httpx.Headers({"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"})) == 0
    assert server_wait(httpx.Headers({})) is None
    assert RetryPolicy(base_delay=1, max_delay=5, jitter=0).delay(10) == 5
    assert RetryPolicy(base_delay=1, max_delay=20, jitter=0).delay(2, hint=9) == 9


def test_server_error_burst_is_retried_then_gives_up(hub: FaultyHub) -> None:
    with _open(hub, SINGLE) as src:
        src.settle()
        hub.set_faults(FaultConfig(server_errors=[ServerError(scope="files", count=3, status=502)]))
        before = src.requests
        assert src.read_bytes("tokenizer_config.json")  # three 502s on HEAD, then HEAD and GET succeed
        assert hub.stats().status[502] == 3 and src.requests == before + 5
        hub.set_faults(FaultConfig(server_errors=[ServerError(scope="cdn_get", status=503)]))
        hub.reset_stats()
        with pytest.raises(RemoteServerError, match="HTTP 503") as e:
            src.read("lm_head.weight")
        assert e.value.status == 503 and hub.stats().count("cdn_get") == FAST.attempts


# ---- access and absence ---------------------------------------------------------------------------
def test_gated_and_private_repos(hub: FaultyHub) -> None:
    sha, files = _siblings(hub, SHARDED)
    hub.set_faults(gated_repos={SINGLE: "manual"}, private_repos=[SHARDED])
    for token in (None, "tok-bad"):
        with pytest.raises(GatedRepoError, match="gated") as e:
            _open(hub, SINGLE, token=token)
        assert e.value.status == (401 if token is None else 403) and SINGLE in str(e.value)
    with _open(hub, SINGLE, token="tok-ok") as src:
        assert src.read("model.norm.weight").numel() > 0
    with pytest.raises(RepoGoneError, match="RepoNotFound"):  # private looks absent without a token
        HubCheckpoint(hub.url, SHARDED, sha, files, retry=FAST)
    with HubCheckpoint(hub.url, SHARDED, sha, files, retry=FAST, token="tok-ok") as src:
        assert len(src.tensors()) > 0


def test_missing_repo_revision_and_files(hub: FaultyHub) -> None:
    sha, files = _siblings(hub, SINGLE)
    with pytest.raises(RepoGoneError, match="RepoNotFound") as e:
        HubCheckpoint(hub.url, "nobody/nothing", sha, files, retry=FAST)
    assert e.value.status == 404 and "nobody/nothing" in str(e.value)
    with pytest.raises(RepoGoneError, match="RevisionNotFound"):
        HubCheckpoint(hub.url, SINGLE, "0" * 40, files, retry=FAST)
    with HubCheckpoint(hub.url, SINGLE, sha, [*files, "ghost.txt"], retry=FAST) as src:
        src.settle()
        hub.reset_stats()
        before = src.requests
        assert src.read_bytes("vocab.txt") is None and src.requests == before  # not listed: no request
        assert src.read_bytes("ghost.txt") is None  # listed but 404 EntryNotFound
        with pytest.raises(CheckpointError, match="not a plain file name"):
            src.read_bytes("../x")
        with pytest.raises(CheckpointError, match="larger than the 100-byte limit"):
            src.read_bytes("tokenizer_config.json", max_bytes=100)
        assert hub.stats().count("resolve_get") == 0  # the size came from HEAD: nothing downloaded
        with pytest.raises(CheckpointError, match="larger than the 100-byte limit"):
            src.read_bytes("tokenizer.json", max_bytes=100)  # fetched when the source opened: the same limit holds
    with pytest.raises(CheckpointError, match="pickle checkpoints"):
        HubCheckpoint(hub.url, SINGLE, sha, ["model.ckpt", "training_args.bin", "config.json"])


def test_files_that_vanish_from_the_server(fresh: FaultyHub) -> None:
    sha, files = _siblings(fresh, SHARDED)
    (fresh.root / SHARDED / "model-00002-of-00002.safetensors").unlink()
    fresh.rescan()
    with pytest.raises(RepoGoneError, match="superseded"):  # pinned to the old commit
        HubCheckpoint(fresh.url, SHARDED, sha, files, retry=FAST)
    with pytest.raises(RepoGoneError, match="model-00002-of-00002.safetensors.*no such file"):
        HubCheckpoint(fresh.url, SHARDED, "main", files, retry=FAST)
    sha, files = _siblings(fresh, SINGLE)
    with HubCheckpoint(fresh.url, SINGLE, sha, files, retry=FAST) as src:
        rf = src._weights["model.safetensors"]
        rf.url = re.sub(r"Expires=\d+", "Expires=1", rf.url)  # a signed CDN URL that expired
        src.settle()  # the early files' requests are counted once they are answered: wait for them
        before = src.requests
        assert src.read("model.norm.weight").numel() > 0  # 403, resolve again, read
        assert src.requests == before + 3 and "Expires=1&" not in rf.url
        change_file(fresh.root / SINGLE / "model.safetensors")  # new blob, new commit
        fresh.rescan()
        with pytest.raises(RepoGoneError, match="superseded"):
            src.read("lm_head.weight")  # the cached CDN URL 404s; resolving again finds the sha gone


@pytest.mark.parametrize("case", HOSTILE)
def test_hostile_headers_over_http_are_checkpoint_errors(hub: FaultyHub, case: str) -> None:
    with pytest.raises(CheckpointError) as e:
        _open(hub, _hostile_id(case))
    assert HOSTILE_MESSAGES[case] in str(e.value)
    assert hub.stats().bytes_for(kinds=("resolve_get", "cdn_get")) <= 2 * SPECULATIVE_HEADER_READ  # not 100 MB


# ---- client and misbehaving servers beyond the bundled one ------------------------------------------
def test_hub_client_and_close(hub: FaultyHub) -> None:
    client = hub_client("secret", max_connections=2, timeout=5)
    assert client.follow_redirects and client.headers["authorization"] == "Bearer secret"
    assert client.headers["user-agent"] == USER_AGENT and USER_AGENT.startswith("pedigree/")
    src = _open(hub, SINGLE, client=client)
    src.close()
    assert not client.is_closed  # shared: the caller closes it
    client.close()
    own = _open(hub, SINGLE)
    own.close()
    assert own._client.is_closed


def _mock_server(
    blob: bytes, *, content_range: str | None = None, long_body: bool = False, seen: list[httpx.Request] | None = None
) -> httpx.Client:
    """A Hub that redirects to a foreign CDN, optionally lying about ranges or body lengths."""

    def handler(request: httpx.Request) -> httpx.Response:
        if seen is not None:
            seen.append(request)
        name = request.url.path.rsplit("/", 1)[-1]
        data = blob if name == "model.safetensors" else b'{"a": 1}'
        if request.url.host == "hub.test":
            return httpx.Response(
                302, headers={"Location": f"http://cdn.test/blob/{name}", "X-Linked-Size": str(len(data))}
            )
        if request.method == "HEAD":
            return httpx.Response(200, headers={"Content-Length": str(len(data))})
        rng = request.headers.get("range")
        if rng is None:
            body = data + b"x" * 100 if long_body else data
            return httpx.Response(200, content=iter([body]))  # no Content-Length: must stop by itself
        first, last = (int(x) for x in rng.removeprefix("bytes=").split("-"))
        last = min(last, len(data) - 1)
        cr = content_range or f"bytes {first}-{last}/{len(data)}"
        body = data[first : last + 1]
        return httpx.Response(
            206, headers={"Content-Range": cr, "Content-Length": str(len(body))}, content=iter([body])
        )  # an iterator: bytes would be pre-read by httpx

    return httpx.Client(transport=httpx.MockTransport(handler), follow_redirects=True)


def test_strict_checks_against_a_lying_server(root: Path) -> None:
    blob = (root / SINGLE / "model.safetensors").read_bytes()
    files = ["model.safetensors", "config.json"]
    seen: list[httpx.Request] = []
    with HubCheckpoint(
        "http://hub.test", SINGLE, "main", files, token="secret", retry=FAST, client=_mock_server(blob, seen=seen)
    ) as src:
        assert src.read("model.norm.weight").numel() > 0
    hub_auth = {r.headers.get("authorization") for r in seen if r.url.host == "hub.test"}
    cdn_auth = {r.headers.get("authorization") for r in seen if r.url.host == "cdn.test"}
    assert hub_auth == {"Bearer secret"} and cdn_auth == {None}  # the token never leaves the Hub
    with pytest.raises(RangeNotSupportedError, match="Content-Range"):
        HubCheckpoint(
            "http://hub.test",
            SINGLE,
            "main",
            files,
            retry=FAST,
            client=_mock_server(blob, content_range=f"bytes 0-99/{len(blob)}"),
        )
    with pytest.raises(RemoteError, match="HEAD said"):
        HubCheckpoint(
            "http://hub.test",
            SINGLE,
            "main",
            files,
            retry=FAST,
            client=_mock_server(blob, content_range=f"bytes 0-65535/{len(blob) + 1}"),
        )
    with HubCheckpoint(
        "http://hub.test", SINGLE, "main", files, retry=FAST, client=_mock_server(blob, long_body=True)
    ) as src:
        with pytest.raises(RemoteError, match="longer than the 8 bytes expected; stopped reading"):
            src.read_bytes("config.json")
        assert src.bytes_read <= SPECULATIVE_HEADER_READ + 8 + 100


@pytest.mark.parametrize("case", sorted(NOT_SCANNABLE))
def test_hostile_headers_the_bundled_server_cannot_serve(tmp_path: Path, case: str) -> None:
    blob = (HOSTILE_CASES[case](tmp_path) / "model.safetensors").read_bytes()
    with pytest.raises(CheckpointError, match=HOSTILE_MESSAGES[case]):
        HubCheckpoint(
            "http://hub.test", "hostile/x", "main", ["model.safetensors"], retry=FAST, client=_mock_server(blob)
        )


def test_remote_errors_are_pedigree_errors() -> None:
    for cls in (
        RangeNotSupportedError,
        ByteBudgetExceededError,
        TruncatedBodyError,
        RateLimitedError,
        RemoteServerError,
        GatedRepoError,
        RepoGoneError,
    ):
        assert issubclass(cls, RemoteError) and issubclass(cls, PedigreeError)
    e = RepoGoneError("gone", path="http://x/a/b@1/model.safetensors", status=404)
    assert str(e) == "http://x/a/b@1/model.safetensors: gone" and e.status == 404
