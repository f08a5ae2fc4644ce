"""What a GGUF file's names and metadata mean in Hugging Face terms.

Follows llama.cpp's conventions: tensor names from ``gguf-py/gguf/tensor_mapping.py``
(``token_embd``, ``blk.N.attn_q``, ...), hyper-parameters under ``{arch}.*`` keys and the
vocabulary under ``tokenizer.ggml.*`` (ggml ``docs/gguf.md``).

* :func:`hf_name` maps llama.cpp tensor names to the names pedigree's Llama-style adapter reads
  (``token_embd.weight`` -> ``model.embed_tokens.weight``, ``blk.N.attn_q.weight`` ->
  ``model.layers.N.self_attn.q_proj.weight``, ..., ``output.weight`` -> ``lm_head.weight``).
* **Rotary permutation.**  ``convert_hf_to_gguf.py`` permutes the rows of ``q_proj`` and
  ``k_proj`` of ``llama`` models (``LlamaModel.permute``: each head's rows viewed as ``(2, hd/2)``
  and transposed to ``(hd/2, 2)``), because llama.cpp rotates interleaved pairs where Hugging Face
  rotates halves.  :data:`ARCHITECTURES` says which architectures were permuted; the reader undoes
  it (:func:`unpermute_rows`), so a GGUF's rows line up with its source's row for row - the raw
  distances, copy tests and int8 statistics compare stored rows directly.
* :func:`config_from_metadata` builds the ``config.json`` equivalent from ``{arch}.*`` keys.
* :func:`tokenizer_json` writes the ``tokenizer.ggml.*`` vocabulary as a minimal tokenizer.json
  that :mod:`indexer.vocabulary` reads (tokens by id, control/unknown/unused ones special, the
  spelling style from ``tokenizer.ggml.model``).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from pedigree.errors import CheckpointError, UnsupportedModelError
from pedigree.indexer.gguf_format import GGUFValue


@dataclass(frozen=True)
class Architecture:
    """A GGUF ``general.architecture`` pedigree maps: the HF class, model_type and whether the
    converter permuted q/k rows for rotary."""

    hf_class: str
    model_type: str
    permuted_qk: bool


ARCHITECTURES = {
    "llama": Architecture("LlamaForCausalLM", "llama", True),
    "qwen2": Architecture("Qwen2ForCausalLM", "qwen2", False),
    "qwen3": Architecture("Qwen3ForCausalLM", "qwen3", False),
}

TOP_LEVEL = {"token_embd": "model.embed_tokens", "output_norm": "model.norm", "output": "lm_head"}
BLOCK = {
    "attn_norm": "input_layernorm",
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "attn_q_norm": "self_attn.q_norm",
    "attn_k_norm": "self_attn.k_norm",
    "ffn_norm": "post_attention_layernorm",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
}
_BLOCK_NAME = re.compile(r"^blk\.(\d{1,6})\.([a-z_]+)\.(weight|bias)$")
_TOP_NAME = re.compile(r"^([a-z_]+)\.(weight|bias)$")


def hf_name(name: str) -> str:
    """The Hugging Face name of a llama.cpp tensor; an unknown name is kept as it is."""
    match = _BLOCK_NAME.match(name)
    if match and match[2] in BLOCK:
        return f"model.layers.{int(match[1])}.{BLOCK[match[2]]}.{match[3]}"
    match = _TOP_NAME.match(name)
    if match and match[1] in TOP_LEVEL:
        return f"{TOP_LEVEL[match[1]]}.{match[2]}"
    return name


def architecture(metadata: dict[str, GGUFValue]) -> tuple[str, Architecture]:
    arch = metadata.get("general.architecture")
    if not isinstance(arch, str):
        raise CheckpointError("GGUF metadata has no general.architecture string")
    found = ARCHITECTURES.get(arch)
    if found is None:
        raise UnsupportedModelError(
            f"GGUF architecture {arch[:50]!r} is not mapped (supported: {', '.join(ARCHITECTURES)})"
        )
    return arch, found


def _int(metadata: dict[str, GGUFValue], key: str, default: int | None = None) -> int:
    value = metadata.get(key, default)
    if isinstance(value, np.ndarray) and value.size and bool((value == value.flat[0]).all()):
        value = int(value.flat[0])  # per-layer arrays (e.g. feed_forward_length) that agree
    if not isinstance(value, int | np.integer) or isinstance(value, bool) or not 0 < value < 2**40:
        raise CheckpointError(f"GGUF metadata {key} is missing or not a positive integer")
    return int(value)


def _float(metadata: dict[str, GGUFValue], key: str, default: float) -> float:
    value = metadata.get(key, default)
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise CheckpointError(f"GGUF metadata {key} is not a number")
    return float(value)


def config_from_metadata(metadata: dict[str, GGUFValue], names: set[str], vocab_rows: int) -> dict[str, Any]:
    """A config.json equivalent from the ``{arch}.*`` keys (``names``: the HF tensor names)."""
    arch, info = architecture(metadata)
    heads = _int(metadata, f"{arch}.attention.head_count")
    hidden = _int(metadata, f"{arch}.embedding_length")
    tokens = metadata.get("tokenizer.ggml.tokens")
    return {
        "architectures": [info.hf_class],
        "model_type": info.model_type,
        "hidden_size": hidden,
        "num_hidden_layers": _int(metadata, f"{arch}.block_count"),
        "intermediate_size": _int(metadata, f"{arch}.feed_forward_length"),
        "num_attention_heads": heads,
        "num_key_value_heads": _int(metadata, f"{arch}.attention.head_count_kv", heads),
        "head_dim": _int(metadata, f"{arch}.attention.key_length", hidden // heads),
        "rms_norm_eps": _float(metadata, f"{arch}.attention.layer_norm_rms_epsilon", 1e-6),
        "rope_theta": _float(metadata, f"{arch}.rope.freq_base", 10000.0),
        "max_position_embeddings": _int(metadata, f"{arch}.context_length", 2048),
        "vocab_size": len(tokens) if isinstance(tokens, list) and tokens else vocab_rows,
        "tie_word_embeddings": "lm_head.weight" not in names,
        "torch_dtype": "float32",
    }


def permuted_heads(metadata: dict[str, GGUFValue], name: str, rows: int) -> int:
    """Heads whose rows the converter permuted in tensor ``name`` (llama.cpp name), 0 if none."""
    arch, info = architecture(metadata)
    match = _BLOCK_NAME.match(name)
    if not info.permuted_qk or not match or match[2] not in ("attn_q", "attn_k"):
        return 0
    heads = _int(metadata, f"{arch}.attention.head_count")
    if match[2] == "attn_k":
        heads = _int(metadata, f"{arch}.attention.head_count_kv", heads)
    if rows % (2 * heads):
        raise CheckpointError(f"tensor {name!r}: {rows} rows do not split into {heads} heads of even size")
    return heads


def unpermute_rows(stored: torch.Tensor, head_dim: int) -> torch.Tensor:
    """Whole heads of stored rows back in Hugging Face order (the inverse of ``LlamaModel.permute``)."""
    heads = stored.shape[0] // head_dim
    rest = stored.shape[1:]
    return stored.reshape(heads, head_dim // 2, 2, *rest).transpose(1, 2).reshape(stored.shape)


_SPECIAL_TYPES = (2, 3, 5)  # llama_token_type UNKNOWN, CONTROL, UNUSED (NORMAL 1, USER_DEFINED 4, BYTE 6)
_STYLES = {
    "llama": ("Unigram", {"type": "Metaspace"}),
    "gpt2": ("BPE", {"type": "ByteLevel"}),
    "bert": ("WordPiece", {"type": "BertPreTokenizer"}),
}


def tokenizer_json(metadata: dict[str, GGUFValue]) -> bytes | None:
    """``tokenizer.ggml.tokens`` as a tokenizer.json :mod:`indexer.vocabulary` reads, or None if
    the file has no vocabulary (token ids are list positions; scores are not needed)."""
    tokens = metadata.get("tokenizer.ggml.tokens")
    if tokens is None:
        return None
    if not isinstance(tokens, list) or not all(isinstance(t, str) for t in tokens):
        raise CheckpointError("GGUF metadata tokenizer.ggml.tokens is not an array of strings")
    model = metadata.get("tokenizer.ggml.model")
    style = _STYLES.get(model) if isinstance(model, str) else None
    if style is None:
        raise UnsupportedModelError(
            f"GGUF tokenizer model {str(model)[:50]!r} is not mapped (supported: {', '.join(_STYLES)})"
        )
    types = metadata.get("tokenizer.ggml.token_type")
    kinds = types.tolist() if isinstance(types, np.ndarray) and types.shape == (len(tokens),) else []
    added = [{"id": i, "content": tokens[i], "special": True} for i, kind in enumerate(kinds) if kind in _SPECIAL_TYPES]
    spec = {
        "added_tokens": added,
        "pre_tokenizer": style[1],
        "model": {"type": style[0], "vocab": [[t, 0.0] for t in tokens]},
        "pedigree": "synthesised from GGUF tokenizer.ggml.* metadata",
    }
    return json.dumps(spec, ensure_ascii=False).encode()
