"""Model cards as the Hub reads them: YAML front matter -> ``cardData`` and computed ``tags``."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime
from pathlib import Path
from typing import Any

import yaml

MAX_CARD_BYTES = 1 * 2**20
RELATIONS = ("adapter", "merge", "quantized", "finetune")


def _json_safe(value: Any) -> Any:
    """YAML values as JSON values (dates become ISO strings, other odd scalars strings)."""
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def parse_front_matter(text: str) -> dict[str, Any]:
    """The YAML between a leading ``---`` line and the next ``---`` line; ``{}`` if absent or bad."""
    lines = text.lstrip("\ufeff").splitlines()
    if not lines or lines[0].strip() != "---":
        return {}
    for i, line in enumerate(lines[1:], start=1):
        if line.strip() == "---":
            try:
                data = yaml.safe_load("\n".join(lines[1:i]))
            except yaml.YAMLError:
                return {}
            return _json_safe(data) if isinstance(data, dict) else {}
    return {}


def read_front_matter(path: Path) -> dict[str, Any]:
    """Front matter of a README.md file (first MiB only)."""
    try:
        with open(path, "rb") as f:
            return parse_front_matter(f.read(MAX_CARD_BYTES).decode("utf-8", errors="replace"))
    except OSError:
        return {}


def base_models(card: Mapping[str, Any]) -> tuple[list[str], str | None]:
    """(declared base model ids, relation); the relation defaults like the Hub's inference.

    No ``base_model_relation``: several parents -> ``merge``, one -> ``finetune``.
    """
    raw = card.get("base_model")
    ids = [raw] if isinstance(raw, str) else [x for x in raw or [] if isinstance(x, str)]
    ids = [i.strip() for i in ids if i.strip()]
    if not ids:
        return [], None
    relation = card.get("base_model_relation")
    if relation not in RELATIONS:
        relation = "merge" if len(ids) > 1 else "finetune"
    return ids, relation


def computed_tags(
    card: Mapping[str, Any],
    config: Any,
    files: Mapping[str, Any],
    library: str | None,
    pipeline: str | None,
    parents: list[str],
    relation: str | None,
) -> list[str]:
    """The Hub's ``tags``: library, formats, card tags, model type, pipeline, license, lineage, region."""
    tags: list[str] = []
    if library:
        tags.append(library)
    if any(p.endswith(".safetensors") for p in files):
        tags.append("safetensors")
    card_tags = card.get("tags")
    if isinstance(card_tags, str):
        card_tags = [card_tags]
    tags.extend(str(t) for t in card_tags or [])
    if isinstance(config, dict) and isinstance(config.get("model_type"), str):
        tags.append(config["model_type"])
    if pipeline:
        tags.append(pipeline)
    datasets = card.get("datasets")
    for ds in [datasets] if isinstance(datasets, str) else datasets or []:
        tags.append(f"dataset:{ds}")
    for parent in parents:
        tags.append(f"base_model:{parent}")
        tags.append(f"base_model:{relation}:{parent}")
    lic = card.get("license")
    if isinstance(lic, str):
        tags.append(f"license:{lic}")
    tags.append("region:us")
    return list(dict.fromkeys(tags))
