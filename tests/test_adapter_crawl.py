"""The crawler lists and indexes PEFT adapter repos (issue 16, part 6): the bundled Hub server
serves the small zoo's llama, LoRA adapters of it written in the test setup (PEFT's layout, as
safetensors and as a ``torch.save`` zip ``adapter_model.bin``), an adapter of a base that is not
indexed, one whose shapes do not fit, and hostile ones (a huge, a deeply nested and a wrongly
typed ``adapter_config.json``; a weights header past the byte budget).  ``pedigree refresh``
through the real CLI reads each by range requests (config and weights header only), gives the
local adapter folder's statuses and the ``adapter`` edge, fails the hostile repos with a reason and
not the run, and reports the bytes read per repo.  The adapters are newer than their base, so the
listing gives them first: they are still placed, being crawled after the rest of the listing."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import torch
from cli_runner import cli

from pedigree.config import Settings
from pedigree.crawler.http_adapter import HEADER_BUDGET
from pedigree.crawler.http_client import hub_client
from pedigree.crawler.http_source import SPECULATIVE_HEADER_READ
from pedigree.crawler.hub_server import HubServer
from pedigree.crawler.listing import ListedRepo, list_changed
from pedigree.indexer.peft_adapter import (
    ADAPTER_BIN,
    ADAPTER_CONFIG,
    ADAPTER_WEIGHTS,
    MAX_ADAPTER_CONFIG_BYTES,
    is_adapter_folder,
)
from pedigree.indexer.pipeline_adapter import ADAPTER_STATUS
from pedigree.query.graph import lineage
from pedigree.workspace import Workspace
from tests.test_peft_adapter import BASE, lora_tensors, write_adapter

LORA, LORA_BIN = "peft-org/llama-lora", "peft-org/llama-lora-bin"
ORPHAN, MISFIT = "peft-org/orphan", "peft-org/misfit"
HOSTILE = {  # repo -> (write_adapter arguments, the start of the reason)
    "hostile/huge-config": (
        {"config": b" " * (MAX_ADAPTER_CONFIG_BYTES + 1)},
        f"is {MAX_ADAPTER_CONFIG_BYTES + 1} bytes, larger than the {MAX_ADAPTER_CONFIG_BYTES}-byte limit",
    ),
    "hostile/deep-config": ({"config": b"[" * 100_000 + b"]" * 100_000}, "adapter_config.json is invalid JSON"),
    "hostile/nested-config": (
        {"config": b'{"r": 4, "x": ' + b"[" * 100 + b"]" * 100 + b"}"},
        "adapter_config.json nests deeper than 64 levels",
    ),
    "hostile/wrong-types": (
        {"config": json.dumps({"base_model_name_or_path": BASE, "r": "4", "target_modules": ["q_proj"]}).encode()},
        "LoRA rank r must be an integer in 1..4096",
    ),
    "hostile/targets-object": (
        {"config": json.dumps({"base_model_name_or_path": BASE, "r": 4, "target_modules": {"q": 1}}).encode()},
        "target_modules must be a name or a list of 1..1024 names",
    ),
}
HUGE_HEADER = "hostile/huge-header"
HUGE = 40 * 2**20


@pytest.fixture(scope="module")
def hub_root(small_zoo: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("adapter-hub")
    shutil.copytree(small_zoo / BASE, root / BASE)
    write_adapter(root / LORA)
    bin_folder = write_adapter(root / LORA_BIN)
    (bin_folder / ADAPTER_WEIGHTS).unlink()
    torch.save(lora_tensors(seed=1), bin_folder / ADAPTER_BIN)  # PEFT's safe_serialization=False: a zip
    write_adapter(root / ORPHAN, base="nobody/missing-base")
    write_adapter(root / MISFIT, tensors=lora_tensors(in_dim=48))
    for repo, (kwargs, _) in HOSTILE.items():
        write_adapter(root / repo, **kwargs)
    huge = write_adapter(root / HUGE_HEADER) / ADAPTER_WEIGHTS
    with huge.open("r+b") as f:  # a header that claims 40 MiB, in a (sparse) file that long
        f.write((HUGE - 8).to_bytes(8, "little"))
        f.truncate(HUGE)
    return root


def size(path: Path) -> int:
    return path.stat().st_size


def test_refresh_indexes_adapter_repos_with_the_statuses_and_edge_of_a_local_adapter(
    hub_root: Path, tmp_path: Path
) -> None:
    home = str(tmp_path / "home")
    with HubServer(hub_root) as server:
        with hub_client(None) as client:
            order = [r.repo_id for r in list_changed(client, server.url, None).repos]
        assert order.index(LORA) < order.index(BASE) and order.index(LORA_BIN) < order.index(BASE)

        summary = cli("refresh", "--endpoint", server.url, "--home", home)
        reports = {r["id"]: r for r in summary["repos"]}
        assert {i: r["status"] for i, r in reports.items()} == {
            BASE: "indexed",
            LORA: "indexed",
            LORA_BIN: "indexed",
            ORPHAN: "unsupported",
            MISFIT: "unsupported",
            **dict.fromkeys(HOSTILE, "failed"),
            HUGE_HEADER: "failed",
        }
        assert reports[ORPHAN]["reason"] == "unsupported: adapter base nobody/missing-base is not indexed"
        assert reports[MISFIT]["reason"].startswith(
            f"unsupported: adapter does not fit base {BASE} (module model.layers.0.self_attn"
        )
        for repo, (_, reason) in HOSTILE.items():  # the repo fails with its reason, the run goes on
            assert reason in reports[repo]["reason"] and "\n" not in reports[repo]["reason"], repo
        assert "would exceed the byte budget" in reports[HUGE_HEADER]["reason"]
        assert {e["id"] for e in summary["errors"]} == {ORPHAN, MISFIT, *HOSTILE, HUGE_HEADER}

        # bytes read per adapter repo: its config and its weights' first (speculative) header read
        for repo in (LORA, ORPHAN, MISFIT):
            weights = hub_root / repo / ADAPTER_WEIGHTS
            expected = size(hub_root / repo / ADAPTER_CONFIG) + min(size(weights), SPECULATIVE_HEADER_READ)
            assert (reports[repo]["bytes_read"], reports[repo]["size_bytes"]) == (expected, size(weights)), repo
        assert 0 < reports[LORA_BIN]["bytes_read"] <= size(hub_root / LORA_BIN / ADAPTER_BIN) + 1024
        assert reports["hostile/huge-config"]["bytes_read"] == min(
            size(hub_root / "hostile/huge-config" / ADAPTER_WEIGHTS), SPECULATIVE_HEADER_READ
        )  # its config was refused by its HEAD size: not one byte of it read
        assert reports[HUGE_HEADER]["bytes_read"] <= HEADER_BUDGET < HUGE

        children = {c["id"]: c["relation"] for c in cli("query", BASE, "--home", home)["children"]}
        assert children == {LORA: "adapter", LORA_BIN: "adapter"}
        models = {m["id"]: m["status"] for m in cli("models", "--home", home)["models"]}
        assert (models[BASE], models[LORA], models[LORA_BIN]) == ("indexed", ADAPTER_STATUS, ADAPTER_STATUS)

        again = cli("refresh", "--endpoint", server.url, "--home", home)  # settled at their shas
        assert again["repos"] == []
        url, sha = server.url, server.store.get(LORA).sha

    with Workspace(Settings(home=Path(home))) as ws:
        record = ws.store.get_model(LORA)
        assert (record.status, record.revision, record.source) == (ADAPTER_STATUS, sha, f"{url}#{LORA}@{sha}")
        assert record.config["peft"]["base_id"] == BASE
        assert ws.store.count_model_vectors(record.pk, ws.version) == 0  # no fingerprint of its own
        for adapter in (LORA, LORA_BIN):  # (`pedigree query ADAPTER` asks for a fingerprint first)
            (parent,) = lineage(ws.store, adapter).parents
            assert (parent.id, parent.relation) == (BASE, "adapter")
            assert parent.evidence == {"peft": True, "rank": 4, "target_modules": ["q_proj", "v_proj"]}


def test_a_crawled_adapter_is_recorded_as_the_same_adapter_ingested_from_a_folder(
    hub_root: Path, tmp_path: Path
) -> None:
    """The folder and the repo give the same record (config, family, sizes) and the same edge.  The
    folder is ingested once the server is gone: the crawled base's shapes come from its evidence."""
    with Workspace(Settings(home=tmp_path / "home")) as ws:
        with HubServer(hub_root) as server:
            ws.crawl(server.url)
        crawled = ws.store.get_model(LORA)
        (outcome,) = ws.ingest(hub_root / LORA, "local/llama-lora").models
        assert (outcome.status, outcome.error) == ("indexed", None)
        local = ws.store.get_model("local/llama-lora")
        fields = ("status", "model_type", "architecture", "family", "hidden_size", "num_layers", "num_parameters")
        assert [getattr(crawled, f) for f in fields] == [getattr(local, f) for f in fields]
        assert crawled.config == local.config
        ws.build_graph()
        for adapter in (LORA, "local/llama-lora"):
            assert [(p.id, p.relation) for p in lineage(ws.store, adapter).parents] == [(BASE, "adapter")]


LAYOUTS = {  # root file names -> read as an adapter?
    (ADAPTER_CONFIG, ADAPTER_WEIGHTS, "README.md", "tokenizer.json"): True,
    (ADAPTER_CONFIG, ADAPTER_BIN, "training_args.bin"): True,
    (ADAPTER_CONFIG,): True,  # no weights: read as an adapter, and failed saying so
    (ADAPTER_CONFIG, ADAPTER_WEIGHTS, "model.safetensors"): False,  # a merged model beside its adapter
    (ADAPTER_CONFIG, "pytorch_model.bin"): False,
    (ADAPTER_CONFIG, "model-q8_0.gguf"): False,
    (ADAPTER_CONFIG, "consolidated.safetensors"): False,
    (ADAPTER_WEIGHTS, "config.json"): False,
    ("checkpoint-100/adapter_config.json", "checkpoint-100/adapter_model.safetensors", "model.safetensors"): False,
}


@pytest.mark.parametrize("names", sorted(LAYOUTS))
def test_a_repo_and_a_folder_of_the_same_files_are_both_adapters_or_neither(names, tmp_path):
    listed = ListedRepo("o/r", None, None, None, names)
    for name in names:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"{}")
    assert listed.adapter_only == is_adapter_folder(tmp_path) == LAYOUTS[names]


def test_an_adapter_repo_without_weights_fails_saying_so(hub_root: Path, tmp_path: Path) -> None:
    root = tmp_path / "hub"
    shutil.copytree(hub_root / BASE, root / BASE)
    (root / "peft-org" / "config-only").mkdir(parents=True)
    shutil.copyfile(hub_root / LORA / ADAPTER_CONFIG, root / "peft-org" / "config-only" / ADAPTER_CONFIG)
    with HubServer(root) as server, Workspace(Settings(home=tmp_path / "home")) as ws:
        summary = ws.crawl(server.url)
        (report,) = [r for r in summary.repos if r.id == "peft-org/config-only"]
        assert report.status == "failed" and report.bytes_read == 0
        assert "adapter has adapter_config.json but no adapter_model.safetensors or adapter_model.bin" in report.reason


def test_an_adapter_crawled_before_its_base_existed_is_placed_once_the_base_is_crawled(
    hub_root: Path, tmp_path: Path
) -> None:
    """Run 1: the base is not on the Hub - the adapter is ``unsupported`` and settled at its sha.
    Run 2 lists only the base (the adapter did not change), and still places the adapter."""
    root = tmp_path / "hub"
    shutil.copytree(hub_root / LORA_BIN, root / LORA_BIN)
    with HubServer(root) as server, Workspace(Settings(home=tmp_path / "home")) as ws:
        first = ws.crawl(server.url)
        assert [(r.id, r.status, r.reason) for r in first.repos] == [
            (LORA_BIN, "unsupported", f"unsupported: adapter base {BASE} is not indexed")
        ]
        shutil.copytree(hub_root / BASE, root / BASE)
        for file in (root / BASE).iterdir():  # pushed now: newer than the adapter, so listed by the next crawl
            os.utime(file)
        server.store.rescan()
        second = ws.crawl(server.url)
        assert [(r.id, r.status) for r in second.repos] == [(BASE, "indexed"), (LORA_BIN, "indexed")]
        assert second.counts["skipped"] == 1  # listed at the mark, settled: taken up as waiting for its base
        assert 0 < second.repos[1].bytes_read <= size(root / LORA_BIN / ADAPTER_BIN) + 1024
        assert ws.store.get_model(LORA_BIN).status == ADAPTER_STATUS
        ws.build_graph()
        assert [(p.id, p.relation) for p in lineage(ws.store, LORA_BIN).parents] == [(BASE, "adapter")]
        assert ws.crawl(server.url).repos == ()  # settled now: nothing is read again
