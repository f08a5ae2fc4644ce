"""The crawler lists and reads GGUF-only repos (issue 16, part 6): the bundled Hub server serves a
zoo Llama, an unrelated one and the first one's Q8_0 GGUF (written in the test setup by
tests/gguf_writer.py); ``Workspace.refresh`` indexes all three through HTTP range requests, places
the GGUF as the ``quantized`` child of its source, and sets aside a repo of several ``.gguf`` files
as ``unsupported`` naming them.  The crawled GGUF reopens from its recorded URI."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from pedigree.config import load_settings
from pedigree.crawler.http_gguf import HubGGUFCheckpoint
from pedigree.crawler.hub_server import HubServer
from pedigree.crawler.remote import hub_uri, open_hub
from pedigree.indexer.gguf_checkpoint import open_gguf_folder
from pedigree.workspace import Workspace
from tests.gguf_writer import gguf_folder

SOURCE_ID, OTHER_ID = "llama-lab/tiny-llama-s1", "llama-lab/tiny-llama-s2"
GGUF_ID, VARIANTS_ID = "ggufers/tiny-llama-s1-q8", "ggufers/tiny-llama-s1-variants"


@pytest.fixture(scope="module")
def hub_root(small_zoo: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("gguf-hub")
    for model in (SOURCE_ID, OTHER_ID):
        shutil.copytree(small_zoo / model, root / model)
    gguf_folder(small_zoo / SOURCE_ID, root / GGUF_ID, "Q8_0")
    variants = gguf_folder(small_zoo / SOURCE_ID, root / VARIANTS_ID, "Q8_0")
    shutil.copyfile(variants / "model-Q8_0.gguf", variants / "model-Q8_0-copy.gguf")
    return root


def test_refresh_indexes_a_gguf_repo_as_the_quantized_child_of_its_source(hub_root: Path, tmp_path: Path) -> None:
    with HubServer(hub_root) as server, Workspace(load_settings(tmp_path / "home")) as ws:
        summary = ws.refresh(server.url)
        reports = {r.id: r for r in summary.repos}
        assert {i: r.status for i, r in reports.items()} == {
            SOURCE_ID: "indexed",
            OTHER_ID: "indexed",
            GGUF_ID: "indexed",
            VARIANTS_ID: "unsupported",
        }
        assert reports[VARIANTS_ID].reason == (
            "unsupported: 2 GGUF files (model-Q8_0-copy.gguf, model-Q8_0.gguf); "
            "pedigree reads a repo whose weights are one .gguf"
        )
        gguf = reports[GGUF_ID]
        size = (hub_root / GGUF_ID / "model-Q8_0.gguf").stat().st_size
        assert gguf.size_bytes == size
        assert 0 < gguf.bytes_read <= 1.05 * size + 64 * 2**20  # the safetensors repos' budget
        assert [e.id for e in summary.errors] == [VARIANTS_ID]

        parents = ws.query(GGUF_ID).parents
        assert [(p.id, p.relation) for p in parents] == [(SOURCE_ID, "quantized")]
        assert parents[0].log10_p < -12  # confirmed by the independence tests, not by name
        assert parents[0].evidence["signals"]["quantized"] == 1  # the direction comes from the weights
        assert GGUF_ID not in {p.id for p in ws.query(OTHER_ID).parents + ws.query(OTHER_ID).children}

        again = ws.refresh(server.url)  # settled at its sha: nothing listed is read again
        assert again.repos == ()


def test_a_crawled_gguf_reopens_from_its_uri(hub_root: Path) -> None:
    with HubServer(hub_root) as server:
        sha = server.store.get(GGUF_ID).sha
        with open_hub(hub_uri(server.url, GGUF_ID, sha)) as remote:
            assert isinstance(remote, HubGGUFCheckpoint)
            with open_gguf_folder(hub_root / GGUF_ID, "model-Q8_0.gguf") as local:
                assert set(remote.tensors()) == set(local.tensors())
                name = "model.layers.0.self_attn.q_proj.weight"
                assert torch.equal(remote.read_rows(name, 3, 9), local.read_rows(name, 3, 9))
            assert remote.revision() == sha
            assert remote.weight_bytes == (hub_root / GGUF_ID / "model-Q8_0.gguf").stat().st_size
