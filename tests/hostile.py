"""Builders of hostile / malformed checkpoint folders, reusable by any test.

Every ``write_*`` function takes a directory (created if missing), writes one checkpoint folder
into it - a plausible tiny Llama ``config.json`` plus the broken weights - and returns that
directory.  :data:`HOSTILE_CASES` maps a case name to its builder and :data:`HOSTILE_MESSAGES`
to a distinctive substring of the :class:`~pedigree.errors.CheckpointError` it must cause (when
the folder is opened with :func:`indexer.local_checkpoint.open_checkpoint`).

All files are tiny on disk; the >100 MB case is a sparse file.
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

TINY_LLAMA_CONFIG: dict[str, Any] = {
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "hidden_size": 16,
    "intermediate_size": 32,
    "num_attention_heads": 2,
    "num_key_value_heads": 2,
    "num_hidden_layers": 1,
    "vocab_size": 32,
    "max_position_embeddings": 64,
    "rms_norm_eps": 1e-6,
    "tie_word_embeddings": False,
    "torch_dtype": "float32",
}


def _prepare(d: Path) -> Path:
    d = Path(d)
    d.mkdir(parents=True, exist_ok=True)
    (d / "config.json").write_text(json.dumps(TINY_LLAMA_CONFIG, indent=1))
    return d


def tiny_llama_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    """A one-layer Llama-named state dict with ``TINY_LLAMA_CONFIG`` shapes."""
    g = torch.Generator().manual_seed(seed)
    h, i, v = 16, 32, 32

    def r(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=g)

    p = "model.layers.0."
    return {
        "model.embed_tokens.weight": r(v, h),
        p + "self_attn.q_proj.weight": r(h, h),
        p + "self_attn.k_proj.weight": r(h, h),
        p + "self_attn.v_proj.weight": r(h, h),
        p + "self_attn.o_proj.weight": r(h, h),
        p + "mlp.gate_proj.weight": r(i, h),
        p + "mlp.up_proj.weight": r(i, h),
        p + "mlp.down_proj.weight": r(h, i),
        p + "input_layernorm.weight": torch.ones(h),
        p + "post_attention_layernorm.weight": torch.ones(h),
        "model.norm.weight": torch.ones(h),
        "lm_head.weight": r(v, h),
    }


def write_valid_tiny_llama(d: Path, seed: int = 0) -> Path:
    """A small valid Llama checkpoint written with ``safetensors.torch.save_file``."""
    d = _prepare(d)
    save_file(tiny_llama_state_dict(seed), str(d / "model.safetensors"), metadata={"format": "pt"})
    return d


def raw_safetensors(
    header: Any, data: bytes = b"", *, header_bytes: bytes | None = None, declared_len: int | None = None
) -> bytes:
    """Bytes of a safetensors file with an arbitrary header (JSON-encoded unless ``header_bytes``
    is given) and an arbitrary declared length."""
    hb = header_bytes if header_bytes is not None else json.dumps(header).encode()
    n = len(hb) if declared_len is None else declared_len
    return struct.pack("<Q", n) + hb + data


def _write_weights(d: Path, blob: bytes, name: str = "model.safetensors") -> Path:
    d = _prepare(d)
    (d / name).write_bytes(blob)
    return d


def _entry(dtype: str, shape: list[Any], begin: Any, end: Any) -> dict[str, Any]:
    return {"dtype": dtype, "shape": shape, "data_offsets": [begin, end]}


# -- header framing --------------------------------------------------------------------------


def write_empty_file(d: Path) -> Path:
    return _write_weights(d, b"\x01\x02\x03")


def write_header_too_long(d: Path) -> Path:
    """Declared header length runs past the end of a small file."""
    return _write_weights(d, raw_safetensors({}, b"\0" * 16, declared_len=10_000))


def write_header_over_limit(d: Path) -> Path:
    """Declared header of 100 MB + 1 in a (sparse) file big enough to hold it."""
    d = _prepare(d)
    path = d / "model.safetensors"
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", 100_000_001) + b"{")
        f.truncate(8 + 100_000_001 + 64)
    return d


def write_invalid_json(d: Path) -> Path:
    return _write_weights(d, raw_safetensors(None, header_bytes=b'{"a": {"dtype": "F32",,}'))


def write_invalid_utf8(d: Path) -> Path:
    return _write_weights(d, raw_safetensors(None, header_bytes=b'{"\xff\xfe": 1}'))


def write_header_not_object(d: Path) -> Path:
    return _write_weights(d, raw_safetensors([1, 2, 3]))


def write_deeply_nested_json(d: Path) -> Path:
    return _write_weights(d, raw_safetensors(None, header_bytes=b"[" * 200_000 + b"]" * 200_000))


def write_duplicate_tensor_name(d: Path) -> Path:
    e = json.dumps(_entry("F32", [1], 0, 4))
    hb = f'{{"w": {e}, "w": {e}}}'.encode()
    return _write_weights(d, raw_safetensors(None, b"\0" * 4, header_bytes=hb))


def write_bad_metadata(d: Path) -> Path:
    return _write_weights(d, raw_safetensors({"__metadata__": {"format": 1}}))


# -- tensor entries --------------------------------------------------------------------------


def write_entry_not_object(d: Path) -> Path:
    return _write_weights(d, raw_safetensors({"w": [1, 2]}))


def write_unknown_dtype(d: Path) -> Path:
    return _write_weights(d, raw_safetensors({"w": _entry("F128", [1], 0, 16)}, b"\0" * 16))


def write_negative_shape(d: Path) -> Path:
    return _write_weights(d, raw_safetensors({"w": _entry("F32", [-1, 2], 0, 8)}, b"\0" * 8))


def write_bool_in_shape(d: Path) -> Path:
    return _write_weights(d, raw_safetensors({"w": _entry("U8", [True, 2], 0, 2)}, b"\0" * 2))


def write_float_offsets(d: Path) -> Path:
    return _write_weights(d, raw_safetensors({"w": _entry("U8", [2], 0.0, 2.0)}, b"\0" * 2))


def write_reversed_offsets(d: Path) -> Path:
    return _write_weights(d, raw_safetensors({"w": _entry("U8", [0], 4, 2)}, b"\0" * 8))


def write_offsets_out_of_range(d: Path) -> Path:
    return _write_weights(d, raw_safetensors({"w": _entry("F32", [4], 0, 16)}, b"\0" * 8))


def write_truncated_file(d: Path) -> Path:
    """A valid file with the last bytes of its data cut off."""
    d = write_valid_tiny_llama(d)
    path = d / "model.safetensors"
    os.truncate(path, path.stat().st_size - 10)
    return d


def write_overlapping_offsets(d: Path) -> Path:
    h = {"a": _entry("F32", [4], 0, 16), "b": _entry("F32", [4], 8, 24)}
    return _write_weights(d, raw_safetensors(h, b"\0" * 24))


def write_dtype_shape_mismatch(d: Path) -> Path:
    return _write_weights(d, raw_safetensors({"w": _entry("F32", [3, 3], 0, 16)}, b"\0" * 16))


def write_huge_shape(d: Path) -> Path:
    """A shape whose element count is astronomically larger than the file."""
    h = {"w": _entry("F32", [2**62, 2**62, 2**62], 0, 16)}
    return _write_weights(d, raw_safetensors(h, b"\0" * 16))


def write_subbyte_misaligned(d: Path) -> Path:
    """Three F4 elements are 12 bits: not whole bytes."""
    return _write_weights(d, raw_safetensors({"w": _entry("F4", [3], 0, 2)}, b"\0" * 2))


# -- folders and shards ----------------------------------------------------------------------


def write_no_weights(d: Path) -> Path:
    return _prepare(d)


def write_pickle_only(d: Path) -> Path:
    """Only ``pytorch_model.bin`` holding a legacy (non-zip) pickle: refused by its first bytes,
    never unpickled (issue 16 reads zip checkpoints)."""
    d = _prepare(d)
    (d / "pytorch_model.bin").write_bytes(b"\x80\x04NOT-A-REAL-PICKLE. never open me")
    return d


def write_weights_is_directory(d: Path) -> Path:
    d = _prepare(d)
    (d / "model.safetensors").mkdir()
    return d


def write_fifo_weights(d: Path) -> Path:
    """``model.safetensors`` is a named pipe: opening it naively would block forever."""
    d = _prepare(d)
    os.mkfifo(d / "model.safetensors")
    return d


def write_ambiguous_shards(d: Path) -> Path:
    """Two safetensors files and no index."""
    d = _prepare(d)
    sd = tiny_llama_state_dict()
    save_file({"model.norm.weight": sd["model.norm.weight"]}, str(d / "a.safetensors"))
    save_file({"lm_head.weight": sd["lm_head.weight"]}, str(d / "b.safetensors"))
    return d


def _write_sharded(
    d: Path, weight_map: dict[str, Any], shards: dict[str, dict[str, torch.Tensor]], index_text: str | None = None
) -> Path:
    d = _prepare(d)
    for fname, tensors in shards.items():
        save_file(tensors, str(d / fname))
    idx = {"metadata": {"total_size": 0}, "weight_map": weight_map}
    (d / "model.safetensors.index.json").write_text(index_text or json.dumps(idx))
    return d


def _two_shards() -> tuple[dict[str, str], dict[str, dict[str, torch.Tensor]]]:
    sd = tiny_llama_state_dict()
    names = sorted(sd)
    half = len(names) // 2
    shards = {
        "model-00001-of-00002.safetensors": {n: sd[n] for n in names[:half]},
        "model-00002-of-00002.safetensors": {n: sd[n] for n in names[half:]},
    }
    wm = {n: f for f, ts in shards.items() for n in ts}
    return wm, shards


def write_valid_sharded_tiny_llama(d: Path) -> Path:
    """The valid tiny Llama split over two shards with an index."""
    wm, shards = _two_shards()
    return _write_sharded(d, wm, shards)


def write_shard_path_traversal(d: Path) -> Path:
    wm, shards = _two_shards()
    wm = {n: "../" + f if f.startswith("model-00002") else f for n, f in wm.items()}
    return _write_sharded(d, wm, shards)


def write_shard_absolute_path(d: Path) -> Path:
    wm, shards = _two_shards()
    wm[next(iter(wm))] = "/etc/passwd"
    return _write_sharded(d, wm, shards)


def write_missing_shard_file(d: Path) -> Path:
    wm, shards = _two_shards()
    del shards["model-00002-of-00002.safetensors"]
    return _write_sharded(d, wm, shards)


def write_missing_shard_tensor(d: Path) -> Path:
    wm, shards = _two_shards()
    wm["model.layers.0.self_attn.rotary_emb.inv_freq"] = "model-00001-of-00002.safetensors"
    return _write_sharded(d, wm, shards)


def write_duplicate_across_shards(d: Path) -> Path:
    wm, shards = _two_shards()
    first, second = shards.values()
    name = next(iter(first))
    second[name] = first[name].clone()
    return _write_sharded(d, wm, shards)


def write_index_invalid_json(d: Path) -> Path:
    wm, shards = _two_shards()
    return _write_sharded(d, wm, shards, index_text='{"weight_map": {')


def write_index_without_weight_map(d: Path) -> Path:
    wm, shards = _two_shards()
    return _write_sharded(d, wm, shards, index_text='{"metadata": {}, "weight_map": ["x"]}')


HOSTILE_CASES: dict[str, Callable[[Path], Path]] = {
    "empty_file": write_empty_file,
    "header_too_long": write_header_too_long,
    "header_over_limit": write_header_over_limit,
    "invalid_json": write_invalid_json,
    "invalid_utf8": write_invalid_utf8,
    "header_not_object": write_header_not_object,
    "deeply_nested_json": write_deeply_nested_json,
    "duplicate_tensor_name": write_duplicate_tensor_name,
    "bad_metadata": write_bad_metadata,
    "entry_not_object": write_entry_not_object,
    "unknown_dtype": write_unknown_dtype,
    "negative_shape": write_negative_shape,
    "bool_in_shape": write_bool_in_shape,
    "float_offsets": write_float_offsets,
    "reversed_offsets": write_reversed_offsets,
    "offsets_out_of_range": write_offsets_out_of_range,
    "truncated_file": write_truncated_file,
    "overlapping_offsets": write_overlapping_offsets,
    "dtype_shape_mismatch": write_dtype_shape_mismatch,
    "huge_shape": write_huge_shape,
    "subbyte_misaligned": write_subbyte_misaligned,
    "no_weights": write_no_weights,
    "pickle_only": write_pickle_only,
    "weights_is_directory": write_weights_is_directory,
    "ambiguous_shards": write_ambiguous_shards,
    "shard_path_traversal": write_shard_path_traversal,
    "shard_absolute_path": write_shard_absolute_path,
    "missing_shard_file": write_missing_shard_file,
    "missing_shard_tensor": write_missing_shard_tensor,
    "duplicate_across_shards": write_duplicate_across_shards,
    "index_invalid_json": write_index_invalid_json,
    "index_without_weight_map": write_index_without_weight_map,
}
if hasattr(os, "mkfifo"):
    HOSTILE_CASES["fifo_weights"] = write_fifo_weights

HOSTILE_MESSAGES: dict[str, str] = {
    "empty_file": "fewer than 8 bytes",
    "header_too_long": "runs past the end of the file",
    "header_over_limit": "exceeds the 100 MB limit",
    "invalid_json": "invalid JSON",
    "invalid_utf8": "not valid UTF-8",
    "header_not_object": "not a JSON object",
    "deeply_nested_json": "nested too deeply",
    "duplicate_tensor_name": "duplicate key 'w'",
    "bad_metadata": "__metadata__",
    "entry_not_object": "not an object",
    "unknown_dtype": "unknown dtype 'F128'",
    "negative_shape": "not a list of non-negative integers",
    "bool_in_shape": "not a list of non-negative integers",
    "float_offsets": "are not two non-negative integers",
    "reversed_offsets": "begin after end",
    "offsets_out_of_range": "beyond the end of the data section",
    "truncated_file": "beyond the end of the data section",
    "overlapping_offsets": "overlapping",
    "dtype_shape_mismatch": "does not match",
    "huge_shape": "need more than 16 bytes",
    "subbyte_misaligned": "does not fill whole bytes",
    "no_weights": "no weights found",
    "pickle_only": "a legacy (non-zip) PyTorch pickle, which is never unpickled",
    "weights_is_directory": "not a regular file",
    "fifo_weights": "not a regular file",
    "ambiguous_shards": "but no model.safetensors.index.json",
    "shard_path_traversal": "is not a plain file name",
    "shard_absolute_path": "is not a plain file name",
    "missing_shard_file": "is missing",
    "missing_shard_tensor": "is not in that shard",
    "duplicate_across_shards": "more than one shard",
    "index_invalid_json": "invalid JSON",
    "index_without_weight_map": "no weight_map",
}
