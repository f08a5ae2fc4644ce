"""Terminal rendering for the CLI (rich tables on stdout, progress on stderr)."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

stdout = Console()
stderr = Console(stderr=True)

STATUS_STYLE = {
    "indexed": "green",
    "unchanged": "cyan",
    "failed": "red",
    "unsupported": "yellow",
    "gated": "magenta",
    "gone": "red",
    "no_safetensors": "yellow",
    "retry": "yellow",
}


def emit_json(payload: object) -> None:
    sys.stdout.write(json.dumps(payload, indent=2, default=str) + "\n")
    sys.stdout.flush()


def progress() -> Progress:
    """A progress display on stderr, so that ``--json`` output on stdout stays clean."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=stderr,
        transient=True,
    )


def ingest_table(outcomes: Iterable[dict]) -> Table:
    table = Table(title="ingest")
    for column in ("model", "status", "layers", "seconds", "error"):
        table.add_column(column, overflow="fold")
    for row in outcomes:
        style = STATUS_STYLE.get(row["status"], "")
        table.add_row(
            row["id"],
            f"[{style}]{row['status']}[/]",
            str(row["layers"] or ""),
            f"{row['seconds']:.2f}",
            row["error"] or "",
        )
    return table


def related_table(result: dict) -> Table:
    table = Table(title=f"models related to {result['model']}")
    table.add_column("#", justify="right")
    table.add_column("model")
    table.add_column("score", justify="right")
    table.add_column("matched blocks (i -> j)")
    for rank, row in enumerate(result["related"], start=1):
        blocks = ", ".join(f"{i}->{j}" for i, j, _ in row["layers"]) or "-"
        table.add_row(str(rank), row["id"], f"{row['score']:.3f}", blocks)
    return table


def compare_table(result: dict) -> Table:
    table = Table(title=f"{result['a']}  vs  {result['b']}: score {result['score']:.3f}")
    table.add_column(f"block of {result['a']}", justify="right")
    table.add_column(f"block of {result['b']}", justify="right")
    table.add_column("cosine", justify="right")
    for i, j, c in result["layer_map"]:
        table.add_row(str(i), str(j), f"{c:.3f}")
    if not result["layer_map"]:
        table.add_row("-", "-", "no block pair above the noise bar")
    return table


def matrix_table(result: dict) -> Table:
    models = result["models"]
    scores = {(p["a"], p["b"]): p["score"] for p in result["pairs"]}
    table = Table(title="pairwise scores")
    table.add_column("")
    for index in range(len(models)):
        table.add_column(str(index), justify="right")
    for index, a in enumerate(models):
        cells = []
        for b in models:
            value = 1.0 if a == b else scores.get((a, b), scores.get((b, a)))
            cells.append("" if value is None else f"{value:.2f}")
        table.add_row(f"{index} {a}", *cells)
    return table


def lineage_summary(result: dict) -> str:
    if result.get("family_size") is None:
        return f"[bold]{result['model']}[/]: no lineage graph yet (run `pedigree graph build`)"
    parents = ", ".join(
        f"{p['id']} ({p['relation']}, confidence {p['confidence']:.2f}, log10 p {p['log10_p']:.0f})"
        if p["log10_p"] is not None
        else f"{p['id']} ({p['relation']})"
        for p in result["parents"]
    )
    line = f"[bold]{result['model']}[/]: " + (
        f"derived from {parents}" if parents else "a root (no parent in the index)"
    )
    if result["ancestors"]:
        line += f"\n  ancestry: {' <- '.join([result['model'], *result['ancestors']])}"
    line += f"\n  family of {result['family_size']} models, root {result['root']}; {len(result['children'])} children"
    return line


def family_tree(graph, highlight: str):
    """The family as a rich Tree from its root(s); merges appear under each parent."""
    from rich.tree import Tree

    roots = sorted(n for n in graph if graph.in_degree(n) == 0)
    top = Tree(f"family of {graph.number_of_nodes()} models", guide_style="dim")

    def label(node: str, parent: str | None) -> str:
        text = f"[bold yellow]{node}[/] ◀" if node == highlight else node
        if parent is not None:
            edge = graph.edges[parent, node]
            text += f" [dim]({edge['relation']}, {edge['confidence']:.2f})[/]"
        return text

    def grow(branch, node: str, parent: str | None, seen: set) -> None:
        sub = branch.add(label(node, parent))
        if node in seen:
            return
        seen.add(node)
        for child in sorted(graph.successors(node)):
            grow(sub, child, node, seen)

    seen: set = set()
    for root in roots:
        grow(top, root, None, seen)
    return top


def discrepancy_report(result: dict) -> Table:
    table = Table(title=f"discrepancies (graph build {result['graph_build']})")
    for column in ("model", "kind", "declared", "weights say", "suggested card"):
        table.add_column(column, overflow="fold")
    for entry in result["discrepancies"]:
        weights = ", ".join(f"{p['id']} ({p['relation']})" for p in entry["parents_from_weights"]) or "no relative"
        table.add_row(
            entry["model"], entry["kind"], entry["declared_base_model"], weights, entry.get("suggested_card", "")
        )
    for entry in result["undeclared"]:
        weights = ", ".join(f"{p['id']} ({p['relation']})" for p in entry["parents_from_weights"])
        table.add_row(entry["model"], "undeclared", "-", weights, entry["suggested_card"])
    return table


def _size(n: int | None) -> str:
    if n is None:
        return ""
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def crawl_table(repos: list[dict]) -> Table:
    table = Table(title=f"{len(repos)} repos crawled")
    for column in ("repo", "status", "read", "of", "reason"):
        table.add_column(column, overflow="fold")
    for r in repos:
        style = STATUS_STYLE.get(r["status"], "")
        table.add_row(
            r["id"],
            f"[{style}]{r['status']}[/]",
            _size(r.get("bytes_read")),
            _size(r.get("size_bytes")),
            r.get("reason") or "",
        )
    return table


def counts_line(counts: dict) -> str:
    return ", ".join(f"{n} {name.replace('_', ' ')}" for name, n in counts.items())


def status_report(status: dict) -> Table:
    table = Table(title="last runs")
    for column in ("run", "kind", "endpoint", "started", "finished", "status", "counts"):
        table.add_column(column, overflow="fold")
    for run in status["runs"]:
        table.add_row(
            str(run["run_id"]),
            run["kind"],
            run["endpoint"] or "",
            run["started_at"],
            run["finished_at"] or "",
            run["status"],
            counts_line(run["counts"]),
        )
    marks = "; ".join(f"{m['endpoint']}: {m['high_water']}" for m in status["high_water"]) or "none yet"
    table.caption = (
        f"high-water mark: {marks} | index: {counts_line(status['models'])} | crawl: {counts_line(status['crawl'])}"
    )
    return table
