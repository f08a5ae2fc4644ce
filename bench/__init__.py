"""pedigree's benchmarks (not installed): ``python -m bench.<name>``; results in BENCHMARKS.md."""

import os

# As the CLI does (pedigree.cli.main): idle OpenMP workers sleep instead of spinning beside the
# crawler's HTTP threads.  Set before torch loads.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
