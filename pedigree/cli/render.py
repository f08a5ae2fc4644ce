"""Terminal rendering for the CLI: results on stdout, progress and messages on stderr.

Everything fits the terminal's width (80 columns included): a table gives its key columns (model
ids) their whole width and wraps the others at spaces; when even that does not fit it turns into
records - one block per row - so an id is never cut in the middle.

Nothing a checkpoint, a server or a folder name says reaches the terminal as a control character:
both consoles write every control character of the text they show as ``\\xNN`` (an escape
sequence in a folder name is shown, never obeyed), and table cells are text, never markup.
``--json`` output is ``json.dumps``'s, which escapes control characters itself.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.segment import Segment
from rich.table import Table
from rich.text import Text

from pedigree.types import Status

STATUS_STYLE = {
    Status.INDEXED: "green",
    Status.UNCHANGED: "cyan",
    Status.FAILED: "red",
    Status.UNSUPPORTED: "yellow",
    Status.GATED: "magenta",
    Status.GONE: "red",
    Status.NO_SAFETENSORS: "yellow",
    Status.RETRY: "yellow",
}


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
"""Control characters (C0 but tab and newline, DEL, C1): what a terminal would obey."""


def printable(text: str) -> str:
    """``text`` with every control character written as ``\\xNN`` (four printable characters)."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def _printable_segments(buffer: Iterable[Segment]) -> Iterator[Segment]:
    for segment in buffer:
        text, style, control = segment
        if control:  # rich's own cursor moves (progress display), not text
            yield segment
            continue
        if style is not None and style.link and _CONTROL.search(style.link):
            style = style.update_link(None)
        yield Segment(printable(text), style, control)


class SafeConsole(Console):
    """A rich console that shows the control characters of what it prints instead of writing them
    (rich itself drops only bell, backspace and carriage return; ESC passes)."""

    def _render_buffer(self, buffer: Iterable[Segment]) -> str:
        return super()._render_buffer(_printable_segments(buffer))


def stdout() -> Console:
    """A console on standard output, sized to the terminal (or ``$COLUMNS``) at call time."""
    return SafeConsole(highlight=False, soft_wrap=False)


def stderr() -> Console:
    return SafeConsole(stderr=True, highlight=False)


def emit_json(payload: object, *, line: bool = False) -> None:
    """The result as JSON on stdout (``line``: on one line, for commands that stream results)."""
    text = json.dumps(payload, default=str) if line else json.dumps(payload, indent=2, default=str)
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def show(*items: RenderableType | str) -> None:
    console = stdout()
    for item in items:
        console.print(item)


def progress() -> Progress:
    """A progress display on stderr, so that ``--json`` output on stdout stays clean."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=stderr(),
        transient=True,
    )


def styled_status(status: str) -> Text:
    return Text(status, style=STATUS_STYLE.get(Status(status), "") if status in Status.__members__.values() else "")


# ---- tables that fit ------------------------------------------------------------------------


@dataclass(frozen=True)
class Column:
    header: str
    key: bool = False  # an identifier: never wrapped or cut
    justify: str = "left"


Cell = str | Text


def _width(cell: Cell) -> int:
    return max((len(line) for line in str(cell).splitlines()), default=0)


def fitted(title: str, columns: Sequence[Column], rows: Sequence[Sequence[Cell]], width: int) -> RenderableType:
    """A table if its key columns fit whole (others wrap at spaces, down to 8 columns), else records."""
    keys = [max([len(c.header), *(_width(r[i]) for r in rows)]) for i, c in enumerate(columns) if c.key]
    others = [min(max([len(c.header), *(_width(r[i]) for r in rows)]), 8) for i, c in enumerate(columns) if not c.key]
    needed = sum(keys) + sum(others) + 3 * len(columns) + 1
    if needed <= width:
        table = Table(title=Text(title), title_justify="left")
        for column in columns:
            table.add_column(
                column.header,
                justify=column.justify,  # type: ignore[arg-type]
                no_wrap=column.key,
                overflow="fold",
            )
        for row in rows:
            table.add_row(*(cell if isinstance(cell, Text) else Text(cell) for cell in row))
        return table
    return records(title, columns, rows)


def records(title: str, columns: Sequence[Column], rows: Sequence[Sequence[Cell]]) -> RenderableType:
    """One block per row: the key cells on the first line, then ``header: value`` lines."""
    parts: list[RenderableType] = [Text(title, style="italic")]
    for row in rows:
        head = Text("  ").join(
            Text(str(cell), style="bold") if isinstance(cell, str) else cell
            for cell, column in zip(row, columns)
            if column.key
        )
        parts.append(head)
        for cell, column in zip(row, columns):
            if not column.key and str(cell):
                value = cell if isinstance(cell, Text) else Text(str(cell).rstrip("\n").replace("\n", "\n    "))
                parts.append(Text.assemble(f"  {column.header}: ", value))
    return Group(*parts)


def size(n: float | None) -> str:
    if n is None:
        return ""
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def number(value: float | None, digits: int = 3) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def log10_p(value: float | None) -> str:
    """log10 p as people read it: whole numbers when far below 0, 2 decimals near it."""
    if value is None:
        return "-"
    return f"{value:.0f}" if value < -100 else f"{value:.2f}"


def counts_line(counts: dict[str, Any]) -> str:
    return ", ".join(f"{n} {name.replace('_', ' ')}" for name, n in counts.items())


def escaped(text: str) -> str:
    """``text`` safe inside console markup (its own brackets shown, not interpreted)."""
    return escape(text)


def plain(text: str) -> Text:
    """``text`` as it is: no markup, no highlighting (model ids, reasons, paths)."""
    return Text(text)
