"""``build_families_zoo``: tokenizers -> every recipe of ``recipes.RECIPES`` -> truth.json + zoo.json.

Roots are pre-trained (causal LM, AdamW with zoo A's optimiser settings, warm-up then cosine) on
the zoo corpus (``pedigree.zoo.corpus``, zoo A's slice), then fine-tunes start from their
parent's *published* folder.  Each model is made in a spawned worker running one torch thread,
so its bytes do not depend on the worker count.  A folder is a Hub layout: ``config.json``,
``model.safetensors``, the tokenizer files and a README.md card declaring ``base_model``.

Cache: ``zoo.json`` records ``recipe_hash`` = SHA-256 over this package's code, the zoo modules
it uses, every registered architecture's module, the recipes, the corpus hash and the torch
version; a finished build with the same hash is returned as it is.  ``zoo.json`` is written last.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import math
import multiprocessing
import shutil
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from pathlib import Path

import torch
import torch.nn.functional as F
from tokenizers import Tokenizer

from ..cards import render_card
from ..corpus import build_corpus
from ..models import load_state_dict, save_checkpoint
from ..tokenization import encode, special_ids, train_tokenizer, write_tokenizer
from ..training import OptimizerSettings, TokenData, TrainConfig, lr_at, windows
from .recipes import ARCHS, BATCH, CHARS_PER_DOMAIN, DIMS, RECIPES, SEQ_LEN, VOCAB_SIZE, FamilyRecipe

ZOO_NAME = "families"
BASE_TIME = datetime(2024, 6, 1, 9, 0)
SPACING = timedelta(hours=6)
OPTIMIZER = OptimizerSettings()
_ZOO_MODULES = ("cards", "corpus", "models", "tokenization", "training")


def arch_modules(recipes: list[FamilyRecipe]) -> list[str]:
    """The modules that registered the recipes' architectures (a worker imports them first)."""
    return sorted({ARCHS[r.model_type].logits.__module__ for r in recipes})


def recipe_hash(recipes: list[FamilyRecipe], corpus_sha256: str) -> str:
    digest = hashlib.sha256()
    here = Path(__file__).parent
    files = sorted(here.glob("*.py")) + [here.parent / f"{m}.py" for m in _ZOO_MODULES]
    files += [Path(str(sys.modules[m].__file__)) for m in arch_modules(recipes)]
    for path in sorted(set(files)):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    payload = {
        "recipes": [asdict(r) for r in recipes],
        "corpus": corpus_sha256,
        "torch": ".".join(torch.__version__.split(".")[:2]),
        "sizes": [asdict(DIMS), SEQ_LEN, BATCH, VOCAB_SIZE, CHARS_PER_DOMAIN],
    }
    digest.update(json.dumps(payload, sort_keys=True).encode())
    return digest.hexdigest()


@dataclass(frozen=True)
class Task:
    recipe: FamilyRecipe
    imports: tuple[str, ...]
    out_dir: str
    parent_folder: str | None
    tokenizer: str  # tokenizer.json text
    texts: tuple[str, ...]
    created_at: str


def heldout_loss(arch_logits, config: dict, params: dict[str, torch.Tensor], data: TokenData) -> float:
    starts = torch.linspace(0, max(1, len(data.heldout) - SEQ_LEN - 1) - 1, 16).long()
    x = windows(data.heldout, starts, SEQ_LEN + 1)
    with torch.no_grad():
        logits = arch_logits(config, params, x[:, :-1])
        return float(F.cross_entropy(logits.flatten(0, 1), x[:, 1:].flatten()))


def train(task: Task, config: dict, state: dict[str, torch.Tensor], data: TokenData) -> tuple[dict, dict]:
    """Causal-LM training of an HF-named state dict; returns (state dict, notes)."""
    r = task.recipe
    arch = ARCHS[r.model_type]
    warmup = OPTIMIZER.warmup_pretrain if r.relation == "root" else OPTIMIZER.warmup_other
    tc = TrainConfig(steps=r.steps, lr=r.lr, batch=BATCH, seq_len=SEQ_LEN, seed=r.seed, warmup_frac=warmup)
    params = {k: v.detach().float().clone().requires_grad_() for k, v in state.items()}
    groups = [
        {"params": [t for t in params.values() if t.dim() >= 2], "weight_decay": OPTIMIZER.weight_decay},
        {"params": [t for t in params.values() if t.dim() < 2], "weight_decay": 0.0},
    ]
    opt = torch.optim.AdamW(groups, lr=r.lr, betas=OPTIMIZER.betas, eps=OPTIMIZER.eps)
    gen = torch.Generator().manual_seed(r.seed)
    initial = heldout_loss(arch.logits, config, params, data)
    losses = []
    for step in range(r.steps):
        for group in opt.param_groups:
            group["lr"] = lr_at(step, tc)
        x = windows(data.train, torch.randint(0, len(data.train) - SEQ_LEN - 1, (BATCH,), generator=gen), SEQ_LEN + 1)
        logits = arch.logits(config, params, x[:, :-1])
        loss = F.cross_entropy(logits.flatten(0, 1), x[:, 1:].flatten())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(list(params.values()), OPTIMIZER.clip_norm)
        opt.step()
        losses.append(loss.item())
    final = heldout_loss(arch.logits, config, params, data)
    if not math.isfinite(final) or final >= initial:
        raise RuntimeError(f"{r.id}: training did not lower the held-out loss ({initial:.3f} -> {final:.3f})")
    tail = losses[-max(1, len(losses) // 10) :]
    notes = {
        "seed": r.seed,
        "data": list(r.data),
        "steps": r.steps,
        "lr": r.lr,
        "initial_loss": round(initial, 4),
        "final_loss": round(final, 4),
        "final_train_loss": round(sum(tail) / len(tail), 4),
    }
    return {k: v.detach() for k, v in params.items()}, notes


def run_task(task: Task) -> dict:
    """Make one model and write its folder; returns ``{"notes": ..., "seconds": ...}``."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    start = time.perf_counter()
    try:
        for module in task.imports:
            importlib.import_module(module)
        r = task.recipe
        arch = ARCHS[r.model_type]
        tok = Tokenizer.from_str(task.tokenizer)
        if task.parent_folder is None:
            config = arch.make_config(tok.get_vocab_size(), special_ids(tok, arch.tokenizer))
            state = arch.init(config, r.seed)
        else:
            config = json.loads((Path(task.parent_folder) / "config.json").read_text())
            state = {k: v.float() for k, v in load_state_dict(Path(task.parent_folder)).items()}
        state, notes = train(task, config, state, TokenData.from_ids(encode(tok, "\n\n".join(task.texts))))
        folder = Path(task.out_dir) / r.id
        save_checkpoint(folder, config, state, dtype="float32")
        write_tokenizer(folder, tok, arch.tokenizer, model_max_length=DIMS.max_positions)
        card = render_card(
            r.id,
            description=r.description,
            created_at=task.created_at,
            pipeline_tag="text-generation",
            tags=["pedigree-zoo", r.model_type],
            base_model=r.parent,
            base_model_relation="finetune" if r.parent else None,
            details={"architecture": arch.architecture, "dtype": "float32"},
        )
        (folder / "README.md").write_text(card)
        return {"notes": notes, "seconds": round(time.perf_counter() - start, 2)}
    finally:
        torch.set_num_threads(threads)


def _cached(out_dir: Path, key: str) -> dict | None:
    try:
        manifest = json.loads((out_dir / "zoo.json").read_text())
    except (OSError, json.JSONDecodeError):
        return None
    if manifest.get("recipe_hash") != key or not (out_dir / "truth.json").exists():
        return None
    return manifest if all((out_dir / m / "config.json").exists() for m in manifest["models"]) else None


def build_families_zoo(out_dir: Path, recipes: list[FamilyRecipe] | None = None, workers: int = 2) -> dict:
    """Build (or reuse) the families zoo of ``recipes`` (default: ``RECIPES``) under ``out_dir``."""
    recipes = list(RECIPES if recipes is None else recipes)
    out_dir = Path(out_dir)
    start = time.perf_counter()
    corpus = build_corpus(CHARS_PER_DOMAIN)
    key = recipe_hash(recipes, corpus.sha256)
    cached = _cached(out_dir, key)
    if cached is not None:
        return cached
    by_id = {r.id: r for r in recipes}
    for name in ("zoo.json", "truth.json"):
        (out_dir / name).unlink(missing_ok=True)
    for r in recipes:
        shutil.rmtree(out_dir / r.id, ignore_errors=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    kinds = sorted({ARCHS[r.model_type].tokenizer for r in recipes})
    pretrain_text = "\n\n".join(corpus.domains[d] for d in ("code", "prose"))
    tokenizers = {kind: train_tokenizer(kind, pretrain_text, VOCAB_SIZE).to_str() for kind in kinds}
    times = {r.id: (BASE_TIME + k * SPACING).strftime("%Y-%m-%dT%H:%M:%SZ") for k, r in enumerate(recipes)}
    imports = tuple(arch_modules(recipes))

    def task(r: FamilyRecipe) -> Task:
        return Task(
            recipe=r,
            imports=imports,
            out_dir=str(out_dir),
            parent_folder=None if r.parent is None else str(out_dir / r.parent),
            tokenizer=tokenizers[ARCHS[r.model_type].tokenizer],
            texts=tuple(corpus.domains[d] for d in r.data),
            created_at=times[r.id],
        )

    results: dict[str, dict] = {}
    waves = [[r for r in recipes if r.parent is None], [r for r in recipes if r.parent is not None]]
    if any(by_id[r.parent].parent is not None for r in waves[1] if r.parent in by_id):
        raise ValueError("the families zoo builds fine-tunes of roots only")
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=max(1, workers), mp_context=context) as pool:
        for wave in waves:
            for r, result in zip(wave, pool.map(run_task, [task(r) for r in wave])):
                results[r.id] = result
    truth = {
        r.id: {
            "parents": [r.parent] if r.parent else [],
            "relation": r.relation,
            "architecture": ARCHS[r.model_type].architecture,
            "model_type": r.model_type,
            "family": r.parent or r.id,
            "created_at": times[r.id],
            "declared": {"base_model": r.parent, "base_model_relation": "finetune" if r.parent else None},
            "declaration": "correct",
            "dtype": "float32",
            "shards": 1,
            "notes": results[r.id]["notes"],
        }
        for r in recipes
    }
    (out_dir / "truth.json").write_text(json.dumps(truth, indent=2, sort_keys=True) + "\n")
    manifest = {
        "recipe_hash": key,
        "zoo": ZOO_NAME,
        "corpus_sha256": corpus.sha256,
        "torch": torch.__version__,
        "build_seconds": round(time.perf_counter() - start, 1),
        "workers": workers,
        "models": {r.id: {"relation": r.relation, "seconds": results[r.id]["seconds"]} for r in recipes},
    }
    (out_dir / "zoo.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest
