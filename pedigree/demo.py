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

from pedigree import render
from pedigree.config import Settings
from pedigree.workspace import Workspace


def pick_question(truth: dict) -> str:
    """A derived model whose card hides its origin (the stealth rotated model if present)."""
    undeclared = [m for m, f in sorted(truth.items()) if f["relation"] != "root" and f.get("declaration") == "missing"]
    for relation in ("rotated", "permuted"):
        for model_id in undeclared:
            if truth[model_id]["relation"] == relation:
                return model_id
    return undeclared[0] if undeclared else sorted(truth)[0]


def run_demo(settings: Settings, *, as_json: bool = False) -> dict:
    from pedigree.crawler.hub_server import HubServer
    from pedigree.zoo.build import build_zoo

    zoo = settings.home / "zoo"
    with render.progress() as bars:
        task = bars.add_task("building the small model zoo", total=None)
        build_zoo(
            zoo,
            "small",
            progress=lambda name, done, total: bars.update(
                task, completed=done, total=total, description=f"zoo: {name}"
            ),
        )
        truth = json.loads((zoo / "truth.json").read_text())
        with HubServer(zoo) as hub, Workspace(settings) as ws:
            repos = bars.add_task("refresh", total=None)
            tests = bars.add_task("tests", total=None, visible=False)
            summary = ws.refresh(
                hub.url,
                on_start=lambda i, total, repo: bars.update(
                    repos, completed=i - 1, total=total, description=f"refresh: {repo}"
                ),
                on_done=lambda _: bars.advance(repos),
                on_pair=lambda done, total, label: bars.update(
                    tests, completed=done - 1, total=total, visible=True, description=f"tests ({label})"
                ),
            )
            question = pick_question(truth)
            answer = ws.query(question, limit=5)
            tree = ws.family_graph(question)
            endpoint = hub.url
    result = {
        "home": str(settings.home),
        "zoo": str(zoo),
        "endpoint": endpoint,
        "refresh": summary["counts"],
        "bytes_read": sum(r["bytes_read"] for r in summary["repos"]),
        "bytes_total": sum(r["size_bytes"] or 0 for r in summary["repos"]),
        "question": question,
        "answer": answer,
        "truth": {question: truth[question]},
    }
    if as_json:
        render.emit_json(result)
        return result
    out = render.stdout
    out.print(
        f"[bold]Refreshed[/] from the bundled Hub server at {endpoint} into {settings.home}: "
        f"{render.counts_line(summary['counts'])}"
    )
    facts = truth[question]
    out.print(f"\n[bold]Question:[/] where does [cyan]{question}[/] come from? Its model card declares no base model.")
    out.print(render.lineage_summary(answer))
    if tree is not None:
        out.print(render.family_tree(tree, question))
    parents = [p["id"] for p in answer["parents"]]
    out.print(
        f"[bold]Answer from the weights:[/] parent {', '.join(parents) or 'none found'}; "
        f"[bold]ground truth[/] (zoo truth.json): {facts['relation']} of {', '.join(facts['parents']) or '-'}."
    )
    out.print(
        f"\nTry: pedigree query {question} --home {settings.home}   |   pedigree discrepancies --home {settings.home}"
    )
    return result
