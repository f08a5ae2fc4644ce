"""Lossy weight surgery used by the zoo (each changes the function, unlike ``transforms``).

* int8 round trip: per output row r of every matrix, scale s_r = max|W_r| / 127,
  W_r → s_r · clamp(round(W_r / s_r), −127, 127) (symmetric absmax, dequantised back).
* block restacking (``stack_blocks``): child block i is block b of parent k for a layout of (k, b);
  everything outside the blocks comes from parent 0.  Layer dropping (kept new → old mapping from
  ``kept_layers``), SOLAR-style depth up-scaling (``upscale_layout``: the first L − m and the last
  L − m blocks, m = L // 4, the overlap duplicated) and passthrough frankenmerges
  (``frankenmerge_layout``) are layouts.
* vocabulary selection: keep the embedding (and untied head / MLM bias) rows of listed token ids.
* MLP width pruning: keep, per layer, the k units with the largest ‖gate_j‖·‖up_j‖·‖down_·j‖
  (GELU MLPs: ‖up_j‖·‖down_·j‖), in their original order.
* vocabulary extension: append n rows to the embedding (and the untied head / BERT decoder
  bias), initialised to the mean existing row plus N(0, (0.1·σ)²) noise.
* MLP re-initialisation: fresh N(0, 0.02²) weights (writer scaled by 1/√(2L)), zero biases, in one layer.
* weight averaging: Σ_k w_k θ_k with Σ w_k = 1 (model soup / linear merge).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import cast

import torch

from .architectures import Spec, resize_config, spec_from_config
from .hf_layout import to_canonical, to_hf

StateDict = dict[str, torch.Tensor]


def _canonical(config: dict, state_dict: StateDict) -> tuple[Spec, dict[str, torch.Tensor], torch.dtype]:
    dtype = next(iter(state_dict.values())).dtype
    return spec_from_config(config), {k: v.clone() for k, v in to_canonical(config, state_dict).items()}, dtype


def _hf(config: dict, canon: dict[str, torch.Tensor], dtype: torch.dtype) -> StateDict:
    return {k: v.to(dtype) for k, v in to_hf(config, canon).items()}


def int8_roundtrip(config: dict, state_dict: StateDict) -> tuple[dict, StateDict]:
    """Per-output-row absmax symmetric int8 quantisation of every matrix, dequantised back."""
    spec, c, dtype = _canonical(config, state_dict)
    for name, w in c.items():
        if w.dim() == 2:
            w64 = w.double()
            scale = w64.abs().amax(dim=1, keepdim=True).clamp_min(1e-12) / 127.0
            c[name] = (torch.round(w64 / scale).clamp(-127, 127) * scale).to(w.dtype)
    return dict(config), _hf(config, c, dtype)


def kept_layers(num_layers: int, drop: Sequence[int]) -> list[int]:
    """Old indices of the layers that survive, in order: new layer i is old layer result[i]."""
    return [i for i in range(num_layers) if i not in set(drop)]


def drop_layers(config: dict, state_dict: StateDict, drop: Sequence[int]) -> tuple[dict, StateDict]:
    """Remove the blocks ``drop`` and renumber the remaining ones."""
    keep = kept_layers(spec_from_config(config).layers, drop)
    return stack_blocks(config, [state_dict], [(0, b) for b in keep])


def upscale_layout(num_layers: int) -> list[int]:
    """SOLAR depth up-scaling: parent blocks [0, L − m) then [m, L), m = L // 4 (child i ← result[i])."""
    m = num_layers // 4
    return list(range(num_layers - m)) + list(range(m, num_layers))


def frankenmerge_layout(num_layers: int) -> list[tuple[int, int]]:
    """A passthrough frankenmerge of two L-block parents: (parent, block) for each child block —
    parent 0's blocks [0, 2q), parent 1's [q, 3q), parent 0's [3q, L), q = L // 4."""
    q = num_layers // 4
    return (
        [(0, b) for b in range(2 * q)] + [(1, b) for b in range(q, 3 * q)] + [(0, b) for b in range(3 * q, num_layers)]
    )


def stack_blocks(
    config: dict, state_dicts: Sequence[StateDict], layout: Sequence[tuple[int, int]]
) -> tuple[dict, StateDict]:
    """A model whose block i is block ``layout[i][1]`` of ``state_dicts[layout[i][0]]`` (tensors
    copied as they are); embeddings, final norm and head from ``state_dicts[0]``.  All parents
    share ``config``'s shapes."""
    canon = [_canonical(config, sd)[1] for sd in state_dicts]
    dtype = next(iter(state_dicts[0].values())).dtype
    out = {k: v for k, v in canon[0].items() if not k.startswith("layers.")}
    for new, (parent, old) in enumerate(layout):
        prefix = f"layers.{old}."
        src = canon[parent]
        out.update({f"layers.{new}." + k[len(prefix) :]: v for k, v in src.items() if k.startswith(prefix)})
    new_config = resize_config(config, layers=len(layout))
    return new_config, _hf(new_config, out, dtype)


def select_vocab(config: dict, state_dict: StateDict, keep_ids: Sequence[int]) -> tuple[dict, StateDict]:
    """Keep the token rows ``keep_ids`` (in that order) of the embedding, an untied head and an MLM
    decoder bias; every other tensor unchanged, the config's special token ids renumbered."""
    spec, c, dtype = _canonical(config, state_dict)
    keep = list(keep_ids)
    idx = torch.tensor(keep, dtype=torch.long)
    for name in ("embed", "head.w", "head.b"):
        if name in c:
            c[name] = c[name][idx]
    new_config = resize_config(config, vocab_size=len(idx))
    for key in ("bos_token_id", "eos_token_id", "pad_token_id"):
        if isinstance(config.get(key), int):
            new_config[key] = keep.index(config[key])
    return new_config, _hf(new_config, c, dtype)


def mlp_unit_scores(config: dict, state_dict: StateDict) -> list[torch.Tensor]:
    """Per layer, per MLP unit j: ‖gate_j‖·‖up_j‖·‖down_·j‖ (no gate for GELU MLPs)."""
    spec, c, _ = _canonical(config, state_dict)
    scores = []
    for i in range(spec.layers):
        p = f"layers.{i}."
        s = c[p + "up.w"].double().norm(dim=1) * c[p + "down.w"].double().norm(dim=0)
        if spec.glu:
            s = s * c[p + "gate.w"].double().norm(dim=1)
        scores.append(s)
    return scores


def top_mlp_units(config: dict, state_dict: StateDict, keep: int) -> list[list[int]]:
    """Per layer, the sorted indices of the ``keep`` highest-scoring MLP units."""
    return [sorted(torch.topk(s, keep).indices.tolist()) for s in mlp_unit_scores(config, state_dict)]


def prune_mlp(config: dict, state_dict: StateDict, keep_units: Sequence[Sequence[int]]) -> tuple[dict, StateDict]:
    """Keep only the listed MLP units per layer (same count in every layer)."""
    spec, c, dtype = _canonical(config, state_dict)
    widths = {len(k) for k in keep_units}
    if len(widths) != 1:
        raise ValueError("every layer must keep the same number of MLP units")
    for i, units in enumerate(keep_units):
        p, idx = f"layers.{i}.", torch.tensor(list(units), dtype=torch.long)
        for n in ("gate.w", "up.w", "up.b"):
            if p + n in c:
                c[p + n] = c[p + n][idx]
        c[p + "down.w"] = c[p + "down.w"][:, idx]
    new_config = resize_config(config, intermediate=widths.pop())
    return new_config, _hf(new_config, c, dtype)


def extend_vocab(config: dict, state_dict: StateDict, n_new: int, seed: int) -> tuple[dict, StateDict]:
    """Append ``n_new`` token rows: mean row + N(0, (0.1 σ)²) noise (embedding, untied head, MLM bias)."""
    spec, c, dtype = _canonical(config, state_dict)
    gen = torch.Generator().manual_seed(seed)
    for name in ("embed", "head.w"):
        if name in c:
            w = c[name].float()
            noise = torch.randn(n_new, w.shape[1], generator=gen) * 0.1 * w.std().item()
            c[name] = torch.cat([w, w.mean(0, keepdim=True) + noise]).to(c[name].dtype)
    if "head.b" in c:
        b = c["head.b"]
        c["head.b"] = torch.cat([b, b.mean().expand(n_new).to(b.dtype)])
    new_config = resize_config(config, vocab_size=spec.vocab_size + n_new)
    return new_config, _hf(new_config, c, dtype)


def reinit_mlp(config: dict, state_dict: StateDict, layer: int, seed: int, std: float = 0.02) -> tuple[dict, StateDict]:
    """Fresh initialisation of one layer's MLP (weights N(0, std²), writer ÷ √(2L), zero biases)."""
    spec, c, dtype = _canonical(config, state_dict)
    gen = torch.Generator().manual_seed(seed)
    p = f"layers.{layer}."
    for n in ("gate", "up", "down"):
        if p + n + ".w" in c:
            w = c[p + n + ".w"]
            scale = std / math.sqrt(2 * spec.layers) if n == "down" else std
            c[p + n + ".w"] = (torch.randn(w.shape, generator=gen) * scale).to(w.dtype)
        if p + n + ".b" in c:
            c[p + n + ".b"] = torch.zeros_like(c[p + n + ".b"])
    return dict(config), _hf(config, c, dtype)


def average(
    config: dict, state_dicts: Sequence[StateDict], weights: Sequence[float] | None = None
) -> tuple[dict, StateDict]:
    """Weighted parameter average Σ w_k θ_k (uniform weights by default), computed in float64."""
    weights = list(weights) if weights is not None else [1.0 / len(state_dicts)] * len(state_dicts)
    if abs(sum(weights) - 1.0) > 1e-9:
        raise ValueError("merge weights must sum to 1")
    dtype = next(iter(state_dicts[0].values())).dtype
    # a sum of at least one tensor (state_dicts[0] exists) is a tensor, never the start value 0
    out = {
        k: cast(torch.Tensor, sum(w * sd[k].double() for w, sd in zip(weights, state_dicts))).to(dtype)
        for k in state_dicts[0]
    }
    return dict(config), out
