"""The merges zoo: a *development* zoo (rules may be set on it, like zoo A and the chains zoo) of
merges among relatives - what a passthrough (frankenmerge) or weight-average merge meets on the Hub,
where the models it took blocks from have fine-tunes, layer-dropped and merged relatives of their own.

Two independently pre-trained Llama roots P and Q, eight blocks deep (so a passthrough merge of two
parents has ten), each with fine-tunes and a chain; a layer-dropped (healed) copy of a root and of a
fine-tune, whose kept blocks are near copies of blocks a frankenmerge also took; two frankenmerges
across the families (one healed, one not), an identical re-upload and a fine-tune of a frankenmerge, and a
weight average of two fine-tunes.  Built by :func:`build_merges_zoo` (own cache key: zoo A and B are not rebuilt).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from .recipes import SIZES
from .spec import ModelRecipe, ZooSpec

TOKENIZER_DATA = {"llama": ("prose", "code", "web")}
MERGES_SIZES = {"small": replace(SIZES["small"], layers=8, drop=(3, 6))}
P, Q = "merges-p/root", "merges-q/root"


def _root(model_id: str, seed: int) -> ModelRecipe:
    return ModelRecipe(
        model_id, "pretrain", "root", "llama", data=TOKENIZER_DATA["llama"], steps="pretrain", lr_scale=1.0, seed=seed
    )


def _derived(model_id: str, op: str, relation: str, parents: tuple[str, ...], seed: int, **kw) -> ModelRecipe:
    kw.setdefault("declared_base", parents if len(parents) > 1 else parents[0])
    kw.setdefault("declared_relation", "merge" if relation == "merge" else "finetune")
    return ModelRecipe(model_id, op, relation, "llama", parents=parents, seed=seed, **kw)


def _ft(model_id: str, parent: str, data: tuple[str, ...], seed: int, lr: float) -> ModelRecipe:
    return _derived(model_id, "finetune", "finetune", (parent,), seed, data=data, steps="finetune", lr_scale=lr)


RECIPES: tuple[ModelRecipe, ...] = (
    _root(P, 7501),
    _root(Q, 7601),
    _ft("merges-p/a", P, ("prose",), 7511, 0.3),
    _ft("merges-p/b", P, ("code",), 7512, 0.25),
    _ft("merges-q/a", Q, ("code",), 7611, 0.3),
    _ft("merges-q/b", Q, ("web",), 7612, 0.2),
    _ft("merges-q/a-a", "merges-q/a", ("tests",), 7613, 0.2),
    _derived(
        "merges-q/root-dropped",
        "drop_layers",
        "pruned",
        (Q,),
        7621,
        data=TOKENIZER_DATA["llama"],
        steps="heal",
        lr_scale=0.3,
    ),
    _derived(
        "merges-p/a-dropped",
        "drop_layers",
        "pruned",
        ("merges-p/a",),
        7521,
        data=("prose",),
        steps="heal",
        lr_scale=0.2,
    ),
    _derived(
        "merges-x/pa-qa-passthrough",
        "frankenmerge",
        "merge",
        ("merges-p/a", "merges-q/a"),
        7701,
        data=("prose", "code"),
        steps="heal",
        lr_scale=0.05,
    ),
    _derived("merges-x/qb-pb-passthrough", "frankenmerge", "merge", ("merges-q/b", "merges-p/b"), 7702),
    _ft("merges-x/pa-qa-passthrough-web", "merges-x/pa-qa-passthrough", ("web",), 7703, 0.2),
    _derived("merges-p/soup", "merge", "merge", ("merges-p/a", "merges-p/b"), 7531),
    _derived("merges-y/pa-qa-passthrough", "copy", "copy", ("merges-x/pa-qa-passthrough",), 7704),
)


def _spec() -> ZooSpec:
    base = datetime(2024, 10, 1, tzinfo=UTC)
    return ZooSpec(
        "merges", RECIPES, MERGES_SIZES, TOKENIZER_DATA, base, spacing=timedelta(hours=9), corpus_salt="merges"
    )


MERGES = _spec()


def build_merges_zoo(out_dir: Path) -> dict:
    """Build (or reuse) the merges zoo (``build_extra``: zoo A and B are not rebuilt)."""
    from .build_extra import build_extra_zoo

    return build_extra_zoo(MERGES, out_dir, "small")


if __name__ == "__main__":  # python -m pedigree.zoo.recipes_merges OUT
    import sys

    manifest = build_merges_zoo(Path(sys.argv[1]))
    print(f"merges: {len(manifest['models'])} models in {manifest['build_seconds']} s")
