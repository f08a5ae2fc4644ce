"""Tensor sources: round trips, row reads, byte accounting, text files and revisions."""

from __future__ import annotations

import builtins
import json
import os
import struct
import tempfile
from pathlib import Path

import pytest
import torch
from hostile import (
    raw_safetensors,
    tiny_llama_state_dict,
    write_pickle_only,
    write_valid_sharded_tiny_llama,
    write_valid_tiny_llama,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import save_file

from pedigree.errors import CheckpointError
from pedigree.indexer import safetensors_format as fmt
from pedigree.indexer.local_checkpoint import LocalCheckpoint, open_checkpoint
from pedigree.indexer.sources import StateDictSource

ALL_DTYPES = [
    torch.bfloat16,
    torch.float16,
    torch.float32,
    torch.float64,
    torch.int8,
    torch.uint8,
    torch.int16,
    torch.int32,
    torch.int64,
    torch.bool,
    torch.uint16,
    torch.uint32,
    torch.uint64,
    torch.complex64,
    torch.float8_e4m3fn,
    torch.float8_e5m2,
    torch.float8_e4m3fnuz,
    torch.float8_e5m2fnuz,
    torch.float8_e8m0fnu,
]


def random_tensor(dtype: torch.dtype, shape: tuple[int, ...], seed: int = 0) -> torch.Tensor:
    """Arbitrary bit patterns (NaNs included) for every dtype; 0/1 for bool."""
    g = torch.Generator().manual_seed(seed)
    if dtype == torch.bool:
        return torch.randint(0, 2, shape, generator=g).bool()
    n = torch.Size(shape).numel() * dtype.itemsize
    return torch.randint(0, 256, (n,), generator=g, dtype=torch.uint8).view(dtype).reshape(shape)


def same_bits(a: torch.Tensor, b: torch.Tensor) -> bool:
    return (
        a.dtype == b.dtype
        and a.shape == b.shape
        and torch.equal(a.reshape(-1).view(torch.uint8), b.reshape(-1).view(torch.uint8))
    )


def header_size(path: Path) -> int:
    with open(path, "rb") as f:
        return 8 + struct.unpack("<Q", f.read(8))[0]


@pytest.mark.parametrize("dtype", ALL_DTYPES, ids=str)
def test_round_trip_every_dtype(tmp_path: Path, dtype: torch.dtype) -> None:
    sd = {
        "a": random_tensor(dtype, (5, 3), 1),
        "scalar": random_tensor(dtype, (), 2),
        "empty": random_tensor(dtype, (0, 4), 3),
        "vec": random_tensor(dtype, (7,), 4),
    }
    save_file(sd, str(tmp_path / "model.safetensors"))
    with open_checkpoint(tmp_path) as ck:
        assert set(ck.tensors()) == set(sd)
        for name, t in sd.items():
            got = ck.read(name)
            assert same_bits(got, t), name
            assert ck.info(name).shape == tuple(t.shape)
            assert got.data_ptr() % 64 == 0 or got.numel() == 0


def test_bool_bytes_are_normalised() -> None:
    t = fmt.decode(b"\x00\x01\x02\xff", "BOOL", (4,))
    assert t.tolist() == [False, True, True, True]
    assert t.view(torch.uint8).tolist() == [0, 1, 1, 1]


def test_decode_owns_memory() -> None:
    buf = bytearray(struct.pack("<4f", 1, 2, 3, 4))
    t = fmt.decode(buf, "F32", (2, 2))
    buf[:] = b"\0" * 16
    assert t.tolist() == [[1, 2], [3, 4]]
    with pytest.raises(CheckpointError, match="expected 16"):
        fmt.decode(b"\0" * 15, "F32", (2, 2))


def _f4_reference(code: int) -> float:
    sign = -1.0 if code & 8 else 1.0
    e, m = (code >> 1) & 3, code & 1
    return sign * (m * 0.5 if e == 0 else 2.0 ** (e - 1) * (1 + m / 2))


def test_f4_round_trip_low_nibble_first(tmp_path: Path) -> None:
    packed = torch.arange(256, dtype=torch.uint8).reshape(4, 64)
    save_file({"w": packed.view(torch.float4_e2m1fn_x2)}, str(tmp_path / "model.safetensors"))
    with open_checkpoint(tmp_path) as ck:
        info = ck.info("w")
        assert (info.dtype, info.shape, info.nbytes) == ("F4", (4, 128), 256)
        got = ck.read("w")
        assert got.dtype == torch.float32 and got.shape == (4, 128)
        flat = got.reshape(-1).tolist()
        for byte in range(256):
            assert flat[2 * byte] == _f4_reference(byte & 0xF)
            assert flat[2 * byte + 1] == _f4_reference(byte >> 4)
        assert torch.equal(ck.read_rows("w", 1, 3), got[1:3])


def test_f6_parses_but_refuses_to_decode(tmp_path: Path) -> None:
    blob = raw_safetensors({"w": {"dtype": "F6_E2M3", "shape": [2, 4], "data_offsets": [0, 6]}}, b"\0" * 6)
    (tmp_path / "model.safetensors").write_bytes(blob)
    with open_checkpoint(tmp_path) as ck:
        assert ck.info("w").nbytes == 6
        with pytest.raises(CheckpointError, match="dtype F6_E2M3 is not supported for decoding"):
            ck.read("w")


def test_sharded_folder(tmp_path: Path) -> None:
    write_valid_sharded_tiny_llama(tmp_path)
    sd = tiny_llama_state_dict()
    with open_checkpoint(tmp_path) as ck:
        assert set(ck.tensors()) == set(sd)
        assert len({t.file for t in ck.tensors().values()}) == 2
        for name, t in sd.items():
            assert torch.equal(ck.read(name), t)
        assert ck.index is not None


def test_shard_tensor_missing_from_weight_map_is_included(tmp_path: Path) -> None:
    write_valid_sharded_tiny_llama(tmp_path)
    idx_path = tmp_path / "model.safetensors.index.json"
    idx = json.loads(idx_path.read_text())
    del idx["weight_map"]["lm_head.weight"]
    idx_path.write_text(json.dumps(idx))
    with open_checkpoint(tmp_path) as ck:
        assert "lm_head.weight" in ck.tensors()


def test_single_non_default_file_name(tmp_path: Path) -> None:
    save_file({"x": torch.ones(3)}, str(tmp_path / "consolidated.safetensors"))
    with open_checkpoint(tmp_path) as ck:
        assert ck.files == ["consolidated.safetensors"]
        assert ck.read("x").tolist() == [1, 1, 1]


def test_not_a_directory(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="not a directory"):
        open_checkpoint(tmp_path / "nope")


def test_missing_tensor_named(tmp_path: Path) -> None:
    with open_checkpoint(write_valid_tiny_llama(tmp_path)) as ck:
        with pytest.raises(CheckpointError, match="no tensor named 'nope'"):
            ck.read("nope")


def test_pickle_files_are_never_opened(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Pickles that are not PyTorch zip candidates (.ckpt, .pkl, trainer files) are never opened."""
    write_pickle_only(tmp_path)
    (tmp_path / "pytorch_model.bin").rename(tmp_path / "model.ckpt")
    (tmp_path / "training_args.bin").write_bytes(b"\x80\x04NOT-A-REAL-PICKLE. never open me")
    opened: list[str] = []
    real_os_open, real_open = os.open, builtins.open

    def spy_os_open(path, *a, **k):  # type: ignore[no-untyped-def]
        opened.append(str(path))
        return real_os_open(path, *a, **k)

    def spy_open(path, *a, **k):  # type: ignore[no-untyped-def]
        opened.append(str(path))
        return real_open(path, *a, **k)

    monkeypatch.setattr(os, "open", spy_os_open)
    monkeypatch.setattr(builtins, "open", spy_open)
    with pytest.raises(CheckpointError, match="pickle checkpoints"):
        open_checkpoint(tmp_path)
    assert not any(p.endswith((".bin", ".ckpt")) for p in opened)


def test_a_legacy_pickle_is_refused_by_its_first_bytes(tmp_path: Path) -> None:
    """A pytorch_model.bin that is a legacy (non-zip) pickle: only its first bytes are read."""
    write_pickle_only(tmp_path)
    with pytest.raises(CheckpointError, match=r"legacy \(non-zip\) PyTorch pickle"):
        open_checkpoint(tmp_path)


# -- row reads -----------------------------------------------------------------------------

_SHAPES = [(13, 7), (1, 5), (9,), (), (0, 3), (6, 0), (4, 3, 2), (11, 1, 1)]
_ROW_DTYPES = [torch.float32, torch.bfloat16, torch.int8, torch.float64, torch.bool]


@pytest.fixture(scope="module")
def row_checkpoint(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    d = tmp_path_factory.mktemp("rows")
    sd = {
        f"t{i}_{j}": random_tensor(dt, s, 10 * i + j) for i, s in enumerate(_SHAPES) for j, dt in enumerate(_ROW_DTYPES)
    }
    save_file(sd, str(d / "model.safetensors"))
    ck = open_checkpoint(d)
    yield ck, sd
    ck.close()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_read_rows_equals_slicing(row_checkpoint: tuple, data: st.DataObject) -> None:
    ck, sd = row_checkpoint
    name = data.draw(st.sampled_from(sorted(sd)))
    full = sd[name]
    rows = full.shape[0] if full.dim() else 1
    start = data.draw(st.integers(0, rows))
    stop = data.draw(st.integers(start, rows))
    before = ck.bytes_read
    got = ck.read_rows(name, start, stop)
    expect = (full.reshape(1) if full.dim() == 0 else full)[start:stop]
    assert same_bits(got, expect)
    assert ck.bytes_read - before == expect.numel() * full.element_size()


def test_read_rows_validates_range(row_checkpoint) -> None:  # type: ignore[no-untyped-def]
    ck, _ = row_checkpoint
    for start, stop in [(-1, 2), (3, 2), (0, 14)]:
        with pytest.raises(CheckpointError, match="out of range"):
            ck.read_rows("t0_0", start, stop)
    with pytest.raises(TypeError):
        ck.read_rows("t0_0", 0, 2.0)  # type: ignore[arg-type]


def test_bytes_read_is_header_plus_span(tmp_path: Path) -> None:
    big = torch.randn(1000, 64)
    save_file({"big": big, "other": torch.randn(100)}, str(tmp_path / "model.safetensors"))
    ck = open_checkpoint(tmp_path)
    assert ck.bytes_read == header_size(tmp_path / "model.safetensors")
    before = ck.bytes_read
    rows = ck.read_rows("big", 500, 503)
    assert torch.equal(rows, big[500:503])
    assert ck.bytes_read - before == 3 * 64 * 4 == 3 * ck.info("big").row_nbytes
    ck.close()


def test_file_shrinking_after_open_is_an_error(tmp_path: Path) -> None:
    save_file({"w": torch.randn(100, 10)}, str(tmp_path / "model.safetensors"))
    ck = open_checkpoint(tmp_path)
    os.truncate(tmp_path / "model.safetensors", header_size(tmp_path / "model.safetensors") + 40)
    assert ck.read_rows("w", 0, 1).shape == (1, 10)
    with pytest.raises(CheckpointError, match="shrank"):
        ck.read("w")
    ck.close()  # reopening sees the new size
    with pytest.raises(CheckpointError, match="size changed"):
        ck.read("w")


def test_read_span_bounds(tmp_path: Path) -> None:
    with open_checkpoint(write_valid_tiny_llama(tmp_path)) as ck:
        size = (tmp_path / "model.safetensors").stat().st_size
        assert len(ck.read_span("model.safetensors", size - 4, size)) == 4
        with pytest.raises(CheckpointError, match="outside the file"):
            ck.read_span("model.safetensors", size - 4, size + 1)
        with pytest.raises(CheckpointError, match="not a weight file"):
            ck.read_span("config.json", 0, 1)


# -- text files ----------------------------------------------------------------------------


def test_read_text_and_json(tmp_path: Path) -> None:
    d = write_valid_tiny_llama(tmp_path)
    (d / "README.md").write_bytes("\ufeff# hi ✓".encode())
    (d / "bad.txt").write_bytes(b"\xff\xfe")
    (d / "bad.json").write_text("{nope")
    with open_checkpoint(d) as ck:
        assert ck.read_json("config.json")["model_type"] == "llama"
        assert ck.read_text("README.md") == "# hi ✓"
        assert ck.read_text("missing.json") is None and ck.read_json("missing.json") is None
        assert ck.read_bytes("bad.txt") == b"\xff\xfe" and ck.read_bytes("nope") is None
        with pytest.raises(CheckpointError, match="larger than the 5-byte limit"):
            ck.read_text("config.json", max_bytes=5)
        with pytest.raises(CheckpointError, match="not valid UTF-8"):
            ck.read_text("bad.txt")
        with pytest.raises(CheckpointError, match="invalid JSON"):
            ck.read_json("bad.json")
        for bad in ["../config.json", "a/b", "/etc/passwd", "..", "", "a\\b", "."]:
            with pytest.raises(CheckpointError, match="not a plain file name"):
                ck.read_text(bad)


# -- revision ------------------------------------------------------------------------------


def test_revision(tmp_path: Path) -> None:
    d = write_valid_tiny_llama(tmp_path)
    rev = open_checkpoint(d).revision()
    assert len(rev) == 64 and open_checkpoint(d).revision() == rev
    (d / "notes.txt").write_text("unrelated")
    os.utime(d / "model.safetensors", (1, 1))
    assert open_checkpoint(d).revision() == rev
    path = d / "model.safetensors"
    blob = bytearray(path.read_bytes())
    blob[-1] ^= 1
    path.write_bytes(blob)
    rev2 = open_checkpoint(d).revision()
    assert rev2 != rev
    (d / "generation_config.json").write_text("{}")
    assert open_checkpoint(d).revision() not in (rev, rev2)


def test_revision_sharded_covers_every_shard(tmp_path: Path) -> None:
    d = write_valid_sharded_tiny_llama(tmp_path)
    rev = open_checkpoint(d).revision()
    path = d / "model-00002-of-00002.safetensors"
    blob = bytearray(path.read_bytes())
    blob[-1] ^= 1
    path.write_bytes(blob)
    assert open_checkpoint(d).revision() != rev


# -- in-memory source ----------------------------------------------------------------------


def test_state_dict_source() -> None:
    sd = {"w": torch.randn(6, 4), "s": torch.tensor(3.0), "b": torch.randn(5).bfloat16()}
    src = StateDictSource(sd, {"config.json": '{"a": 1}', "tokenizer.model": b"\x80"})
    assert src.read_bytes("tokenizer.model") == b"\x80"
    assert src.info("w").dtype == "F32" and src.info("b").dtype == "BF16"
    assert torch.equal(src.read("w"), sd["w"])
    assert torch.equal(src.read_rows("w", 2, 5), sd["w"][2:5])
    assert src.read_rows("s", 0, 1).tolist() == [3.0]
    assert src.read_json("config.json") == {"a": 1} and src.read_text("x") is None
    info = src.info("w")
    assert src.read_span(info.file, info.begin, info.begin + 4) == sd["w"][0, :1].numpy().tobytes()
    out = src.read("w")
    out.zero_()
    assert not torch.equal(src.read("w"), out)


@settings(max_examples=30, deadline=None)
@given(st.lists(st.integers(0, 5), min_size=0, max_size=3), st.sampled_from(_ROW_DTYPES))
def test_local_matches_state_dict_source(shape: list[int], dtype: torch.dtype) -> None:
    t = random_tensor(dtype, tuple(shape), 7)
    with tempfile.TemporaryDirectory() as d:
        save_file({"t": t}, os.path.join(d, "model.safetensors"))
        with LocalCheckpoint(d) as ck:
            mem = StateDictSource({"t": t})
            assert same_bits(ck.read("t"), mem.read("t"))
            info = ck.info("t")
            assert (info.numel, info.nbytes, info.rows, info.row_nbytes) == (
                mem.info("t").numel,
                mem.info("t").nbytes,
                mem.info("t").rows,
                mem.info("t").row_nbytes,
            )
