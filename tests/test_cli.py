"""The real CLI end to end on the small zoo: ingest, query, compare, matrix, models; idempotent
re-ingest, FAISS rebuilds, hostile checkpoints failing alone."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import faiss
import pytest
from cli_runner import cli, db_dump
from hostile import HOSTILE_CASES, HOSTILE_MESSAGES


@pytest.fixture(scope="module")
def cli_home(indexed_home: Path) -> Path:
    return indexed_home


def test_reingest_changes_nothing(cli_home: Path, small_zoo: Path):
    before = db_dump(cli_home)
    result = cli("ingest", str(small_zoo), "--home", str(cli_home))
    assert {m["status"] for m in result["models"]} == {"unchanged"}
    assert db_dump(cli_home) == before
    conn = duckdb.connect(str(cli_home / "pedigree.duckdb"), read_only=True)
    db_ids = {v for (v,) in conn.execute("SELECT vector_id FROM fingerprints WHERE kind = 'layer'").fetchall()}
    conn.close()
    index = faiss.read_index(str(cli_home / "faiss" / "layer.index"))
    faiss_ids = faiss.vector_to_array(faiss.downcast_index(index).id_map)
    assert len(faiss_ids) == len(set(faiss_ids)) == len(db_ids) and set(faiss_ids) == db_ids


def test_query_ranks_relatives_and_reports_matching_blocks(cli_home: Path, truth: dict):
    model_id = next(m for m, f in sorted(truth.items()) if f["relation"] == "rotated")
    result = cli("query", model_id, "--home", str(cli_home), "--limit", "5")
    assert result["model"] == model_id and len(result["related"]) == 5
    top = result["related"][0]
    assert top["id"] in truth[model_id]["parents"]
    assert top["score"] > 0.99 and [i for i, _, _ in top["layers"]] == list(range(len(top["layers"])))
    assert all(set(r) == {"id", "score", "layers"} for r in result["related"])
    assert [r["score"] for r in result["related"]] == sorted((r["score"] for r in result["related"]), reverse=True)


def test_deleted_faiss_indexes_are_rebuilt_on_query(cli_home: Path, truth: dict, tmp_path: Path):
    home = tmp_path / "home"
    shutil.copytree(cli_home, home)
    model_id = sorted(truth)[0]
    expected = cli("query", model_id, "--home", str(home))
    shutil.rmtree(home / "faiss")
    assert cli("query", model_id, "--home", str(home)) == expected
    assert (home / "faiss" / "model.index").exists() and (home / "faiss" / "layer.index").exists()


def test_compare_accepts_ids_and_folders(cli_home: Path, small_zoo: Path, truth: dict):
    child = next(m for m, f in sorted(truth.items()) if f["relation"] == "permuted")
    parent = truth[child]["parents"][0]
    by_id = cli("compare", child, parent, "--home", str(cli_home))
    by_path = cli("compare", str(small_zoo / child), parent, "--home", str(cli_home))
    assert by_id["a"] == child and by_id["score"] > 0.99
    assert by_path["score"] == pytest.approx(by_id["score"], abs=1e-5)
    assert [pair[:2] for pair in by_path["layer_map"]] == [pair[:2] for pair in by_id["layer_map"]]
    assert [pair[2] for pair in by_path["layer_map"]] == pytest.approx(
        [pair[2] for pair in by_id["layer_map"]], abs=1e-5
    )


def test_matrix_scores_every_pair(cli_home: Path, truth: dict):
    ids = sorted(truth)[:4]
    result = cli("matrix", *ids, "--home", str(cli_home))
    assert result["models"] == ids and len(result["pairs"]) == 6
    assert all(-1 <= p["score"] <= 1 for p in result["pairs"])


def test_unknown_model_is_a_clean_error(cli_home: Path, tmp_path: Path):
    assert "not in the index" in cli("query", "nobody/nothing", "--home", str(cli_home), ok=False)["error"]
    assert "no index" in cli("query", "a/b", "--home", str(tmp_path / "empty"), ok=False)["error"]
    assert "neither" in cli("compare", "a/b", "c/d", "--home", str(cli_home), ok=False)["error"]


def test_hostile_checkpoints_fail_alone(small_zoo: Path, truth: dict, tmp_path: Path):
    folder = tmp_path / "mixed"
    good = sorted(truth)[:3]
    for model_id in good:
        shutil.copytree(small_zoo / model_id, folder / model_id)
    for case, build in HOSTILE_CASES.items():
        build(folder / "hostile" / case.replace("_", "-"))
    odd = folder / "odd" / "mamba"
    shutil.copytree(small_zoo / good[0], odd)
    config = json.loads((odd / "config.json").read_text())
    (odd / "config.json").write_text(
        json.dumps({**config, "model_type": "mamba", "architectures": ["MambaForCausalLM"]})
    )

    home = tmp_path / "home"
    result = cli("ingest", str(folder), "--home", str(home))
    by_id = {m["id"]: m for m in result["models"]}
    assert all(by_id[m]["status"] == "indexed" for m in good)
    assert by_id["odd/mamba"]["status"] == "unsupported" and "mamba" in by_id["odd/mamba"]["error"]
    for case in HOSTILE_CASES:
        outcome = by_id[f"hostile/{case.replace('_', '-')}"]
        assert outcome["status"] == "failed", outcome
        assert HOSTILE_MESSAGES[case] in outcome["error"], (case, outcome["error"])
    listed = {m["id"]: m["status"] for m in cli("models", "--home", str(home))["models"]}
    assert listed == {m: o["status"] for m, o in by_id.items()}
    assert cli("query", good[0], "--home", str(home))["model"] == good[0]


def test_console_script_and_environment_home(cli_home: Path, truth: dict, tmp_path: Path):
    env = {"PEDIGREE_HOME": str(cli_home), "PATH": str(Path(sys.executable).parent)}
    done = subprocess.run(
        [sys.executable, "-m", "pedigree", "models", "--json"], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert {m["id"] for m in json.loads(done.stdout)["models"]} == set(truth)
