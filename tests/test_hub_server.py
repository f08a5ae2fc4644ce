"""The Hub-compatible test server, through real HTTP on 127.0.0.1: huggingface_hub 2.4.0, httpx, faults, stats."""

from __future__ import annotations

import http.client
import json
import os
import shutil
import struct
import threading
import time
from pathlib import Path

import httpx
import httpx2
import pytest
from huggingface_hub import HfApi, constants
from huggingface_hub.errors import (
    BadRequestError,
    GatedRepoError,
    HfHubHTTPError,
    RemoteEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from huggingface_hub.utils import hf_raise_for_status, parse_ratelimit_headers

from bench.hub_faults import FaultConfig, FaultyHub, IgnoreRange, Mutation, RateLimit, ServerError, Slow, Truncate
from pedigree.crawler.hub_server import Link

SINGLE = "llama-lab/tiny-llama-s1"
SHARDED = "longrun/tiny-llama-cpt"
CHILD = "adapter-forge/tiny-llama-lora-tools"
REPOS = [SINGLE, SHARDED, CHILD, "gpt-lab/tiny-gpt2", "bert-lab/tiny-bert"]
EXPAND = ["createdAt", "lastModified", "sha", "cardData", "siblings"]


def _zoo_source() -> Path:
    default = Path(__file__).resolve().parents[1] / ".zoo-cache" / "small"
    path = Path(os.environ.get("PEDIGREE_ZOO_CACHE") or default)
    if all((path / r / "config.json").exists() for r in REPOS):
        return path
    from bench.zoo_cache import small_zoo_path

    return small_zoo_path()


def _copy_root(dest: Path, repos: list[str] = REPOS) -> Path:
    src = _zoo_source()
    for repo in repos:
        shutil.copytree(src / repo, dest / repo)
    return dest


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory):
    root = _copy_root(tmp_path_factory.mktemp("hub-root"))
    with FaultyHub(root, page_size=2, tokens={"tok-ok": None}) as server:
        yield server


@pytest.fixture()
def fresh(tmp_path: Path):
    """A server over its own copy, for tests that inject faults or change the repos."""
    with FaultyHub(_copy_root(tmp_path / "root"), page_size=2, tokens={"tok-ok": None}, admin_token="adm") as server:
        yield server


@pytest.fixture(scope="module")
def web():
    """One httpx client (building a client per request costs ~30 ms of TLS setup)."""
    with httpx.Client(timeout=10) as client:
        yield client


@pytest.fixture()
def hf_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    return tmp_path / "hf-cache"


def _file(server: FaultyHub, repo: str, name: str) -> bytes:
    return (server.root / repo / name).read_bytes()


def _header(data: bytes) -> dict:
    (n,) = struct.unpack("<Q", data[:8])
    return json.loads(data[8 : 8 + n])


# ---- huggingface_hub 2.4.0 ---------------------------------------------------------------------
@pytest.mark.parametrize(
    "sort,attr",
    [
        ("lastModified", "last_modified"),
        ("createdAt", "created_at"),
        ("last_modified", "last_modified"),
        ("created_at", "created_at"),
    ],
)
def test_list_models_paginates_every_repo_once_descending(hub: FaultyHub, sort: str, attr: str) -> None:
    hub.reset_stats()
    models = list(HfApi(endpoint=hub.url, token=False).list_models(sort=sort, limit=None, expand=EXPAND))
    assert sorted(m.id for m in models) == sorted(REPOS)
    keys = [(getattr(m, attr), m.id) for m in models]
    assert keys == sorted(keys, key=lambda k: (-k[0].timestamp(), k[1]))
    assert hub.stats().count("api_list") == 3  # 5 repos, 2 per page
    m = next(m for m in models if m.id == CHILD)
    assert m.sha and len(m.sha) == 40 and m.card_data.base_model == SINGLE
    assert {s.rfilename for s in m.siblings} >= {"config.json", "model.safetensors", "README.md"}


def test_link_header_is_absolute_keeps_params_and_ends(web: httpx.Client, hub: FaultyHub) -> None:
    params = [("limit", "2"), ("sort", "createdAt"), ("expand[]", "sha"), ("filter", "pedigree-zoo")]
    r = web.get(f"{hub.url}/api/models", params=params)
    seen, pages = [x["id"] for x in r.json()], 1
    assert set(r.json()[0]) == {"_id", "id", "sha"}
    while "next" in r.links:
        url = r.links["next"]["url"]
        assert url.startswith(hub.url + "/api/models?") and "cursor=" in url
        assert all(f"{httpx.QueryParams({k: v})}" in url for k, v in params)
        r = web.get(url)
        seen += [x["id"] for x in r.json()]
        pages += 1
    assert pages == 3 and sorted(seen) == sorted(REPOS) and "link" not in r.headers
    default = web.get(f"{hub.url}/api/models", params={"limit": 100}).json()
    assert {"_id", "id", "tags", "downloads", "likes", "private", "createdAt", "library_name"} <= set(default[0])
    assert "siblings" in web.get(f"{hub.url}/api/models", params={"full": "True"}).json()[0]
    assert web.get(f"{hub.url}/api/models", params={"cursor": "garbage!"}).status_code == 400
    with pytest.raises(BadRequestError):
        list(HfApi(endpoint=hub.url, token=False).list_models(expand=["notAField"]))  # type: ignore[list-item]


def test_list_filters(hub: FaultyHub) -> None:
    api = HfApi(endpoint=hub.url, token=False)
    assert {m.id for m in api.list_models(author="llama-lab")} == {SINGLE}
    assert {m.id for m in api.list_models(search="tiny-llama")} == {SINGLE, SHARDED, CHILD}
    assert {m.id for m in api.list_models(filter=f"base_model:adapter:{SINGLE}")} == {CHILD}
    assert {m.id for m in api.list_models(filter=["llama", "license:apache-2.0"])} == {SINGLE, SHARDED, CHILD}
    by_id = [m.id for m in api.list_models(sort="id")]
    assert by_id == sorted(REPOS, reverse=True)


def test_model_info_tree_and_revisions(hub: FaultyHub) -> None:
    api = HfApi(endpoint=hub.url, token=False)
    info = api.model_info(SHARDED)
    assert info.sha == hub.store.get(SHARDED).sha and info.card_data.base_model == SINGLE
    assert info.created_at.isoformat().startswith("2024-03-11T10:00:00")
    assert info.safetensors.total == sum(info.safetensors.parameters.values()) > 0
    assert api.model_info(SHARDED, revision=info.sha).sha == info.sha
    assert api.model_info(SHARDED, revision="refs/heads/main").sha == info.sha  # sent as refs%2Fheads%2Fmain
    blobs = {s.rfilename: s for s in api.model_info(SHARDED, files_metadata=True).siblings}
    shard = "model-00001-of-00002.safetensors"
    assert blobs[shard].size == len(_file(hub, SHARDED, shard)) and len(blobs[shard].lfs.sha256) == 64
    assert blobs["config.json"].lfs is None
    tree = {e.path: e for e in api.list_repo_tree(SHARDED, revision=info.sha)}
    assert set(tree) == {s.rfilename for s in info.siblings}
    assert tree[shard].lfs.size == blobs[shard].size and tree["config.json"].size > 0
    lineage = api.model_info(CHILD, expand=["baseModels"]).base_models
    assert lineage == {"relation": "adapter", "models": [{"_id": lineage["models"][0]["_id"], "id": SINGLE}]}
    assert api.model_info(SINGLE, expand=["childrenModelCount"]).children_model_count["adapter"] == 1


def test_hf_hub_download_through_head_and_redirect(hub: FaultyHub, tmp_path: Path) -> None:
    api = HfApi(endpoint=hub.url, token=False)
    hub.reset_stats()
    for name in ("config.json", "model.safetensors"):
        path = api.hf_hub_download(SINGLE, name, cache_dir=tmp_path)
        assert Path(path).read_bytes() == _file(hub, SINGLE, name)
    kinds = [(r.kind, r.status) for r in hub.stats().log]
    assert ("resolve_head", 302) in kinds and ("cdn_head", 200) in kinds and ("cdn_get", 200) in kinds
    assert ("resolve_get", 200) in kinds  # config.json is served directly


def test_cross_host_cdn_redirect(web: httpx.Client, tmp_path: Path) -> None:
    with FaultyHub(_copy_root(tmp_path / "r", [SINGLE]), cdn_host="localhost") as server:
        r = web.head(f"{server.url}/{SINGLE}/resolve/main/model.safetensors")
        assert r.status_code == 302 and r.headers["location"].startswith(f"http://localhost:{server.port}/_cdn/")
        size = len(_file(server, SINGLE, "model.safetensors"))
        assert r.headers["x-linked-size"] == str(size) and r.headers["x-repo-commit"] == server.store.get(SINGLE).sha
        path = HfApi(endpoint=server.url, token=False).hf_hub_download(SINGLE, "model.safetensors", cache_dir=tmp_path)
        assert Path(path).stat().st_size == size
        assert [(x.kind, x.status) for x in server.stats().log][-2:] == [("resolve_head", 302), ("cdn_get", 200)]


def test_safetensors_metadata_single_and_sharded(hub: FaultyHub, hf_cache: Path) -> None:
    api = HfApi(endpoint=hub.url, token=False)
    single = api.get_safetensors_metadata(SINGLE)
    assert not single.sharded
    header = _header(_file(hub, SINGLE, "model.safetensors"))
    tensors = single.files_metadata["model.safetensors"].tensors
    assert set(tensors) == set(header) - {"__metadata__"}
    name = next(iter(tensors))
    assert list(tensors[name].data_offsets) == header[name]["data_offsets"]
    sharded = api.get_safetensors_metadata(SHARDED)
    index = json.loads(_file(hub, SHARDED, "model.safetensors.index.json"))
    assert sharded.sharded and sharded.weight_map == index["weight_map"] and sharded.metadata == index["metadata"]
    parsed = api.parse_safetensors_file_metadata(SHARDED, "model-00002-of-00002.safetensors")
    assert set(parsed.tensors) == {k for k, v in index["weight_map"].items() if v.startswith("model-00002")}


def test_error_mapping(web: httpx.Client, hub: FaultyHub, tmp_path: Path) -> None:
    api = HfApi(endpoint=hub.url, token=False)
    with pytest.raises(RepositoryNotFoundError):
        api.model_info("nobody/nothing")
    with pytest.raises(RevisionNotFoundError):
        api.model_info(SINGLE, revision="0" * 40)
    with pytest.raises(RevisionNotFoundError):
        api.hf_hub_download(SINGLE, "config.json", revision="0" * 40, cache_dir=tmp_path)
    with pytest.raises(RemoteEntryNotFoundError):
        api.hf_hub_download(SINGLE, "nope.bin", cache_dir=tmp_path)
    assert not api.file_exists(SINGLE, "nope.bin") and api.file_exists(SINGLE, "config.json")
    with pytest.raises(RemoteEntryNotFoundError):
        list(api.list_repo_tree(SINGLE, path_in_repo="no-such-dir"))
    r = web.get(f"{hub.url}/api/models/nobody/nothing")
    assert (r.status_code, r.headers["x-error-code"]) == (404, "RepoNotFound") and "error" in r.json()
    bare = httpx2.get(f"{hub.url}/not/a/route")  # 404 without X-Error-Code: not mapped over http://
    with pytest.raises(HfHubHTTPError) as exc:
        hf_raise_for_status(bare)
    assert type(exc.value) is HfHubHTTPError


# ---- plain HTTP: ranges, HEAD, redirects, keep-alive ----------------------------------------------
def test_ranges_on_direct_and_cdn_paths(web: httpx.Client, hub: FaultyHub) -> None:
    for name in ("tokenizer.json", "model.safetensors"):
        data = _file(hub, SINGLE, name)
        url = f"{hub.url}/{SINGLE}/resolve/main/{name}"
        with httpx.Client(follow_redirects=True) as c:
            r = c.get(url, headers={"Range": "bytes=10-99"})
            assert r.status_code == 206 and r.content == data[10:100]
            assert r.headers["content-range"] == f"bytes 10-99/{len(data)}" and r.headers["accept-ranges"] == "bytes"
            r = c.get(url, headers={"Range": f"bytes={len(data) - 5}-"})
            assert r.status_code == 206 and r.content == data[-5:]
            r = c.get(url, headers={"Range": "bytes=0-100000000"})
            assert r.status_code == 206 and r.content == data
            assert r.headers["content-range"] == f"bytes 0-{len(data) - 1}/{len(data)}"
            r = c.get(url, headers={"Range": "bytes=-7"})
            assert r.status_code == 206 and r.content == data[-7:]
            r = c.get(url, headers={"Range": f"bytes={len(data)}-"})
            assert r.status_code == 416 and r.headers["content-range"] == f"bytes */{len(data)}"
            assert c.get(url, headers={"Range": "bytes=0-1,5-6"}).status_code == 416
            head = c.head(url)
            assert head.status_code == 200 and int(head.headers["content-length"]) == len(data)
            assert head.headers["x-repo-commit"] == hub.store.get(SINGLE).sha and head.headers["etag"]
    r = web.get(
        f"{hub.url}/{SINGLE}/resolve/main/model.safetensors", headers={"Range": "bytes=0-7"}, follow_redirects=True
    )
    assert r.history[0].status_code == 302 and r.status_code == 206  # Range survives the redirect
    assert r.history[0].headers["x-linked-etag"].strip('"') == hub.store.get(SINGLE).files["model.safetensors"].sha256


def test_keep_alive_reuses_one_connection(hub: FaultyHub) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", hub.port, timeout=5)
    paths = [
        "/api/models",
        f"/api/models/{SINGLE}",
        f"/{SINGLE}/resolve/main/model.safetensors",
        f"/{SINGLE}/resolve/main/config.json",
        "/api/models/nobody/nothing",
        f"/{SINGLE}/resolve/main/x",
    ]
    conn.request("GET", paths[0])
    conn.getresponse().read()
    sock = conn.sock
    for path in paths[1:]:
        conn.request("GET", path, headers={"Range": "bytes=0-3"})
        resp = conn.getresponse()
        body = resp.read()
        assert len(body) == int(resp.headers["Content-Length"])
        conn.request("HEAD", path)
        conn.getresponse().read()
    assert conn.sock is sock
    conn.close()


# ---- faults --------------------------------------------------------------------------------------
def test_rate_limit_headers_and_client_retry(web: httpx.Client, fresh: FaultyHub) -> None:
    fresh.set_faults(FaultConfig(rate_limits=[RateLimit(scope="api", every=2, reset=3, quota=500, window=300)]))
    statuses = [web.get(f"{fresh.url}/api/models/{SINGLE}") for _ in range(4)]
    assert [r.status_code for r in statuses] == [200, 429, 200, 429]
    info = parse_ratelimit_headers(statuses[1].headers)
    assert (info.remaining, info.reset_in_seconds, info.limit, info.window_seconds) == (0, 3, 500, 300)
    assert statuses[1].headers["retry-after"] == "3" and statuses[1].headers["ratelimit"] == '"api";r=0;t=3'
    assert web.get(f"{fresh.url}/{SINGLE}/resolve/main/config.json").status_code == 200  # resolve not in scope
    fresh.set_faults(rate_limits=[{"scope": "api_list", "after": 1, "count": 1, "reset": 0}])
    started = time.monotonic()
    ids = [m.id for m in HfApi(endpoint=fresh.url, token=False).list_models()]
    assert sorted(ids) == sorted(REPOS) and time.monotonic() - started >= 1.0  # slept t+1 on page 2
    assert fresh.stats().status[429] == 3


def test_server_errors_slow_and_seeded_probability(web: httpx.Client, fresh: FaultyHub) -> None:
    url = f"{fresh.url}/api/models/{SINGLE}"
    fresh.set_faults(server_errors=[{"scope": "api_info", "count": 2, "status": 502}])
    assert [web.get(url).status_code for _ in range(3)] == [502, 502, 200]
    fresh.set_faults(FaultConfig(slow=[Slow(scope="api_info", delay=0.3)]))
    started = time.monotonic()
    assert web.get(url).status_code == 200 and time.monotonic() - started >= 0.3

    def run(seed: int) -> list[int]:
        fresh.set_faults(FaultConfig(seed=seed, server_errors=[ServerError(probability=0.5, status=500)]))
        return [web.get(url).status_code for _ in range(20)]

    first = run(7)
    assert first == run(7) and 0 < first.count(500) < 20 and first != run(8)


def test_truncated_body_and_ignored_range(web: httpx.Client, fresh: FaultyHub) -> None:
    data = _file(fresh, SINGLE, "model.safetensors")
    url = f"{fresh.url}/{SINGLE}/resolve/main/model.safetensors"
    fresh.set_faults(FaultConfig(truncate=[Truncate(scope="cdn_get", fraction=0.25)]))
    with pytest.raises(httpx.RemoteProtocolError):
        web.get(url, follow_redirects=True)
    rec = fresh.stats().log[-1]
    assert rec.kind == "cdn_get" and rec.body_bytes == len(data) // 4 and "truncate" in rec.faults
    fresh.set_faults(FaultConfig(ignore_range=[IgnoreRange()]))
    r = web.get(url, headers={"Range": "bytes=0-99"}, follow_redirects=True)
    assert r.status_code == 200 and r.content == data and "content-range" not in r.headers


def test_gated_and_private_repos(web: httpx.Client, fresh: FaultyHub, tmp_path: Path) -> None:
    fresh.set_faults(gated_repos={SINGLE: "manual"}, private_repos=[SHARDED])
    anon, wrong, ok = (HfApi(endpoint=fresh.url, token=t) for t in (False, "tok-bad", "tok-ok"))
    assert anon.model_info(SINGLE).gated == "manual"  # metadata stays open
    r = web.get(f"{fresh.url}/{SINGLE}/resolve/main/config.json")
    assert (r.status_code, r.headers["x-error-code"]) == (401, "GatedRepo")
    r = web.get(f"{fresh.url}/{SINGLE}/resolve/main/config.json", headers={"Authorization": "Bearer tok-bad"})
    assert (r.status_code, r.headers["x-error-code"]) == (403, "GatedRepo")
    for api in (anon, wrong):
        with pytest.raises(GatedRepoError):
            api.hf_hub_download(SINGLE, "config.json", cache_dir=tmp_path)
        with pytest.raises(GatedRepoError):
            api.get_safetensors_metadata(SINGLE)
        with pytest.raises(RepositoryNotFoundError):
            api.model_info(SHARDED)
        assert SHARDED not in {m.id for m in api.list_models()}
    assert Path(ok.hf_hub_download(SINGLE, "config.json", cache_dir=tmp_path)).read_bytes()
    assert ok.model_info(SHARDED).private is True and SHARDED in {m.id for m in ok.list_models()}


def test_repo_deleted_or_changed_between_listing_and_download(web: httpx.Client, fresh: FaultyHub) -> None:
    api = HfApi(endpoint=fresh.url, token=False)
    order = [m.id for m in api.list_models(sort="createdAt")]
    victim = next(r for r in reversed(order) if r != SINGLE)  # on page 2 or 3 (2 per page)
    old_sha = fresh.store.get(SINGLE).sha
    fresh.set_faults(
        mutations=[
            Mutation("delete_repo", victim, after_list_page=1),
            Mutation("change_file", SINGLE, "model.safetensors", at_resolve=2),
        ]
    )
    assert [m.id for m in api.list_models(sort="createdAt")] == [r for r in order if r != victim]
    with pytest.raises(RepositoryNotFoundError):
        api.model_info(victim)
    url = f"{fresh.url}/{SINGLE}/resolve/{old_sha}/model.safetensors"
    first = web.get(url, headers={"Range": "bytes=0-7"})  # resolve #1: 302 to the old blob
    assert first.status_code == 302
    r = web.get(url)  # resolve #2: the file changes first
    assert (r.status_code, r.headers["x-error-code"]) == (404, "RevisionNotFound")
    assert "superseded" in r.headers["x-error-message"]
    assert web.get(first.headers["location"]).status_code == 404  # the old blob is gone
    new_sha = fresh.store.get(SINGLE).sha
    assert fresh.history(SINGLE) == [old_sha, new_sha] and new_sha != old_sha
    with pytest.raises(RevisionNotFoundError):
        api.parse_safetensors_file_metadata(SINGLE, "model.safetensors", revision=old_sha)
    assert api.parse_safetensors_file_metadata(SINGLE, "model.safetensors", revision=new_sha).tensors
    assert next(m.id for m in api.list_models(sort="lastModified")) == SINGLE  # the change bumped lastModified


def _safetensors_with_header_size(path: Path, size: int) -> None:
    """A valid one-tensor safetensors file whose JSON header is exactly ``size`` bytes (space-padded)."""
    header = json.dumps({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}).encode()
    path.write_bytes(struct.pack("<Q", size) + header.ljust(size) + b"\0" * 8)


def test_tree_paths_info_and_a_100000_byte_header(web: httpx.Client, fresh: FaultyHub) -> None:
    sub = fresh.root / SINGLE / "sub" / "deep"
    sub.mkdir(parents=True)
    _safetensors_with_header_size(sub / "big-header.safetensors", 100_000)
    (sub / "notes.txt").write_text("hello")
    fresh.rescan()
    api = HfApi(endpoint=fresh.url, token=False)
    top = {e.path: type(e).__name__ for e in api.list_repo_tree(SINGLE)}
    assert top["sub"] == "RepoFolder" and top["config.json"] == "RepoFile" and "sub/deep/notes.txt" not in top
    deep = [e.path for e in api.list_repo_tree(SINGLE, path_in_repo="sub", recursive=True)]
    assert deep == ["sub/deep", "sub/deep/big-header.safetensors", "sub/deep/notes.txt"]
    infos = api.get_paths_info(SINGLE, ["config.json", "sub/deep/notes.txt", "missing"])
    assert [(i.path, i.size) for i in infos] == [
        ("config.json", len(_file(fresh, SINGLE, "config.json"))),
        ("sub/deep/notes.txt", 5),
    ]
    meta = api.parse_safetensors_file_metadata(SINGLE, "sub/deep/big-header.safetensors")
    assert list(meta.tensors) == ["w"]  # 2.4.0 parses it (two range GETs)
    fresh.app.settings.tree_page_size = 3
    fresh.reset_stats()
    assert len(list(api.list_repo_tree(SINGLE, recursive=True))) == len(fresh.store.get(SINGLE).files) + 2
    assert fresh.stats().count("api_tree") > 1


def test_rescan_and_overrides(web: httpx.Client, fresh: FaultyHub) -> None:
    shutil.copytree(_zoo_source() / "qwen-lab/tiny-qwen2", fresh.root / "qwen-lab/tiny-qwen2")
    (fresh.root / "bert-lab/tiny-bert/README.md").write_text("---\nlicense: mit\ngated: auto\n---\n# changed\n")
    shutil.rmtree(fresh.root / "gpt-lab")
    r = web.post(f"{fresh.url}/_pedigree/rescan", headers=fresh.admin_headers).json()
    assert r == {"added": ["qwen-lab/tiny-qwen2"], "changed": ["bert-lab/tiny-bert"], "removed": ["gpt-lab/tiny-gpt2"]}
    bert = HfApi(endpoint=fresh.url, token=False).model_info("bert-lab/tiny-bert")
    assert bert.gated == "auto" and bert.card_data.license == "mit" and "license:mit" in bert.tags
    assert web.get(f"{fresh.url}/bert-lab/tiny-bert/resolve/main/config.json").status_code == 401
    fresh.set_override(SHARDED, last_modified="2030-01-01T00:00:00Z")
    first = HfApi(endpoint=fresh.url, token=False).list_models(sort="lastModified", expand=["lastModified"])
    assert next(iter(first)).id == SHARDED


# ---- stats and admin -------------------------------------------------------------------------------
def test_stats_counters_and_admin_endpoints(web: httpx.Client, fresh: FaultyHub) -> None:
    data = _file(fresh, SINGLE, "model.safetensors")
    fresh.reset_stats()
    web.get(f"{fresh.url}/api/models")
    web.get(f"{fresh.url}/api/models/{SINGLE}")
    web.get(f"{fresh.url}/api/models/{SINGLE}/tree/main")
    web.head(f"{fresh.url}/{SINGLE}/resolve/main/config.json")
    web.get(
        f"{fresh.url}/{SINGLE}/resolve/main/model.safetensors", headers={"Range": "bytes=0-99"}, follow_redirects=True
    )
    s = fresh.stats()
    assert {
        k: s.count(k)
        for k in ("api_list", "api_info", "api_tree", "resolve_head", "resolve_get", "cdn_get", "range_get", "total")
    } == {
        "api_list": 1,
        "api_info": 1,
        "api_tree": 1,
        "resolve_head": 1,
        "resolve_get": 1,
        "cdn_get": 1,
        "range_get": 2,
        "total": 6,
    }
    assert s.bytes_for(kinds=("cdn_get",)) == 100 <= 0.02 * len(data)
    assert s.bytes_for(repo=SINGLE, file="model.safetensors") == 100  # the 302 has no body; CDN is attributed
    assert s.status[302] == 1 and s.status[206] == 1
    over_http = web.get(f"{fresh.url}/_pedigree/stats", headers=fresh.admin_headers).json()
    assert over_http["requests"]["cdn_get"] == 1 and len(over_http["log"]) == 6  # admin calls not counted
    faults = {"server_errors": [{"scope": "resolve", "every": 1}]}
    r = web.post(f"{fresh.url}/_pedigree/faults", json=faults, headers=fresh.admin_headers)
    assert r.status_code == 200 and fresh.faults.server_errors[0].every == 1
    assert web.get(f"{fresh.url}/{SINGLE}/resolve/main/config.json").status_code == 503
    assert web.post(f"{fresh.url}/_pedigree/faults", json={"bogus": 1}, headers=fresh.admin_headers).status_code == 400
    web.post(f"{fresh.url}/_pedigree/stats/reset", headers=fresh.admin_headers)
    assert fresh.stats().count("total") == 0


def test_link_model_adds_latency_and_shares_its_bandwidth(tmp_path: Path) -> None:
    """The simulated remote link (for benchmarks): every request waits one round trip, and body
    bytes of all connections pass one shared pipe.  Lower bounds only: sleeping never ends early."""
    root = _copy_root(tmp_path / "root", [SINGLE])
    data = _file_at(root, SINGLE, "model.safetensors")[:400_000]
    with FaultyHub(root, link=Link(latency=0.05, bandwidth=2e6)) as server, httpx.Client(follow_redirects=True) as c:
        url = f"{server.url}/{SINGLE}/resolve/main/model.safetensors"
        started = time.perf_counter()
        r = c.get(url, headers={"Range": f"bytes=0-{len(data) - 1}"})
        took = time.perf_counter() - started
        assert r.status_code == 206 and r.content == data
        assert took >= 2 * 0.05 + len(data) / 2e6  # two requests (302 + CDN), 400 kB at 2 MB/s
    link = Link(bandwidth=1e6)
    started = time.perf_counter()
    threads = [threading.Thread(target=link.transmit, args=(50_000,)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert time.perf_counter() - started >= 4 * 50_000 / 1e6  # shared: four senders take four times as long


def _file_at(root: Path, repo: str, name: str) -> bytes:
    return (root / repo / name).read_bytes()
