"""Facts a scan reads from a repo's files, each bounded and each failing on its own.

A bad fact (a timestamp out of range, ``.inf``, a ``config.json`` nested too deep, a safetensors
shape of ``[1e400]``) is dropped - the repo is served without it - never an exception that stops
the scan.  Every file read here goes through :func:`paths.read_bounded` (regular files only).
"""

from __future__ import annotations

import json
import math
import struct
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from .paths import open_regular, read_bounded

MAX_CONFIG_BYTES = 4 * 2**20
SUMMARY_HEADER_CAP = 25_000_000
MAX_COUNT = 2**53
MAX_DIMS = 64
MAX_NUMEL = 2**63
_NAME_CAP = 200


def to_utc(value: Any) -> datetime | None:
    """A card/override timestamp (ISO string, datetime, date, epoch number) as an aware UTC
    datetime; ``None`` when it is not one or lies outside what a datetime can hold."""
    try:
        if isinstance(value, datetime):
            return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        if isinstance(value, date):
            return datetime(value.year, value.month, value.day, tzinfo=UTC)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return datetime.fromtimestamp(value, tz=UTC) if math.isfinite(value) else None
        if isinstance(value, str) and len(value) <= 64:
            return to_utc(datetime.fromisoformat(value.strip().replace("Z", "+00:00")))
    except (ValueError, OverflowError, OSError):
        return None
    return None


def iso(dt: datetime) -> str:
    """The Hub's timestamp format, ``2024-03-01T00:00:00.000Z``."""
    dt = dt.astimezone(UTC)
    return f"{dt.year:04d}-{dt:%m-%dT%H:%M:%S}.{dt.microsecond // 1000:03d}Z"


def gated_value(value: Any) -> bool | str:
    if value is True or (isinstance(value, str) and value.lower() in ("true", "yes")):
        return "auto"
    if isinstance(value, str) and value.lower() in ("auto", "manual"):
        return value.lower()
    return False


def count(value: Any) -> int:
    """A download/like count: a non-negative int below 2**53, else 0."""
    ok = isinstance(value, int) and not isinstance(value, bool) and 0 <= value < MAX_COUNT
    return value if ok else 0


def read_json(path: Path) -> tuple[Any, str | None]:
    """(parsed JSON or None, why not) for a file of at most :data:`MAX_CONFIG_BYTES`."""
    try:
        data = read_bounded(path, MAX_CONFIG_BYTES + 1)
        if len(data) > MAX_CONFIG_BYTES:
            return None, f"larger than {MAX_CONFIG_BYTES} bytes"
        return json.loads(data), None
    except RecursionError:
        return None, "nested too deep"
    except (OSError, ValueError) as e:
        return None, f"not JSON ({type(e).__name__})"


def config_summary(config: Any) -> dict[str, Any] | None:
    """The trimmed ``config`` the Hub returns (``architectures``: strings, ``model_type``: a string)."""
    if not isinstance(config, dict):
        return None
    out: dict[str, Any] = {}
    archs = config.get("architectures")
    if isinstance(archs, list) and all(isinstance(a, str) and len(a) <= _NAME_CAP for a in archs[:64]):
        out["architectures"] = archs[:64]
    model_type = config.get("model_type")
    if isinstance(model_type, str) and len(model_type) <= _NAME_CAP:
        out["model_type"] = model_type
    return out


def model_type(config: Any) -> str | None:
    summary = config_summary(config)
    return summary.get("model_type") if summary else None


def safetensors_params(path: Path, size: int) -> dict[str, int] | None:
    """Parameter counts by dtype from one safetensors header, ``None`` if it does not parse or
    names a shape that is not a list of at most 64 non-negative integers below 2**63 in total."""
    try:
        with open_regular(path) as f:
            first = f.read(8)
            if len(first) < 8:
                return None
            (n,) = struct.unpack("<Q", first)
            if n > min(SUMMARY_HEADER_CAP, size - 8):
                return None
            header = json.loads(f.read(n))
    except (OSError, ValueError, RecursionError):
        return None
    if not isinstance(header, dict):
        return None
    counts: dict[str, int] = {}
    for name, entry in header.items():
        if name == "__metadata__" or not isinstance(entry, dict):
            continue
        shape, dtype = entry.get("shape"), entry.get("dtype")
        if not isinstance(shape, list) or len(shape) > MAX_DIMS or not isinstance(dtype, str) or len(dtype) > 16:
            return None
        numel = 1
        for d in shape:
            if not isinstance(d, int) or isinstance(d, bool) or not 0 <= d < MAX_NUMEL:
                return None
            numel *= d
            if numel >= MAX_NUMEL:
                return None
        counts[dtype] = counts.get(dtype, 0) + numel
        if counts[dtype] >= MAX_NUMEL:
            return None
    return counts
