"""The JSON API through real HTTP: the real app served by uvicorn on 127.0.0.1 over a copy of the
small zoo's data folder (ingested by the real CLI), every endpoint, its errors, ETags and the
admin actions (a refresh and an ingest against the bundled Hub server, run as child processes)."""

from __future__ import annotations

import io
import json
import time
from pathlib import Path

import duckdb
import httpx
import networkx as nx
import pytest
from serving import Served, copy_home, hub_folder, served

from pedigree.config import load_settings
from pedigree.crawler.hub_server import HubServer
from pedigree.service.admin import RateLimiter
from pedigree.workspace import Workspace

TOKEN = "test-admin-token"
LLAMA = "llama-lab/tiny-llama-s1"
BERT = "bert-lab/tiny-bert"
MERGE = "soup-kitchen/tiny-llama-merge"


@pytest.fixture(scope="module")
def home(indexed_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return copy_home(indexed_home, tmp_path_factory.mktemp("api") / "home")


@pytest.fixture(scope="module")
def api(home: Path):
    with served(home, admin_token=TOKEN) as running:
        yield running


@pytest.fixture()
def client(api: Served):
    with httpx.Client(base_url=api.url, timeout=120) as http:
        yield http


def live_rows(home: Path, sql: str, params: list | None = None) -> list[tuple]:
    conn = duckdb.connect(str(home / "pedigree.duckdb"), read_only=True)
    try:
        return conn.execute(sql, params or []).fetchall()
    finally:
        conn.close()


# ---- documents and status -----------------------------------------------------------------------


def test_openapi_lists_every_endpoint_and_the_docs_page_loads(client: httpx.Client):
    paths = set(client.get("/openapi.json").json()["paths"])
    expected = {
        "/healthz",
        "/api/status",
        "/api/runs",
        "/api/models",
        "/api/models/{model_id}",
        "/api/models/{model_id}/related",
        "/api/models/{model_id}/lineage",
        "/api/models/{model_id}/family",
        "/api/compare",
        "/api/discrepancies",
        "/api/admin/refresh",
        "/api/admin/ingest",
        "/api/admin/jobs/{job_id}",
    }
    assert expected <= paths, expected - paths
    docs = client.get("/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()


def test_health_status_and_runs_name_the_snapshot(client: httpx.Client, home: Path):
    health = client.get("/healthz").json()
    assert health["ok"] is True and health["snapshot"]["generation"] > 0
    status = client.get("/api/status").json()
    assert status["models"]["indexed"] == 27 and status["snapshot"]["name"] == health["snapshot"]["name"]
    runs = client.get("/api/runs", params={"limit": 5}).json()["runs"]
    assert runs == status["runs"][:5]


# ---- search -----------------------------------------------------------------------------------


def test_paging_through_the_index_returns_every_model_once(client: httpx.Client, home: Path):
    seen: list[str] = []
    cursor = None
    while True:
        page = client.get("/api/models", params={"limit": 5, **({"cursor": cursor} if cursor else {})}).json()
        assert page["total"] == 27 and len(page["models"]) <= 5
        seen += [m["id"] for m in page["models"]]
        cursor = page["next"]
        if cursor is None:
            break
    assert seen == sorted(r[0] for r in live_rows(home, "SELECT id FROM models"))


def test_search_filters_by_id_prefix_substring_architecture_and_status(client: httpx.Client):
    prefix = client.get("/api/models", params={"q": "llama-lab/"}).json()
    assert [m["id"] for m in prefix["models"]] == ["llama-lab/tiny-llama-s1", "llama-lab/tiny-llama-s2"]
    substring = client.get("/api/models", params={"q": "REMIX"}).json()
    assert {m["id"] for m in substring["models"]} == {
        "mirror-models/tiny-gpt2-remix",
        "mirror-models/tiny-llama-remix",
        "mirror-models/tiny-neox-remix",
    }
    bert = client.get("/api/models", params={"architecture": "bert"}).json()
    assert {m["id"] for m in bert["models"]} == {"bert-lab/tiny-bert", "bert-lab/tiny-bert-tests"}
    assert bert["total"] == 2 and bert["next"] is None
    assert client.get("/api/models", params={"status": "failed"}).json() == {"models": [], "next": None, "total": 0}
    first = client.get("/api/models", params={"q": "llama", "limit": 1}).json()
    assert first["models"][0]["declared_base"] == ["llama-lab/tiny-llama-s1"]


def test_bad_search_parameters_are_one_line_errors(client: httpx.Client):
    bad_cursor = client.get("/api/models", params={"cursor": "not-a-cursor"})
    assert bad_cursor.status_code == 400 and "cursor" in bad_cursor.json()["error"]
    for params in ({"limit": 0}, {"limit": 1000}, {"limit": "x"}):
        response = client.get("/api/models", params=params)
        assert response.status_code == 422 and "limit" in response.json()["error"], params
        assert "\n" not in response.json()["error"]


# ---- one model --------------------------------------------------------------------------------


def test_model_detail(client: httpx.Client, truth: dict):
    model = client.get(f"/api/models/{MERGE}").json()
    assert model["status"] == "indexed" and model["reason"] is None
    assert model["architecture"] == truth[MERGE]["architecture"]
    assert model["config"]["model_type"] == "llama" and "hidden_size" in model["config"]
    assert model["declared_base"] == [truth[MERGE]["declared"]["base_model"]] or model["declared_base"]
    assert model["card"]["base_model"] == model["declared_base"]
    assert model["revision"] and model["source"] and model["created_at"].startswith(truth[MERGE]["created_at"][:10])


def test_unknown_models_are_404_on_every_model_route(client: httpx.Client):
    for suffix in ("", "/related", "/lineage", "/family", "/family?format=graphml"):
        response = client.get(f"/api/models/nobody/nothing{suffix}")
        assert response.status_code == 404, suffix
        assert response.json() == {"error": "'nobody/nothing' is not in the index"}
    assert client.get("/api/compare", params={"a": LLAMA, "b": "nobody/nothing"}).status_code == 404
    unknown_route = client.get("/api/nothing-here")
    assert unknown_route.status_code == 404 and set(unknown_route.json()) == {"error"}


def test_related_ranks_relatives_first(client: httpx.Client, truth: dict):
    related = client.get(f"/api/models/{LLAMA}/related", params={"limit": 5}).json()
    assert related["model"] == LLAMA and len(related["related"]) == 5
    family = {m for m, facts in truth.items() if facts["family"] == LLAMA}
    assert {r["id"] for r in related["related"]} <= family
    assert all(len(row) == 3 for r in related["related"] for row in r["layers"])


@pytest.mark.parametrize("model", ["testsmith/tiny-llama-tests", MERGE, "bert-lab/tiny-bert-tests"])
def test_lineage_names_the_true_parents(client: httpx.Client, truth: dict, model: str, home: Path):
    answer = client.get(f"/api/models/{model}/lineage").json()
    parents = {p["id"] for p in answer["parents"]}
    assert set(truth[model]["parents"]) <= parents
    for parent in answer["parents"]:
        assert parent["relation"] and 0 <= parent["confidence"] <= 1 and isinstance(parent["evidence"], dict)
    assert answer["root"] == truth[model]["family"] and answer["family_size"] >= 2
    with Workspace(load_settings(home)) as ws:  # the library's own answer over the live folder
        assert answer == json.loads(json.dumps(ws.query(model).to_json()))


def test_lineage_bad_mode_is_refused(client: httpx.Client):
    response = client.get(f"/api/models/{LLAMA}/lineage", params={"mode": "sideways"})
    assert response.status_code == 422 and "mode" in response.json()["error"]


# ---- the family graph -------------------------------------------------------------------------


def test_family_as_node_link_json(client: httpx.Client, truth: dict):
    family = client.get(f"/api/models/{MERGE}/family").json()
    ids = {n["id"] for n in family["nodes"]}
    assert ids == {m for m, facts in truth.items() if facts["family"] == LLAMA}
    node = next(n for n in family["nodes"] if n["id"] == LLAMA)
    assert node["status"] == "indexed" and node["latent"] is False and node["root"] is True
    merge_parents = {link["source"] for link in family["links"] if link["target"] == MERGE}
    assert merge_parents == set(truth[MERGE]["parents"])  # a merge is drawn with both parents
    for link in family["links"]:
        assert {"source", "target", "relation", "confidence", "log10_p", "evidence", "directed"} <= set(link)


def test_family_downloads_as_graphml_and_gexf(client: httpx.Client):
    nodes = {n["id"] for n in client.get(f"/api/models/{MERGE}/family").json()["nodes"]}
    for fmt, reader in (("graphml", nx.read_graphml), ("gexf", nx.read_gexf)):
        response = client.get(f"/api/models/{MERGE}/family", params={"format": fmt})
        assert response.status_code == 200 and response.headers["content-type"].startswith(f"application/{fmt}")
        assert "attachment" in response.headers["content-disposition"]
        graph = reader(io.BytesIO(response.content))
        assert set(graph.nodes) == nodes
    assert client.get(f"/api/models/{MERGE}/family", params={"format": "dot"}).status_code == 422


# ---- compare and discrepancies ----------------------------------------------------------------


def test_compare_a_stored_pair(client: httpx.Client, home: Path):
    comparison = client.get("/api/compare", params={"a": LLAMA, "b": "testsmith/tiny-llama-tests"}).json()
    assert comparison["log10_p"] < -10 and comparison["confirmed"] is True
    assert comparison["tests"] and all("log10_p" in t and "name" in t for t in comparison["tests"])
    assert comparison["layer_map"] and all(len(row) == 4 for row in comparison["layer_map"])


def test_compare_a_pair_never_tested_runs_the_battery_without_writing(client: httpx.Client, home: Path):
    pairs = "SELECT count(*) FROM relations"
    before = live_rows(home, pairs)
    stored = live_rows(
        home,
        "SELECT count(*) FROM relations r JOIN models a ON a.pk = r.model_a JOIN models b ON b.pk = r.model_b "
        "WHERE (a.id = ? AND b.id = ?) OR (a.id = ? AND b.id = ?)",
        [LLAMA, BERT, BERT, LLAMA],
    )
    assert stored == [(0,)]
    comparison = client.get("/api/compare", params={"a": LLAMA, "b": BERT}).json()
    assert comparison["tests"] and comparison["log10_p"] > -3  # unrelated
    assert live_rows(home, pairs) == before
    same = client.get("/api/compare", params={"a": LLAMA, "b": LLAMA})
    assert same.status_code == 400 and "same model" in same.json()["error"]
    missing = client.get("/api/compare", params={"a": LLAMA})
    assert missing.status_code == 422 and "b" in missing.json()["error"]


def test_discrepancies_carry_card_snippets(client: httpx.Client, truth: dict):
    found = client.get("/api/discrepancies").json()
    wrong = {m for m, facts in truth.items() if facts.get("declaration") == "wrong"}
    flagged = {d["model"] for d in found["discrepancies"]}
    assert wrong <= flagged
    assert all(d["suggested_card"].startswith("base_model:") for d in found["discrepancies"] if d["suggested_card"])


# ---- ETags ------------------------------------------------------------------------------------


def test_etags_answer_304_until_the_snapshot_changes(client: httpx.Client):
    urls = ["/api/models?q=llama", f"/api/models/{LLAMA}/lineage", f"/api/models/{LLAMA}/family", "/api/discrepancies"]
    for url in urls:
        first = client.get(url)
        tag = first.headers["etag"]
        again = client.get(url, headers={"If-None-Match": tag})
        assert again.status_code == 304 and again.headers["etag"] == tag and again.content == b"", url
        assert client.get(url, headers={"If-None-Match": '"other"'}).status_code == 200
    assert client.get("/api/models?q=llama").headers["etag"] != client.get("/api/models?q=bert").headers["etag"]


# ---- admin --------------------------------------------------------------------------------------


@pytest.fixture()
def admin(api: Served):
    api.app.state.admin.limiter = RateLimiter()  # each test starts with a full bucket
    with httpx.Client(base_url=api.url, timeout=60) as http:
        yield http


def bearer(token: str = TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_admin_refuses_without_a_token_or_with_a_wrong_one(admin: httpx.Client):
    for path in ("/api/admin/refresh", "/api/admin/ingest"):
        missing = admin.post(path, json={})
        assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer"
        assert admin.post(path, json={}, headers=bearer("wrong")).status_code == 403
    assert admin.get("/api/admin/jobs/x").status_code == 401


def test_admin_is_switched_off_without_a_configured_token(home: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("PEDIGREE_ADMIN_TOKEN", raising=False)
    with served(home) as off, httpx.Client(base_url=off.url) as http:
        response = http.post("/api/admin/refresh", headers=bearer())
        assert response.status_code == 403 and "PEDIGREE_ADMIN_TOKEN" in response.json()["error"]


def test_admin_requests_are_rate_limited(admin: httpx.Client, api: Served):
    api.app.state.admin.limiter = RateLimiter(burst=3, refill_s=3600)
    codes = [admin.post("/api/admin/refresh", headers=bearer("wrong")).status_code for _ in range(4)]
    assert codes == [403, 403, 403, 429]
    limited = admin.post("/api/admin/refresh", headers=bearer())
    assert limited.status_code == 429 and int(limited.headers["retry-after"]) > 0


def test_admin_bad_bodies_are_refused(admin: httpx.Client):
    assert admin.post("/api/admin/ingest", json={"repo_id": "../etc"}, headers=bearer()).status_code == 400
    assert admin.post("/api/admin/ingest", content=b"[1]", headers=bearer()).status_code == 400
    big = admin.post("/api/admin/refresh", content=b"{" + b" " * 10_000 + b"}", headers=bearer())
    assert big.status_code == 413


def wait_for(client: httpx.Client, job: dict, timeout: float = 300) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = client.get(f"/api/admin/jobs/{job['id']}", headers=bearer()).json()["job"]
        if state["state"] != "running":
            return state
        time.sleep(0.5)
    raise AssertionError(f"job {job['id']} still running after {timeout} s")


def test_admin_refresh_and_ingest_run_against_the_hub_and_the_answers_follow(
    admin: httpx.Client, small_zoo: Path, tmp_path: Path
):
    hub_root = hub_folder(small_zoo, tmp_path / "hub", {"mirror-hub/tiny-gpt2-web-copy": "gpt-lab/tiny-gpt2-web"})
    with HubServer(hub_root) as hub:
        started = admin.post("/api/admin/refresh", json={"endpoint": hub.url}, headers=bearer())
        assert started.status_code == 202, started.text
        job = started.json()["job"]
        busy = admin.post("/api/admin/ingest", json={"repo_id": "mirror-hub/x", "endpoint": hub.url}, headers=bearer())
        assert busy.status_code == 409 and job["id"] in busy.json()["error"]
        done = wait_for(admin, job)
        assert done["state"] == "succeeded", done
        assert done["result"]["counts"]["new_models"] == 1
        # the child published a snapshot; the next request answers from it
        assert admin.get("/api/models/mirror-hub/tiny-gpt2-web-copy").json()["status"] == "indexed"
        family = {n["id"] for n in admin.get("/api/models/mirror-hub/tiny-gpt2-web-copy/family").json()["nodes"]}
        assert "gpt-lab/tiny-gpt2" in family
        runs = admin.get("/api/runs").json()["runs"]
        assert runs[0]["kind"] == "refresh" and runs[0]["endpoint"] == hub.url

        hub_folder(small_zoo, hub_root, {"mirror-hub/tiny-bert-tests-copy": "bert-lab/tiny-bert-tests"})
        hub.rescan()  # a repo pushed after the refresh: indexed by id, no listing
        ingest = admin.post(
            "/api/admin/ingest",
            json={"repo_id": "mirror-hub/tiny-bert-tests-copy", "endpoint": hub.url},
            headers=bearer(),
        )
        assert ingest.status_code == 202, ingest.text
        done = wait_for(admin, ingest.json()["job"])
        assert done["state"] == "succeeded", done
        assert admin.get("/api/models/mirror-hub/tiny-bert-tests-copy").json()["status"] == "indexed"
        assert admin.get("/api/runs").json()["runs"][0]["kind"] == "ingest"
