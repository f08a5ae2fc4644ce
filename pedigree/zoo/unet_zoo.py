"""The digits diffusion zoo: tiny diffusers-layout UNets (``pedigree.zoo.unet``) trained on CPU.

Data: the UCI 8x8 digits (``data/digits.csv.gz``, 1,797 images, pixels 0..16 scaled to [-1, 1]).
Every model is a noise-prediction denoiser (DDPM, :data:`STEPS_T` timesteps, linear betas scaled
from Ho et al.'s 1e-4..0.02 over 1,000 steps) conditioned by cross-attention on a class-label
embedding.  The label embedding (after a start token) plays the text encoder's part in Stable
Diffusion: one fixed, seeded table shared by every model and never saved with the UNet (SD's
fine-tunes share CLIP too).

Recipes (:data:`RECIPES`, ``truth.json`` in the LLM zoos' format, ``pedigree.zoo.build``):

- three bases trained from different seeds on every digit (independent roots);
- fine-tunes of the first base: on the even digits, and on every digit for longer; a second
  generation fine-tuned from the even-digit model on {0, 4, 8};
- a LoRA-merged child: rank-4 updates of every attention ``to_q`` and ``to_v`` trained on {1, 7},
  merged into the weights (W + B·A·alpha/r);
- a merge: the element-wise average of the two first-generation fine-tunes;
- a fine-tune of the second base on {3, 5} (so that unrelated pairs include derivatives).

Optimiser and schedule: zoo A's (``pedigree.zoo.training``: AdamW settings, linear warm-up then
cosine to 10 % of the learning rate, ``lr_at``).  Single-threaded, seeded: the build is reproducible.

Cache (``build_unet_zoo``): ``zoo.json`` carries a SHA-256 over this module's and
``pedigree.zoo.unet``'s source, the recipes, the data file and the torch version; a finished build
with the same key is returned as is.  ``zoo.json`` is written last.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch.func import functional_call

from .training import OptimizerSettings, TrainConfig, lr_at
from .unet import TinyUNet, unet_config

DATA = Path(__file__).parent / "data" / "digits.csv.gz"
STEPS_T = 100  # diffusion timesteps
CHANNELS = (16, 32)
HEADS = 2
CROSS_DIM = 16
GROUPS = 4
BATCH = 64
LABEL_SEED = 1234  # the shared "text encoder": a fixed label-embedding table
LORA_RANK = 4
LORA_ALPHA = 8.0
ARCHITECTURE = "UNet2DConditionModel"
MODEL_TYPE = "unet2d_condition"
WEIGHTS_FILE = "diffusion_pytorch_model.safetensors"
ZOO_VERSION = "1"


@dataclass(frozen=True)
class UNetRecipe:
    """One zoo model: ``op`` pretrain | finetune | lora | merge, ``parents`` by id."""

    id: str
    op: str
    parents: tuple[str, ...] = ()
    digits: tuple[int, ...] = tuple(range(10))
    steps: int = 0
    lr: float = 0.0
    seed: int = 0

    @property
    def relation(self) -> str:
        return {"pretrain": "root", "finetune": "finetune", "lora": "adapter", "merge": "merge"}[self.op]


ALL = tuple(range(10))
RECIPES: tuple[UNetRecipe, ...] = (
    UNetRecipe("pixel-lab/tiny-unet", "pretrain", steps=150, lr=2e-3, seed=1),
    UNetRecipe("evens-co/tiny-unet-even", "finetune", ("pixel-lab/tiny-unet",), (0, 2, 4, 6, 8), 75, 5e-4, 11),
    UNetRecipe("longrun/tiny-unet-long", "finetune", ("pixel-lab/tiny-unet",), ALL, 150, 1e-3, 12),
    UNetRecipe("roundish/tiny-unet-048", "finetune", ("evens-co/tiny-unet-even",), (0, 4, 8), 75, 5e-4, 13),
    UNetRecipe("lora-shop/tiny-unet-17-lora", "lora", ("pixel-lab/tiny-unet",), (1, 7), 75, 2e-3, 14),
    UNetRecipe("soup/tiny-unet-merge", "merge", ("evens-co/tiny-unet-even", "longrun/tiny-unet-long")),
    UNetRecipe("other-lab/tiny-unet", "pretrain", steps=150, lr=2e-3, seed=2),
    UNetRecipe("odd-fans/tiny-unet-35", "finetune", ("other-lab/tiny-unet",), (3, 5), 75, 5e-4, 21),
    UNetRecipe("third-lab/tiny-unet", "pretrain", steps=150, lr=2e-3, seed=3),
)


def zoo_config() -> dict[str, Any]:
    return unet_config(CHANNELS, heads=HEADS, cross_dim=CROSS_DIM, groups=GROUPS)


def load_digits() -> tuple[torch.Tensor, torch.Tensor]:
    """([1797, 1, 8, 8] images in [-1, 1], [1797] labels) from the vendored CSV."""
    with gzip.open(DATA, "rt") as f:
        rows = np.loadtxt(f, delimiter=",", dtype=np.float32)
    images = torch.from_numpy(rows[:, :64] / 8.0 - 1.0).reshape(-1, 1, 8, 8)
    return images, torch.from_numpy(rows[:, 64]).long()


def label_table() -> torch.Tensor:
    """The shared, frozen "text encoder" [11, CROSS_DIM]: rows 0..9 the digit labels, row 10 a
    start token that opens every context (as CLIP's BOS does; with a one-token context the
    cross-attention softmax is constant and its q, k would get no gradient)."""
    return torch.randn(11, CROSS_DIM, generator=torch.Generator().manual_seed(LABEL_SEED))


def contexts(labels: torch.Tensor) -> torch.Tensor:
    """[batch, 2, CROSS_DIM]: (start token, label) per image."""
    table = label_table()
    return torch.stack([table[10].expand(len(labels), -1), table[labels]], dim=1)


def schedule() -> torch.Tensor:
    """ᾱ_t for t = 0..STEPS_T-1 (linear betas, Ho et al.'s range rescaled to STEPS_T steps)."""
    scale = 1000 / STEPS_T
    betas = torch.linspace(1e-4 * scale, 0.02 * scale, STEPS_T)
    return torch.cumprod(1.0 - betas, dim=0)


def denoising_loss(
    net: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor],
    images: torch.Tensor,
    labels: torch.Tensor,
    generator: torch.Generator,
) -> torch.Tensor:
    """ε-prediction MSE at uniformly drawn timesteps (``net(x_t, t, context)`` predicts ε)."""
    alpha_bar = schedule()
    t = torch.randint(0, STEPS_T, (len(images),), generator=generator)
    noise = torch.randn(images.shape, generator=generator)
    a = alpha_bar[t].sqrt()[:, None, None, None]
    s = (1 - alpha_bar[t]).sqrt()[:, None, None, None]
    context = contexts(labels)
    return torch.nn.functional.mse_loss(net(a * images + s * noise, t, context), noise)


def lora_targets(model: TinyUNet) -> list[str]:
    """Every attention ``to_q`` and ``to_v`` weight (self- and cross-attention)."""
    return [n for n, _ in model.named_parameters() if n.endswith((".to_q.weight", ".to_v.weight"))]


def train(model: TinyUNet, recipe: UNetRecipe, data: tuple[torch.Tensor, torch.Tensor]) -> dict[str, float]:
    """Train ``model`` in place on ``recipe.digits`` (LoRA: train rank-``LORA_RANK`` factors B·A
    of the :func:`lora_targets`, then merge W + (α/r)·B·A); returns the first and last losses."""
    images, labels = data
    keep = torch.isin(labels, torch.tensor(recipe.digits))
    images, labels = images[keep], labels[keep]
    generator = torch.Generator().manual_seed(recipe.seed)
    settings = OptimizerSettings()
    params = dict(model.named_parameters())
    scale = LORA_ALPHA / LORA_RANK
    lora: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    if recipe.op == "lora":
        for name in lora_targets(model):
            out, inp = params[name].shape
            a = (torch.randn(LORA_RANK, inp, generator=generator) / inp**0.5).requires_grad_(True)
            lora[name] = (a, torch.zeros(out, LORA_RANK, requires_grad=True))
        trainable = [t for pair in lora.values() for t in pair]
        groups: list[dict[str, Any]] = [{"params": trainable, "weight_decay": 0.0}]
        frozen = {n: p.detach() for n, p in params.items()}

        def net(x: torch.Tensor, t: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
            merged = {n: frozen[n] + scale * b @ a for n, (a, b) in lora.items()}
            return functional_call(model, {**frozen, **merged}, (x, t, c))

    else:
        trainable = list(params.values())
        groups = [
            {"params": [p for p in trainable if p.dim() >= 2], "weight_decay": settings.weight_decay},
            {"params": [p for p in trainable if p.dim() < 2], "weight_decay": 0.0},
        ]
        net = model
    opt = torch.optim.AdamW(groups, lr=recipe.lr, betas=settings.betas, eps=settings.eps)
    warmup = settings.warmup_pretrain if recipe.op == "pretrain" else settings.warmup_other
    schedule_config = TrainConfig(recipe.steps, recipe.lr, BATCH, 0, recipe.seed, warmup_frac=warmup)
    losses = []
    for step in range(recipe.steps):
        for group in opt.param_groups:
            group["lr"] = lr_at(step, schedule_config)
        pick = torch.randint(0, len(images), (BATCH,), generator=generator)
        loss = denoising_loss(net, images[pick], labels[pick], generator)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, settings.clip_norm)
        opt.step()
        losses.append(float(loss.detach()))
    with torch.no_grad():
        for name, (a, b) in lora.items():
            params[name].add_(scale * b @ a)
    return {"initial_loss": round(float(np.mean(losses[:10])), 4), "final_loss": round(float(np.mean(losses[-20:])), 4)}


def merge_weights(parents: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """The element-wise average of the parents' state dicts (a uniform model soup)."""
    return {name: sum(sd[name] for sd in parents) / len(parents) for name in parents[0]}


def make_model(recipe: UNetRecipe, folders: dict[str, Path], data: tuple[torch.Tensor, torch.Tensor]) -> dict:
    """Build one recipe's state dict from its parents' published folders; returns (state dict, notes)."""
    torch.manual_seed(recipe.seed)
    notes: dict[str, Any] = {"seed": recipe.seed, "digits": list(recipe.digits)}
    parents = [load_file(str(folders[p] / WEIGHTS_FILE)) for p in recipe.parents]
    if recipe.op == "merge":
        notes = {"merge_weights": [round(1 / len(parents), 4)] * len(parents)}
        return {"state": merge_weights(parents), "notes": notes}
    model = TinyUNet(zoo_config())
    if parents:
        model.load_state_dict(parents[0])
    notes.update(train(model, recipe, data), steps=recipe.steps, lr=recipe.lr)
    if recipe.op == "lora":
        notes.update(lora_rank=LORA_RANK, lora_alpha=LORA_ALPHA, lora_targets="to_q,to_v", merged=True)
    return {"state": {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}, "notes": notes}


def write_folder(folder: Path, recipe: UNetRecipe, state: dict[str, torch.Tensor], created_at: str) -> None:
    """config.json + diffusion_pytorch_model.safetensors + a card naming the base model(s)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(zoo_config(), indent=2) + "\n")
    save_file(state, str(folder / WEIGHTS_FILE))
    base: str | list[str] | None = None if not recipe.parents else list(recipe.parents)
    if isinstance(base, list) and len(base) == 1:
        base = base[0]
    card = [
        "---",
        *([f"base_model: {json.dumps(base)}"] if isinstance(base, str) else []),
        *(["base_model:", *(f"- {json.dumps(b)}" for b in base)] if isinstance(base, list) else []),
        *([f"base_model_relation: {recipe.relation}"] if recipe.parents else []),
        f"created_at: {json.dumps(created_at)}",
        "library_name: diffusers",
        "pipeline_tag: unconditional-image-generation",
        "---",
        "",
        f"# {recipe.id.split('/')[-1]}",
        "",
        "A tiny class-conditional UNet denoiser of 8x8 digits (pedigree's diffusion zoo).",
        "",
    ]
    (folder / "README.md").write_text("\n".join(card))


def recipe_hash() -> str:
    """The cache key: this zoo's code, recipes, data and torch version."""
    digest = hashlib.sha256(ZOO_VERSION.encode())
    for path in (Path(__file__), Path(__file__).with_name("unet.py"), DATA):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    digest.update(json.dumps([asdict(r) for r in RECIPES], sort_keys=True).encode())
    digest.update(".".join(torch.__version__.split(".")[:2]).encode())
    return digest.hexdigest()


def build_unet_zoo(out_dir: Path) -> dict:
    """Build (or reuse) the digits diffusion zoo under ``out_dir``; returns the ``zoo.json`` manifest."""
    out_dir = Path(out_dir)
    key = recipe_hash()
    manifest_path = out_dir / "zoo.json"
    if manifest_path.exists():
        try:
            manifest = json.loads(manifest_path.read_text())
        except json.JSONDecodeError:
            manifest = {}
        if manifest.get("recipe_hash") == key and all((out_dir / r.id / WEIGHTS_FILE).exists() for r in RECIPES):
            return dict(manifest)
    for name in ("zoo.json", "truth.json"):
        (out_dir / name).unlink(missing_ok=True)
    for r in RECIPES:
        shutil.rmtree(out_dir / r.id, ignore_errors=True)
    started = time.perf_counter()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        data = load_digits()
        epoch = datetime(2024, 5, 1, tzinfo=UTC)
        folders = {r.id: out_dir / r.id for r in RECIPES}
        truth: dict[str, dict] = {}
        seconds: dict[str, float] = {}
        for i, r in enumerate(RECIPES):
            began = time.perf_counter()
            made = make_model(r, folders, data)
            created = (epoch + timedelta(days=i)).strftime("%Y-%m-%dT%H:%M:%SZ")
            write_folder(folders[r.id], r, made["state"], created)
            seconds[r.id] = round(time.perf_counter() - began, 1)
            family = r.id
            while RECIPES_BY_ID[family].parents:
                family = RECIPES_BY_ID[family].parents[0]
            base = list(r.parents) if len(r.parents) > 1 else (r.parents[0] if r.parents else None)
            truth[r.id] = {
                "parents": list(r.parents),
                "relation": r.relation,
                "architecture": ARCHITECTURE,
                "model_type": MODEL_TYPE,
                "family": family,
                "created_at": created,
                "declared": {"base_model": base, "base_model_relation": r.relation if r.parents else None},
                "declaration": "correct",
                "dtype": "float32",
                "shards": 1,
                "notes": made["notes"],
            }
    finally:
        torch.set_num_threads(threads)
    (out_dir / "truth.json").write_text(json.dumps(truth, indent=2, sort_keys=True) + "\n")
    manifest = {
        "recipe_hash": key,
        "zoo": "unet-digits",
        "zoo_version": ZOO_VERSION,
        "torch": torch.__version__,
        "build_seconds": round(time.perf_counter() - started, 1),
        "models": {r.id: {"relation": r.relation, "seconds": seconds[r.id]} for r in RECIPES},
    }
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


RECIPES_BY_ID = {r.id: r for r in RECIPES}
