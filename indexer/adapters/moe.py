"""Mixture-of-experts decoders: Mixtral, Qwen2-MoE and Qwen3-MoE, their experts as unit groups.

Tensor names and config fields follow Hugging Face transformers' checkpoints (``modeling_mixtral``,
``modeling_qwen2_moe``, ``modeling_qwen3_moe``; transformers 5 still saves these names).  The
attention half of a block is Llama's (:data:`~.families.LLAMA`: ``self_attn.{q,k,v,o}_proj``,
``input_layernorm``, ``post_attention_layernorm`` read by the experts, Qwen3's ``q_norm``/``k_norm``)::

    Mixtral (num_local_experts E; intermediate_size = one expert's width f):
    model.layers.{i}.block_sparse_moe.gate.weight            [E, hidden]   the router
    model.layers.{i}.block_sparse_moe.experts.{e}.w1.weight  [f, hidden]   gate (SiLU)
    model.layers.{i}.block_sparse_moe.experts.{e}.w3.weight  [f, hidden]   up
    model.layers.{i}.block_sparse_moe.experts.{e}.w2.weight  [hidden, f]   down

    Qwen2-MoE / Qwen3-MoE (num_experts E - num_local_experts as transformers 5 writes it; moe_intermediate_size f):
    model.layers.{i}.mlp.gate.weight                         [E, hidden]   the router
    model.layers.{i}.mlp.experts.{e}.{gate,up,down}_proj.weight
    model.layers.{i}.mlp.shared_expert.{gate,up,down}_proj.weight, mlp.shared_expert_gate.weight
                                                             (Qwen2-MoE only)

**Experts as unit groups.**  An expert is a gated MLP of f units, and the router only weighs
whole experts, so the block's MLP is read as one MLP of E·f units, expert after expert (unit
e·f + j is unit j of expert e): up, gate and down are stacked :class:`~.base.MatrixRef` s over the
experts' tensors (rows for up and gate, columns for down).  Every unit-level test and the
fingerprint then work unchanged: permuting experts (router rows with them) or units inside an
expert permutes units; a model whose E·f units fit the fingerprint's sample is fingerprinted
exactly invariantly, a larger one (Mixtral-8x7B: 8 · 14336) is sampled at its first units, i.e.
in expert 0 - like a dense MLP's first units, a uniform sample at initialisation, read at the
very same units in a fine-tune.

**Left out of the fingerprint** (listed by ``ModelRoles.role_map`` as extras): the router
(``layers.{i}.router``) - a per-block [E, hidden] map whose rows permute with the experts; and
Qwen2-MoE's shared expert, whose width differs from the routed experts' (``layers.{i}.shared_expert.*``).
Checkpoints with dense blocks between sparse ones (Qwen's ``mlp_only_layers``, ``decoder_sparse_step``
> 1) are refused.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from pedigree.errors import CheckpointError, UnsupportedModelError
from pedigree.indexer.adapters.base import (
    LayerRoles,
    MatrixRef,
    ModelRoles,
    check_layer,
    check_matrix,
    config_int,
)
from pedigree.indexer.adapters.families import LLAMA
from pedigree.indexer.adapters.schemes import roles_from_scheme
from pedigree.indexer.safetensors_format import TensorInfo

MAX_EXPERTS = 4096  # a config claiming more experts than this is not a checkpoint we can trust


@dataclass(frozen=True)
class MoeScheme:
    """Where a mixture-of-experts family keeps its experts (names relative to ``layers.{i}.``)."""

    family: str
    router: str
    expert: str  # with {e}
    gate: str
    up: str
    down: str
    experts_keys: tuple[str, ...]
    expert_width_keys: tuple[str, ...]
    shared: tuple[str, ...] = ()  # the shared expert's tensors (extras, not fingerprinted)


MIXTRAL = MoeScheme(
    family="mixtral",
    router="block_sparse_moe.gate.weight",
    expert="block_sparse_moe.experts.{e}.",
    gate="w1.weight",
    up="w3.weight",
    down="w2.weight",
    experts_keys=("num_local_experts",),
    expert_width_keys=("intermediate_size",),
)

QWEN3_MOE = MoeScheme(
    family="qwen_moe",
    router="mlp.gate.weight",
    expert="mlp.experts.{e}.",
    gate="gate_proj.weight",
    up="up_proj.weight",
    down="down_proj.weight",
    experts_keys=("num_experts", "num_local_experts"),  # transformers 5 writes the second
    expert_width_keys=("moe_intermediate_size",),
)

QWEN2_MOE = replace(
    QWEN3_MOE,
    shared=(
        "mlp.shared_expert.gate_proj.weight",
        "mlp.shared_expert.up_proj.weight",
        "mlp.shared_expert.down_proj.weight",
        "mlp.shared_expert_gate.weight",
    ),
)

MOE_FAMILIES: dict[str, MoeScheme] = {"mixtral": MIXTRAL, "qwen2_moe": QWEN2_MOE, "qwen3_moe": QWEN3_MOE}


def roles_of_moe(
    model_type: str, config: Mapping[str, Any], tensors: Mapping[str, TensorInfo], architecture: str
) -> ModelRoles:
    """The roles of a mixture-of-experts checkpoint of a known ``model_type`` (module docstring)."""
    moe = MOE_FAMILIES[model_type]
    experts = config_int(config, *moe.experts_keys, high=MAX_EXPERTS)
    sparse_step = config.get("decoder_sparse_step", 1)
    if config.get("mlp_only_layers") or sparse_step not in (None, 1):
        raise UnsupportedModelError(f"{model_type} with dense blocks between sparse ones is not supported yet")
    first = moe.expert.format(e=0)
    scheme = replace(
        LLAMA,
        projections={
            **LLAMA.projections,
            "gate": first + moe.gate,
            "up": first + moe.up,
            "down": first + moe.down,
        },
        mlp_keys=moe.expert_width_keys,
    )
    dense = roles_from_scheme(scheme, config, tensors, architecture)  # attention + expert 0, checked
    prefix = dense.embedding.name[: -len(LLAMA.embedding)]
    hidden = dense.hidden_size
    layers: list[LayerRoles] = []
    extras: list[tuple[str, str]] = []
    for layer in dense.layers:
        block = prefix + LLAMA.block.format(i=layer.index)

        def stack(name: str, columns: bool = False, block: str = block) -> MatrixRef:
            names = [block + moe.expert.format(e=e) + name for e in range(experts)]
            return MatrixRef.stacked(names, columns=columns)

        units = experts * layer.mlp_size
        sparse = replace(
            layer, gate=stack(moe.gate), up=stack(moe.up), down=stack(moe.down, columns=True), mlp_size=units
        )
        check_layer(tensors, sparse, hidden)
        router = MatrixRef(block + moe.router)
        check_matrix(tensors, router, experts, hidden)
        extras.append((router.name, f"layers.{layer.index}.router"))
        for name in moe.shared:
            if block + name not in tensors:
                raise CheckpointError(f"missing tensor {block + name!r}")
            extras.append((block + name, f"layers.{layer.index}.shared_expert.{name.split('.')[-2]}"))
        layers.append(sparse)
    notes = (
        f"mixture of {experts} experts per block, read as {experts} groups of {dense.layers[0].mlp_size} MLP units"
        if dense.layers
        else f"mixture of {experts} experts per block",
        "routers not fingerprinted" + ("; shared experts not fingerprinted" if moe.shared else ""),
    )
    return replace(dense, family=moe.family, layers=tuple(layers), notes=dense.notes + notes, extras=tuple(extras))
