"""``hub serve``, ``crawl``, ``refresh``, ``status``, ``schedule``: the Hub and the nightly refresh."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from pedigree.cli import render, views
from pedigree.cli.app import Home, Json, app, emit, options, reporting, workspace
from pedigree.config import load_settings
from pedigree.errors import UsageError

hub_app = typer.Typer(
    help="A Hub-compatible server for a folder of checkpoints (tests, demos, private mirrors).", no_args_is_help=True
)
app.add_typer(hub_app, name="hub")

Endpoint = Annotated[
    str | None,
    typer.Option("--endpoint", help="Hub endpoint URL [default: $HF_ENDPOINT or https://huggingface.co]."),
]
Limit = Annotated[int | None, typer.Option("--limit", min=1, help="Index at most N changed repos this run.")]
Token = Annotated[str | None, typer.Option("--token", help="Hub token [default: $HF_TOKEN].", show_default=False)]


@hub_app.command("serve")
def hub_serve(
    ctx: typer.Context,
    root: Annotated[Path, typer.Argument(help="Folder of ORG/NAME/ checkpoints to serve as model repos.")],
    port: Annotated[int, typer.Option("--port", help="Port on 127.0.0.1 (0: any free port).")] = 8765,
    latency_ms: Annotated[float, typer.Option("--latency-ms", help="Simulated round trip per request.")] = 0.0,
    bandwidth_mbs: Annotated[
        float, typer.Option("--bandwidth-mbs", help="Simulated link bandwidth in MB/s (0: unlimited).")
    ] = 0.0,
    as_json: Json = False,
) -> None:
    """Serve ROOT on 127.0.0.1 with the Hub API endpoints huggingface_hub and the crawler use."""
    _, as_json = options(ctx, None, as_json)
    with reporting(as_json):
        if not root.is_dir():
            raise UsageError(f"{root} is not a folder")
        from pedigree.crawler.hub_server import HubServer, Link, serve

        def announce(server: HubServer) -> None:
            repos = len(server.store.repos())
            if as_json:
                render.emit_json({"url": server.url, "root": str(root), "repos": repos}, line=True)
            else:
                render.show(f"pedigree hub server at {server.url} (Ctrl-C stops)")
                render.stdout().print(f"serving {repos} repos from {root}", soft_wrap=True)

        link = Link(latency=latency_ms / 1000, bandwidth=bandwidth_mbs * 1e6 or None)
        serve(root, port=port, link=link, announce=announce)


def _repo_progress(bars: Any) -> tuple[Any, Any]:
    task = bars.add_task("repos", total=None)

    def on_start(position: int, total: int, repo_id: str) -> None:
        bars.update(task, total=total, completed=position - 1, description=f"repos ({render.escaped(repo_id)})")

    def on_done(_state: object) -> None:
        bars.advance(task)

    return on_start, on_done


@app.command("crawl")
def crawl_command(
    ctx: typer.Context,
    endpoint: Endpoint = None,
    limit: Limit = None,
    token: Token = None,
    home: Home = None,
    as_json: Json = False,
) -> None:
    """List the repos new or changed since the last crawl and index them by HTTP range reads."""
    home, as_json = options(ctx, home, as_json)
    with reporting(as_json), workspace(home, create=True) as ws, render.progress() as bars:
        on_start, on_done = _repo_progress(bars)
        result = ws.crawl(endpoint, token=token, limit=limit, on_start=on_start, on_done=on_done)
    emit(as_json, result, views.crawl)


@app.command("refresh")
def refresh_command(
    ctx: typer.Context,
    endpoint: Endpoint = None,
    limit: Limit = None,
    token: Token = None,
    confirm: Annotated[
        int, typer.Option("--confirm", min=0, help="Test each new model against its K best candidates.")
    ] = 5,
    executor: Annotated[
        str,
        typer.Option(
            "--executor",
            help="Where the reads and tests run: local (this process) or ray (pip install 'pedigree[ray]').",
        ),
    ] = "local",
    address: Annotated[
        str | None,
        typer.Option(
            "--address", help="Ray cluster to join: auto or HOST:PORT [default: a local Ray].", show_default=False
        ),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            "--workers", min=1, help="Ray tasks at work at once [default: the cluster's CPUs].", show_default=False
        ),
    ] = None,
    hub_rate: Annotated[
        float | None,
        typer.Option(
            "--hub-rate",
            min=0,
            help="Requests per second per Hub host, all Ray workers together (0: no rate) [default: 10].",
            show_default=False,
        ),
    ] = None,
    home: Home = None,
    as_json: Json = False,
) -> None:
    """crawl -> ingest -> confirm (independence tests) -> lineage graph, with a summary."""
    home, as_json = options(ctx, home, as_json)
    with reporting(as_json):
        from pedigree.crawler.executor import make_executor

        runner = make_executor(executor, address=address, workers=workers, hub_rate=hub_rate)
        try:
            with workspace(home, create=True) as ws, render.progress() as bars:
                on_start, on_done = _repo_progress(bars)
                pairs = bars.add_task("tests", total=None, visible=False)

                def on_pair(done: int, total: int, label: str) -> None:
                    bars.update(pairs, completed=done - 1, total=total, visible=True, description=f"tests ({label})")

                summary = ws.refresh(
                    endpoint,
                    token=token,
                    limit=limit,
                    confirm=confirm,
                    on_start=on_start,
                    on_done=on_done,
                    on_pair=on_pair,
                    executor=runner,
                )
        finally:
            runner.close()
    emit(as_json, summary, views.refresh)


@app.command("status")
def status_command(
    ctx: typer.Context,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, help="How many runs to show.")] = 10,
    home: Home = None,
    as_json: Json = False,
) -> None:
    """The last crawl / refresh runs, the crawl high-water mark and what the index holds."""
    home, as_json = options(ctx, home, as_json)
    with reporting(as_json), workspace(home, create=False) as ws:
        status = ws.status(limit)
    emit(as_json, status, views.status)


@app.command("schedule")
def schedule_command(
    ctx: typer.Context,
    cron: Annotated[
        str | None,
        typer.Option(
            "--cron", help="When to refresh, a crontab line in UTC [default: the saved one, else '0 2 * * *']."
        ),
    ] = None,
    endpoint: Endpoint = None,
    limit: Limit = None,
    once_missed: Annotated[
        bool, typer.Option("--run-missed/--skip-missed", help="Run at start if a scheduled run was missed.")
    ] = True,
    home: Home = None,
    as_json: Json = False,
) -> None:
    """Run ``pedigree refresh`` on a schedule (apscheduler; never two at once; a missed run is
    made up once at start).  The schedule is kept in the data folder; runs land in ``pedigree status``.
    Under --json each finished run is printed as one JSON line."""
    home, as_json = options(ctx, home, as_json)
    with reporting(as_json):
        from pedigree.schedule import run_schedule

        def on_run(summary: Any) -> None:
            if as_json:
                render.emit_json(summary.to_json(), line=True)
            else:
                render.stderr().print(f"refresh run {summary.run}: {render.counts_line(summary.counts)}")

        def on_message(line: str) -> None:
            render.stderr().print(line)

        abandoned = run_schedule(
            load_settings(home),
            cron,
            endpoint=endpoint,
            limit=limit,
            run_missed=once_missed,
            on_run=on_run,
            on_message=on_message,
        )
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C while stopping changes nothing
        if abandoned:  # the refresh thread cannot be interrupted: leave it, as a kill would (the next run resumes)
            on_message("schedule stopped; the refresh in progress was abandoned (the next run resumes it)")
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(0)
        on_message("schedule stopped")
