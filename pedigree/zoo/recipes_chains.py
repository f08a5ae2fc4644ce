"""The chains zoo: a *development* zoo (like zoo A: rules may be set on it) of fine-tune chains and
siblings, for the lineage geometry that tells a child from a sibling.

Zoo A has a single true fine-tune chain (s1 → tests → tests-async), too little to set a rule on.
Here two optimiser regimes (zoo A's AdamW with weight decay 0.1, and AdamW without weight decay)
each hold a Llama family with chains up to four generations deep, children on the same data as
their parent and on other data, child steps larger and smaller than the parent's, and siblings at
every generation; the regime without decay also has a GPT-2 family.  Shapes and steps are zoo A's
"small" profile.  Built by :func:`build_chains_zoo` (own cache key: zoo A and B are not rebuilt).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

from .recipes import SIZES
from .spec import ModelRecipe, ZooSpec
from .training import OptimizerSettings

TOKENIZER_DATA = {"llama": ("code", "prose", "web"), "gpt2": ("code", "tests", "async")}


def _family(prefix: str, arch: str, seed: int) -> tuple[ModelRecipe, ...]:
    """A root and its fine-tunes: (name, parent, data, lr_scale) rows, parents first."""
    root = f"{prefix}/root"
    rows = (
        ("a", "root", ("prose",), 0.3),
        ("b", "root", ("code",), 0.2),
        ("c", "root", ("tests",), 0.6),
        ("d", "root", ("web",), 0.3),
        ("a-a", "a", ("prose",), 0.3),  # same data as the parent
        ("a-b", "a", ("code",), 0.5),  # other data, a larger step
        ("a-c", "a", ("prose", "web"), 0.15),  # overlapping data, a smaller step
        ("b-a", "b", ("code",), 0.4),
        ("b-b", "b", ("async",), 0.2),
        ("c-a", "c", ("tests",), 0.1),
        ("a-a-a", "a-a", ("tools",), 0.2),
        ("a-a-b", "a-a", ("prose",), 0.3),
        ("b-a-a", "b-a", ("tests",), 0.3),
        ("a-a-a-a", "a-a-a", ("tools", "web"), 0.25),
    )
    out = [
        ModelRecipe(
            root, "pretrain", "root", arch, data=TOKENIZER_DATA[arch], steps="pretrain", lr_scale=1.0, seed=seed
        )
    ]
    for k, (name, parent, data, lr) in enumerate(rows, start=1):
        parent_id = root if parent == "root" else f"{prefix}/{parent}"
        out.append(
            ModelRecipe(
                f"{prefix}/{name}",
                "finetune",
                "finetune",
                arch,
                parents=(parent_id,),
                data=data,
                steps="finetune",
                lr_scale=lr,
                seed=seed + k,
                declared_base=parent_id,
                declared_relation="finetune",
            )
        )
    return tuple(out)


def _spec(name: str, recipes: tuple[ModelRecipe, ...], optimizer: OptimizerSettings) -> ZooSpec:
    base = datetime(2024, 9, 1, tzinfo=UTC)
    return ZooSpec(
        name, recipes, SIZES, TOKENIZER_DATA, base, spacing=timedelta(hours=7), corpus_salt=name, optimizer=optimizer
    )


CHAINS = {
    "chains-decay": _spec("chains-decay", _family("decay-llama", "llama", 7100), OptimizerSettings()),
    "chains-nodecay": _spec(
        "chains-nodecay",
        _family("nodecay-llama", "llama", 7200) + _family("nodecay-gpt2", "gpt2", 7300),
        OptimizerSettings(betas=(0.9, 0.999), weight_decay=0.0),
    ),
}


def build_chains_zoo(out_dir: Path, name: str, size: Literal["small", "full"] = "small") -> dict:
    """Build (or reuse) one regime of the chains zoo (``build_extra``: zoo A and B are not rebuilt)."""
    from .build_extra import build_extra_zoo

    return build_extra_zoo(CHAINS[name], out_dir, size)


if __name__ == "__main__":  # python -m pedigree.zoo.recipes_chains OUT_PARENT
    import sys

    for regime in CHAINS:
        manifest = build_chains_zoo(Path(sys.argv[1]) / regime, regime)
        print(f"{regime}: {len(manifest['models'])} models in {manifest['build_seconds']} s")
