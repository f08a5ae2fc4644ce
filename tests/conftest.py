"""Session fixtures: the small real-trained zoo (built once per run, cached across runs) and a data
folder with that zoo indexed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pedigree.config import load_settings
from pedigree.workspace import Workspace


@pytest.fixture(scope="session")
def small_zoo() -> Path:
    from bench.zoo.testing import small_zoo_path

    return small_zoo_path()


@pytest.fixture(scope="session")
def truth(small_zoo: Path) -> dict:
    return json.loads((small_zoo / "truth.json").read_text())


@pytest.fixture(scope="session")
def indexed_home(small_zoo: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data folder with the whole small zoo ingested (shared: tests must not modify it)."""
    home = tmp_path_factory.mktemp("indexed-home")
    with Workspace(load_settings(home)) as ws:
        outcomes = ws.ingest(small_zoo)
    assert all(o.status == "indexed" for o in outcomes), [o for o in outcomes if o.status != "indexed"]
    return home
