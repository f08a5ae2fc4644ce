"""Answers read from the index load no torch: ``pedigree query``, ``models`` and ``compare`` of a
pair whose tests are stored.  torch's import alone takes seconds (more than the answer itself), and
none of these needs it: the fingerprint version they look vectors up under is named by
``indexer.versions``, which imports neither torch nor scipy.  Each command runs as a fresh process,
as a user runs it, and must print what the in-process CLI prints."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from cli_runner import cli

PROBE = (
    "import runpy, sys\n"
    "sys.argv = ['pedigree', *sys.argv[1:]]\n"
    "try:\n"
    "    runpy.run_module('pedigree', run_name='__main__')\n"
    "except SystemExit as done:\n"
    "    assert not done.code, done.code\n"
    "heavy = sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'faiss', 'scipy'})\n"
    "sys.stderr.write('HEAVY=' + ','.join(heavy) + '\\n')\n"
)
PARENT, CHILD = "llama-lab/tiny-llama-s1", "testsmith/tiny-llama-tests"


def run_fresh(home: Path, *args: str) -> tuple[dict, set[str]]:
    """``pedigree --home HOME --json ARGS`` in a fresh interpreter: its JSON and the heavy modules it loaded."""
    done = subprocess.run(
        [sys.executable, "-c", PROBE, "--home", str(home), "--json", *args],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    heavy = done.stderr.strip().splitlines()[-1].removeprefix("HEAVY=")
    return json.loads(done.stdout), set(filter(None, heavy.split(",")))


@pytest.fixture(scope="module")
def home(indexed_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    copy = tmp_path_factory.mktemp("answers") / "home"
    shutil.copytree(indexed_home, copy)
    return copy


def test_compare_of_a_tested_pair_loads_no_torch(home: Path):
    first = cli("compare", PARENT, CHILD, "--home", str(home))  # runs (and stores) the tests if not yet stored
    assert first["log10_p"] < -12
    again, heavy = run_fresh(home, "compare", PARENT, CHILD)
    assert "torch" not in heavy
    assert again == first


def test_query_and_models_load_no_torch(home: Path):
    expected = cli("query", CHILD, "--home", str(home))
    answer, heavy = run_fresh(home, "query", CHILD)
    assert "torch" not in heavy
    assert answer == expected
    assert PARENT in json.dumps(answer)  # the answer names the parent (the lineage itself is tested elsewhere)
    models, heavy = run_fresh(home, "models")
    assert not heavy & {"torch", "faiss", "scipy"}
    assert {m["id"] for m in models["models"]} >= {PARENT, CHILD}
