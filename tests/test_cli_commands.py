"""Every command as a user runs it: text mode at 80 columns and ``--json``, on a fixture data folder.

Table-driven over the whole command list (a test fails when a command is added without a row).
Each run must exit 0, show no traceback, keep every line within 80 columns and print each model
id it names whole; the JSON must parse and hold the documented keys.  Blocking commands (``hub
serve``, ``schedule``) run as real processes and are stopped with Ctrl-C.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.main import get_command
from typer.testing import CliRunner

from pedigree.cli import app
from pedigree.crawler.hub_server import HubServer

WIDTH = 80
runner = CliRunner()


def run(*args: str, ok: bool = True) -> tuple[str, str]:
    """``pedigree ARGS`` in process at COLUMNS=80: (stdout, stderr)."""
    result = runner.invoke(app, list(args), env={"COLUMNS": str(WIDTH)}, terminal_width=WIDTH)
    assert "Traceback" not in result.stdout + result.stderr, result.stdout + result.stderr
    assert result.exit_code == (0 if ok else 1), (args, result.stdout, result.stderr)
    return result.stdout, result.stderr


def check_text(out: str, ids: list[str]) -> None:
    too_wide = [line for line in out.splitlines() if len(line) > WIDTH]
    assert not too_wide, too_wide
    for model_id in ids:
        assert model_id in out, f"{model_id} missing or cut in:\n{out}"


@dataclass
class Case:
    args: Callable[[dict], list[str]]  # fixtures -> arguments
    keys: set[str]  # documented top-level JSON keys
    ids: Callable[[dict], list[str]] = field(default=lambda f: [])  # ids the text must show whole


def commands() -> set[str]:
    """Every leaf command of the CLI, as the words a user types."""
    found = set()

    def walk(command: Any, prefix: list[str]) -> None:
        if hasattr(command, "commands"):  # a group (typer vendors its own click)
            for name, sub in command.commands.items():
                walk(sub, [*prefix, name])
        else:
            found.add(" ".join(prefix))

    walk(get_command(app), [])
    return found


CASES: dict[str, Case] = {
    "ingest": Case(
        lambda f: ["ingest", str(f["zoo"] / f["root"]), "--id", "solo/model", "--home", str(f["fresh"])],
        {"models", "counts", "confirmations", "graph"},
        lambda f: ["solo/model"],
    ),
    "query": Case(
        lambda f: ["query", f["child"], "--home", str(f["home"]), "--limit", "5"],
        {"model", "related", "parents", "ancestors", "root", "children", "family_size", "graph_build"},
        lambda f: [f["child"], f["root"]],
    ),
    "compare": Case(
        lambda f: ["compare", f["child"], f["root"], "--home", str(f["home"])],
        {"a", "b", "score", "layer_map", "model_cosine", "tests", "log10_p", "shared_blocks", "confirmed"},
        lambda f: [f["child"], f["root"]],
    ),
    "matrix": Case(
        lambda f: ["matrix", "--no-tests", "--home", str(f["home"])],
        {"models", "pairs"},
        lambda f: f["all"],
    ),
    "models": Case(lambda f: ["models", "--home", str(f["home"])], {"models"}, lambda f: f["all"]),
    "graph build": Case(
        lambda f: ["graph", "build", "--home", str(f["home"])], {"build_id", "mode", "families", "edges"}
    ),
    "graph export": Case(
        lambda f: ["graph", "export", "--format", "json", "-o", str(f["tmp"] / "graph.json"), "--home", str(f["home"])],
        {"files"},
    ),
    "discrepancies": Case(
        lambda f: ["discrepancies", "--home", str(f["home"])],
        {"graph_build", "discrepancies", "undeclared", "unverifiable"},
    ),
    "zoo build": Case(lambda f: ["zoo", "build", "--out", str(f["zoo"])], {"recipe_hash", "models"}),
    "demo": Case(
        lambda f: ["demo", "--zoo", str(f["mini_zoo"]), "--home", str(f["tmp"] / f"demo-{time.monotonic_ns()}")],
        {"home", "endpoint", "refresh", "question", "answer", "truth"},
        lambda f: [f["question"]],
    ),
    "crawl": Case(
        lambda f: ["crawl", "--endpoint", f["hub"], "--home", str(f["tmp"] / f"crawl-{time.monotonic_ns()}")],
        {"endpoint", "counts", "high_water", "repos"},
        lambda f: f["served"],
    ),
    "refresh": Case(
        lambda f: ["refresh", "--endpoint", f["hub"], "--home", str(f["tmp"] / f"refresh-{time.monotonic_ns()}")],
        {"run", "endpoint", "counts", "errors", "high_water", "graph", "repos"},
        lambda f: f["served"],
    ),
    "status": Case(lambda f: ["status", "--home", str(f["home"])], {"runs", "high_water", "crawl", "models"}),
    "fingerprint-image": Case(
        lambda f: ["fingerprint-image", f["child"], "-o", str(f["tmp"] / "picture.svg"), "--home", str(f["home"])],
        {"model", "file", "format", "bytes", "width", "height", "blocks"},
    ),
}
PROCESS_COMMANDS = {"hub serve", "schedule", "serve"}  # blocking: tested as processes below


def test_every_command_has_a_case():
    assert commands() == set(CASES) | PROCESS_COMMANDS


@pytest.fixture(scope="module")
def fixtures(indexed_home: Path, small_zoo: Path, truth: dict, tmp_path_factory: pytest.TempPathFactory) -> dict:
    tmp = tmp_path_factory.mktemp("cli-commands")
    home = tmp / "home"
    shutil.copytree(indexed_home, home)
    child = next(m for m, f in sorted(truth.items()) if f["relation"] == "rotated")
    root = truth[child]["parents"][0]
    family = sorted(m for m, f in truth.items() if f["family"] == truth[child]["family"])[:3]
    mini = tmp / "mini-zoo"
    served = sorted({child, root, *family})
    for model_id in served:
        shutil.copytree(small_zoo / model_id, mini / model_id)
    (mini / "truth.json").write_text(json.dumps({m: truth[m] for m in served}))
    server = HubServer(mini).start()
    yield {
        "home": home,
        "fresh": tmp / "fresh",
        "zoo": small_zoo,
        "mini_zoo": mini,
        "served": served,
        "question": child,
        "hub": server.url,
        "tmp": tmp,
        "child": child,
        "root": root,
        "all": sorted(truth),
    }
    server.stop()


@pytest.mark.parametrize("name", sorted(CASES))
def test_command_in_text_mode_at_80_columns(name: str, fixtures: dict):
    case = CASES[name]
    out, _ = run(*case.args(fixtures))
    assert out.strip(), f"{name} printed nothing"
    check_text(out, case.ids(fixtures))


@pytest.mark.parametrize("name", sorted(CASES))
def test_command_with_json(name: str, fixtures: dict):
    case = CASES[name]
    args = case.args(fixtures)
    if name == "ingest":
        args = [*args[:-1], str(fixtures["tmp"] / "fresh-json")]
    out, _ = run(*args, "--json")
    payload = json.loads(out)
    assert case.keys <= set(payload), case.keys - set(payload)


def _process(*args: str) -> subprocess.Popen:
    env = {**os.environ, "COLUMNS": str(WIDTH)}
    return subprocess.Popen(
        [sys.executable, "-m", "pedigree", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        # a test run started in the background inherits an ignored SIGINT; a user's terminal does not
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def _interrupt(process: subprocess.Popen) -> tuple[str, str]:
    process.send_signal(signal.SIGINT)
    try:
        out, err = process.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        raise
    assert process.returncode in (0, 130), (process.returncode, err)
    assert "Traceback" not in out + err, err
    return out, err


@pytest.mark.parametrize("as_json", [False, True])
def test_hub_serve_answers_then_stops_on_ctrl_c(fixtures: dict, as_json: bool):
    process = _process("hub", "serve", str(fixtures["mini_zoo"]), "--port", "0", *(["--json"] if as_json else []))
    try:
        first = process.stdout.readline()
        url = json.loads(first)["url"] if as_json else first.split(" at ")[1].split()[0]
        assert url.startswith("http://127.0.0.1:"), first
        listed = httpx.get(f"{url}/api/models", timeout=10).json()
        assert {m["id"] for m in listed} == set(fixtures["served"])
    finally:
        if process.poll() is None and not process.stdout.closed:
            _interrupt(process)
    if not as_json:
        check_text(first, [])


@pytest.mark.parametrize("as_json", [False, True])
def test_schedule_starts_then_stops_on_ctrl_c(fixtures: dict, as_json: bool):
    home = fixtures["tmp"] / f"schedule-{as_json}"
    process = _process(
        "schedule",
        "--cron",
        "0 2 * * *",
        "--skip-missed",
        "--endpoint",
        fixtures["hub"],
        "--home",
        str(home),
        *(["--json"] if as_json else []),
    )
    try:
        deadline = time.monotonic() + 60
        while not (home / "schedule.json").exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(1.0)
    finally:
        _, err = _interrupt(process)
    assert "refresh scheduled '0 2 * * *'" in err
    assert json.loads((home / "schedule.json").read_text())["cron"] == "0 2 * * *"


@pytest.mark.parametrize("as_json", [False, True])
def test_serve_answers_then_stops_on_ctrl_c(fixtures: dict, as_json: bool):
    """``pedigree serve`` prints its address (one JSON line under --json), answers the API and the
    page, and stops on Ctrl-C without a traceback."""
    process = _process("serve", "--port", "0", "--home", str(fixtures["home"]), *(["--json"] if as_json else []))
    try:
        first = process.stdout.readline()
        url = json.loads(first)["url"] if as_json else first.split(" at ")[1].split()[0]
        assert url.startswith("http://127.0.0.1:"), first
        deadline = time.monotonic() + 60
        while True:
            try:
                listed = httpx.get(f"{url}/api/models?q={fixtures['child']}", timeout=10)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "serve did not answer"
                time.sleep(0.2)
        assert listed.status_code == 200, listed.text
        assert fixtures["child"] in {m["id"] for m in listed.json()["models"]}
        assert httpx.get(f"{url}/", timeout=10).status_code == 200
    finally:
        if process.poll() is None and not process.stdout.closed:
            _interrupt(process)
    if not as_json:
        check_text(first, [])
