"""``python -m pedigree.crawler.hub_server DIR [--host H] [--port N]`` (same as ``pedigree hub serve``)."""

from __future__ import annotations

import argparse
from pathlib import Path

from .server import serve


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m pedigree.crawler.hub_server", description=__doc__)
    p.add_argument("root", type=Path)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--token", action="append", default=[], help="token allowed to read gated/private repos")
    p.add_argument("--page-size", type=int, default=1000)
    args = p.parse_args(argv)
    serve(args.root, args.host, args.port, tokens=args.token or None, page_size=args.page_size)


if __name__ == "__main__":
    main()
