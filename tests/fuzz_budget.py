"""The fuzz jobs' budget: fixed-seed, ``ci_examples`` examples per test in CI; a longer, random run
with ``PEDIGREE_FUZZ_EXAMPLES=N`` (N examples per test, new seeds each run)."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

LONG_RUN = int(os.environ.get("PEDIGREE_FUZZ_EXAMPLES", "0"))


def fuzz_settings(ci_examples: int) -> settings:
    """hypothesis settings for one fuzz test (no deadline, no example database, health checks off:
    the inputs are large and slow by design)."""
    return settings(
        max_examples=LONG_RUN or ci_examples,
        deadline=None,
        derandomize=not LONG_RUN,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
