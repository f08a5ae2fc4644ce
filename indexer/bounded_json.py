"""JSON from a checkpoint (safetensors headers, config.json, the shard index, tokenizer files),
parsed with bounds on what it may cost.

A file's byte limit alone does not bound the memory its parse takes: 64 MB of ``[{},{},...]``
is 21 million dicts, over 1.5 GB.  Before parsing, :func:`loads_json` counts the containers
(``{`` and ``[``) and the items (``,``) - an upper bound, since the characters inside strings count
too - against :data:`MAX_JSON_CONTAINERS` and :data:`MAX_JSON_ITEMS`; after parsing it walks the
result (iteratively) and refuses anything nested deeper than :data:`MAX_JSON_DEPTH`, so no later
consumer (a recursive walk, ``json.dumps`` into the database) can hit the recursion limit.  Real
files are far inside these bounds: a 250k-token tokenizer.json has about a million items and a
few hundred thousand containers, and none nests past a dozen levels.

Every failure - bad UTF-8, syntax, a bound, an integer over Python's digit limit, a duplicate key
where keys must be unique - is a :class:`~pedigree.errors.CheckpointError` about ``what``.
"""

from __future__ import annotations

import json
from itertools import compress
from typing import Any

from pedigree.errors import CheckpointError

MAX_JSON_CONTAINERS = 2_000_000
MAX_JSON_ITEMS = 8_000_000
MAX_JSON_DEPTH = 64
_CONTAINERS = frozenset({dict, list})


class _DuplicateKey(Exception):
    def __init__(self, key: str) -> None:
        self.key = key


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise _DuplicateKey(k)
        out[k] = v
    return out


def json_depth(value: Any, limit: int = MAX_JSON_DEPTH) -> int:
    """How deeply ``value`` (parsed JSON) nests, counted up to ``limit + 1``: level by level,
    the containers of each level picked out in C (``compress``/``map``), so a 250k-token
    vocabulary costs a fraction of its parse."""
    level = [value] if type(value) in _CONTAINERS else []
    depth = 0
    while level and depth <= limit:
        depth += 1
        below: list[Any] = []
        for node in level:
            children = node.values() if type(node) is dict else node
            below.extend(compress(children, map(_CONTAINERS.__contains__, map(type, children))))
        level = below
    return depth


def loads_json(
    text: str | bytes | bytearray | memoryview, what: str, path: str | None, *, unique_keys: bool = True
) -> Any:
    """``json.loads`` within the bounds above; every failure a :class:`CheckpointError` about
    ``what`` (``unique_keys``: a repeated key in one object is an error, else the last wins)."""
    if isinstance(text, (bytes, bytearray, memoryview)):
        try:
            text = bytes(text).decode("utf-8")
        except UnicodeDecodeError as e:
            raise CheckpointError(f"{what} is not valid UTF-8 ({e.reason} at byte {e.start})", path=path) from None
    containers = text.count("{") + text.count("[")
    if containers > MAX_JSON_CONTAINERS:
        raise CheckpointError(f"{what} has more than {MAX_JSON_CONTAINERS} JSON objects and arrays", path=path)
    if text.count(",") > MAX_JSON_ITEMS:
        raise CheckpointError(f"{what} has more than {MAX_JSON_ITEMS} JSON items", path=path)
    try:
        value = json.loads(text, object_pairs_hook=_no_duplicates if unique_keys else None)
    except _DuplicateKey as e:
        raise CheckpointError(f"{what} has duplicate key {e.key[:200]!r}", path=path) from None
    except RecursionError:
        raise CheckpointError(f"{what} is invalid JSON (nested too deeply)", path=path) from None
    except ValueError as e:  # JSONDecodeError, and int literals over the digit limit
        raise CheckpointError(f"{what} is invalid JSON ({str(e)[:200]})", path=path) from None
    if containers > MAX_JSON_DEPTH and json_depth(value) > MAX_JSON_DEPTH:
        raise CheckpointError(f"{what} nests deeper than {MAX_JSON_DEPTH} levels", path=path)
    return value
