"""The evidence store (issue 13), with real parts only: the real CLI, real DuckDB files, the bundled
Hub server on 127.0.0.1 and the small zoo.

After ingest, pair tests, ``compare`` / ``matrix`` of indexed models and the lineage stage read a
model only from ``<home>/evidence/<sha>.npz``: stopping the Hub server or deleting the folder a
model was ingested from changes no answer; a data folder without evidence (an older release) is
backfilled from sources still reachable, and a model whose source is gone says "evidence missing:
source unavailable" (never "not related"); the evidence reader is bounded and never unpickles;
and :class:`StoredModel` gives the battery the very numbers the live checkpoint gives.
"""

from __future__ import annotations

import io
import json
import pickle
import shutil
import zipfile
import zlib
from collections.abc import Callable
from contextlib import closing
from itertools import combinations
from pathlib import Path

import duckdb
import httpx
import numpy as np
import pytest
import torch
from cli_runner import cli, cli_text, runner

from pedigree.cli import app
from pedigree.crawler.hub_server import HubServer
from pedigree.errors import EvidenceMissingError
from pedigree.indexer.evidence_file import MANIFEST, EvidenceFile, write_evidence
from pedigree.indexer.independence.inputs import ModelTensors
from pedigree.indexer.independence.suite import PairReport, run_battery
from pedigree.indexer.local_checkpoint import open_checkpoint
from pedigree.indexer.stored_model import StoredModel, capture

QWEN, QWEN_CODE = "qwen-lab/tiny-qwen2", "qwen-lab/tiny-qwen2-code"
NEOX, NEOX_TESTS = "neox-lab/tiny-neox", "neox-lab/tiny-neox-tests"
GPT2 = "gpt-lab/tiny-gpt2"
MISSING = "evidence missing: source unavailable"
# what DuckDB caches of pair tests and the lineage built on them (storage/relations.py, storage/lineage.py)
PAIR_TABLES = ("pair_tests", "relations", "pair_evidence", "merge_evidence")
LINEAGE_TABLES = ("lineage_edges", "family_members", "build_families", "families", "lineage_builds")


# ---- helpers ---------------------------------------------------------------------------------


def sql(home: Path | str, *statements: str) -> list[list[tuple]]:
    """Run statements on the data folder's DuckDB file (no CLI command holds it in between)."""
    conn = duckdb.connect(str(Path(home) / "pedigree.duckdb"))
    try:
        return [conn.execute(statement).fetchall() for statement in statements]
    finally:
        conn.close()


def forget_pair_tests(home: Path | str) -> None:
    """Drop every cached pair test and the graph built on them, so that the next answers are computed."""
    sql(home, *(f"DELETE FROM {table}" for table in (*PAIR_TABLES, *LINEAGE_TABLES)))
    assert all(sql(home, f"SELECT count(*) FROM {t}")[0] == [(0,)] for t in (*PAIR_TABLES, *LINEAGE_TABLES))


def stored_pairs(home: Path | str) -> set[frozenset[str]]:
    (rows,) = sql(
        home,
        "SELECT a.id, b.id FROM relations r JOIN models a ON a.pk = r.model_a JOIN models b ON b.pk = r.model_b",
    )
    return {frozenset(row) for row in rows}


def evidence_rows(home: Path | str) -> dict[str, str]:
    """model id -> evidence file name, from the ``evidence`` table."""
    (rows,) = sql(home, "SELECT m.id, e.file FROM evidence e JOIN models m ON m.pk = e.model_pk")
    return dict(rows)


def evidence_files(home: Path | str) -> dict[str, tuple[int, int]]:
    """file name -> (size, mtime_ns) of every file in the evidence folder."""
    folder = Path(home) / "evidence"
    if not folder.is_dir():
        return {}
    return {p.name: (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.iterdir() if p.is_file()}


def drop_evidence(home: Path | str, model_ids: list[str] | None = None) -> None:
    """Simulate a data folder of an older release: no ``evidence`` row and no file (for some models)."""
    rows = evidence_rows(home)
    chosen = list(rows) if model_ids is None else model_ids
    for model_id in chosen:
        (Path(home) / "evidence" / rows[model_id]).unlink()
        sql(home, f"DELETE FROM evidence WHERE model_pk = (SELECT pk FROM models WHERE id = '{model_id}')")
    assert not set(chosen) & set(evidence_rows(home))


def invoke(*args: str, json_output: bool = False):
    """``pedigree ARGS`` through the real CLI (any exit code), in text mode or with --json."""
    return runner.invoke(app, [*args, *(["--json"] if json_output else [])], terminal_width=160)


def log10_by_test(result: dict) -> dict[str, float]:
    return {t["name"]: t["log10_p"] for t in result["tests"]}


# ---- 1. a refresh, then the Hub server stops: every answer stands ----------------------------------

HUB_MODELS = (QWEN, QWEN_CODE, NEOX, NEOX_TESTS)  # two families (Qwen2: GLU, GPT-NeoX: fused QKV), a child each


def answers(home: str) -> dict:
    """compare (with tests) of every pair, matrix with tests and a graph build - each computed from
    scratch (cached pair tests and graphs dropped first)."""
    forget_pair_tests(home)
    fresh = {}
    for a, b in combinations(HUB_MODELS, 2):
        result = cli("compare", a, b, "--home", home)
        assert result["tests"] and result["log10_p"] is not None, result
        fresh[a, b] = result
    assert stored_pairs(home) == {frozenset(pair) for pair in fresh}  # all computed now, none reused
    # the first build decides (Benjamini-Hochberg) over the pairs just tested; the second assembles
    # the families those decisions make (with a decide-first build it reuses the same families)
    cli("graph", "build", "--home", home)
    build = cli("graph", "build", "--home", home)
    matrix = cli("matrix", *HUB_MODELS, "--home", home)
    decided = {(a, b): cli("compare", a, b, "--home", home) for a, b in combinations(HUB_MODELS, 2)}
    export = Path(home) / "graph.json"
    cli("graph", "export", "--format", "json", "-o", str(export), "--home", home)
    graph = json.loads(export.read_text())
    edges = sorted(
        (e["source"], e["target"], e["relation"], e.get("confidence"), e.get("log10_p"), json.dumps(e.get("evidence")))
        for e in graph["edges"]
    )
    return {
        "compare": fresh,
        "decided": {
            pair: (r["log10_p"], r["log10_q"], r["confirmed"], log10_by_test(r)) for pair, r in decided.items()
        },
        "matrix": matrix,
        "build": {k: build[k] for k in ("models", "families", "edges")},
        "edges": edges,
    }


def test_answers_stand_after_the_hub_server_stops(small_zoo: Path, truth: dict, tmp_path: Path):
    root = tmp_path / "hub"
    for model in HUB_MODELS:
        shutil.copytree(small_zoo / model, root / model)
    home = str(tmp_path / "home")
    server = HubServer(root).start()
    url = server.url
    try:
        refreshed = cli("refresh", "--endpoint", url, "--home", home, "--confirm", "1")
        assert {r["id"]: r["status"] for r in refreshed["repos"]} == {m: "indexed" for m in HUB_MODELS}
        (sources,) = sql(home, "SELECT id, source FROM models")
        assert all(source and url.split("//")[1] in source for _, source in sources), sources  # read over HTTP
        assert set(evidence_rows(home)) == set(HUB_MODELS)
        untested = {frozenset(p) for p in combinations(HUB_MODELS, 2)} - stored_pairs(home)
        assert untested, "the refresh tested every pair: nothing would be computed after it"
        with_server = answers(home)
    finally:
        server.stop()
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{url}/api/models", timeout=2)
    stored = evidence_files(home)
    without_server = answers(home)

    assert evidence_files(home) == stored  # nothing was captured again
    assert without_server["compare"] == with_server["compare"]
    assert without_server["decided"] == with_server["decided"]
    assert without_server["matrix"] == with_server["matrix"]
    assert without_server["build"] == with_server["build"]
    assert without_server["edges"] == with_server["edges"]

    # ... and the answers are the right ones, not equal failures
    for (a, b), (log10_p, log10_q, confirmed, tests) in without_server["decided"].items():
        assert tests, (a, b)
        assert log10_q is not None, (a, b)
        same_family = truth[a]["family"] == truth[b]["family"]
        assert confirmed == same_family, (a, b, log10_p, log10_q)
        if same_family:
            assert log10_p < -12, (a, b, log10_p)
    by_pair = {frozenset((p["a"], p["b"])): p for p in without_server["matrix"]["pairs"]}
    for (a, b), (log10_p, *_) in without_server["decided"].items():
        assert by_pair[frozenset((a, b))]["log10_p"] == log10_p and by_pair[frozenset((a, b))]["test_error"] is None
    parents = {(source, target) for source, target, *_ in without_server["edges"]}
    assert parents == {(QWEN, QWEN_CODE), (NEOX, NEOX_TESTS)}
    assert all(truth[child]["parents"] == [parent] for parent, child in parents)
    assert without_server["build"]["edges"] == 2


# ---- a data folder whose sources are gone after ingest (shared by tests 2, 4 and the cached compare) ----


@pytest.fixture(scope="module")
def orphan_home(small_zoo: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """QWEN and QWEN_CODE ingested (no tests) from temporary copies of their folders, then the copies
    deleted: the data folder is all that is left of them.  Tests work on a copy (``home_copy``)."""
    base = tmp_path_factory.mktemp("orphans")
    home = base / "home"
    for model in (QWEN, QWEN_CODE):
        copy = base / "copies" / model
        shutil.copytree(small_zoo / model, copy)
        result = cli("ingest", str(copy), "--id", model, "--confirm", "0", "--home", str(home))
        assert [m["status"] for m in result["models"]] == ["indexed"], result
    shutil.rmtree(base / "copies")
    assert set(evidence_rows(home)) == {QWEN, QWEN_CODE}
    return home


@pytest.fixture()
def home_copy(orphan_home: Path, tmp_path: Path) -> Path:
    home = tmp_path / "home"
    shutil.copytree(orphan_home, home)
    return home


# ---- 2. compare ID FOLDER reads only the folder --------------------------------------------------


def test_compare_an_id_whose_folder_is_gone_with_a_folder(home_copy: Path, small_zoo: Path):
    """The indexed model answers from its evidence (its ingest folder is deleted), the other from
    its folder, with the numbers a compare of the two live folders gives."""
    home = str(home_copy)
    other = str(small_zoo / QWEN_CODE)
    live = cli("compare", str(small_zoo / QWEN), other, "--home", home)  # same bytes as the deleted copy
    stored = cli("compare", QWEN, other, "--home", home)
    assert stored["a"] == QWEN and stored["tests"] and stored["log10_p"] < -12, stored
    assert log10_by_test(stored) == log10_by_test(live)
    assert [t["detail"] for t in stored["tests"]] == [t["detail"] for t in live["tests"]]
    assert stored["log10_p"] == live["log10_p"] and stored["shared_blocks"] == live["shared_blocks"]
    assert stored["layer_map"] == live["layer_map"]
    # reversed, and in text
    reverse = cli("compare", other, QWEN, "--home", home)
    assert reverse["log10_p"] == stored["log10_p"] and log10_by_test(reverse) == log10_by_test(stored)
    text = cli_text("compare", QWEN, other, "--home", home)
    assert "independence tests" in text and "mlp_match" in text
    assert set(evidence_rows(home)) == {QWEN, QWEN_CODE}  # the folder was not captured into the store


def test_compare_asked_twice_gives_the_same_decision(home_copy: Path):
    """Two indexed models whose folders are gone are tested from the store; asking again reads the
    cached result - and must not turn an undecided pair (no Holm decision yet, log10 q
    null) into "not confirmed"."""
    home = str(home_copy)
    first = cli("compare", QWEN, QWEN_CODE, "--home", home)
    assert first["tests"] and first["log10_p"] < -12
    second = cli("compare", QWEN, QWEN_CODE, "--home", home)
    assert second["log10_p"] == first["log10_p"] and log10_by_test(second) == log10_by_test(first)
    assert (second["log10_q"], second["confirmed"]) == (first["log10_q"], first["confirmed"]), (first, second)
    if second["log10_q"] is None:
        assert "not confirmed" not in cli_text("compare", QWEN, QWEN_CODE, "--home", home)


# ---- 3. a data folder of an older release: backfill, or "evidence missing: source unavailable" ----------

MIGRATED = (QWEN, QWEN_CODE, GPT2)


def test_a_folder_without_evidence_is_backfilled_or_says_source_unavailable(small_zoo: Path, tmp_path: Path):
    sources = tmp_path / "sources"
    for model in MIGRATED:
        shutil.copytree(small_zoo / model, sources / model)
    home = str(tmp_path / "home")
    ingested = cli("ingest", str(sources), "--confirm", "0", "--home", home)
    assert ingested["counts"]["indexed"] == len(MIGRATED)
    drop_evidence(home)
    assert evidence_files(home) == {}
    assert cli("status", "--home", home)["evidence"]["missing"] == len(MIGRATED)
    shutil.rmtree(sources / GPT2)  # this model's source is gone for good

    # the tests backfill what they need from the sources still there
    compared = cli("compare", QWEN, QWEN_CODE, "--home", home)
    assert compared["tests"] and compared["log10_p"] < -12
    assert set(evidence_rows(home)) == {QWEN, QWEN_CODE}
    assert set(evidence_files(home)) == set(evidence_rows(home).values())

    # so does the graph build (QWEN_CODE's evidence dropped again), skipping the model without a source
    drop_evidence(home, [QWEN_CODE])
    build = cli("graph", "build", "--home", home)
    assert build["models"] == len(MIGRATED)
    assert set(evidence_rows(home)) == {QWEN, QWEN_CODE}
    assert set(evidence_files(home)) == set(evidence_rows(home).values())
    build = cli("graph", "build", "--home", home)  # the first build decided the tested pair
    assert build["edges"] == 1
    assert cli("status", "--home", home)["evidence"] == {
        "models": 2,
        "bytes": sum(size for size, _ in evidence_files(home).values()),
        "missing": 1,
    }

    # the model without a source: its tests are not run, with the reason - never "not related"
    text = invoke("compare", QWEN, GPT2, "--home", home)
    as_json = invoke("compare", QWEN, GPT2, "--home", home, json_output=True)
    for result in (text, as_json):
        output = result.stdout + result.stderr
        assert "Traceback" not in output
        assert MISSING in " ".join(output.split()), output
        assert GPT2 in output
        assert "not confirmed" not in output and "combined log10 p" not in output
    answer = json.loads(as_json.stdout)
    if as_json.exit_code == 0:  # a comparison that carries the reason instead of the tests
        assert answer.get("log10_p") is None and answer.get("confirmed") is not False, answer
        assert MISSING in json.dumps(answer)
    else:  # or one line of error
        assert as_json.exit_code == text.exit_code == 1
        assert MISSING in answer["error"] and "\n" not in answer["error"]
        assert len([line for line in text.stderr.splitlines() if line.strip()]) == 1
    assert frozenset((QWEN, GPT2)) not in stored_pairs(home)  # nothing stored as a test result

    # matrix: that model's pairs say why their tests did not run; the other pair answers
    matrix = cli("matrix", *MIGRATED, "--home", home)
    for pair in matrix["pairs"]:
        if GPT2 in (pair["a"], pair["b"]):
            assert pair["log10_p"] is None and MISSING in pair["test_error"], pair
        else:
            assert pair["log10_p"] == compared["log10_p"] and pair["test_error"] is None
    matrix_text = " ".join(cli_text("matrix", *MIGRATED, "--home", home).split())
    assert f"tests not run: {QWEN} ~ {GPT2}" in matrix_text and MISSING in matrix_text

    # its fingerprint answers still work
    scores = cli("compare", QWEN, GPT2, "--no-tests", "--home", home)
    assert scores["log10_p"] is None and scores["layers"][1] > 0 and 0 <= abs(scores["score"]) < 0.5
    related = cli("query", GPT2, "--home", home)
    assert {r["id"] for r in related["related"]} == {QWEN, QWEN_CODE}
    assert "fingerprint score" in cli_text("compare", GPT2, QWEN_CODE, "--no-tests", "--home", home)


# ---- 4. the evidence file's reader is bounded and never unpickles ---------------------------------


class Payload:
    """Unpickling this creates ``marker`` (proof that a pickle ran)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, array, allow_pickle=True)
    return buffer.getvalue()


def manifest_bytes(manifest: object) -> np.ndarray:
    return np.frombuffer(zlib.compress(json.dumps(manifest).encode()), dtype=np.uint8)


def zip_of(path: Path, members: dict[str, bytes]) -> None:
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name + ".npy", data)


def declared_huge(path: Path) -> None:
    """A member whose header declares 4 PB of float32 but holds 64 bytes."""
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False, "shape": (10**15,)})
    zip_of(path, {MANIFEST: npy(manifest_bytes({"label": "x/y"})), "rows": header.getvalue() + bytes(64)})


def zlib_bomb(mib: int = 300) -> bytes:
    """A zlib stream of ``mib`` MiB of zeros (cheaply: one full-flush block repeated; no trailer -
    a reader that stops at its limit never gets there)."""
    chunk, deflate = bytes(2**20), zlib.compressobj(9)
    first = deflate.compress(chunk) + deflate.flush(zlib.Z_FULL_FLUSH)
    block = deflate.compress(chunk) + deflate.flush(zlib.Z_FULL_FLUSH)
    return first + block * (mib - 1)


def flipped_byte_in(data: bytes, needle: bytes) -> bytes:
    blob = bytearray(data)
    blob[data.index(needle) + 4] ^= 0xFF
    return bytes(blob)


@pytest.fixture(scope="module")
def good_evidence(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("evidence") / "good.npz"
    arrays = {"rows": torch.arange(64, dtype=torch.float32), "half": torch.ones(8, dtype=torch.bfloat16)}
    write_evidence(path, {"label": "x/y", "tensors": []}, arrays)
    return path


def read_everything(path: Path) -> None:
    evidence = EvidenceFile(path)
    try:
        with zipfile.ZipFile(path) as archive:
            names = [n[: -len(".npy")] for n in archive.namelist() if n != MANIFEST + ".npy"]
        for name in names:
            evidence.tensor(name)
    finally:
        evidence.close()


CORRUPTIONS: dict[str, Callable[[Path, bytes], None]] = {
    "empty": lambda p, good: p.write_bytes(b""),
    "truncated to half": lambda p, good: p.write_bytes(good[: len(good) // 2]),
    "last bytes cut": lambda p, good: p.write_bytes(good[:-7]),
    "garbage": lambda p, good: p.write_bytes(bytes(range(256)) * 40),
    "array bytes flipped": lambda p, good: p.write_bytes(
        flipped_byte_in(good, np.arange(64, dtype=np.float32).tobytes())
    ),
    "array header garbage": lambda p, good: p.write_bytes(good.replace(b"'descr'", b"'dexcr'", 1)),
    "manifest not zlib": lambda p, good: zip_of(p, {MANIFEST: npy(np.frombuffer(b"not zlib at all", np.uint8))}),
    "manifest not a JSON object": lambda p, good: zip_of(p, {MANIFEST: npy(manifest_bytes([1, 2, 3]))}),
    "manifest a zlib bomb": lambda p, good: zip_of(p, {MANIFEST: npy(np.frombuffer(zlib_bomb(), np.uint8))}),
    "no manifest": lambda p, good: zip_of(p, {"rows": npy(np.zeros(4, np.float32))}),
    "array larger than the file": lambda p, good: declared_huge(p),
}


@pytest.mark.parametrize("corruption", list(CORRUPTIONS))
def test_a_damaged_evidence_file_is_refused(corruption: str, good_evidence: Path, tmp_path: Path):
    read_everything(good_evidence)  # the undamaged file reads
    path = tmp_path / "damaged.npz"
    CORRUPTIONS[corruption](path, good_evidence.read_bytes())
    with pytest.raises(EvidenceMissingError) as refused:
        read_everything(path)
    assert "\n" not in str(refused.value)


@pytest.mark.parametrize("where", ["manifest", "array"])
def test_an_evidence_file_holding_a_pickle_is_refused_unread(where: str, tmp_path: Path):
    live, marker = tmp_path / "live-marker", tmp_path / "marker"
    pickle.loads(pickle.dumps(Payload(live)))
    assert live.exists()  # the payload does run when unpickled
    hostile = np.array([Payload(marker), None], dtype=object)
    path = tmp_path / "hostile.npz"
    if where == "manifest":
        zip_of(path, {MANIFEST: npy(hostile)})
    else:
        zip_of(path, {MANIFEST: npy(manifest_bytes({"label": "x/y"})), "rows": npy(hostile)})
    with pytest.raises(EvidenceMissingError, match="allow_pickle=False"):
        read_everything(path)
    assert not marker.exists()


def test_a_truncated_evidence_file_is_one_line_in_the_cli(home_copy: Path, small_zoo: Path):
    home = str(home_copy)
    name = evidence_rows(home)[QWEN]
    path = home_copy / "evidence" / name
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 3])
    text = invoke("compare", QWEN, str(small_zoo / QWEN_CODE), "--home", home)
    as_json = invoke("compare", QWEN, str(small_zoo / QWEN_CODE), "--home", home, json_output=True)
    assert text.exit_code == as_json.exit_code == 1, (text.stdout, text.stderr)
    assert "Traceback" not in text.stdout + text.stderr + as_json.stdout + as_json.stderr
    lines = [line for line in text.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "evidence" in lines[0], text.stderr
    message = json.loads(as_json.stdout)["error"]
    assert "evidence" in message and "internal error" not in message and "\n" not in message
    # the fingerprints still answer
    assert cli("compare", QWEN, QWEN_CODE, "--no-tests", "--home", home)["score"] > 0.5


# ---- 5. StoredModel gives the battery the numbers of the live checkpoint -------------------------


def outcomes(report: PairReport) -> list[tuple[str, float]]:
    return [(t.name, t.log10_p) for t in report.tests]


@pytest.mark.parametrize("pair", [(QWEN, QWEN_CODE), (QWEN, GPT2)], ids=["same-family", "cross-family"])
def test_stored_model_gives_the_battery_the_live_numbers(pair: tuple[str, str], small_zoo: Path, tmp_path: Path):
    stored = []
    for model in pair:
        with open_checkpoint(small_zoo / model) as source:
            manifest, arrays = capture(ModelTensors(source, model))
        path = tmp_path / (model.replace("/", "--") + ".npz")
        write_evidence(path, manifest, arrays)
        stored.append(StoredModel(EvidenceFile(path), model))
    with closing(stored[0]), closing(stored[1]):
        from_store = run_battery(stored[0], stored[1])
    with open_checkpoint(small_zoo / pair[0]) as a, open_checkpoint(small_zoo / pair[1]) as b:
        live = run_battery(ModelTensors(a, pair[0]), ModelTensors(b, pair[1]))
    assert len(live.tests) >= 3
    assert [name for name, _ in outcomes(from_store)] == [name for name, _ in outcomes(live)]
    for (name, got), (_, want) in zip(outcomes(from_store), outcomes(live)):
        assert got == pytest.approx(want, abs=1e-9), name
    assert from_store.log10_p == pytest.approx(live.log10_p, abs=1e-9)
    assert from_store.layer_map == live.layer_map
    if pair[1] == QWEN_CODE:
        assert live.log10_p < -12
    else:
        assert live.log10_p > -3


def test_a_damaged_evidence_file_is_captured_again_while_its_source_is_there(small_zoo: Path, tmp_path: Path):
    from pedigree.indexer.evidence_store import current_file, open_evidence
    from pedigree.indexer.pipeline import ingest_checkpoint
    from pedigree.storage.db import Store

    with Store(tmp_path / "h" / "pedigree.duckdb") as store:
        ingest_checkpoint(store, QWEN, small_zoo / QWEN)
        record = store.get_model(QWEN)
        assert record is not None
        path = current_file(store, record)
        assert path is not None
        path.write_bytes(b"garbage")
        model = open_evidence(store, record)
        try:
            assert model.depth > 0 and len(model.probes) > 0
        finally:
            model.close()
        assert path.read_bytes()[:2] == b"PK"  # a zip again


def test_a_model_and_its_evidence_row_are_committed_together(tmp_path: Path):
    """save_with_evidence is one transaction: when the evidence row cannot be written, the model and
    its vectors are not either (a run killed between the two would otherwise leave an indexed model
    that the next run skips as unchanged, with no evidence row)."""
    from pedigree.indexer.evidence_store import save_with_evidence
    from pedigree.storage.db import ModelRecord, Store
    from pedigree.types import Status, VectorRow

    store = Store(tmp_path / "pedigree.duckdb")
    try:
        record = ModelRecord(id="lab/model", status=Status.INDEXED, source="/nowhere", revision="r1")
        rows = [VectorRow("model", -1, np.ones(8, dtype=np.float32))]
        with pytest.raises(duckdb.Error):  # bytes NOT NULL: the evidence insert fails inside the transaction
            save_with_evidence(store, record, rows, "v1", "a.npz", None)  # type: ignore[arg-type]
        assert store.get_model("lab/model") is None
        assert store.conn.execute("SELECT count(*) FROM fingerprints").fetchone() == (0,)
        pk = save_with_evidence(store, record, rows, "v1", "a.npz", 123)
        assert store.conn.execute("SELECT model_pk, file, bytes FROM evidence").fetchall() == [(pk, "a.npz", 123)]
        assert store.count_model_vectors(pk, "v1") == 1
    finally:
        store.close()
