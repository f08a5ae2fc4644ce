"""Model cards: the YAML front matter of a checkpoint's README.md, read as data.

Only the fields lineage needs are kept: ``base_model`` (always a list of ids), ``base_model_relation``
(the Hub's adapter / merge / quantized / finetune), ``created_at`` (when the card states one),
``license`` and ``tags``.

A card is written by whoever uploads the model, so it is read as hostile input, and a bad card
never fails the model: it is ignored, and ``card_error`` says why (``card ignored: <reason>``).
The README is read up to :data:`MAX_CARD_BYTES` and must be UTF-8.  The YAML is first walked as
a stream of parser events, without building anything, and refused when it has more than
:data:`MAX_YAML_NODES` nodes, nests deeper than :data:`MAX_YAML_DEPTH`, names an alias inside the
node it anchors (a loop), or would *expand* - every alias counted as a full copy of what it names,
as a serialiser writes it - to more than :data:`MAX_EXPANDED_CHARS` characters (the "billion
laughs" and "one large string referenced 100,000 times" cards).  Only then is it loaded with the
safe constructor (no object construction); a value that constructor cannot build (a date such as
``2024-13-45``, an integer of 5,000 digits) ignores the card too.  The kept fields are bounded:
at most :data:`MAX_NAMES` ids or tags, each at most :data:`MAX_NAME_CHARS` characters.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import yaml

from pedigree.errors import CheckpointError
from pedigree.indexer.sources import TensorSource

MAX_CARD_BYTES = 1 * 2**20
MAX_YAML_NODES = 100_000
MAX_YAML_DEPTH = 64
MAX_EXPANDED_CHARS = 4 * 2**20
MAX_NAMES = 256
MAX_NAME_CHARS = 256
MAX_REASON_CHARS = 300
CARD_FILE = "README.md"

_Loader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when built with it


class CardRejectedError(Exception):
    """The card is ignored; the message says why (internal to this module)."""


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


def _ignored(reason: str) -> CardInfo:
    reason = " ".join(reason.split())  # one line
    if len(reason) > MAX_REASON_CHARS:
        reason = reason[: MAX_REASON_CHARS - 3] + "..."
    return CardInfo(card_error=f"card ignored: {reason}")


def _front_matter(text: str) -> str | None:
    lines = text.lstrip("\ufeff").split("\n")
    if not lines or lines[0].strip() != "---":
        return None
    for end, line in enumerate(lines[1:], start=1):
        if line.strip() == "---":
            return "\n".join(lines[1:end])
    return None


def check_yaml_events(events: Iterable[yaml.Event]) -> None:
    """Raise :class:`CardRejectedError` if the YAML these parser events describe is too large,
    too deep, loops through an alias, or expands (aliases written out) past the bound."""
    frames: list[list[Any]] = []  # per open collection: [anchor, expanded size so far]
    expanded: dict[str, int] = {}  # anchor -> expanded size of the node it names
    open_anchors: set[str] = set()
    total = 0

    def add(size: int) -> None:
        nonlocal total
        if frames:
            frames[-1][1] += size
            grown = frames[-1][1]
        else:
            total += size
            grown = total
        if grown > MAX_EXPANDED_CHARS:
            raise CardRejectedError(f"YAML aliases expand to more than {MAX_EXPANDED_CHARS} characters")

    for count, event in enumerate(events):
        if count >= MAX_YAML_NODES:
            raise CardRejectedError(f"YAML front matter has more than {MAX_YAML_NODES} nodes")
        if isinstance(event, yaml.CollectionStartEvent):
            if len(frames) >= MAX_YAML_DEPTH:
                raise CardRejectedError(f"YAML front matter nests deeper than {MAX_YAML_DEPTH} levels")
            frames.append([event.anchor, 1])
            if event.anchor is not None:
                open_anchors.add(event.anchor)
        elif isinstance(event, yaml.CollectionEndEvent):
            anchor, size = frames.pop()
            if anchor is not None:
                expanded[anchor] = size
                open_anchors.discard(anchor)
            add(size)
        elif isinstance(event, yaml.ScalarEvent):
            size = len(event.value) + 1
            if event.anchor is not None:
                expanded[event.anchor] = size
            add(size)
        elif isinstance(event, yaml.AliasEvent):
            if event.anchor in open_anchors:
                raise CardRejectedError(f"YAML alias *{event.anchor[:40]} refers to the node that contains it")
            add(expanded.get(event.anchor or "", 1))  # an undefined alias: the loader reports it


def _yaml_problem(error: yaml.YAMLError) -> str:
    """What a YAML error says went wrong, and where (one line)."""
    if isinstance(error, yaml.MarkedYAMLError):
        what = error.problem or error.context or type(error).__name__
        mark = error.problem_mark or error.context_mark
        return f"{what} (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else what
    return str(error) or type(error).__name__


def load_front_matter(block: str) -> Any:
    """The front matter's YAML as data (mappings, lists, scalars), within the bounds above;
    :class:`CardRejectedError` otherwise."""
    try:
        check_yaml_events(yaml.parse(block, Loader=_Loader))
        return yaml.load(block, Loader=_Loader)  # noqa: S506 - a safe loader (C or Python)
    except CardRejectedError:
        raise
    except yaml.YAMLError as error:
        raise CardRejectedError(f"invalid YAML front matter: {_yaml_problem(error)}") from None
    except Exception as error:  # noqa: BLE001 - the safe constructor's own failures: 2024-13-45, 5,000 digits
        raise CardRejectedError(
            f"front matter has a value YAML cannot hold ({type(error).__name__}: {error})"
        ) from None


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
        try:
            moment = moment.astimezone(UTC).replace(tzinfo=None)
        except (OverflowError, ValueError):  # 0001-01-01T00:00+05:00 has no UTC time
            return None
    return moment


def _names(value: object) -> list[str]:
    """A string or a list of strings as a bounded list of names (other items dropped)."""
    items = [value] if isinstance(value, str) else value if isinstance(value, list) else []
    return [item for item in items if isinstance(item, str) and 0 < len(item) <= MAX_NAME_CHARS][:MAX_NAMES]


def _short(value: object) -> str | None:
    return value if isinstance(value, str) and len(value) <= MAX_NAME_CHARS else None


def parse_card(text: str | None) -> CardInfo:
    """The lineage-relevant front matter of a model card (empty CardInfo if there is none, an
    ignored one - ``card_error`` set - if it is hostile or malformed)."""
    if not text:
        return CardInfo()
    block = _front_matter(text)
    if block is None:
        return CardInfo()
    try:
        meta = load_front_matter(block)
    except CardRejectedError as rejected:
        return _ignored(str(rejected))
    if meta is None:
        return CardInfo()
    if not isinstance(meta, dict):
        return _ignored(f"front matter is a {type(meta).__name__}, not a mapping")
    tags = meta.get("tags")
    return CardInfo(
        base_model=_names(meta.get("base_model")),
        base_model_relation=_short(meta.get("base_model_relation")),
        created_at=_timestamp(meta.get("created_at")),
        license=_short(meta.get("license")),
        tags=_names(tags) if isinstance(tags, list) else [],
    )


def card_text(raw: bytes | None) -> str | None:
    """README bytes as text; :class:`CardRejectedError` unless UTF-8 (a leading BOM dropped)."""
    if raw is None:
        return None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise CardRejectedError(f"{CARD_FILE} is not valid UTF-8 ({e.reason} at byte {e.start})") from None


def read_card(source: TensorSource) -> CardInfo:
    """The card of a checkpoint: :func:`parse_card` of its README.md, read through ``source``.

    A README that is too large, not UTF-8 or otherwise unreadable as a checkpoint file gives an
    ignored card, never an error; only a remote failure (a :class:`~pedigree.errors.RemoteError`,
    to be retried) is raised."""
    try:
        return parse_card(card_text(source.read_bytes(CARD_FILE, MAX_CARD_BYTES)))
    except CheckpointError as error:
        text = str(error)
        if error.path and text.startswith(f"{error.path}: "):
            text = text[len(error.path) + 2 :]
        return _ignored(text if CARD_FILE in text else f"{CARD_FILE} {text}")
    except CardRejectedError as rejected:
        return _ignored(str(rejected))
