"""Model cards against weights: declarations the weights contradict, derivations nobody declared.

For every indexed model, the card's ``base_model`` / ``base_model_relation`` is compared with the
lineage graph:

- ``contradicted``: the declared base is indexed but not related (the independence tests did not
  confirm a shared initialisation), e.g. a model claiming a famous base it was not trained from.
- ``ancestor_declared``: the declared base is an ancestor, but not the parent.
- ``reversed``: the declared base is in fact derived from this model.
- ``misplaced``: related, but the weights place the model under another parent.
- ``relation_mismatch``: the parent is right, the kind of step is not.
- ``undeclared``: the weights show a parent but the card declares none (the Miqu case) - with a
  suggested card snippet.
- ``unverifiable``: the declared base is not in the index (listed separately, not an error).
"""

from __future__ import annotations

import networkx as nx

from pedigree.query.graph import current_build, load_graph, parents_of
from pedigree.results import Discrepancies, Discrepancy, Undeclared, Unverifiable, WeightsParent
from pedigree.storage.db import Store
from pedigree.storage.relations import get_relation
from pedigree.types import Status

HUB_RELATIONS = {"adapter": "adapter", "merge": "merge", "quantized": "quantized"}  # everything else is a finetune


def hub_relation(relation: str) -> str:
    """The Hub's ``base_model_relation`` vocabulary (adapter/merge/quantized/finetune)."""
    return HUB_RELATIONS.get(relation, "finetune")


def card_snippet(parents: list[str], relation: str) -> str:
    base = parents[0] if len(parents) == 1 else "\n" + "\n".join(f"  - {p}" for p in parents)
    return f"base_model: {base}\nbase_model_relation: {hub_relation(relation)}\n"


def discrepancies(store: Store, mode: str = "full") -> Discrepancies:
    build_id = current_build(store, mode)
    if build_id is None:
        return Discrepancies(graph_build=None)
    graph = load_graph(store, build_id)
    records = {r.id: r for r in store.models(Status.INDEXED)}
    found: list[Discrepancy] = []
    undeclared: list[Undeclared] = []
    unverifiable: list[Unverifiable] = []
    for model_id in sorted(graph.nodes):
        if graph.nodes[model_id].get("latent"):
            continue  # a model that is not indexed has no card
        card = records[model_id].card or {}
        declared = list(card.get("base_model") or [])
        declared_relation = card.get("base_model_relation")
        parents = parents_of(graph, model_id)
        relation = graph.edges[parents[0], model_id]["relation"] if parents else None
        from_weights = tuple(
            WeightsParent(
                p,
                graph.edges[p, model_id]["relation"],
                graph.edges[p, model_id]["log10_p"],
                graph.edges[p, model_id]["confidence"],
            )
            for p in parents
        )
        named = [p for p in parents if not graph.nodes[p].get("latent")]  # a card can only name an indexed model
        snippet = card_snippet(parents, relation) if parents and relation and named == parents else None
        if not declared:
            if snippet is not None:
                undeclared.append(Undeclared(model_id, from_weights, snippet))
            continue
        for base in declared:
            if base not in records:
                unverifiable.append(Unverifiable(model_id, base, "not in the index"))
                continue
            kind, pair_log10_p, reason = None, None, None
            if graph.nodes[base]["family"] != graph.nodes[model_id]["family"]:
                kind = "contradicted"
                base_pk, model_pk = records[base].pk, records[model_id].pk
                assert base_pk is not None and model_pk is not None  # records read from the store
                pair = get_relation(store, base_pk, model_pk)
                pair_log10_p = None if pair is None else pair.log10_p
                reason = (
                    "tested: no shared initialisation"
                    if pair is not None
                    else "never a candidate: the fingerprints are unrelated"
                )
            elif base not in parents:
                if base in nx.ancestors(graph, model_id):
                    kind = "ancestor_declared"
                elif base in nx.descendants(graph, model_id):
                    kind = "reversed"
                else:
                    kind = "misplaced"
            elif declared_relation and relation and hub_relation(relation) != declared_relation:
                kind = "relation_mismatch"
            if kind:
                found.append(
                    Discrepancy(model_id, kind, base, declared_relation, from_weights, snippet, pair_log10_p, reason)
                )
    return Discrepancies(build_id, tuple(found), tuple(undeclared), tuple(unverifiable))
