"""The crawler through real HTTP: the bundled Hub-compatible server on 127.0.0.1 serving part of
the small zoo, ``pedigree refresh`` / ``crawl`` driven through the real CLI, faults injected by
the server (429 storms, 5xx bursts, cut bodies, Range ignored, gated and deleted repos), and a
crawler process killed with SIGKILL at random points."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import faiss
import pytest
from cli_runner import cli

from bench.hub_faults import FaultyHub, IgnoreRange, Mutation, RateLimit, ServerError, Slow, Truncate
from pedigree.config import load_settings
from pedigree.crawler.http_retry import RetryPolicy
from pedigree.schedule import missed_run
from pedigree.workspace import Workspace

FAMILIES = ("qwen-lab/tiny-qwen2", "neox-lab/tiny-neox")


@pytest.fixture(scope="module")
def hub_root(small_zoo: Path, truth: dict, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two families of the small zoo (5 repos) as a Hub folder."""
    root = tmp_path_factory.mktemp("hub")
    for model, facts in truth.items():
        if facts["family"] in FAMILIES:
            shutil.copytree(small_zoo / model, root / model)
    return root


@pytest.fixture()
def hub(hub_root: Path, tmp_path: Path):
    """A server over a private copy of the hub folder (mutations change files on disk)."""
    root = tmp_path / "hub"
    shutil.copytree(hub_root, root)
    with FaultyHub(root) as server:
        yield server


def repos_of(root: Path) -> set[str]:
    return {f"{org.name}/{name.name}" for org in root.iterdir() for name in org.iterdir()}


def crawl_rows(home: Path) -> dict[str, tuple]:
    conn = duckdb.connect(str(home / "pedigree.duckdb"), read_only=True)
    try:
        return {r[0]: r[1:] for r in conn.execute("SELECT repo_id, status, reason, sha FROM crawl_models").fetchall()}
    finally:
        conn.close()


def test_refresh_indexes_the_hub_then_a_second_refresh_fetches_nothing(hub: FaultyHub, truth: dict, tmp_path: Path):
    home = str(tmp_path / "home")
    summary = cli("refresh", "--endpoint", hub.url, "--home", home)
    expected = repos_of(hub.root)
    assert {r["id"] for r in summary["repos"]} == expected
    assert {r["status"] for r in summary["repos"]} == {"indexed"}
    assert summary["counts"]["new_models"] == len(expected) and summary["errors"] == []
    assert all(0 < r["bytes_read"] <= 1.05 * r["size_bytes"] + 64 * 2**20 for r in summary["repos"])
    child = next(m for m in sorted(expected) if truth[m]["relation"] == "finetune")
    answer = cli("query", child, "--home", home)
    assert [p["id"] for p in answer["parents"]] == truth[child]["parents"]
    assert answer["parents"][0]["log10_p"] < -12

    hub.reset_stats()
    again = cli("refresh", "--endpoint", hub.url, "--home", home)
    stats = hub.stats()
    assert again["repos"] == [] and again["counts"]["new_models"] == 0
    assert sum(stats.count(kind) for kind in ("resolve_head", "resolve_get", "cdn_head", "cdn_get")) == 0
    status = cli("status", "--home", home)
    assert [r["kind"] for r in status["runs"][:2]] == ["refresh", "refresh"]
    assert status["high_water"][0]["endpoint"] == hub.url and status["high_water"][0]["high_water"]


def test_a_changed_repo_is_the_only_one_crawled_again(hub: FaultyHub, tmp_path: Path):
    home = str(tmp_path / "home")
    first = cli("crawl", "--endpoint", hub.url, "--home", home)
    assert first["counts"]["indexed"] == len(repos_of(hub.root))
    changed = sorted(repos_of(hub.root))[0]
    card = hub.root / changed / "README.md"
    card.write_text(card.read_text() + "\nUpdated.\n")
    later = datetime.now(UTC) + timedelta(minutes=5)
    os.utime(card, (later.timestamp(), later.timestamp()))
    hub.rescan()
    second = cli("crawl", "--endpoint", hub.url, "--home", home)
    assert [r["id"] for r in second["repos"]] == [changed]
    assert second["repos"][0]["status"] == "indexed" and second["repos"][0]["sha"] != first_sha(first, changed)


def first_sha(result: dict, repo: str) -> str:
    return next(r["sha"] for r in result["repos"] if r["id"] == repo)


FAULTS = {
    "429 storm": {
        "rate_limits": [RateLimit(scope="api", count=9, reset=0), RateLimit(scope="files", count=25, after=10, reset=0)]
    },
    "5xx bursts": {
        "server_errors": [
            ServerError(scope="any", every=9, status=503),
            ServerError(scope="cdn_get", count=4, after=20, status=502),
        ]
    },
    "truncated bodies": {"truncate": [Truncate(scope="cdn_get", every=6, fraction=0.3)]},
}
FAST = RetryPolicy(attempts=6, base_delay=0.01, max_delay=0.1)  # the server's Retry-After is 0 here


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_transient_faults_end_with_every_repo_indexed(hub: FaultyHub, tmp_path: Path, fault: str):
    hub.set_faults(**FAULTS[fault])
    with Workspace(load_settings(tmp_path / "home")) as ws:
        first = ws.crawl(hub.url, retry=FAST)
        # a storm longer than the retries leaves repos at "retry", with the reason, for the next run
        assert {r.id for r in first.repos} == repos_of(hub.root)
        assert all(r.status == "indexed" or (r.status == "retry" and r.reason) for r in first.repos)
        second = ws.crawl(hub.url, retry=FAST)
        assert {r.id for r in second.repos} == {r.id for r in first.repos if r.status == "retry"}
        statuses = {r.id: r.status for r in ws.models()}
    assert statuses == dict.fromkeys(repos_of(hub.root), "indexed")
    injected = [r for r in hub.stats().log if r.faults]
    assert len(injected) >= 3  # the server really answered with the fault, and the crawl got through it


def test_range_ignored_is_aborted_and_recorded(hub: FaultyHub, tmp_path: Path):
    hub.set_faults(ignore_range=[IgnoreRange(scope="cdn_get")])
    result = cli("crawl", "--endpoint", hub.url, "--home", str(tmp_path / "home"))
    assert {r["id"] for r in result["repos"]} == repos_of(hub.root)
    for row in result["repos"]:
        assert row["status"] == "failed" and "answered 200 with the whole file" in row["reason"]
        assert row["bytes_read"] == 0  # the whole-file answer was cut off, not read (a 24 MiB shard: test_http_source)


def test_gated_and_deleted_repos_are_recorded_with_their_reason(hub: FaultyHub, tmp_path: Path):
    repos = sorted(repos_of(hub.root))
    gated, deleted = repos[0], repos[-1]
    hub.set_faults(
        gated_repos={gated: "manual"}, mutations=[Mutation(action="delete_repo", repo=deleted, after_list_page=1)]
    )
    home = tmp_path / "home"
    result = cli("crawl", "--endpoint", hub.url, "--home", str(home))
    statuses = {r["id"]: r for r in result["repos"]}
    assert statuses[gated]["status"] == "gated" and "401" in statuses[gated]["reason"]
    assert statuses[deleted]["status"] == "gone"
    assert {statuses[r]["status"] for r in repos if r not in (gated, deleted)} == {"indexed"}
    # not retried while their revision stands
    hub.reset_stats()
    again = cli("crawl", "--endpoint", hub.url, "--home", str(home))
    assert again["repos"] == [] and hub.stats().count("resolve_get") == 0


def database_state(home: Path) -> dict:
    conn = duckdb.connect(str(home / "pedigree.duckdb"), read_only=True)
    try:
        models = conn.execute(
            "SELECT id, revision, status, error, num_layers, tokenizer_hash FROM models ORDER BY id"
        ).fetchall()
        vectors = conn.execute(
            "SELECT m.id, f.kind, f.layer, f.vector FROM fingerprints f JOIN models m ON m.pk = f.model_pk ORDER BY ALL"
        ).fetchall()
        crawled = conn.execute("SELECT repo_id, sha, status FROM crawl_models ORDER BY ALL").fetchall()
        ids = {v for (v,) in conn.execute("SELECT vector_id FROM fingerprints WHERE kind = 'layer'").fetchall()}
    finally:
        conn.close()
    index = faiss.read_index(str(home / "faiss" / "layer.index"))
    faiss_ids = faiss.vector_to_array(faiss.downcast_index(index).id_map)
    assert len(faiss_ids) == len(set(faiss_ids)) and set(faiss_ids) == ids  # no FAISS id orphaned or missing
    return {
        "models": models,
        "vectors": [(m, k, layer, [round(x, 6) for x in v]) for m, k, layer, v in vectors],
        "crawled": crawled,
    }


def test_kill_9_at_random_points_then_resume_equals_an_uninterrupted_run(hub: FaultyHub, tmp_path: Path):
    reference = tmp_path / "reference"
    cli("crawl", "--endpoint", hub.url, "--home", str(reference))
    hub.set_faults(slow=[Slow(scope="cdn_get", delay=0.05)])
    home = tmp_path / "killed"
    command = [sys.executable, "-m", "pedigree", "crawl", "--endpoint", hub.url, "--home", str(home), "--json"]
    rng = random.Random(7)
    kills = 0
    for _ in range(4):
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(2.0, 8.0))
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
            kills += 1
        process.wait()
    assert kills >= 2, "the crawl finished before it could be killed: slow the server down"
    hub.set_faults()
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert database_state(home) == database_state(reference)


def test_a_kill_between_the_model_commit_and_the_crawl_record_resumes_to_the_same_record(
    hub: FaultyHub, tmp_path: Path
):
    """The one window kill -9 can hit deterministically: the model is committed, its crawl record
    is not.  The next run must record it as a clean run does, without reading its tensors again."""
    home = tmp_path / "home"
    cli("crawl", "--endpoint", hub.url, "--home", str(home))
    reference = crawl_rows(home)
    conn = duckdb.connect(str(home / "pedigree.duckdb"))
    try:  # the state a kill leaves: the last repo's record unwritten, the mark still at the repo before it
        order = conn.execute(
            "SELECT repo_id, last_modified FROM crawl_models ORDER BY last_modified, repo_id"
        ).fetchall()
        victim, before = order[-1][0], order[-2][1]
        conn.execute("DELETE FROM crawl_models WHERE repo_id = ?", [victim])
        conn.execute("UPDATE crawl_state SET high_water = ?", [before])
    finally:
        conn.close()
    hub.reset_stats()
    again = cli("crawl", "--endpoint", hub.url, "--home", str(home))
    assert [r["id"] for r in again["repos"]] == [victim]
    assert crawl_rows(home) == reference
    assert (
        hub.stats().count("range_get") == 0 and hub.stats().count("resolve_head") == 0
    )  # the indexed model is not opened


def test_missed_runs_are_detected_from_the_last_run():
    cron = "0 2 * * *"
    last = datetime(2026, 11, 20, 2, 0, 5)
    assert missed_run(cron, last, datetime(2026, 11, 22, 9, 0, tzinfo=UTC))
    assert not missed_run(cron, last, datetime(2026, 11, 21, 1, 59, tzinfo=UTC))
    assert not missed_run(cron, None, datetime(2026, 11, 22, tzinfo=UTC))


def test_schedule_runs_a_missed_refresh_and_records_it(hub: FaultyHub, tmp_path: Path):
    from apscheduler.schedulers.background import BackgroundScheduler

    from pedigree.config import load_settings
    from pedigree.schedule import run_schedule
    from pedigree.workspace import Workspace

    settings = load_settings(tmp_path / "home")
    with Workspace(settings) as ws:  # a refresh "long ago": the nightly run since then was missed
        ws.store.conn.execute(
            "INSERT INTO runs (kind, endpoint, started_at, finished_at, status) VALUES "
            "('refresh', ?, now() - INTERVAL 3 DAY, now() - INTERVAL 3 DAY, 'ok')",
            [hub.url],
        )
    runs: list = []
    scheduler = BackgroundScheduler(timezone=UTC)
    assert run_schedule(settings, "0 2 * * *", endpoint=hub.url, scheduler=scheduler, on_run=runs.append) is False
    try:
        jobs = scheduler.get_jobs()
        assert [job.id for job in jobs] == ["refresh"]  # the made-up run is the nightly job brought forward
        assert jobs[0].max_instances == 1 and jobs[0].coalesce
        deadline = time.time() + 120
        while not runs and time.time() < deadline:
            time.sleep(0.5)
        assert len(runs) == 1
        assert scheduler.get_job("refresh").next_run_time > datetime.now(UTC)  # then back on the cron line
    finally:
        scheduler.shutdown(wait=True)
    assert json.loads((settings.home / "schedule.json").read_text())["cron"] == "0 2 * * *"
    status = cli("status", "--home", str(settings.home))
    assert status["runs"][0]["kind"] == "refresh" and status["runs"][0]["status"] == "ok"
    assert status["runs"][0]["counts"]["new_models"] == len(repos_of(hub.root))


def test_sigint_stops_the_schedule_in_the_middle_of_a_refresh(hub: FaultyHub, tmp_path: Path):
    """Compose stops the schedule with SIGINT: a refresh in progress is abandoned at once (as a kill
    would leave it), the process exits 0 without a traceback, and the next refresh completes the work."""
    home = tmp_path / "home"
    with Workspace(load_settings(home)) as ws:  # a missed nightly run: the schedule refreshes at once
        ws.store.conn.execute(
            "INSERT INTO runs (kind, endpoint, started_at, finished_at, status) VALUES "
            "('refresh', ?, now() - INTERVAL 3 DAY, now() - INTERVAL 3 DAY, 'ok')",
            [hub.url],
        )
    hub.set_faults(slow=[Slow(scope="cdn_get", delay=10.0)])  # every byte range waits: the run takes minutes
    command = [sys.executable, "-m", "pedigree", "schedule", "--cron", "0 2 * * *", "--endpoint", hub.url]
    process = subprocess.Popen(  # started with SIGINT ignored, as a background job of a script (or some
        # pytest-xdist workers) starts it: the schedule must still stop on it
        [*command, "--home", str(home)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    )
    try:
        deadline = time.monotonic() + 120
        while hub.stats().count("cdn_get") < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert hub.stats().count("cdn_get") >= 2, "the made-up refresh never started reading"
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    text = output.decode(errors="replace")
    assert process.returncode == 0, text
    assert "Traceback" not in text and "schedule stopped; the refresh in progress was abandoned" in text, text
    assert "refresh run " not in text, text  # it was stopped, not finished
    hub.set_faults()
    done = cli("refresh", "--endpoint", hub.url, "--home", str(home))
    assert done["errors"] == []
    rows = crawl_rows(home)
    assert rows.keys() == repos_of(hub.root) and {status for status, *_ in rows.values()} == {"indexed"}
