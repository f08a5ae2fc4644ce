"""UNets answered from the index (issue 16, part 5): ingest captures each UNet's evidence into the
evidence store (``indexer.unet_evidence``), the UNet relatedness answers and lineage come from it
alone, and the UNet families are part of the main lineage graph (``indexer.lineage.build``).

The digits diffusion zoo (``pedigree.zoo.unet_zoo``, real CPU-trained denoisers) is copied to a
temporary folder, ingested with the real CLI and the copy DELETED; every answer is then compared
with the one computed from the live folders before the deletion."""

from __future__ import annotations

import json
import shutil
from itertools import combinations
from pathlib import Path
from typing import Any

import httpx
import pytest
import torch

from pedigree.config import load_settings
from pedigree.indexer.local_checkpoint import open_checkpoint
from pedigree.indexer.pipeline_unet import UNET_STATUS, stored_unet
from pedigree.indexer.unet import UNetEvidence, unet_evidence, unet_test
from pedigree.indexer.unet_evidence import UNET_CAPTURE_VERSION
from pedigree.indexer.unet_lineage import unet_lineage
from pedigree.query.graph import lineage
from pedigree.workspace import Workspace
from pedigree.workspace_unet import unet_graph

BASE = "pixel-lab/tiny-unet"
FINETUNE = "evens-co/tiny-unet-even"


@pytest.fixture(scope="session")
def unet_zoo() -> Path:
    from bench.unet_lineage import unet_zoo_path

    return unet_zoo_path()


@pytest.fixture(scope="session")
def live(unet_zoo: Path) -> dict[str, Any]:
    """Evidence, every pair's test and the weights-only lineage, read from the zoo's folders."""
    truth = json.loads((unet_zoo / "truth.json").read_text())
    evidence: dict[str, UNetEvidence] = {}
    for model in sorted(truth):
        with open_checkpoint(unet_zoo / model) as source:
            evidence[model] = unet_evidence(source, model)
    tests = {frozenset((a, b)): unet_test(evidence[a], evidence[b]) for a, b in combinations(sorted(evidence), 2)}
    return {"truth": truth, "evidence": evidence, "tests": tests, "graph": unet_lineage(evidence, tests)}


@pytest.fixture(scope="session")
def gone_home(unet_zoo: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data folder with the zoo ingested by the real CLI from a copy that is then deleted."""
    from cli_runner import cli

    copy = tmp_path_factory.mktemp("unet-copy") / "zoo"
    shutil.copytree(unet_zoo, copy)
    home = tmp_path_factory.mktemp("unet-store-home")
    result = cli("ingest", str(copy), "--home", str(home))
    assert result["counts"]["indexed"] == 9, result
    shutil.rmtree(copy)
    assert not copy.exists()
    return home


def _same_evidence(a: UNetEvidence, b: UNetEvidence) -> None:
    assert len(a.blocks) == len(b.blocks)
    for x, y in zip(a.blocks, b.blocks):
        assert x.shape == y.shape
        assert x.signature.dtype == y.signature.dtype and (x.signature == y.signature).all()
        assert x.read.dtype == y.read.dtype and (x.read == y.read).all()
        assert x.write.dtype == y.write.dtype and (x.write == y.write).all()
        assert x.raw.dtype == y.raw.dtype and torch.equal(x.raw, y.raw)
    assert sorted(a.sketch) == sorted(b.sketch)
    assert all(a.sketch[n].dtype == b.sketch[n].dtype and torch.equal(a.sketch[n], b.sketch[n]) for n in a.sketch)
    assert a.roles == b.roles


def test_ingest_captures_each_unet_and_the_stored_evidence_is_the_live_one(gone_home: Path, live: dict) -> None:
    with Workspace(load_settings(gone_home)) as ws:
        records = ws.models(UNET_STATUS)
        assert {r.id for r in records} == set(live["truth"])
        rows = ws.store.conn.execute("SELECT model_pk, version, file, bytes FROM evidence").fetchall()
        assert {r[1] for r in rows} == {UNET_CAPTURE_VERSION} and len(rows) == len(records)
        for _, _, name, size in rows:
            assert (gone_home / "evidence" / name).stat().st_size == size
        # the recorded folders are gone; the stored evidence equals what the folders gave
        for record in records:
            assert record.source is not None and not Path(record.source).exists()
            stored = stored_unet(ws.store, record)
            try:
                _same_evidence(stored.evidence, live["evidence"][record.id])
            finally:
                stored.close()


def test_relatedness_and_lineage_after_deletion_equal_the_live_answers(gone_home: Path, live: dict) -> None:
    with Workspace(load_settings(gone_home)) as ws:
        found = unet_graph(ws.store)
    assert not found.unreadable
    assert found.tests == live["tests"]  # every statistic and log10 p, exactly
    graph = live["graph"]
    assert sorted(found.graph.edges(data=True)) == sorted(graph.edges(data=True))
    assert dict(found.graph.nodes(data=True)) == dict(graph.nodes(data=True))
    assert found.graph.has_edge(BASE, FINETUNE)


def test_unet_families_are_in_the_main_graph(gone_home: Path, live: dict) -> None:
    from cli_runner import cli

    exported = gone_home.parent / "graph.json"
    cli("graph", "export", "--format", "json", "-o", str(exported), "--home", str(gone_home))
    data = json.loads(exported.read_text())
    edges = {(e["source"], e["target"]): e for e in data["edges"]}
    nodes = {n["id"] for n in data["nodes"]}
    assert nodes == set(live["truth"])
    with Workspace(load_settings(gone_home)) as ws:
        full = unet_graph(ws.store, mode="full")  # the build's mode: creation dates bound the direction
    assert set(edges) == set(full.graph.edges())
    for (u, v), edge in edges.items():
        assert edge["relation"] == full.graph.edges[u, v]["relation"]
        assert edge["log10_p"] == full.tests[frozenset((u, v))]["log10_p"] < -20
        assert edge["evidence"]["test"] == "unet" and edge["directed"]
    assert edges[(BASE, FINETUNE)]["relation"] == "finetune"
    assert edges[(BASE, "lora-shop/tiny-unet-17-lora")]["relation"] == "adapter"
    merge = "soup/tiny-unet-merge"
    assert {u for u, v in edges if v == merge} == set(live["truth"][merge]["parents"])
    # the weights-mode build equals the weights-only UNet lineage computed from the live folders
    cli("graph", "build", "--mode", "weights", "--home", str(gone_home))
    cli("graph", "export", "--format", "json", "--mode", "weights", "-o", str(exported), "--home", str(gone_home))
    weights = {(e["source"], e["target"]) for e in json.loads(exported.read_text())["edges"]}
    assert weights == set(live["graph"].edges())


def test_a_second_build_reuses_the_unet_families(gone_home: Path) -> None:
    from cli_runner import cli

    first = cli("graph", "build", "--home", str(gone_home))
    again = cli("graph", "build", "--home", str(gone_home))
    assert again["build_id"] == first["build_id"] and again["rebuilt"] == 0
    assert again["models"] == 9 and again["families"] == 3 and again["reused"] == 3


def test_lineage_of_a_unet_names_its_parent(gone_home: Path) -> None:
    from serving import served

    with Workspace(load_settings(gone_home)) as ws:
        answer = lineage(ws.store, FINETUNE)
        assert [(p.id, p.relation) for p in answer.parents] == [(BASE, "finetune")]
        assert answer.family_size == 6 and answer.root == BASE
        assert {c.id for c in lineage(ws.store, BASE).children} >= {FINETUNE, "lora-shop/tiny-unet-17-lora"}
    with served(gone_home) as app:
        body = httpx.get(f"{app.url}/api/models/{FINETUNE}/lineage", timeout=30).json()
    assert [(p["id"], p["relation"]) for p in body["parents"]] == [(BASE, "finetune")]
    assert body["family_size"] == 6


def test_cli_query_of_a_unet_names_its_parent(gone_home: Path) -> None:
    from cli_runner import cli, cli_text

    answer = cli("query", FINETUNE, "--home", str(gone_home))
    assert [p["id"] for p in answer["parents"]] == [BASE]
    assert f"derived from {BASE}" in cli_text("query", FINETUNE, "--home", str(gone_home))


def test_missing_evidence_is_backfilled_while_the_folder_exists(unet_zoo: Path, tmp_path: Path) -> None:
    from cli_runner import cli

    models = tmp_path / "models"
    for model in (BASE, FINETUNE):
        shutil.copytree(unet_zoo / model, models / model)
    home = tmp_path / "home"
    cli("ingest", str(models), "--home", str(home))
    with Workspace(load_settings(home)) as ws:
        record = ws.store.get_model(FINETUNE)
        assert record is not None
        (name,) = ws.store.conn.execute("SELECT file FROM evidence WHERE model_pk = ?", [record.pk]).fetchone()
        (home / "evidence" / name).write_bytes(b"PK\x03\x04 not an evidence file")  # damaged
        before = unet_graph(ws.store)
        assert not before.unreadable and before.graph.has_edge(BASE, FINETUNE)  # captured again from the folder
        assert (home / "evidence" / name).stat().st_size > 1000
        shutil.rmtree(models / FINETUNE)
        (home / "evidence" / name).unlink()
        after = unet_graph(ws.store)
    assert list(after.unreadable) == [FINETUNE]
    assert "evidence missing: source unavailable" in after.unreadable[FINETUNE]
    assert not after.tests and list(after.graph.nodes) == [BASE]
