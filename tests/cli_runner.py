"""Drive the real ``pedigree`` CLI in-process (typer's runner) and read the DuckDB file back."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
from typer.testing import CliRunner

from pedigree.cli import app

runner = CliRunner()


def cli(*args: str, ok: bool = True) -> dict:
    """Run ``pedigree ARGS --json``; assert the exit code (0, or 1 when ``ok`` is False)."""
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == (0 if ok else 1), result.output
    return json.loads(result.stdout)


def cli_text(*args: str) -> str:
    """Run ``pedigree ARGS`` for its human-readable output."""
    result = runner.invoke(app, list(args), terminal_width=160)
    assert result.exit_code == 0, result.output
    return result.stdout


def db_dump(home: Path) -> dict[str, list]:
    """Every table of the data folder's DuckDB file, rows sorted."""
    conn = duckdb.connect(str(home / "pedigree.duckdb"), read_only=True)
    try:
        tables = [t for (t,) in conn.execute("SELECT table_name FROM information_schema.tables ORDER BY 1").fetchall()]
        return {t: conn.execute(f"SELECT * FROM {t} ORDER BY ALL").fetchall() for t in tables}
    finally:
        conn.close()
