"""The ``pedigree`` command: a thin shell over :class:`pedigree.workspace.Workspace`.

Every command takes ``--json`` (machine-readable result on stdout; progress and messages go to
stderr) and ``--home`` (the data folder; default ``./pedigree-data`` or ``$PEDIGREE_HOME``).
Errors exit with status 1 and, under ``--json``, print ``{"error": "..."}``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer

from pedigree import render
from pedigree.config import load_settings
from pedigree.errors import PedigreeError
from pedigree.workspace import Workspace

app = typer.Typer(
    name="pedigree",
    help="What is this model derived from? Index model weights and answer lineage questions.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
zoo_app = typer.Typer(
    help="Build the project's real-trained model zoo (tests and benchmarks use it).", no_args_is_help=True
)
app.add_typer(zoo_app, name="zoo")

Home = Annotated[
    Path | None,
    typer.Option("--home", help="Data folder [default: ./pedigree-data or $PEDIGREE_HOME].", show_default=False),
]
Json = Annotated[bool, typer.Option("--json", help="Print the result as JSON on stdout.")]


@contextmanager
def _reporting(as_json: bool) -> Iterator[None]:
    """Turn PedigreeError into a clean message and exit status 1."""
    try:
        yield
    except PedigreeError as error:
        if as_json:
            render.emit_json({"error": str(error)})
        else:
            render.stderr.print(f"[red]error:[/] {error}")
        raise typer.Exit(1) from None


def _workspace(home: Path | None, *, create: bool) -> Workspace:
    return Workspace(load_settings(home), create=create)


def _show(as_json: bool, payload: object, table: Callable[[object], object]) -> None:
    if as_json:
        render.emit_json(payload)
    else:
        render.stdout.print(table(payload))


@app.command()
def ingest(
    path: Annotated[Path, typer.Argument(help="A folder of ORG/NAME/ checkpoints, or one checkpoint folder.")],
    model_id: Annotated[
        str | None, typer.Option("--id", help="Model id (ORG/NAME) when PATH is one checkpoint folder.")
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Re-index even if the files are unchanged.")] = False,
    confirm: Annotated[
        int, typer.Option("--confirm", min=0, help="Test each model against its K best candidates (0: skip the tests).")
    ] = 5,
    home: Home = None,
    as_json: Json = False,
) -> None:
    """Index checkpoints: fingerprint and store them (unchanged ones are skipped), then confirm each
    against its best candidates with the independence tests (Benjamini-Hochberg, FDR 1 %)."""
    with _reporting(as_json), _workspace(home, create=True) as ws, render.progress() as bars:
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
    outcomes, confirmations = result.outcomes, result.confirmations
    rows = [o.as_json() for o in outcomes]
    counts = {
        status: sum(r["status"] == status for r in rows) for status in ("indexed", "unchanged", "failed", "unsupported")
    }
    confirmed = sum(bool(c.get("confirmed")) for c in confirmations)
    if as_json:
        render.emit_json({"models": rows, "counts": counts, "confirmations": confirmations, "graph": result.graph})
        return
    render.stdout.print(render.ingest_table(rows))
    render.stdout.print(", ".join(f"{n} {status}" for status, n in counts.items()))
    if confirmations:
        render.stdout.print(
            f"{len(confirmations)} candidate pairs tested, {confirmed} confirmed related (Benjamini-Hochberg, FDR 1 %)"
        )
    if result.graph:
        g = result.graph
        render.stdout.print(
            f"lineage graph build {g['build_id']}: {g['families']} families ({g['rebuilt']} re-assembled), "
            f"{g['edges']} edges"
        )


@app.command()
def query(
    model_id: Annotated[str, typer.Argument(help="An indexed model id.")],
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, help="How many related models to list.")] = 10,
    home: Home = None,
    as_json: Json = False,
) -> None:
    """Where MODEL_ID comes from: parents, ancestors, children and family tree, and the indexed
    models most related to it (ranked by score, with their matching blocks)."""
    with _reporting(as_json), _workspace(home, create=False) as ws:
        result = ws.query(model_id, limit)
        tree = None if as_json else ws.family_graph(model_id)
    if as_json:
        render.emit_json(result)
        return
    render.stdout.print(render.lineage_summary(result))
    if tree is not None:
        render.stdout.print(render.family_tree(tree, model_id))
    render.stdout.print(render.related_table(result))


@app.command()
def compare(
    a: Annotated[str, typer.Argument(help="Indexed model id or checkpoint folder.")],
    b: Annotated[str, typer.Argument(help="Indexed model id or checkpoint folder.")],
    no_tests: Annotated[
        bool, typer.Option("--no-tests", help="Fingerprint score only (skip the independence tests).")
    ] = False,
    activations: Annotated[
        bool,
        typer.Option(
            "--activations",
            help="Also run the robust test on real forward-pass activations (small models; needs transformers).",
        ),
    ] = False,
    home: Home = None,
    as_json: Json = False,
) -> None:
    """Score two models, test whether they share an initialisation (log10 p) and map their blocks."""
    with _reporting(as_json), _workspace(home, create=True) as ws:
        result = ws.compare(a, b, tests=not no_tests, activations=activations)
    _show(as_json, result, render.compare_table)


@app.command()
def matrix(
    model_ids: Annotated[list[str] | None, typer.Argument(help="Indexed model ids [default: all].")] = None,
    no_tests: Annotated[
        bool, typer.Option("--no-tests", help="Fingerprint scores only (skip the independence tests).")
    ] = False,
    home: Home = None,
    as_json: Json = False,
) -> None:
    """All pairwise scores (and combined log10 p) among the given (default: all indexed) models."""
    with _reporting(as_json), _workspace(home, create=False) as ws:
        result = ws.matrix(model_ids, tests=not no_tests)
    _show(as_json, result, render.matrix_table)


@app.command("models")
def list_models(
    status: Annotated[
        str | None, typer.Option(help="Only models with this status (indexed, failed, unsupported).")
    ] = None,
    home: Home = None,
    as_json: Json = False,
) -> None:
    """List the models in the index with their status."""
    with _reporting(as_json), _workspace(home, create=False) as ws:
        records = ws.models(status)
    rows = [
        {
            "id": r.id,
            "status": r.status,
            "architecture": r.architecture,
            "layers": r.num_layers,
            "revision": r.revision,
            "error": r.error,
        }
        for r in records
    ]
    if as_json:
        render.emit_json({"models": rows})
        return
    table = render.Table(title=f"{len(rows)} models")
    for column in ("model", "status", "architecture", "layers", "error"):
        table.add_column(column, overflow="fold")
    for r in rows:
        table.add_row(
            r["id"],
            f"[{render.STATUS_STYLE.get(r['status'], '')}]{r['status']}[/]",
            r["architecture"] or "",
            str(r["layers"] or ""),
            r["error"] or "",
        )
    render.stdout.print(table)


graph_app = typer.Typer(help="The lineage graph: build it, export it.", no_args_is_help=True)
app.add_typer(graph_app, name="graph")
Mode = Annotated[
    str,
    typer.Option(
        "--mode",
        help="Evidence used: full (weights + timestamps + model cards), time (weights + timestamps) or weights.",
    ),
]


@graph_app.command("build")
def graph_build(mode: Mode = "full", home: Home = None, as_json: Json = False) -> None:
    """Assemble the lineage graph from the confirmed pairs (only changed families are rebuilt)."""
    with _reporting(as_json), _workspace(home, create=False) as ws, render.progress() as bars:
        task = bars.add_task("families", total=None)
        summary = ws.build_graph(
            mode, progress=lambda label, done, total: bars.update(task, completed=done, total=total)
        )
    if as_json:
        render.emit_json(summary)
    else:
        render.stdout.print(
            f"build {summary['build_id']} ({summary['mode']}): {summary['models']} models, {summary['families']} "
            "families "
            f"({summary['rebuilt']} re-assembled, {summary['reused']} unchanged), {summary['edges']} edges"
        )


@graph_app.command("export")
def graph_export(
    fmt: Annotated[str, typer.Option("--format", help="json (node-link), graphml, gexf or parquet.")],
    out: Annotated[
        Path,
        typer.Option("-o", "--output", help="Output file (parquet: <stem>.nodes.parquet and <stem>.edges.parquet)."),
    ],
    family: Annotated[str | None, typer.Option("--family", help="Export only the family of this model id.")] = None,
    mode: Mode = "full",
    home: Home = None,
    as_json: Json = False,
) -> None:
    """Export the current lineage graph (or one family) for analysis (networkx, Gephi, DuckDB/pandas)."""
    with _reporting(as_json), _workspace(home, create=False) as ws:
        files = ws.export_graph(fmt, out, family, mode)
    if as_json:
        render.emit_json({"files": [str(f) for f in files]})
    else:
        render.stdout.print("wrote " + ", ".join(str(f) for f in files))


@app.command()
def discrepancies(mode: Mode = "full", home: Home = None, as_json: Json = False) -> None:
    """Model cards vs weights: contradicted or misplaced declarations, and undeclared derivations
    with a suggested base_model snippet for each."""
    with _reporting(as_json), _workspace(home, create=False) as ws:
        result = ws.discrepancies(mode)
    _show(as_json, result, render.discrepancy_report)


@zoo_app.command("build")
def zoo_build(
    out: Annotated[Path, typer.Option("--out", help="Where to write the zoo (ORG/NAME folders + truth.json).")],
    size: Annotated[str, typer.Option("--size", help="small (tests, ~1 min) or full (benchmarks).")] = "small",
    as_json: Json = False,
) -> None:
    """Build (or reuse, if the recipe is unchanged) the real-trained model zoo."""
    from pedigree.zoo.build import build_zoo

    if size not in ("small", "full"):
        raise typer.BadParameter("--size must be small or full")
    with _reporting(as_json), render.progress() as bars:
        task = bars.add_task(f"zoo ({size})", total=None)
        manifest = build_zoo(
            out,
            size,
            progress=lambda name, done, total: bars.update(
                task, completed=done, total=total, description=f"zoo: {name}"
            ),
        )
    if as_json:
        render.emit_json(manifest)
    else:
        render.stdout.print(f"zoo written to {out} ({len(manifest.get('models', {}))} models)")


@app.command()
def demo(
    home: Home = None,
    as_json: Json = False,
) -> None:
    """Build the small zoo, serve it with the bundled Hub server, refresh from it, and answer a
    lineage question about one of its models (parents and family tree vs the zoo's truth)."""
    from pedigree.demo import run_demo

    with _reporting(as_json):
        run_demo(load_settings(home), as_json=as_json)


from pedigree import cli_hub  # noqa: E402, F401 - registers hub serve / crawl / refresh / status / schedule


def main() -> None:
    """The ``pedigree`` console script."""
    # torch's OpenMP workers (GNU libgomp) spin for a while after each parallel region by default;
    # on a small machine they starve the crawler's HTTP threads (measured on 2 CPUs: a 1B-shaped
    # crawl used 2.0 s of CPU spinning, 1.3 s sleeping, same wall time).  The command sets the
    # policy before torch loads unless the user chose one; importing the library changes nothing.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    try:
        app()
    except KeyboardInterrupt:
        render.stderr.print("interrupted")
        sys.exit(130)
