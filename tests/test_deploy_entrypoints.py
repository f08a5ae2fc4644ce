"""The deployed command lines, run: compose's ``serve`` and ``schedule`` commands, the systemd
units' ``ExecStart=`` lines and the image's HEALTHCHECK, exactly as written in deploy/, with the
data folder swapped for a copy of the indexed zoo, port 8000 for a free port and the installed
binary for the venv's (tests/deploy_files.py: ``here``).  The Hub is the bundled server on
127.0.0.1 serving one model the zoo does not hold."""

from __future__ import annotations

import os
import queue
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import duckdb
import httpx
import pytest
from deploy_files import (
    ENV_EXAMPLE,
    SYSTEMD,
    compose,
    dockerfile,
    env_file,
    exec_start,
    healthcheck,
    healthcheck_here,
    here,
    here_env,
    interpolate,
    unit_environment,
)

from pedigree.crawler.hub_server import HubServer

ADMIN_TOKEN = "deploy-test-admin-token"
NEW_MODEL = "mirror-lab/tiny-qwen2-code-mirror"
NEW_MODEL_SOURCE = "qwen-lab/tiny-qwen2-code"
START_TIMEOUT = 180.0


def _serve_is_a_command() -> bool:
    from pedigree.cli import app

    return any(command.name == "serve" for command in app.registered_commands)


needs_serve = pytest.mark.skipif(not _serve_is_a_command(), reason="`pedigree serve` is not registered yet")


@pytest.fixture(scope="module")
def hub(small_zoo: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubServer]:
    """The bundled Hub server with one repo: a copy of a zoo model under a new name."""
    root = tmp_path_factory.mktemp("deploy-hub")
    shutil.copytree(small_zoo / NEW_MODEL_SOURCE, root / NEW_MODEL)
    with HubServer(root) as server:
        yield server


@pytest.fixture()
def home(indexed_home: Path, tmp_path: Path) -> Path:
    """A private copy of the indexed zoo: the deployed data folder."""
    return Path(shutil.copytree(indexed_home, tmp_path / "data"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def base_env(deployed: dict[str, str], home: Path, hub: HubServer) -> dict[str, str]:
    """This process's environment less pedigree's and the Hub's variables, then the deployed
    ones: the env file (pedigree.env.example filled in for the test) and the service's own."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PEDIGREE_", "HF_"))}
    filled = env_file(ENV_EXAMPLE) | {"PEDIGREE_ADMIN_TOKEN": ADMIN_TOKEN, "HF_ENDPOINT": hub.url}
    return env | filled | here_env(deployed, home)


def compose_service(name: str) -> tuple[list[str], dict[str, str]]:
    service = compose()["services"][name]
    return [interpolate(word, {}) for word in service["command"]], dict(service["environment"])


def serve_commands(home: Path, port: int) -> dict[str, list[str]]:
    return {
        "compose": here(compose_service("serve")[0], home, port),
        "systemd": here(exec_start(SYSTEMD / "pedigree-serve.service"), home, port),
    }


def deployed_env(source: str) -> dict[str, str]:
    if source == "compose":
        return compose_service("serve")[1]
    return unit_environment(SYSTEMD / "pedigree-serve.service")


class Served:
    """A started ``serve`` command: its process, base URL and log file."""

    def __init__(self, command: list[str], env: dict[str, str], port: int, log: Path) -> None:
        self.url = f"http://127.0.0.1:{port}"
        self.log = log
        with log.open("wb") as out:
            self.process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            assert self.process.poll() is None, f"serve exited {self.process.returncode}: {self.output()}"
            try:
                if httpx.get(f"{self.url}/healthz", timeout=5).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, f"no /healthz 200 in {START_TIMEOUT} s: {self.output()}"
            time.sleep(0.25)

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]

    def stop(self) -> int:
        """SIGTERM (what ``docker stop`` and ``systemctl stop`` send); the exit status."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise

    def assert_stopped_cleanly(self, code: int) -> None:
        """uvicorn shuts down gracefully on SIGTERM, then re-raises it: the status is 0 or "ended
        by SIGTERM", which systemd counts as a clean exit (and which, as PID 1 in a container, is
        ignored by the kernel: exit 0).  A crash would leave a traceback or another status."""
        assert code in (0, -signal.SIGTERM), f"exit {code}: {self.output()}"
        assert "Traceback" not in self.output() and "ERROR" not in self.output(), self.output()


def image_probe(port: int) -> subprocess.CompletedProcess[str]:
    """The Dockerfile's HEALTHCHECK command, run here against ``port``."""
    _, (_, runtime) = dockerfile()
    command = healthcheck_here(healthcheck(runtime)[1], port)
    return subprocess.run(command, capture_output=True, text=True, timeout=60)


@needs_serve
@pytest.mark.parametrize("source", ["compose", "systemd"])
def test_serve_command_is_healthy_for_the_image_probe_and_stops_on_sigterm(
    source: str, home: Path, hub: HubServer, tmp_path: Path
):
    port = free_port()
    command = serve_commands(home, port)[source]
    served = Served(command, base_env(deployed_env(source), home, hub), port, tmp_path / "serve.log")
    try:
        health = httpx.get(f"{served.url}/healthz", timeout=10)
        assert health.json()["ok"] is True
        probe = image_probe(port)
        assert probe.returncode == 0, probe.stderr
        models = httpx.get(f"{served.url}/api/models", params={"q": "qwen-lab/"}, timeout=30)
        assert models.status_code == 200 and NEW_MODEL_SOURCE in {m["id"] for m in models.json()["models"]}
        # the env file's PEDIGREE_ADMIN_TOKEN reached serve: required, checked, accepted
        jobs = f"{served.url}/api/admin/jobs/no-such-job"
        assert httpx.post(f"{served.url}/api/admin/refresh", timeout=30).status_code == 401
        assert httpx.get(jobs, headers={"Authorization": "Bearer wrong"}, timeout=30).status_code == 403
        accepted = httpx.get(jobs, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=30)
        assert accepted.status_code == 404 and "no job" in accepted.json()["error"], accepted.text
    finally:
        code = served.stop()
    served.assert_stopped_cleanly(code)
    assert image_probe(port).returncode != 0, "the probe fails once serve is gone"


def run_refresh_unit(home: Path, hub: HubServer, log: Path) -> subprocess.CompletedProcess[bytes]:
    unit = SYSTEMD / "pedigree-refresh.service"
    command = here(exec_start(unit), home, 0)
    env = base_env(unit_environment(unit), home, hub)
    with log.open("wb") as out:
        return subprocess.run(command, env=env, stdout=out, stderr=subprocess.STDOUT, timeout=600)


def indexed_ids(home: Path) -> set[str]:
    conn = duckdb.connect(str(home / "pedigree.duckdb"), read_only=True)
    try:
        return {row[0] for row in conn.execute("SELECT id FROM models").fetchall()}
    finally:
        conn.close()


def refresh_runs(home: Path) -> list[tuple[str, str]]:
    conn = duckdb.connect(str(home / "pedigree.duckdb"), read_only=True)
    try:
        rows = conn.execute("SELECT kind, status FROM runs WHERE kind = 'refresh' ORDER BY started_at").fetchall()
        return [(kind, status) for kind, status in rows]
    finally:
        conn.close()


class Poller(threading.Thread):
    """Clients asking the API while something else happens: requests made, failures seen."""

    PATHS = ("/healthz", "/api/models?q=qwen-lab/", f"/api/models/{NEW_MODEL_SOURCE}/lineage")

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url, self.stopped = url, threading.Event()
        self.requests = 0
        self.failures: list[str] = []

    def run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=30) as client:
            while not self.stopped.is_set():
                for path in self.PATHS:
                    self.requests += 1
                    try:
                        status = client.get(path).status_code
                    except httpx.HTTPError as error:
                        self.failures.append(f"{path}: {error!r}")
                    else:
                        if status != 200:
                            self.failures.append(f"{path}: HTTP {status}")
                self.stopped.wait(0.1)


@needs_serve
def test_refresh_unit_runs_once_against_the_hub_while_serve_answers(home: Path, hub: HubServer, tmp_path: Path):
    assert NEW_MODEL not in indexed_ids(home)
    port = free_port()
    env = base_env(unit_environment(SYSTEMD / "pedigree-serve.service"), home, hub)
    served = Served(serve_commands(home, port)["systemd"], env, port, tmp_path / "serve.log")
    poller = Poller(served.url)
    try:
        poller.start()
        done = run_refresh_unit(home, hub, tmp_path / "refresh.log")
        assert done.returncode == 0, (tmp_path / "refresh.log").read_text(errors="replace")[-3000:]
        deadline = time.monotonic() + START_TIMEOUT  # the API picks the new graph build up by itself
        while httpx.get(f"{served.url}/api/models/{NEW_MODEL}", timeout=30).status_code != 200:
            assert time.monotonic() < deadline, f"{NEW_MODEL} never appeared in the API: {served.output()}"
            time.sleep(0.5)
    finally:
        poller.stopped.set()
        poller.join(timeout=60)
        code = served.stop()
    print(f"\nrefresh while serving: {poller.requests} requests, {len(poller.failures)} failed")
    assert poller.requests > 0 and poller.failures == []
    served.assert_stopped_cleanly(code)
    assert NEW_MODEL in indexed_ids(home) and refresh_runs(home)[-1] == ("refresh", "ok")


def _lines(stream: IO[bytes], into: queue.Queue[str]) -> None:
    for raw in iter(stream.readline, b""):
        into.put(raw.decode(errors="replace"))


def test_compose_schedule_command_makes_up_a_missed_run_then_stops_on_sigint(
    home: Path, hub: HubServer, tmp_path: Path
):
    from pedigree.config import load_settings
    from pedigree.workspace import Workspace

    with Workspace(load_settings(home)) as ws:  # the last nightly run was 3 days ago: one was missed
        ws.store.conn.execute(
            "INSERT INTO runs (kind, endpoint, started_at, finished_at, status) VALUES "
            "('refresh', ?, now() - INTERVAL 3 DAY, now() - INTERVAL 3 DAY, 'ok')",
            [hub.url],
        )
    argv, environment = compose_service("schedule")
    command = here(argv, home, 0)
    process = subprocess.Popen(
        command, env=base_env(environment, home, hub), stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    lines: queue.Queue[str] = queue.Queue()
    assert process.stdout is not None
    threading.Thread(target=_lines, args=(process.stdout, lines), daemon=True).start()
    seen: list[str] = []
    try:
        deadline = time.monotonic() + 600
        while not any(line.startswith("refresh run ") for line in seen):
            assert process.poll() is None or not lines.empty(), f"schedule exited: {''.join(seen)}"
            assert time.monotonic() < deadline, f"no refresh run reported: {''.join(seen)}"
            try:
                seen.append(lines.get(timeout=1))
            except queue.Empty:
                pass
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)  # compose's stop_signal for this service
        code = process.wait(timeout=60)
    assert compose()["services"]["schedule"]["stop_signal"] == "SIGINT"
    assert code == 0, "".join(seen)
    assert any("refresh scheduled '0 2 * * *'" in line for line in seen), "".join(seen)
    assert NEW_MODEL in indexed_ids(home) and refresh_runs(home)[-1] == ("refresh", "ok")
