"""The vision zoo (issue 16, part 5): tiny ViT and CLIP-vision encoders trained on CPU on the UCI
digits, saved under Hugging Face's names, with their true lineage (``build``; the modules:
``models`` - the encoders in plain torch, ``build`` - data, training, recipes, cached build).

A package of its own, so that zoo A's and B's cache keys (a hash of ``pedigree/zoo/*.py``) do not
change with it.
"""

from __future__ import annotations

from .build import RECIPES, build_vision_zoo

__all__ = ["RECIPES", "build_vision_zoo"]
