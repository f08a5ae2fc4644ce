"""What a stored test result says, readable without the test machinery (no torch): the suite
version results are stored under, and which parts of a model the tests found shared."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

SUITE_VERSION = "ind8"  # bump whenever a test, its parameters or the combination rule change
SHARED_BLOCK_FAMILYWISE = 1e-4  # a block pair is "shared" if p < 1e-4 / (number of cells tested)


def shared_parts(tests: Sequence[Mapping[str, Any]], layer_map: Sequence[Sequence[Any]]) -> dict[str, Any]:
    """Which parts the tests say were taken: blocks (the layer map), embedding, head.

    A part counts as shared when its test rejects independence at 1e-4 (the block map already
    applies that bar family-wise).  ``None``: the part could not be tested (a tied head, different
    widths).  A copied embedding under new layers shows up as exactly that: embedding shared, no
    block shared.
    """
    by_name = {t["name"]: t for t in tests}

    def part(name: str) -> bool | None:
        test = by_name.get(name)
        return None if test is None else test["log10_p"] < math.log10(SHARED_BLOCK_FAMILYWISE)

    return {
        "blocks": [[entry[0], entry[1]] for entry in layer_map],
        "embedding": part("embedding_dims"),
        "head": part("head_dims"),
    }
