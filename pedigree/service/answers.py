"""The JSON the API answers that the library has no result type for: the model list (filtered,
paged by an opaque cursor), a model's detail, and a family as node-link JSON or a file.

Everything here reads one snapshot's DuckDB through a leased read-only workspace.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import tempfile
from pathlib import Path
from typing import Any

from pedigree.errors import ModelNotFoundError, UsageError
from pedigree.storage.db import ModelRecord
from pedigree.workspace import Workspace

MAX_PAGE = 200
MAX_QUERY_CHARS = 200
MAX_TAGS = 50
MAX_CARD_TEXT = 500  # characters of any one card string answered
CONFIG_FIELDS = (
    "model_type",
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
    "intermediate_size",
    "vocab_size",
    "max_position_embeddings",
    "torch_dtype",
    "tie_word_embeddings",
)
GRAPH_FORMATS = {"graphml": "application/graphml+xml", "gexf": "application/gexf+xml"}


def finite(value: Any) -> Any:
    """``value`` with every non-finite float as None (JSON has no Infinity or NaN)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    return value


# ---- the model list --------------------------------------------------------------------------


def encode_cursor(last_id: str) -> str:
    return base64.urlsafe_b64encode(json.dumps({"after": last_id}).encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> str:
    """The id a cursor continues after; UsageError (400) for anything that is not a cursor."""
    try:
        value = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        after = value["after"]
    except (binascii.Error, ValueError, TypeError, KeyError):
        raise UsageError("cursor: not a cursor this API gave out") from None
    if not isinstance(after, str):
        raise UsageError("cursor: not a cursor this API gave out")
    return after


def declared_base(record: ModelRecord) -> list[str]:
    bases = (record.card or {}).get("base_model") or []
    return [str(b)[:MAX_CARD_TEXT] for b in bases][:MAX_TAGS] if isinstance(bases, list) else []


def summary(record: ModelRecord) -> dict[str, Any]:
    """One model in a list: id, status, architecture, created_at, declared base."""
    card = record.card or {}
    return {
        "id": record.id,
        "status": record.status,
        "architecture": record.architecture,
        "model_type": record.model_type,
        "created_at": record.created_at.isoformat() if record.created_at else None,
        "declared_base": declared_base(record),
        "declared_relation": card.get("base_model_relation"),
        "num_parameters": record.num_parameters,
        "num_layers": record.num_layers,
    }


def list_models(
    ws: Workspace, q: str | None, architecture: str | None, status: str | None, limit: int, cursor: str | None
) -> dict[str, Any]:
    """Models by id, filtered by ``q`` (id substring, case-insensitive: a prefix is a substring),
    ``architecture`` (architecture class or model type, case-insensitive) and ``status``;
    ``limit`` per page and ``next``, the cursor of the following page (None on the last)."""
    if not 1 <= limit <= MAX_PAGE:
        raise UsageError(f"limit: between 1 and {MAX_PAGE}")
    where, params = [], []
    if q:
        if len(q) > MAX_QUERY_CHARS:
            raise UsageError(f"q: at most {MAX_QUERY_CHARS} characters")
        where.append("position(lower(?) IN lower(id)) > 0")
        params.append(q)
    if architecture:
        where.append("(lower(architecture) = lower(?) OR lower(model_type) = lower(?))")
        params += [architecture, architecture]
    if status:
        where.append("status = ?")
        params.append(status)
    clause = f"WHERE {' AND '.join(where)}" if where else ""
    conn = ws.store.conn
    total_row = conn.execute(f"SELECT count(*) FROM models {clause}", params).fetchone()
    page_where = list(where)
    page_params = list(params)
    if cursor:
        page_where.append("id > ?")
        page_params.append(decode_cursor(cursor))
    page_clause = f"WHERE {' AND '.join(page_where)}" if page_where else ""
    ids = [
        row[0]
        for row in conn.execute(
            f"SELECT id FROM models {page_clause} ORDER BY id LIMIT ?", [*page_params, limit + 1]
        ).fetchall()
    ]
    more = len(ids) > limit
    ids = ids[:limit]
    records = [ws.store.get_model(model_id) for model_id in ids]
    return {
        "models": [summary(r) for r in records if r is not None],
        "next": encode_cursor(ids[-1]) if more and ids else None,
        "total": int(total_row[0]) if total_row else 0,
    }


# ---- one model ---------------------------------------------------------------------------------


def model_record(ws: Workspace, model_id: str) -> ModelRecord:
    record = ws.store.get_model(model_id)
    if record is None:
        raise ModelNotFoundError(f"{model_id!r} is not in the index")
    return record


def _bounded(value: Any) -> Any:
    if isinstance(value, str):
        return value if len(value) <= MAX_CARD_TEXT else value[: MAX_CARD_TEXT - 3] + "..."
    if isinstance(value, list):
        return [_bounded(v) for v in value[:MAX_TAGS]]
    return value if isinstance(value, (int, float, bool)) or value is None else _bounded(str(value))


def model_detail(ws: Workspace, model_id: str) -> dict[str, Any]:
    """Status (and why, when not indexed), architecture and a config summary, the card's front
    matter (bounded), declared base, creation time, where it was read from and its revision."""
    record = model_record(ws, model_id)
    config = record.config or {}
    return {
        **summary(record),
        "reason": record.error,
        "config": {key: _bounded(config[key]) for key in CONFIG_FIELDS if key in config},
        "hidden_size": record.hidden_size,
        "tokenizer_hash": record.tokenizer_hash,
        "card": {key: _bounded(value) for key, value in (record.card or {}).items()},
        "source": record.source,
        "revision": record.revision,
        "indexed_at": record.indexed_at.isoformat() if record.indexed_at else None,
    }


# ---- a family ----------------------------------------------------------------------------------


def family_json(ws: Workspace, model_id: str, mode: str) -> dict[str, Any]:
    """The model's family in the current graph as node-link JSON: nodes (id, status, latent,
    root, declared base, architecture, created_at), links (source -> target with relation,
    confidence, log10 p, evidence, directed).  A model in no family is a family of one."""
    from pedigree.query.graph import MODES

    if mode not in MODES:
        raise UsageError(f"mode: one of {', '.join(MODES)}")
    record = model_record(ws, model_id)
    graph = ws.family_graph(model_id, mode)
    if graph is None:
        return {
            "model": model_id,
            "mode": mode,
            "graph_build": None,
            "family": None,
            "directed": True,
            "nodes": [{"id": model_id, "status": record.status, "latent": False, "root": True, **_node_facts(record)}],
            "links": [],
        }
    records = {r.id: r for r in (ws.store.get_model(n) for n in graph.nodes) if r is not None}
    nodes = []
    for node, data in sorted(graph.nodes(data=True)):
        latent = bool(data.get("latent"))
        found = records.get(node)
        nodes.append(
            {
                "id": node,
                "status": "latent" if latent else (found.status if found else "unknown"),
                "latent": latent,
                "root": bool(data.get("root")),
                **(
                    _node_facts(found)
                    if found
                    else {"architecture": None, "created_at": None, "declared_base": [], "layers": None}
                ),
            }
        )
    links = [
        {
            "source": u,
            "target": v,
            "relation": data.get("relation"),
            "confidence": data.get("confidence"),
            "log10_p": data.get("log10_p"),
            "evidence": data.get("evidence") or {},
            "directed": bool(data.get("directed", True)),
        }
        for u, v, data in sorted(graph.edges(data=True), key=lambda e: (e[0], e[1]))
    ]
    family = next(iter(graph.nodes(data="family")), (None, None))[1]
    return {
        "model": model_id,
        "mode": mode,
        "graph_build": graph.graph.get("build"),
        "family": family,
        "directed": True,
        "nodes": nodes,
        "links": links,
    }


def _node_facts(record: ModelRecord) -> dict[str, Any]:
    return {
        "architecture": record.architecture,
        "created_at": record.created_at.isoformat() if record.created_at else None,
        "declared_base": declared_base(record),
        "layers": record.num_layers,
    }


def family_file(ws: Workspace, model_id: str, fmt: str, mode: str) -> bytes:
    """The family as a GraphML or GEXF file (``pedigree.query.graph.export``'s writers)."""
    model_record(ws, model_id)
    with tempfile.TemporaryDirectory(prefix="pedigree-family-") as folder:
        path = Path(folder) / f"family.{fmt}"
        ws.export_graph(fmt, path, family_of=model_id, mode=mode)
        return path.read_bytes()


def download_name(model_id: str, fmt: str) -> str:
    safe = "".join(c if c.isalnum() or c in "-._" else "_" for c in model_id)
    return f"{safe}.family.{fmt}"
