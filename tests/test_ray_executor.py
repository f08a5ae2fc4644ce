"""The refresh on Ray (crawler/executor_ray.py) against the single-process refresh: two families
of the small zoo served by the bundled Hub server on 127.0.0.1, refreshed once by the local
executor and once by a local Ray with 2 workers (``pedigree refresh --executor ray`` through the
real CLI); the two DuckDB files must hold the same models, fingerprint vectors, tests and lineage
edges.  Then the one request budget per Hub host (crawler/executor_budget.py): its arithmetic on a
clock the test turns, its transport against the real server's 429s, and - on Ray - every worker
held through the pause a 429's ``Retry-After`` asked for.  The CLI's executor options and their
one-line errors (Ray missing included) are checked without Ray.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest
from cli_runner import cli

from bench.hub_faults import FaultyHub, RateLimit, Slow
from pedigree.crawler.executor_budget import HostBudget, budgeted
from pedigree.crawler.http_client import hub_client
from pedigree.crawler.http_retry import RetryPolicy
from pedigree.storage.db import Store

FAMILIES = ("qwen-lab/tiny-qwen2", "neox-lab/tiny-neox")


@pytest.fixture(scope="module")
def hub_root(small_zoo: Path, truth: dict, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two families of the small zoo (5 repos: bases, fine-tunes, a quantized copy) as a Hub folder."""
    root = tmp_path_factory.mktemp("ray-hub")
    for model, facts in truth.items():
        if facts["family"] in FAMILIES:
            shutil.copytree(small_zoo / model, root / model)
    return root


@pytest.fixture(scope="module")
def hub(hub_root: Path):
    """One server for the module's runs (the same endpoint: the same source URIs in both databases);
    a test that injects faults clears them when it is done."""
    with FaultyHub(hub_root) as server:
        yield server


@pytest.fixture(scope="module")
def local_run(hub: FaultyHub, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """The reference: the refresh by the local executor (data folder, summary)."""
    home = tmp_path_factory.mktemp("local") / "home"
    return home, cli("refresh", "--endpoint", hub.url, "--home", str(home))


@pytest.fixture(scope="session")
def ray_address() -> str:
    """A local Ray with 2 CPUs for the session (the executor uses the Ray this process started)."""
    ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'pedigree[ray]')")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, object_store_memory=200 * 2**20)
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()


def contents(home: Path) -> dict[str, object]:
    """What a refresh wrote, by model id (keys included: commits in the same order give the same)."""
    conn = duckdb.connect(str(home / "pedigree.duckdb"), read_only=True)
    ids = "JOIN models a ON a.pk = r.model_a JOIN models b ON b.pk = r.model_b"
    try:
        return {
            "models": conn.execute(
                "SELECT pk, id, status, revision, error, family, num_layers, source FROM models ORDER BY id"
            ).fetchall(),
            "vectors": conn.execute(
                "SELECT m.id, f.version, f.kind, f.layer, f.vector FROM fingerprints f "
                "JOIN models m ON m.pk = f.model_pk ORDER BY ALL"
            ).fetchall(),
            "relations": conn.execute(
                f"SELECT a.id, b.id, r.log10_p, r.log10_q, r.confirmed, r.layer_map FROM relations r {ids} ORDER BY ALL"
            ).fetchall(),
            "pair_tests": conn.execute(
                f"SELECT a.id, b.id, r.test, r.log10_p FROM pair_tests r {ids} ORDER BY ALL"
            ).fetchall(),
            "edges": conn.execute(
                "SELECT p.id, c.id, e.relation, e.log10_p FROM lineage_edges e "
                "JOIN models p ON p.pk = e.parent JOIN models c ON c.pk = e.child ORDER BY ALL"
            ).fetchall(),
            "crawl": conn.execute("SELECT repo_id, sha, status, reason FROM crawl_models ORDER BY ALL").fetchall(),
            "evidence": conn.execute(
                "SELECT m.id, e.file, e.bytes FROM evidence e JOIN models m ON m.pk = e.model_pk ORDER BY ALL"
            ).fetchall(),
        }
    finally:
        conn.close()


def test_a_ray_refresh_writes_the_database_a_local_refresh_writes(
    hub: FaultyHub, local_run: tuple[Path, dict], ray_address: str, tmp_path: Path
):
    (local_home, local), ray_home = local_run, tmp_path / "ray"
    ray_options = ("--executor", "ray", "--address", ray_address, "--workers", "2", "--hub-rate", "0")
    remote = cli("refresh", "--endpoint", hub.url, "--home", str(ray_home), *ray_options)
    hub.reset_stats()
    again = cli("refresh", "--endpoint", hub.url, "--home", str(ray_home), *ray_options)
    files = sum(hub.stats().count(kind) for kind in ("resolve_head", "resolve_get", "cdn_head", "cdn_get"))
    assert local["counts"]["new_models"] == len(local["repos"]) == 5 and local["errors"] == []
    assert remote["counts"] == local["counts"] and remote["errors"] == []
    assert [(r["id"], r["status"], r["sha"]) for r in remote["repos"]] == [
        (r["id"], r["status"], r["sha"]) for r in local["repos"]
    ]
    assert local["counts"]["pairs_tested"] > 0 and local["counts"]["new_edges"] > 0
    expected, got = contents(local_home), contents(ray_home)
    for table in expected:
        assert got[table] == expected[table], table
    for _, name, size in got["evidence"]:  # written by the workers into the data folder's evidence/
        assert (ray_home / "evidence" / name).stat().st_size == size
    assert again["repos"] == [] and again["counts"]["new_models"] == 0 and files == 0


def test_a_killed_ray_refresh_resumes_to_the_database_of_an_uninterrupted_one(
    hub: FaultyHub, local_run: tuple[Path, dict], ray_address: str, tmp_path: Path
):
    """The driver killed (SIGKILL) while its tasks are at work: what it committed stands, the next
    run does the rest, and the result is the database of a run never killed (its models, vectors,
    evidence and crawl records; the tests of a refresh are those of the models it indexed itself)."""
    home = tmp_path / "killed"
    options = ("--confirm", "0", "--executor", "ray", "--address", ray_address, "--hub-rate", "0")
    command = [sys.executable, "-m", "pedigree", "refresh", "--endpoint", hub.url, "--home", str(home), *options]
    hub.set_faults(slow=[Slow(scope="cdn_get", delay=0.05)])
    try:
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:  # killed once the workers have written evidence: tasks are at work, some repos maybe committed
            while process.poll() is None and len(list((home / "evidence").glob("*.npz"))) < 2:
                time.sleep(0.05)
            killed = process.poll() is None
        finally:
            process.kill()
            process.wait()
    finally:
        hub.set_faults()
    done = cli("refresh", "--endpoint", hub.url, "--home", str(home), *options)
    assert killed, "the refresh finished before it could be killed: slow the server down"
    assert done["errors"] == [] and {r["status"] for r in done["repos"]} <= {"indexed"}
    expected, got = contents(local_run[0]), contents(home)
    for table in ("vectors", "crawl", "evidence"):
        assert got[table] == expected[table], table
    assert [m[1:] for m in got["models"]] == [m[1:] for m in expected["models"]]  # keys aside


def test_one_budget_holds_every_worker_through_the_pause_a_429_asks_for(
    hub: FaultyHub, ray_address: str, tmp_path: Path
):
    from pedigree.crawler.executor_ray import RayExecutor

    executor = RayExecutor(workers=2, hub_rate=0)
    executor.keep_events = 100_000
    storm = RateLimit(scope="files", count=6, after=40, reset=1)  # 429, Retry-After: 1, on 6 requests in a row
    hub.set_faults(rate_limits=[storm])
    hub.reset_stats()
    try:
        with Store(tmp_path / "home" / "pedigree.duckdb") as store:
            retry = RetryPolicy(attempts=10, base_delay=0.01, max_delay=2.0)
            summary = executor.crawl(store, hub.url, retry=retry)
        stats = hub.stats()
    finally:
        hub.set_faults()
    assert {r.status for r in summary.repos} == {"indexed"} and len(summary.repos) == 5
    assert stats.status.get(429) == 6
    events = executor.budget_events
    pauses = [e for e in events if e.kind == "pause"]
    grants = [e for e in events if e.kind == "grant"]
    assert pauses and all(p.until - p.at == pytest.approx(1.0) for p in pauses)  # Retry-After: 1
    # every request of every process went through the one budget ...
    assert len(grants) == len(stats.log) and executor.budget_stats.grants == len(grants)
    assert len({g.who for g in grants}) >= 3  # the driver's listing and both workers
    # ... and every request asked for while its host was paused waited for the pause's end
    held = [(g, p) for g in grants for p in pauses if g.host == p.host and p.at <= g.asked < p.until]
    assert held and all(g.at >= p.until for g, p in held)
    assert any(g.who != p.who for g, p in held)  # a process held by a pause another one's 429 started


def test_the_window_keeps_at_most_workers_tasks_at_work_and_settles_in_submission_order(ray_address: str):
    import ray

    from pedigree.crawler.executor_window import OrderedWindow

    def interval(seconds: float) -> tuple[float, float]:  # a local function: sent to the workers by value
        """Sleep, and say when it ran (wall clock, shared by the processes of this machine)."""
        start = time.time()
        time.sleep(seconds)
        return start, time.time()

    task = ray.remote(interval).options(num_cpus=1)
    settled: list[tuple[int, tuple[float, float] | None]] = []
    window: OrderedWindow[int] = OrderedWindow(
        ray.wait, 1, lambda i, ref: settled.append((i, None if ref is None else ray.get(ref))), backlog=2
    )
    for i, seconds in enumerate([0.3, 0.05, 0.2, 0.0, 0.05]):
        window.add(i, None if i == 3 else task.remote(seconds))  # entry 3: settled by the driver itself
    window.drain()
    assert [i for i, _ in settled] == [0, 1, 2, 3, 4]
    ran = sorted(interval for _, interval in settled if interval is not None)
    assert all(end <= next_start for (_, end), (next_start, _) in zip(ran, ran[1:]))  # one at a time on 2 CPUs


# ---- the budget without Ray -----------------------------------------------------------------------


class Clock:
    """A clock the test turns by hand (the budget asks it for the time)."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_budget_spaces_requests_at_its_rate_after_a_burst_and_holds_them_through_a_pause():
    clock = Clock()
    budget = HostBudget(rate=4.0, burst=2, max_pause=5.0, keep_events=100, clock=clock)
    assert [budget.reserve("hub:443") for _ in range(5)] == [0.0, 0.0, 0.25, 0.5, 0.75]
    assert budget.reserve("cdn:443") == 0.0  # each host has its own bucket
    clock.now += 10.0  # idle: the bucket is full again
    assert budget.pause("hub:443", 3.0, who="worker-1") == 3.0
    assert budget.reserve("hub:443") == 3.0 and budget.reserve("cdn:443") == 0.0
    assert budget.pause("hub:443", 3600.0) == 5.0  # capped as the retry policy caps one wait
    clock.now += 1.0
    assert budget.reserve("hub:443") == pytest.approx(4.0)
    stats = budget.stats()
    assert (stats.grants, stats.pauses) == (9, 2)
    assert [e.kind for e in budget.events()].count("pause") == 2
    with pytest.raises(ValueError):
        HostBudget(rate=0)


def test_budgeted_client_asks_before_every_request_and_pauses_the_host_on_retry_after(hub_root: Path):
    budget = HostBudget(rate=None, max_pause=30.0, keep_events=1000)
    told: list[tuple[str, float]] = []

    def tell(host: str, seconds: float) -> None:
        told.append((host, seconds))
        budget.pause(host, seconds)

    with FaultyHub(hub_root) as hub:
        hub.set_faults(rate_limits=[RateLimit(scope="api", count=1, reset=1)])
        with budgeted(hub_client(None), budget.reserve, tell) as client:
            first = client.get(f"{hub.url}/api/models")
            second = client.get(f"{hub.url}/api/models")
        served, host = len(hub.stats().log), f"127.0.0.1:{hub.port}"
    assert first.status_code == 429 and second.status_code == 200
    assert told == [(host, 1.0)]  # Retry-After / RateLimit t=1
    assert budget.stats().grants == served == 2
    pause, grant = budget.events()[1], budget.events()[2]
    assert pause.kind == "pause" and grant.at == pytest.approx(pause.until)


# ---- the CLI's options -------------------------------------------------------------------------


def test_ray_options_are_refused_for_the_local_executor_and_unknown_executors_named(tmp_path: Path):
    home = str(tmp_path / "home")
    out = cli("refresh", "--endpoint", "http://127.0.0.1:9", "--home", home, "--workers", "2", ok=False)
    assert out["error"] == "--workers apply to --executor ray only"
    out = cli("refresh", "--home", home, "--executor", "spark", ok=False)
    assert out["error"] == "unknown executor 'spark': choose one of local, ray"
    assert not (tmp_path / "home").exists()  # refused before the data folder is touched


def test_a_ray_cluster_address_that_does_not_answer_is_one_line(tmp_path: Path):
    pytest.importorskip("ray", reason="Ray is not installed (pip install 'pedigree[ray]')")
    with socket.socket() as closed:  # a port nobody listens on
        closed.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{closed.getsockname()[1]}"
    command = [sys.executable, "-m", "pedigree", "refresh", "--home", str(tmp_path / "home"), "--json"]
    # a process of its own: this one may have started Ray for the other tests
    run = subprocess.run(
        [*command, "--executor", "ray", "--address", address], capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 1 and "Traceback" not in run.stderr, run.stderr
    assert json.loads(run.stdout)["error"].startswith(f"cannot reach the Ray cluster at {address}: ")


def test_without_ray_the_ray_executor_is_one_line_naming_the_extra(tmp_path: Path):
    script = (
        "import sys; sys.modules['ray'] = None\n"  # `import ray` now raises ImportError, as without the extra
        "from pedigree.cli import main\n"
        f"sys.argv = ['pedigree', 'refresh', '--home', {str(tmp_path / 'home')!r}, '--executor', 'ray', '--json']\n"
        "main()\n"
    )
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert run.returncode == 1, run.stderr
    assert json.loads(run.stdout) == {
        "error": "--executor ray needs Ray, which is not installed: pip install 'pedigree[ray]'"
    }
    assert "Traceback" not in run.stderr
