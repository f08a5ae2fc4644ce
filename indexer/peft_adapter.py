"""PEFT LoRA adapters (issue 16, parts 3 and 6): ``adapter_config.json`` + ``adapter_model.safetensors``
(or ``adapter_model.bin``), in a local folder or a Hub repo (``crawler.http_adapter``).

Layout followed (PEFT's ``save_pretrained`` for ``peft_type: LORA``, see peft ``utils/save_and_load.py``
and ``tuners/lora``): the config names ``r``, ``lora_alpha``, ``target_modules`` and
``base_model_name_or_path``; the weights file is a safetensors file (format:
huggingface/safetensors README), or with ``safe_serialization=False`` a ``torch.save`` zip read
by :mod:`indexer.torch_zip_format` (never unpickled), holding, per adapted module,
``base_model.model.<module path>.lora_A.weight`` of shape ``[r, in]`` and
``.lora_B.weight`` of shape ``[out, r]``; the module's own weight in the base is
``<module path>.weight`` of shape ``[out, in]``.

Only the config and the safetensors *header* are read (never the LoRA values): an adapter alone
has no fingerprint - it is recorded with an ``adapter`` edge to its base.  Every size is capped
before it is read; every problem is a one-line :class:`~pedigree.errors.CheckpointError` (the
file is malformed) or :class:`~pedigree.errors.UnsupportedModelError` (well formed, but not a
LoRA adapter we can place).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pedigree.errors import CheckpointError, UnsupportedModelError
from pedigree.indexer import torch_zip_format
from pedigree.indexer.bounded_json import loads_json
from pedigree.indexer.local_files import open_regular, pread_into, read_small_file
from pedigree.indexer.safetensors_format import (
    INDEX_FILE,
    TORCH_INDEX,
    header_length,
    is_torch_weights,
    parse_header,
)

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
ADAPTER_BIN = "adapter_model.bin"
ADAPTER_WEIGHT_FILES = (ADAPTER_WEIGHTS, ADAPTER_BIN)
"""The adapter's own weights, in the order they are looked for (PEFT writes one of them)."""
MAX_ADAPTER_CONFIG_BYTES = 1 * 2**20
MAX_ADAPTER_HEADER_BYTES = 16 * 2**20
MAX_ADAPTER_TENSORS = 20_000
MAX_RANK = 4096
MAX_TARGET_MODULES = 1024
MAX_NAME = 300
ADAPTER_MODEL_TYPE = "peft_lora"
ADAPTER_ARCHITECTURE = "PeftLoraAdapter"
_LORA = re.compile(r"^base_model\.model\.(?P<module>[A-Za-z0-9_.]{1,250})\.lora_(?P<part>[AB])(?:\.default)?\.weight$")


@dataclass(frozen=True)
class LoraModule:
    """One adapted module: its path in the base and the shapes of its two factors."""

    module: str
    a_shape: tuple[int, ...]
    b_shape: tuple[int, ...]


@dataclass(frozen=True)
class AdapterInfo:
    """What an adapter folder declares and holds (shapes only)."""

    base: str
    rank: int
    alpha: float
    target_modules: tuple[str, ...]
    modules: tuple[LoraModule, ...]
    weights: str = ADAPTER_WEIGHTS

    def as_config(self) -> dict[str, Any]:
        """What is stored as the adapter model's ``config`` (``ModelRecord.config``)."""
        return {
            "model_type": ADAPTER_MODEL_TYPE,
            "peft": {
                "base_model_name_or_path": self.base,
                "r": self.rank,
                "lora_alpha": self.alpha,
                "target_modules": list(self.target_modules),
                "modules": len(self.modules),
                "weights": self.weights,
            },
        }

    def edge_evidence(self) -> dict[str, Any]:
        return {"peft": True, "rank": self.rank, "target_modules": list(self.target_modules)}


def _full_weights(name: str) -> bool:
    lower = name.lower()
    return name in (INDEX_FILE, TORCH_INDEX) or lower.endswith((".safetensors", ".gguf")) or is_torch_weights(name)


def adapter_only(names: Iterable[str]) -> bool:
    """Whether a checkpoint's file names are a PEFT adapter's: an ``adapter_config.json`` at the
    root and no full weights there (no safetensors, PyTorch or GGUF weights, or their index, other
    than :data:`ADAPTER_WEIGHT_FILES`) - one rule for local folders and Hub repos.  A full
    checkpoint beside a leftover adapter config is read as a full model, so a merged adapter is
    still found by its weights; the adapter's own weights are checked when read."""
    root = [n for n in names if "/" not in n]
    return ADAPTER_CONFIG in root and not any(_full_weights(n) for n in root if n not in ADAPTER_WEIGHT_FILES)


def adapter_weights_file(names: Iterable[str]) -> str | None:
    """The adapter weights file among a root's names (safetensors first), None when there is none."""
    present = set(names)
    return next((n for n in ADAPTER_WEIGHT_FILES if n in present), None)


def is_adapter_folder(path: str | os.PathLike[str]) -> bool:
    """A local folder that :func:`adapter_only` takes for a PEFT adapter."""
    root = Path(path)
    if not (root / ADAPTER_CONFIG).is_file():
        return False
    return adapter_only(p.name for p in root.iterdir())


def _clean_name(value: Any, what: str, path: str) -> str:
    if not isinstance(value, str) or not value or len(value) > MAX_NAME or not value.isprintable():
        raise CheckpointError(f"{what} is not a short printable string", path=path)
    return value


def parse_adapter_config(raw: bytes, path: str) -> tuple[str, int, float, tuple[str, ...]]:
    """(base, r, lora_alpha, target_modules) of a LoRA ``adapter_config.json``."""
    config = loads_json(raw, ADAPTER_CONFIG, path)
    if not isinstance(config, dict):
        raise CheckpointError(f"{ADAPTER_CONFIG} is a JSON {type(config).__name__}, not an object", path=path)
    peft_type = config.get("peft_type", "LORA")
    if peft_type != "LORA":
        raise UnsupportedModelError(f"PEFT adapter type {str(peft_type)[:40]!r} (only LORA adapters are read)")
    base = _clean_name(config.get("base_model_name_or_path"), "base_model_name_or_path", path)
    rank = config.get("r")
    if type(rank) is not int or not 0 < rank <= MAX_RANK:
        raise CheckpointError(f"LoRA rank r must be an integer in 1..{MAX_RANK}", path=path)
    alpha = config.get("lora_alpha", rank)
    if type(alpha) not in (int, float) or not abs(alpha) < 1e9:
        raise CheckpointError("lora_alpha is not a finite number", path=path)
    targets = config.get("target_modules")
    if isinstance(targets, str):
        targets = [targets]
    if not isinstance(targets, list) or not 0 < len(targets) <= MAX_TARGET_MODULES:
        raise CheckpointError(f"target_modules must be a name or a list of 1..{MAX_TARGET_MODULES} names", path=path)
    names = tuple(_clean_name(t, "a target module", path) for t in targets)
    return base, rank, float(alpha), names


def read_adapter_header(path: Path) -> dict[str, tuple[int, ...]]:
    """Tensor name -> shape from the safetensors header of the adapter weights (header only)."""
    display = str(path)
    fd, size = open_regular(path)
    try:
        first = bytearray(8)
        if size < 8:
            raise CheckpointError(f"file has fewer than 8 bytes ({size}); not a safetensors file", path=display)
        pread_into(fd, memoryview(first), 0, display)
        n = header_length(first, size, display)
        if n > MAX_ADAPTER_HEADER_BYTES:
            raise CheckpointError(f"adapter header of {n} bytes exceeds {MAX_ADAPTER_HEADER_BYTES}", path=display)
        header = bytearray(n)
        pread_into(fd, memoryview(header), 8, display)
    finally:
        os.close(fd)
    tensors, _ = parse_header(header, file_size=size, file=ADAPTER_WEIGHTS, path=display)
    return {name: info.shape for name, info in tensors.items()}


def read_adapter_zip_header(path: Path) -> dict[str, tuple[int, ...]]:
    """Tensor name -> shape of an ``adapter_model.bin`` (a ``torch.save`` zip: its directory and
    ``data.pkl`` read by the restricted interpreter, never the tensor values)."""
    display = str(path)
    fd, size = open_regular(path)

    def spans(wanted: Iterable[tuple[int, int]]) -> list[bytes]:
        out = []
        for begin, end in wanted:
            buf = bytearray(end - begin)
            pread_into(fd, memoryview(buf), begin, display)
            out.append(bytes(buf))
        return out

    try:
        tensors, _ = torch_zip_format.read_header(size, spans, file=ADAPTER_BIN, path=display)
    finally:
        os.close(fd)
    return {name: info.shape for name, info in tensors.items()}


def lora_modules(
    shapes: Mapping[str, tuple[int, ...]], rank: int, targets: tuple[str, ...], path: str
) -> tuple[LoraModule, ...]:
    """Pair every ``lora_A``/``lora_B`` tensor by module; each a matrix of rank ``rank``."""
    parts: dict[str, dict[str, tuple[int, ...]]] = {}
    for name, shape in shapes.items():
        match = _LORA.match(name)
        if match is None:
            raise CheckpointError(f"tensor {name[:120]!r} is not a PEFT LoRA factor", path=path)
        parts.setdefault(match["module"], {})[match["part"]] = shape
    if not parts:
        raise CheckpointError("adapter holds no LoRA tensors", path=path)
    modules = []
    for module, pair in sorted(parts.items()):
        if set(pair) != {"A", "B"}:
            missing = "lora_B" if "A" in pair else "lora_A"
            raise CheckpointError(f"module {module[:120]!r} has no {missing} tensor", path=path)
        a, b = pair["A"], pair["B"]
        if len(a) != 2 or len(b) != 2:
            raise CheckpointError(f"module {module[:120]!r}: LoRA factors are not matrices", path=path)
        if a[0] != rank or b[1] != rank:
            raise CheckpointError(
                f"module {module[:120]!r}: lora_A {list(a)} / lora_B {list(b)} do not match r={rank}", path=path
            )
        if "all-linear" not in targets and module.rsplit(".", 1)[-1] not in targets:
            raise CheckpointError(f"module {module[:120]!r} is not in target_modules", path=path)
        modules.append(LoraModule(module, a, b))
    return tuple(modules)


def adapter_info(
    raw_config: bytes, config_path: str, shapes: Mapping[str, tuple[int, ...]], weights_path: str, weights: str
) -> AdapterInfo:
    """Validate a LoRA adapter from its config's bytes and its weights' tensor shapes (wherever
    they were read: a folder here, a Hub repo in ``crawler.http_adapter``)."""
    base, rank, alpha, targets = parse_adapter_config(raw_config, config_path)
    if len(shapes) > MAX_ADAPTER_TENSORS:
        raise CheckpointError(f"adapter has {len(shapes)} tensors, over {MAX_ADAPTER_TENSORS}", path=weights_path)
    return AdapterInfo(base, rank, alpha, targets, lora_modules(shapes, rank, targets, weights_path), weights)


def no_weights_error(where: str) -> CheckpointError:
    return CheckpointError(f"adapter has {ADAPTER_CONFIG} but no {' or '.join(ADAPTER_WEIGHT_FILES)}", path=where)


def read_adapter(folder: str | os.PathLike[str]) -> AdapterInfo:
    """Read and validate an adapter folder (config + weights header); never reads tensor values."""
    root = Path(folder)
    raw = read_small_file(root / ADAPTER_CONFIG, MAX_ADAPTER_CONFIG_BYTES)
    if raw is None:
        raise CheckpointError(f"no {ADAPTER_CONFIG}", path=str(root))
    parse_adapter_config(raw, str(root / ADAPTER_CONFIG))  # a bad config is reported before the weights
    weights = adapter_weights_file(n for n in ADAPTER_WEIGHT_FILES if os.path.lexists(root / n))
    if weights is None:
        raise no_weights_error(str(root))
    path = root / weights
    shapes = read_adapter_header(path) if weights == ADAPTER_WEIGHTS else read_adapter_zip_header(path)
    return adapter_info(raw, str(root / ADAPTER_CONFIG), shapes, str(path), weights)


def base_candidates(base: str) -> list[str]:
    """Model ids the declared base may be indexed under: the Hub id itself, or for a local path
    its last two folders (pedigree's ``ORG/NAME`` ids)."""
    out = [base]
    parts = [p for p in base.replace("\\", "/").split("/") if p]
    if len(parts) >= 2:
        out.append("/".join(parts[-2:]))
    return list(dict.fromkeys(out))


def check_fit(info: AdapterInfo, base_id: str, base_shapes: Mapping[str, tuple[int, ...]]) -> None:
    """Every adapted module must be a 2-D weight of the base with ``[out, in]`` matching
    ``lora_B``'s rows and ``lora_A``'s columns; else ``UnsupportedModelError`` naming the module."""
    for m in info.modules:
        shape = base_shapes.get(f"{m.module}.weight")
        if shape is None:
            raise UnsupportedModelError(
                f"adapter does not fit base {base_id} (module {m.module[:120]}: no such weight in the base)"
            )
        if len(shape) != 2 or (m.b_shape[0], m.a_shape[1]) != (shape[0], shape[1]):
            raise UnsupportedModelError(
                f"adapter does not fit base {base_id} (module {m.module[:120]}: LoRA delta "
                f"[{m.b_shape[0]}, {m.a_shape[1]}] vs base weight {list(shape)})"
            )
