"""The Mixtral and T5 zoo members: recipes, CPU training and a cached build with its truth.json.

Per family a base pre-trained on the zoo corpus's code and prose (``pedigree.zoo.corpus``, zoo A's
slice), a fine-tune of it on the tests domain, and an unrelated model - another initialisation seed
and batch order on the same data, so that related and unrelated pairs differ by lineage alone.
Objectives: Mixtral a causal LM; T5 a prefix LM - the encoder reads a window's first half, the
decoder (teacher-forced from ``decoder_start_token_id``) predicts its second half.  AdamW with zoo
A's settings (``OptimizerSettings``), linear warm-up then cosine decay, gradient clipping at 1.
One tokenizer (zoo A's "llama" kind, 512 entries, trained on the base data) serves both families.

A folder per model is a Hub layout (``config.json``, ``model.safetensors``, tokenizer files, a
README.md card declaring the fine-tune's base); ``truth.json`` has zoo A's fields (``parents``,
``relation``, ``family``, ...).  :func:`build_moe_t5_zoo` reuses a finished build whose
``zoo.json`` has the same ``recipe_hash`` (this package's code, the zoo modules it uses, the
recipes, the corpus hash, the torch version) and writes ``zoo.json`` last.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import math
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from pathlib import Path

import torch
import torch.nn.functional as F

from ..cards import render_card
from ..corpus import build_corpus
from ..models import load_state_dict, save_checkpoint
from ..tokenization import encode, train_tokenizer, write_tokenizer
from ..training import OptimizerSettings, TokenData, windows
from . import models

VOCAB_SIZE, CHARS_PER_DOMAIN, SEQ_LEN, BATCH = 512, 150_000, 64, 8
OPTIMIZER = OptimizerSettings()
BASE_TIME = datetime(2024, 7, 1, 9, 0)
SPACING = timedelta(hours=6)
_ZOO_MODULES = ("cards", "corpus", "models", "tokenization", "training")


@dataclass(frozen=True)
class Recipe:
    """One model: a root pre-trained from ``seed`` or a fine-tune of ``parent``."""

    id: str
    arch: str  # mixtral | t5
    relation: str  # root | finetune
    parent: str | None = None
    data: tuple[str, ...] = ("code", "prose")
    seed: int = 0
    steps: int = 300
    lr: float = 3e-3
    description: str = ""


RECIPES: tuple[Recipe, ...] = (
    Recipe("moe-lab/tiny-mixtral", "mixtral", "root", seed=501, description="A tiny Mixtral (4 experts, top-2)."),
    Recipe(
        "moe-lab/tiny-mixtral-tests",
        "mixtral",
        "finetune",
        parent="moe-lab/tiny-mixtral",
        data=("tests",),
        seed=502,
        steps=60,
        lr=5e-4,
        description="tiny-mixtral fine-tuned on test code.",
    ),
    Recipe("expert-works/tiny-mixtral-s2", "mixtral", "root", seed=503, description="Another tiny Mixtral."),
    Recipe("t5-lab/tiny-t5", "t5", "root", seed=601, description="A tiny T5 v1.1-style encoder-decoder."),
    Recipe(
        "t5-lab/tiny-t5-tests",
        "t5",
        "finetune",
        parent="t5-lab/tiny-t5",
        data=("tests",),
        seed=602,
        steps=60,
        lr=5e-4,
        description="tiny-t5 fine-tuned on test code.",
    ),
    Recipe("seq2seq-works/tiny-t5-s2", "t5", "root", seed=603, description="Another tiny T5."),
)


@dataclass(frozen=True)
class Arch:
    architecture: str
    config: Callable[[int], dict]
    init: Callable[[dict, int], dict[str, torch.Tensor]]
    loss: Callable[[dict, dict[str, torch.Tensor], torch.Tensor], torch.Tensor]  # on [B, SEQ_LEN + 1] windows


def _clm_loss(config: dict, p: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    logits = models.mixtral_logits(config, p, x[:, :-1])
    return F.cross_entropy(logits.flatten(0, 1), x[:, 1:].flatten())


def _prefix_lm_loss(config: dict, p: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    half = SEQ_LEN // 2
    source, target = x[:, :half], x[:, half:SEQ_LEN]
    start = torch.full_like(target[:, :1], config["decoder_start_token_id"])
    logits = models.t5_logits(config, p, source, torch.cat([start, target[:, :-1]], dim=1))
    return F.cross_entropy(logits.flatten(0, 1), target.flatten())


ARCHS = {
    "mixtral": Arch(
        "MixtralForCausalLM",
        lambda vocab: models.mixtral_config(vocab, hidden=64, layers=2, heads=4, kv_heads=2, experts=4, ffn=32),
        models.mixtral_init,
        _clm_loss,
    ),
    "t5": Arch(
        "T5ForConditionalGeneration",
        lambda vocab: models.t5_config(vocab, d_model=64, layers=2, heads=4, d_ff=128),
        models.t5_init,
        _prefix_lm_loss,
    ),
}


def recipe_hash(recipes: tuple[Recipe, ...], corpus_sha256: str) -> str:
    """The cache key of a build (module docstring)."""
    digest = hashlib.sha256()
    here = Path(__file__).parent
    for path in sorted(here.glob("*.py")) + [here.parent / f"{m}.py" for m in _ZOO_MODULES]:
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    payload = {
        "recipes": [asdict(r) for r in recipes],
        "corpus": corpus_sha256,
        "torch": ".".join(torch.__version__.split(".")[:2]),
        "sizes": [VOCAB_SIZE, CHARS_PER_DOMAIN, SEQ_LEN, BATCH],
    }
    digest.update(json.dumps(payload, sort_keys=True).encode())
    return digest.hexdigest()


def _lr(step: int, r: Recipe) -> float:
    warm = max(1, int((OPTIMIZER.warmup_pretrain if r.relation == "root" else OPTIMIZER.warmup_other) * r.steps))
    if step < warm:
        return r.lr * (step + 1) / warm
    progress = (step - warm) / max(1, r.steps - warm)
    floor = OPTIMIZER.min_lr_frac
    return r.lr * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress)))


def train(r: Recipe, config: dict, state: dict[str, torch.Tensor], data: TokenData) -> tuple[dict, dict]:
    """Train an HF-named state dict as ``r`` says; returns (state dict, notes)."""
    loss_of = ARCHS[r.arch].loss
    params = {k: v.detach().float().clone().requires_grad_() for k, v in state.items()}
    groups = [
        {"params": [t for t in params.values() if t.dim() >= 2], "weight_decay": OPTIMIZER.weight_decay},
        {"params": [t for t in params.values() if t.dim() < 2], "weight_decay": 0.0},
    ]
    opt = torch.optim.AdamW(groups, lr=r.lr, betas=OPTIMIZER.betas, eps=OPTIMIZER.eps)
    gen = torch.Generator().manual_seed(r.seed)
    held = windows(data.heldout, torch.linspace(0, len(data.heldout) - SEQ_LEN - 2, 16).long(), SEQ_LEN + 1)

    def heldout() -> float:
        with torch.no_grad():
            return float(loss_of(config, params, held))

    initial, losses = heldout(), []
    for step in range(r.steps):
        for group in opt.param_groups:
            group["lr"] = _lr(step, r)
        starts = torch.randint(0, len(data.train) - SEQ_LEN - 1, (BATCH,), generator=gen)
        loss = loss_of(config, params, windows(data.train, starts, SEQ_LEN + 1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(list(params.values()), OPTIMIZER.clip_norm)
        opt.step()
        losses.append(loss.item())
    final = heldout()
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


def _cached(out_dir: Path, key: str) -> dict | None:
    try:
        manifest = json.loads((out_dir / "zoo.json").read_text())
    except (OSError, json.JSONDecodeError):
        return None
    if manifest.get("recipe_hash") != key or not (out_dir / "truth.json").exists():
        return None
    return manifest if all((out_dir / m / "config.json").exists() for m in manifest["models"]) else None


def _build(out_dir: Path, recipes: tuple[Recipe, ...]) -> dict:
    start = time.perf_counter()
    corpus = build_corpus(CHARS_PER_DOMAIN)
    key = recipe_hash(recipes, corpus.sha256)
    cached = _cached(out_dir, key)
    if cached is not None:
        return cached
    for name in ("zoo.json", "truth.json"):
        (out_dir / name).unlink(missing_ok=True)
    for r in recipes:
        shutil.rmtree(out_dir / r.id, ignore_errors=True)
    tok = train_tokenizer("llama", "\n\n".join(corpus.domains[d] for d in ("code", "prose")), VOCAB_SIZE)
    truth: dict[str, dict] = {}
    seconds: dict[str, float] = {}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the bytes of a model do not depend on the machine's core count
    try:
        for k, r in enumerate(recipes):
            began = time.perf_counter()
            torch.manual_seed(r.seed)
            arch = ARCHS[r.arch]
            if r.parent is None:
                config = arch.config(tok.get_vocab_size())
                state = arch.init(config, r.seed)
            else:
                config = json.loads((out_dir / r.parent / "config.json").read_text())
                state = {n: t.float() for n, t in load_state_dict(out_dir / r.parent).items()}
            data = TokenData.from_ids(encode(tok, "\n\n".join(corpus.domains[d] for d in r.data)))
            state, notes = train(r, config, state, data)
            folder = out_dir / r.id
            save_checkpoint(folder, config, state, dtype="float32")
            write_tokenizer(folder, tok, "llama", model_max_length=128)
            created = (BASE_TIME + k * SPACING).strftime("%Y-%m-%dT%H:%M:%SZ")
            card = render_card(
                r.id,
                description=r.description,
                created_at=created,
                pipeline_tag="text-generation" if r.arch == "mixtral" else "text2text-generation",
                tags=["pedigree-zoo", r.arch],
                base_model=r.parent,
                base_model_relation="finetune" if r.parent else None,
            )
            (folder / "README.md").write_text(card)
            family = r.id if r.parent is None else truth[r.parent]["family"]
            truth[r.id] = {
                "architecture": arch.architecture,
                "model_type": r.arch,
                "relation": r.relation,
                "parents": [r.parent] if r.parent else [],
                "family": family,
                "created_at": created,
                "declaration": "correct",
                "declared": {"base_model": r.parent, "base_model_relation": "finetune" if r.parent else None},
                "notes": notes,
            }
            seconds[r.id] = round(time.perf_counter() - began, 1)
    finally:
        torch.set_num_threads(threads)
    (out_dir / "truth.json").write_text(json.dumps(truth, indent=2, sort_keys=True) + "\n")
    manifest = {
        "recipe_hash": key,
        "zoo": "moe-t5",
        "corpus_sha256": corpus.sha256,
        "torch": torch.__version__,
        "build_seconds": round(time.perf_counter() - start, 1),
        "models": {r.id: {"relation": r.relation, "seconds": seconds[r.id]} for r in recipes},
    }
    (out_dir / "zoo.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def build_moe_t5_zoo(out_dir: Path, recipes: tuple[Recipe, ...] = RECIPES) -> dict:
    """Build (or reuse) the Mixtral and T5 members under ``out_dir``, under an exclusive file lock
    beside it (concurrent test workers build it once); returns the ``zoo.json`` manifest."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with open(out_dir.parent / f".{out_dir.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            return _build(out_dir, recipes)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
