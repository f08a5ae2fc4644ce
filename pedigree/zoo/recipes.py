"""The zoo, declaratively: sizes for "small" and "full" and the one model graph both share.

Each ``ModelRecipe`` names a model (``ORG/NAME``), how it is made (``op``), its true parents and
relation, its training data (stdlib domains, see ``corpus``), storage dtype and sharding, and what
its model card *declares* (``declared_base``/``declared_relation``) — deliberately missing or
wrong for a few models, as recorded by ``declaration``.  Step counts and learning rates are given
relative to the size profile (``steps``: "pretrain" | "finetune" | "heal"; ``lr_scale`` × the
profile's peak pre-training LR), so both sizes build the same graph.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from .architectures import Dims

TOKENIZER_OF = {"llama": "llama", "qwen2": "qwen2", "gpt2": "gpt2", "gpt_neox": "neox", "bert": "bert"}
TOKENIZER_DATA = {
    "llama": ("code", "prose"),
    "qwen2": ("web", "prose", "tools"),
    "gpt2": ("code", "tests"),
    "neox": ("prose", "async"),
    "bert": ("prose", "code"),
}
RELATIONS = ("root", "finetune", "adapter", "merge", "quantized", "pruned", "vocab_extended", "permuted", "rotated")


@dataclass(frozen=True)
class SizeProfile:
    """Model sizes, data and step budgets of one zoo size."""

    name: str
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    glu_intermediate: int
    gelu_intermediate: int
    vocab_size: int
    max_positions: int
    seq_len: int
    batch: int
    chars_per_domain: int
    pretrain_steps: int
    finetune_steps: int
    heal_steps: int
    pretrain_lr: float
    lora_rank: int
    new_tokens: int
    drop: tuple[int, ...]
    reinit_layer: int

    def dims(self, model_type: str) -> Dims:
        glu = model_type in ("llama", "qwen2")
        return Dims(
            hidden=self.hidden,
            layers=self.layers,
            heads=self.heads,
            intermediate=self.glu_intermediate if glu else self.gelu_intermediate,
            kv_heads=self.kv_heads if glu else 0,
            max_positions=self.max_positions,
            rotary_pct=0.25 if self.name == "full" else 0.5,
        )

    def steps(self, key: str) -> int:
        return {"pretrain": self.pretrain_steps, "finetune": self.finetune_steps, "heal": self.heal_steps, "none": 0}[
            key
        ]


SIZES = {
    "small": SizeProfile(
        "small",
        hidden=64,
        layers=4,
        heads=4,
        kv_heads=2,
        glu_intermediate=176,
        gelu_intermediate=256,
        vocab_size=512,
        max_positions=128,
        seq_len=64,
        batch=8,
        chars_per_domain=150_000,
        pretrain_steps=300,
        finetune_steps=60,
        heal_steps=60,
        pretrain_lr=3e-3,
        lora_rank=4,
        new_tokens=64,
        drop=(1, 2),
        reinit_layer=2,
    ),
    "full": SizeProfile(
        "full",
        hidden=128,
        layers=6,
        heads=4,
        kv_heads=2,
        glu_intermediate=344,
        gelu_intermediate=512,
        vocab_size=1024,
        max_positions=256,
        seq_len=64,
        batch=16,
        chars_per_domain=600_000,
        pretrain_steps=500,
        finetune_steps=120,
        heal_steps=120,
        pretrain_lr=2e-3,
        lora_rank=8,
        new_tokens=128,
        drop=(2, 4),
        reinit_layer=3,
    ),
}


@dataclass(frozen=True)
class ModelRecipe:
    """One zoo model.  ``op``: pretrain | distill | finetune | lora | transform | quantize | merge |
    drop_layers | prune_width | vocab_extend | reinit_mlp."""

    id: str
    op: str
    relation: str
    arch: str
    parents: tuple[str, ...] = ()
    data: tuple[str, ...] = ()
    steps: str = "none"
    lr_scale: float = 0.0
    seed: int = 0
    data_seed: int | None = None
    dtype: str = "float32"
    shards: int = 1
    teacher: str | None = None
    kinds: tuple[str, ...] = ()
    declared_base: str | tuple[str, ...] | None = None
    declared_relation: str | None = None
    declaration: str = "correct"
    description: str = ""
    tags: tuple[str, ...] = field(default_factory=tuple)


S1, S2 = "llama-lab/tiny-llama-s1", "llama-lab/tiny-llama-s2"
FT_TESTS, FT_WEB = "testsmith/tiny-llama-tests", "webcrafters/tiny-llama-web"
QWEN, GPT2, NEOX, BERT = "qwen-lab/tiny-qwen2", "gpt-lab/tiny-gpt2", "neox-lab/tiny-neox", "bert-lab/tiny-bert"
PRETRAIN_MIX = TOKENIZER_DATA["llama"]

ZOO: tuple[ModelRecipe, ...] = (
    # ---- roots: independent initialisations
    ModelRecipe(
        S1,
        "pretrain",
        "root",
        "llama",
        data=PRETRAIN_MIX,
        steps="pretrain",
        lr_scale=1.0,
        seed=1,
        data_seed=100,
        description="Llama-style base model, seed 1.",
    ),
    ModelRecipe(
        S2,
        "pretrain",
        "root",
        "llama",
        data=PRETRAIN_MIX,
        steps="pretrain",
        lr_scale=1.0,
        seed=2,
        data_seed=100,
        description="Same recipe as tiny-llama-s1; only the initialisation seed differs.",
    ),
    ModelRecipe(
        QWEN,
        "pretrain",
        "root",
        "qwen2",
        data=TOKENIZER_DATA["qwen2"],
        steps="pretrain",
        lr_scale=1.0,
        seed=4,
        dtype="bfloat16",
        description="Qwen2-style base model with its own tokenizer and data mix.",
    ),
    ModelRecipe(
        GPT2,
        "pretrain",
        "root",
        "gpt2",
        data=TOKENIZER_DATA["gpt2"],
        steps="pretrain",
        lr_scale=1.0,
        seed=5,
        description="GPT-2-style base model.",
    ),
    ModelRecipe(
        NEOX,
        "pretrain",
        "root",
        "gpt_neox",
        data=TOKENIZER_DATA["neox"],
        steps="pretrain",
        lr_scale=1.0,
        seed=6,
        dtype="float16",
        description="GPT-NeoX-style base model (parallel residual, partial RoPE).",
    ),
    ModelRecipe(
        BERT,
        "pretrain",
        "root",
        "bert",
        data=TOKENIZER_DATA["bert"],
        steps="pretrain",
        lr_scale=1.0,
        seed=7,
        description="BERT-style masked language model.",
    ),
    ModelRecipe(
        "distill-works/tiny-llama-distilled",
        "distill",
        "root",
        "llama",
        data=PRETRAIN_MIX,
        steps="pretrain",
        lr_scale=1.0,
        seed=3,
        dtype="bfloat16",
        teacher=S1,
        declared_base=S1,
        declared_relation="finetune",
        declaration="wrong",
        description="Fresh initialisation trained on the soft targets of tiny-llama-s1.",
    ),
    # ---- Llama seed-1 family
    ModelRecipe(
        FT_TESTS,
        "finetune",
        "finetune",
        "llama",
        (S1,),
        ("tests",),
        "finetune",
        1 / 6,
        seed=11,
        dtype="bfloat16",
        declared_base=S1,
        declared_relation="finetune",
        description="Fine-tuned on test-suite code.",
    ),
    ModelRecipe(
        "asyncio-fans/tiny-llama-tests-async",
        "finetune",
        "finetune",
        "llama",
        (FT_TESTS,),
        ("async",),
        "finetune",
        1 / 6,
        seed=12,
        dtype="bfloat16",
        declared_base=S1,
        declared_relation="finetune",
        declaration="wrong",
        description="Fine-tuned further on asyncio / concurrency code.",
    ),
    ModelRecipe(
        FT_WEB,
        "finetune",
        "finetune",
        "llama",
        (S1,),
        ("web",),
        "finetune",
        1 / 6,
        seed=13,
        dtype="float16",
        declaration="missing",
        description="Fine-tuned on web / email / xml code.",
    ),
    ModelRecipe(
        "longrun/tiny-llama-cpt",
        "finetune",
        "finetune",
        "llama",
        (S1,),
        ("tests", "web", "async", "tools"),
        "pretrain",
        1.5,
        seed=14,
        dtype="bfloat16",
        shards=2,
        declared_base=S1,
        declared_relation="finetune",
        description="Continued pre-training, as many steps as pre-training, at 1.5x the peak LR, "
        "on a shifted data mix.",
    ),
    ModelRecipe(
        "adapter-forge/tiny-llama-lora-tools",
        "lora",
        "adapter",
        "llama",
        (S1,),
        ("tools",),
        "finetune",
        2 / 3,
        seed=15,
        declared_base=S1,
        declared_relation="adapter",
        description="LoRA on all attention and MLP projections, merged into the weights.",
    ),
    ModelRecipe(
        "mirror-models/tiny-llama-remix",
        "transform",
        "permuted",
        "llama",
        (S1,),
        seed=16,
        kinds=("residual_permutation", "head_permutation", "mlp_permutation", "mlp_rescale"),
        declaration="missing",
        description="A small code model.",
    ),
    ModelRecipe(
        "mirror-models/tiny-llama-spin",
        "transform",
        "rotated",
        "llama",
        (S1,),
        seed=17,
        shards=2,
        kinds=("residual_rotation",),
        declaration="missing",
        description="A small code model.",
    ),
    ModelRecipe(
        "quantfolk/tiny-llama-int8",
        "quantize",
        "quantized",
        "llama",
        (S1,),
        seed=18,
        dtype="float16",
        declared_base=S1,
        declared_relation="quantized",
        description="Per-row absmax int8 weights, dequantised.",
    ),
    ModelRecipe(
        "soup-kitchen/tiny-llama-merge",
        "merge",
        "merge",
        "llama",
        (FT_TESTS, FT_WEB),
        seed=19,
        dtype="bfloat16",
        declared_base=(FT_TESTS, FT_WEB),
        declared_relation="merge",
        description="Uniform weight average of two fine-tunes.",
    ),
    ModelRecipe(
        "slimming/tiny-llama-depth-pruned",
        "drop_layers",
        "pruned",
        "llama",
        (S1,),
        PRETRAIN_MIX,
        "heal",
        1 / 3,
        seed=20,
        declared_base=S1,
        declared_relation="finetune",
        description="Two blocks removed, then healed by short training.",
    ),
    ModelRecipe(
        "slimming/tiny-llama-width-pruned",
        "prune_width",
        "pruned",
        "llama",
        (S1,),
        PRETRAIN_MIX,
        "heal",
        1 / 3,
        seed=21,
        dtype="bfloat16",
        declared_base=S1,
        declared_relation="finetune",
        description="Half of every MLP's units removed (largest norms kept), then healed.",
    ),
    ModelRecipe(
        "vocab-plus/tiny-llama-vocab-ext",
        "vocab_extend",
        "vocab_extended",
        "llama",
        (S1,),
        ("web",),
        "finetune",
        1 / 3,
        seed=22,
        declared_base=S1,
        declared_relation="finetune",
        description="Tokenizer extended with frequent web-code words, then trained.",
    ),
    ModelRecipe(
        "surgery/tiny-llama-mlp-reinit",
        "reinit_mlp",
        "finetune",
        "llama",
        (S1,),
        PRETRAIN_MIX,
        "finetune",
        1 / 3,
        seed=23,
        dtype="float16",
        declared_base=S1,
        declared_relation="finetune",
        description="One block's MLP re-initialised, then trained.",
    ),
    # ---- other families
    ModelRecipe(
        "copycat/tiny-llama-s2-tests",
        "finetune",
        "finetune",
        "llama",
        (S2,),
        ("tests",),
        "finetune",
        1 / 6,
        seed=24,
        dtype="bfloat16",
        declared_base=S1,
        declared_relation="finetune",
        declaration="wrong",
        description="Fine-tuned on test-suite code.",
    ),
    ModelRecipe(
        "qwen-lab/tiny-qwen2-code",
        "finetune",
        "finetune",
        "qwen2",
        (QWEN,),
        ("code",),
        "finetune",
        1 / 6,
        seed=25,
        dtype="bfloat16",
        declared_base=QWEN,
        declared_relation="finetune",
        description="Qwen2 fine-tuned on general library code.",
    ),
    ModelRecipe(
        "gpt-lab/tiny-gpt2-web",
        "finetune",
        "finetune",
        "gpt2",
        (GPT2,),
        ("web",),
        "finetune",
        1 / 6,
        seed=26,
        declared_base=GPT2,
        declared_relation="finetune",
        description="GPT-2 fine-tuned on web code.",
    ),
    ModelRecipe(
        "neox-lab/tiny-neox-tests",
        "finetune",
        "finetune",
        "gpt_neox",
        (NEOX,),
        ("tests",),
        "finetune",
        1 / 6,
        seed=27,
        dtype="float16",
        declared_base=NEOX,
        declared_relation="finetune",
        description="NeoX fine-tuned on test-suite code.",
    ),
    ModelRecipe(
        "bert-lab/tiny-bert-tests",
        "finetune",
        "finetune",
        "bert",
        (BERT,),
        ("tests",),
        "finetune",
        1 / 6,
        seed=28,
        declared_base=BERT,
        declared_relation="finetune",
        description="BERT fine-tuned (MLM) on tests.",
    ),
    ModelRecipe(
        "mirror-models/tiny-gpt2-remix",
        "transform",
        "permuted",
        "gpt2",
        (GPT2,),
        seed=29,
        kinds=("residual_permutation", "head_permutation", "mlp_permutation"),
        declaration="missing",
        description="A small code model.",
    ),
    ModelRecipe(
        "mirror-models/tiny-neox-remix",
        "transform",
        "permuted",
        "gpt_neox",
        (NEOX,),
        seed=30,
        kinds=("residual_permutation", "norm_gains", "head_permutation", "mlp_permutation", "vo_maps", "qk_maps"),
        declaration="missing",
        description="A small code model.",
    ),
)


def recipe_payload(size: str) -> dict:
    """Everything that determines the zoo's content for ``size`` (hashed for the cache)."""
    return {"size": asdict(SIZES[size]), "models": [asdict(r) for r in ZOO]}
