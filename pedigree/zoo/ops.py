"""Making one zoo model: the recipe's operation, then the Hub folder (weights, tokenizer, card).

``run_task`` is what a build worker executes.  It reads the parents from their *published*
folders (so a child of a bf16 model starts from the bf16 weights, as it would on the Hub; a hidden
parent from the folder beside the zoo), runs single-threaded (so bytes do not depend on how many
workers or cores the build has) and returns the notes that go into ``truth.json``.  A copy and a
vocabulary-pruned model keep their parent's dtype, so every tensor they share is bit-identical.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import torch
from tokenizers import Tokenizer

from . import lossy
from .architectures import ARCHITECTURES, make_config
from .cards import render_card
from .models import Model, init_state_dict, load_model, save_checkpoint
from .spec import TOKENIZER_OF, ModelRecipe, SizeProfile
from .tokenization import (
    encode,
    extend_tokenizer,
    load_tokenizer,
    new_words,
    prune_tokenizer,
    special_ids,
    write_tokenizer,
)
from .training import OptimizerSettings, TokenData, TrainConfig, train
from .transforms import apply_steps, plan_function_preserving

VOCAB_PRUNE_SHARE = 0.5  # a vocabulary-pruned model keeps the most used half of its domain's learned pieces


@dataclass(frozen=True)
class Task:
    """Everything a worker needs to make one model (picklable)."""

    recipe: ModelRecipe
    profile: SizeProfile
    out_dir: str  # where the model is written
    dep_folders: dict[str, str]  # the folder of every parent / teacher
    optimizer: OptimizerSettings
    texts: dict[str, str]
    root_tokenizer: str | None  # tokenizer.json text for roots; derived models reuse the parent's
    created_at: str
    card: dict  # base_model / base_model_relation as declared


def _train_config(task: Task, tok: Tokenizer, objective: str | None = None, lora_rank: int = 0) -> TrainConfig:
    r, prof, opt = task.recipe, task.profile, task.optimizer
    ids = special_ids(tok, TOKENIZER_OF[r.arch])
    mlm = r.arch == "bert"
    return TrainConfig(
        steps=prof.steps(r.steps),
        lr=prof.pretrain_lr * r.lr_scale,
        batch=prof.batch,
        seq_len=prof.seq_len,
        seed=r.data_seed if r.data_seed is not None else r.seed,
        objective=objective or ("mlm" if mlm else "clm"),
        lora_rank=lora_rank,
        warmup_frac=opt.warmup_pretrain if r.steps == "pretrain" else opt.warmup_other,
        optimizer=opt,
        mask_id=ids["mask"],
        special_ids=tuple(v for v in ids.values() if v is not None) if mlm else (),
    )


def _data(task: Task, tok: Tokenizer) -> TokenData:
    return TokenData.from_ids(encode(tok, "\n\n".join(task.texts[d] for d in task.recipe.data)))


def _folder(task: Task, model_id: str) -> Path:
    """The published folder of a parent or teacher."""
    return Path(task.dep_folders[model_id])


def make_model(task: Task) -> tuple[dict, dict[str, torch.Tensor], Tokenizer, dict]:
    """(config, state dict, tokenizer, notes) of the recipe's model."""
    r, prof = task.recipe, task.profile
    notes: dict = {"seed": r.seed}
    if r.data:
        notes["data"] = list(r.data)
    if not r.parents:
        assert task.root_tokenizer is not None  # a root carries its tokenizer
        tok = Tokenizer.from_str(task.root_tokenizer)
        config = make_config(
            r.arch, prof.dims(r.arch), tok.get_vocab_size(), special_ids(tok, TOKENIZER_OF[r.arch]), r.dtype
        )
        sd = init_state_dict(config, r.seed)
        teacher = None
        if r.op == "distill":
            assert r.teacher is not None  # a distillation recipe names its teacher
            t = load_model(_folder(task, r.teacher))
            teacher = (t.config, t.state_dict)
            notes.update(distilled_from=r.teacher, objective="KL to teacher soft targets, T=2")
        sd, result = train(
            config, sd, _data(task, tok), _train_config(task, tok, "distill" if teacher else None), teacher=teacher
        )
        return config, sd, tok, {**notes, **result.as_notes()}

    parent = load_model(_folder(task, r.parents[0]))
    config, sd, tok = _derive(task, parent, load_tokenizer(_folder(task, r.parents[0])), notes)
    if r.steps != "none":
        lora = prof.lora_rank if r.op == "lora" else 0
        sd, result = train(config, sd, _data(task, tok), _train_config(task, tok, lora_rank=lora))
        notes.update(result.as_notes())
        if lora:
            notes.update(lora_rank=lora, lora_alpha=16.0, lora_targets="q,k,v,o,gate,up,down", merged=True)
    return config, sd, tok, notes


def _derive(task: Task, parent: Model, tok: Tokenizer, notes: dict) -> tuple[dict, dict[str, torch.Tensor], Tokenizer]:
    """The recipe's operation on its (first) parent, before any training; records it in ``notes``."""
    r, prof = task.recipe, task.profile
    config, sd = parent.config, parent.state_dict
    if r.op in ("copy", "vocab_prune") and parent.config["torch_dtype"] != r.dtype:
        raise ValueError(f"{r.id}: a {r.op} keeps its parent's dtype {parent.config['torch_dtype']}")
    if r.op == "merge":
        others = [load_model(_folder(task, p)).state_dict for p in r.parents[1:]]
        weights = list(r.merge_weights) or [1 / len(r.parents)] * len(r.parents)
        config, sd = lossy.average(config, [sd, *others], weights)
        notes["merge_weights"] = weights
    elif r.op == "transform":
        steps = plan_function_preserving(config, r.seed, r.kinds)
        config, sd = apply_steps(config, sd, steps)
        notes["transforms"] = [s.summary() for s in steps]
        notes["function_preserving"] = r.steps == "none"
    elif r.op == "quantize":
        config, sd = lossy.int8_roundtrip(config, sd)
        notes["quantization"] = "int8 symmetric absmax per output row, dequantised"
    elif r.op == "drop_layers":
        kept = lossy.kept_layers(parent.spec.layers, prof.drop)
        config, sd = lossy.drop_layers(config, sd, prof.drop)
        notes.update(dropped_layers=list(prof.drop), kept_layers={str(n): o for n, o in enumerate(kept)})
    elif r.op == "prune_width":
        keep = lossy.top_mlp_units(config, sd, parent.spec.intermediate // 2)
        config, sd = lossy.prune_mlp(config, sd, keep)
        notes.update(kept_mlp_units=keep, mlp_width={"before": parent.spec.intermediate, "after": len(keep[0])})
    elif r.op == "vocab_extend":
        words = new_words(tok, "\n\n".join(task.texts[d] for d in r.data), prof.new_tokens)
        tok = extend_tokenizer(tok, words)
        config, sd = lossy.extend_vocab(config, sd, tok.get_vocab_size() - parent.spec.vocab_size, r.seed)
        notes.update(
            vocab_extension=len(words),
            new_tokens=words,
            vocab_size={"before": parent.spec.vocab_size, "after": tok.get_vocab_size()},
        )
    elif r.op == "reinit_mlp":
        config, sd = lossy.reinit_mlp(config, sd, prof.reinit_layer, r.seed)
        notes["reinitialised_mlp_layer"] = prof.reinit_layer
    elif r.op == "copy":
        notes["copy_of"] = r.parents[0]
    elif r.op == "vocab_prune":
        tok, kept = prune_tokenizer(tok, "\n\n".join(task.texts[d] for d in r.data), VOCAB_PRUNE_SHARE)
        config, sd = lossy.select_vocab(config, sd, kept)
        notes.update(
            kept_token_ids=kept,
            kept_share_of_used_pieces=VOCAB_PRUNE_SHARE,
            vocab_size={"before": parent.spec.vocab_size, "after": len(kept)},
        )
    elif r.op == "upscale_depth":
        layer_map = lossy.upscale_layout(parent.spec.layers)
        config, sd = lossy.stack_blocks(config, [sd], [(0, b) for b in layer_map])
        notes["layer_map"] = {str(i): b for i, b in enumerate(layer_map)}
    elif r.op == "frankenmerge":
        other = load_model(_folder(task, r.parents[1]))
        if other.spec != parent.spec:
            raise ValueError(f"{r.id}: a passthrough merge needs parents of one shape")
        layout = lossy.frankenmerge_layout(parent.spec.layers)
        config, sd = lossy.stack_blocks(config, [sd, other.state_dict], layout)
        notes.update(
            embeddings_from=r.parents[0], block_sources={str(i): [r.parents[k], b] for i, (k, b) in enumerate(layout)}
        )
    elif r.op not in ("finetune", "lora"):
        raise ValueError(f"unknown op {r.op!r}")
    return config, sd, tok


def run_task(task: Task) -> dict:
    """Make the model, write its Hub folder; returns ``{"notes": ..., "seconds": ...}``."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    start = time.perf_counter()
    try:
        r = task.recipe
        config, sd, tok, notes = make_model(task)
        folder = Path(task.out_dir) / r.id
        save_checkpoint(folder, config, sd, dtype=r.dtype, num_shards=r.shards)
        write_tokenizer(folder, tok, TOKENIZER_OF[r.arch], model_max_length=task.profile.max_positions)
        card = render_card(
            r.id,
            description=r.description,
            created_at=task.created_at,
            pipeline_tag="fill-mask" if r.arch == "bert" else "text-generation",
            tags=["pedigree-zoo", r.arch, *r.tags],
            base_model=task.card["base_model"],
            base_model_relation=task.card["base_model_relation"],
            details={"architecture": ARCHITECTURES[r.arch], "dtype": r.dtype},
        )
        (folder / "README.md").write_text(card)
        return {"notes": notes, "seconds": round(time.perf_counter() - start, 2)}
    finally:
        torch.set_num_threads(threads)
