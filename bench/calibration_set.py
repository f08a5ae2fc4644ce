"""The calibration set of ``bench.calibration``: independent model pairs over every architecture variant.

Synthetic groups (:data:`SYNTHETIC_GROUPS`): each pair is two fresh, independent initialisations -
two seeds of their own, never used by another pair of the group, so the pairs' p-values are
independent samples (what the Kolmogorov-Smirnov test assumes).  Per pair a seeded draw picks the
shape (hidden 64/96/128, 2-6 blocks, 2-8 heads, MLP width 2-4 x hidden), the storage dtype
(float32 or bfloat16) and the initialisation scheme (:data:`INIT_SCHEMES`):

- ``normal``: the zoo's ``init_canonical`` - N(0, 0.02²) matrices, residual writers (``o``, ``down``)
  scaled by 1/√(2L), zero biases, unit gains (GPT-2 / Llama / HF ``initializer_range``);
- ``fan_in``: PyTorch's defaults - ``nn.Linear`` Kaiming-uniform weights and biases U(±1/√fan_in),
  ``nn.Embedding`` N(0, 1);
- ``mixed``: A ``normal``, B ``fan_in`` (two code bases).

Tokenizers and vocabulary sizes are the roots' of zoo A and zoo B (:data:`TOKENIZERS`; only their
files are read, nothing is tuned on them); a variant group uses zoo A's tokenizer of its type.
The "cross-" groups pair models of different shapes: depths (the battery's rectangular plan),
MLP widths, hidden sizes (only the shape-free tests run) and tokenizers (partial probe overlap,
vocabulary sizes 896-1088 with padded rows).
"""

from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import torch

from bench.report import ROOT
from pedigree.zoo.architectures import Dims, canonical_shapes, init_canonical, make_config, spec_from_config
from pedigree.zoo.hf_layout import to_hf

ZOOS = ROOT / "bench" / ".zoo"
TOKENIZER_ZOOS = {"full": ZOOS / "full", "b-full": ZOOS / "b-full"}  # tests point these at the small zoos
TEXT_FILES = ("tokenizer.json", "tokenizer_config.json")
INIT_SCHEMES = ("normal", "fan_in", "normal", "mixed")  # cycled over a group's pairs
TOKENIZERS = {  # name: (zoo folder, root whose tokenizer files are used, tokenizer kind)
    "A-llama": ("full", "llama-lab/tiny-llama-s1", "llama"),
    "A-qwen2": ("full", "qwen-lab/tiny-qwen2", "qwen2"),
    "A-gpt2": ("full", "gpt-lab/tiny-gpt2", "gpt2"),
    "A-neox": ("full", "neox-lab/tiny-neox", "neox"),
    "A-bert": ("full", "bert-lab/tiny-bert", "bert"),
    "B-llama": ("b-full", "atlas-ai/atlas-llama-base", "llama"),
    "B-neox": ("b-full", "cobalt-lm/cobalt-neox", "neox"),
    "B-gpt2": ("b-full", "dune-nlp/dune-gpt2", "gpt2"),
}
OWN_TOKENIZER = {"llama": "A-llama", "qwen2": "A-qwen2", "gpt2": "A-gpt2", "gpt_neox": "A-neox", "bert": "A-bert"}
HEADS = {64: (4, 8), 96: (4, 6), 128: (4, 8)}


@dataclass(frozen=True)
class ModelSpec:
    """One synthetic model: everything a worker needs to make it again."""

    label: str
    config: dict
    tokenizer: str  # a key of TOKENIZERS
    seed: int
    init: str  # "normal" | "fan_in"

    def state_dict(self) -> dict[str, torch.Tensor]:
        return init_state(self.config, self.seed, self.init)

    def texts(self) -> dict[str, str]:
        return {"config.json": json.dumps(self.config), **tokenizer_texts(self.tokenizer)}


@dataclass(frozen=True)
class PairSpec:
    group: str
    index: int
    a: ModelSpec
    b: ModelSpec
    scheme: str


@dataclass(frozen=True)
class Variant:
    """A synthetic group: the model type(s) and what differs between A and B."""

    name: str
    model_type: str | tuple[str, ...]
    attention: str = "any"  # "mha" | "gqa" | "mqa" | "any" (llama/qwen2 only)
    tied: bool | None = None  # llama/qwen2: tie_word_embeddings
    differ: str = ""  # "" | "depth" | "width" | "hidden" | "tokenizer"
    description: str = ""
    widths: tuple[int, ...] = ()  # MLP widths drawn from (the unit-sampling regimes), else 2-4 x hidden


SYNTHETIC_GROUPS = (
    Variant("llama MHA untied", "llama", "mha", False, description="Llama, kv heads = heads, untied head"),
    Variant("llama GQA", "llama", "gqa", False, description="Llama, kv heads = heads / 2"),
    Variant("llama MQA", "llama", "mqa", False, description="Llama, one kv head"),
    Variant("llama tied", "llama", "any", True, description="Llama (MHA or GQA), tied embeddings"),
    Variant("qwen2 GQA", "qwen2", "gqa", False, description="Qwen2, kv heads = heads / 2, qkv biases"),
    Variant("gpt2", "gpt2", description="GPT-2: non-GLU, tied, LayerNorm, pre-LN, learned positions"),
    Variant("gpt_neox", "gpt_neox", description="GPT-NeoX: parallel residual, partial RoPE, untied"),
    Variant("bert", "bert", description="BERT: post-LN, MLM head"),
    Variant(
        "cross-depth", ("llama", "qwen2", "gpt2", "gpt_neox"), differ="depth", description="A, B of one type, depths"
    ),
    Variant(
        "cross-width", ("llama", "qwen2", "gpt2", "gpt_neox"), differ="width", description="same hidden, MLP widths"
    ),
    Variant("cross-hidden", ("llama", "gpt2", "gpt_neox"), differ="hidden", description="different hidden sizes"),
    Variant(
        "cross-tokenizer",
        ("llama", "qwen2", "gpt2", "gpt_neox"),
        differ="tokenizer",
        description="different zoo A / zoo B tokenizers and vocabulary sizes",
    ),
    Variant(  # last: the groups before it keep their numbers, so their seeds
        "wide MLP",
        ("llama", "qwen2", "gpt2", "gpt_neox", "bert"),
        widths=(1096, 1280, 1536),  # > indexer.unit_selection.CANONICAL_FROM = 1024
        description="MLPs of 1096-1536 units (> 1024): first units plus canonical units, gated and ungated",
    ),
    Variant(
        "mid MLP",
        ("llama", "qwen2", "gpt2", "gpt_neox", "bert"),
        widths=(288, 344, 448, 512),  # (WIDE_MLP, WHOLE_MLP] of indexer.unit_selection
        description="MLPs of 288-512 units: stored and tested whole since capture ev4 (first 256 units before)",
    ),
)


@cache
def tokenizer_texts(name: str) -> dict[str, str]:
    zoo, root, _ = TOKENIZERS[name]
    folder = TOKENIZER_ZOOS[zoo] / root
    return {f: (folder / f).read_text() for f in TEXT_FILES if (folder / f).exists()}


@cache
def _tokenizer(name: str):
    from tokenizers import Tokenizer

    return Tokenizer.from_str(tokenizer_texts(name)["tokenizer.json"])


def tokenizer_size(name: str) -> int:
    return _tokenizer(name).get_vocab_size()


def init_state(config: dict, seed: int, scheme: str) -> dict[str, torch.Tensor]:
    """HF-named state dict of ``config`` initialised by ``scheme`` (module docstring), in the
    config's ``torch_dtype``."""
    spec = spec_from_config(config)
    if scheme == "normal":
        canon = init_canonical(spec, seed)
    elif scheme == "fan_in":
        gen = torch.Generator().manual_seed(seed)
        shapes = canonical_shapes(spec)
        canon = {}
        for name, shape in shapes.items():
            if name in ("embed", "pos_embed", "type_embed"):
                canon[name] = torch.randn(shape, generator=gen)
            elif len(shape) == 2:
                canon[name] = (torch.rand(shape, generator=gen) * 2 - 1) / math.sqrt(shape[1])
            elif name.endswith(".b") and len(shapes.get(name[:-2] + ".w", ())) == 2:  # a linear map's bias
                canon[name] = (torch.rand(shape, generator=gen) * 2 - 1) / math.sqrt(shapes[name[:-2] + ".w"][1])
            else:  # norm gains and biases, BERT's decoder bias
                canon[name] = torch.ones(shape) if name.endswith(".w") else torch.zeros(shape)
    else:
        raise ValueError(f"unknown init scheme {scheme!r}")
    dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16}[config.get("torch_dtype", "float32")]
    return {k: v.to(dtype) for k, v in to_hf(config, canon).items()}


def model_config(
    model_type: str,
    tokenizer: str,
    *,
    hidden: int,
    layers: int,
    heads: int,
    intermediate: int,
    kv_heads: int = 0,
    tied: bool | None = None,
    vocab_pad: int = 0,
    dtype: str = "float32",
) -> dict:
    """An HF config of ``model_type`` sized as given, with the tokenizer's special ids and vocabulary
    size (plus ``vocab_pad`` unused rows, as padded Hub vocabularies have)."""
    from pedigree.zoo.tokenization import special_ids

    kind = TOKENIZERS[tokenizer][2]
    ids = special_ids(_tokenizer(tokenizer), kind)
    dims = Dims(hidden, layers, heads, intermediate, kv_heads=kv_heads, max_positions=128)
    config = make_config(model_type, dims, tokenizer_size(tokenizer) + vocab_pad, ids, dtype)
    if tied is not None and model_type in ("llama", "qwen2"):
        config["tie_word_embeddings"] = tied
    return config


def _kv_heads(attention: str, heads: int, rng: random.Random) -> int:
    if attention == "any":
        attention = rng.choice(("mha", "gqa"))
    return {"mha": heads, "gqa": heads // 2, "mqa": 1}[attention]


def _width(model_type: str, hidden: int, rng: random.Random, avoid: int = 0) -> int:
    factors = (2.0, 8 / 3, 3.5) if model_type in ("llama", "qwen2") else (2.0, 3.0, 4.0)
    widths = [8 * round(f * hidden / 8) for f in factors]
    return rng.choice([w for w in widths if w != avoid])


def pair_spec(variant: Variant, index: int, group_no: int) -> PairSpec:
    """Pair ``index`` of a synthetic group: a seeded draw of shape, dtype and init scheme."""
    rng = random.Random(f"calibration:{variant.name}:{index}")
    types = variant.model_type if isinstance(variant.model_type, tuple) else (variant.model_type,)
    model_type = rng.choice(types)
    hidden = rng.choice(sorted(HEADS))
    heads = rng.choice(HEADS[hidden])
    layers = rng.randint(2, 6)
    dtype = rng.choice(("float32", "bfloat16"))
    attention = variant.attention if model_type in ("llama", "qwen2") else "mha"
    shared = {
        "heads": heads,
        "kv_heads": _kv_heads(attention, heads, rng),
        "tied": variant.tied,
        "dtype": dtype,
        "vocab_pad": rng.choice((0, 0, 0, 64)),
    }
    own_tok = OWN_TOKENIZER[model_type]
    width = rng.choice(variant.widths) if variant.widths else _width(model_type, hidden, rng)
    a = dict(shared, hidden=hidden, layers=layers, intermediate=width, tokenizer=own_tok)
    b = dict(a)
    if variant.differ == "depth":
        b["layers"] = rng.choice([n for n in range(2, 7) if n != layers])
    elif variant.differ == "width":
        b["intermediate"] = _width(model_type, hidden, rng, avoid=a["intermediate"])
    elif variant.differ == "hidden":
        b["hidden"] = rng.choice([h for h in sorted(HEADS) if h != hidden])
        b["heads"] = rng.choice(HEADS[b["hidden"]])
        b["kv_heads"] = b["heads"] if a["kv_heads"] == a["heads"] else b["heads"] // 2
        b["layers"] = rng.randint(2, 6)
        b["intermediate"] = _width(model_type, b["hidden"], rng)
    elif variant.differ == "tokenizer":
        a["tokenizer"], b["tokenizer"] = rng.sample(sorted(TOKENIZERS), 2)
        b["vocab_pad"] = rng.choice((0, 0, 64))
    scheme = INIT_SCHEMES[index % len(INIT_SCHEMES)]
    init_a, init_b = ("normal", "fan_in") if scheme == "mixed" else (scheme, scheme)
    seed = 1_000_000 * (group_no + 1) + 2 * index
    slug = variant.name.replace(" ", "-")

    def model(fields: dict, seed: int, init: str, side: str) -> ModelSpec:
        fields = dict(fields)
        tokenizer = fields.pop("tokenizer")
        config = model_config(model_type, tokenizer, **fields)
        return ModelSpec(f"{slug}-{index}{side}", config, tokenizer, seed, init)

    return PairSpec(variant.name, index, model(a, seed, init_a, "a"), model(b, seed + 1, init_b, "b"), scheme)


def synthetic_pairs(pairs: int, groups: tuple[Variant, ...] = SYNTHETIC_GROUPS, start: int = 0) -> list[PairSpec]:
    """``pairs`` independent pairs of every synthetic group: indices ``[start, start + pairs)`` (a
    later start draws fresh pairs - new seeds and shapes - that extend an earlier run)."""
    return [pair_spec(v, k, SYNTHETIC_GROUPS.index(v)) for v in groups for k in range(start, start + pairs)]


def shape_of(config: dict) -> dict:
    """The facts of a config the tests and the report care about (for checks and the JSON)."""
    spec = spec_from_config(config)
    return {
        "model_type": spec.model_type,
        "hidden": spec.hidden,
        "layers": spec.layers,
        "heads": spec.heads,
        "kv_heads": spec.kv_heads,
        "intermediate": spec.intermediate,
        "vocab_size": spec.vocab_size,
        "tied": spec.tied,
        "glu": spec.glu,
        "residual": spec.residual,
        "norm": spec.norm,
    }


# ---- pairs of checkpoint folders: the trained models and the zoos --------------------------------


@dataclass(frozen=True)
class FolderPair:
    group: str
    a: str  # label
    b: str


def all_pairs(group: str, labels: list[str]) -> list[FolderPair]:
    """Every pair of ``labels`` (clustered: each model is in len - 1 pairs)."""
    return [FolderPair(group, a, b) for i, a in enumerate(labels) for b in labels[i + 1 :]]


def disjoint_pairs(group: str, labels: list[str]) -> list[FolderPair]:
    """A matching: (0, 1), (2, 3), ... - independent pairs (no model in two of them)."""
    return [FolderPair(group, labels[i], labels[i + 1]) for i in range(0, len(labels) - 1, 2)]


def zoo_roots(zoo: Path) -> dict[str, frozenset[str]]:
    """Each visible model's root ancestors (through ``parents`` and a hidden ``latent_parent``)."""
    truth = json.loads((zoo / "truth.json").read_text())
    hidden_truth = zoo.parent / f"{zoo.name}-hidden" / "truth.json"
    everything = {**(json.loads(hidden_truth.read_text()) if hidden_truth.exists() else {}), **truth}

    @cache
    def roots(model: str) -> frozenset[str]:
        entry = everything[model]
        parents = [*entry["parents"], *([entry["latent_parent"]] if entry.get("latent_parent") else [])]
        return frozenset({model}) if not parents else frozenset().union(*(roots(p) for p in parents))

    return {m: roots(m) for m in truth}


def zoo_pairs(zoo: Path, prefix: str) -> tuple[list[FolderPair], list[FolderPair], int]:
    """(independent pairs, same-family pairs, how many pairs are neither) of a built zoo; labels are
    ``prefix:model``.  Independent: no common root ancestor (a cross-family merge or passthrough
    model shares weights with both its parents' families, so family alone does not decide)."""
    truth = json.loads((zoo / "truth.json").read_text())
    roots = zoo_roots(zoo)
    names = sorted(m for m in truth if (zoo / m / "config.json").exists())
    independent, same, neither = [], [], 0
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            pair = FolderPair(prefix, f"{prefix}:{a}", f"{prefix}:{b}")
            if truth[a]["family"] == truth[b]["family"]:
                same.append(pair)
            elif roots[a].isdisjoint(roots[b]):
                independent.append(pair)
            else:
                neither += 1
    return independent, same, neither
