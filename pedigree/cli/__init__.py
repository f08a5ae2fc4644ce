"""The ``pedigree`` command: a thin shell over :class:`pedigree.workspace.Workspace`.

Every command takes ``--json`` (the result's ``to_json()`` on stdout; progress and messages go to
stderr) and ``--home`` (the data folder; default ``./pedigree-data`` or ``$PEDIGREE_HOME``), before
or after the command name.  Errors print one line and exit with status 1 (``{"error": "..."}``
under ``--json``).  Importing the CLI loads no torch or faiss: ``pedigree --help`` and
``pedigree status`` start fast.
"""

from __future__ import annotations

import os
import sys

from pedigree.cli import (  # noqa: F401 - register the commands
    graph_commands,
    hub_commands,
    image_commands,
    index_commands,
    serve_commands,
)
from pedigree.cli.app import app

__all__ = ["app", "main"]


def main() -> None:
    """The ``pedigree`` console script."""
    # torch's OpenMP workers (GNU libgomp) spin for a while after each parallel region by default;
    # on a small machine they starve the crawler's HTTP threads (measured on 2 CPUs: a 1B-shaped
    # crawl used 2.0 s of CPU spinning, 1.3 s sleeping, same wall time).  The command sets the
    # policy before torch loads unless the user chose one; importing the library changes nothing.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    # numpy/scipy's own OpenBLAS threads (which OMP_WAIT_POLICY does not reach) make the tests'
    # small float64 products slower, not faster, and steal CPU from the assignment that follows
    # (bench.store_speed: CLI matrix 112.6 -> 88.7 s, compare 8.3 -> 6.9 s; answers identical).
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    try:
        app()
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        sys.exit(130)
