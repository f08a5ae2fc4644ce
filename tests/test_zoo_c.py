"""Zoo C (held out) and the chains zoo (development): what they share with zoo A and B - nothing
but the code - and that adding them rebuilds neither (they live outside ``build.BUILD_MODULES``)."""

from __future__ import annotations

from pedigree.zoo.build import BUILD_MODULES, ZOOS
from pedigree.zoo.recipes_c import ZOO_C
from pedigree.zoo.recipes_chains import CHAINS
from pedigree.zoo.spec import ZooSpec


def seeds(spec: ZooSpec) -> set[int]:
    return {r.seed for r in spec.recipes} | {r.data_seed for r in spec.recipes if r.data_seed}


def test_zoo_c_shares_no_model_seed_or_setting_with_zoo_a_or_b() -> None:
    for other in (ZOOS["a"], ZOOS["b"]):
        assert not {r.id for r in ZOO_C.recipes} & {r.id for r in other.recipes}
        assert not seeds(ZOO_C) & seeds(other)
        assert ZOO_C.corpus_salt != other.corpus_salt and ZOO_C.optimizer != other.optimizer
        for size in ("small", "full"):
            c, o = ZOO_C.sizes[size], other.sizes[size]
            assert (c.hidden, c.layers, c.heads) != (o.hidden, o.layers, o.heads), size
            for field in ("layers", "vocab_size", "pretrain_steps", "finetune_steps", "heal_steps", "pretrain_lr"):
                assert getattr(c, field) != getattr(o, field), (size, field)


def test_zoo_c_has_what_its_docstring_promises() -> None:
    relations = {r.relation for r in ZOO_C.recipes}
    assert {"copy", "vocab_pruned", "upscaled", "merge", "quantized", "rotated", "pruned", "adapter"} <= relations
    assert {r.op for r in ZOO_C.recipes} >= {"frankenmerge", "distill", "vocab_extend", "transform"}
    assert any(r.hidden for r in ZOO_C.recipes)
    depth = {}
    for r in ZOO_C.recipes:  # parents first
        depth[r.id] = 1 + depth[r.parents[0]] if r.parents and r.op == "finetune" else 0
    assert max(depth.values()) == 3  # base -> 1 -> 2 -> 3: four generations
    ZOO_C.created_times()  # parents listed first, every gap positive


def test_the_chains_zoo_is_chains_and_siblings_under_two_optimisers() -> None:
    decay, nodecay = CHAINS["chains-decay"], CHAINS["chains-nodecay"]
    assert decay.optimizer.weight_decay > 0 and nodecay.optimizer.weight_decay == 0
    for spec in CHAINS.values():
        assert not seeds(spec) & (seeds(ZOOS["a"]) | seeds(ZOOS["b"]) | seeds(ZOO_C))
        children: dict[str, int] = {}
        for r in spec.recipes:
            for p in r.parents:
                children[p] = children.get(p, 0) + 1
        assert max(children.values()) >= 3 and len(spec.recipes) >= 15
        spec.created_times()


def test_extra_zoos_are_outside_the_modules_that_key_zoo_a_and_b() -> None:
    assert not {"recipes_c", "recipes_chains", "build_extra"} & set(BUILD_MODULES)
