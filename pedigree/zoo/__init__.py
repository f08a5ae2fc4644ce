"""A deterministic zoo of small, really-trained transformers with known lineage (pedigree's ground truth).

Modules, in the order a build uses them:

* ``corpus``        — training text cut from the installed Python standard library (six domains, hashed);
* ``tokenization``  — the five families' tokenizers (tokenizers library), Hub tokenizer files, vocab extension;
* ``architectures`` — Llama / Qwen2 / GPT-2 / GPT-NeoX / BERT as one functional forward over canonical names;
* ``hf_layout``     — Hugging Face state-dict names <-> canonical names (fused / transposed tensors);
* ``models``        — ``Model``, ``load_model``, ``save_checkpoint`` (Hub folder layout, shards, dtypes);
* ``training``      — CLM / MLM / LoRA / distillation training on CPU;
* ``transforms``    — function-preserving reparametrisations (permutations, rotation, per-head maps, ...);
* ``lossy``         — int8 round trip, layer drop, width prune, vocab extension, MLP re-init, averaging;
* ``recipes``       — the model graph and the "small" / "full" size profiles;
* ``cards``         — Hub README.md with YAML front matter;
* ``ops``           — making one model and writing its folder;
* ``build``         — ``build_zoo`` (scheduling, cache, truth.json, zoo.json);
* (tests and benchmarks cache the small zoo with ``bench/zoo_cache.py``)

CLI: ``python -m pedigree.zoo build --size small|full --out DIR``.
"""

from __future__ import annotations

from .build import build_zoo
from .models import Model, load_model, save_checkpoint
from .transforms import random_function_preserving

__all__ = ["Model", "build_zoo", "load_model", "random_function_preserving", "save_checkpoint"]
