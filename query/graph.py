"""The lineage graph as an answer: a model's parents, ancestors, children, family; exports.

Nodes are model ids; an edge runs from parent (``source``) to child (``target``) and carries
``relation``, ``confidence``, ``log10_p``, ``evidence`` and ``directed``.  An undirected edge
(``directed`` false) links two relatives that neither signal nor geometry could order: relation
``sibling`` (e.g. two fine-tunes of an ancestor that is not indexed) or a copy whose original is
unknown; it is never a parent link.  A *latent* node (``latent: true``, id ``latent:<ancestor>#k``)
stands for a model that is not indexed: two or more indexed models were derived from it, and it
from ``<ancestor>`` (relation ``ancestor``).  Exports: node-link JSON (networkx's
format), GraphML and GEXF (attributes flattened to scalars, evidence as a JSON string, for Gephi),
and Parquet node and edge tables written by DuckDB.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import networkx as nx

from pedigree.errors import ModelNotFoundError, PedigreeError, UsageError
from pedigree.results import Lineage, Link
from pedigree.storage.db import Store
from pedigree.storage.lineage import family_of_model, graph_edges, latest_build, members

FORMATS = ("json", "graphml", "gexf", "parquet")
MODES = ("full", "time", "weights")  # the lineage build modes (indexer.lineage.assemble.MODES)


def current_build(store: Store, mode: str = "full") -> int | None:
    return latest_build(store, mode)


def load_graph(store: Store, build_id: int, family_id: int | None = None) -> nx.DiGraph:
    """The graph of a build (or one family of it) with node and edge attributes."""
    edges = graph_edges(store, build_id, family_id)
    if family_id is not None:
        pks = members(store, family_id)
        family_rows = [(family_id, pk) for pk in pks]
    else:
        family_rows = store.conn.execute(
            "SELECT m.family_id, m.model_pk FROM family_members m JOIN build_families b ON b.family_id = m.family_id "
            "WHERE b.build_id = ?",
            [build_id],
        ).fetchall()
    records = store.get_models([pk for _, pk in family_rows])
    graph = nx.DiGraph(build=build_id)
    for family, pk in family_rows:
        record = records[pk]
        graph.add_node(
            record.id,
            family=family,
            architecture=record.architecture or "",
            created_at=str(record.created_at or ""),
            declared_base_model=",".join((record.card or {}).get("base_model") or []),
            layers=record.num_layers or 0,
        )
    latent_nodes: dict[tuple[str, tuple[str, ...]], str] = {}
    for family, edge in edges:
        parent, child = records[edge.parent].id, records[edge.child].id
        group = tuple(edge.evidence.get("latent_ancestor") or ())
        if group:  # parent -> an unindexed model -> child (and the rest of the group)
            if (parent, group) not in latent_nodes:
                name = latent_node_name(parent, sum(1 for p, _ in latent_nodes if p == parent))
                latent_nodes[(parent, group)] = name
                graph.add_node(
                    name, family=family, latent=True, architecture="", created_at="", declared_base_model="", layers=0
                )
                graph.add_edge(
                    parent,
                    name,
                    relation="ancestor",
                    confidence=edge.confidence,
                    log10_p=None,
                    evidence={"latent_ancestor": list(group), "directed": True},
                    family=family,
                    directed=True,
                )
            parent = latent_nodes[(parent, group)]
        graph.add_edge(
            parent,
            child,
            relation=edge.relation,
            confidence=edge.confidence,
            log10_p=edge.log10_p,
            evidence=edge.evidence,
            family=family,
            directed=bool(edge.evidence.get("directed", True)),
        )
    nx.set_node_attributes(graph, {n: bool(graph.nodes[n].get("latent")) for n in graph}, "latent")
    roots = {n for n in graph if not parents_of(graph, n)}
    nx.set_node_attributes(graph, {n: n in roots for n in graph}, "root")
    return graph


def latent_node_name(ancestor: str, index: int) -> str:
    """The id of the ``index``-th unindexed model the lineage places under ``ancestor``."""
    return f"latent:{ancestor}#{index + 1}"


def parents_of(graph: nx.DiGraph, node: str) -> list[str]:
    """The node's parents: sources of its directed in-edges."""
    return sorted(p for p in graph.predecessors(node) if graph.edges[p, node].get("directed", True))


def undirected_of(graph: nx.DiGraph, node: str) -> list[tuple[str, str]]:
    """(source, target) of the node's undirected edges (siblings, copies of unknown direction)."""
    found = [(p, node) for p in graph.predecessors(node)] + [(node, c) for c in graph.successors(node)]
    return sorted(e for e in found if not graph.edges[e].get("directed", True))


def _first_parent_chain(graph: nx.DiGraph, node: str) -> list[str]:
    chain: list[str] = []
    seen = {node}
    while True:
        parents = sorted(parents_of(graph, node), key=lambda p: -(graph.edges[p, node]["confidence"] or 0))
        if not parents or parents[0] in seen:
            return chain
        node = parents[0]
        chain.append(node)
        seen.add(node)


def lineage(store: Store, model_id: str, mode: str = "full") -> Lineage:
    """parents / ancestors / root / children / family_size of a model in the current graph."""
    if mode not in MODES:
        raise UsageError(f"unknown mode {mode!r} (choose from {', '.join(MODES)})")
    record = store.get_model(model_id)
    if record is None:
        raise ModelNotFoundError(f"{model_id!r} is not in the index")
    assert record.pk is not None  # a record read from the store
    build_id = current_build(store, mode)
    family = family_of_model(store, build_id, record.pk) if build_id else None
    if family is None:
        return Lineage(graph_build=build_id)
    assert build_id is not None  # a family was found in it
    graph = load_graph(store, build_id, family.family_id)

    def link(other: str, source: str, target: str) -> Link:
        data = graph.edges[source, target]
        return Link(other, data["relation"], data["confidence"], data["log10_p"], data["evidence"])

    ancestors = _first_parent_chain(graph, model_id)
    siblings = undirected_of(graph, model_id)
    family_root = store.get_models([family.root])[family.root].id if family.root is not None else model_id
    return Lineage(
        parents=tuple(link(p, p, model_id) for p in parents_of(graph, model_id)),
        ancestors=tuple(ancestors),
        root=ancestors[-1] if ancestors else (family_root if siblings else model_id),
        children=tuple(
            link(c, model_id, c) for c in sorted(graph.successors(model_id)) if model_id in parents_of(graph, c)
        ),
        siblings=tuple(link(b if a == model_id else a, a, b) for a, b in siblings),
        family_size=sum(1 for n in graph if not graph.nodes[n].get("latent")),
        family=family.family_id,
        graph_build=build_id,
    )


def family_graph(store: Store, model_id: str, mode: str = "full") -> nx.DiGraph | None:
    record = store.get_model(model_id)
    build_id = current_build(store, mode)
    if record is None or build_id is None:
        return None
    assert record.pk is not None  # a record read from the store
    family = family_of_model(store, build_id, record.pk)
    return load_graph(store, build_id, family.family_id) if family else None


def _scalar_graph(graph: nx.DiGraph) -> nx.DiGraph:
    """A copy whose attributes are all str/int/float/bool (GraphML and GEXF need that)."""
    flat = nx.DiGraph()
    for node, data in graph.nodes(data=True):
        flat.add_node(node, **{k: v for k, v in data.items() if v is not None})
    for u, v, data in graph.edges(data=True):
        attrs = {
            k: (json.dumps(val, sort_keys=True) if isinstance(val, (dict, list)) else val)
            for k, val in data.items()
            if val is not None
        }
        flat.add_edge(u, v, **attrs)
    return flat


def export(
    store: Store, fmt: str, path: str | os.PathLike[str], *, family_of: str | None = None, mode: str = "full"
) -> list[Path]:
    """Write the current graph (or the family of ``family_of``); returns the files written."""
    if fmt not in FORMATS:
        raise UsageError(f"unknown format {fmt!r} (choose from {', '.join(FORMATS)})")
    path = Path(path)
    if not path.parent.is_dir():
        raise UsageError(f"cannot write {path}: the folder {path.parent} does not exist")
    if path.is_dir():
        raise UsageError(f"cannot write {path}: it is a folder")
    build_id = current_build(store, mode)
    if build_id is None:
        raise PedigreeError("no lineage graph has been built yet: run `pedigree graph build` (or `pedigree ingest`)")
    family_id = None
    if family_of is not None:
        record = store.get_model(family_of)
        family = family_of_model(store, build_id, record.pk) if record and record.pk is not None else None
        if family is None:
            raise ModelNotFoundError(f"{family_of!r} is not in the lineage graph")
        family_id = family.family_id
    graph = load_graph(store, build_id, family_id)
    if fmt == "json":
        path.write_text(json.dumps(nx.node_link_data(graph, edges="edges"), indent=2, default=str))
        return [path]
    if fmt == "graphml":
        nx.write_graphml(_scalar_graph(graph), path)
        return [path]
    if fmt == "gexf":
        nx.write_gexf(_scalar_graph(graph), path)
        return [path]
    return _parquet(store, graph, path)


def _parquet(store: Store, graph: nx.DiGraph, path: Path) -> list[Path]:
    """<stem>.nodes.parquet and <stem>.edges.parquet, written by DuckDB."""
    nodes_path = path.with_name(path.stem + ".nodes.parquet")
    edges_path = path.with_name(path.stem + ".edges.parquet")
    node_rows = [
        (
            n,
            d["family"],
            d["architecture"],
            d["created_at"],
            d["declared_base_model"],
            d["layers"],
            d["root"],
            d["latent"],
        )
        for n, d in graph.nodes(data=True)
    ]
    edge_rows = [
        (u, v, d["relation"], d["confidence"], d["log10_p"], json.dumps(d["evidence"]), d["family"], d["directed"])
        for u, v, d in graph.edges(data=True)
    ]
    conn = store.conn
    conn.execute(
        "CREATE OR REPLACE TEMP TABLE export_nodes (id VARCHAR, family INTEGER, architecture VARCHAR, created_at "
        "VARCHAR, declared_base_model VARCHAR, layers INTEGER, root BOOLEAN, latent BOOLEAN)"
    )
    conn.execute(
        "CREATE OR REPLACE TEMP TABLE export_edges (source VARCHAR, target VARCHAR, relation VARCHAR, confidence "
        "DOUBLE, log10_p DOUBLE, evidence VARCHAR, family INTEGER, directed BOOLEAN)"
    )
    if node_rows:
        conn.executemany("INSERT INTO export_nodes VALUES (?, ?, ?, ?, ?, ?, ?, ?)", node_rows)
    if edge_rows:
        conn.executemany("INSERT INTO export_edges VALUES (?, ?, ?, ?, ?, ?, ?, ?)", edge_rows)
    for table, target in (("export_nodes", nodes_path), ("export_edges", edges_path)):
        quoted = str(target).replace("'", "''")  # COPY takes a literal, not a parameter
        conn.execute(f"COPY {table} TO '{quoted}' (FORMAT PARQUET)")
    return [nodes_path, edges_path]
