"""``ingest``, ``query``, ``compare``, ``matrix``, ``models``: indexing and questions."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from pedigree.cli import render, views
from pedigree.cli.app import Home, Json, Mode, app, emit, options, reporting, workspace
from pedigree.results import plain


@app.command()
def ingest(
    ctx: typer.Context,
    path: Annotated[Path, typer.Argument(help="A folder of ORG/NAME/ checkpoints, or one checkpoint folder.")],
    model_id: Annotated[
        str | None, typer.Option("--id", help="Model id (ORG/NAME) when PATH is one checkpoint folder.")
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Re-index even if the files are unchanged.")] = False,
    confirm: Annotated[
        int, typer.Option("--confirm", min=0, help="Test each model against its K best candidates (0: no tests).")
    ] = 5,
    home: Home = None,
    as_json: Json = False,
) -> None:
    """Index checkpoints: fingerprint and store them (unchanged ones are skipped), then confirm each
    against its best candidates with the independence tests (Holm, family-wise error 1 %)."""
    home, as_json = options(ctx, home, as_json)
    with reporting(as_json), workspace(home, create=True) as ws, render.progress() as bars:
        models = bars.add_task("models", total=None)
        blocks = bars.add_task("blocks", total=None, visible=False)
        pairs = bars.add_task("tests", total=None, visible=False)

        def on_start(position: int, total: int, model_id: str) -> None:
            bars.update(models, total=total, completed=position - 1, description=f"models ({model_id})")
            bars.update(blocks, completed=0, total=None, visible=True)

        def on_layer(done: int, total: int) -> None:
            bars.update(blocks, completed=done, total=total)

        def on_pair(done: int, total: int, label: str) -> None:
            bars.update(blocks, visible=False)
            bars.update(pairs, completed=done - 1, total=total, visible=True, description=f"tests ({label})")

        result = ws.ingest(
            path,
            model_id,
            force=force,
            confirm=confirm,
            on_start=on_start,
            on_layer=on_layer,
            on_done=lambda _: bars.advance(models),
            on_pair=on_pair,
        )
    emit(as_json, result, views.ingest)


@app.command()
def query(
    ctx: typer.Context,
    model_id: Annotated[str, typer.Argument(help="An indexed model id.")],
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, help="How many related models to list.")] = 10,
    mode: Mode = "full",
    home: Home = None,
    as_json: Json = False,
) -> None:
    """Where MODEL_ID comes from: parents, ancestors, children, relatives of undetermined direction
    and family tree, and the indexed models most related to it (ranked by score, with their
    matching blocks)."""
    home, as_json = options(ctx, home, as_json)
    with reporting(as_json), workspace(home, create=False) as ws:
        answer = ws.query(model_id, limit, mode)
        tree = None if as_json else ws.family_graph(model_id, mode)
    if as_json:
        render.emit_json(answer.to_json())
        return
    console = render.stdout()
    console.print(views.lineage_summary(answer))
    if tree is not None:
        console.print(views.family_tree(tree, model_id))
    console.print(views.related(answer, console.width))


@app.command()
def compare(
    ctx: typer.Context,
    a: Annotated[str, typer.Argument(help="Indexed model id or checkpoint folder.")],
    b: Annotated[str, typer.Argument(help="Indexed model id or checkpoint folder.")],
    no_tests: Annotated[
        bool, typer.Option("--no-tests", help="Fingerprint score only (skip the independence tests).")
    ] = False,
    activations: Annotated[
        bool,
        typer.Option(
            "--activations", help="Also run the robust test on forward-pass activations (needs transformers)."
        ),
    ] = False,
    home: Home = None,
    as_json: Json = False,
) -> None:
    """Score two models, test whether they share an initialisation (log10 p) and map their blocks."""
    home, as_json = options(ctx, home, as_json)
    with reporting(as_json), workspace(home, create=True) as ws:
        result = ws.compare(a, b, tests=not no_tests, activations=activations)
    emit(as_json, result, views.comparison)


@app.command()
def matrix(
    ctx: typer.Context,
    model_ids: Annotated[list[str] | None, typer.Argument(help="Indexed model ids [default: all].")] = None,
    no_tests: Annotated[
        bool, typer.Option("--no-tests", help="Fingerprint scores only (skip the independence tests).")
    ] = False,
    home: Home = None,
    as_json: Json = False,
) -> None:
    """All pairwise scores (and combined log10 p) among the given (default: all indexed) models."""
    home, as_json = options(ctx, home, as_json)
    with reporting(as_json), workspace(home, create=False) as ws:
        result = ws.matrix(model_ids, tests=not no_tests)
    emit(as_json, result, views.matrix)


@app.command("models")
def list_models(
    ctx: typer.Context,
    status: Annotated[
        str | None, typer.Option(help="Only models with this status (indexed, failed, unsupported).")
    ] = None,
    home: Home = None,
    as_json: Json = False,
) -> None:
    """List the models in the index with their status."""
    home, as_json = options(ctx, home, as_json)
    with reporting(as_json), workspace(home, create=False) as ws:
        records = ws.models(status)
    if as_json:
        keys = ("id", "status", "architecture", "num_layers", "revision", "error")
        rows = [{key.replace("num_layers", "layers"): plain(getattr(r, key)) for key in keys} for r in records]
        render.emit_json({"models": rows})
        return
    console = render.stdout()
    console.print(views.models(records, console.width))
