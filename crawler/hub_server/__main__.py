"""``python -m pedigree.crawler.hub_server DIR [--host H] [--port N] [--admin-token T]``.

The same server as ``pedigree hub serve``, with the knobs tests and benchmarks need: an admin
token (enables ``/_pedigree/...`` for requests that send it as a bearer token; without it those
endpoints do not exist), a simulated link, the idle timeout.  Binds 127.0.0.1 by default.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from .link import Link
from .server import serve


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m pedigree.crawler.hub_server", description=__doc__)
    p.add_argument("root", type=Path)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--token", action="append", default=[], help="token allowed to read gated/private repos")
    p.add_argument("--page-size", type=int, default=1000)
    p.add_argument("--admin-token", default=None, help="enable the /_pedigree/ admin endpoints for this bearer token")
    p.add_argument("--idle-timeout", type=float, default=60.0, help="close connections idle this many seconds")
    p.add_argument("--latency-ms", type=float, default=0.0, help="simulated round trip per request")
    p.add_argument("--bandwidth-mbs", type=float, default=0.0, help="simulated link bandwidth in MB/s (0: unlimited)")
    args = p.parse_args(argv)
    if args.admin_token is not None and not args.admin_token.strip():
        p.error("--admin-token must not be empty")
    serve(
        args.root,
        args.host,
        args.port,
        tokens=args.token or None,
        page_size=args.page_size,
        admin_token=args.admin_token,
        idle_timeout=args.idle_timeout,
        link=Link(latency=args.latency_ms / 1000, bandwidth=args.bandwidth_mbs * 1e6 or None),
    )


if __name__ == "__main__":
    main()
