"""pedigree: a provenance index for model weights."""

import os

__version__ = "0.1.0"

# torch's OpenMP workers (GNU libgomp) spin for a while after each parallel region by default.  A
# crawl overlaps HTTP threads with the fingerprint maths; on a small machine the spinning workers
# starve those threads (measured on 2 CPUs: a 1B-shaped crawl used 2.0 s of CPU with spinning,
# 1.3 s without, for the same wall time or less).  Idle workers sleep instead unless the user
# chose otherwise.  libgomp reads this when torch loads, so it only applies when pedigree is
# imported first - as the CLI, the benchmarks and the tests do.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
