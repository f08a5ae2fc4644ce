"""PyTorch zip checkpoints (issue 16): a zoo model re-saved by ``torch.save`` as ``pytorch_model.bin``
and as two shards with ``pytorch_model.bin.index.json`` reads bit for bit like its safetensors,
locally and through the bundled Hub server, and is indexed as a ``copy`` of its source - all
without unpickling (the restricted reader of ``indexer.torch_zip_format``)."""

from __future__ import annotations

import io
import json
import shutil
import struct
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from cli_runner import cli
from huggingface_hub import HfApi
from safetensors.torch import load_file

from bench.hub_faults import FaultyHub
from pedigree.crawler.http_retry import RetryPolicy
from pedigree.crawler.http_source import HubCheckpoint
from pedigree.errors import CheckpointError
from pedigree.indexer.local_checkpoint import LocalCheckpoint
from pedigree.indexer.safetensors_format import TORCH_INDEX, choose_weight_files
from pedigree.indexer.sources import TensorSource

SOURCE = "llama-lab/tiny-llama-s1"
SINGLE = "reuploads/tiny-llama-s1-bin"
SHARDED = "reuploads/tiny-llama-s1-bin-sharded"
SIDE_FILES = ("config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")
FAST = RetryPolicy(attempts=4, base_delay=0.01, max_delay=0.2, jitter=0.1)


def write_bin_copies(source: Path, root: Path) -> None:
    """``SINGLE`` (one ``pytorch_model.bin``) and ``SHARDED`` (two shards and their index) made from
    the safetensors of ``source`` with torch.save's zip format, config and tokenizer copied."""
    state = load_file(str(source / "model.safetensors"))
    for repo in (SINGLE, SHARDED):
        (root / repo).mkdir(parents=True)
        for name in SIDE_FILES:
            shutil.copy(source / name, root / repo / name)
    torch.save(state, root / SINGLE / "pytorch_model.bin", _use_new_zipfile_serialization=True)
    names = sorted(state)
    halves = {1: names[: len(names) // 2], 2: names[len(names) // 2 :]}
    weight_map = {}
    for part, chosen in halves.items():
        shard = f"pytorch_model-{part:05d}-of-00002.bin"
        torch.save({n: state[n] for n in chosen}, root / SHARDED / shard, _use_new_zipfile_serialization=True)
        weight_map |= dict.fromkeys(chosen, shard)
    (root / SHARDED / TORCH_INDEX).write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))


@pytest.fixture(scope="module")
def root(small_zoo: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("bin-zoo")
    shutil.copytree(small_zoo / SOURCE, root / SOURCE)
    write_bin_copies(small_zoo / SOURCE, root)
    return root


@pytest.fixture(scope="module")
def reference(small_zoo: Path) -> dict[str, torch.Tensor]:
    return load_file(str(small_zoo / SOURCE / "model.safetensors"))


@pytest.fixture(scope="module")
def hub(root: Path) -> Iterator[FaultyHub]:
    with FaultyHub(root) as server:
        yield server


def same_as_reference(source: TensorSource, reference: dict[str, torch.Tensor]) -> None:
    assert set(source.tensors()) == set(reference)
    for name, expected in reference.items():
        info = source.info(name)
        assert info.dtype == "F32" and info.shape == tuple(expected.shape)
        got = source.read(name)
        assert got.dtype == expected.dtype and torch.equal(got.view(torch.uint8), expected.view(torch.uint8)), name
        if info.rows > 2:
            assert torch.equal(source.read_rows(name, 1, 3), expected[1:3])


@pytest.mark.parametrize("repo", [SINGLE, SHARDED])
def test_local_bin_reads_bit_for_bit(root: Path, reference: dict[str, torch.Tensor], repo: str) -> None:
    with LocalCheckpoint(root / repo) as ck:
        same_as_reference(ck, reference)
        assert ck.files == (["pytorch_model.bin"] if repo == SINGLE else sorted(set(json.loads(
            (root / repo / TORCH_INDEX).read_text())["weight_map"].values())))  # fmt: skip
        assert ck.index_file == (None if repo == SINGLE else TORCH_INDEX)
        assert len(ck.revision()) == 64


def test_header_reads_are_small(root: Path) -> None:
    """Opening reads the end records, central directory, data.pkl and local headers - not the weights."""
    with LocalCheckpoint(root / SINGLE) as ck:
        size = (root / SINGLE / "pytorch_model.bin").stat().st_size
        assert ck.bytes_read < 0.1 * size and ck.bytes_read < 100_000


@pytest.mark.parametrize("repo", [SINGLE, SHARDED])
def test_http_bin_reads_bit_for_bit(hub: FaultyHub, reference: dict[str, torch.Tensor], repo: str) -> None:
    info = HfApi(endpoint=hub.url, token=False).model_info(repo, files_metadata=False)
    files = [s.rfilename for s in info.siblings]
    hub.reset_stats()
    with HubCheckpoint(hub.url, repo, info.sha, files, retry=FAST) as src:
        src.settle()
        header_bytes = src.bytes_read
        assert header_bytes < 300_000 and src.weight_bytes > 900_000  # 64 KiB head + tail + local headers
        same_as_reference(src, reference)


def test_choose_weight_files_prefers_safetensors_and_skips_trainer_files() -> None:
    assert choose_weight_files(["model.safetensors", "pytorch_model.bin"], "x") == ["model.safetensors"]
    assert choose_weight_files(["pytorch_model.bin", TORCH_INDEX], "x") == [TORCH_INDEX]
    assert choose_weight_files(["training_args.bin", "weights.pt"], "x") == ["weights.pt"]
    with pytest.raises(CheckpointError, match="2 PyTorch files"):
        choose_weight_files(["a.bin", "b.pt"], "x")
    with pytest.raises(CheckpointError, match="pickle checkpoints"):
        choose_weight_files(["training_args.bin", "model.ckpt"], "x")


def test_ingest_of_the_bin_copy_beside_its_source_is_a_copy(root: Path, tmp_path: Path) -> None:
    folder = tmp_path / "models"
    for repo in (SOURCE, SINGLE):
        shutil.copytree(root / repo, folder / repo)
    result = cli("ingest", str(folder), "--home", str(tmp_path / "home"))
    assert {m["id"]: m["status"] for m in result["models"]} == {SOURCE: "indexed", SINGLE: "indexed"}
    answer = cli("query", SINGLE, "--home", str(tmp_path / "home"))
    assert answer["root"] == SOURCE and answer["family_size"] == 2
    # identical weights: a copy; the lineage stage leaves the direction of identical uploads
    # without timestamps undetermined (a sibling edge, no parent)
    (edge,) = answer["siblings"]
    assert edge["id"] == SOURCE and edge["relation"] == "copy" and edge["evidence"]["directed"] is False
    assert edge["evidence"]["distance"] == 0.0 and edge["log10_p"] < -100


def test_refresh_indexes_a_repo_whose_weights_are_only_a_bin(root: Path, tmp_path: Path) -> None:
    hub_root = tmp_path / "hub"
    for repo in (SOURCE, SINGLE):
        shutil.copytree(root / repo, hub_root / repo)
    with FaultyHub(hub_root) as server:
        summary = cli("refresh", "--endpoint", server.url, "--home", str(tmp_path / "home"))
    by_id = {r["id"]: r for r in summary["repos"]}
    assert {r: by_id[r]["status"] for r in by_id} == {SOURCE: "indexed", SINGLE: "indexed"}
    assert 0 < by_id[SINGLE]["bytes_read"] <= 1.05 * by_id[SINGLE]["size_bytes"] + 64 * 2**20
    answer = cli("query", SINGLE, "--home", str(tmp_path / "home"))
    # the Hub gives upload times: the older upload (the source) is the original, directed by time
    (edge,) = answer["parents"] + answer["siblings"]
    assert edge["id"] == SOURCE and edge["relation"] == "copy"
    assert edge["evidence"]["directed"] == ("time" in edge["evidence"]["signals"])


def zip64_archive(entries: list[tuple[str, bytes]]) -> bytes:
    """A stored archive as torch writes files over 4 GiB, small: every size and offset in ZIP64
    extra fields (0xFFFFFFFF in the 32-bit ones), 8-byte data descriptors, a ZIP64 end record and
    locator before an end record of 0xFFFF counts."""
    out, records = bytearray(), []
    for name, data in entries:
        offset, raw, crc = len(out), name.encode(), zlib.crc32(data)
        extra = struct.pack("<HHQQ", 1, 16, len(data), len(data))
        out += struct.pack("<IHHHHHIIIHH", 0x04034B50, 45, 8, 0, 0, 0, 0, 2**32 - 1, 2**32 - 1, len(raw), len(extra))
        out += raw + extra + data + struct.pack("<IIQQ", 0x08074B50, crc, len(data), len(data))
        big = struct.pack("<HHQQQ", 1, 24, len(data), len(data), offset)
        records.append(
            struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 45, 45, 8, 0, 0, 0, crc, 2**32 - 1, 2**32 - 1, len(raw),
                        len(big), 0, 0, 0, 0, 2**32 - 1) + raw + big
        )  # fmt: skip
    directory, start = b"".join(records), len(out)
    out += directory
    end = len(out)
    out += struct.pack("<IQHHIIQQQQ", 0x06064B50, 44, 45, 45, 0, 0, len(entries), len(entries), len(directory), start)
    out += struct.pack("<IIQI", 0x07064B50, 0, end, 1)
    return bytes(out + struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, 0xFFFF, 0xFFFF, 2**32 - 1, 2**32 - 1, 0))


def test_a_zip64_archive_reads_like_the_plain_one(tmp_path: Path) -> None:
    state = {"a": torch.arange(12, dtype=torch.bfloat16).reshape(3, 4), "b": torch.tensor([1.5, -2.0])}
    buf = io.BytesIO()
    torch.save(state, buf)
    with zipfile.ZipFile(buf) as z:  # the records as bytes, never unpickled
        entries = [(i.filename, z.read(i)) for i in z.infolist()]
    blob = zip64_archive(entries)
    with zipfile.ZipFile(io.BytesIO(blob)) as z:
        assert z.testzip() is None  # a valid archive by Python's own reader
    (tmp_path / "model.pt").write_bytes(blob)
    with LocalCheckpoint(tmp_path) as ck:
        assert ck.files == ["model.pt"]
        for name, expected in state.items():
            assert torch.equal(ck.read(name), expected)
