"""The families zoo's recipes and architectures: plain module-level lists other modules extend.

``ARCHS`` maps a ``model_type`` to a :class:`FamilyArch` (how to write its config, initialise it
and run it on an HF-named state dict); ``RECIPES`` lists the models, parents first.  A module
that adds families (Mixtral, T5) registers its architectures in ``ARCHS`` and appends its recipes
to ``RECIPES`` on import; ``build.build_families_zoo`` builds whatever the lists hold when called
(and hashes it, so an extended list is a different, correctly rebuilt zoo).

Per family (``FAMILY_TYPES``): a base pre-trained on code and prose, a fine-tune of it on the
tests domain, and an unrelated model of the same family - another initialisation seed and batch
order, the same data - so that what separates related from unrelated pairs is lineage, not data.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from .configs import make_config
from .decoders import ARCHITECTURES, DecoderDims, init_canonical, spec_from_config
from .decoders import forward as decoder_forward
from .layouts import to_canonical, to_hf


@dataclass(frozen=True)
class FamilyArch:
    """One architecture of the families zoo.

    ``make_config(vocab_size, special_ids)`` -> config.json; ``init(config, seed)`` -> float32
    HF-named state dict; ``logits(config, state_dict, ids)`` -> next-token logits [B, T, V]
    (differentiable: training runs through it); ``tokenizer`` the zoo tokenizer kind
    (``pedigree.zoo.tokenization.KINDS``)."""

    architecture: str
    make_config: Callable[[int, dict[str, int | None]], dict]
    init: Callable[[dict, int], dict[str, torch.Tensor]]
    logits: Callable[[dict, dict[str, torch.Tensor], torch.Tensor], torch.Tensor]
    tokenizer: str


@dataclass(frozen=True)
class FamilyRecipe:
    """One model: a root (pre-trained from ``seed``) or a fine-tune of ``parent``."""

    id: str
    model_type: str
    relation: str  # root | finetune
    parent: str | None = None
    data: tuple[str, ...] = ("code", "prose")
    seed: int = 0
    steps: int = 200
    lr: float = 3e-3
    description: str = ""


DIMS = DecoderDims()
SEQ_LEN, BATCH, VOCAB_SIZE, CHARS_PER_DOMAIN = 64, 8, 512, 150_000


def _decoder(model_type: str, tokenizer: str) -> FamilyArch:
    def logits(config: dict, state: dict[str, torch.Tensor], ids: torch.Tensor) -> torch.Tensor:
        return decoder_forward(spec_from_config(config), to_canonical(config, state), ids)

    return FamilyArch(
        architecture=ARCHITECTURES[model_type],
        make_config=lambda vocab, ids: make_config(model_type, DIMS, vocab, ids),
        init=lambda config, seed: to_hf(config, init_canonical(spec_from_config(config), seed)),
        logits=logits,
        tokenizer=tokenizer,
    )


ARCHS: dict[str, FamilyArch] = {
    "phi3": _decoder("phi3", "llama"),
    "falcon": _decoder("falcon", "gpt2"),
    "starcoder2": _decoder("starcoder2", "gpt2"),
    "gemma2": _decoder("gemma2", "llama"),
    "gemma3_text": _decoder("gemma3_text", "llama"),
}

FAMILY_TYPES = {
    "phi3": "phi3",
    "falcon": "falcon",
    "starcoder2": "starcoder2",
    "gemma2": "gemma2",
    "gemma3": "gemma3_text",
}


def family_recipes(name: str, model_type: str, seed: int) -> list[FamilyRecipe]:
    """Base, fine-tune and unrelated model of one family (ids ``<name>-lab/tiny-<name>`` ...)."""
    base = f"{name}-lab/tiny-{name}"
    return [
        FamilyRecipe(base, model_type, "root", seed=seed, description=f"A tiny {name} pre-trained on code and prose."),
        FamilyRecipe(
            f"{name}-tuners/tiny-{name}-tests",
            model_type,
            "finetune",
            parent=base,
            data=("tests",),
            seed=seed + 1,
            steps=60,
            lr=1e-3,
            description=f"tiny-{name} fine-tuned on test code.",
        ),
        FamilyRecipe(
            f"other-{name}/tiny-{name}-b",
            model_type,
            "root",
            seed=seed + 2,
            description=f"An independent tiny {name}: same data, its own initialisation and batches.",
        ),
    ]


RECIPES: list[FamilyRecipe] = [
    recipe
    for k, (name, model_type) in enumerate(FAMILY_TYPES.items())
    for recipe in family_recipes(name, model_type, 1000 + 10 * k)
]
