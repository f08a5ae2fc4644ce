"""Architecture adapters: config.json + tensor names -> :class:`ModelRoles`.

``roles_for(config, tensors)`` dispatches on ``config["model_type"]`` (falling back to the first
entry of ``config["architectures"]``).  An architecture without an adapter raises
:class:`UnsupportedModelError` with the reason, which ingest stores as ``unsupported: <reason>``.
"""

from __future__ import annotations

from collections.abc import Mapping

from pedigree.errors import CheckpointError, UnsupportedModelError
from pedigree.indexer.adapters.base import (
    LayerRoles,
    MatrixLoader,
    MatrixRef,
    ModelRoles,
    NormRef,
)
from pedigree.indexer.adapters.families import FAMILIES, roles_of_family
from pedigree.indexer.adapters.moe import MOE_FAMILIES, roles_of_moe
from pedigree.indexer.adapters.t5 import T5_TYPES, roles_of_t5
from pedigree.indexer.adapters.vision import VISION_ARCHITECTURES, VISION_FAMILIES, roles_of_vision
from pedigree.indexer.safetensors_format import TensorInfo

__all__ = ["LayerRoles", "MatrixLoader", "MatrixRef", "ModelRoles", "NormRef", "roles_for", "SUPPORTED_MODEL_TYPES"]

SUPPORTED_MODEL_TYPES = tuple(sorted({*FAMILIES, *MOE_FAMILIES, *T5_TYPES, *VISION_FAMILIES}))

_ARCHITECTURE_PREFIXES = {
    "Mixtral": "mixtral",
    "Qwen2Moe": "qwen2_moe",
    "Qwen3Moe": "qwen3_moe",
    "UMT5": "umt5",
    "MT5": "mt5",
    "T5": "t5",
    "Llama": "llama",
    "Mistral": "mistral",
    "Qwen2": "qwen2",
    "Qwen3": "qwen3",
    "Gemma2": "gemma2",
    "Gemma3": "gemma3_text",
    "Gemma": "gemma",
    "Phi3": "phi3",
    "Falcon": "falcon",
    "Starcoder2": "starcoder2",
    "GPT2": "gpt2",
    "GPTNeoX": "gpt_neox",
    "Bert": "bert",
    **VISION_ARCHITECTURES,
}


def _model_type(config: Mapping) -> tuple[str | None, str]:
    architectures = config.get("architectures")
    architecture = (
        architectures[0]
        if isinstance(architectures, list) and architectures and isinstance(architectures[0], str)
        else ""
    )
    model_type = config.get("model_type")
    if isinstance(model_type, str) and model_type:
        return model_type, architecture or model_type
    for prefix, kind in _ARCHITECTURE_PREFIXES.items():
        if architecture.startswith(prefix):
            return kind, architecture
    return None, architecture


def roles_for(config: object, tensors: Mapping[str, TensorInfo]) -> ModelRoles:
    """Map a checkpoint's tensors to roles, or raise Unsupported/CheckpointError saying why."""
    if not isinstance(config, Mapping):
        raise CheckpointError("config.json is missing or not a JSON object")
    model_type, architecture = _model_type(config)
    if model_type is None:
        raise UnsupportedModelError("config.json names no model_type or known architecture")
    if model_type in MOE_FAMILIES:
        return roles_of_moe(model_type, config, tensors, architecture)
    if model_type in T5_TYPES:
        return roles_of_t5(config, tensors, architecture)
    if model_type in VISION_FAMILIES:
        return roles_of_vision(model_type, config, tensors, architecture)
    if config.get("num_local_experts") or config.get("num_experts"):
        raise UnsupportedModelError(f"mixture-of-experts {model_type} models are not supported yet")
    if model_type not in FAMILIES:
        raise UnsupportedModelError(
            f"no adapter for model_type {model_type!r} (supported: {', '.join(SUPPORTED_MODEL_TYPES)})"
        )
    return roles_of_family(model_type, config, tensors, architecture)
