"""Model cards as the Hub reads them: YAML front matter -> ``cardData`` and computed ``tags``.

The front matter is parsed with bounds (:func:`parse_card`): at most :data:`MAX_CARD_BYTES` read,
:data:`MAX_DEPTH` levels of nesting, :data:`MAX_ALIASES` alias uses, and at most
:data:`MAX_VALUES` values / :data:`MAX_TEXT` characters once aliases are expanded (a
billion-laughs card, an alias loop or one long string referenced a thousand times is refused).
A refused card leaves the repo served without card facts, with the reason.  A timestamp that is
not a real date (``2024-13-45``) stays a string; ``.inf`` / ``.nan`` become strings.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import date, datetime
from pathlib import Path
from typing import Any

import yaml

from .paths import read_bounded

MAX_CARD_BYTES = 1 * 2**20
MAX_DEPTH = 64
MAX_ALIASES = 1_000
MAX_VALUES = 200_000
MAX_TEXT = 4 * 2**20
MAX_TAGS = 1_000
RELATIONS = ("adapter", "merge", "quantized", "finetune")


class CardRefused(ValueError):
    """The front matter exceeds a bound."""


class _BoundedLoader(yaml.SafeLoader):
    """SafeLoader that refuses deep nesting and many aliases while composing, and keeps a
    timestamp that is not a real date as its text."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0
        self._aliases = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            self._aliases += 1
            if self._aliases > MAX_ALIASES:
                raise CardRefused(f"more than {MAX_ALIASES} YAML aliases")
            return super().compose_node(parent, index)
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise CardRefused(f"nested deeper than {MAX_DEPTH} levels")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def timestamp_or_text(self, node: Any) -> Any:
        try:
            return self.construct_yaml_timestamp(node)
        except (ValueError, OverflowError):
            return self.construct_scalar(node)


_BoundedLoader.add_constructor("tag:yaml.org,2002:timestamp", _BoundedLoader.timestamp_or_text)


class _Budget:
    def __init__(self) -> None:
        self.values, self.text = MAX_VALUES, MAX_TEXT

    def charge(self, chars: int) -> None:
        self.values -= 1
        self.text -= chars
        if self.values < 0:
            raise CardRefused(f"expands to more than {MAX_VALUES} values (YAML aliases)")
        if self.text < 0:
            raise CardRefused(f"expands to more than {MAX_TEXT} characters (YAML aliases)")


def _json_safe(value: Any, budget: _Budget, depth: int = 0) -> Any:
    """YAML values as JSON values (dates become ISO strings, other odd scalars strings), within
    the depth and expansion budget."""
    if depth > MAX_DEPTH:
        raise CardRefused(f"nested deeper than {MAX_DEPTH} levels (or an alias loop)")
    if isinstance(value, dict):
        budget.charge(0)
        out = {}
        for k, v in value.items():
            key = str(k)
            budget.charge(len(key))
            out[key] = _json_safe(v, budget, depth + 1)
        return out
    if isinstance(value, (list, tuple)):
        budget.charge(0)
        return [_json_safe(v, budget, depth + 1) for v in value]
    if isinstance(value, (datetime, date)):
        budget.charge(32)
        return value.isoformat()
    if isinstance(value, str):
        budget.charge(len(value))
        return value
    if isinstance(value, float) and not math.isfinite(value):
        budget.charge(4)
        return str(value)
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 2**63:
        budget.charge(20)
        return str(value) if value.bit_length() < 10_000 else "huge integer"
    if value is None or isinstance(value, (int, float, bool)):
        budget.charge(1)
        return value
    text = str(value)
    budget.charge(len(text))
    return text


def parse_card(text: str) -> tuple[dict[str, Any], str | None]:
    """(front matter, None) for the YAML between a leading ``---`` line and the next; ``({}, None)``
    when there is none; ``({}, reason)`` when it is refused or does not parse."""
    lines = text.lstrip("\ufeff").splitlines()
    if not lines or lines[0].strip() != "---":
        return {}, None
    for i, line in enumerate(lines[1:], start=1):
        if line.strip() == "---":
            try:
                loader = _BoundedLoader("\n".join(lines[1:i]))
                try:
                    data = loader.get_single_data()
                finally:
                    loader.dispose()
                return (_json_safe(data, _Budget()), None) if isinstance(data, dict) else ({}, None)
            except CardRefused as e:
                return {}, f"card ignored: {e}"
            except yaml.YAMLError as e:
                return {}, f"card ignored: YAML does not parse ({type(e).__name__})"
            except (ValueError, TypeError, OverflowError, RecursionError, MemoryError) as e:
                return {}, f"card ignored: {type(e).__name__}"
    return {}, None


def parse_front_matter(text: str) -> dict[str, Any]:
    """The card's front matter; ``{}`` if absent, refused or bad."""
    return parse_card(text)[0]


def read_card(path: Path) -> tuple[dict[str, Any], str | None]:
    """Front matter of a README.md file (first MiB only) and why it was ignored, if it was."""
    try:
        return parse_card(read_bounded(path, MAX_CARD_BYTES).decode("utf-8", errors="replace"))
    except OSError as e:
        return {}, f"card ignored: unreadable ({e.strerror or type(e).__name__})"


def read_front_matter(path: Path) -> dict[str, Any]:
    """Front matter of a README.md file (first MiB only)."""
    return read_card(path)[0]


def _strings(value: Any) -> list[str]:
    """A card field that should name strings: one string or a list (numbers as text, others dropped)."""
    items = [value] if isinstance(value, str) else value if isinstance(value, list) else []
    return [str(x) for x in items[:MAX_TAGS] if isinstance(x, (str, int, float)) and not isinstance(x, bool)]


def base_models(card: Mapping[str, Any]) -> tuple[list[str], str | None]:
    """(declared base model ids, relation); the relation defaults like the Hub's inference.

    No ``base_model_relation``: several parents -> ``merge``, one -> ``finetune``.
    """
    raw = card.get("base_model")
    items = [raw] if isinstance(raw, str) else raw[:MAX_TAGS] if isinstance(raw, list) else []
    ids = [i.strip() for i in items if isinstance(i, str) and i.strip()]
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
    tags.extend(_strings(card.get("tags")))
    if isinstance(config, dict) and isinstance(config.get("model_type"), str):
        tags.append(config["model_type"])
    if pipeline:
        tags.append(pipeline)
    for ds in _strings(card.get("datasets")):
        tags.append(f"dataset:{ds}")
    for parent in parents:
        tags.append(f"base_model:{parent}")
        tags.append(f"base_model:{relation}:{parent}")
    lic = card.get("license")
    if isinstance(lic, str):
        tags.append(f"license:{lic}")
    tags.append("region:us")
    return list(dict.fromkeys(tags))
