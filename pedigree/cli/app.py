"""The typer application, the options every command shares, and the one place errors are shown.

``--home`` and ``--json`` are accepted before the command (``pedigree --json models``) and after
it (``pedigree models --json``); the value given after the command wins.  A user or environment
error - a missing model, an unreachable server, a data folder that is a file, a DuckDB lock held
by another process - prints one line (``{"error": ...}`` under ``--json``) and exits with status 1;
a bug prints one line too and asks to be reported (``PEDIGREE_DEBUG=1`` shows the traceback).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from pedigree.cli import render
from pedigree.config import load_settings
from pedigree.errors import PedigreeError

if TYPE_CHECKING:
    from pedigree.workspace import Workspace

app = typer.Typer(
    name="pedigree",
    help="What is this model derived from? Index model weights and answer lineage questions.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

Home = Annotated[
    Path | None,
    typer.Option("--home", help="Data folder [default: ./pedigree-data or $PEDIGREE_HOME].", show_default=False),
]
Json = Annotated[bool, typer.Option("--json", help="Print the result as JSON on stdout.")]
Mode = Annotated[
    str,
    typer.Option(
        "--mode", help="Evidence used: full (weights, timestamps, cards), time (weights, timestamps) or weights."
    ),
]


@dataclass
class Shared:
    """The options given before the command."""

    home: Path | None = None
    as_json: bool = False


@app.callback()
def shared_options(ctx: typer.Context, home: Home = None, as_json: Json = False) -> None:
    ctx.obj = Shared(home, as_json)


def options(ctx: typer.Context, home: Path | None, as_json: bool) -> tuple[Path | None, bool]:
    """(home, json) from the command's own options, else from those given before the command."""
    shared = ctx.find_object(Shared) or Shared()
    return (home if home is not None else shared.home), (as_json or shared.as_json)


def _environment_errors() -> tuple[type[BaseException], ...]:
    """Errors of the world, not of pedigree: shown as one line like PedigreeError."""
    import sys

    errors: list[type[BaseException]] = [OSError, MemoryError]
    httpx = sys.modules.get("httpx")
    if httpx is not None:
        errors.append(httpx.HTTPError)
    duckdb = sys.modules.get("duckdb")
    if duckdb is not None:
        errors.append(duckdb.Error)
    return tuple(errors)


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split()) or type(error).__name__
    return text if len(text) <= 400 else text[:397] + "..."


@contextmanager
def reporting(as_json: bool) -> Iterator[None]:
    """Turn every error into one line on stderr (``{"error": ...}`` on stdout under --json), exit 1."""
    try:
        yield
    except (typer.Exit, typer.Abort, KeyboardInterrupt):
        raise
    except Exception as error:  # noqa: BLE001 - the one place errors meet the user
        if isinstance(error, PedigreeError):
            message = _one_line(error)
        elif isinstance(error, _environment_errors()):
            message = f"{type(error).__name__}: {_one_line(error)}"
        else:
            if os.environ.get("PEDIGREE_DEBUG"):
                raise
            message = (
                f"internal error {type(error).__name__}: {_one_line(error)} "
                "(please report it; PEDIGREE_DEBUG=1 shows the traceback)"
            )
        if as_json:
            render.emit_json({"error": message})
        else:
            render.stderr().print(f"[red]error:[/] {render.escaped(message)}", soft_wrap=True)
        raise typer.Exit(1) from None


def workspace(home: Path | None, *, create: bool) -> Workspace:
    from pedigree.workspace import Workspace

    return Workspace(load_settings(home), create=create)


def emit(as_json: bool, result: Any, view: Callable[[Any, int], Any]) -> None:
    """``result.to_json()`` under --json, else the view at the terminal's width."""
    if as_json:
        render.emit_json(result.to_json())
        return
    console = render.stdout()
    console.print(view(result, console.width))
