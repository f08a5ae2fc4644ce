"""Phi-3, Falcon, StarCoder2, Gemma 2 and Gemma 3 (issue 16, part 4): roles, invariance, lineage.

The families zoo (``pedigree.zoo.families``: per family a base pre-trained on CPU, a fine-tune of
it and an independently seeded model of the same family) is built once and cached.  For each
family: the adapter maps every tensor of a real checkpoint to a role; the zoo's forward pass
matches transformers' own modeling code on the saved folder (so the names are the Hub's); a
function-preserving permutation / rescaling leaves the fingerprint in place; and, through the
real CLI, the fine-tune is confirmed related to its base (log10 p < -12) and placed under it
(with creation times; weights alone link the two, in a direction they may leave open), while the
unrelated pairs are not confirmed.  Falcon's other q|k|v layouts (multi-query, per-head)
and its two-norm parallel block are checked on tensors laid out as transformers reads them.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from cli_runner import cli

from bench.families import families_zoo_path
from pedigree.indexer.adapters import roles_for
from pedigree.indexer.adapters.base import MatrixLoader
from pedigree.indexer.local_checkpoint import open_checkpoint
from pedigree.indexer.pipeline import fingerprint_source
from pedigree.indexer.sampling import SampleSize
from pedigree.indexer.sources import StateDictSource
from pedigree.storage.db import ModelRecord
from pedigree.zoo.families.decoders import forward, spec_from_config
from pedigree.zoo.families.layouts import to_canonical, to_hf
from pedigree.zoo.families.recipes import FAMILY_TYPES
from pedigree.zoo.families.transforms import available_kinds, transform

FAMILIES = sorted(FAMILY_TYPES.values())
TEXT_FILES = ("config.json", "tokenizer.json", "tokenizer_config.json")
WHOLE_BLOCKS = SampleSize(attention_rows=1 << 20, mlp_units=1 << 20)


@pytest.fixture(scope="session")
def families_zoo() -> Path:
    return families_zoo_path()


@pytest.fixture(scope="session")
def families_truth(families_zoo: Path) -> dict:
    return json.loads((families_zoo / "truth.json").read_text())


def members(truth: dict, model_type: str) -> tuple[str, str, str]:
    """(base, fine-tune, unrelated root) of one family."""
    ids = sorted(m for m, f in truth.items() if f["model_type"] == model_type)
    (child,) = [m for m in ids if truth[m]["parents"]]
    base = truth[child]["parents"][0]
    (other,) = [m for m in ids if m not in (child, base)]
    return base, child, other


def load(folder: Path) -> tuple[dict, dict[str, torch.Tensor], dict[str, str]]:
    with open_checkpoint(folder) as source:
        state = {name: source.read(name).float() for name in source.tensors()}
        texts = {name: text for name in TEXT_FILES if (text := source.read_text(name)) is not None}
    return json.loads(texts["config.json"]), state, texts


def fingerprint(state: dict[str, torch.Tensor], texts: dict[str, str], sample: SampleSize = WHOLE_BLOCKS):
    return fingerprint_source(StateDictSource(state, texts), ModelRecord(id="t", status="indexed"), sample=sample)


def cosines(a, b) -> dict[str, float]:
    out = {"model": float(a.model @ b.model), "embedding": float(a.embedding @ b.embedding)}
    if a.head is not None:
        out["head"] = float(a.head @ b.head)
    out.update({f"block {i}": float(x @ y) for i, (x, y) in enumerate(zip(a.layers, b.layers))})
    return out


@pytest.mark.parametrize("model_type", FAMILIES)
def test_roles_map_every_tensor(families_zoo: Path, families_truth: dict, model_type: str):
    base, _, _ = members(families_truth, model_type)
    config, state, _ = load(families_zoo / base)
    roles = roles_for(config, StateDictSource(state, {}).tensors())
    role_map = roles.role_map()
    biases = {n for n in state if n.endswith(".bias") and n.removesuffix(".bias") + ".weight" in role_map}
    assert set(state) == set(role_map) | biases, sorted(set(state) - set(role_map) - biases)
    assert roles.family == ("llama" if model_type.startswith("gemma") else model_type)
    spec = spec_from_config(config)
    loader = MatrixLoader(StateDictSource(state, {}))
    canon = to_canonical(config, state)
    for layer in roles.layers:
        for role in ("q", "k", "v", "o", "up", "down", "gate"):
            ref = getattr(layer, role)
            if ref is not None:  # every role reads the very matrix the forward pass uses
                assert torch.equal(loader.matrix(ref), canon[f"layers.{layer.index}.{role}.w"]), (role, ref)
        assert (layer.num_heads, layer.num_kv_heads, layer.head_dim) == (spec.heads, spec.kv_heads, spec.head_dim)
        half = layer.num_kv_heads // 2 * layer.head_dim  # sampled rows read from storage alone
        assert torch.equal(loader.matrix_rows(layer.k, 0, half), canon[f"layers.{layer.index}.k.w"][:half])
    assert roles.tied == spec.tied


@pytest.mark.parametrize("model_type", FAMILIES)
def test_forward_matches_transformers(families_zoo: Path, families_truth: dict, model_type: str):
    transformers = pytest.importorskip("transformers")
    base, _, _ = members(families_truth, model_type)
    config, state, _ = load(families_zoo / base)
    model = transformers.AutoModelForCausalLM.from_pretrained(
        families_zoo / base, dtype=torch.float32, use_safetensors=True, attn_implementation="eager"
    ).eval()
    assert set(model.state_dict()) - set(state) <= {"lm_head.weight"}  # tied heads are not saved
    ids = torch.randint(0, config["vocab_size"], (2, 48), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        theirs = model(ids).logits
        ours = forward(spec_from_config(config), to_canonical(config, state), ids)
    assert torch.allclose(theirs, ours, atol=1e-4, rtol=1e-4), float((theirs - ours).abs().max())


@pytest.mark.parametrize("model_type", FAMILIES)
def test_function_preserving_transforms_keep_the_fingerprint(families_zoo: Path, families_truth: dict, model_type):
    base, _, other = members(families_truth, model_type)
    config, state, texts = load(families_zoo / base)
    spec = spec_from_config(config)
    canon = {k: v.double() for k, v in to_canonical(config, state).items()}
    ids = torch.randint(0, spec.vocab_size, (2, 32), generator=torch.Generator().manual_seed(1))
    original, unrelated = fingerprint(state, texts), fingerprint(load(families_zoo / other)[1], texts)
    kinds = available_kinds(spec)
    for seed, chosen in enumerate([*((k,) for k in kinds), kinds], start=1):
        moved = transform(spec, canon, chosen, seed)
        assert torch.allclose(forward(spec, moved, ids), forward(spec, canon, ids), atol=1e-9)  # same function
        transformed = {k: v.float() for k, v in to_hf(config, moved).items()}
        assert any(not torch.equal(transformed[k], state[k]) for k in state)
        got = cosines(original, fingerprint(transformed, texts))
        assert min(got.values()) >= 0.999, (chosen, got)
    far = cosines(original, unrelated)  # an unrelated model of the family does not pass for a transformed copy
    assert far["model"] < 0.999 and min(far.values()) < 0.999, far


def _falcon_qkv(heads: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, layout: str) -> torch.Tensor:
    """One Falcon block's fused q|k|v as ``FalconAttention`` reads it in ``layout``."""
    h = q.shape[1]
    d = q.shape[0] // heads
    kv = k.shape[0] // d
    if layout == "kv_groups":  # per kv head: its queries, its key, its value
        return torch.cat([q.reshape(kv, -1, h), k.reshape(kv, d, h), v.reshape(kv, d, h)], 1).reshape(-1, h)
    if layout == "q_k_v":
        return torch.cat([q, k, v])
    return torch.stack([m.reshape(heads, d, h) for m in (q, k, v)], 1).reshape(-1, h)  # per head


@pytest.mark.parametrize(
    ("flags", "kv_heads", "layout", "norms"),
    [
        ({"new_decoder_architecture": True, "num_kv_heads": 2}, 2, "kv_groups", ("ln_attn", "ln_mlp")),
        ({"multi_query": True, "parallel_attn": True}, 1, "q_k_v", ("input_layernorm", "input_layernorm")),
        ({}, 1, "q_k_v", ("input_layernorm", "input_layernorm")),  # multi_query is Falcon's default
        (
            {"multi_query": False, "parallel_attn": False},
            4,
            "per_head",
            ("input_layernorm", "post_attention_layernorm"),
        ),
    ],
)
def test_falcon_layouts(flags: dict, kv_heads: int, layout: str, norms: tuple[str, str]):
    h, heads, d, mlp = 32, 4, 8, 128  # ffn_hidden_size: 4·h by default
    config = {"model_type": "falcon", "hidden_size": h, "num_attention_heads": heads, "num_hidden_layers": 1, **flags}
    gen = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(n * d, h, generator=gen) for n in (heads, kv_heads, kv_heads))
    state = {
        "transformer.word_embeddings.weight": torch.randn(50, h, generator=gen),
        "transformer.ln_f.weight": torch.ones(h),
        "transformer.ln_f.bias": torch.zeros(h),
        "transformer.h.0.self_attention.dense.weight": torch.randn(h, h, generator=gen),
        "transformer.h.0.mlp.dense_h_to_4h.weight": torch.randn(mlp, h, generator=gen),
        "transformer.h.0.mlp.dense_4h_to_h.weight": torch.randn(h, mlp, generator=gen),
        "transformer.h.0.self_attention.query_key_value.weight": _falcon_qkv(heads, q, k, v, layout),
    }
    for norm in set(norms):
        state[f"transformer.h.0.{norm}.weight"], state[f"transformer.h.0.{norm}.bias"] = torch.ones(h), torch.zeros(h)
    roles = roles_for(config, StateDictSource(state, {}).tensors())
    (layer,) = roles.layers
    loader = MatrixLoader(StateDictSource(state, {}))
    assert layer.num_kv_heads == kv_heads and roles.tied
    assert [torch.equal(loader.matrix(ref), m) for ref, m in ((layer.q, q), (layer.k, k), (layer.v, v))] == [True] * 3
    assert torch.equal(loader.matrix_rows(layer.q, 0, heads // kv_heads * d), q[: heads // kv_heads * d])
    assert (layer.attn_norm.weight, layer.mlp_norm.weight) == tuple(f"transformer.h.0.{n}.weight" for n in norms)
    assert set(roles.role_map()) | {n for n in state if n.endswith(".bias")} == set(state)


@pytest.fixture(scope="module")
def families_home(families_zoo: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    home = tmp_path_factory.mktemp("families-home")
    result = cli("ingest", str(families_zoo), "--home", str(home))  # builds the full-evidence graph
    for mode in ("time", "weights"):
        cli("graph", "build", "--mode", mode, "--home", str(home))
    return home, result


def test_ingest_indexes_every_family_member(families_home, families_truth: dict):
    _, result = families_home
    assert result["counts"]["indexed"] == len(families_truth) == len(result["models"])


@pytest.mark.parametrize("model_type", FAMILIES)
def test_fine_tune_is_related_and_placed_under_its_base(families_home, families_truth: dict, model_type: str):
    home, _ = families_home
    base, child, other = members(families_truth, model_type)
    related = cli("compare", base, child, "--home", str(home))
    assert related["log10_p"] < -12 and related["confirmed"] is True, related
    for a, b in ((base, other), (child, other)):
        unrelated = cli("compare", a, b, "--home", str(home))
        assert not unrelated["confirmed"], unrelated
    for mode in ("full", "time"):  # cards and creation times; creation times alone (no cards)
        answer = cli("query", child, "--home", str(home), "--mode", mode)
        assert [(p["id"], p["relation"]) for p in answer["parents"]] == [(base, "finetune")], (mode, answer)
        parents = {p["id"] for p in cli("query", other, "--home", str(home), "--mode", mode)["parents"]}
        assert not parents & {base, child}, (mode, parents)
    # weights alone link the pair; their direction may stay undetermined (an undirected relative)
    answer = cli("query", child, "--home", str(home), "--mode", "weights")
    linked = [p["id"] for p in answer["parents"]] + [s if isinstance(s, str) else s["id"] for s in answer["siblings"]]
    assert linked == [base], answer
