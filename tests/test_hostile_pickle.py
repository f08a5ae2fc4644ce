"""Hostile PyTorch checkpoints (issue 16): pickles whose loading would run code, globals and
opcodes outside the allow-list, zip bombs, entries past the end, truncated or absurd directories,
lying data descriptors, legacy pickles and nesting bombs.  Each is a clear one-line per-model
error - from ``pedigree ingest`` of the folder alone, among good models, and over HTTP - and the
canary file that running the payload would create never appears."""

from __future__ import annotations

import io
import json
import shutil
import struct
import subprocess
import sys
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch
from cli_runner import cli
from hostile import TINY_LLAMA_CONFIG
from huggingface_hub import HfApi

from bench.hub_faults import FaultyHub
from pedigree.crawler.http_retry import RetryPolicy
from pedigree.crawler.http_source import HubCheckpoint
from pedigree.errors import CheckpointError

GOOD = "llama-lab/tiny-llama-s1"
FAST = RetryPolicy(attempts=2, base_delay=0.01, max_delay=0.1, jitter=0.1)
STATE = {"w": torch.arange(6, dtype=torch.float32).reshape(2, 3)}


def torch_bytes(obj: object, **kw: object) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf, **kw)  # type: ignore[arg-type]
    return buf.getvalue()


def valid_pickle() -> bytes:
    """The data.pkl torch writes for :data:`STATE` (read as bytes from the zip, never unpickled)."""
    with zipfile.ZipFile(io.BytesIO(torch_bytes(STATE))) as z:
        return z.read("archive/data.pkl")


def archive(entries: list[tuple[str, bytes]], method: int = zipfile.ZIP_STORED) -> bytes:
    """A zip written by Python's zipfile (sizes in the local headers, no data descriptors)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, data in entries:
            z.writestr(zipfile.ZipInfo(name), data, compress_type=method if name.endswith("/0") else 0)
    return buf.getvalue()


def with_pickle(pkl: bytes) -> bytes:
    return archive([("archive/data.pkl", pkl), ("archive/byteorder", b"little"), ("archive/data/0", bytes(24))])


def exec_pickle(module: str, name: str, argument: str) -> bytes:
    """``module.name(argument)`` as protocol-2 opcodes: GLOBAL, the string, TUPLE1, REDUCE."""
    arg = argument.encode()
    return b"\x80\x02c" + f"{module}\n{name}\n".encode() + b"X" + struct.pack("<I", len(arg)) + arg + b"\x85R."


def central(blob: bytes, name: str) -> int:
    """Offset of the central directory record of entry ``name``."""
    pos = blob.index(b"PK\x01\x02")
    while True:
        nlen, xlen, clen = struct.unpack_from("<HHH", blob, pos + 28)
        if blob[pos + 46 : pos + 46 + nlen] == name.encode():
            return pos
        pos += 46 + nlen + xlen + clen


def patched(blob: bytes, at: int, fmt: str, *values: int) -> bytes:
    out = bytearray(blob)
    struct.pack_into(fmt, out, at, *values)
    return bytes(out)


def huge_declared_size(_: Path) -> bytes:
    blob = with_pickle(valid_pickle())
    return patched(blob, central(blob, "archive/data/0") + 20, "<II", 0xFFFFFFF0, 0xFFFFFFF0)


def entry_past_end(_: Path) -> bytes:
    blob = with_pickle(valid_pickle())
    return patched(blob, central(blob, "archive/data/0") + 42, "<I", 0x7FFFFFF0)


def compressed_bomb(_: Path) -> bytes:
    """16 MiB of zeros deflated to ~16 KiB under a data.pkl that asks for all of it."""
    pkl = torch_bytes({"w": torch.zeros(4 * 2**20)})
    with zipfile.ZipFile(io.BytesIO(pkl)) as z:
        pkl = z.read("archive/data.pkl")
    entries = [("archive/data.pkl", pkl), ("archive/byteorder", b"little"), ("archive/data/0", bytes(16 * 2**20))]
    return archive(entries, method=zipfile.ZIP_DEFLATED)


def zip64_absurd_counts(_: Path) -> bytes:
    blob = with_pickle(valid_pickle())
    eocd = blob.rindex(b"PK\x05\x06")
    _, _, _, _, _, cd_size, cd_offset, _ = struct.unpack_from("<IHHHHIIH", blob, eocd)
    body, at = blob[:eocd], eocd
    record = struct.pack("<IQHHIIQQQQ", 0x06064B50, 44, 45, 45, 0, 0, 2**40, 2**40, cd_size, cd_offset)
    locator = struct.pack("<IIQI", 0x07064B50, 0, at, 1)
    end = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, 0xFFFF, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0)
    return body + record + locator + end


def lying_descriptor(_: Path) -> bytes:
    blob = torch_bytes(STATE)
    with zipfile.ZipFile(io.BytesIO(blob)) as z:
        info = z.getinfo("archive/data/0")
    assert info.flag_bits & 0x08  # torch writes data descriptors
    nlen, xlen = struct.unpack_from("<HH", blob, info.header_offset + 26)
    after = info.header_offset + 30 + nlen + xlen + info.file_size
    assert blob[after : after + 4] == b"PK\x07\x08"
    return patched(blob, after + 8, "<II", info.file_size + 64, info.file_size + 64)


def duplicate_entry(_: Path) -> bytes:
    pkl = valid_pickle()
    entries = [("archive/data.pkl", pkl), ("archive/data/0", bytes(24)), ("archive/data/0", bytes(24))]
    with pytest.warns(UserWarning, match="Duplicate name"):
        return archive(entries)


def storage_too_small(_: Path) -> bytes:
    return archive([("archive/data.pkl", valid_pickle()), ("archive/data/0", bytes(8))])


def canary_pickles(canary: Path) -> dict[str, bytes]:
    """Payloads that create ``canary`` when unpickled."""
    touch = f"touch {canary}"
    return {
        "global_os_system": exec_pickle("os", "system", touch),
        "global_posix_system": exec_pickle("posix", "system", touch),
        "global_builtins_eval": exec_pickle("builtins", "eval", f"open({str(canary)!r}, 'w').write('ran')"),
        "reduce_object": (
            b"\x80\x02csubprocess\ncheck_call\n(X\x05\x00\x00\x00touch"
            + b"X"
            + struct.pack("<I", len(str(canary)))
            + str(canary).encode()
            + b"l\x85R."
        ),  # fmt: skip
    }


CASES: dict[str, tuple[Callable[[Path], bytes], str]] = {
    "reduce_storage_type": (lambda _: with_pickle(b"\x80\x02ctorch\nFloatStorage\n)R."), "REDUCE calls torch.Float"),
    "inst_opcode": (lambda _: with_pickle(b"\x80\x02(X\x02\x00\x00\x00idios\nsystem\n."), "opcode INST is not allowed"),
    "obj_opcode": (lambda _: with_pickle(b"\x80\x02(ccollections\nOrderedDict\no."), "opcode OBJ is not allowed"),
    "ext_opcode": (lambda _: with_pickle(b"\x80\x02\x82\x01)R."), "opcode EXT1 is not allowed"),
    "nesting_bomb": (lambda _: with_pickle(b"\x80\x02K\x01" + b"\x85" * 200_000 + b"."), "nested deeper than 32"),
    "mark_bomb": (lambda _: with_pickle(b"\x80\x02" + b"(" * 200_000 + b"."), "MARKs nested deeper than 64"),
    "container_flood": (lambda _: with_pickle(b"\x80\x02" + b"}0" * 700_000 + b"N."), "more than 600000 containers"),
    "list_bomb": (lambda _: with_pickle(b"\x80\x02" + b"]" * 50_000 + b"a" * 49_999 + b"."), "nested deeper"),
    "compressed_bomb": (compressed_bomb, "is compressed (method 8"),
    "huge_declared_size": (huge_declared_size, "overlaps"),
    "entry_past_end": (entry_past_end, "points past the end of the archive data"),
    "truncated_central_directory": (lambda _: torch_bytes(STATE)[:-30], "no end of central directory record"),
    "zip64_absurd_counts": (zip64_absurd_counts, "entries declared, more than the limit"),
    "legacy_pickle": (lambda _: torch_bytes(STATE, _use_new_zipfile_serialization=False), "legacy (non-zip)"),
    "lying_descriptor": (lying_descriptor, "data descriptor's sizes"),
    "non_contiguous": (lambda _: torch_bytes({"w": torch.ones(3, 4).t()}), "non-contiguous tensor"),
    "duplicate_entry": (duplicate_entry, "appears twice"),
    "storage_too_small": (storage_too_small, "is stored in 8 bytes"),
    "nested_checkpoint": (lambda _: torch_bytes({"state_dict": STATE}), "not a tensor (a nested checkpoint?)"),
}  # fmt: skip
CANARY_MESSAGES = {
    "global_os_system": "GLOBAL os.system is not allowed",
    "global_posix_system": "GLOBAL posix.system is not allowed",
    "global_builtins_eval": "GLOBAL builtins.eval is not allowed",
    "reduce_object": "GLOBAL subprocess.check_call is not allowed",
}
ALL = sorted([*CASES, *CANARY_MESSAGES])


def message(case: str) -> str:
    return CANARY_MESSAGES.get(case) or CASES[case][1]


def write_case(case: str, folder: Path, canary: Path) -> Path:
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps(TINY_LLAMA_CONFIG))
    blob = canary_pickles(canary)[case] if case in CANARY_MESSAGES else CASES[case][0](folder)
    if case in CANARY_MESSAGES:
        blob = with_pickle(blob)
    (folder / "pytorch_model.bin").write_bytes(blob)
    return folder


def model_id(case: str) -> str:
    return f"hostile/{case.replace('_', '-')}"


@pytest.fixture(scope="module")
def canary(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("canary") / "ran"


@pytest.fixture(scope="module")
def hostile_root(small_zoo: Path, canary: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("hostile-bins")
    shutil.copytree(small_zoo / GOOD, root / GOOD)
    for case in ALL:
        write_case(case, root / model_id(case), canary)
    return root


def test_the_canary_payloads_are_live(canary: Path, tmp_path: Path) -> None:
    """Unpickling these payloads (here, on purpose, with another canary) does run them: the
    tests below would notice a reader that unpickles."""
    import pickle

    for case, payload in canary_pickles(tmp_path / "live").items():
        (tmp_path / "live").unlink(missing_ok=True)
        pickle.loads(payload)
        assert (tmp_path / "live").exists(), case
    assert not canary.exists()


def test_every_case_fails_alone_in_one_line(hostile_root: Path, canary: Path, tmp_path: Path) -> None:
    for case in ALL:
        result = cli("ingest", str(hostile_root / model_id(case)), "--home", str(tmp_path / case))
        (outcome,) = result["models"]
        assert outcome["status"] == "failed" and result["counts"]["failed"] == 1, (case, outcome)
        assert message(case) in outcome["error"] and "\n" not in outcome["error"], (case, outcome["error"])
        assert len(outcome["error"]) < 400, (case, outcome["error"])
    assert not canary.exists()


def test_hostile_bins_beside_a_good_model(hostile_root: Path, canary: Path, tmp_path: Path) -> None:
    result = cli("ingest", str(hostile_root), "--home", str(tmp_path / "home"))
    by_id = {m["id"]: m for m in result["models"]}
    assert by_id[GOOD]["status"] == "indexed"
    for case in ALL:
        assert by_id[model_id(case)]["status"] == "failed", case
        assert message(case) in by_id[model_id(case)]["error"], (case, by_id[model_id(case)]["error"])
    assert not canary.exists()


def test_a_separate_cli_process_never_runs_the_payloads(hostile_root: Path, canary: Path, tmp_path: Path) -> None:
    folder = tmp_path / "exec"
    for case in CANARY_MESSAGES:
        shutil.copytree(hostile_root / model_id(case), folder / model_id(case))
    done = subprocess.run(
        [sys.executable, "-m", "pedigree", "ingest", str(folder), "--home", str(tmp_path / "h"), "--json"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    outcomes = {m["id"]: m for m in json.loads(done.stdout)["models"]}
    assert {m: o["status"] for m, o in outcomes.items()} == dict.fromkeys(map(model_id, CANARY_MESSAGES), "failed")
    assert not canary.exists()


@pytest.fixture(scope="module")
def hub(hostile_root: Path) -> Iterator[FaultyHub]:
    with FaultyHub(hostile_root) as server:
        yield server


@pytest.mark.parametrize("case", ALL)
def test_hostile_bins_over_http(hub: FaultyHub, canary: Path, case: str) -> None:
    info = HfApi(endpoint=hub.url, token=False).model_info(model_id(case), files_metadata=False)
    hub.reset_stats()
    with pytest.raises(CheckpointError) as error:
        HubCheckpoint(hub.url, model_id(case), info.sha, [s.rfilename for s in info.siblings], retry=FAST)
    assert message(case) in str(error.value)
    assert hub.stats().bytes_for(kinds=("resolve_get", "cdn_get")) < 4 * 2**20  # data.pkl at most; never the bomb
    assert not canary.exists()
