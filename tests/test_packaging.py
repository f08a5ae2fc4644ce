"""Packaging: one import name, the design's folders mapped into it, and a regular install that works
without the source checkout (issue 11)."""

from __future__ import annotations

import email
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SETUPTOOLS = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]


def test_every_package_folder_is_listed_and_mapped():
    mapped = SETUPTOOLS["package-dir"]
    found = set()
    for package, folder in mapped.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            parts = init.parent.relative_to(ROOT / folder).parts
            if package == "pedigree" and parts and parts[0] in ("crawler", "indexer", "storage", "query"):
                continue
            found.add(".".join([package, *parts]))
    assert found == set(SETUPTOOLS["packages"])


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(ROOT)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (built,) = out.glob("pedigree-*.whl")
    return built


def test_the_wheel_installs_one_top_level_name(wheel: Path):
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        info = next(n for n in names if n.endswith(".dist-info/METADATA"))
        metadata = email.message_from_bytes(archive.read(info))
        top_level = [n for n in names if n.endswith(".dist-info/top_level.txt")]
        tops = archive.read(top_level[0]).decode().split() if top_level else []
    assert {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")} == {"pedigree"}
    assert tops in ([], ["pedigree"])
    assert "pedigree/crawler/hub_server/server.py" in names and "pedigree/zoo/build.py" in names
    assert "pedigree/py.typed" in names and "pedigree/indexer/data/probe_words.txt" in names
    assert not any(n.startswith(("pedigree/bench", "pedigree/tests")) for n in names)
    requires = " ".join(metadata.get_all("Requires-Dist") or [])
    assert "tokenizers" in requires  # the demo builds the zoo's tokenizers (a plain install must run it)


def test_a_regular_install_imports_without_the_checkout(wheel: Path, tmp_path: Path):
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    code = (
        "import pedigree, pedigree.crawler.crawl, pedigree.zoo.build, pedigree.cli;"
        "from pedigree.indexer.probes import probe_keys; assert len(probe_keys()) > 1000;"  # package data
        "import os; print(os.path.dirname(pedigree.crawler.crawl.__file__))"
    )
    done = subprocess.run(
        [sys.executable, "-I", "-c", f"import sys; sys.path.insert(0, {str(target)!r}); {code}"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(target / "pedigree" / "crawler")


def test_importing_the_library_changes_no_environment_and_loads_no_torch(tmp_path: Path):
    code = (
        "import os, sys; before = dict(os.environ);"
        "import pedigree; from pedigree import Workspace, load_settings, Status;"
        "assert dict(os.environ) == before, 'the environment changed';"
        "assert not {'torch', 'faiss'} & set(sys.modules), 'torch or faiss loaded';"
        "assert all(hasattr(pedigree, name) for name in pedigree.__all__)"
    )
    env = {k: v for k, v in __import__("os").environ.items() if k != "OMP_WAIT_POLICY"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr
