"""``pedigree demo``: the main job end to end on the embedded default (DuckDB + FAISS in --home).

1. build (or reuse) the small real-trained model zoo in ``<home>/zoo``;
2. serve it with the bundled Hub-compatible server on 127.0.0.1 (a private mirror of a "Hub");
3. ``refresh`` against it: list, read only the needed bytes by HTTP range requests, fingerprint,
   confirm relatives with the independence tests, assemble the lineage graph;
4. ask where a model that declares no base model comes from, and show the answer (parents,
   family tree) next to the zoo's recorded ground truth.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from pedigree.config import Settings
from pedigree.errors import UsageError
from pedigree.results import DemoResult
from pedigree.workspace import Workspace

if TYPE_CHECKING:
    import networkx as nx

Progress = Callable[[str, int, int | None], None]  # (what, done, total)


def pick_question(truth: dict) -> str:
    """A derived model whose card hides its origin (the stealth rotated model if present)."""
    undeclared = [m for m, f in sorted(truth.items()) if f["relation"] != "root" and f.get("declaration") == "missing"]
    for relation in ("rotated", "permuted"):
        for model_id in undeclared:
            if truth[model_id]["relation"] == relation:
                return model_id
    return undeclared[0] if undeclared else sorted(truth)[0]


def run_demo(
    settings: Settings, *, zoo: Path | None = None, progress: Progress | None = None
) -> tuple[DemoResult, nx.DiGraph | None]:
    """Build the zoo (or take ``zoo``: ORG/NAME folders beside a truth.json), serve it, refresh
    from it and ask one question; returns the answer and the question's family graph."""
    from pedigree.crawler.hub_server import HubServer
    from pedigree.zoo.build import build_zoo

    def report(label: str, done: int, total: int | None) -> None:
        if progress is not None:
            progress(label, done, total)

    if zoo is None:
        zoo = settings.home / "zoo"
        build_zoo(zoo, "small", progress=lambda name, done, total: report(f"zoo: {name}", done, total))
    elif not (zoo / "truth.json").is_file():
        raise UsageError(f"--zoo {zoo}: no truth.json there (build one with `pedigree zoo build`)")
    truth = json.loads((zoo / "truth.json").read_text())
    with HubServer(zoo) as hub, Workspace(settings) as ws:
        summary = ws.refresh(
            hub.url,
            on_start=lambda i, total, repo: report(f"refresh: {repo}", i - 1, total),
            on_pair=lambda done, total, label: report(f"tests ({label})", done - 1, total),
        )
        question = pick_question(truth)
        answer = ws.query(question, limit=5)
        tree = ws.family_graph(question)
        endpoint = hub.url
    result = DemoResult(
        home=str(settings.home),
        zoo=str(zoo),
        endpoint=endpoint,
        refresh=summary.counts,
        bytes_read=sum(r.bytes_read for r in summary.repos),
        bytes_total=sum(r.size_bytes or 0 for r in summary.repos),
        question=question,
        answer=answer,
        truth={question: truth[question]},
    )
    return result, tree
