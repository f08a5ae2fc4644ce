"""Session fixtures: the small real-trained zoo (built once per run, cached across runs)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def small_zoo() -> Path:
    from bench.zoo.testing import small_zoo_path

    return small_zoo_path()


@pytest.fixture(scope="session")
def truth(small_zoo: Path) -> dict:
    return json.loads((small_zoo / "truth.json").read_text())
