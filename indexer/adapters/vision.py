"""Vision encoders: Hugging Face ViT and the CLIP vision tower, as naming schemes probed at pixels.

Names follow ``transformers``' ``modeling_vit.py`` and ``modeling_clip.py`` as their checkpoints
store them (checked against ``save_pretrained`` of ``ViTForImageClassification`` and
``CLIPVisionModel``).

ViT (``model_type`` ``vit``: ``ViTModel``, ``ViTForImageClassification``; pre-LayerNorm, GELU MLP;
``vit.`` prefix, absent in a bare ``ViTModel``)::

    vit.embeddings.patch_embeddings.projection.weight    [hidden, C, p, p] (+ bias)
    vit.embeddings.cls_token [1, 1, hidden], vit.embeddings.position_embeddings [1, N+1, hidden]
    vit.encoder.layer.{i}.layernorm_before -> attention.attention.{query,key,value}, attention.output.dense (o)
    vit.encoder.layer.{i}.layernorm_after  -> intermediate.dense (up), output.dense (down)
    vit.layernorm (final), classifier [labels, hidden] (ForImageClassification), pooler.dense (ViTModel)

CLIP vision (``clip_vision_model``: ``CLIPVisionModel``; and the vision tower of a full ``clip``
checkpoint, sizes in its ``vision_config``; pre-LayerNorm, quick-GELU MLP; ``vision_model.``
prefix - transformers 5 writes a bare ``CLIPVisionModel`` without it)::

    vision_model.embeddings.patch_embedding.weight [hidden, C, p, p] (no bias)
    vision_model.embeddings.class_embedding [hidden], embeddings.position_embedding.weight [N+1, hidden]
    vision_model.pre_layrnorm (sic: normalises the embeddings before block 0)
    vision_model.encoder.layers.{i}.layer_norm1 -> self_attn.{q,k,v}_proj, self_attn.out_proj (o)
    vision_model.encoder.layers.{i}.layer_norm2 -> mlp.fc1 (up), mlp.fc2 (down)
    vision_model.post_layernorm; visual_projection.weight [proj, hidden] (full CLIP, WithProjection)

**Pixel tokens.**  A vision encoder has no vocabulary: what enters its residual stream is the patch
embedding, a convolution whose kernel ``W`` [hidden, C, p, p] maps a patch to ``W·patch + b``.
Viewed as a [C·p·p, hidden] matrix (``W`` flattened, transposed: ``MatrixRef(flatten=True)``), row
``j`` is the residual response to a patch holding a single lit pixel ``j`` (channel, row, column)
- a *pixel token*.  These rows play the part of the token embedding's rows: the fingerprint and
the independence tests probe every block at them unchanged, with a synthetic vocabulary in which
pixel ``j`` is named by the ``j``-th key of the global probe list (``indexer.probes.pixel_vocabulary``),
so two models with the same patch geometry share every pixel probe.  Classifier and projection
heads are not read (their rows are labels, not pixels); the class token, position embeddings,
CLIP's ``pre_layrnorm`` gain and all biases are not part of the canonical form (roles for
inspection only: ``ModelRoles.extras``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from pedigree.errors import CheckpointError
from pedigree.indexer.adapters.base import ModelRoles
from pedigree.indexer.adapters.schemes import Scheme, roles_from_scheme
from pedigree.indexer.safetensors_format import TensorInfo

_NOTE = "vision encoder probed at pixel tokens (the patch embedding's C·p·p columns)"

VIT = Scheme(
    family="vit",
    norm_kind="layer",
    prefixes=("vit.", ""),
    embedding="embeddings.patch_embeddings.projection.weight",
    head=None,
    final_norm="layernorm",
    block="encoder.layer.{i}.",
    projections={
        **{role: f"attention.attention.{name}.weight" for role, name in (("q", "query"), ("k", "key"), ("v", "value"))},
        "o": "attention.output.dense.weight",
        "up": "intermediate.dense.weight",
        "down": "output.dense.weight",
    },
    attn_norm="encoder.layer.{i}.layernorm_before",
    mlp_norm=("encoder.layer.{i}.layernorm_after",),
    patch_embedding=True,
    notes=(_NOTE,),
)

CLIP_VISION = Scheme(
    family="clip_vision",
    norm_kind="layer",
    prefixes=("vision_model.", ""),
    embedding="embeddings.patch_embedding.weight",
    head=None,
    final_norm="post_layernorm",
    block="encoder.layers.{i}.",
    projections={
        **{role: f"self_attn.{role}_proj.weight" for role in ("q", "k", "v")},
        "o": "self_attn.out_proj.weight",
        "up": "mlp.fc1.weight",
        "down": "mlp.fc2.weight",
    },
    attn_norm="encoder.layers.{i}.layer_norm1",
    mlp_norm=("encoder.layers.{i}.layer_norm2",),
    patch_embedding=True,
    notes=(_NOTE + "; pre_layrnorm's gain is not folded",),
)

# the vision tower of a full CLIP checkpoint (text tower beside it, not read): sizes in vision_config
CLIP = replace(CLIP_VISION, prefixes=("vision_model.",))

# model_type -> scheme (joined into ``families.FAMILIES``)
VISION_FAMILIES: dict[str, Scheme] = {"vit": VIT, "clip_vision_model": CLIP_VISION, "clip": CLIP}

# architectures[0] prefix -> model_type, for configs without a model_type (CLIPVision before CLIP)
VISION_ARCHITECTURES = {"ViT": "vit", "CLIPVision": "clip_vision_model", "CLIP": "clip"}

_AUXILIARY = {  # names relative to the tower's prefix
    "vit": {
        "embeddings.cls_token": "class_token",
        "embeddings.position_embeddings": "position_embedding",
        "embeddings.mask_token": "mask_token",
    },
    "clip_vision": {
        "embeddings.class_embedding": "class_token",
        "embeddings.position_embedding.weight": "position_embedding",
        "pre_layrnorm.weight": "embedding_norm",
    },
}
_HEADS = {  # absolute names: task heads outside the encoder, never read
    "classifier.weight": "classifier",
    "pooler.dense.weight": "pooler",
    "visual_projection.weight": "projection",
}


def _extras(roles: ModelRoles, scheme: Scheme, names: Mapping[str, object]) -> tuple[tuple[str, str], ...]:
    """(tensor, role) of what the canonical form does not read: the class token, position
    embeddings, CLIP's ``pre_layrnorm``, the task heads, and every bias (``<role>.bias``)."""
    prefix = roles.embedding.name[: -len(scheme.embedding)]
    found = {prefix + name: role for name, role in _AUXILIARY[scheme.family].items() if prefix + name in names}
    found.update({name: role for name, role in _HEADS.items() if name in names})
    weights = {**roles.role_map(), **found}
    for name, role in list(weights.items()):
        bias = name.removesuffix(".weight") + ".bias"
        if name.endswith(".weight") and bias in names and bias not in weights:
            found[bias] = role + ".bias"
    return tuple(sorted(found.items()))


def roles_of_vision(
    model_type: str, config: Mapping[str, Any], tensors: Mapping[str, TensorInfo], architecture: str
) -> ModelRoles:
    """The roles of a ViT or CLIP vision encoder (a full CLIP checkpoint: its vision tower, sized by
    ``vision_config``), with the tensors the canonical form does not read as ``extras``."""
    scheme = VISION_FAMILIES[model_type]
    if model_type == "clip":
        tower = config.get("vision_config")
        if not isinstance(tower, Mapping):
            raise CheckpointError("a CLIP config.json without a vision_config object")
        config = tower
    roles = roles_from_scheme(scheme, config, tensors, architecture)
    return replace(roles, extras=_extras(roles, scheme, tensors))
