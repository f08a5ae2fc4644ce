"""The admin ingest's child process: index one Hub repo by id into a data folder, publish a
snapshot, print the run's summary as JSON (``{"error": ...}`` and exit status 1 on failure)::

    python -m pedigree.service.ingest_job --home DIR --repo-id owner/name [--endpoint URL]
"""

from __future__ import annotations

import argparse
import json
import sys

from pedigree.config import load_settings
from pedigree.errors import PedigreeError
from pedigree.workspace import Workspace


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pedigree.service.ingest_job", description=__doc__)
    parser.add_argument("--home", required=True, help="The data folder.")
    parser.add_argument("--repo-id", required=True, help="The Hub model id, owner/name.")
    parser.add_argument("--endpoint", default=None, help="Hub endpoint [default: $HF_ENDPOINT or the Hub].")
    parser.add_argument("--confirm", type=int, default=5, help="Candidates tested against the new model.")
    args = parser.parse_args(argv)
    try:
        with Workspace(load_settings(args.home)) as ws:
            summary = ws.ingest_hub_repo(args.repo_id, args.endpoint, confirm=args.confirm)
    except (PedigreeError, OSError) as error:
        print(json.dumps({"error": " ".join(str(error).split()) or type(error).__name__}))
        return 1
    print(json.dumps(summary.to_json()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
