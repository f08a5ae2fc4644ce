"""PEFT LoRA adapter folders (issue 16, part 3): a real adapter of the small zoo's llama, written in
PEFT's layout in the test setup, is indexed with an ``adapter`` edge to its base; an adapter whose
base is absent or does not fit, and hostile adapters, each get a one-line per-model reason."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from pedigree.config import Settings
from pedigree.indexer.peft_adapter import ADAPTER_CONFIG, ADAPTER_WEIGHTS, MAX_ADAPTER_CONFIG_BYTES
from pedigree.indexer.pipeline_adapter import ADAPTER_STATUS
from pedigree.query.graph import lineage
from pedigree.types import Status
from pedigree.workspace import Workspace

BASE = "llama-lab/tiny-llama-s1"
HIDDEN, Q_OUT, KV_OUT, LAYERS = 64, 64, 32, 4  # the base's q_proj [64, 64], v_proj [32, 64]


def lora_tensors(rank: int = 4, *, in_dim: int = HIDDEN, layers: int = LAYERS, seed: int = 0) -> dict:
    generator = torch.Generator().manual_seed(seed)
    tensors = {}
    for layer in range(layers):
        for module, out in (("q_proj", Q_OUT), ("v_proj", KV_OUT)):
            prefix = f"base_model.model.model.layers.{layer}.self_attn.{module}"
            tensors[f"{prefix}.lora_A.weight"] = torch.randn(rank, in_dim, generator=generator) * 0.01
            tensors[f"{prefix}.lora_B.weight"] = torch.randn(out, rank, generator=generator) * 0.01
    return tensors


def write_adapter(
    folder: Path, *, base: str = BASE, rank: int = 4, tensors: dict | None = None, config: bytes | None = None
) -> Path:
    folder.mkdir(parents=True)
    if config is None:
        config = json.dumps(
            {
                "peft_type": "LORA",
                "task_type": "CAUSAL_LM",
                "base_model_name_or_path": base,
                "r": rank,
                "lora_alpha": 2 * rank,
                "target_modules": ["q_proj", "v_proj"],
            }
        ).encode()
    (folder / ADAPTER_CONFIG).write_bytes(config)
    save_file(lora_tensors(rank) if tensors is None else tensors, str(folder / ADAPTER_WEIGHTS))
    return folder


@pytest.fixture(scope="session")
def workspace(small_zoo: Path, tmp_path_factory: pytest.TempPathFactory):
    """A home with the zoo's llama indexed (once per session)."""
    home = tmp_path_factory.mktemp("peft-home")
    with Workspace(Settings(home=home)) as ws:
        result = ws.ingest(small_zoo / BASE)
        assert [o.status for o in result.models] == [Status.INDEXED]
        yield ws


def ingest_one(ws: Workspace, folder: Path, model_id: str):
    (outcome,) = ws.ingest(folder, model_id).models
    return outcome


def test_adapter_is_a_child_of_its_base_with_relation_adapter(workspace, tmp_path):
    folder = write_adapter(tmp_path / "lora")
    outcome = ingest_one(workspace, folder, "peft-org/llama-lora")
    assert (outcome.status, outcome.error) == (Status.INDEXED, None)
    record = workspace.store.get_model("peft-org/llama-lora")
    assert record.status == ADAPTER_STATUS and record.config["peft"]["base_id"] == BASE
    assert workspace.store.count_model_vectors(record.pk, workspace.version) == 0  # no fingerprint of its own
    answer = lineage(workspace.store, "peft-org/llama-lora")
    (parent,) = answer.parents
    assert (parent.id, parent.relation) == (BASE, "adapter")
    assert parent.evidence == {"peft": True, "rank": 4, "target_modules": ["q_proj", "v_proj"]}
    base_answer = lineage(workspace.store, BASE)
    assert "peft-org/llama-lora" in [c.id for c in base_answer.children]
    answer = workspace.query("peft-org/llama-lora")  # `pedigree query`: no fingerprint to search, lineage only
    assert answer.related == () and [(p.id, p.relation) for p in answer.parents] == [(BASE, "adapter")]


def test_the_statuses_answered_by_lineage_alone_are_the_adapter_and_unet_statuses():
    from pedigree.indexer.pipeline_adapter import ADAPTER_STATUS
    from pedigree.indexer.pipeline_unet import UNET_STATUS
    from pedigree.workspace import LINEAGE_ONLY

    assert set(LINEAGE_ONLY) == {ADAPTER_STATUS, UNET_STATUS}


def test_adapter_whose_base_is_not_indexed_is_unsupported(workspace, tmp_path):
    folder = write_adapter(tmp_path / "lora", base="nobody/missing-base")
    outcome = ingest_one(workspace, folder, "peft-org/orphan")
    assert outcome.status == Status.UNSUPPORTED
    assert outcome.error == "unsupported: adapter base nobody/missing-base is not indexed"
    assert workspace.store.get_model("peft-org/orphan").status == Status.UNSUPPORTED


def test_adapter_that_does_not_fit_its_base_is_unsupported(workspace, tmp_path):
    folder = write_adapter(tmp_path / "lora", tensors=lora_tensors(in_dim=48))
    outcome = ingest_one(workspace, folder, "peft-org/misfit")
    assert outcome.status == Status.UNSUPPORTED
    assert outcome.error.startswith(f"unsupported: adapter does not fit base {BASE} (module model.layers.0.self_attn")
    assert "vs base weight [" in outcome.error and "\n" not in outcome.error


def test_lora_module_outside_the_base_is_unsupported(workspace, tmp_path):
    folder = write_adapter(tmp_path / "lora", tensors=lora_tensors(layers=LAYERS + 1))
    outcome = ingest_one(workspace, folder, "peft-org/extra-layer")
    assert outcome.status == Status.UNSUPPORTED
    assert f"module model.layers.{LAYERS}.self_attn.q_proj: no such weight in the base" in outcome.error


def _bad_rank_tensors() -> dict:
    tensors = lora_tensors(rank=4)
    tensors["base_model.model.model.layers.1.self_attn.v_proj.lora_B.weight"] = torch.zeros(KV_OUT, 3)
    return tensors


def _stray_tensor() -> dict:
    return {**lora_tensors(), "base_model.model.model.embed_tokens.weight": torch.zeros(8, 8)}


def _untargeted() -> dict:
    return {
        **lora_tensors(),
        "base_model.model.model.layers.0.mlp.up_proj.lora_A.weight": torch.zeros(4, HIDDEN),
        "base_model.model.model.layers.0.mlp.up_proj.lora_B.weight": torch.zeros(176, 4),
    }


def _half_pair() -> dict:
    tensors = lora_tensors()
    del tensors["base_model.model.model.layers.2.self_attn.q_proj.lora_B.weight"]
    return tensors


HOSTILE = {
    "oversized-config": (
        {"config": b" " * (MAX_ADAPTER_CONFIG_BYTES + 1)},
        f"larger than the {MAX_ADAPTER_CONFIG_BYTES}-byte limit",
    ),
    "garbage-config": ({"config": b"\xff\xfe{{not json"}, "adapter_config.json is not valid UTF-8"),
    "truncated-config": ({"config": b'{"r": 4, "target_modules": ['}, "adapter_config.json is invalid JSON"),
    "list-config": ({"config": b"[1, 2, 3]"}, "adapter_config.json is a JSON list, not an object"),
    "deep-config": ({"config": b"[" * 100_000 + b"]" * 100_000}, "adapter_config.json"),
    "rank-in-config-differs": ({"rank": 8, "tensors": lora_tensors(rank=4)}, "do not match r=8"),
    "rank-differs-between-factors": ({"tensors": _bad_rank_tensors()}, "do not match r=4"),
    "zero-rank": ({"rank": 0}, "LoRA rank r must be an integer in 1..4096"),
    "not-a-lora-tensor": ({"tensors": _stray_tensor()}, "is not a PEFT LoRA factor"),
    "module-not-targeted": ({"tensors": _untargeted()}, "'model.layers.0.mlp.up_proj' is not in target_modules"),
    "lora-a-without-b": ({"tensors": _half_pair()}, "has no lora_B tensor"),
    "control-chars-in-base": ({"base": "evil/\x1b[2Jbase"}, "base_model_name_or_path is not a short printable"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_adapter_fails_with_a_one_line_reason(workspace, tmp_path, case):
    kwargs, reason = HOSTILE[case]
    folder = write_adapter(tmp_path / case, **kwargs)
    outcome = ingest_one(workspace, folder, f"hostile/{case}")
    assert outcome.status == Status.FAILED, outcome
    assert reason in outcome.error and "\n" not in outcome.error
    assert workspace.store.get_model(f"hostile/{case}").error == outcome.error


def test_adapter_header_size_is_capped(workspace, tmp_path):
    folder = write_adapter(tmp_path / "lora")
    weights = folder / ADAPTER_WEIGHTS
    weights.write_bytes((64 * 2**20).to_bytes(8, "little") + b"{}")  # claims a 64 MB header, has 2 bytes
    outcome = ingest_one(workspace, folder, "hostile/huge-header")
    assert outcome.status == Status.FAILED and "runs past the end of the file" in outcome.error


def test_full_checkpoint_with_a_leftover_adapter_config_is_read_as_a_full_model(workspace, small_zoo, tmp_path):
    """A merged adapter is a full checkpoint: it is fingerprinted (and found related by its weights)."""
    folder = tmp_path / "merged"
    shutil.copytree(small_zoo / BASE, folder)
    (folder / ADAPTER_CONFIG).write_text(json.dumps({"peft_type": "LORA", "base_model_name_or_path": BASE, "r": 4}))
    outcome = ingest_one(workspace, folder, "peft-org/merged")
    assert outcome.status == Status.INDEXED
    record = workspace.store.get_model("peft-org/merged")
    assert record.status == Status.INDEXED
    assert workspace.store.count_model_vectors(record.pk, workspace.version) > 0
    merged, base = lineage(workspace.store, "peft-org/merged"), lineage(workspace.store, BASE)
    assert merged.family is not None and merged.family == base.family  # found related by its weights


def test_reingesting_the_same_adapter_is_unchanged(workspace, tmp_path):
    folder = write_adapter(tmp_path / "lora")
    assert ingest_one(workspace, folder, "peft-org/again").status == Status.INDEXED
    assert ingest_one(workspace, folder, "peft-org/again").status == Status.UNCHANGED
    assert [p.relation for p in lineage(workspace.store, "peft-org/again").parents] == ["adapter"]


def test_a_folder_of_base_and_adapter_indexes_the_adapter_after_its_base(small_zoo, tmp_path):
    """``aaa-org/lora`` sorts before its base, yet is read after it."""
    root = tmp_path / "zoo"
    shutil.copytree(small_zoo / BASE, root / BASE)
    write_adapter(root / "aaa-org" / "lora")
    with Workspace(Settings(home=tmp_path / "home")) as ws:
        result = ws.ingest(root)
        assert [(o.id, o.status) for o in result.models] == [(BASE, Status.INDEXED), ("aaa-org/lora", Status.INDEXED)]
        assert [(p.id, p.relation) for p in lineage(ws.store, "aaa-org/lora").parents] == [(BASE, "adapter")]


def test_the_text_view_of_an_answer_without_related_models_says_so() -> None:
    from rich.console import Console

    from pedigree.cli.views import related
    from pedigree.results import Lineage, LineageAnswer, Related

    console = Console(width=80, record=True)
    console.print(related(LineageAnswer.of(Related("peft-org/llama-lora", ()), Lineage()), 80))
    assert console.export_text().strip() == "models related to peft-org/llama-lora by fingerprint: none"
