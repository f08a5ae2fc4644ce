"""GGUF: a zoo Llama converted in the test setup (tests/gguf_writer.py, llama.cpp's conventions)
reads back row for row; the K-quant dequantizers agree with ggml's reference loops and with
hand-built blocks of known values; a GGUF quantization is found as its source's `quantized` child.
"""

from __future__ import annotations

import json
import shutil
import struct
from pathlib import Path

import gguf
import numpy as np
import pytest
import torch

from pedigree.config import load_settings
from pedigree.errors import CheckpointError
from pedigree.indexer.gguf_checkpoint import GGUFCheckpoint, GGUFTensorInfo
from pedigree.indexer.gguf_format import GGML_TYPES
from pedigree.indexer.gguf_quant import dequantize
from pedigree.indexer.local_checkpoint import LocalCheckpoint, open_checkpoint
from pedigree.indexer.vocabulary import read_vocabulary
from pedigree.workspace import Workspace
from tests.gguf_writer import gguf_folder, source_tensors, write_llama_gguf

SOURCE_ID, OTHER_ID = "llama-lab/tiny-llama-s1", "llama-lab/tiny-llama-s2"
QTYPES = ("F32", "F16", "BF16", "Q8_0", "Q4_0")
TYPE = {t.name: t for t in GGML_TYPES.values()}


@pytest.fixture(scope="session")
def source(small_zoo: Path) -> Path:
    """The zoo Llama every GGUF here is made from (the session's zoo fixture builds it when missing)."""
    return small_zoo / SOURCE_ID


@pytest.fixture(scope="session")
def ggufs(source: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("gguf")
    return {q: gguf_folder(source, root / f"tiny-llama-s1-{q}", q) for q in QTYPES}


def opened(folder: Path) -> GGUFCheckpoint:
    source = open_checkpoint(folder)
    assert isinstance(source, GGUFCheckpoint)
    return source


def block_bound(reference: np.ndarray, qtype: str) -> np.ndarray:
    """Largest error of each element: Q8_0 rounds to d = amax/127 (|e| <= d/2, plus d's fp16
    rounding: 127 * d * 2^-11); Q4_0 to d = amax/8, where the far side clips (|e| <= d)."""
    blocks = np.abs(reference).reshape(-1, 32).max(axis=1, keepdims=True)
    step = blocks / 127 * 0.57 if qtype == "Q8_0" else blocks / 8 * 1.07
    return np.broadcast_to(step, (len(blocks), 32)).reshape(reference.shape) + 1e-7


@pytest.mark.parametrize("qtype", QTYPES)
def test_rows_read_equal_the_source(ggufs: dict[str, Path], source: Path, qtype: str) -> None:
    reference = source_tensors(source)
    with opened(ggufs[qtype]) as source:
        assert set(source.tensors()) == set(reference)
        for name, info in source.tensors().items():
            assert isinstance(info, GGUFTensorInfo)
            want = reference[name]
            got = source.read(name)
            assert tuple(got.shape) == want.shape
            rows = source.read_rows(name, 5, min(37, info.rows))  # crosses heads of the permuted q/k
            assert torch.equal(rows, got[5 : min(37, info.rows)])
            stored = info.dtype
            if stored in ("F32", "F16", "BF16"):
                cast = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16}[stored]
                assert got.dtype == cast
                assert torch.equal(got, torch.from_numpy(want).to(cast)), name  # bit-exact, q/k un-permuted
            else:
                assert stored == qtype and got.dtype == torch.float32
                assert np.all(np.abs(got.numpy() - want) <= block_bound(want, qtype)), name


def test_metadata_gives_config_and_vocabulary(ggufs: dict[str, Path], source: Path) -> None:
    config = json.loads((source / "config.json").read_text())
    reference = read_vocabulary(LocalCheckpoint(source))
    with opened(ggufs["Q8_0"]) as source:
        built = source.read_json("config.json")
        for key in ("hidden_size", "num_hidden_layers", "intermediate_size", "num_attention_heads"):
            assert built[key] == config[key]
        assert built["num_key_value_heads"] == config["num_key_value_heads"]
        assert built["model_type"] == "llama" and built["architectures"] == ["LlamaForCausalLM"]
        assert built["tie_word_embeddings"] is False
        vocabulary = read_vocabulary(source)
    assert vocabulary is not None and reference is not None
    assert vocabulary.tokens == reference.tokens and vocabulary.style == reference.style == "metaspace"


def test_only_the_blocks_of_the_rows_asked_are_read(ggufs: dict[str, Path]) -> None:
    with opened(ggufs["Q4_0"]) as source:
        info = source.info("model.embed_tokens.weight")
        before = source.bytes_read
        source.read_rows("model.embed_tokens.weight", 10, 12)
        assert source.bytes_read - before == 2 * info.row_nbytes


def test_an_unsupported_type_is_refused_naming_it(source: Path, tmp_path: Path) -> None:
    write_llama_gguf(source, tmp_path / "model.gguf", "Q4_1")
    with opened(tmp_path) as source:
        with pytest.raises(CheckpointError, match="ggml type Q4_1, which pedigree does not decode"):
            source.read_rows("model.layers.0.self_attn.q_proj.weight", 0, 1)


# -- K-quants: ggml's reference loops (ggml-quants.c dequantize_row_*), one value at a time -----


def _f16(raw: bytes) -> float:
    return float(np.frombuffer(raw, dtype="<f2")[0])


def _scale_min_k4(j: int, q: bytes) -> tuple[int, int]:
    if j < 4:
        return q[j] & 63, q[j + 4] & 63
    return (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4), (q[j + 4] >> 4) | ((q[j] >> 6) << 4)


def reference_q4_k(b: bytes) -> list[float]:
    d, dmin, scales, q = _f16(b[0:2]), _f16(b[2:4]), b[4:16], b[16:144]
    y = []
    for j in range(4):
        sc1, m1 = _scale_min_k4(2 * j, scales)
        sc2, m2 = _scale_min_k4(2 * j + 1, scales)
        y += [np.float32(d * sc1) * (q[32 * j + i] & 0xF) - np.float32(dmin * m1) for i in range(32)]
        y += [np.float32(d * sc2) * (q[32 * j + i] >> 4) - np.float32(dmin * m2) for i in range(32)]
    return y


def reference_q5_k(b: bytes) -> list[float]:
    d, dmin, scales, qh, ql = _f16(b[0:2]), _f16(b[2:4]), b[4:16], b[16:48], b[48:176]
    y = []
    for j in range(4):
        sc1, m1 = _scale_min_k4(2 * j, scales)
        sc2, m2 = _scale_min_k4(2 * j + 1, scales)
        u1, u2 = 1 << (2 * j), 2 << (2 * j)
        y += [
            np.float32(d * sc1) * ((ql[32 * j + i] & 0xF) + (16 if qh[i] & u1 else 0)) - np.float32(dmin * m1)
            for i in range(32)
        ]
        y += [
            np.float32(d * sc2) * ((ql[32 * j + i] >> 4) + (16 if qh[i] & u2 else 0)) - np.float32(dmin * m2)
            for i in range(32)
        ]
    return y


def reference_q6_k(b: bytes) -> list[float]:
    d = _f16(b[208:210])
    y = [0.0] * 256
    for n in range(2):
        ql, qh = b[64 * n : 64 * n + 64], b[128 + 32 * n : 128 + 32 * n + 32]
        sc = np.frombuffer(b[192 + 8 * n : 192 + 8 * n + 8], dtype=np.int8)
        for i in range(32):
            is_ = i // 16
            q1 = ((ql[i] & 0xF) | (((qh[i] >> 0) & 3) << 4)) - 32
            q2 = ((ql[i + 32] & 0xF) | (((qh[i] >> 2) & 3) << 4)) - 32
            q3 = ((ql[i] >> 4) | (((qh[i] >> 4) & 3) << 4)) - 32
            q4 = ((ql[i + 32] >> 4) | (((qh[i] >> 6) & 3) << 4)) - 32
            for k, q in enumerate((q1, q2, q3, q4)):
                y[128 * n + i + 32 * k] = np.float32(d * int(sc[is_ + 2 * k])) * q
    return y


REFERENCES = {"Q4_K": reference_q4_k, "Q5_K": reference_q5_k, "Q6_K": reference_q6_k}
HALF_OFFSETS = {"Q4_K": (0, 2), "Q5_K": (0, 2), "Q6_K": (208,)}


def random_blocks(qtype: str, count: int, seed: int) -> bytes:
    """Random bytes with finite, moderate fp16 scales where the layout puts them."""
    rng = np.random.default_rng(seed)
    blocks = rng.integers(0, 256, size=(count, TYPE[qtype].type_size), dtype=np.uint8)
    for offset in HALF_OFFSETS[qtype]:
        scales = rng.uniform(-0.05, 0.05, size=count).astype("<f2")
        blocks[:, offset : offset + 2] = scales.view(np.uint8).reshape(count, 2)
    return blocks.tobytes()


@pytest.mark.parametrize("qtype", sorted(REFERENCES))
def test_k_quants_match_ggml_reference_loops(qtype: str) -> None:
    data = random_blocks(qtype, 6, seed=len(qtype) + ord(qtype[1]))
    size = TYPE[qtype].type_size
    want = [v for i in range(6) for v in REFERENCES[qtype](data[i * size : (i + 1) * size])]
    got = dequantize(data, TYPE[qtype])
    assert got.dtype == np.float32 and got.shape == (6 * 256,)
    np.testing.assert_allclose(got, np.array(want, dtype=np.float32), rtol=1e-6, atol=1e-7)


def test_q4_k_hand_built_block_gives_known_values() -> None:
    """d = 0.5, dmin = 0.25; sub-block j has scale j+1 and min j (6-bit packing of
    get_scale_min_k4: j < 4 in the low 6 bits of bytes j and j+4, j >= 4 split over byte j+4's
    nibbles and the top 2 bits of bytes j-4 and j); every quant of sub-block j is j+3."""
    sc, mn = list(range(1, 9)), list(range(8))
    scales = bytearray(12)
    for j in range(4):
        scales[j] = sc[j] | ((sc[j + 4] >> 4) << 6)
        scales[j + 4] = mn[j] | ((mn[j + 4] >> 4) << 6)
        scales[j + 8] = (sc[j + 4] & 0xF) | ((mn[j + 4] & 0xF) << 4)
    qs = bytes((2 * j + 3) | ((2 * j + 1 + 3) << 4) for j in range(4) for _ in range(32))
    block = struct.pack("<ee", 0.5, 0.25) + bytes(scales) + qs
    want = np.repeat([0.5 * (j + 1) * (j + 3) - 0.25 * j for j in range(8)], 32)
    np.testing.assert_array_equal(dequantize(block, TYPE["Q4_K"]), want.astype(np.float32))


def test_q6_k_hand_built_block_gives_known_values() -> None:
    """d = 0.5, scales[s] = s - 8, every 6-bit quant 40 (ql nibbles 8, qh bit pairs 2): x = 0.5*(s-8)*8."""
    ql, qh = bytes([0x88] * 128), bytes([0b10101010] * 64)
    block = ql + qh + np.arange(-8, 8, dtype=np.int8).tobytes() + struct.pack("<e", 0.5)
    want = np.repeat([0.5 * (s - 8) * 8 for s in range(16)], 16)
    np.testing.assert_array_equal(dequantize(block, TYPE["Q6_K"]), want.astype(np.float32))


def test_q5_k_fifth_bit_adds_sixteen() -> None:
    """Q4_K's hand-built block with every qh bit set: each value grows by d*sc*16."""
    scales = bytes([1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1, 1])  # sc = 1, min = 0 for all eight sub-blocks
    block = struct.pack("<ee", 1.0, 0.0) + scales + bytes([0xFF] * 32) + bytes([0x21] * 128)
    want = np.tile(np.repeat([1 + 16, 2 + 16], 32), 4)
    np.testing.assert_array_equal(dequantize(block, TYPE["Q5_K"]), want.astype(np.float32))


def test_q8_0_and_q4_0_agree_with_the_writers_quantizer() -> None:
    """What gguf's (ggml-exact) quantizers wrote decodes to values on their grids."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4, 64)).astype(np.float32)
    for qtype in ("Q8_0", "Q4_0"):
        data = gguf.quants.quantize(x, getattr(gguf.GGMLQuantizationType, qtype)).tobytes()
        got = dequantize(data, TYPE[qtype]).reshape(x.shape)
        assert np.all(np.abs(got - x) <= block_bound(x, qtype))


# -- ingest: the GGUF beside its source ------------------------------------------------------


def test_gguf_quantizations_are_quantized_children_of_their_source(
    ggufs: dict[str, Path], small_zoo: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    root = tmp_path_factory.mktemp("gguf-ingest")
    models = root / "models"
    for folder in (small_zoo / SOURCE_ID, small_zoo / OTHER_ID):
        shutil.copytree(folder, models / "llama-lab" / folder.name)
    for qtype in ("F16", "Q8_0", "Q4_0"):
        shutil.copytree(ggufs[qtype], models / "ggufers" / ggufs[qtype].name)
    with Workspace(load_settings(root / "home")) as ws:
        result = ws.ingest(models)
        assert {m.id: m.status for m in result.models} == dict.fromkeys(
            [f"ggufers/tiny-llama-s1-{q}" for q in ("F16", "Q4_0", "Q8_0")]
            + ["llama-lab/tiny-llama-s1", "llama-lab/tiny-llama-s2"],
            "indexed",
        )
        confirmed = {frozenset((c.a, c.b)) for c in result.confirmations if c.confirmed}
        for qtype in ("Q8_0", "Q4_0"):
            child = f"ggufers/tiny-llama-s1-{qtype}"
            assert frozenset((child, "llama-lab/tiny-llama-s1")) in confirmed
            assert frozenset((child, "llama-lab/tiny-llama-s2")) not in confirmed
            parents = ws.query(child).parents
            assert [(p.id, p.relation) for p in parents] == [("llama-lab/tiny-llama-s1", "quantized")]
            assert parents[0].evidence["signals"]["quantized"] == 1  # the direction comes from the weights
        copy = "ggufers/tiny-llama-s1-F16"
        assert frozenset((copy, "llama-lab/tiny-llama-s1")) in confirmed
        answer = ws.query(copy)  # a bit-for-bit copy in F16: no signal says which came first
        links = answer.parents + answer.children + answer.siblings
        assert [(link.id, link.relation) for link in links] == [("llama-lab/tiny-llama-s1", "copy")]


def test_a_gguf_repo_reads_the_same_over_http_range_requests(ggufs: dict[str, Path], tmp_path: Path) -> None:
    from pedigree.crawler.http_gguf import open_hub_gguf
    from pedigree.crawler.hub_server import HubServer

    shutil.copytree(ggufs["Q4_0"], tmp_path / "ggufers" / "q4")
    with HubServer(tmp_path) as server, opened(ggufs["Q4_0"]) as local:
        repo = server.store.get("ggufers/q4")
        with open_hub_gguf(server.url, "ggufers/q4", repo.sha, list(repo.files)) as remote:
            assert set(remote.tensors()) == set(local.tensors())
            for name in local.tensors():
                assert torch.equal(remote.read_rows(name, 0, 3), local.read_rows(name, 0, 3))
            assert remote.read_json("config.json") == local.read_json("config.json")
            assert remote.read_bytes("README.md") == (ggufs["Q4_0"] / "README.md").read_bytes()
            assert remote.read_bytes("tokenizer.model") is None
            assert remote.revision() == repo.sha
