"""Zoo B, the held-out zoo: written apart from zoo A and only ever reported, never tuned on.

Nothing is shared with zoo A but the code: other seeds, another corpus slice (``corpus_salt``),
other tokenizer data and domain mixes, other depths and widths (8 layers of width 96 with 6 heads
for "full"), other step counts, learning rates and optimiser settings, and other compositions:

* two independently initialised Llama roots of the same shape (atlas, boreal), a GPT-NeoX and a
  GPT-2 root, and a distilled Llama (fresh initialisation, taught by a fine-tune);
* fine-tune chains four and three generations deep; boreal's fine-tune has more children (4)
  than boreal itself (3);
* composed steps: permute-then-fine-tune, int8 of a fine-tune, rotation of a fine-tune, a 0.6/0.4
  merge of fine-tunes of different generations;
* continued pre-training, merged LoRA, width-pruned + healed, layer-dropped + healed,
  vocabulary-extended + trained, re-initialised MLP;
* an identical re-upload (``copy``: the same tensors in three shards, three weeks later);
* a vocabulary-pruned model (``vocab_prune``: the most used half of the learned pieces the prose
  domain uses, plus specials and byte pieces; bit-identical rows, no training);
* SOLAR-style depth up-scaling (``upscale_depth``: blocks [0, L−m) + [m, L), then trained);
* a passthrough frankenmerge across the two Llama roots' fine-tunes (``frankenmerge``), briefly
  healed at a low learning rate;
* a hidden NeoX fine-tune (built beside the zoo, not served) with two served fine-tunes whose
  truth is ``parents: []`` and ``latent_parent``;
* wrong and missing card declarations.

Creation times: each recipe ``gap_hours`` after the previous one (hours to weeks).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from .spec import ModelRecipe, SizeProfile, ZooSpec
from .training import OptimizerSettings

_PROFILE: dict[str, tuple[Any, Any]] = {  # field: (small, full)
    "hidden": (48, 96),
    "layers": (5, 8),
    "heads": (4, 6),
    "kv_heads": (2, 2),
    "glu_intermediate": (128, 256),
    "gelu_intermediate": (192, 384),
    "vocab_size": (640, 896),
    "max_positions": (128, 192),
    "seq_len": (48, 64),
    "batch": (8, 12),
    "chars_per_domain": (120_000, 500_000),
    "pretrain_steps": (280, 520),
    "finetune_steps": (50, 110),
    "heal_steps": (40, 80),
    "pretrain_lr": (2.5e-3, 1.5e-3),
    "lora_rank": (4, 6),
    "new_tokens": (48, 96),
    "drop": ((1, 3), (3, 6)),
    "reinit_layer": (3, 5),
}
SIZES = {name: SizeProfile(name, **{k: v[i] for k, v in _PROFILE.items()}) for i, name in enumerate(("small", "full"))}
TOKENIZER_DATA = {"llama": ("web", "prose", "tests"), "gpt2": ("async", "code"), "neox": ("tools", "prose")}
OPTIMIZER = OptimizerSettings(
    betas=(0.9, 0.98),
    eps=1e-7,
    weight_decay=0.05,
    clip_norm=0.5,
    warmup_pretrain=0.05,
    warmup_other=0.1,
    min_lr_frac=0.05,
)

R1, R2 = "atlas-ai/atlas-llama-base", "boreal-ml/boreal-llama"
NEOX, GPT2 = "cobalt-lm/cobalt-neox", "dune-nlp/dune-gpt2"
CHAT, CODE = "atlas-ai/atlas-llama-chat", "boreal-ml/boreal-llama-code"
CHAT_TESTS, CODE_TESTS = "helix-labs/atlas-chat-tests", "kiln-ai/boreal-code-tests"
CHAT_WEB = "helix-labs/atlas-chat-tests-web"
SFT = "cobalt-lm/cobalt-neox-sft"  # hidden
LLAMA_MIX = ("prose", "web", "code")


def _root(
    model_id: str, arch: str, data: tuple[str, ...], seed: int, gap: float, op: str = "pretrain", lr: float = 1.0, **kw
) -> ModelRecipe:
    """An independently initialised model, pre-trained (or distilled) for the profile's pre-training steps."""
    return ModelRecipe(model_id, op, "root", arch, (), data, "pretrain", lr, seed=seed, gap_hours=gap, **kw)


def _derived(
    model_id: str, op: str, relation: str, parents: tuple[str, ...], seed: int, gap: float, **kw
) -> ModelRecipe:
    """A derived model; its card declares its parents (a merge) or parent and ``finetune`` unless told."""
    kw.setdefault("arch", "llama")
    kw.setdefault("declared_base", parents if len(parents) > 1 else parents[0])
    kw.setdefault("declared_relation", "finetune")
    return ModelRecipe(model_id, op, relation, parents=parents, seed=seed, gap_hours=gap, **kw)


def _ft(model_id: str, parent: str, data: tuple[str, ...], seed: int, gap: float, lr: float = 0.2, **kw) -> ModelRecipe:
    """A fine-tune (``steps`` "finetune" unless told) of ``parent`` on ``data`` at ``lr`` × the peak LR."""
    kw.setdefault("steps", "finetune")
    return _derived(model_id, "finetune", "finetune", (parent,), seed, gap, data=data, lr_scale=lr, **kw)


_MISSING: dict[str, Any] = {"declared_base": None, "declared_relation": None, "declaration": "missing"}

ZOO: tuple[ModelRecipe, ...] = (
    _root(R1, "llama", LLAMA_MIX, 1101, 0, data_seed=2101, dtype="bfloat16", description="Llama-style base model."),
    _root(R2, "llama", LLAMA_MIX, 1202, 77, data_seed=2202, shards=2, description="Another Llama base, same shape."),
    _root(GPT2, "gpt2", ("async", "code", "tests"), 1404, 19, description="GPT-2-style base model."),
    _root(NEOX, "gpt_neox", ("tools", "prose", "async"), 1303, 260, dtype="float16", description="NeoX base model."),
    _ft(CHAT, R1, ("prose", "tools"), 1111, 150, 0.25, dtype="bfloat16", description="Tuned on docs and tools."),
    _ft(CODE, R2, ("code",), 1211, 4, 0.25, description="Tuned on library code."),
    _ft(CHAT_TESTS, CHAT, ("tests",), 1112, 36, dtype="float16", description="Tuned further on tests."),
    _root(
        "tutor-ai/atlas-student",
        "llama",
        ("prose", "tools", "web"),
        1505,
        192,
        op="distill",
        lr=1.2,
        teacher=CHAT,
        dtype="bfloat16",
        declared_base=CHAT,
        declared_relation="finetune",
        declaration="wrong",
        description="Fresh initialisation trained on the soft targets of atlas-llama-chat.",
    ),
    _ft(CODE_TESTS, CODE, ("tests",), 1212, 2.5, dtype="bfloat16", description="Tuned on test code."),
    _ft("dune-nlp/dune-gpt2-tests", GPT2, ("tests",), 1411, 60, arch="gpt2", description="GPT-2 tuned on tests."),
    _ft(SFT, NEOX, ("code",), 1311, 30, 0.25, arch="gpt_neox", dtype="float16", hidden=True, description="Private."),
    _ft(CHAT_WEB, CHAT_TESTS, ("web",), 1113, 336, dtype="bfloat16", description="Tuned further on web code."),
    _derived(
        "adapterhub-b/atlas-lora-web",
        "lora",
        "adapter",
        (R1,),
        1121,
        20,
        data=("web",),
        steps="finetune",
        lr_scale=0.6,
        declared_relation="adapter",
        description="LoRA on every projection, merged.",
    ),
    _derived(
        "quarry/atlas-chat-tests-int8",
        "quantize",
        "quantized",
        (CHAT_TESTS,),
        1131,
        9,
        dtype="float16",
        declared_relation="quantized",
        description="Per-row absmax int8 weights, dequantised.",
    ),
    _derived(
        "stackers/boreal-code-solar",
        "upscale_depth",
        "upscaled",
        (CODE,),
        1221,
        120,
        data=("code", "web"),
        steps="finetune",
        lr_scale=0.3,
        shards=2,
        description="Depth up-scaled (two overlapping copies of the blocks), then trained.",
    ),
    _ft("forkwise/cobalt-sft-tests", SFT, ("tests",), 1321, 48, arch="gpt_neox", dtype="float16", description="NeoX."),
    _derived(
        "spinlab/atlas-chat-spin",
        "transform",
        "rotated",
        (CHAT,),
        1141,
        7,
        shards=2,
        kinds=("residual_rotation",),
        **_MISSING,
        description="A small code model.",
    ),
    _derived(
        "shuffle-ai/dune-gpt2-remix-web",
        "transform",
        "finetune",
        (GPT2,),
        1421,
        72,
        arch="gpt2",
        data=("web",),
        steps="finetune",
        lr_scale=0.2,
        kinds=("residual_permutation", "head_permutation", "mlp_permutation"),
        **_MISSING,
        description="A small web-code model.",
    ),
    _ft("ridge-ml/cobalt-sft-web", SFT, ("web",), 1322, 11, arch="gpt_neox", **_MISSING, description="NeoX, web."),
    _ft(
        "kiln-ai/boreal-code-tests-async",
        CODE_TESTS,
        ("async",),
        1213,
        40,
        dtype="bfloat16",
        declared_base=R2,
        declaration="wrong",
        description="Tuned on asyncio code.",
    ),
    _derived(
        "slim-ai/boreal-code-width-pruned",
        "prune_width",
        "pruned",
        (CODE,),
        1231,
        144,
        data=("code",),
        steps="heal",
        lr_scale=0.3,
        dtype="bfloat16",
        declared_base=R2,
        declaration="wrong",
        description="Half of every MLP's units removed, then healed.",
    ),
    _ft(
        "longhaul/atlas-llama-cpt",
        R1,
        ("tests", "async", "tools", "code"),
        1151,
        16,
        1.2,
        steps="pretrain",
        dtype="bfloat16",
        shards=2,
        description="Continued pre-training on a shifted mix, as long as pre-training.",
    ),
    _derived(
        "sponge-ai/atlas-soup",
        "merge",
        "merge",
        (CHAT, CHAT_WEB),
        1161,
        48,
        merge_weights=(0.6, 0.4),
        declared_relation="merge",
        description="0.6 / 0.4 weight average of two fine-tunes.",
    ),
    _derived(
        "slim-ai/boreal-llama-depth-pruned",
        "drop_layers",
        "pruned",
        (R2,),
        1241,
        13,
        data=LLAMA_MIX,
        steps="heal",
        lr_scale=0.3,
        description="Two blocks removed, then healed.",
    ),
    _ft("cobalt-lm/cobalt-neox-web", NEOX, ("web",), 1331, 96, 0.25, arch="gpt_neox", dtype="float16"),
    _ft("helix-labs/atlas-chat-tests-web-async", CHAT_WEB, ("async",), 1114, 216, 0.15, dtype="bfloat16"),
    _derived(
        "frankenlab/atlas-boreal-passthrough",
        "frankenmerge",
        "merge",
        (CHAT, CODE),
        1171,
        30,
        data=("prose", "code"),
        steps="heal",
        lr_scale=0.05,
        declared_relation="merge",
        description="Passthrough merge: blocks of atlas-llama-chat and boreal-llama-code, briefly healed.",
    ),
    _derived(
        "surgery-b/boreal-llama-mlp-reinit",
        "reinit_mlp",
        "finetune",
        (R2,),
        1251,
        3,
        data=("prose", "code"),
        steps="finetune",
        lr_scale=0.3,
        dtype="float16",
        description="One block's MLP re-initialised, then trained.",
    ),
    _derived(
        "vocabplus-b/cobalt-neox-tests-ext",
        "vocab_extend",
        "vocab_extended",
        (NEOX,),
        1341,
        336,
        arch="gpt_neox",
        data=("tests",),
        steps="finetune",
        lr_scale=0.35,
        description="Tokenizer extended with frequent test-code words, then trained.",
    ),
    _derived(
        "trim-ai/atlas-llama-prose-vocab",
        "vocab_prune",
        "vocab_pruned",
        (R1,),
        1191,
        240,
        data=("prose",),
        dtype="bfloat16",
        declared_relation=None,
        description="Vocabulary trimmed to the most used half of the pieces English prose needs.",
    ),
    _derived("copyhub/atlas-llama-base", "copy", "copy", (R1,), 1181, 504, dtype="bfloat16", shards=3, **_MISSING),
)

ZOO_B = ZooSpec(
    "b",
    ZOO,
    SIZES,
    TOKENIZER_DATA,
    datetime(2024, 7, 15, 9, 0, tzinfo=UTC),
    corpus_salt="zoo-b",
    optimizer=OPTIMIZER,
)
