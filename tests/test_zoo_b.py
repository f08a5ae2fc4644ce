"""Zoo B, the held-out zoo (small size, cached): truth, the new operations, and independence from zoo A."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from pathlib import Path

import pytest
import torch

from bench.zoo_cache import small_zoo_b_path
from pedigree.zoo import lossy
from pedigree.zoo.architectures import Dims, make_config
from pedigree.zoo.build import ZOOS, build_zoo
from pedigree.zoo.cards import read_front_matter
from pedigree.zoo.models import init_state_dict, load_model, load_state_dict
from pedigree.zoo.recipes import ZOO_A
from pedigree.zoo.recipes_b import ZOO_B
from pedigree.zoo.spec import RELATIONS
from pedigree.zoo.tokenization import encode, load_tokenizer, prune_tokenizer

# SHA-256 of zoo A's recipe payloads (sizes + every recipe; the values of the commit before zoo B) and
# of its shared settings (base time, 1 day + 1 hour spacing, tokenizer data, empty corpus salt, the
# optimiser constants training.py had): zoo A is the development zoo, and its content must not move.
ZOO_A_PAYLOADS = {
    "small": "8c5b174c958bd33790b2a9efc44269d2f5b5203107da8779487e16c50018cde7",
    "full": "312dd40ebb6265116acb5e6a4839571ad3c11e6865d4d3ed458e7a90b023b0a3",
}
ZOO_A_SETTINGS = "318e66a318a95c8e62338053aac868d906fe845b8c8c52fce349924682c3eb99"


@pytest.fixture(scope="module")
def zoo() -> Path:
    return small_zoo_b_path()


@pytest.fixture(scope="module")
def truth(zoo: Path) -> dict:
    return json.loads((zoo / "truth.json").read_text())


@pytest.fixture(scope="module")
def hidden_truth(zoo: Path) -> dict:
    return json.loads((ZOO_B.hidden_dir(zoo) / "truth.json").read_text())


def sha(obj: object) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()


def when(entry: dict) -> datetime:
    return datetime.fromisoformat(entry["created_at"].replace("Z", "+00:00"))


def one(truth: dict, relation: str, op_note: str | None = None) -> str:
    """The one model of ``relation`` (with ``op_note`` among its notes, if given)."""
    (model_id,) = [m for m, e in truth.items() if e["relation"] == relation and (not op_note or op_note in e["notes"])]
    return model_id


def rel_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.double() - b.double()).norm() / b.double().norm()).item()


def blocks(model_dir: Path) -> list[dict[str, torch.Tensor]]:
    """Canonical per-block tensors (``layers.i.`` stripped) of a checkpoint."""
    model = load_model(model_dir)
    canon = model.canonical()
    out: list[dict[str, torch.Tensor]] = [{} for _ in range(model.spec.layers)]
    for name, t in canon.items():
        if name.startswith("layers."):
            _, i, rest = name.split(".", 2)
            out[int(i)][rest] = t
    return out


def block_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    return max(rel_diff(a[k], b[k]) for k in a)


# ----------------------------------------------------------------------------- zoo A unchanged, zoo B apart
def test_zoo_a_recipe_is_pinned() -> None:
    for size, digest in ZOO_A_PAYLOADS.items():
        assert sha(ZOO_A.recipe_payload(size)) == digest, size
    assert sha(ZOO_A.settings_payload()) == ZOO_A_SETTINGS
    assert ZOOS["a"] is ZOO_A and ZOOS["b"] is ZOO_B


def test_zoo_b_shares_nothing_with_zoo_a() -> None:
    assert not {r.id for r in ZOO_A.recipes} & {r.id for r in ZOO_B.recipes}
    seeds_a = {r.seed for r in ZOO_A.recipes} | {r.data_seed for r in ZOO_A.recipes}
    assert not seeds_a & ({r.seed for r in ZOO_B.recipes} | {r.data_seed for r in ZOO_B.recipes if r.data_seed})
    assert ZOO_B.corpus_salt != ZOO_A.corpus_salt and ZOO_B.optimizer != ZOO_A.optimizer
    assert dict(ZOO_B.tokenizer_data).items().isdisjoint(dict(ZOO_A.tokenizer_data).items())
    for size in ("small", "full"):
        a, b = ZOO_A.sizes[size], ZOO_B.sizes[size]
        for field in (
            "hidden",
            "layers",
            "vocab_size",
            "pretrain_steps",
            "finetune_steps",
            "heal_steps",
            "pretrain_lr",
        ):
            assert getattr(a, field) != getattr(b, field), (size, field)
    full = ZOO_B.sizes["full"]
    assert (full.hidden, full.layers, full.heads) == (96, 8, 6) and ZOO_A.sizes["full"].heads != 6


# ----------------------------------------------------------------------------- truth
def test_truth_is_consistent(zoo: Path, truth: dict, hidden_truth: dict) -> None:
    everything = {**truth, **hidden_truth}
    assert set(truth) == {r.id for r in ZOO_B.visible} and set(hidden_truth) == {
        r.id for r in ZOO_B.recipes if r.hidden
    }
    assert 24 <= len(truth) <= 30
    assert set(RELATIONS) >= {e["relation"] for e in truth.values()} >= {"copy", "vocab_pruned", "upscaled"}
    for model_id, entry in everything.items():
        assert entry["relation"] in RELATIONS
        latent = entry.get("latent_parent")
        assert (entry["relation"] == "root") == (not entry["parents"] and not latent), model_id
        for parent in entry["parents"] + ([latent] if latent else []):
            assert parent in everything and when(everything[parent]) < when(entry), (model_id, parent)
        if entry["relation"] == "root":
            assert entry["family"] == model_id
        else:
            first = (entry["parents"] or [latent])[0]
            assert entry["family"] == everything[first]["family"]
    gaps = sorted(when(e) for e in everything.values())
    steps = [(b - a).total_seconds() / 3600 for a, b in zip(gaps, gaps[1:])]
    assert min(steps) > 0 and min(steps) < 12 and max(steps) >= 24 * 14 and len(set(steps)) > len(steps) // 2


def test_hidden_parent_is_not_served(zoo: Path, truth: dict, hidden_truth: dict) -> None:
    (hidden,) = hidden_truth
    assert not (zoo / hidden).exists() and (ZOO_B.hidden_dir(zoo) / hidden / "config.json").is_file()
    siblings = [m for m, e in truth.items() if e.get("latent_parent") == hidden]
    assert len(siblings) >= 2
    for m in siblings:
        assert truth[m]["parents"] == [] and truth[m]["relation"] == "finetune"
        assert truth[m]["family"] == hidden_truth[hidden]["family"] in truth
    manifest = json.loads((zoo / "zoo.json").read_text())
    assert hidden not in manifest["models"] and hidden in manifest["hidden"]


def test_cards_and_folders(zoo: Path, truth: dict) -> None:
    assert {e["declaration"] for e in truth.values()} == {"correct", "missing", "wrong"}
    for model_id, entry in truth.items():
        folder = zoo / model_id
        config = json.loads((folder / "config.json").read_text())
        assert config["model_type"] == entry["model_type"] and config["torch_dtype"] == entry["dtype"]
        assert load_tokenizer(folder).get_vocab_size() == config["vocab_size"], model_id
        front = read_front_matter((folder / "README.md").read_text())
        assert front.get("base_model") == entry["declared"]["base_model"], model_id
        assert front["created_at"] == entry["created_at"]
        declared = entry["declared"]["base_model"]
        declared = sorted(declared) if isinstance(declared, list) else [declared] if declared else []
        true_parents = sorted(entry["parents"] or [entry.get("latent_parent")] if entry["relation"] != "root" else [])
        if entry["declaration"] == "missing":
            assert not declared and true_parents
        else:
            assert (declared == true_parents) == (entry["declaration"] == "correct"), model_id


def test_graph_shapes(truth: dict, hidden_truth: dict) -> None:
    everything = {**truth, **hidden_truth}

    def generation(m: str) -> int:
        e = everything[m]
        first = (e["parents"] or [e.get("latent_parent")])[0] if e["relation"] != "root" else None
        return 0 if first is None else 1 + generation(first)

    def children(m: str) -> list[str]:
        return [c for c, e in everything.items() if m in e["parents"] or e.get("latent_parent") == m]

    finetunes = [m for m, e in truth.items() if e["relation"] == "finetune" and "transforms" not in e["notes"]]
    assert max(generation(m) for m in finetunes) == 4
    assert any(len(children(m)) == 4 > len(children(truth[m]["parents"][0])) for m in finetunes if truth[m]["parents"])
    soup = next(m for m, e in truth.items() if e["relation"] == "merge" and "merge_weights" in e["notes"])
    assert len({generation(p) for p in truth[soup]["parents"]}) == 2
    quantized, rotated = one(truth, "quantized"), one(truth, "rotated")
    assert truth[truth[quantized]["parents"][0]]["relation"] == "finetune"
    assert truth[truth[rotated]["parents"][0]]["relation"] == "finetune"
    permuted_then_tuned = [m for m, e in truth.items() if e["relation"] == "finetune" and "transforms" in e["notes"]]
    assert permuted_then_tuned and all(not truth[m]["notes"]["function_preserving"] for m in permuted_then_tuned)
    assert all(truth[m]["notes"]["steps"] > 0 for m in permuted_then_tuned)
    llama_roots = [m for m, e in truth.items() if e["relation"] == "root" and e["model_type"] == "llama"]
    assert len(llama_roots) == 3 and sum("distilled_from" in truth[m]["notes"] for m in llama_roots) == 1
    assert {e["model_type"] for e in truth.values()} == {"llama", "gpt_neox", "gpt2"}
    for kind in ("lora_rank", "kept_mlp_units", "dropped_layers", "vocab_extension", "reinitialised_mlp_layer"):
        assert any(kind in e["notes"] for e in truth.values()), kind


# ----------------------------------------------------------------------------- the new operations
def test_copy_is_byte_identical(zoo: Path, truth: dict) -> None:
    copy = one(truth, "copy")
    (source,) = truth[copy]["parents"]
    ours, theirs = load_state_dict(zoo / copy), load_state_dict(zoo / source)
    assert ours.keys() == theirs.keys()
    for name, t in ours.items():
        assert t.dtype == theirs[name].dtype and torch.equal(t.view(torch.uint8), theirs[name].view(torch.uint8))
    assert truth[copy]["shards"] != truth[source]["shards"] and when(truth[copy]) > when(truth[source])
    assert (zoo / copy / "tokenizer.json").read_bytes() == (zoo / source / "tokenizer.json").read_bytes()
    assert json.loads((zoo / copy / "config.json").read_text()) == json.loads(
        (zoo / source / "config.json").read_text()
    )


def test_vocab_pruned_rows_are_the_source_rows(zoo: Path, truth: dict) -> None:
    pruned = one(truth, "vocab_pruned")
    (source,) = truth[pruned]["parents"]
    notes = truth[pruned]["notes"]
    kept = notes["kept_token_ids"]
    assert "steps" not in notes and notes["vocab_size"]["after"] == len(kept) < 0.8 * notes["vocab_size"]["before"]
    new_tok, old_tok = load_tokenizer(zoo / pruned), load_tokenizer(zoo / source)
    assert new_tok.get_vocab_size() == len(kept)
    assert [new_tok.id_to_token(i) for i in range(len(kept))] == [old_tok.id_to_token(i) for i in kept]
    for special in ("<unk>", "<s>", "</s>"):
        assert new_tok.token_to_id(special) == old_tok.token_to_id(special)
    ours, theirs = load_state_dict(zoo / pruned), load_state_dict(zoo / source)
    assert ours.keys() == theirs.keys()
    idx = torch.tensor(kept)
    for name, t in ours.items():
        expected = theirs[name][idx] if name in ("model.embed_tokens.weight", "lm_head.weight") else theirs[name]
        assert t.dtype == expected.dtype and torch.equal(t.view(torch.uint8), expected.view(torch.uint8)), name
    text = "def parse_header(line):\n    return line.partition(':')  # façade"
    assert new_tok.decode(encode(new_tok, text)) == old_tok.decode(encode(old_tok, text))


def test_upscaled_layer_map_is_many_to_one(zoo: Path, truth: dict) -> None:
    up = one(truth, "upscaled")
    (source,) = truth[up]["parents"]
    layer_map = {int(k): v for k, v in truth[up]["notes"]["layer_map"].items()}
    ours, theirs = blocks(zoo / up), blocks(zoo / source)
    assert sorted(layer_map) == list(range(len(ours))) and len(ours) > len(theirs)
    assert set(layer_map.values()) == set(range(len(theirs))) and len(set(layer_map.values())) < len(layer_map)
    assert truth[up]["notes"]["steps"] > 0
    for child, parent in layer_map.items():
        diffs = [block_diff(ours[child], b) for b in theirs]
        others = diffs[:parent] + diffs[parent + 1 :]
        assert diffs[parent] < min(others) / 3, (child, diffs)


def test_frankenmerge_blocks_come_from_both_roots(zoo: Path, truth: dict) -> None:
    franken = one(truth, "merge", "block_sources")
    first, second = truth[franken]["parents"]
    assert truth[first]["family"] != truth[second]["family"]
    sources = {int(k): v for k, v in truth[franken]["notes"]["block_sources"].items()}
    assert {p for p, _ in sources.values()} == {first, second}
    parents = {first: blocks(zoo / first), second: blocks(zoo / second)}
    ours = blocks(zoo / franken)
    for child, (parent, block) in sources.items():
        own = block_diff(ours[child], parents[parent][block])
        others = [
            block_diff(ours[child], b) for p in parents for i, b in enumerate(parents[p]) if (p, i) != (parent, block)
        ]
        assert own < 0.15 and own < min(others) / 5, (child, own)
    embed = load_model(zoo / franken).canonical()["embed"]
    assert rel_diff(embed, load_model(zoo / first).canonical()["embed"]) < 0.05


def test_stack_blocks_copies_blocks_exactly() -> None:
    ids = {"bos": 1, "eos": 2, "pad": None, "unk": 0, "mask": None, "cls": None, "sep": None}
    config = make_config("llama", Dims(16, 4, 2, 24, 1, 32), 40, ids, "float32")
    a, b = init_state_dict(config, 1), init_state_dict(config, 2)
    layout = lossy.frankenmerge_layout(4)
    merged_config, merged = lossy.stack_blocks(config, [a, b], layout)
    assert merged_config["num_hidden_layers"] == len(layout) == 5
    for child, (parent, block) in enumerate(layout):
        src = (a, b)[parent]
        for name, t in merged.items():
            if name.startswith(f"model.layers.{child}."):
                assert torch.equal(t, src[name.replace(f"layers.{child}.", f"layers.{block}.", 1)])
    assert torch.equal(merged["model.embed_tokens.weight"], a["model.embed_tokens.weight"])
    assert lossy.upscale_layout(8) == [0, 1, 2, 3, 4, 5, 2, 3, 4, 5, 6, 7]


def test_pruning_everything_used_keeps_the_encoding(zoo: Path) -> None:
    tok = load_tokenizer(zoo / ZOO_B.recipes[0].id)
    text = "def parse_header(line):\n    name, _, value = line.partition(':')\n    return name.strip()"
    pruned, kept = prune_tokenizer(tok, text)
    assert len(kept) < tok.get_vocab_size()
    assert [kept[i] for i in encode(pruned, text)] == encode(tok, text)


def test_cache_is_reused(zoo: Path) -> None:
    manifest = json.loads((zoo / "zoo.json").read_text())
    assert manifest["zoo"] == "b" and build_zoo(zoo, "small", zoo="b") == manifest
