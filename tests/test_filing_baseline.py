"""bench.filing_baseline: another checkout's graphs, handed back as JSON, are the graphs that
checkout builds - checked with this checkout as "the other one" on a three-model chain of the
small zoo, against the same ingest run in process."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.filing_baseline import MODES, other_checkout_graphs
from bench.lineage import score
from bench.report import ROOT
from pedigree.config import load_settings
from pedigree.query.graph import current_build, load_graph
from pedigree.workspace import Workspace

CHAIN = ("llama-lab/tiny-llama-s1", "testsmith/tiny-llama-tests", "asyncio-fans/tiny-llama-tests-async")


@pytest.fixture(scope="module")
def chain_zoo(small_zoo: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("chain-zoo")
    truth = json.loads((small_zoo / "truth.json").read_text())
    for model in CHAIN:
        (folder / model).parent.mkdir(parents=True, exist_ok=True)
        (folder / model).symlink_to(small_zoo / model, target_is_directory=True)
    (folder / "truth.json").write_text(json.dumps({m: truth[m] for m in CHAIN}))
    return folder


def _edges(graph) -> set[tuple[str, str, str, bool]]:
    return {(u, v, d["relation"], d.get("directed", True)) for u, v, d in graph.edges(data=True)}


def test_other_checkout_graphs_are_the_graphs_it_builds(chain_zoo: Path, tmp_path: Path) -> None:
    truth = json.loads((chain_zoo / "truth.json").read_text())
    handed_back = other_checkout_graphs(ROOT, chain_zoo)
    assert set(handed_back) == set(MODES)
    with Workspace(load_settings(str(tmp_path / "home"))) as ws:
        ws.ingest(chain_zoo)
        for mode in MODES:
            ws.build_graph(mode)
            built = load_graph(ws.store, current_build(ws.store, mode))
            assert _edges(handed_back[mode]) == _edges(built), mode
            assert {n: handed_back[mode].nodes[n]["family"] for n in CHAIN} == {
                n: built.nodes[n]["family"] for n in CHAIN
            }
            ours, theirs = score(truth, built, None), score(truth, handed_back[mode], None)
            assert (theirs["f1"], theirs["wrong_edges"]) == (ours["f1"], ours["wrong_edges"]), mode
    # with time, the chain is found whole (a constraint: a parent is never newer than its child)
    assert score(truth, handed_back["time"], None)["f1"] == 1.0


def test_a_checkout_that_fails_is_reported_with_its_error(chain_zoo: Path, tmp_path: Path) -> None:
    (tmp_path / "pedigree").mkdir()
    (tmp_path / "pedigree" / "__init__.py").write_text("raise ImportError('not a pedigree checkout')\n")
    with pytest.raises(RuntimeError, match="not a pedigree checkout"):
        other_checkout_graphs(tmp_path, chain_zoo)


def test_a_folder_that_is_no_checkout_is_refused_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from bench.filing_baseline import main

    with pytest.raises(SystemExit) as stopped:
        main(["--checkout", str(tmp_path / "missing")])
    assert stopped.value.code == 2
    assert "not a pedigree checkout" in capsys.readouterr().err
