"""Refresh while serving: ``pedigree serve`` keeps answering while ``pedigree refresh`` (another
process, the real CLI) writes the index, and switches to the refreshed answers when it is done.

Part of the small zoo is ingested; three more of its models wait on the bundled Hub server.  50
client threads query the API without pause while the refresh crawls, tests and rebuilds the
graph.  No request may fail; the new models must then be served, with their parents.  The
figures (requests served, errors, duration, requests per snapshot) are printed for BENCHMARKS.md:
``pytest -s tests/test_serve_refresh.py``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest
from cli_runner import cli
from serving import hub_folder

from pedigree.crawler.hub_server import HubServer

CLIENTS = 50
INDEXED = [
    "gpt-lab/tiny-gpt2",
    "mirror-models/tiny-gpt2-remix",
    "bert-lab/tiny-bert",
    "llama-lab/tiny-llama-s2",
    "neox-lab/tiny-neox",
    "neox-lab/tiny-neox-tests",
]
ON_THE_HUB = {  # new model -> its parent (already indexed)
    "gpt-lab/tiny-gpt2-web": "gpt-lab/tiny-gpt2",
    "bert-lab/tiny-bert-tests": "bert-lab/tiny-bert",
    "copycat/tiny-llama-s2-tests": "llama-lab/tiny-llama-s2",
}


@pytest.fixture(scope="module")
def home(small_zoo: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("serve-refresh")
    models = hub_folder(small_zoo, root / "models", {m: m for m in INDEXED})
    home = root / "home"
    result = cli("ingest", str(models), "--home", str(home))
    assert result["counts"]["indexed"] == len(INDEXED)
    return home


@pytest.fixture(scope="module")
def hub(small_zoo: Path, tmp_path_factory: pytest.TempPathFactory):
    root = hub_folder(small_zoo, tmp_path_factory.mktemp("serve-refresh-hub"), {m: m for m in ON_THE_HUB})
    with HubServer(root) as server:
        yield server


def child_env() -> dict[str, str]:
    return {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "OPENBLAS_NUM_THREADS": "1", "PEDIGREE_ADMIN_TOKEN": ""}


def start_serve(home: Path) -> tuple[subprocess.Popen[str], str]:
    """``pedigree serve --port 0`` as a child process; returns it with its URL."""
    command = [sys.executable, "-m", "pedigree", "serve", "--home", str(home), "--port", "0", "--json"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=child_env())
    assert process.stdout is not None
    line = process.stdout.readline()
    assert line, process.stderr.read() if process.stderr else "serve printed nothing"
    url = json.loads(line)["url"]
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{url}/healthz", timeout=5).status_code == 200:
                return process, url
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline and process.poll() is None, "serve did not answer"
        time.sleep(0.1)


class Clients:
    """CLIENTS threads querying the API in a loop until stopped; every answer is counted."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.served = 0
        self.errors: list[str] = []
        self.by_snapshot: Counter[str] = Counter()
        self.latencies: list[float] = []
        paths = ["/api/models?limit=20", "/api/status", "/api/discrepancies", "/api/models?q=tiny&limit=5"]
        for model in INDEXED:
            paths += [f"/api/models/{model}", f"/api/models/{model}/lineage", f"/api/models/{model}/family"]
        self.paths = paths
        self.threads = [threading.Thread(target=self.run, args=(i,), daemon=True) for i in range(CLIENTS)]

    def run(self, index: int) -> None:
        with httpx.Client(base_url=self.url, timeout=120) as http:
            step = index
            while not self.stop.is_set():
                path = self.paths[step % len(self.paths)]
                step += 1
                started = time.perf_counter()
                try:
                    response = http.get(path)
                    ok = response.status_code == 200
                    problem = None if ok else f"{path}: {response.status_code} {response.text[:200]}"
                except httpx.HTTPError as error:
                    problem, response = f"{path}: {type(error).__name__}: {error}", None
                with self.lock:
                    self.latencies.append(time.perf_counter() - started)
                    if problem:
                        self.errors.append(problem)
                    else:
                        self.served += 1
                        assert response is not None
                        self.by_snapshot[response.headers.get("x-pedigree-snapshot", "?")] += 1

    def __enter__(self) -> Clients:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=180)


def test_fifty_clients_are_answered_while_a_refresh_writes_and_then_see_its_models(home: Path, hub: HubServer):
    serve, url = start_serve(home)
    try:
        before = httpx.get(f"{url}/healthz").json()["snapshot"]["name"]
        started = time.perf_counter()
        with Clients(url) as clients:
            time.sleep(1.0)  # the clients are under way before the refresh starts
            refresh = subprocess.run(
                [sys.executable, "-m", "pedigree", "refresh", "--home", str(home), "--endpoint", hub.url, "--json"],
                capture_output=True,
                text=True,
                env=child_env(),
                timeout=600,
            )
            refreshed_at = time.perf_counter()
            # keep querying until every client has been answered from the new snapshot at least once
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                with clients.lock:
                    after = sum(n for name, n in clients.by_snapshot.items() if name != before)
                if after >= CLIENTS:
                    break
                time.sleep(0.2)
        duration = time.perf_counter() - started
        assert refresh.returncode == 0, refresh.stdout + refresh.stderr
        summary = json.loads(refresh.stdout)
        latencies = sorted(clients.latencies)
        figures = {
            "clients": CLIENTS,
            "requests_served": clients.served,
            "errors": len(clients.errors),
            "duration_s": round(duration, 1),
            "refresh_s": round(refreshed_at - started - 1.0, 1),
            "requests_per_snapshot": dict(clients.by_snapshot),
            "latency_p50_ms": round(1000 * latencies[len(latencies) // 2], 1),
            "latency_p95_ms": round(1000 * latencies[int(len(latencies) * 0.95)], 1),
            "new_models": summary["counts"]["new_models"],
        }
        print("\nrefresh while serving:", json.dumps(figures))
        assert clients.errors == [], clients.errors[:5]
        assert clients.served > 0 and clients.by_snapshot[before] > 0 and len(clients.by_snapshot) >= 2
        assert summary["counts"]["new_models"] == len(ON_THE_HUB)

        # after the build: the new models are served, with their parents
        listed = {m["id"] for m in httpx.get(f"{url}/api/models", params={"limit": 200}).json()["models"]}
        assert set(ON_THE_HUB) | set(INDEXED) == listed
        for model, parent in ON_THE_HUB.items():
            lineage = httpx.get(f"{url}/api/models/{model}/lineage", timeout=60).json()
            assert parent in {p["id"] for p in lineage["parents"]}, (model, lineage["parents"])
        assert httpx.get(f"{url}/api/runs").json()["runs"][0]["kind"] == "refresh"
    finally:
        serve.terminate()
        serve.wait(timeout=30)
