"""``graph build``, ``graph export``, ``discrepancies``, ``zoo build``, ``demo``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from pedigree.cli import render, views
from pedigree.cli.app import Home, Json, Mode, app, emit, options, reporting, workspace
from pedigree.config import load_settings
from pedigree.errors import UsageError

graph_app = typer.Typer(help="The lineage graph: build it, export it.", no_args_is_help=True)
app.add_typer(graph_app, name="graph")
zoo_app = typer.Typer(help="Build the real-trained model zoo (tests, benchmarks, demos).", no_args_is_help=True)
app.add_typer(zoo_app, name="zoo")


@graph_app.command("build")
def graph_build(ctx: typer.Context, mode: Mode = "full", home: Home = None, as_json: Json = False) -> None:
    """Assemble the lineage graph from the confirmed pairs (only changed families are rebuilt)."""
    home, as_json = options(ctx, home, as_json)
    with reporting(as_json), workspace(home, create=False) as ws, render.progress() as bars:
        task = bars.add_task("families", total=None)
        summary = ws.build_graph(
            mode, progress=lambda label, done, total: bars.update(task, completed=done, total=total)
        )
    emit(as_json, summary, views.graph_build)


@graph_app.command("export")
def graph_export(
    ctx: typer.Context,
    fmt: Annotated[str, typer.Option("--format", help="json (node-link), graphml, gexf or parquet.")],
    out: Annotated[
        Path,
        typer.Option(
            "-o",
            "--output",
            help="Output file; its folder must exist (parquet writes <stem>.nodes.parquet and <stem>.edges.parquet).",
        ),
    ],
    family: Annotated[str | None, typer.Option("--family", help="Export only the family of this model id.")] = None,
    mode: Mode = "full",
    home: Home = None,
    as_json: Json = False,
) -> None:
    """Export the current lineage graph (or one family) for analysis (networkx, Gephi, DuckDB/pandas)."""
    home, as_json = options(ctx, home, as_json)
    with reporting(as_json), workspace(home, create=False) as ws:
        files = ws.export_graph(fmt, out, family, mode)
    if as_json:
        render.emit_json({"files": [str(f) for f in files]})
    else:
        render.show("wrote " + ", ".join(str(f) for f in files))


@app.command()
def discrepancies(ctx: typer.Context, mode: Mode = "full", home: Home = None, as_json: Json = False) -> None:
    """Model cards vs weights: contradicted or misplaced declarations, and undeclared derivations
    with a suggested base_model snippet for each."""
    home, as_json = options(ctx, home, as_json)
    with reporting(as_json), workspace(home, create=False) as ws:
        result = ws.discrepancies(mode)
    emit(as_json, result, views.discrepancies)


@zoo_app.command("build")
def zoo_build(
    ctx: typer.Context,
    out: Annotated[Path, typer.Option("--out", help="Where to write the zoo (ORG/NAME folders + truth.json).")],
    size: Annotated[str, typer.Option("--size", help="small (tests, ~1 min) or full (benchmarks).")] = "small",
    as_json: Json = False,
) -> None:
    """Build (or reuse, if the recipe is unchanged) the real-trained model zoo."""
    _, as_json = options(ctx, None, as_json)
    with reporting(as_json):
        if size not in ("small", "full"):
            raise UsageError(f"--size must be small or full, not {size!r}")
        from pedigree.zoo.build import build_zoo

        with render.progress() as bars:
            task = bars.add_task(f"zoo ({size})", total=None)
            manifest = build_zoo(
                out,
                size,  # type: ignore[arg-type]
                progress=lambda name, done, total: bars.update(
                    task, completed=done, total=total, description=f"zoo: {name}"
                ),
            )
    if as_json:
        render.emit_json(manifest)
    else:
        render.show(f"zoo written to {out} ({len(manifest.get('models', {}))} models)")


@app.command()
def demo(
    ctx: typer.Context,
    zoo: Annotated[
        Path | None,
        typer.Option("--zoo", help="Use this zoo folder (with its truth.json) instead of building one in HOME/zoo."),
    ] = None,
    home: Home = None,
    as_json: Json = False,
) -> None:
    """Build the small zoo, serve it with the bundled Hub server, refresh from it, and answer a
    lineage question about one of its models (parents and family tree vs the zoo's truth)."""
    home, as_json = options(ctx, home, as_json)
    with reporting(as_json), render.progress() as bars:
        from pedigree.demo import run_demo

        task = bars.add_task("demo", total=None)
        result, tree = run_demo(
            load_settings(home),
            zoo=zoo,
            progress=lambda label, done, total: bars.update(task, completed=done, total=total, description=label),
        )
    if as_json:
        render.emit_json(result.to_json())
    else:
        console = render.stdout()
        console.print(views.demo(result, tree, console.width))
