"""The vision zoo: tiny ViT and CLIP-vision encoders really trained on CPU on the UCI digits.

Data: ``data/digits.csv.gz`` (1,797 8x8 digits, 0..16; see ``data/README.md``), rendered in colour
(a random foreground and background colour per image) so that the three input channels - and so
the 3·4·4 = 48 pixel tokens of a 4x4 patch - differ; 8x8 images in four 4x4 patches (an upscaled
image would repeat each pixel, and its pixel tokens would come in identical groups).  A fixed split
keeps 297 images for the test accuracy in truth.json's notes.  Augmentations: ``color`` (the
rendering alone), ``shift`` (random translation by up to one pixel), ``invert`` (1 - image),
``noise`` (Gaussian, σ = 0.15).

Models (:data:`RECIPES`): a ViT base trained on every digit; fine-tunes with other augmentations,
another label subset, longer training, and a second generation; a LoRA child (rank-4 updates of
the query and value projections, trained with the rest frozen, then merged into the weights); a
merge (the average of two fine-tunes); an unrelated ViT (another seed) with a fine-tune; and a
CLIP-vision family (``CLIPVisionModel`` layout: base, fine-tune, unrelated base).  Every folder
holds config.json, model.safetensors, preprocessor_config.json and a README.md card; truth.json
has the true lineage in the LLM zoos' format (``pedigree.zoo.build.truth_entry``).

Cache: zoo.json records ``recipe_hash`` over this module, ``models``, the data file, the
torch version and the recipes; :func:`build_vision_zoo` returns a finished build with the same
hash without rebuilding (tests and benchmarks cache it with ``bench/vision_zoo_cache.py``).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import shutil
import time
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

from ..cards import render_card
from ..models import save_checkpoint
from .models import VisionModel, VisionShape, build, load

ZOO_VERSION = "1"
BATCH = 64
TEST_IMAGES = 297
SHAPES = {
    "vit": VisionShape(hidden=64, heads=4, layers=4, mlp=256, image=8, patch=4),
    "clip_vision": VisionShape(hidden=48, heads=4, layers=3, mlp=192, image=8, patch=4),
}
ALL = tuple(range(10))


@dataclass(frozen=True)
class VisionRecipe:
    """One model: trained from scratch (no parents), from its parent, or averaged (a merge)."""

    id: str
    kind: str  # vit | clip_vision
    parents: tuple[str, ...] = ()
    relation: str = "root"  # root | finetune | adapter | merge
    seed: int = 0
    steps: int = 0
    lr: float = 1e-3
    labels: tuple[int, ...] = ALL
    augment: str = "color"  # color | shift | invert | noise
    lora_rank: int = 0
    declaration: str = "correct"  # correct | missing (the card names no base model)


BASE, S2, CLIP = "vit-lab/tiny-vit", "other-lab/tiny-vit-s2", "clip-lab/tiny-clip-vision"
SHIFT, LOW = "vit-lab/tiny-vit-shift", "vit-lab/tiny-vit-low"
RECIPES: tuple[VisionRecipe, ...] = (
    VisionRecipe(BASE, "vit", seed=1, steps=350, lr=2e-3),
    VisionRecipe(SHIFT, "vit", (BASE,), "finetune", seed=11, steps=100, lr=5e-4, augment="shift"),
    VisionRecipe(LOW, "vit", (BASE,), "finetune", seed=12, steps=100, lr=5e-4, labels=(0, 1, 2, 3, 4)),
    VisionRecipe(
        "shiftworks/tiny-vit-shift-inverted", "vit", (SHIFT,), "finetune", seed=13, steps=100, lr=5e-4, augment="invert"
    ),
    VisionRecipe(
        "longrun/tiny-vit-long", "vit", (BASE,), "finetune", seed=14, steps=300, lr=1e-3, declaration="missing"
    ),
    VisionRecipe(
        "adapter-forge/tiny-vit-lora-noise",
        "vit",
        (BASE,),
        "adapter",
        seed=15,
        steps=120,
        lr=3e-3,
        labels=(5, 6, 7, 8, 9),
        augment="noise",
        lora_rank=4,
    ),
    VisionRecipe("soup-kitchen/tiny-vit-soup", "vit", (SHIFT, LOW), "merge"),
    VisionRecipe(S2, "vit", seed=2, steps=350, lr=2e-3),
    VisionRecipe(
        "other-lab/tiny-vit-s2-invert", "vit", (S2,), "finetune", seed=21, steps=100, lr=5e-4, augment="invert"
    ),
    VisionRecipe(CLIP, "clip_vision", seed=3, steps=350, lr=2e-3),
    VisionRecipe(
        "clip-lab/tiny-clip-vision-shift",
        "clip_vision",
        (CLIP,),
        "finetune",
        seed=31,
        steps=100,
        lr=5e-4,
        augment="shift",
    ),
    VisionRecipe("clip-other/tiny-clip-vision-s2", "clip_vision", seed=4, steps=350, lr=2e-3),
)


def _digits_bytes() -> bytes:
    return resources.files("pedigree.zoo").joinpath("data/digits.csv.gz").read_bytes()


def load_digits() -> tuple[torch.Tensor, torch.Tensor]:
    """(images [1797, 1, 8, 8] in [0, 1], labels [1797]) from the vendored UCI digits."""
    rows = [line.split(",") for line in gzip.decompress(_digits_bytes()).decode().splitlines() if line]
    values = torch.tensor([[float(v) for v in row] for row in rows])
    return (values[:, :64] / 16.0).reshape(-1, 1, 8, 8), values[:, 64].long()


@dataclass(frozen=True)
class Digits:
    """The colour-rendered 8x8 images, split once (a fixed permutation) into train and test."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor


def digits_dataset() -> Digits:
    images, labels = load_digits()
    g = torch.Generator().manual_seed(1797)
    fg = 0.4 + 0.6 * torch.rand(len(images), 3, 1, 1, generator=g)
    bg = 0.3 * torch.rand(len(images), 3, 1, 1, generator=g)
    colour = bg + (fg - bg) * images
    order = torch.randperm(len(images), generator=g)
    test, train = order[:TEST_IMAGES], order[TEST_IMAGES:]
    return Digits(colour[train], labels[train], colour[test], labels[test])


def augment(images: torch.Tensor, how: str, g: torch.Generator) -> torch.Tensor:
    """Apply augmentation ``how`` to images in [0, 1], then normalise to mean 0.5, std 0.5."""
    if how == "shift":
        size = images.shape[-1]
        padded = F.pad(images, (1, 1, 1, 1))
        offsets = torch.randint(0, 3, (len(images), 2), generator=g).tolist()
        images = torch.stack([p[:, dy : dy + size, dx : dx + size] for p, (dy, dx) in zip(padded, offsets)])
    elif how == "invert":
        images = 1.0 - images
    elif how == "noise":
        images = images + 0.15 * torch.randn(images.shape, generator=g)
    elif how != "color":
        raise ValueError(f"unknown augmentation {how!r}")
    return (images - 0.5) / 0.5


def _subset(x: torch.Tensor, y: torch.Tensor, labels: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    keep = torch.isin(y, torch.tensor(labels))
    return x[keep], y[keep]


def accuracy(model: VisionModel, data: Digits, r: VisionRecipe) -> float:
    x, y = _subset(data.test_x, data.test_y, r.labels)
    with torch.no_grad():
        predicted = model(augment(x, r.augment, torch.Generator().manual_seed(0))).argmax(dim=1)
    return round(float((predicted == y).float().mean()), 4)


class LoRA(nn.Module):
    """W + (alpha / r) B A with A random, B zero (a parametrization; merged when removed)."""

    def __init__(self, rows: int, cols: int, rank: int, alpha: float = 8.0) -> None:
        super().__init__()
        self.a = nn.Parameter(torch.randn(rank, cols) / rank**0.5)
        self.b = nn.Parameter(torch.zeros(rows, rank))
        self.scale = alpha / rank

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return weight + self.scale * self.b @ self.a


def _lora_targets(model: VisionModel) -> list[nn.Linear]:
    """The query and value projections of every block."""
    out: list[nn.Linear] = []
    for layer in model.modules():
        if hasattr(layer, "attention") and hasattr(layer.attention, "attention"):
            out += [layer.attention.attention.query, layer.attention.attention.value]
        elif hasattr(layer, "self_attn"):
            out += [layer.self_attn.q_proj, layer.self_attn.v_proj]
    return out


def train(model: VisionModel, r: VisionRecipe, data: Digits) -> dict:
    """AdamW on cross-entropy over the recipe's labels and augmentation; LoRA: only the low-rank
    factors (and the classifier / probe) train, then they are merged into the weights."""
    x, y = _subset(data.train_x, data.train_y, r.labels)
    g = torch.Generator().manual_seed(r.seed)
    params: list[nn.Parameter] = list(model.parameters())
    if r.lora_rank:
        for p in params:
            p.requires_grad_(False)
        head = model.classifier if hasattr(model, "classifier") else model.probe
        params = list(head.parameters())
        for linear in _lora_targets(model):
            rows, cols = linear.weight.shape
            lora = LoRA(rows, cols, rank=r.lora_rank)
            parametrize.register_parametrization(linear, "weight", lora)
            params += [lora.a, lora.b]
        for p in params:
            p.requires_grad_(True)
    optimizer = torch.optim.AdamW(params, lr=r.lr, weight_decay=0.01)
    losses = []
    model.train()
    for _ in range(r.steps):
        pick = torch.randint(len(x), (BATCH,), generator=g)
        loss = F.cross_entropy(model(augment(x[pick], r.augment, g)), y[pick])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    model.eval()
    if r.lora_rank:
        for linear in _lora_targets(model):
            parametrize.remove_parametrizations(linear, "weight", leave_parametrized=True)
        for p in model.parameters():
            p.requires_grad_(True)
    tail = losses[-20:]
    return {"initial_loss": round(losses[0], 4), "final_train_loss": round(sum(tail) / len(tail), 4)}


def make(r: VisionRecipe, parents: list[dict[str, torch.Tensor]], data: Digits) -> tuple[VisionModel, dict]:
    """Build one model from its recipe and its parents' tensors; returns it and truth.json notes."""
    shape = SHAPES[r.kind]
    notes: dict = {"seed": r.seed, "steps": r.steps}
    if r.relation == "merge":
        average = {k: sum(p[k] for p in parents) / len(parents) for k in parents[0]}
        model = load(r.kind, shape, average, seed=r.seed)
        notes = {"merge": "uniform average", "weights": [0.5, 0.5]}
    else:
        model = build(r.kind, shape, r.seed) if not parents else load(r.kind, shape, parents[0], seed=r.seed)
        notes.update(train(model, r, data))
        notes.update({"lr": r.lr, "augment": r.augment, "labels": list(r.labels)})
        if r.lora_rank:
            notes.update({"lora_rank": r.lora_rank, "lora_targets": "q,v", "merged": True})
    notes["test_accuracy"] = accuracy(model, data, r)  # CLIP vision: through its linear probe (not saved)
    return model, notes


def recipe_hash() -> str:
    here = Path(__file__).parent
    digest = hashlib.sha256(ZOO_VERSION.encode())
    for name in ("build.py", "models.py"):
        digest.update((here / name).read_bytes())
    digest.update(_digits_bytes())
    digest.update(".".join(torch.__version__.split(".")[:2]).encode())
    digest.update(json.dumps([asdict(r) for r in RECIPES], sort_keys=True).encode())
    return digest.hexdigest()


def _card(r: VisionRecipe, created_at: str) -> str:
    declared = r.declaration == "correct" and r.parents
    base: str | list[str] | None = (list(r.parents) if len(r.parents) > 1 else r.parents[0]) if declared else None
    relation = r.relation if declared else None
    return render_card(
        r.id,
        description=f"A tiny {'ViT' if r.kind == 'vit' else 'CLIP vision encoder'} trained on 8x8 digits.",
        created_at=created_at,
        pipeline_tag="image-classification" if r.kind == "vit" else "image-feature-extraction",
        tags=["vision", "digits", r.kind],
        base_model=base,
        base_model_relation=relation,
    )


def _truth(r: VisionRecipe, created_at: str, notes: dict) -> dict:
    root = r.id
    while RECIPES_BY_ID[root].parents:
        root = RECIPES_BY_ID[root].parents[0]
    declared = r.declaration == "correct" and r.parents
    return {
        "parents": list(r.parents),
        "relation": r.relation,
        "architecture": "ViTForImageClassification" if r.kind == "vit" else "CLIPVisionModel",
        "model_type": "vit" if r.kind == "vit" else "clip_vision_model",
        "family": root,
        "created_at": created_at,
        "declared": {
            "base_model": (list(r.parents) if len(r.parents) > 1 else r.parents[0]) if declared else None,
            "base_model_relation": r.relation if declared else None,
        },
        "declaration": r.declaration if r.parents else "correct",
        "dtype": "float32",
        "shards": 1,
        "notes": notes,
    }


RECIPES_BY_ID = {r.id: r for r in RECIPES}


def build_vision_zoo(out_dir: Path) -> dict:
    """Build (or reuse) the vision zoo in ``out_dir``; returns its zoo.json manifest."""
    out_dir = Path(out_dir)
    key = recipe_hash()
    manifest_path = out_dir / "zoo.json"
    if manifest_path.exists():
        manifest = json.loads(manifest_path.read_text())
        if manifest.get("recipe_hash") == key and all((out_dir / r.id / "config.json").exists() for r in RECIPES):
            return manifest
    started = time.perf_counter()
    for name in ("zoo.json", "truth.json"):
        (out_dir / name).unlink(missing_ok=True)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        data = digits_dataset()
        tensors: dict[str, dict[str, torch.Tensor]] = {}
        truth, seconds = {}, {}
        for day, r in enumerate(RECIPES, start=1):
            t0 = time.perf_counter()
            created_at = f"2024-06-{day:02d}T09:00:00Z"
            model, notes = make(r, [tensors[p] for p in r.parents], data)
            tensors[r.id] = model.checkpoint()
            folder = out_dir / r.id
            shutil.rmtree(folder, ignore_errors=True)
            save_checkpoint(folder, model.config(), tensors[r.id])
            (folder / "preprocessor_config.json").write_text(json.dumps(_preprocessor(r), indent=2) + "\n")
            (folder / "README.md").write_text(_card(r, created_at))
            truth[r.id] = _truth(r, created_at, notes)
            seconds[r.id] = round(time.perf_counter() - t0, 2)
    finally:
        torch.set_num_threads(threads)
    (out_dir / "truth.json").write_text(json.dumps(truth, indent=2, sort_keys=True) + "\n")
    manifest = {
        "recipe_hash": key,
        "zoo": "vision",
        "zoo_version": ZOO_VERSION,
        "torch": torch.__version__,
        "build_seconds": round(time.perf_counter() - started, 1),
        "models": {r.id: {"relation": r.relation, "seconds": seconds[r.id]} for r in RECIPES},
    }
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def _preprocessor(r: VisionRecipe) -> dict:
    """What an image processor would apply: resize to 8x8, scale to [0, 1], normalise to ±1."""
    return {
        "image_processor_type": "ViTImageProcessor" if r.kind == "vit" else "CLIPImageProcessor",
        "do_resize": True,
        "size": {"height": SHAPES[r.kind].image, "width": SHAPES[r.kind].image},
        "do_rescale": True,
        "rescale_factor": 1 / 255,
        "do_normalize": True,
        "image_mean": [0.5, 0.5, 0.5],
        "image_std": [0.5, 0.5, 0.5],
    }
