"""Session fixtures: the small real-trained zoo (built once per run, cached across runs)."""

from __future__ import annotations

import json
import os
from pathlib import Path

# As the CLI does (pedigree.cli.main): idle OpenMP workers sleep instead of spinning beside the
# HTTP threads; set before torch loads.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pytest


@pytest.fixture(scope="session")
def small_zoo() -> Path:
    from bench.zoo_cache import small_zoo_path

    return small_zoo_path()


@pytest.fixture(scope="module")
def small_tokenizers(small_zoo: Path):
    """bench.calibration_set's tokenizers from the small zoos A and B (the full zoos are the bench's)."""
    from bench import calibration_set as cs
    from bench.zoo_cache import small_zoo_b_path

    saved = dict(cs.TOKENIZER_ZOOS)
    cs.TOKENIZER_ZOOS.update({"full": small_zoo, "b-full": small_zoo_b_path()})
    cs.tokenizer_texts.cache_clear()
    cs._tokenizer.cache_clear()
    yield
    cs.TOKENIZER_ZOOS.update(saved)
    cs.tokenizer_texts.cache_clear()
    cs._tokenizer.cache_clear()


@pytest.fixture(scope="session")
def truth(small_zoo: Path) -> dict:
    return json.loads((small_zoo / "truth.json").read_text())


@pytest.fixture(scope="session")
def indexed_home(small_zoo: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data folder with the small zoo ingested by the real CLI (fingerprints, tests, graph).
    Shared by the session: tests that change it work on a copy."""
    from cli_runner import cli

    home = tmp_path_factory.mktemp("indexed-home")
    result = cli("ingest", str(small_zoo), "--home", str(home))
    assert result["counts"]["indexed"] == len(result["models"]) > 10
    return home
