"""The Hub commands of the ``pedigree`` CLI: ``hub serve``, ``crawl``, ``refresh``, ``status``,
``schedule`` - thin shells over :class:`pedigree.workspace.Workspace` and :mod:`pedigree.schedule`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from pedigree import render
from pedigree.cli import Home, Json, _reporting, _show, _workspace, app

hub_app = typer.Typer(
    help="A Hub-compatible server for a folder of checkpoints (tests, demos, private mirrors).", no_args_is_help=True
)
app.add_typer(hub_app, name="hub")

Endpoint = Annotated[
    str | None,
    typer.Option("--endpoint", help="Hub endpoint URL [default: $HF_ENDPOINT or https://huggingface.co]."),
]
Limit = Annotated[
    int | None, typer.Option("--limit", min=1, help="Index at most N changed repos this run (the rest next run).")
]
Token = Annotated[str | None, typer.Option("--token", help="Hub token [default: $HF_TOKEN].", show_default=False)]


@hub_app.command("serve")
def hub_serve(
    root: Annotated[Path, typer.Argument(help="Folder of ORG/NAME/ checkpoints to serve as model repos.")],
    port: Annotated[int, typer.Option("--port", help="Port on 127.0.0.1 (0: any free port).")] = 8765,
    latency_ms: Annotated[
        float, typer.Option("--latency-ms", help="Simulated round trip added to every request.")
    ] = 0.0,
    bandwidth_mbs: Annotated[
        float,
        typer.Option(
            "--bandwidth-mbs", help="Simulated link bandwidth in MB/s shared by all connections (0: unlimited)."
        ),
    ] = 0.0,
) -> None:
    """Serve ROOT over HTTP on 127.0.0.1 with the Hub API endpoints huggingface_hub and the crawler use."""
    from pedigree.crawler.hub_server import Link, serve

    if not root.is_dir():
        render.stderr.print(f"[red]error:[/] {root} is not a directory")
        raise typer.Exit(1)
    serve(root, port=port, link=Link(latency=latency_ms / 1000, bandwidth=bandwidth_mbs * 1e6 or None))


def _repo_progress(bars):
    task = bars.add_task("repos", total=None)

    def on_start(position: int, total: int, repo_id: str) -> None:
        bars.update(task, total=total, completed=position - 1, description=f"repos ({repo_id})")

    def on_done(_state) -> None:
        bars.advance(task)

    return on_start, on_done


@app.command("crawl")
def crawl_command(
    endpoint: Endpoint = None, limit: Limit = None, token: Token = None, home: Home = None, as_json: Json = False
) -> None:
    """List the repos new or changed since the last crawl and index them by HTTP range reads."""
    with _reporting(as_json), _workspace(home, create=True) as ws, render.progress() as bars:
        on_start, on_done = _repo_progress(bars)
        result = ws.crawl(endpoint, token=token, limit=limit, on_start=on_start, on_done=on_done)
    repos = [
        {
            "id": r.repo_id,
            "sha": r.sha,
            "status": r.status,
            "reason": r.reason,
            "bytes_read": r.bytes_read,
            "size_bytes": r.size_bytes,
        }
        for r in result.repos
    ]
    payload = {"endpoint": result.endpoint, "counts": result.counts(), "high_water": result.high_water, "repos": repos}
    if as_json:
        render.emit_json(payload)
    else:
        render.stdout.print(render.crawl_table(repos))
        render.stdout.print(render.counts_line(payload["counts"]) + f"; high-water mark {result.high_water}")


@app.command("refresh")
def refresh_command(
    endpoint: Endpoint = None,
    limit: Limit = None,
    token: Token = None,
    confirm: Annotated[
        int, typer.Option("--confirm", min=0, help="Test each new model against its K best candidates.")
    ] = 5,
    home: Home = None,
    as_json: Json = False,
) -> None:
    """crawl -> ingest -> confirm (independence tests) -> lineage graph, with a summary."""
    with _reporting(as_json), _workspace(home, create=True) as ws, render.progress() as bars:
        on_start, on_done = _repo_progress(bars)
        pairs = bars.add_task("tests", total=None, visible=False)

        def on_pair(done: int, total: int, label: str) -> None:
            bars.update(pairs, completed=done - 1, total=total, visible=True, description=f"tests ({label})")

        summary = ws.refresh(
            endpoint, token=token, limit=limit, confirm=confirm, on_start=on_start, on_done=on_done, on_pair=on_pair
        )
    if as_json:
        render.emit_json(summary)
        return
    render.stdout.print(render.crawl_table(summary["repos"]))
    render.stdout.print(render.counts_line(summary["counts"]))
    for error in summary["errors"]:
        render.stdout.print(f"  [yellow]{error['status']}[/] {error['id']}: {error['reason']}")


@app.command("status")
def status_command(
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, help="How many runs to show.")] = 10,
    home: Home = None,
    as_json: Json = False,
) -> None:
    """The last crawl / refresh runs, the crawl high-water mark and what the index holds."""
    with _reporting(as_json), _workspace(home, create=False) as ws:
        status = ws.status(limit)
    _show(as_json, status, render.status_report)


@app.command("schedule")
def schedule_command(
    cron: Annotated[
        str | None,
        typer.Option(
            "--cron", help="When to refresh, as a crontab line (UTC) [default: the saved schedule, else '0 2 * * *']."
        ),
    ] = None,
    endpoint: Endpoint = None,
    limit: Limit = None,
    once_missed: Annotated[
        bool, typer.Option("--run-missed/--skip-missed", help="Run at start if a scheduled run was missed.")
    ] = True,
    home: Home = None,
) -> None:
    """Run ``pedigree refresh`` on a schedule (apscheduler; never two at once; a missed run is
    made up once at start).  The schedule is kept in the data folder; runs land in ``pedigree status``."""
    from pedigree.config import load_settings
    from pedigree.schedule import run_schedule

    with _reporting(False):
        run_schedule(load_settings(home), cron, endpoint=endpoint, limit=limit, run_missed=once_missed)
