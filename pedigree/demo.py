"""``pedigree demo``: the main job end to end on the embedded default (DuckDB + FAISS in --home).

1. build (or reuse) the small real-trained model zoo in ``<home>/zoo``;
2. index it;
3. ask where a model that declares no base model comes from, and show the answer next to the
   zoo's recorded ground truth.
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
    from bench.zoo.build import build_zoo

    zoo = settings.home / "zoo"
    with render.progress() as bars:
        task = bars.add_task("building the small model zoo", total=None)
        build_zoo(zoo, "small", progress=lambda name, done, total: bars.update(task, completed=done, total=total, description=f"zoo: {name}"))
        truth = json.loads((zoo / "truth.json").read_text())
        with Workspace(settings) as ws:
            models = bars.add_task("indexing", total=None)
            ingested = ws.ingest(
                zoo,
                on_start=lambda i, total, model_id: bars.update(models, completed=i - 1, total=total, description=f"indexing {model_id}"),
                on_done=lambda _: bars.advance(models),
            )
            outcomes, confirmations = ingested.outcomes, ingested.confirmations
            confirmed = sum(bool(c.get("confirmed")) for c in confirmations)
            question = pick_question(truth)
            answer = ws.query(question, limit=5)
    counts: dict[str, int] = {}
    for outcome in outcomes:
        counts[outcome.status] = counts.get(outcome.status, 0) + 1
    result = {"home": str(settings.home), "zoo": str(zoo), "ingest": counts, "pairs_tested": len(confirmations),
              "pairs_confirmed": confirmed, "question": question,
              "answer": answer, "truth": {question: truth[question]}}
    if as_json:
        render.emit_json(result)
        return result
    out = render.stdout
    out.print(f"[bold]Indexed the zoo[/] in {settings.home}: " + ", ".join(f"{n} {s}" for s, n in counts.items())
              + f"; {len(confirmations)} candidate pairs tested, {confirmed} confirmed related")
    facts = truth[question]
    out.print(f"\n[bold]Question:[/] where does [cyan]{question}[/] come from? Its model card declares no base model.")
    out.print(render.related_table(answer))
    if answer["related"]:
        best = answer["related"][0]
        out.print(f"[bold]Answer from the weights:[/] closest relative [green]{best['id']}[/] (score {best['score']:.3f}, "
                  f"{len(best['layers'])} matching blocks).")
    out.print(f"[bold]Ground truth[/] (zoo truth.json): {facts['relation']} of {', '.join(facts['parents']) or '-'}.")
    out.print(f"\nTry: pedigree query {question} --home {settings.home} --json")
    return result
