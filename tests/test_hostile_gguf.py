"""Hostile GGUF files: every count, length, type, offset and alignment a file can lie about is a
one-line CheckpointError for that model, raised before anything is allocated for the lie.

The files are assembled byte by byte here (``build``) following ggml ``docs/gguf.md``; the valid
baseline parses, so each case differs from a good file by the one thing it breaks.
"""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from pedigree.config import load_settings
from pedigree.errors import CheckpointError
from pedigree.indexer.gguf_checkpoint import GGUFCheckpoint, LocalGGUFFile
from pedigree.indexer.gguf_format import MAX_ARRAY, MAX_DEPTH, MAX_TENSORS, parse_gguf
from pedigree.indexer.local_checkpoint import open_checkpoint
from pedigree.workspace import Workspace

F32, Q4_0, U32, STRING, ARRAY = 0, 2, 4, 8, 9


def gstr(s: bytes) -> bytes:
    return struct.pack("<Q", len(s)) + s


def kv(key: bytes, vtype: int, payload: bytes) -> bytes:
    return gstr(key) + struct.pack("<I", vtype) + payload


def tensor(name: bytes, dims: list[int], ttype: int = F32, offset: int = 0) -> bytes:
    return gstr(name) + struct.pack(f"<I{len(dims)}QIQ", len(dims), *dims, ttype, offset)


ARCH = kv(b"general.architecture", STRING, gstr(b"llama"))
EMBD = tensor(b"token_embd.weight", [4, 2])
DATA = struct.pack("<8f", *range(8))


def build(
    kvs: tuple[bytes, ...] = (ARCH,),
    tensors: tuple[bytes, ...] = (EMBD,),
    data: bytes = DATA,
    *,
    version: int = 3,
    n_tensors: int | None = None,
    n_kv: int | None = None,
    alignment: int = 32,
) -> bytes:
    counts = struct.pack("<QQ", len(tensors) if n_tensors is None else n_tensors, len(kvs) if n_kv is None else n_kv)
    head = b"GGUF" + struct.pack("<I", version) + counts + b"".join(kvs) + b"".join(tensors)
    return head + b"\0" * (-len(head) % alignment) + data


def parse(blob: bytes) -> object:
    return parse_gguf(lambda a, b: blob[a:b], len(blob), "hostile.gguf")


def nested(depth: int) -> bytes:
    payload = struct.pack("<IQ", U32, 0)
    for _ in range(depth):
        payload = struct.pack("<IQ", ARRAY, 1) + payload
    return kv(b"deep", ARRAY, payload)


CASES = {
    "not GGUF": (b"GGML" + build()[4:], "not a GGUF file"),
    "empty file": (b"", "not a GGUF file"),
    "version 1": (build(version=1), "GGUF version 1 is not supported"),
    "big-endian": (build(version=3 << 24), "big-endian"),
    "absurd tensor count": (build(n_tensors=2**60), "tensors, over the"),
    "absurd kv count": (build(n_kv=2**62), "metadata entries, over the"),
    "kv count past the data": (build(n_kv=40), "metadata key 2 is a string of"),
    "absurd key length": (build(kvs=(struct.pack("<Q", 2**62) + b"k",)), "over the 65536-byte limit"),
    "absurd string length": (build(kvs=(kv(b"s", STRING, struct.pack("<Q", 2**40)),)), "string of 1099511627776"),
    "absurd array length": (build(kvs=(kv(b"a", ARRAY, struct.pack("<IQ", U32, 2**50)),)), "-element limit"),
    "array longer than the file": (build(kvs=(kv(b"a", ARRAY, struct.pack("<IQ", U32, MAX_ARRAY)),)), "truncated"),
    "nested arrays": (build(kvs=(nested(MAX_DEPTH + 5),)), "nests arrays"),
    "unknown value type": (build(kvs=(kv(b"x", 13, b""),)), "unknown metadata value type 13"),
    "unknown array type": (build(kvs=(kv(b"x", ARRAY, struct.pack("<IQ", 77, 1)),)), "unknown value type 77"),
    "duplicate key": (build(kvs=(ARCH, ARCH)), "appears twice"),
    "absurd name length": (build(tensors=(struct.pack("<Q", 2**63),)), "over the 1024-byte limit"),
    "zero dims": (build(tensors=(gstr(b"t") + struct.pack("<IIQ", 0, F32, 0),)), "has 0 dimensions"),
    "many dims": (build(tensors=(gstr(b"t") + struct.pack("<I", 2**31),)), "dimensions (1 to 4"),
    "unknown tensor type": (build(tensors=(tensor(b"t", [4, 2], 99),)), "unknown ggml type 99"),
    "rows not whole blocks": (build(tensors=(tensor(b"t", [40, 2], Q4_0),)), "do not fill whole Q4_0 blocks"),
    "offset past the end": (build(tensors=(tensor(b"t", [4, 2], F32, 2**40),)), "runs past the end"),
    "huge dims": (build(tensors=(tensor(b"t", [2**63, 2**63]),)), "runs past the end"),
    "misaligned offset": (build(tensors=(tensor(b"t", [2], F32, 7),)), "not a multiple of the alignment 32"),
    "bad alignment": (build(kvs=(kv(b"general.alignment", U32, struct.pack("<I", 3)),)), "not a power of two"),
    "zero alignment": (build(kvs=(kv(b"general.alignment", U32, struct.pack("<I", 0)),)), "not a power of two"),
    "overlapping tensors": (build(tensors=(tensor(b"a", [4, 2]), tensor(b"b", [4, 1], F32, 0))), "overlapping"),
    "duplicate tensor": (build(tensors=(EMBD, EMBD), data=DATA * 2), "appears twice"),
    "truncated data": (build()[:-1], "runs past the end"),
    "truncated header": (build()[:30], "truncated"),
}


def test_the_baseline_is_a_valid_file() -> None:
    header = parse(build())
    assert [t.shape for t in header.tensors.values()] == [(2, 4)]  # type: ignore[attr-defined]


@pytest.mark.parametrize("case", sorted(CASES))
def test_hostile_header_is_a_one_line_error(case: str) -> None:
    blob, reason = CASES[case]
    with pytest.raises(CheckpointError) as caught:
        parse(blob)
    message = str(caught.value)
    assert reason in message, message
    assert "\n" not in message and len(message) < 400


def test_absurd_counts_fail_before_reading_what_they_claim() -> None:
    """A claimed 2^60 tensors or a 2^40-byte string is refused after reading the few bytes that
    claim it, not after trying to read (or allocate) what is claimed."""
    for blob in (build(n_tensors=MAX_TENSORS + 1), CASES["absurd string length"][0]):
        asked: list[tuple[int, int]] = []

        def read(a: int, b: int, blob: bytes = blob, asked: list[tuple[int, int]] = asked) -> bytes:
            asked.append((a, b))
            return blob[a:b]

        with pytest.raises(CheckpointError):
            parse_gguf(read, len(blob), "hostile.gguf")
        assert max(b for _, b in asked) <= len(blob)


def test_unmapped_architecture_and_types_are_reasons(tmp_path: Path) -> None:
    (tmp_path / "m.gguf").write_bytes(build(kvs=(kv(b"general.architecture", STRING, gstr(b"mamba")),)))
    with pytest.raises(Exception, match="GGUF architecture 'mamba' is not mapped"):
        GGUFCheckpoint(LocalGGUFFile(tmp_path, "m.gguf"))


def test_two_gguf_files_in_one_folder_is_a_reason(tmp_path: Path) -> None:
    for name in ("a-Q4_0.gguf", "a-Q8_0.gguf"):
        (tmp_path / name).write_bytes(build())
    with pytest.raises(CheckpointError, match="2 GGUF files"):
        open_checkpoint(tmp_path)


def test_hostile_ggufs_fail_one_model_each_and_the_next_goes_on(tmp_path: Path) -> None:
    models = tmp_path / "models"
    chosen = ["absurd tensor count", "nested arrays", "offset past the end", "misaligned offset", "truncated data"]
    for i, case in enumerate(chosen):
        folder = models / "hostile" / f"m{i}"
        folder.mkdir(parents=True)
        (folder / "model.gguf").write_bytes(CASES[case][0])
    with Workspace(load_settings(tmp_path / "home")) as ws:
        result = ws.ingest(models, confirm=0)
    assert [m.status for m in result.models] == ["failed"] * len(chosen)
    for model, case in zip(result.models, chosen):
        assert model.error is not None and CASES[case][1] in model.error and "\n" not in model.error
