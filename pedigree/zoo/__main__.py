"""Command line: ``python -m pedigree.zoo build [--zoo a|b] --size small|full --out DIR [--workers N]``."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from .build import build_zoo, default_workers


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pedigree.zoo", description="Build the pedigree model zoo.")
    sub = parser.add_subparsers(dest="command", required=True)
    build = sub.add_parser("build", help="build (or reuse a cached) zoo")
    build.add_argument("--zoo", choices=("a", "b"), default="a", help="a: the development zoo; b: the held-out zoo")
    build.add_argument("--size", choices=("small", "full"), default="small")
    build.add_argument("--out", type=Path, required=True)
    build.add_argument("--workers", type=int, default=default_workers())
    args = parser.parse_args(argv)
    start = time.perf_counter()

    def progress(model_id: str, done: int, total: int) -> None:
        print(f"[{time.perf_counter() - start:7.1f}s] {done:2d}/{total} {model_id}", flush=True)

    manifest = build_zoo(args.out, args.size, zoo=args.zoo, progress=progress, workers=args.workers)
    print(
        f"zoo {args.zoo} ({args.size}) at {args.out}: {len(manifest['models'])} models, "
        f"built in {manifest['build_seconds']} s (recipe {manifest['recipe_hash'][:12]})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
