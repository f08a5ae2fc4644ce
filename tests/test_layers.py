"""The layer contract: pedigree's modules import only downwards, and nothing imports in a loop.

Bottom to top: shared base (errors, settings, types, result records) -> checkpoint formats and tensor sources (local
folders and HTTP range reads) -> the analysis (fingerprints, independence tests, lineage maths) ->
storage -> the indexing pipeline that writes to storage -> the crawler -> query answers -> the
library API -> the service (HTTP API and web page) -> the CLI.  A module may import its own layer
and the layers below it.  Every module of the package must be placed; imports are read from the
source (function-level imports count, ``if TYPE_CHECKING:`` blocks do not).
"""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

import networkx as nx
import pytest

ROOT = Path(__file__).resolve().parents[1]

LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("base", ("pedigree._version", "pedigree.errors", "pedigree.config", "pedigree.types", "pedigree.results")),
    (
        "formats and sources",
        (
            "pedigree.indexer.bounded_json",
            "pedigree.indexer.safetensors_format",
            "pedigree.indexer.zip_archive",
            "pedigree.indexer.restricted_pickle",
            "pedigree.indexer.torch_zip_format",
            "pedigree.indexer.gguf_format",
            "pedigree.indexer.gguf_quant",
            "pedigree.indexer.gguf_names",
            "pedigree.indexer.gguf_checkpoint",
            "pedigree.indexer.sources",
            "pedigree.indexer.local_files",
            "pedigree.indexer.local_checkpoint",
            "pedigree.indexer.openers",
            "pedigree.indexer.vocabulary",
            "pedigree.indexer.card",
            "pedigree.indexer.evidence_file",
            "pedigree.indexer.probes",
            "pedigree.indexer.adapters",
            "pedigree.indexer.peft_adapter",
            "pedigree.crawler.http",
            "pedigree.crawler.link_estimate",
            "pedigree.crawler.remote",
            "pedigree.crawler.listing",
            "pedigree.crawler.span_cache",
        ),
    ),
    (
        "analysis",
        (
            "pedigree.indexer.bf16",
            "pedigree.indexer.sampling",
            "pedigree.indexer.unit_selection",
            "pedigree.indexer.versions",
            "pedigree.indexer.canonical",
            "pedigree.indexer.sketch",
            "pedigree.indexer.fingerprint",
            "pedigree.indexer.block_signatures",
            "pedigree.indexer.weight_stats",
            "pedigree.indexer.scoring",
            "pedigree.indexer.independence",
            "pedigree.indexer.lineage",
            "pedigree.indexer.lineage.arborescence",
            "pedigree.indexer.lineage.assemble",
            "pedigree.indexer.lineage.declared",
            "pedigree.indexer.lineage.evidence",
            "pedigree.indexer.lineage.geometry",
            "pedigree.indexer.lineage.signals",
            "pedigree.indexer.lineage.structure",
            "pedigree.indexer.stored_model",
            "pedigree.indexer.unet",
        ),
    ),
    ("storage", ("pedigree.storage",)),
    (
        "indexing pipeline",
        (
            "pedigree.indexer.pipeline",
            "pedigree.indexer.pipeline_adapter",
            "pedigree.indexer.confirm",
            "pedigree.indexer.evidence_store",
            "pedigree.indexer.lineage.build",
            "pedigree.indexer.lineage.gather",
            "pedigree.indexer.lineage.workers",
        ),
    ),
    ("crawler", ("pedigree.crawler.crawl", "pedigree.crawler.hub_server", "pedigree.crawler.executor")),
    ("query", ("pedigree.query",)),
    ("library API", ("pedigree.workspace", "pedigree.schedule", "pedigree.demo", "pedigree.zoo")),
    ("service", ("pedigree.service",)),
    ("CLI", ("pedigree.cli", "pedigree.__main__")),
]
# the package __init__ (lazy re-exports of the public API) and package markers sit on top
TOP = len(LAYERS)
DESIGN_FOLDERS = ("crawler", "indexer", "storage", "query")


def package_dirs() -> dict[str, Path]:
    """pedigree.* package -> folder, from pyproject.toml's package-dir mapping."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    return {name: ROOT / folder for name, folder in config["package-dir"].items()}


def modules() -> dict[str, Path]:
    """Every module of the installed package, by dotted name."""
    found: dict[str, Path] = {}
    for package, folder in package_dirs().items():
        for path in folder.rglob("*.py"):
            relative = path.relative_to(folder).with_suffix("")
            parts = [p for p in relative.parts if p != "__init__"]
            if package == "pedigree" and parts and parts[0] in DESIGN_FOLDERS:
                continue
            found[".".join([package, *parts])] = path
    return found


def layer_of(module: str) -> int:
    best, layer = -1, None
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".") or module.startswith(prefix + "_")) and len(
                prefix
            ) > best:
                best, layer = len(prefix), index
    if layer is None:
        if module == "pedigree" or module.count(".") == 1 and module.split(".")[1] in DESIGN_FOLDERS:
            return TOP
        raise LookupError(module)
    return layer


def _type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imports(module: str, path: Path, known: set[str]) -> set[str]:
    """The pedigree modules ``module`` imports (resolving relative and ``from X import Y``)."""
    tree = ast.parse(path.read_text(), str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                found.add(candidate if candidate in known else base)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return {name for name in found if name == "pedigree" or name.startswith("pedigree.")}


@pytest.fixture(scope="module")
def graph() -> nx.DiGraph:
    found = modules()
    known = set(found)
    g = nx.DiGraph()
    for module, path in found.items():
        g.add_node(module)
        for target in imports(module, path, known):
            g.add_edge(module, target)
    return g


def test_every_module_has_a_layer(graph: nx.DiGraph) -> None:
    unplaced = []
    for module in graph:
        try:
            layer_of(module)
        except LookupError:
            unplaced.append(module)
    assert not unplaced, f"modules with no layer in tests/test_layers.py: {unplaced}"


def layer_name(module: str) -> str:
    layer = layer_of(module)
    return LAYERS[layer][0] if layer < TOP else "top"


def test_imports_only_go_down(graph: nx.DiGraph) -> None:
    upward = [
        f"{a} ({layer_name(a)}) imports {b} ({layer_name(b)})" for a, b in graph.edges if layer_of(b) > layer_of(a)
    ]
    assert not upward, "\n".join(upward)


def test_no_module_imports_in_a_loop(graph: nx.DiGraph) -> None:
    loops = [sorted(c) for c in nx.strongly_connected_components(graph) if len(c) > 1]
    assert not loops, loops


def test_the_design_folders_do_not_import_in_a_loop(graph: nx.DiGraph) -> None:
    def folder(module: str) -> str | None:
        parts = module.split(".")
        return parts[1] if len(parts) > 1 and parts[1] in DESIGN_FOLDERS else None

    folders = nx.DiGraph()
    for a, b in graph.edges:
        fa, fb = folder(a), folder(b)
        if fa and fb and fa != fb:
            folders.add_edge(fa, fb)
    assert nx.is_directed_acyclic_graph(folders), sorted(folders.edges)


def test_the_checker_sees_an_upward_import(tmp_path: Path) -> None:
    """The contract is not vacuous: an upward import in a base module is detected."""
    module = tmp_path / "errors.py"
    module.write_text("def f():\n    from pedigree.workspace import Workspace\n")
    found = imports("pedigree.errors", module, {"pedigree.workspace"})
    assert found == {"pedigree.workspace"} and layer_of("pedigree.workspace") > layer_of("pedigree.errors")


def test_the_package_never_imports_the_benchmarks_or_the_tests():
    """A plain install has neither: ``pedigree demo`` once failed on ``import bench``."""
    offenders = []
    for module, path in modules().items():
        for node in ast.walk(ast.parse(path.read_text())):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom) and not node.level
                else []
            )
            offenders += [(module, n) for n in names if n.split(".")[0] in ("bench", "tests", "conftest")]
    assert not offenders, offenders
