"""A latent (unindexed) ancestor in a stored lineage graph, answered through the real CLI:
query (text and --json), every export format and the discrepancy report."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import networkx as nx
import numpy as np
import pytest

from pedigree.config import load_settings
from pedigree.storage.db import ModelRecord
from pedigree.storage.lineage import finish_build, start_build, write_families
from pedigree.types import Edge, Status, VectorRow
from pedigree.workspace import Workspace
from tests.cli_runner import cli, cli_text

IDS = ["org/base", "org/own-child", "org/sft-a", "org/sft-b"]


def fingerprint(rng: np.random.Generator, near: np.ndarray, dim: int = 512) -> list[VectorRow]:
    """Model, embedding and two block vectors close to ``near`` (the family's shared direction)."""

    def unit() -> np.ndarray:
        v = (near + 0.1 * rng.standard_normal(dim)).astype(np.float32)
        return v / np.linalg.norm(v)

    return [VectorRow("model", -1, unit()), VectorRow("embedding", -1, unit())] + [
        VectorRow("layer", i, unit()) for i in range(2)
    ]


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """org/base -> org/own-child, and org/base -> (unindexed) -> org/sft-a, org/sft-b."""
    folder = tmp_path_factory.mktemp("latent-home")
    with Workspace(load_settings(folder)) as ws:
        rng = np.random.default_rng(0)
        near = rng.standard_normal(512)
        pk = {
            i: ws.store.save_model(ModelRecord(id=i, status=Status.INDEXED), fingerprint(rng, near), ws.version)
            for i in IDS
        }
        group = ["org/sft-a", "org/sft-b"]

        def edge(child: str, **evidence: object) -> Edge:
            return Edge(pk["org/base"], pk[child], "finetune", 0.9, -40.0, {"directed": True, **evidence})

        edges = [
            edge("org/own-child"),
            edge("org/sft-a", latent_ancestor=group),
            edge("org/sft-b", latent_ancestor=group),
        ]
        build = start_build(ws.store, "full", {})
        ids = write_families(ws.store, build, [("digest", pk["org/base"], list(pk.values()), edges)])
        finish_build(ws.store, build, ids, rebuilt=1)
    return folder


def test_query_names_the_latent_parent_and_the_indexed_ancestor(home: Path):
    answer = cli("query", "org/sft-a", "--home", str(home))
    assert [p["id"] for p in answer["parents"]] == ["latent:org/base#1"]
    assert answer["ancestors"] == ["latent:org/base#1", "org/base"]
    assert answer["family_size"] == 4  # indexed models only
    base = cli("query", "org/base", "--home", str(home))
    assert sorted(c["id"] for c in base["children"]) == ["latent:org/base#1", "org/own-child"]
    text = cli_text("query", "org/sft-a", "--home", str(home))
    assert "derived from latent:org/base#1" in text and "org/sft-a <- latent:org/base#1 <- org/base" in text
    assert "family of 4 models" in text and "latent:org/base#1 (not indexed) (ancestor" in text


def test_exports_carry_the_latent_node(home: Path, tmp_path: Path):
    cli("graph", "export", "--format", "json", "-o", str(tmp_path / "g.json"), "--home", str(home))
    data = json.loads((tmp_path / "g.json").read_text())
    latent = [n for n in data["nodes"] if n["latent"]]
    assert [n["id"] for n in latent] == ["latent:org/base#1"]
    edges = {(e["source"], e["target"]): e["relation"] for e in data["edges"]}
    assert edges[("org/base", "latent:org/base#1")] == "ancestor"
    assert {edges[("latent:org/base#1", c)] for c in ("org/sft-a", "org/sft-b")} == {"finetune"}
    cli("graph", "export", "--format", "graphml", "-o", str(tmp_path / "g.graphml"), "--home", str(home))
    assert nx.read_graphml(tmp_path / "g.graphml").nodes["latent:org/base#1"]["latent"] is True
    cli("graph", "export", "--format", "parquet", "-o", str(tmp_path / "g.parquet"), "--home", str(home))
    rows = duckdb.sql(f"SELECT id FROM '{tmp_path / 'g.nodes.parquet'}' WHERE latent").fetchall()
    assert rows == [("latent:org/base#1",)]


def test_discrepancies_never_suggest_a_card_naming_a_latent_model(home: Path):
    report = cli("discrepancies", "--home", str(home))
    suggested = {u["model"]: u["suggested_card"] for u in report["undeclared"]}
    assert "org/own-child" in suggested and "org/sft-a" not in suggested and "org/sft-b" not in suggested
