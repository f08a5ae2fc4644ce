"""How each result looks in a terminal (``width`` columns); ``--json`` prints ``result.to_json()``.

Model ids, paths, endpoints and reasons come from the world: they are shown as plain text
(:func:`~pedigree.cli.render.plain`, or escaped inside markup), never interpreted as markup; the
consoles escape their control characters (:mod:`pedigree.cli.render`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rich.console import Group, RenderableType
from rich.markup import escape
from rich.text import Text
from rich.tree import Tree

from pedigree.cli.render import Cell, Column, counts_line, fitted, log10_p, number, plain, size, styled_status
from pedigree.results import (
    Comparison,
    CrawlSummary,
    DemoResult,
    Discrepancies,
    GraphBuild,
    IngestResult,
    LineageAnswer,
    PairMatrix,
    PairScore,
    RefreshSummary,
    RepoReport,
    StatusReport,
)

if TYPE_CHECKING:
    import networkx as nx

    from pedigree.storage.db import ModelRecord


def ingest(result: IngestResult, width: int) -> RenderableType:
    rows: list[list[Cell]] = [
        [o.id, styled_status(o.status), str(o.layers or ""), f"{o.seconds:.2f}", o.error or ""] for o in result.models
    ]
    columns = [
        Column("model", key=True),
        Column("status"),
        Column("layers", justify="right"),
        Column("seconds"),
        Column("error"),
    ]
    parts: list[RenderableType] = [fitted("ingest", columns, rows, width), counts_line(result.counts)]
    if result.confirmations:
        failed = [c for c in result.confirmations if c.error]
        confirmed = sum(bool(c.confirmed) for c in result.confirmations)
        line = (
            f"{len(result.confirmations) - len(failed)} candidate pairs tested, {confirmed} confirmed related "
            "(Holm, family-wise error 1 %)"
        )
        if failed:
            line += f"; {len(failed)} could not be tested"
        parts.append(line)
        parts.extend(Text(f"  not tested: {c.a} ~ {c.b}: {c.error}", style="yellow") for c in failed)
    if result.graph is not None:
        parts.append(graph_build(result.graph, width))
    return Group(*parts)


def graph_build(build: GraphBuild, width: int) -> RenderableType:
    return (
        f"lineage graph build {build.build_id} ({build.mode}): {build.models} models, {build.families} families "
        f"({build.rebuilt} re-assembled, {build.reused} unchanged), {build.edges} edges"
    )


def _link(link: Any) -> str:
    if link.log10_p is None:
        return f"{link.id} ({link.relation})"
    return f"{link.id} ({link.relation}, confidence {link.confidence:.2f}, log10 p {log10_p(link.log10_p)})"


def lineage_summary(answer: LineageAnswer) -> RenderableType:
    name = f"[bold]{escape(answer.model)}[/]"
    if answer.family_size is None:
        return f"{name}: not in a lineage family (no confirmed relative, or no graph yet: `pedigree graph build`)"
    parents = ", ".join(_link(p) for p in answer.parents)
    if parents:
        text = f"{name}: derived from {escape(parents)}"
    elif declared := sorted({b for s in answer.siblings for b in s.evidence.get("declared_base") or ()}):
        bases = escape(", ".join(declared))
        text = f"{name}: no parent shown (related through {bases}: named by a card, not indexed)"
    elif answer.siblings:
        text = f"{name}: no parent shown (the weights do not order it against its relatives)"
    else:
        text = f"{name}: a root (no parent in the index)"
    if answer.ancestors:
        text += f"\n  ancestry: {escape(' <- '.join([answer.model, *answer.ancestors]))}"
    if answer.siblings:
        undirected = ", ".join(_link(s) for s in answer.siblings)
        text += f"\n  related, direction undetermined: {escape(undirected)}"
    text += (
        f"\n  family of {answer.family_size} models, root {escape(str(answer.root))}; {len(answer.children)} children"
    )
    return text


def family_tree(graph: nx.DiGraph, highlight: str) -> Tree:
    """The family as a tree from its root(s); a merge appears under each of its parents."""
    roots = sorted(n for n in graph if graph.in_degree(n) == 0)
    indexed = sum(1 for n in graph if not graph.nodes[n].get("latent"))
    top = Tree(f"family of {indexed} models", guide_style="dim")

    def label(node: str, parent: str | None) -> Text:
        text = Text(node, style="bold yellow") if node == highlight else Text(node)
        if graph.nodes[node].get("latent"):
            text.append(" (not indexed)", style="italic")
        if node == highlight:
            text.append(" ◀")
        if parent is not None:
            edge = graph.edges[parent, node]
            if edge.get("directed", True):
                text.append(f" ({edge['relation']}, {edge['confidence']:.2f})", style="dim")
            else:
                text.append(f" ({edge['relation']}, direction undetermined)", style="dim")
        return text

    def grow(branch: Tree, node: str, parent: str | None, seen: set[str]) -> None:
        sub = branch.add(label(node, parent))
        if node in seen:
            return
        seen.add(node)
        for child in sorted(graph.successors(node)):
            grow(sub, child, node, seen)

    seen: set[str] = set()
    for root in roots:
        grow(top, root, None, seen)
    return top


def related(answer: LineageAnswer, width: int) -> RenderableType:
    if not answer.related:  # nothing near it, or nothing to search with (an adapter or UNet has no fingerprint)
        return Text(f"models related to {answer.model} by fingerprint: none")
    rows = [
        [str(rank), r.id, f"{r.score:.3f}", ", ".join(f"{i}->{j}" for i, j, _ in r.layers) or "-"]
        for rank, r in enumerate(answer.related, start=1)
    ]
    columns = [Column("#", justify="right"), Column("model", key=True), Column("score"), Column("blocks (i->j)")]
    return fitted(f"models related to {answer.model}", columns, rows, width)


def comparison(result: Comparison, width: int) -> RenderableType:
    parts: list[RenderableType] = [
        Text.assemble("A: ", (result.a, "bold")),
        Text.assemble("B: ", (result.b, "bold")),
        f"fingerprint score {result.score:.3f} (blocks {result.layers[0]} vs {result.layers[1]}); "
        f"model cosine {number(result.model_cosine)}, embedding {number(result.embedding_cosine) or '-'}, "
        f"head {number(result.head_cosine) or '-'}",
    ]
    with_tests = result.tests is not None
    columns = [
        Column("block A", justify="right"),
        Column("block B", justify="right"),
        Column("cosine", justify="right"),
    ]
    if with_tests:
        columns.append(Column("log10 p", justify="right"))
    rows = [
        [str(row[0]), str(row[1]), f"{row[2]:.3f}", *([log10_p(row[3])] if with_tests else [])]
        for row in result.layer_map
    ]
    if rows:
        parts.append(fitted("matching blocks", columns, rows, width))
    else:
        parts.append("no block pair above the projection-noise bar (5/sqrt(D))")
    if result.tests is not None:
        test_rows = [[t["name"], log10_p(t["log10_p"]), t["null"]] for t in result.tests]
        test_columns = [Column("test", key=True), Column("log10 p", justify="right"), Column("null rejected (H0)")]
        parts.append(fitted("independence tests", test_columns, test_rows, width))
        verdict = f"combined log10 p {log10_p(result.log10_p)} (Bonferroni over the tests)"
        if result.confirmed is not None:
            verdict += f"; Holm-adjusted log10 p {log10_p(result.log10_q)}: " + (
                "confirmed related" if result.confirmed else "not confirmed"
            )
        parts.append(verdict)
    return Group(*parts)


GRID_CELL = 6  # "0.998" plus padding


def matrix(result: PairMatrix, width: int) -> RenderableType:
    """A grid of scores when it fits (models numbered), else one line per pair, best first."""
    models = list(result.models)
    scores = {frozenset((p.a, p.b)): p for p in result.pairs}
    label = len(str(len(models) - 1))
    if (label + 1) + len(models) * GRID_CELL <= width:
        header = " " * (label + 1) + "".join(f"{i:>{GRID_CELL}}" for i in range(len(models)))
        grid = [header]
        for i, a in enumerate(models):
            cells = []
            for b in models:
                pair = scores.get(frozenset((a, b)))
                cells.append(f"{'1.00' if a == b else '' if pair is None else f'{pair.score:.2f}':>{GRID_CELL}}")
            grid.append(f"{i:>{label}} " + "".join(cells))
        legend = [plain(f"{i:>{label}} {m}") for i, m in enumerate(models)]
        return Group("pairwise fingerprint scores", *grid, "", *legend, *not_run(result.pairs))
    ranked = sorted(result.pairs, key=lambda p: (-p.score, p.a, p.b))
    with_p = any(p.log10_p is not None or p.test_error for p in ranked)
    head = "score" + ("  log10 p" if with_p else "") + "  pair"
    out: list[RenderableType] = [f"pairwise fingerprint scores ({len(ranked)} pairs, best first)", head]
    for p in ranked:
        shown = "not run" if p.test_error else log10_p(p.log10_p)
        cell = f"{p.score:5.3f}" + (f"  {shown:>7}" if with_p else "")
        out.append(plain(f"{cell}  {p.a} ~ {p.b}"))
    return Group(*out, *not_run(result.pairs))


def not_run(pairs: tuple[PairScore, ...]) -> list[Text]:
    """One line per pair whose tests could not run, with the reason."""
    return [plain(f"tests not run: {p.a} ~ {p.b}: {p.test_error}") for p in pairs if p.test_error]


def models(records: list[ModelRecord], width: int) -> RenderableType:
    rows: list[list[Cell]] = [
        [r.id, styled_status(r.status), r.architecture or "", str(r.num_layers or ""), r.error or ""] for r in records
    ]
    columns = [Column("model", key=True), Column("status"), Column("architecture"), Column("layers"), Column("error")]
    return fitted(f"{len(records)} models", columns, rows, width)


def discrepancies(result: Discrepancies, width: int) -> RenderableType:
    if result.graph_build is None:
        return "no lineage graph yet: run `pedigree graph build` (or `pedigree ingest`)"
    rows = []
    for entry in result.discrepancies:
        weights = ", ".join(f"{p.id} ({p.relation})" for p in entry.parents_from_weights) or "no relative"
        rows.append([entry.model, entry.kind, entry.declared_base_model or "", weights, entry.suggested_card or ""])
    for undeclared in result.undeclared:
        weights = ", ".join(f"{p.id} ({p.relation})" for p in undeclared.parents_from_weights)
        rows.append([undeclared.model, "undeclared", "-", weights, undeclared.suggested_card])
    columns = [
        Column("model", key=True),
        Column("kind"),
        Column("declared"),
        Column("weights say"),
        Column("suggested card"),
    ]
    parts: list[RenderableType] = [fitted(f"discrepancies (graph build {result.graph_build})", columns, rows, width)]
    if result.unverifiable:
        parts.append(f"{len(result.unverifiable)} declarations name a base model that is not indexed")
    if not rows:
        parts.append("every card agrees with the weights")
    return Group(*parts)


def repos(reports: tuple[RepoReport, ...], width: int) -> RenderableType:
    rows: list[list[Cell]] = [
        [r.id, styled_status(r.status), size(r.bytes_read), size(r.size_bytes), r.reason or ""] for r in reports
    ]
    columns = [Column("repo", key=True), Column("status"), Column("read"), Column("of"), Column("reason")]
    return fitted(f"{len(reports)} repos crawled", columns, rows, width)


def crawl(result: CrawlSummary, width: int) -> RenderableType:
    summary = counts_line(result.counts) + f"; high-water mark {result.high_water}"
    return Group(repos(result.repos, width), plain(summary))


def refresh(result: RefreshSummary, width: int) -> RenderableType:
    parts: list[RenderableType] = [repos(result.repos, width), counts_line(result.counts)]
    parts.extend(Text.assemble("  ", (e.status, "yellow"), f" {e.id}: {e.reason or ''}") for e in result.errors)
    if result.graph is not None:
        parts.append(graph_build(result.graph, width))
    return Group(*parts)


def evidence_line(evidence: dict[str, int]) -> str:
    """``evidence store: 27 models, 21.3 MB; 2 missing (...)``."""
    line = f"evidence store: {evidence.get('models', 0)} models, {evidence.get('bytes', 0) / 1e6:.1f} MB"
    missing = evidence.get("missing", 0)
    return line + (f"; {missing} missing (backfilled from their sources when reachable)" if missing else "")


def status(report: StatusReport, width: int) -> RenderableType:
    rows = [
        [
            str(run.run_id),
            run.kind,
            run.status,
            run.started_at[:19],
            (run.finished_at or "")[:19],
            run.endpoint or "",
            counts_line(run.counts),
        ]
        for run in report.runs
    ]
    columns = [
        Column("run", key=True),
        Column("kind"),
        Column("status"),
        Column("started (UTC)"),
        Column("finished"),
        Column("endpoint", key=True),
        Column("counts"),
    ]
    marks = "; ".join(f"{m.endpoint}: {m.high_water}" for m in report.high_water) or "none yet"
    return Group(
        fitted("last runs", columns, rows, width) if rows else "no crawl or refresh run yet",
        plain(f"high-water mark: {marks}"),
        f"index: {counts_line(report.models) or 'empty'}",
        evidence_line(report.evidence),
        f"crawl records: {counts_line(report.crawl) or 'none'}",
    )


def demo(result: DemoResult, tree: nx.DiGraph | None, width: int) -> RenderableType:
    facts = result.truth[result.question]
    parents = [p.id for p in result.answer.parents]
    parts: list[RenderableType] = [
        f"[bold]Refreshed[/] from the bundled Hub server at {result.endpoint} into {escape(result.home)}: "
        f"{counts_line(result.refresh)} ({size(result.bytes_read)} read over HTTP, configs and tokenizers "
        f"included; the weight files hold {size(result.bytes_total)})",
        "",
        f"[bold]Question:[/] where does [cyan]{escape(result.question)}[/] come from? "
        "Its model card declares no base model.",
        lineage_summary(result.answer),
    ]
    if tree is not None:
        parts.append(family_tree(tree, result.question))
    parts.append(
        f"[bold]Answer from the weights:[/] parent {escape(', '.join(parents) or 'none found')}; "
        f"[bold]ground truth[/] (zoo truth.json): {facts['relation']} of {escape(', '.join(facts['parents']) or '-')}."
    )
    parts.append(f"\nTry: pedigree query {escape(result.question)} --home {escape(result.home)}")
    return Group(*parts)
