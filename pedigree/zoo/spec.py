"""The vocabulary of a zoo: size profiles, model recipes, relations, and ``ZooSpec`` (one whole zoo).

A zoo is a ``ZooSpec``: its recipes (listed parents-first), its "small" / "full" size profiles,
the tokenizer data of each family, the corpus slice (``corpus_salt``), the optimiser settings and
the creation-time schedule.  ``recipes`` defines zoo A (the development zoo), ``recipes_b`` zoo B
(held out: reported, never tuned on); ``build.build_zoo`` builds either.

Each ``ModelRecipe`` names a model (``ORG/NAME``), how it is made (``op``), its true parents and
relation, its training data (stdlib domains, see ``corpus``), storage dtype and sharding, and what
its model card *declares* (``declared_base``/``declared_relation``) — deliberately missing or
wrong for a few models, as recorded by ``declaration``.  Step counts and learning rates are given
relative to the size profile (``steps``: "pretrain" | "finetune" | "heal"; ``lr_scale`` × the
profile's peak pre-training LR), so both sizes build the same graph.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timedelta
from functools import cached_property
from pathlib import Path

from .architectures import Dims
from .training import OptimizerSettings

RELATIONS = (
    "root",
    "finetune",
    "adapter",
    "merge",
    "quantized",
    "pruned",
    "vocab_extended",
    "permuted",
    "rotated",
    "copy",
    "vocab_pruned",
    "upscaled",
)
TOKENIZER_OF = {"llama": "llama", "qwen2": "qwen2", "gpt2": "gpt2", "gpt_neox": "neox", "bert": "bert"}


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


@dataclass(frozen=True)
class ModelRecipe:
    """One zoo model.  ``op``: pretrain | distill | finetune | lora | transform | quantize | merge |
    drop_layers | prune_width | vocab_extend | reinit_mlp | copy | vocab_prune | upscale_depth |
    frankenmerge.  Any op followed by ``steps`` other than "none" is then trained (e.g. a
    transform then a fine-tune).  ``hidden`` models are built beside the zoo, never served; their
    children record them as ``latent_parent``.  ``gap_hours``: created this long after the
    previous recipe (zoos without a fixed spacing)."""

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
    # added with zoo B; left out of a recipe payload while at their defaults (zoo A's is unchanged)
    merge_weights: tuple[float, ...] = ()
    hidden: bool = False
    gap_hours: float = 0.0


_LATER_FIELDS = ("merge_weights", "hidden", "gap_hours")


def recipe_fields(r: ModelRecipe) -> dict:
    """The recipe as a dictionary, without the later fields that hold their default."""
    defaults = {f.name: f.default for f in fields(ModelRecipe) if f.name in _LATER_FIELDS}
    return {k: v for k, v in asdict(r).items() if k not in defaults or v != defaults[k]}


@dataclass(frozen=True)
class ZooSpec:
    """One zoo: recipes (parents first), size profiles, and what is shared by all its models."""

    name: str
    recipes: tuple[ModelRecipe, ...]
    sizes: Mapping[str, SizeProfile]
    tokenizer_data: Mapping[str, tuple[str, ...]]
    base_time: datetime
    spacing: timedelta | None = None  # recipe k created k·spacing after base_time; None: gap_hours
    corpus_salt: str = ""
    optimizer: OptimizerSettings = OptimizerSettings()

    @cached_property
    def by_id(self) -> dict[str, ModelRecipe]:
        return {r.id: r for r in self.recipes}

    @property
    def visible(self) -> tuple[ModelRecipe, ...]:
        return tuple(r for r in self.recipes if not r.hidden)

    @property
    def relations(self) -> tuple[str, ...]:
        """The relations this zoo's models have, in ``RELATIONS`` order."""
        used = {r.relation for r in self.recipes}
        return tuple(r for r in RELATIONS if r in used)

    def hidden_dir(self, out_dir: Path) -> Path:
        """Where hidden models are built: ``<out_dir>-hidden`` beside the zoo."""
        out_dir = Path(out_dir)
        return out_dir.parent / (out_dir.name + "-hidden")

    def recipe_payload(self, size: str) -> dict:
        """Everything that determines the models of ``size`` (hashed for the cache)."""
        return {"size": asdict(self.sizes[size]), "models": [recipe_fields(r) for r in self.recipes]}

    def settings_payload(self) -> dict:
        """What the zoo shares beyond its recipes (hashed for the cache)."""
        return {
            "zoo": self.name,
            "tokenizer_data": {k: list(v) for k, v in sorted(self.tokenizer_data.items())},
            "base_time": self.base_time.isoformat(),
            "spacing": None if self.spacing is None else self.spacing.total_seconds(),
            "corpus_salt": self.corpus_salt,
            "optimizer": asdict(self.optimizer),
        }

    def dependencies(self, model_id: str) -> set[str]:
        """Models that must exist before this one can be made (parents and distillation teacher)."""
        r = self.by_id[model_id]
        return set(r.parents) | ({r.teacher} if r.teacher else set())

    def family_of(self, model_id: str) -> str:
        """The root reached by following first parents (through hidden models too)."""
        r = self.by_id[model_id]
        return model_id if not r.parents else self.family_of(r.parents[0])

    def created_times(self) -> dict[str, str]:
        """Deterministic ISO-8601 creation times, strictly increasing in list order (parents first):
        recipe k at base_time + k·spacing, or each recipe ``gap_hours`` after the previous one."""
        out: dict[str, str] = {}
        when = self.base_time
        for k, r in enumerate(self.recipes):
            missing = self.dependencies(r.id) - out.keys()
            if missing:
                raise ValueError(f"{r.id} is listed before its dependencies {sorted(missing)}")
            if self.spacing is not None:
                when = self.base_time + k * self.spacing
            elif k and r.gap_hours <= 0:
                raise ValueError(f"{r.id}: gap_hours must be positive")
            else:
                when += timedelta(hours=r.gap_hours)
            out[r.id] = when.strftime("%Y-%m-%dT%H:%M:%SZ")
        return out
