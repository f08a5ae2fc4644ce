"""The families zoo: tiny really-trained members of the LLM families beyond zoo A (issue 16, part 4).

Phi-3, Falcon, StarCoder2, Gemma 2 and Gemma 3, each a base pre-trained on the zoo corpus, a
fine-tune of it and an independently seeded unrelated model of the same family, built on CPU:

* ``decoders`` - the five architectures as one functional forward over canonical names;
* ``configs``  - their config.json files;
* ``layouts``  - Hugging Face state-dict names <-> canonical names (Phi-3's and Falcon's fused tensors);
* ``transforms`` - function-preserving permutations and gain rescalings (invariance tests);
* ``recipes``  - ``FamilyRecipe``, ``ARCHS`` (model_type -> architecture) and ``RECIPES``: plain lists
  that other modules extend (the MoE / T5 members append theirs);
* ``build``    - ``build_families_zoo``: cached by a hash of the recipes and this package's code.

A subpackage, so that zoo A's and zoo B's cache keys (a hash of ``pedigree/zoo/*.py``) do not move.
"""
