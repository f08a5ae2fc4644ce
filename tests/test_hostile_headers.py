"""Hostile and malformed checkpoints fail with a clear CheckpointError, and only that."""

from __future__ import annotations

import json
import struct
import tempfile
from pathlib import Path
from typing import Any

import pytest
import torch
from hostile import HOSTILE_CASES, HOSTILE_MESSAGES, write_valid_tiny_llama
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors.torch import save

from pedigree.errors import CheckpointError
from pedigree.indexer import safetensors_format as fmt
from pedigree.indexer.local_checkpoint import open_checkpoint


def exercise(path: Path) -> None:
    """Everything a consumer would do: open, read every tensor and the config."""
    with open_checkpoint(path) as ck:
        for name in ck.tensors():
            ck.read(name)
            info = ck.info(name)
            if info.rows and info.row_bits % 8 == 0:
                ck.read_rows(name, 0, 1)
        ck.read_json("config.json")
        ck.revision()


def test_every_case_has_a_message() -> None:
    assert set(HOSTILE_CASES) <= set(HOSTILE_MESSAGES)


@pytest.mark.parametrize("case", sorted(HOSTILE_CASES))
def test_hostile_case_raises_checkpoint_error(tmp_path: Path, case: str) -> None:
    d = HOSTILE_CASES[case](tmp_path / case)
    assert (d / "config.json").exists()
    with pytest.raises(CheckpointError) as info:
        exercise(d)
    assert HOSTILE_MESSAGES[case] in str(info.value)
    assert info.value.path is not None


def test_header_over_limit_file_is_sparse(tmp_path: Path) -> None:
    d = HOSTILE_CASES["header_over_limit"](tmp_path)
    st_ = (d / "model.safetensors").stat()
    assert st_.st_size > fmt.MAX_HEADER_BYTES
    if hasattr(st_, "st_blocks"):
        assert st_.st_blocks * 512 < 10 * 2**20


def test_valid_tiny_llama_is_fine(tmp_path: Path) -> None:
    exercise(write_valid_tiny_llama(tmp_path))


def test_header_length_checks() -> None:
    with pytest.raises(CheckpointError, match="fewer than 8 bytes"):
        fmt.header_length(b"\0" * 7, 7, "p")
    with pytest.raises(CheckpointError, match="header of 100000001 bytes exceeds the 100 MB limit"):
        fmt.header_length(struct.pack("<Q", 100_000_001), 10**9, "p")
    with pytest.raises(CheckpointError, match=r"header length 10 runs past the end of the file \(size 17\)"):
        fmt.header_length(struct.pack("<Q", 10), 17, "p")
    assert fmt.header_length(struct.pack("<Q", 10), 18, "p") == 10


def test_zero_size_spans_do_not_overlap() -> None:
    h = {
        "a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
        "z": {"dtype": "F32", "shape": [0], "data_offsets": [4, 4]},
    }
    hb = json.dumps(h).encode()
    tensors, meta = fmt.parse_header(hb, file_size=8 + len(hb) + 8, file="f", path="p")
    assert tensors["a"].begin == 8 + len(hb) and tensors["z"].nbytes == 0 and meta == {}


# -- fuzzing -------------------------------------------------------------------------------

_VALID = save(
    {
        "model.embed_tokens.weight": torch.randn(4, 3),
        "model.norm.weight": torch.ones(3).bfloat16(),
        "scale": torch.tensor(2, dtype=torch.int64),
    },
    metadata={"format": "pt"},
)
_N = struct.unpack("<Q", _VALID[:8])[0]


def parse_all(blob: bytes) -> None:
    """The pure pipeline: framing, header, then decoding every tensor."""
    n = fmt.header_length(blob[:8], len(blob), "fuzz")
    tensors, _ = fmt.parse_header(blob[8 : 8 + n], file_size=len(blob), file="f", path="fuzz")
    for t in tensors.values():
        assert 8 + n <= t.begin <= t.end <= len(blob)
        fmt.decode(blob[t.begin : t.end], t.dtype, t.shape)


@settings(max_examples=400, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 8 + _N - 1), st.integers(0, 255)), min_size=1, max_size=6), st.integers(-3, 3))
def test_fuzz_header_mutations(edits: list[tuple[int, int]], resize: int) -> None:
    blob = bytearray(_VALID)
    for pos, val in edits:
        blob[pos] = val
    blob = bytes(blob[: len(blob) + resize]) if resize < 0 else bytes(blob) + b"\0" * resize
    try:
        parse_all(blob)
    except CheckpointError:
        pass


_json_scalars = st.one_of(st.none(), st.booleans(), st.integers(-2, 2**70), st.floats(), st.text(max_size=5))
_dtype = st.one_of(st.sampled_from(sorted(fmt.DTYPES)), _json_scalars)
_dims = st.one_of(st.integers(-1, 6), st.booleans(), st.sampled_from([2**40, 2**64]), st.none())
_entry = st.one_of(
    st.fixed_dictionaries(
        {
            "dtype": _dtype,
            "shape": st.one_of(st.lists(_dims, max_size=4), _json_scalars),
            "data_offsets": st.one_of(
                st.lists(st.one_of(st.integers(-1, 70), _json_scalars), max_size=3), _json_scalars
            ),
        }
    ),
    _json_scalars,
)
_header = st.dictionaries(st.sampled_from(["a", "b", "c", "__metadata__"]), _entry, max_size=4)


@settings(max_examples=400, deadline=None)
@given(_header, st.integers(0, 80))
def test_fuzz_structured_headers(header: dict[str, Any], data_len: int) -> None:
    hb = json.dumps(header).encode()
    blob = struct.pack("<Q", len(hb)) + hb + bytes(range(256))[:data_len]
    try:
        parse_all(blob)
    except CheckpointError:
        pass


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 8 + _N - 1), st.integers(0, 255)), min_size=1, max_size=4))
def test_fuzz_files_through_local_checkpoint(edits: list[tuple[int, int]]) -> None:
    blob = bytearray(_VALID)
    for pos, val in edits:
        blob[pos] = val
    with tempfile.TemporaryDirectory() as d:
        Path(d, "model.safetensors").write_bytes(bytes(blob))
        Path(d, "config.json").write_text("{}")
        try:
            exercise(Path(d))
        except CheckpointError:
            pass
