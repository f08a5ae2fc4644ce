"""Zoo C, a second held-out zoo: written after zoo B's error list was read, before any rule that list
informed was measured on it - so that such rules still meet models nothing was tuned on.

Nothing is shared with zoo A or zoo B but the code: other seeds, another corpus slice
(``corpus_salt``), other tokenizer data, other shapes (6 layers of width 64, 4 heads, for "small"),
other step counts, learning rates and optimiser settings (no weight decay; β₂ 0.99), and other
compositions:

* three independently initialised roots: a Qwen2 (ember), two Llamas of one shape (fjord, haze), a
  GPT-2 (gale); a distilled Llama (fresh initialisation taught by a fine-tune);
* fine-tune chains four generations deep (ember: base → instruct → code → tests; fjord: base → code
  → async → tools) with siblings at several generations; fjord's fine-tune has three children;
* composed steps: int8 of a generation-2 fine-tune, a rotation of a generation-3 fine-tune,
  permute-then-fine-tune on GPT-2, a 0.5 / 0.5 merge of a generation-1 and a generation-2 fine-tune;
* continued pre-training of a root, merged LoRA on a fine-tune, layer-dropped + healed, width-
  pruned + healed, vocabulary-extended + trained, depth up-scaled + trained;
* an identical re-upload of a generation-2 fine-tune; a vocabulary-pruned Qwen2 model;
* a passthrough frankenmerge of the two Llama families' fine-tunes, healed;
* a hidden fjord fine-tune (not served) with two served fine-tunes (latent parent);
* wrong and missing card declarations.

Creation times: each recipe ``gap_hours`` after the previous one.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from .recipes_b import _derived, _root
from .spec import ModelRecipe, SizeProfile, ZooSpec
from .training import OptimizerSettings

_PROFILE: dict[str, tuple[Any, Any]] = {  # field: (small, full)
    "hidden": (64, 112),
    "layers": (6, 7),
    "heads": (4, 4),
    "kv_heads": (2, 2),
    "glu_intermediate": (160, 288),
    "gelu_intermediate": (224, 416),
    "vocab_size": (704, 960),
    "max_positions": (128, 192),
    "seq_len": (56, 64),
    "batch": (8, 10),
    "chars_per_domain": (140_000, 450_000),
    "pretrain_steps": (320, 480),
    "finetune_steps": (70, 100),
    "heal_steps": (50, 70),
    "pretrain_lr": (2e-3, 1.2e-3),
    "lora_rank": (3, 5),
    "new_tokens": (40, 80),
    "drop": ((2, 4), (2, 5)),
    "reinit_layer": (2, 4),
}
SIZES = {name: SizeProfile(name, **{k: v[i] for k, v in _PROFILE.items()}) for i, name in enumerate(("small", "full"))}
TOKENIZER_DATA = {
    "qwen2": ("tools", "web", "prose"),
    "llama": ("code", "prose", "async"),
    "gpt2": ("tests", "web"),
}
OPTIMIZER = OptimizerSettings(
    betas=(0.85, 0.99),
    eps=1e-8,
    weight_decay=0.0,
    clip_norm=2.0,
    warmup_pretrain=0.15,
    warmup_other=0.0,
    min_lr_frac=0.2,
)

EMBER, FJORD, HAZE, GALE = "ember-ai/ember-qwen", "fjord-lm/fjord-llama", "haze-ml/haze-llama", "gale-nlp/gale-gpt2"
INSTRUCT, INSTRUCT_CODE = "ember-ai/ember-instruct", "tarn-labs/ember-instruct-code"
FJ_CODE, FJ_ASYNC = "fjord-lm/fjord-code", "weir-ai/fjord-code-async"
FJ_PRIVATE = "fjord-lm/fjord-private"  # hidden
HAZE_CHAT, GALE_TESTS = "haze-ml/haze-chat", "gale-nlp/gale-tests"


def _ft(model_id: str, parent: str, data: tuple[str, ...], seed: int, gap: float, lr: float = 0.3, **kw) -> ModelRecipe:
    """A fine-tune, as zoo B's ``_ft`` but 0.3 × the peak LR unless told."""
    kw.setdefault("steps", "finetune")
    return _derived(model_id, "finetune", "finetune", (parent,), seed, gap, data=data, lr_scale=lr, **kw)


_MISSING: dict[str, Any] = {"declared_base": None, "declared_relation": None, "declaration": "missing"}
Q = {"arch": "qwen2"}

ZOO: tuple[ModelRecipe, ...] = (
    _root(FJORD, "llama", ("code", "prose", "async"), 3101, 0, data_seed=4101, description="Llama base."),
    _root(EMBER, "qwen2", ("tools", "web", "prose"), 3201, 30, data_seed=4201, dtype="bfloat16", description="Qwen2."),
    _root(GALE, "gpt2", ("tests", "web", "code"), 3301, 12, description="GPT-2 base."),
    _root(HAZE, "llama", ("prose", "web", "tools"), 3401, 90, data_seed=4401, shards=2, description="Llama base 2."),
    _ft(INSTRUCT, EMBER, ("prose", "tools"), 3211, 20, 0.35, **Q, description="Instruction-style tune."),
    _ft(FJ_CODE, FJORD, ("code",), 3111, 8, 0.3, dtype="bfloat16", description="Tuned on library code."),
    _ft("ember-ai/ember-web", EMBER, ("web",), 3212, 50, 0.3, **Q, description="Tuned on web code."),
    _ft(INSTRUCT_CODE, INSTRUCT, ("code",), 3213, 70, 0.3, **Q, description="Instruct, then code."),
    _ft(FJ_ASYNC, FJ_CODE, ("async",), 3112, 26, 0.25, description="Code, then asyncio."),
    _ft(FJ_PRIVATE, FJORD, ("tests", "web"), 3113, 15, 0.3, hidden=True, description="Private."),
    _ft(HAZE_CHAT, HAZE, ("prose", "tools"), 3411, 40, 0.3, description="Haze, chat-style."),
    _ft(GALE_TESTS, GALE, ("tests",), 3311, 33, 0.3, arch="gpt2", description="GPT-2 tuned on tests."),
    _ft(
        "tarn-labs/ember-instruct-code-tests",
        INSTRUCT_CODE,
        ("tests",),
        3214,
        120,
        0.25,
        **Q,
        declared_base=EMBER,
        declaration="wrong",
        description="Three generations of tuning.",
    ),
    _ft("weir-ai/fjord-code-async-tools", FJ_ASYNC, ("tools",), 3114, 60, 0.2, description="Fourth generation."),
    _ft("quay-ml/fjord-code-web", FJ_CODE, ("web",), 3115, 5, 0.3, **_MISSING, description="Code, then web."),
    _ft("quay-ml/fjord-code-tests", FJ_CODE, ("tests",), 3116, 44, 0.3, dtype="bfloat16", description="Code+tests."),
    _ft("sedge-ai/fjord-private-tests", FJ_PRIVATE, ("tests",), 3117, 10, 0.3, description="From a private tune."),
    _ft("sedge-ai/fjord-private-web", FJ_PRIVATE, ("web", "async"), 3118, 18, 0.3, **_MISSING, description="Web."),
    _ft("gale-nlp/gale-tests-web", GALE_TESTS, ("web",), 3312, 25, 0.25, arch="gpt2", description="Tests, then web."),
    _derived(
        "mixer-c/gale-remix",
        "transform",
        "finetune",
        (GALE_TESTS,),
        3321,
        30,
        arch="gpt2",
        data=("code",),
        steps="finetune",
        lr_scale=0.25,
        kinds=("residual_permutation", "mlp_permutation"),
        **_MISSING,
        description="A small code model.",
    ),
    _derived(
        "pack-ai/ember-instruct-code-int8",
        "quantize",
        "quantized",
        (INSTRUCT_CODE,),
        3221,
        6,
        **Q,
        declared_relation="quantized",
        description="Per-row absmax int8, dequantised.",
    ),
    _derived(
        "turn-ai/ember-instruct-code-tests-rot",
        "transform",
        "rotated",
        ("tarn-labs/ember-instruct-code-tests",),
        3222,
        14,
        **Q,
        kinds=("residual_rotation",),
        **_MISSING,
        description="A small model.",
    ),
    _derived(
        "blend-c/ember-soup",
        "merge",
        "merge",
        ("ember-ai/ember-web", INSTRUCT_CODE),
        3231,
        28,
        **Q,
        merge_weights=(0.5, 0.5),
        declared_relation="merge",
        description="Even average of two tunes of different generations.",
    ),
    _derived(
        "patch-c/fjord-code-lora-tests",
        "lora",
        "adapter",
        (FJ_CODE,),
        3121,
        36,
        data=("tests",),
        steps="finetune",
        lr_scale=0.5,
        declared_relation="adapter",
        description="LoRA on every projection, merged.",
    ),
    _ft(
        "longrun-c/haze-llama-cpt",
        HAZE,
        ("code", "async", "tests"),
        3421,
        22,
        1.0,
        steps="pretrain",
        description="Continued pre-training on code, as long as pre-training.",
    ),
    _derived(
        "slim-c/fjord-code-drop",
        "drop_layers",
        "pruned",
        (FJ_CODE,),
        3131,
        9,
        data=("code",),
        steps="heal",
        lr_scale=0.25,
        description="Two blocks removed, then healed.",
    ),
    _derived(
        "slim-c/haze-chat-narrow",
        "prune_width",
        "pruned",
        (HAZE_CHAT,),
        3431,
        17,
        data=("prose",),
        steps="heal",
        lr_scale=0.25,
        declared_base=HAZE,
        declaration="wrong",
        description="MLPs halved, then healed.",
    ),
    _derived(
        "grow-c/gale-tests-vocab",
        "vocab_extend",
        "vocab_extended",
        (GALE_TESTS,),
        3331,
        66,
        arch="gpt2",
        data=("tests",),
        steps="finetune",
        lr_scale=0.3,
        description="Tokenizer extended with test words, then trained.",
    ),
    _derived(
        "stack-c/fjord-async-deep",
        "upscale_depth",
        "upscaled",
        (FJ_ASYNC,),
        3141,
        48,
        data=("async", "code"),
        steps="finetune",
        lr_scale=0.25,
        description="Depth up-scaled, then trained.",
    ),
    _derived(
        "stitch-c/fjord-haze-passthrough",
        "frankenmerge",
        "merge",
        ("quay-ml/fjord-code-web", HAZE_CHAT),
        3151,
        12,
        data=("web", "prose"),
        steps="heal",
        lr_scale=0.05,
        declared_relation="merge",
        description="Passthrough merge of two Llama families' tunes, briefly healed.",
    ),
    _root(
        "tutor-c/haze-student",
        "llama",
        ("prose", "web", "tools"),
        3501,
        72,
        op="distill",
        lr=1.1,
        teacher=HAZE_CHAT,
        declared_base=HAZE_CHAT,
        declared_relation="finetune",
        declaration="wrong",
        description="Fresh initialisation trained on haze-chat's soft targets.",
    ),
    _derived(
        "trim-c/ember-vocab-web",
        "vocab_prune",
        "vocab_pruned",
        (EMBER,),
        3241,
        100,
        **Q,
        data=("web",),
        dtype="bfloat16",
        declared_relation=None,
        description="Vocabulary trimmed to the pieces web code uses most.",
    ),
    _derived("mirror-c/fjord-code-async", "copy", "copy", (FJ_ASYNC,), 3161, 300, shards=2, **_MISSING),
)

ZOO_C = ZooSpec(
    "c",
    ZOO,
    SIZES,
    TOKENIZER_DATA,
    datetime(2025, 2, 3, 14, 0, tzinfo=UTC),
    corpus_salt="zoo-c",
    optimizer=OPTIMIZER,
)


def build_zoo_c(out_dir: Path, size: Literal["small", "full"], *, workers: int | None = None) -> dict:
    """Build (or reuse) zoo C (``build_extra``: its own cache key, so zoo A and B are not rebuilt)."""
    from .build_extra import build_extra_zoo

    return build_extra_zoo(ZOO_C, out_dir, size, workers)


if __name__ == "__main__":  # python -m pedigree.zoo.recipes_c OUT [small|full]
    import sys

    manifest = build_zoo_c(Path(sys.argv[1]), sys.argv[2] if len(sys.argv) > 2 else "small")  # type: ignore[arg-type]
    print(f"zoo C at {sys.argv[1]}: {len(manifest['models'])} models in {manifest['build_seconds']} s")
