"""Checkpoints of the zoo: Hub-layout folders in, ``Model`` out, and back.

A folder holds ``config.json`` plus ``model.safetensors`` or shards
``model-0000k-of-0000n.safetensors`` with ``model.safetensors.index.json``
(``{"metadata": {"total_size": bytes}, "weight_map": {tensor: file}}``), exactly as
``save_pretrained`` lays them out.  ``Model`` keeps HF-named tensors and runs the canonical
forward pass of ``architectures`` through ``hf_layout``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from .architectures import Spec, forward, init_canonical, spec_from_config
from .hf_layout import to_canonical, to_hf

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16, "float64": torch.float64}
INDEX_NAME = "model.safetensors.index.json"


@dataclass
class Model:
    """An HF config dictionary and HF-named state dict (``folder`` where it was loaded from)."""

    config: dict
    state_dict: dict[str, torch.Tensor]
    folder: Path | None = None

    @property
    def spec(self) -> Spec:
        return spec_from_config(self.config)

    def canonical(self, dtype: torch.dtype | None = None) -> dict[str, torch.Tensor]:
        """Canonical parameters (see ``architectures``), cast to ``dtype`` if given."""
        canon = to_canonical(self.config, self.state_dict)
        return canon if dtype is None else {k: v.to(dtype) for k, v in canon.items()}

    def logits(self, ids: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """Logits [B, T, V] computed in ``dtype`` (float64 for exact comparisons)."""
        return logits(self.config, self.state_dict, ids, dtype)


def logits(
    config: dict, state_dict: dict[str, torch.Tensor], ids: torch.Tensor, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """Forward pass of an HF-named state dict: logits [B, T, V] in ``dtype``, no gradient."""
    with torch.no_grad():
        canon = {k: v.to(dtype) for k, v in to_canonical(config, state_dict).items()}
        return forward(spec_from_config(config), canon, ids)


def init_state_dict(config: dict, seed: int) -> dict[str, torch.Tensor]:
    """A freshly initialised float32 HF state dict for ``config`` (see ``init_canonical``)."""
    return to_hf(config, init_canonical(spec_from_config(config), seed))


def _shards(state_dict: dict[str, torch.Tensor], num_shards: int) -> list[list[str]]:
    """Split the sorted tensor names into ``num_shards`` contiguous groups of about equal bytes."""
    names = sorted(state_dict)
    total = sum(state_dict[n].numel() * state_dict[n].element_size() for n in names)
    groups: list[list[str]] = [[] for _ in range(num_shards)]
    done = 0
    for name in names:
        idx = min(num_shards - 1, done * num_shards // max(total, 1))
        groups[idx].append(name)
        done += state_dict[name].numel() * state_dict[name].element_size()
    return [g for g in groups if g]


def save_checkpoint(
    folder: Path, config: dict, state_dict: dict[str, torch.Tensor], *, dtype: str = "float32", num_shards: int = 1
) -> list[Path]:
    """Write ``config.json`` (``torch_dtype`` set to ``dtype``) and the weights cast to ``dtype``,
    in one file or ``num_shards`` shards plus index.  Returns the weight files written."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    config = dict(sorted({**config, "torch_dtype": dtype}.items()))
    (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    tensors = {k: v.detach().to(DTYPES[dtype]).contiguous() for k, v in state_dict.items()}
    meta = {"format": "pt"}
    if num_shards <= 1:
        save_file(tensors, str(folder / "model.safetensors"), metadata=meta)
        return [folder / "model.safetensors"]
    groups = _shards(tensors, num_shards)
    files, weight_map = [], {}
    for k, group in enumerate(groups, start=1):
        name = f"model-{k:05d}-of-{len(groups):05d}.safetensors"
        save_file({n: tensors[n] for n in group}, str(folder / name), metadata=meta)
        files.append(folder / name)
        weight_map.update(dict.fromkeys(group, name))
    total = sum(t.numel() * t.element_size() for t in tensors.values())
    index = {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}
    (folder / INDEX_NAME).write_text(json.dumps(index, indent=2) + "\n")
    return files


def load_state_dict(folder: Path) -> dict[str, torch.Tensor]:
    """All tensors of a checkpoint folder (single file or sharded), in their stored dtype."""
    folder = Path(folder)
    index = folder / INDEX_NAME
    if index.exists():
        files = sorted(set(json.loads(index.read_text())["weight_map"].values()))
    else:
        files = ["model.safetensors"]
    out: dict[str, torch.Tensor] = {}
    for name in files:
        out.update(load_file(str(folder / name)))
    return out


def load_model(folder: Path, dtype: torch.dtype | None = torch.float32) -> Model:
    """Load a checkpoint folder; tensors cast to ``dtype`` (None keeps the stored dtype)."""
    folder = Path(folder)
    config = json.loads((folder / "config.json").read_text())
    sd = load_state_dict(folder)
    if dtype is not None:
        sd = {k: v.to(dtype) for k, v in sd.items()}
    return Model(config=config, state_dict=sd, folder=folder)
