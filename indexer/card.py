"""Model cards: the YAML front matter of a checkpoint's README.md, read as data.

Only the fields lineage needs are kept: ``base_model`` (always a list of ids), ``base_model_relation``
(the Hub's adapter / merge / quantized / finetune), ``created_at`` (when the card states one),
``license`` and ``tags``.  YAML is parsed with ``yaml.safe_load`` (no object construction); a
malformed card is reported in ``card_error`` and never fails the model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import yaml

MAX_CARD_BYTES = 1 * 2**20


@dataclass(frozen=True)
class CardInfo:
    base_model: list[str] = field(default_factory=list)
    base_model_relation: str | None = None
    created_at: datetime | None = None
    license: str | None = None
    tags: list[str] = field(default_factory=list)
    card_error: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "base_model": self.base_model,
            "base_model_relation": self.base_model_relation,
            "created_at": self.created_at.isoformat() if self.created_at else None,
            "license": self.license,
            "tags": self.tags,
            "card_error": self.card_error,
        }


def _front_matter(text: str) -> str | None:
    lines = text.lstrip("\ufeff").split("\n")
    if not lines or lines[0].strip() != "---":
        return None
    for end, line in enumerate(lines[1:], start=1):
        if line.strip() == "---":
            return "\n".join(lines[1:end])
    return None


def _timestamp(value: object) -> datetime | None:
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
    else:
        return None
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    return moment


def parse_card(text: str | None) -> CardInfo:
    """The lineage-relevant front matter of a model card (empty CardInfo if there is none)."""
    if not text:
        return CardInfo()
    block = _front_matter(text)
    if block is None:
        return CardInfo()
    try:
        meta = yaml.safe_load(block)
    except yaml.YAMLError as error:
        return CardInfo(card_error=f"invalid YAML front matter: {str(error).splitlines()[0]}")
    if not isinstance(meta, dict):
        return CardInfo(card_error="front matter is not a mapping")
    base = meta.get("base_model")
    bases = (
        [base] if isinstance(base, str) else [b for b in base if isinstance(b, str)] if isinstance(base, list) else []
    )
    relation = meta.get("base_model_relation")
    tags = meta.get("tags")
    license_ = meta.get("license")
    return CardInfo(
        base_model=bases,
        base_model_relation=relation if isinstance(relation, str) else None,
        created_at=_timestamp(meta.get("created_at")),
        license=license_ if isinstance(license_, str) else None,
        tags=[t for t in tags if isinstance(t, str)] if isinstance(tags, list) else [],
    )
