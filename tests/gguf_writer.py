"""Test fixtures: a zoo Llama written as GGUF the way llama.cpp's ``convert_hf_to_gguf.py`` does.

The ``gguf`` package only WRITES here (its writer and its Q8_0/Q4_0/BF16 quantizers); pedigree's
reader under test never sees it.  As the converter does: q/k rows permuted for rotary
(``LlamaModel.permute``), llama.cpp tensor names, ``llama.*`` hyper-parameters, the vocabulary in
``tokenizer.ggml.*``, 1-D tensors kept F32 and 2-D tensors whose rows do not fill whole blocks
falling back to F16.
"""

from __future__ import annotations

import json
from pathlib import Path

import gguf
import numpy as np
from safetensors.numpy import load_file

HF_TO_GGUF = {
    "model.embed_tokens.weight": "token_embd.weight",
    "model.norm.weight": "output_norm.weight",
    "lm_head.weight": "output.weight",
}
BLOCK = {
    "input_layernorm": "attn_norm",
    "self_attn.q_proj": "attn_q",
    "self_attn.k_proj": "attn_k",
    "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output",
    "post_attention_layernorm": "ffn_norm",
    "mlp.gate_proj": "ffn_gate",
    "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
}


def gguf_name(name: str) -> str:
    if name in HF_TO_GGUF:
        return HF_TO_GGUF[name]
    _, _, index, rest = name.split(".", 3)
    part, _, kind = rest.rpartition(".")
    return f"blk.{index}.{BLOCK[part]}.{kind}"


def permute(w: np.ndarray, heads: int) -> np.ndarray:
    """convert_hf_to_gguf.LlamaModel.permute."""
    return w.reshape(heads, 2, w.shape[0] // heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def source_tensors(folder: Path) -> dict[str, np.ndarray]:
    return {k: v.astype(np.float32) for k, v in load_file(str(folder / "model.safetensors")).items()}


def write_llama_gguf(folder: Path, out: Path, qtype: str, *, extra: dict[str, int] | None = None) -> Path:
    """``folder`` (a zoo Llama) as one GGUF at ``out``: weights of 2-D tensors in ``qtype``."""
    config = json.loads((folder / "config.json").read_text())
    spec = json.loads((folder / "tokenizer.json").read_text())
    writer = gguf.GGUFWriter(str(out), "llama")
    writer.add_name(folder.name)
    writer.add_context_length(config["max_position_embeddings"])
    writer.add_embedding_length(config["hidden_size"])
    writer.add_block_count(config["num_hidden_layers"])
    writer.add_feed_forward_length(config["intermediate_size"])
    writer.add_head_count(config["num_attention_heads"])
    writer.add_head_count_kv(config["num_key_value_heads"])
    writer.add_rope_dimension_count(config["head_dim"])
    writer.add_layer_norm_rms_eps(config["rms_norm_eps"])
    writer.add_rope_freq_base(config["rope_theta"])
    for key, value in (extra or {}).items():
        writer.add_uint32(key, value)
    vocab = sorted(spec["model"]["vocab"].items(), key=lambda kv: kv[1])
    specials = {t["id"] for t in spec["added_tokens"] if t.get("special")}
    writer.add_tokenizer_model("llama")
    writer.add_token_list([token for token, _ in vocab])
    writer.add_token_scores([0.0] * len(vocab))
    writer.add_token_types([3 if i in specials else 6 if token.startswith("<0x") else 1 for token, i in vocab])
    quant = getattr(gguf.GGMLQuantizationType, qtype)
    for name, w in source_tensors(folder).items():
        if name.endswith("q_proj.weight"):
            w = permute(w, config["num_attention_heads"])
        elif name.endswith("k_proj.weight"):
            w = permute(w, config["num_key_value_heads"])
        if w.ndim == 1 or qtype == "F32":
            writer.add_tensor(gguf_name(name), w.astype(np.float32))
        elif qtype == "F16" or w.shape[-1] % gguf.GGML_QUANT_SIZES[quant][0]:
            writer.add_tensor(gguf_name(name), w.astype(np.float16))
        else:
            writer.add_tensor(gguf_name(name), gguf.quants.quantize(w, quant), raw_dtype=quant)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return out


def gguf_folder(source: Path, root: Path, qtype: str) -> Path:
    """A checkpoint folder holding only ``model-{qtype}.gguf`` and a card naming ``source``."""
    root.mkdir(parents=True, exist_ok=True)
    write_llama_gguf(source, root / f"model-{qtype}.gguf", qtype)
    (root / "README.md").write_text(f"# {source.name} as {qtype} GGUF\n")  # no base_model: direction from the weights
    return root
