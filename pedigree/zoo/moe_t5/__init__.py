"""Zoo members for the mixture-of-experts and encoder-decoder families (issue 16, part 4): a tiny
Mixtral and a tiny T5, each a base, a fine-tune of it and an unrelated seed, trained on CPU on the
zoo corpus (:mod:`.models` holds the architectures, :mod:`.build` the recipes and the cached build).

A package of its own: ``pedigree.zoo.build.code_fingerprint`` hashes ``pedigree/zoo/*.py``, so
these modules do not change zoo A's or zoo B's cache keys; :func:`.build.build_moe_t5_zoo` keys
its own cache on its own sources.
"""
