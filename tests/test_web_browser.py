"""The web page in a real browser: Debian's headless Chromium driven by Playwright against the real
app (pedigree.service.app.create_app) served by uvicorn on 127.0.0.1, over a copy of the indexed
small zoo with one recorded refresh run (against the bundled Hub server).

Each view is screenshotted into a test-artifact folder (a pytest tmp folder and, when
``PEDIGREE_ARTIFACTS`` is set, that folder too); the paths are printed.  Skipped only when no
Chromium executable exists (CI installs Debian's through .ci/run).
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from cli_runner import cli

CHROMIUM = next((p for p in ("/usr/bin/chromium", shutil.which("chromium")) if p and os.path.exists(p)), None)
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="no chromium executable at /usr/bin/chromium (apt-get install chromium; .ci/run does)"
)

MERGE = "soup-kitchen/tiny-llama-merge"  # two parents in truth.json
PAIR = ("llama-lab/tiny-llama-s1", "slimming/tiny-llama-depth-pruned")  # 4 blocks against 2
READY = ".view[data-ready]"
WAIT_MS = 60_000


# ---- the served data folder -------------------------------------------------------------------


@pytest.fixture(scope="module")
def served_home(indexed_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the indexed zoo with one refresh run recorded (a refresh against an empty bundled
    Hub server: the status page has a run to list) and a published snapshot to serve."""
    from pedigree.crawler.hub_server.server import HubServer
    from pedigree.service.snapshots import ensure_snapshot

    home = tmp_path_factory.mktemp("web-home") / "home"
    shutil.copytree(indexed_home, home, symlinks=True)
    hub_root = tmp_path_factory.mktemp("web-empty-hub")
    with HubServer(hub_root) as hub:
        summary = cli("refresh", "--endpoint", hub.url, "--home", str(home))
    assert summary["errors"] == [] and summary["run"] >= 1
    ensure_snapshot(home)
    return home


@pytest.fixture(scope="module")
def base_url(served_home: Path) -> Iterator[str]:
    """The real app over ``served_home``, served by uvicorn in a thread on a free port."""
    import uvicorn

    from pedigree.service.app import create_app

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(served_home), log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=30)
    sock.close()


@pytest.fixture(scope="module")
def api(base_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=base_url, timeout=120) as client:
        yield client


# ---- the browser ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


class Watched:
    """A page and what went wrong on it: console errors, uncaught exceptions, failed requests."""

    def __init__(self, page: Any) -> None:
        self.page = page
        self.problems: list[str] = []
        page.on("console", lambda m: m.type == "error" and self.problems.append(f"console: {m.text}"))
        page.on("pageerror", lambda e: self.problems.append(f"page error: {e}"))
        page.on("requestfailed", lambda r: self.problems.append(f"request failed: {r.url} ({r.failure})"))
        page.on("response", lambda r: r.status >= 400 and self.problems.append(f"HTTP {r.status}: {r.url}"))

    def open(self, base_url: str, route: str) -> Any:
        """Go to ``/`` + ``route`` and wait until the view has rendered."""
        self.page.goto(f"{base_url}/{route}")
        return self.ready()

    def ready(self) -> Any:
        self.page.wait_for_selector(READY, timeout=WAIT_MS)
        self.page.wait_for_load_state("networkidle", timeout=WAIT_MS)
        return self.page


def make_page(browser: Any, width: int = 1280, height: int = 900) -> Iterator[Watched]:
    context = browser.new_context(viewport={"width": width, "height": height})
    context.grant_permissions(["clipboard-read", "clipboard-write"])
    try:
        yield Watched(context.new_page())
    finally:
        context.close()


@pytest.fixture()
def page(browser: Any) -> Iterator[Watched]:
    yield from make_page(browser)


@pytest.fixture()
def narrow_page(browser: Any) -> Iterator[Watched]:
    """About 80 columns of text wide."""
    yield from make_page(browser, width=640, height=900)


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    folders = [tmp_path_factory.mktemp("web-screenshots")]
    if os.environ.get("PEDIGREE_ARTIFACTS"):
        folders.append(Path(os.environ["PEDIGREE_ARTIFACTS"]) / "web-screenshots")
    for folder in folders:
        folder.mkdir(parents=True, exist_ok=True)
    return folders


def screenshot(watched: Watched, shots: list[Path], name: str) -> None:
    """Save the whole page as ``name``.png in every artifact folder and print where."""
    for folder in shots:
        path = folder / f"{name}.png"
        watched.page.screenshot(path=str(path), full_page=True)
        print(f"screenshot: {path}")


def model_route(model_id: str) -> str:
    return "#/model/" + model_id


def current_node(watched: Watched) -> str:
    return watched.page.locator("g.node.current").get_attribute("data-id")


# ---- the tests --------------------------------------------------------------------------------


def test_the_page_loads_with_no_errors_and_lists_the_index(page: Watched, base_url: str, api, shots):
    index = api.get("/")
    assert index.status_code == 200 and "text/html" in index.headers["content-type"]
    assert "https://" not in index.text  # no CDN: every script and style comes from this server
    view = page.open(base_url, "")
    total = api.get("/api/models").json()["total"]
    assert view.locator("h1").inner_text() == "All models"
    assert view.locator("ul.results li").count() == min(total, 50) > 10
    screenshot(page, shots, "home")
    assert page.problems == []


def test_search_finds_a_model_and_enter_then_a_click_opens_it(page: Watched, base_url: str, shots):
    view = page.open(base_url, "")
    view.fill("#search-box", "llama-merge")
    view.press("#search-box", "Enter")
    view.wait_for_selector('h1:has-text("llama-merge")', timeout=WAIT_MS)
    page.ready()
    results = view.locator("ul.results a.result-id")
    assert results.all_inner_texts() == [MERGE]
    assert "#/search?q=llama-merge" in view.url
    screenshot(page, shots, "search")
    results.first.click()
    view.wait_for_selector(f'g.node.current[data-id="{MERGE}"]', timeout=WAIT_MS)
    page.ready()
    assert view.locator("h1").inner_text().replace("\n", "") == MERGE
    assert page.problems == []


@pytest.mark.parametrize("model", [MERGE, "testsmith/tiny-llama-tests", "quantfolk/tiny-llama-int8"])
def test_the_model_page_shows_the_true_parents_with_evidence_in_words(
    page: Watched, base_url: str, truth: dict, shots, model: str
):
    view = page.open(base_url, model_route(model))
    rows = view.locator("table.links").first.locator("tbody tr")
    parents = rows.locator("td:first-child a").all_inner_texts()
    assert sorted(parents) == sorted(truth[model]["parents"])
    for k in range(rows.count()):
        cells = rows.nth(k).locator("td").all_inner_texts()
        assert cells[1] in {truth[model]["relation"], "merge"}  # relation
        assert 0 < float(cells[2]) <= 1  # confidence
        assert float(cells[3]) < -12  # log10 p
        assert "time says the parent is older" in cells[4]  # the evidence in plain words
    assert view.locator("ol.ancestors li").count() >= 1
    fingerprint = view.locator("figure.fingerprint img")
    assert fingerprint.evaluate("img => img.complete && img.naturalWidth > 0")
    screenshot(page, shots, "model-" + model.replace("/", "--"))
    assert page.problems == []


def test_the_tree_draws_the_family_with_both_parents_of_a_merge(page: Watched, base_url: str, api, shots):
    view = page.open(base_url, model_route(MERGE))
    family = api.get(f"/api/models/{MERGE}/family").json()
    assert view.locator("svg.tree-canvas g.node").count() == len(family["nodes"])
    assert view.locator("svg.tree-canvas g.edge").count() == len(family["links"])
    assert current_node(page) == MERGE
    into_merge = view.locator(f'svg.tree-canvas g.edge[data-target="{MERGE}"]')
    assert into_merge.count() == 2
    assert {into_merge.nth(k).get_attribute("data-source") for k in range(2)} == {
        "testsmith/tiny-llama-tests",
        "webcrafters/tiny-llama-web",
    }
    assert "merge" in into_merge.first.locator("text").text_content()
    latent = [n["id"] for n in family["nodes"] if n["latent"]]
    for node in latent:  # none in the small zoo; drawn dashed and labelled when present
        assert "unseen ancestor" in view.locator(f'g.node[data-id="{node}"]').text_content()
    view.locator("div.tree").screenshot(path=str(shots[0] / "tree.png"))
    assert page.problems == []


def test_clicking_a_tree_node_navigates_and_the_highlight_moves(page: Watched, base_url: str, truth: dict, shots):
    view = page.open(base_url, model_route(MERGE))
    view.get_by_role("button", name="fit the tree").click()
    target = "webcrafters/tiny-llama-web"
    view.locator(f'svg.tree-canvas g.node[data-id="{target}"]').click()
    view.wait_for_selector(f'g.node.current[data-id="{target}"]', timeout=WAIT_MS)
    page.ready()
    assert view.url.endswith(model_route(target))
    assert current_node(page) == target and view.locator("g.node.current").count() == 1
    parents = view.locator("table.links").first.locator("tbody tr td:first-child a").all_inner_texts()
    assert parents == truth[target]["parents"]
    screenshot(page, shots, "tree-navigated")
    assert page.problems == []


def scale_and_shift(transform: str) -> tuple[float, float, float]:
    match = re.fullmatch(r"translate\(([-\d.]+),([-\d.]+)\) scale\(([-\d.]+)\)", transform)
    assert match, transform
    x, y, k = (float(v) for v in match.groups())
    return x, y, k


def test_wheel_zooms_and_dragging_pans_the_tree(page: Watched, base_url: str):
    view = page.open(base_url, model_route(MERGE))
    viewport = view.locator("svg.tree-canvas g.viewport")
    canvas = view.locator("svg.tree-canvas")
    canvas.scroll_into_view_if_needed()
    box = canvas.bounding_box()
    x0, y0, k0 = scale_and_shift(viewport.get_attribute("transform"))
    view.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    view.mouse.wheel(0, -400)
    view.wait_for_function(
        "k => !document.querySelector('g.viewport').getAttribute('transform').endsWith(`scale(${k})`)",
        arg=f"{k0:.4f}",
    )
    x1, y1, k1 = scale_and_shift(viewport.get_attribute("transform"))
    assert k1 > k0
    # drag from an empty corner of the canvas: the view moves, no model is opened
    start = (box["x"] + 12, box["y"] + box["height"] - 12)
    view.mouse.move(*start)
    view.mouse.down()
    view.mouse.move(start[0] + 150, start[1] - 90, steps=6)
    view.mouse.up()
    x2, y2, k2 = scale_and_shift(viewport.get_attribute("transform"))
    assert (round(x2 - x1), round(y2 - y1), k2) == (150, -90, k1)
    assert view.url.endswith(model_route(MERGE))
    assert page.problems == []


def test_the_pair_page_draws_the_layer_map_heatmap_and_each_tests_log10_p(page: Watched, base_url: str, api, shots):
    a, b = PAIR
    comparison = api.get("/api/compare", params={"a": a, "b": b}).json()
    view = page.open(base_url, f"#/pair/{quote(a, safe='')}/{quote(b, safe='')}")
    heatmap = view.locator("svg.heatmap").first
    rows, cols = comparison["layers"]
    assert heatmap.locator("rect.cell").count() == rows * cols == 8
    assert heatmap.locator("rect.cell:not(.empty)").count() == len(comparison["layer_map"]) > 0
    for i, j, *_ in comparison["layer_map"]:
        assert heatmap.locator(f'rect.cell[data-i="{i}"][data-j="{j}"]').get_attribute("fill").startswith("rgb(")
    table = view.locator("table.tests tbody tr")
    assert table.count() == len(comparison["tests"]) > 0
    for k, test in enumerate(comparison["tests"]):
        name, log10_p = table.nth(k).locator("td").all_inner_texts()[:2]
        assert name == test["name"] and float(log10_p) == pytest.approx(test["log10_p"], abs=0.1)
    screenshot(page, shots, "pair")
    assert page.problems == []


def test_discrepancies_show_card_snippets_with_a_working_copy_button(page: Watched, base_url: str, api, shots):
    answer = api.get("/api/discrepancies").json()
    view = page.open(base_url, "#/discrepancies")
    with_snippet = [d for d in answer["discrepancies"] + answer["undeclared"] if d.get("suggested_card")]
    assert view.locator("pre.snippet").count() == len(with_snippet) > 0
    assert view.locator("button.copy").count() == len(with_snippet)
    first = view.locator("article.discrepancy").filter(has=view.locator("pre.snippet")).first
    first.locator("button.copy").click()
    view.wait_for_selector("text=Copied", timeout=WAIT_MS)
    copied = view.evaluate("navigator.clipboard.readText()")
    assert copied == with_snippet[0]["suggested_card"]
    screenshot(page, shots, "discrepancies")
    assert page.problems == []


def test_the_status_page_lists_the_last_runs(page: Watched, base_url: str, api, shots):
    runs = api.get("/api/runs").json()["runs"]
    view = page.open(base_url, "#/status")
    rows = view.locator("table.runs tbody tr")
    assert rows.count() == len(runs) >= 1
    cells = rows.first.locator("td").all_inner_texts()
    assert cells[:3] == [str(runs[0]["run_id"]), runs[0]["kind"], runs[0]["status"]] and cells[1] == "refresh"
    screenshot(page, shots, "status")
    assert page.problems == []


@pytest.mark.parametrize("route", [model_route(MERGE), "#/discrepancies", "#/pair/{a}/{b}"])
def test_narrow_windows_need_no_sideways_scrolling(narrow_page: Watched, base_url: str, shots, route: str):
    route = route.format(a=quote(PAIR[0], safe=""), b=quote(PAIR[1], safe=""))
    view = narrow_page.open(base_url, route)
    overflow = view.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
    assert overflow <= 0
    name = route.strip("#/").split("/")[0]
    screenshot(narrow_page, shots, f"narrow-{name}")
    assert narrow_page.problems == []


def test_an_unknown_model_says_so_on_the_page(page: Watched, base_url: str):
    view = page.open(base_url, model_route("nobody/no-such-model"))
    assert view.locator("h1").inner_text() == "Not found"
    assert "nobody/no-such-model" in view.locator("p.error").inner_text()
    # the 404 answer is the expected one; nothing else failed
    assert [p for p in page.problems if "404" not in p and "Failed to load resource" not in p] == []


def _link(source: str, target: str, relation: str, log10_p: float | None) -> dict:
    return {"source": source, "target": target, "relation": relation, "confidence": 0.9, "log10_p": log10_p}


LATENT = "latent:org/base#1"
LATENT_FAMILY = {  # org/base -> an ancestor that is not indexed -> org/left, org/right
    "nodes": [
        {"id": "org/base", "latent": False, "root": True},
        {"id": LATENT, "latent": True, "root": False},
        {"id": "org/left", "latent": False, "root": False},
        {"id": "org/right", "latent": False, "root": False},
    ],
    "links": [
        {**_link("org/base", LATENT, "ancestor", None), "directed": True},
        {**_link(LATENT, "org/left", "finetune", -40.0), "directed": True},
        {**_link(LATENT, "org/right", "finetune", -41.0), "directed": True},
    ],
}


def test_the_tree_draws_an_unseen_ancestor_dashed_and_labelled(page: Watched, base_url: str, shots):
    """The small zoo has no latent node, so the page's own tree module draws a family that has one
    (the node-link shape pedigree.query.graph gives an ancestor that is not indexed)."""
    view = page.open(base_url, "#/status")
    drawn = view.evaluate(
        """async (graph) => {
          const { familyTree } = await import("/static/tree.js");
          const tree = familyTree(graph, "org/left", () => {});
          document.querySelector("main").append(tree);
          await new Promise((done) => requestAnimationFrame(() => requestAnimationFrame(done)));
          const latent = tree.querySelector('g.node[data-id="latent:org/base#1"]');
          const rows = [...tree.querySelectorAll("g.node")].map((n) => [n.dataset.id, n.transform.baseVal[0].matrix.f]);
          return {
            latentClass: latent.getAttribute("class"),
            latentText: latent.textContent,
            dash: getComputedStyle(latent.querySelector("rect")).strokeDasharray,
            focusable: latent.hasAttribute("tabindex"),
            current: tree.querySelector("g.node.current").dataset.id,
            y: Object.fromEntries(rows),
          };
        }""",
        LATENT_FAMILY,
    )
    assert "latent" in drawn["latentClass"] and "unseen ancestor" in drawn["latentText"]
    assert drawn["dash"] not in ("", "none") and not drawn["focusable"]
    assert drawn["current"] == "org/left"
    y = drawn["y"]  # layered: the base above its unseen descendant, above the two children
    assert y["org/base"] < y["latent:org/base#1"] < y["org/left"] == y["org/right"]
    view.locator("div.tree").last.screenshot(path=str(shots[0] / "tree-latent.png"))
    assert page.problems == []
