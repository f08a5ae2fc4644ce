"""ViT and CLIP vision encoders (issue 16, part 5): roles, pixel-token probes, invariance, and the
vision zoo ingested with the real CLI (relatedness and lineage).

The zoo (``pedigree.zoo.vision``) is built once per cache folder (``bench/vision_zoo_cache.py``);
transformers (a dev dependency) checks that its folders are what ``ViTForImageClassification`` and
``CLIPVisionModel`` load, and writes the other layouts (a bare ``ViTModel``, a full ``CLIPModel``).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import networkx as nx
import numpy as np
import pytest
import torch
from cli_runner import cli
from safetensors.torch import load_file, save_file

from pedigree.config import load_settings
from pedigree.crawler.hub_server import HubServer
from pedigree.indexer.adapters import MatrixLoader, roles_for
from pedigree.indexer.adapters.base import PIXEL_PROBES
from pedigree.indexer.fingerprint import FINGERPRINT_PROBES, compute_fingerprint
from pedigree.indexer.independence.inputs import ModelTensors
from pedigree.indexer.local_checkpoint import LocalCheckpoint
from pedigree.indexer.probes import pixel_vocabulary, probe_keys, select_probes
from pedigree.workspace import Workspace
from pedigree.zoo.vision.build import SHAPES, augment, digits_dataset
from pedigree.zoo.vision.models import load

VIT, CLIP = "vit-lab/tiny-vit", "clip-lab/tiny-clip-vision"
RELATED = -12.0  # log10 p a derivative must reach against its parent


@pytest.fixture(scope="module")
def zoo() -> Path:
    from bench.vision_zoo_cache import vision_zoo_path

    return vision_zoo_path()


@pytest.fixture(scope="module")
def truth(zoo: Path) -> dict:
    return json.loads((zoo / "truth.json").read_text())


def _roles(folder: Path):
    source = LocalCheckpoint(folder)
    try:
        return roles_for(source.read_json("config.json"), source.tensors()), set(source.tensors())
    finally:
        source.close()


@pytest.mark.parametrize("model", [VIT, CLIP])
def test_roles_map_every_tensor_of_the_zoo_layouts(zoo: Path, model: str) -> None:
    roles, names = _roles(zoo / model)
    mapped = roles.role_map()
    assert set(mapped) == names  # every tensor has a role (blocks, embeddings, norms, biases, heads)
    shape = SHAPES["vit" if model == VIT else "clip_vision"]
    assert roles.probe_kind == PIXEL_PROBES and roles.head is None
    assert roles.vocab_size == shape.channels * shape.patch**2  # one pixel token per (channel, row, column)
    assert (roles.hidden_size, len(roles.layers), roles.layers[0].mlp_size) == (shape.hidden, shape.layers, shape.mlp)
    assert roles.layers[0].num_heads == shape.heads and roles.norm_kind == "layer"
    if model == CLIP:
        assert mapped["vision_model.pre_layrnorm.weight"] == "embedding_norm"
        assert mapped["vision_model.encoder.layers.2.self_attn.out_proj.weight"] == "layers.2.o"
    else:
        assert mapped["vit.encoder.layer.3.attention.attention.key.weight"] == "layers.3.k"
        assert mapped["vit.encoder.layer.0.layernorm_after.weight"] == "layers.0.mlp_norm"


def test_transformers_layouts(tmp_path: Path) -> None:
    """A bare ViTModel (no ``vit.`` prefix, a pooler) and a full CLIPModel (the vision tower is
    read, sized by vision_config; the text tower is not a vision role) as transformers writes them."""
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    vit = transformers.ViTConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64, image_size=16, patch_size=4
    )
    transformers.ViTModel(vit).save_pretrained(tmp_path / "vit")
    roles, names = _roles(tmp_path / "vit")
    assert set(roles.role_map()) == names and roles.embedding.name == "embeddings.patch_embeddings.projection.weight"
    assert roles.vocab_size == 3 * 4 * 4 and len(roles.layers) == 2
    vision = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 64}
    text = {**vision, "vocab_size": 99, "bos_token_id": 0, "eos_token_id": 1, "pad_token_id": 1}
    clip = transformers.CLIPConfig(
        vision_config={**vision, "image_size": 16, "patch_size": 8}, text_config=text, projection_dim=16
    )
    transformers.CLIPModel(clip).save_pretrained(tmp_path / "clip")
    roles, names = _roles(tmp_path / "clip")
    mapped = roles.role_map()
    tower = {n for n in names if n.startswith("vision_model.")} | {"visual_projection.weight"}
    assert tower <= set(mapped) and not any(n.startswith("text_model.") for n in mapped)
    assert roles.vocab_size == 3 * 8 * 8 and roles.family == "clip_vision"


def test_zoo_folders_are_what_transformers_loads(zoo: Path) -> None:
    """The zoo's plain-torch encoders and transformers' classes agree on every tensor name."""
    transformers = pytest.importorskip("transformers")
    data = digits_dataset()
    images = augment(data.test_x[:16], "color", torch.Generator().manual_seed(0))
    with torch.no_grad():
        ours = load("vit", SHAPES["vit"], load_file(str(zoo / VIT / "model.safetensors")))
        theirs = transformers.ViTForImageClassification.from_pretrained(zoo / VIT).eval()
        assert torch.allclose(ours(images), theirs(pixel_values=images).logits, atol=1e-4)
        ours_clip = load("clip_vision", SHAPES["clip_vision"], load_file(str(zoo / CLIP / "model.safetensors")))
        theirs_clip = transformers.CLIPVisionModel.from_pretrained(zoo / CLIP).eval()
        assert torch.allclose(ours_clip.pooled(images), theirs_clip(pixel_values=images).pooler_output, atol=1e-4)


def test_pixel_tokens_are_the_patch_embedding_columns(zoo: Path) -> None:
    model = ModelTensors(LocalCheckpoint(zoo / VIT))
    try:
        kernel = load_file(str(zoo / VIT / "model.safetensors"))["vit.embeddings.patch_embeddings.projection.weight"]
        assert model.vocabulary is not None and model.vocabulary.size == 48
        assert list(model.probes.positions) == list(range(48))  # pixel j is probe key j
        ids = np.array([0, 5, 47])
        expected = kernel.reshape(kernel.shape[0], -1).t()[ids]
        assert torch.equal(model.embedding_rows(ids), expected)
        assert model.head_rows(ids) is None
    finally:
        model.close()
    assert pixel_vocabulary(5).lookup(probe_keys()[3]) == 3


def _permuted(tensors: dict[str, torch.Tensor], seed: int, *, within: int) -> dict[str, torch.Tensor]:
    """A function-preserving reparametrisation of a ViT checkpoint: residual dimensions, heads and
    MLP units permuted (units within consecutive blocks of ``within``, so the fingerprint's sample
    of the first units holds the same units)."""
    g = torch.Generator().manual_seed(seed)
    s = SHAPES["vit"]
    out = {k: v.clone() for k, v in tensors.items()}
    resid = torch.randperm(s.hidden, generator=g)
    for name, t in out.items():  # residual stream: every axis of size hidden that lives in it
        if name.endswith(("query.weight", "key.weight", "value.weight", "intermediate.dense.weight")):
            out[name] = t[:, resid]
        elif name.endswith(("output.dense.weight", "output.dense.bias", "projection.weight", "projection.bias")):
            out[name] = t[resid]  # attention output and MLP down projections, the patch embedding
        elif "layernorm" in name:
            out[name] = t[resid]
        elif name.endswith(("cls_token", "position_embeddings")):
            out[name] = t[..., resid]
        elif name == "classifier.weight":
            out[name] = t[:, resid]
    hd = s.hidden // s.heads
    for i in range(s.layers):
        pre = f"vit.encoder.layer.{i}."
        heads = torch.randperm(s.heads, generator=g)
        rows = (heads[:, None] * hd + torch.arange(hd)).reshape(-1)
        for part in ("query", "key", "value"):
            for kind in ("weight", "bias"):
                name = f"{pre}attention.attention.{part}.{kind}"
                out[name] = out[name][rows]
        out[pre + "attention.output.dense.weight"] = out[pre + "attention.output.dense.weight"][:, rows]
        units = torch.cat([k + torch.randperm(within, generator=g) for k in range(0, s.mlp, within)])
        out[pre + "intermediate.dense.weight"] = out[pre + "intermediate.dense.weight"][units]
        out[pre + "intermediate.dense.bias"] = out[pre + "intermediate.dense.bias"][units]
        out[pre + "output.dense.weight"] = out[pre + "output.dense.weight"][:, units]
    return out


def _fingerprint(folder: Path):
    source = LocalCheckpoint(folder)
    try:
        roles = roles_for(source.read_json("config.json"), source.tensors())
        probes = select_probes(pixel_vocabulary(roles.vocab_size), roles.vocab_size, FINGERPRINT_PROBES)
        return compute_fingerprint(MatrixLoader(source), roles, probes)
    finally:
        source.close()


def test_function_preserving_permutations_leave_the_fingerprint(zoo: Path, tmp_path: Path) -> None:
    """Residual, head and unit permutations: the same function, the same canonical fingerprint
    (units permuted within the fingerprint's sample), the same whole-block vectors (units permuted
    across the whole MLP), and the CLI confirms the copy at once."""
    tensors = load_file(str(zoo / VIT / "model.safetensors"))
    images = augment(digits_dataset().test_x[:32], "color", torch.Generator().manual_seed(0))
    for name, within in (("sampled", 128), ("whole", SHAPES["vit"].mlp)):
        folder = tmp_path / name
        shutil.copytree(zoo / VIT, folder)
        permuted = _permuted(tensors, seed=7, within=within)
        save_file(permuted, str(folder / "model.safetensors"), metadata={"format": "pt"})
        with torch.no_grad():
            before = load("vit", SHAPES["vit"], tensors)(images)
            after = load("vit", SHAPES["vit"], permuted)(images)
        assert torch.allclose(before, after, atol=1e-4)  # function-preserving
        assert not torch.equal(
            tensors["vit.encoder.layer.0.intermediate.dense.weight"],
            permuted["vit.encoder.layer.0.intermediate.dense.weight"],
        )
    a, b = _fingerprint(zoo / VIT), _fingerprint(tmp_path / "sampled")
    assert float(a.model @ b.model) > 0.999
    assert float((a.layers * b.layers).sum(dim=1).min()) > 0.999 and float(a.embedding @ b.embedding) > 0.999
    original, whole = ModelTensors(LocalCheckpoint(zoo / VIT)), ModelTensors(LocalCheckpoint(tmp_path / "whole"))
    try:
        va, vb = original.whole_block_vectors([0, 3]), whole.whole_block_vectors([0, 3])
        assert float((va * vb).sum(dim=1).min()) > 0.999
    finally:
        original.close()
        whole.close()
    home = tmp_path / "home"
    result = cli("compare", str(zoo / VIT), str(tmp_path / "whole"), "--home", str(home))
    assert result["log10_p"] < RELATED and result["shared"]["blocks"]


def test_the_crawler_reads_vision_repos(zoo: Path, tmp_path: Path) -> None:
    """Vision repos (no tokenizer) served by the bundled Hub server are indexed through HTTP range
    reads, and the fine-tune is placed under its base."""
    low, other = "vit-lab/tiny-vit-low", "other-lab/tiny-vit-s2"
    for model in (VIT, low, other, CLIP):
        shutil.copytree(zoo / model, tmp_path / "hub" / model)
    with HubServer(tmp_path / "hub") as server, Workspace(load_settings(tmp_path / "home")) as ws:
        summary = ws.refresh(server.url)
        assert {r.id: r.status for r in summary.repos} == dict.fromkeys((VIT, low, other, CLIP), "indexed")
        parents = ws.query(low).parents
        assert [p.id for p in parents] == [VIT] and parents[0].log10_p < RELATED
        assert not ws.query(other).parents


@pytest.fixture(scope="module")
def vision_home(zoo: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    home = tmp_path_factory.mktemp("vision-home")
    result = cli("ingest", str(zoo), "--home", str(home))
    return home, result


def _ancestors(truth: dict, model: str) -> set[str]:
    seen, todo = {model}, [model]
    while todo:
        for parent in truth[todo.pop()]["parents"]:
            if parent not in seen:
                seen.add(parent)
                todo.append(parent)
    return seen


def test_ingest_relates_every_derivative_and_no_unrelated_pair(vision_home: tuple[Path, dict], truth: dict) -> None:
    home, result = vision_home
    assert result["counts"]["indexed"] == len(truth) and not result["counts"]["failed"]
    tested = {frozenset((c["a"], c["b"])): c for c in result["confirmations"]}
    for child, facts in truth.items():
        for parent in facts["parents"]:
            pair = tested.get(frozenset((child, parent)))
            assert pair is not None, f"{parent} -> {child} was never tested"
            assert pair["log10_p"] < RELATED and pair["confirmed"], (parent, child, pair)
    unrelated = [
        c
        for c in result["confirmations"]
        if not _ancestors(truth, c["a"]) & _ancestors(truth, c["b"]) and c["confirmed"]
    ]
    assert not unrelated, unrelated


def _weights_graph(home: Path, out: Path) -> nx.DiGraph:
    cli("graph", "build", "--mode", "weights", "--home", str(home))
    cli("graph", "export", "--format", "json", "--mode", "weights", "-o", str(out), "--home", str(home))
    return nx.node_link_graph(json.loads(out.read_text()), directed=True, edges="edges")


def test_weights_lineage_groups_the_families(vision_home: tuple[Path, dict], truth: dict, tmp_path: Path) -> None:
    """Every model joins its parents' family, the unrelated bases stay apart, and every true edge
    is a path of the graph in one direction or the other (its direction is the next test)."""
    graph = _weights_graph(vision_home[0], tmp_path / "graph.json")
    families = {m: graph.nodes[m]["family"] for m in truth}
    undirected = graph.to_undirected()
    for child, facts in truth.items():
        for parent in facts["parents"]:
            assert families[child] == families[parent], (parent, child)
            assert nx.has_path(undirected, parent, child), (parent, child)
    roots = [m for m, f in truth.items() if not f["parents"]]
    assert len({families[m] for m in roots}) == len(roots)


@pytest.mark.xfail(
    strict=False,
    reason="measured (bench/vision_lineage.py): with weights alone the graph puts longrun/tiny-vit-long under "
    "vit-lab/tiny-vit-low, reads vit-lab/tiny-vit-shift as a merge of its own child and the soup, and leaves the "
    "CLIP and s2 fine-tunes undirected (edge F1 0.14); the lineage rules are zoo A's, not tuned here.  Not strict: "
    "the vision zoo is trained where the tests run and its weights differ from machine to machine (float results "
    "of the CPU kernels), and on some builds every fine-tune does land under its base (seen 2026-12-06)",
)
def test_weights_lineage_places_the_finetunes_under_their_bases(
    vision_home: tuple[Path, dict], truth: dict, tmp_path: Path
) -> None:
    graph = _weights_graph(vision_home[0], tmp_path / "graph.json")
    for child, facts in truth.items():
        for parent in facts["parents"]:
            if facts["relation"] == "finetune" and not truth[parent]["parents"]:
                assert graph.has_edge(parent, child), f"{child} is not under its base {parent}"
