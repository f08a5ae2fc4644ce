"""Deterministic zoos of small, really-trained transformers with known lineage (pedigree's ground truth).

Zoos from one builder: zoo A (``recipes``), the development zoo every rule is tuned on, and
zoo B (``recipes_b``), held out — written apart, only ever reported; zoo C (``recipes_c``), a
second held-out zoo, and the chains zoo (``recipes_chains``), a development zoo of fine-tune
chains and siblings, built by ``build_extra`` with their own cache keys.

Modules, in the order a build uses them:

* ``corpus``        — training text cut from the installed Python standard library (six domains, hashed;
  a salt picks other slices);
* ``tokenization``  — the five families' tokenizers (tokenizers library), Hub tokenizer files, vocab
  extension and pruning;
* ``architectures`` — Llama / Qwen2 / GPT-2 / GPT-NeoX / BERT as one functional forward over canonical names;
* ``hf_layout``     — Hugging Face state-dict names <-> canonical names (fused / transposed tensors);
* ``models``        — ``Model``, ``load_model``, ``save_checkpoint`` (Hub folder layout, shards, dtypes);
* ``training``      — CLM / MLM / LoRA / distillation training on CPU, a zoo's optimiser settings;
* ``transforms``    — function-preserving reparametrisations (permutations, rotation, per-head maps, ...);
* ``lossy``         — int8 round trip, block restacking (layer drop, depth up-scaling, frankenmerge),
  width prune, vocab extension and selection, MLP re-init, averaging;
* ``spec``          — ``SizeProfile``, ``ModelRecipe``, ``RELATIONS`` and ``ZooSpec`` (one whole zoo);
* ``recipes`` / ``recipes_b`` — zoo A / zoo B: model graph and "small" / "full" size profiles;
* ``cards``         — Hub README.md with YAML front matter;
* ``ops``           — making one model and writing its folder;
* ``build``         — ``build_zoo`` (scheduling, cache, hidden models, truth.json, zoo.json);
* ``build_extra``   — ``build_extra_zoo`` for zoos defined outside ``build.BUILD_MODULES`` (zoo C, chains);
* (tests and benchmarks cache the small zoos with ``bench/zoo_cache.py``)

CLI: ``python -m pedigree.zoo build [--zoo a|b] --size small|full --out DIR``.
"""

from __future__ import annotations

from .build import build_zoo
from .models import Model, load_model, save_checkpoint
from .transforms import random_function_preserving

__all__ = ["Model", "build_zoo", "load_model", "random_function_preserving", "save_checkpoint"]
