"""Synthetic Llama-shaped checkpoints at full scale, streamed to disk (for speed benchmarks).

``write_llama(folder, shape, seed, child_of=None)`` writes a sharded bf16 checkpoint with real Llama
tensor names, a config.json and a tokenizer.json whose vocabulary contains pedigree's probe
strings.  Tensors are generated one at a time (never the whole model in memory) from a generator
seeded by (seed, tensor), so a parent can be regenerated exactly when its child is written:

    child = transform(parent + drift)

with drift ~ N(0, (drift · std(parent tensor))²) per weight, and the transform a function-preserving
re-parametrisation: a permutation of the residual stream, an independent permutation of every
block's MLP units, and a per-unit rescaling (up × s, down ÷ s, s in ±[0.5, 2]).
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from pathlib import Path

import torch

from pedigree.indexer.probes import probe_keys


@dataclass(frozen=True)
class LlamaShape:
    layers: int = 32
    hidden: int = 4096
    heads: int = 32
    mlp: int = 11008
    vocab: int = 32000
    layers_per_shard: int = 8


@dataclass(frozen=True)
class ChildOf:
    seed: int  # the parent's seed
    drift: float = 0.05  # relative std of the fine-tuning drift
    transform_seed: int = 1


def tensor_specs(shape: LlamaShape) -> list[tuple[str, tuple[int, ...], int]]:
    """(name, shape, shard) in file order."""
    h, f = shape.hidden, shape.mlp
    specs = [("model.embed_tokens.weight", (shape.vocab, h), 0)]
    for i in range(shape.layers):
        shard = i // shape.layers_per_shard
        p = f"model.layers.{i}."
        specs += [
            (p + "input_layernorm.weight", (h,), shard),
            (p + "self_attn.q_proj.weight", (h, h), shard),
            (p + "self_attn.k_proj.weight", (h, h), shard),
            (p + "self_attn.v_proj.weight", (h, h), shard),
            (p + "self_attn.o_proj.weight", (h, h), shard),
            (p + "post_attention_layernorm.weight", (h,), shard),
            (p + "mlp.gate_proj.weight", (f, h), shard),
            (p + "mlp.up_proj.weight", (f, h), shard),
            (p + "mlp.down_proj.weight", (h, f), shard),
        ]
    last = (shape.layers - 1) // shape.layers_per_shard
    return specs + [("model.norm.weight", (h,), last), ("lm_head.weight", (shape.vocab, h), last)]


def _generate(name: str, size: tuple[int, ...], seed: int, index: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed * 100_003 + index)
    if len(size) == 1:
        return 1.0 + 0.1 * torch.randn(size, generator=gen)
    return 0.02 * torch.randn(size, generator=gen)


def _transform(name: str, tensor: torch.Tensor, child: ChildOf, shape: LlamaShape, index: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(child.seed * 7919 + index + 1)
    tensor = tensor + child.drift * tensor.std() * torch.randn(tensor.shape, generator=gen)
    tgen = torch.Generator().manual_seed(child.transform_seed)
    residual = torch.randperm(shape.hidden, generator=tgen)
    if ".layers." in name and ".mlp." in name:
        layer = int(name.split(".layers.")[1].split(".")[0])
        lgen = torch.Generator().manual_seed(child.transform_seed * 1_000 + layer)
        units = torch.randperm(shape.mlp, generator=lgen)
        scales = (0.5 + 1.5 * torch.rand(shape.mlp, generator=lgen)) * torch.where(
            torch.rand(shape.mlp, generator=lgen) < 0.5, -1.0, 1.0
        )
        if name.endswith("down_proj.weight"):
            return (tensor[:, units] / scales[units][None, :])[residual]
        tensor = tensor[units][:, residual]
        return tensor * scales[units][:, None] if name.endswith("up_proj.weight") else tensor
    if tensor.dim() == 1:
        return tensor[residual]
    if name.endswith("o_proj.weight"):
        return tensor[residual]
    return tensor[:, residual]  # q, k, v, embedding, head read the residual stream


def _tokenizer(shape: LlamaShape) -> dict:
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2}
    for key in probe_keys():
        if len(vocab) >= shape.vocab:
            break
        vocab.setdefault(key.replace("␣", "▁"), len(vocab))
    while len(vocab) < shape.vocab:
        vocab[f"▁tok{len(vocab)}"] = len(vocab)
    return {
        "version": "1.0",
        "added_tokens": [{"id": i, "content": t, "special": True} for t, i in list(vocab.items())[:3]],
        "pre_tokenizer": {"type": "Metaspace", "replacement": "▁"},
        "decoder": {"type": "Metaspace", "replacement": "▁"},
        "model": {"type": "BPE", "vocab": vocab, "merges": [], "byte_fallback": False},
    }


def write_llama(folder: Path, shape: LlamaShape, seed: int, child_of: ChildOf | None = None) -> int:
    """Write the checkpoint; returns its total size in bytes.  ``seed`` is ignored for a child."""
    folder.mkdir(parents=True, exist_ok=True)
    specs = tensor_specs(shape)
    shards = sorted({shard for _, _, shard in specs})
    names = [f"model-{s + 1:05d}-of-{len(shards):05d}.safetensors" for s in shards]
    weight_map, total = {}, 0
    for shard, file_name in zip(shards, names):
        entries = [(i, n, s) for i, (n, s, sh) in enumerate(specs) if sh == shard]
        header, offset = {}, 0
        for _, name, size in entries:
            nbytes = 2 * int(torch.tensor(size).prod())
            header[name] = {"dtype": "BF16", "shape": list(size), "data_offsets": [offset, offset + nbytes]}
            offset += nbytes
            weight_map[name] = file_name
        blob = json.dumps(header).encode()
        blob += b" " * (-len(blob) % 8)
        with open(folder / file_name, "wb") as out:
            out.write(struct.pack("<Q", len(blob)) + blob)
            for index, name, size in entries:
                tensor = _generate(name, size, child_of.seed if child_of else seed, index)
                if child_of is not None:
                    tensor = _transform(name, tensor, child_of, shape, index)
                out.write(tensor.to(torch.bfloat16).contiguous().view(torch.int16).numpy().tobytes())
        total += (folder / file_name).stat().st_size
    (folder / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map})
    )
    config = {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": shape.hidden,
        "intermediate_size": shape.mlp,
        "num_attention_heads": shape.heads,
        "num_key_value_heads": shape.heads,
        "num_hidden_layers": shape.layers,
        "vocab_size": shape.vocab,
        "rms_norm_eps": 1e-5,
        "torch_dtype": "bfloat16",
        "tie_word_embeddings": False,
    }
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    (folder / "tokenizer.json").write_text(json.dumps(_tokenizer(shape)))
    return total
