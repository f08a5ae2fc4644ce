"""The small zoo as built for the test session: layout, lineage truth, cards and trained weights."""

from __future__ import annotations

import json
import struct
from datetime import datetime
from pathlib import Path

import pytest
import torch

from bench.zoo_cache import small_zoo_path
from pedigree.zoo.build import build_zoo
from pedigree.zoo.cards import read_front_matter
from pedigree.zoo.models import load_model
from pedigree.zoo.recipes import RELATIONS, SIZES, ZOO
from pedigree.zoo.tokenization import encode, load_tokenizer

SAMPLE = '''def parse_header(line):
    """Split a header line into its name and value."""
    name, _, value = line.partition(":")
    return name.strip().lower(), value.strip()
'''


@pytest.fixture(scope="module")
def zoo() -> Path:
    return small_zoo_path()


@pytest.fixture(scope="module")
def truth(zoo: Path) -> dict:
    return json.loads((zoo / "truth.json").read_text())


def stored_dtypes(folder: Path) -> set[str]:
    """dtypes in the safetensors headers of a checkpoint folder."""
    out = set()
    for path in folder.glob("*.safetensors"):
        with open(path, "rb") as f:
            (size,) = struct.unpack("<Q", f.read(8))
            header = json.loads(f.read(size))
        out |= {v["dtype"] for k, v in header.items() if k != "__metadata__"}
    return out


def real_batch(folder: Path) -> torch.Tensor:
    ids = encode(load_tokenizer(folder), SAMPLE)[:48]
    return torch.tensor([ids])


def test_every_model_has_a_hub_folder(zoo: Path, truth: dict) -> None:
    assert set(truth) == {r.id for r in ZOO}
    for model_id, entry in truth.items():
        folder = zoo / model_id
        for name in ("config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "README.md"):
            assert (folder / name).is_file(), (model_id, name)
        index = folder / "model.safetensors.index.json"
        if index.exists():
            files = set(json.loads(index.read_text())["weight_map"].values())
            assert len(files) == entry["shards"] >= 2 and all((folder / f).is_file() for f in files)
        else:
            assert (folder / "model.safetensors").is_file() and entry["shards"] == 1
        config = json.loads((folder / "config.json").read_text())
        assert config["architectures"] == [entry["architecture"]] and config["model_type"] == entry["model_type"]
        assert config["torch_dtype"] == entry["dtype"]
        assert stored_dtypes(folder) == {"float32": {"F32"}, "bfloat16": {"BF16"}, "float16": {"F16"}}[entry["dtype"]]


def test_storage_varies(truth: dict) -> None:
    assert {e["dtype"] for e in truth.values()} == {"float32", "bfloat16", "float16"}
    assert any(e["shards"] > 1 for e in truth.values())


def test_lineage_is_consistent(truth: dict) -> None:
    def when(model_id: str) -> datetime:
        return datetime.fromisoformat(truth[model_id]["created_at"].replace("Z", "+00:00"))

    for model_id, entry in truth.items():
        assert entry["relation"] in RELATIONS
        assert (entry["relation"] == "root") == (not entry["parents"])
        for parent in entry["parents"]:
            assert parent in truth and when(parent) < when(model_id)
            assert truth[parent]["family"] == entry["family"]
        if entry["relation"] == "root":
            assert entry["family"] == model_id
        assert (entry["relation"] == "merge") == (len(entry["parents"]) == 2)
    assert set(RELATIONS) - {"copy", "vocab_pruned", "upscaled"} == {e["relation"] for e in truth.values()}  # zoo B's


def test_roots(truth: dict) -> None:
    roots = {k: e for k, e in truth.items() if e["relation"] == "root"}
    assert len(roots) >= 5 and len({e["model_type"] for e in roots.values()}) >= 3
    assert {e["model_type"] for e in roots.values()} == {"llama", "qwen2", "gpt2", "gpt_neox", "bert"}
    llamas = [k for k, e in roots.items() if e["model_type"] == "llama" and "distilled_from" not in e["notes"]]
    assert len(llamas) == 2
    assert truth[llamas[0]]["notes"]["steps"] == truth[llamas[1]]["notes"]["steps"]
    assert truth[llamas[0]]["notes"]["seed"] != truth[llamas[1]]["notes"]["seed"]
    distilled = [e for e in roots.values() if "distilled_from" in e["notes"]]
    assert len(distilled) == 1 and distilled[0]["notes"]["distilled_from"] in llamas
    assert distilled[0]["declaration"] == "wrong"


def test_cards_match_declarations(zoo: Path, truth: dict) -> None:
    declarations = {e["declaration"] for e in truth.values()}
    assert declarations == {"correct", "missing", "wrong"}
    for model_id, entry in truth.items():
        front = read_front_matter((zoo / model_id / "README.md").read_text())
        assert front.get("base_model") == entry["declared"]["base_model"], model_id
        assert front.get("base_model_relation") == entry["declared"]["base_model_relation"], model_id
        assert front["created_at"] == entry["created_at"]
        declared = entry["declared"]["base_model"]
        declared = sorted(declared) if isinstance(declared, list) else [declared] if declared else []
        if entry["declaration"] == "missing":
            assert not declared and entry["parents"]
        elif entry["declaration"] == "correct":
            assert declared == sorted(entry["parents"])
        else:
            assert declared != sorted(entry["parents"])
    for r in ZOO:
        if r.relation in ("permuted", "rotated"):
            assert truth[r.id]["declaration"] == "missing"


def test_training_reduced_the_loss(truth: dict) -> None:
    trained = {k: e["notes"] for k, e in truth.items() if "final_loss" in e["notes"]}
    assert len(trained) >= 20
    for model_id, notes in trained.items():
        assert notes["final_loss"] < notes["initial_loss"], model_id
        assert notes["steps"] > 0 and notes["lr"] > 0


def test_function_preserving_models_match_their_parents(zoo: Path, truth: dict) -> None:
    checked = 0
    for model_id, entry in truth.items():
        if entry["relation"] not in ("permuted", "rotated"):
            continue
        parent = entry["parents"][0]
        x = real_batch(zoo / parent)
        ours = load_model(zoo / model_id, torch.float64).logits(x, torch.float64)
        theirs = load_model(zoo / parent, torch.float64).logits(x, torch.float64)
        assert ((ours - theirs).abs().max() / theirs.abs().max()).item() < 1e-4, model_id
        checked += 1
    assert checked >= 4


def test_derived_weights_differ(zoo: Path, truth: dict) -> None:
    for model_id, entry in truth.items():
        if entry["relation"] in ("root", "permuted", "rotated"):
            continue
        child = load_model(zoo / model_id).state_dict
        parent = load_model(zoo / entry["parents"][0]).state_dict
        shared = [k for k in child if k in parent and child[k].shape == parent[k].shape]
        assert any(not torch.equal(child[k], parent[k]) for k in shared), model_id


def test_transform_details(zoo: Path, truth: dict) -> None:
    small = SIZES["small"]
    by_relation: dict[str, list[str]] = {}
    for model_id, entry in truth.items():
        by_relation.setdefault(entry["relation"], []).append(model_id)
    depth = next(m for m in by_relation["pruned"] if "dropped_layers" in truth[m]["notes"])
    notes = truth[depth]["notes"]
    assert load_model(zoo / depth).spec.layers == small.layers - len(notes["dropped_layers"])
    assert sorted(notes["kept_layers"].values()) == [i for i in range(small.layers) if i not in notes["dropped_layers"]]
    width = next(m for m in by_relation["pruned"] if "kept_mlp_units" in truth[m]["notes"])
    assert load_model(zoo / width).spec.intermediate == small.glu_intermediate // 2
    (vocab,) = by_relation["vocab_extended"]
    n_new = truth[vocab]["notes"]["vocab_extension"]
    parent = truth[vocab]["parents"][0]
    assert load_model(zoo / vocab).spec.vocab_size == load_model(zoo / parent).spec.vocab_size + n_new
    assert load_tokenizer(zoo / vocab).get_vocab_size() == load_model(zoo / vocab).spec.vocab_size
    assert any("reinitialised_mlp_layer" in truth[m]["notes"] for m in by_relation["finetune"])
    (adapter,) = by_relation["adapter"]
    assert truth[adapter]["notes"]["merged"] and truth[adapter]["notes"]["lora_rank"] > 0
    assert {truth[m]["model_type"] for m in by_relation["permuted"]} >= {"llama", "gpt2"}


def test_continued_pretraining_drifts_more_than_a_finetune(zoo: Path, truth: dict) -> None:
    def cosine(a: str, b: str) -> float:
        x, y = load_model(zoo / a).state_dict, load_model(zoo / b).state_dict
        num = sum((x[k].double() * y[k].double()).sum() for k in x)
        return (
            num / (sum(x[k].double().pow(2).sum() for k in x) * sum(y[k].double().pow(2).sum() for k in y)).sqrt()
        ).item()

    def finetunes_of(root: str) -> list[str]:
        return [
            k
            for k, e in truth.items()
            if e["parents"] == [root] and e["relation"] == "finetune" and "steps" in e["notes"]
        ]

    llama_roots = [k for k, e in truth.items() if e["relation"] == "root" and e["model_type"] == "llama"]
    root = max(llama_roots, key=lambda k: len(finetunes_of(k)))
    kids = finetunes_of(root)
    cpt = max(kids, key=lambda k: truth[k]["notes"]["steps"] * truth[k]["notes"]["lr"])
    assert truth[cpt]["notes"]["steps"] == truth[root]["notes"]["steps"]
    assert truth[cpt]["notes"]["lr"] >= truth[root]["notes"]["lr"]
    ordinary = [k for k in kids if k != cpt and "reinitialised_mlp_layer" not in truth[k]["notes"]]
    assert all(cosine(root, cpt) < cosine(root, k) for k in ordinary)


def test_cache_is_reused(zoo: Path) -> None:
    manifest = json.loads((zoo / "zoo.json").read_text())
    assert build_zoo(zoo, "small") == manifest


def test_zoo_models_load_in_transformers(zoo: Path, truth: dict) -> None:
    """Skipped unless Hugging Face transformers is importable."""
    transformers = pytest.importorskip("transformers")
    for model_id, entry in truth.items():
        if entry["relation"] != "root" and entry["model_type"] != "llama":
            continue
        cls = transformers.AutoModelForMaskedLM if entry["model_type"] == "bert" else transformers.AutoModelForCausalLM
        hf_model = cls.from_pretrained(zoo / model_id, torch_dtype=torch.float32).eval()
        x = real_batch(zoo / model_id)
        with torch.no_grad():
            theirs = hf_model(input_ids=x).logits
        ours = load_model(zoo / model_id).logits(x)
        assert ((ours - theirs).abs().max() / theirs.abs().max()).item() < 1e-4, model_id
