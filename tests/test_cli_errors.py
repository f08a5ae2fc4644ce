"""User and environment errors end in one line (``{"error": ...}`` under --json), never a traceback.

Each test here reproduces a defect found by using the CLI as a new user would (issue 11).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import duckdb
import pytest
from typer.testing import CliRunner

from pedigree.cli import app
from pedigree.crawler.hub_server import HubServer

runner = CliRunner()


def fails_in_one_line(*args: str) -> tuple[str, str]:
    """Run ``pedigree ARGS`` in text mode and with --json: both exit 1 with one line and no traceback."""
    text = runner.invoke(app, list(args), env={"COLUMNS": "80"})
    assert text.exit_code == 1, (text.stdout, text.stderr)
    assert "Traceback" not in text.stdout + text.stderr
    lines = [line for line in text.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), text.stderr
    as_json = runner.invoke(app, [*args, "--json"])
    assert as_json.exit_code == 1 and "Traceback" not in as_json.stdout + as_json.stderr
    message = json.loads(as_json.stdout)["error"]
    assert message and "\n" not in message
    return lines[0], message


def test_refresh_from_an_endpoint_nobody_listens_on(tmp_path: Path):
    line, message = fails_in_one_line("refresh", "--endpoint", "http://127.0.0.1:1", "--home", str(tmp_path / "h"))
    assert "127.0.0.1:1" in message, message


def test_home_that_is_a_file(tmp_path: Path):
    home = tmp_path / "not-a-folder"
    home.write_text("hello")
    for command in (["status"], ["models"], ["ingest", str(tmp_path)], ["refresh", "--endpoint", "http://x"]):
        _, message = fails_in_one_line(*command, "--home", str(home))
        assert "is a file" in message, message


def test_graph_export_refuses_a_missing_folder(indexed_home: Path, tmp_path: Path):
    target = tmp_path / "missing" / "dir" / "graph.json"
    _, message = fails_in_one_line(
        "graph", "export", "--format", "json", "-o", str(target), "--home", str(indexed_home)
    )
    assert "does not exist" in message
    assert not (tmp_path / "missing").exists()


def test_unknown_export_format_and_model(indexed_home: Path, tmp_path: Path):
    fails_in_one_line("graph", "export", "--format", "xlsx", "-o", str(tmp_path / "g"), "--home", str(indexed_home))
    fails_in_one_line("query", "nobody/nothing", "--home", str(indexed_home))


def test_a_bad_cron_line_is_one_line(tmp_path: Path):
    _, message = fails_in_one_line("schedule", "--cron", "every night", "--home", str(tmp_path / "h"))
    assert "crontab" in message


def test_compare_of_crawled_models_once_their_server_is_gone(small_zoo: Path, truth: dict, tmp_path: Path):
    child = next(m for m, f in sorted(truth.items()) if f["relation"] == "permuted")
    parent = truth[child]["parents"][0]
    root = tmp_path / "served"
    for model_id in (child, parent):
        shutil.copytree(small_zoo / model_id, root / model_id)
    home = tmp_path / "home"
    with HubServer(root) as hub:
        crawled = runner.invoke(app, ["crawl", "--endpoint", hub.url, "--home", str(home), "--json"])
        assert crawled.exit_code == 0, crawled.stderr
    # the fingerprints and the tests answer without the server: the tests read the evidence store
    scores = runner.invoke(app, ["compare", child, parent, "--no-tests", "--home", str(home), "--json"])
    assert scores.exit_code == 0 and json.loads(scores.stdout)["score"] > 0.9
    tested = runner.invoke(app, ["compare", child, parent, "--home", str(home), "--json"])
    assert tested.exit_code == 0, tested.stderr
    assert json.loads(tested.stdout)["log10_p"] < -12
    # with the store gone too, nothing can run the tests: one line says why
    shutil.rmtree(home / "evidence")
    with duckdb.connect(str(home / "pedigree.duckdb")) as conn:
        conn.execute("DELETE FROM relations")
        conn.execute("DELETE FROM pair_tests")
    _, message = fails_in_one_line("compare", child, parent, "--home", str(home))
    assert "evidence missing: source unavailable" in message, message


@pytest.mark.parametrize("where", ["before", "after"])
def test_home_and_json_are_accepted_before_or_after_the_command(indexed_home: Path, where: str):
    options = ["--home", str(indexed_home), "--json"]
    args = [*options, "models"] if where == "before" else ["models", *options]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["models"]


def test_a_repo_id_in_the_crawl_progress_line_is_shown_literally():
    """The crawl's progress line used to put the repo id into rich markup: ``[/]`` in it raised a
    MarkupError mid-crawl and ``[bold]`` restyled the line.  It is shown as it is now, its control
    characters written as ``\\xNN`` by the console."""
    import io

    from pedigree.cli import render
    from pedigree.cli.hub_commands import _repo_progress

    bars = render.progress()
    bars.console.file = io.StringIO()
    on_start, _ = _repo_progress(bars)
    on_start(1, 2, "evil/[/]x[bold]y\x1b[31mz")
    bars.console.print(bars.get_renderable())
    shown = bars.console.file.getvalue()
    assert "repos (evil/[/]x[bold]y\\x1b[31mz)" in shown, shown
    assert "\x1b" not in shown
