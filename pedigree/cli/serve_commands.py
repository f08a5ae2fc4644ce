"""``serve``: the HTTP API and the web page over a data folder (uvicorn running
:func:`pedigree.service.app.create_app`)."""

from __future__ import annotations

import socket
from typing import Annotated

import typer

from pedigree.cli import render
from pedigree.cli.app import Home, Json, app, options, reporting
from pedigree.config import load_settings
from pedigree.errors import UsageError


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on (host, port); a UsageError line for a port in use or a bad host."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as error:
        raise UsageError(f"--host {host}: {error.strerror}") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
        sock.listen(2048)
    except OSError as error:
        sock.close()
        reason = "the port is in use" if error.errno == 98 else (error.strerror or str(error))
        raise UsageError(f"cannot listen on {host}:{port}: {reason}") from None
    return sock


@app.command("serve")
def serve_command(
    ctx: typer.Context,
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=0, max=65535, help="Port (0: any free port).")] = 8000,
    access_log: Annotated[bool, typer.Option("--access-log", help="Log every request on stderr.")] = False,
    home: Home = None,
    as_json: Json = False,
) -> None:
    """Serve the JSON API (OpenAPI at /docs) and the web page for the data folder, read-only:
    answers come from the newest published snapshot, so refreshes run beside it.  Admin actions
    need the bearer token in $PEDIGREE_ADMIN_TOKEN.  Under --json the address is printed as one
    JSON line."""
    home, as_json = options(ctx, home, as_json)
    with reporting(as_json):
        settings = load_settings(home)
        if not settings.home.is_dir():
            what = "a file, not a data folder" if settings.home.exists() else "no such folder"
            raise UsageError(f"--home {settings.home}: {what}")
        from pedigree.service.snapshots import ensure_snapshot

        message = ensure_snapshot(settings.home)
        sock = bind(host, port)
        import uvicorn

        from pedigree.service.app import create_app

        bound_host, bound_port = sock.getsockname()[:2]
        shown = f"[{bound_host}]" if ":" in bound_host else bound_host
        url = f"http://{shown}:{bound_port}"
        if as_json:
            render.emit_json({"url": url, "home": str(settings.home), "snapshot": message}, line=True)
        else:
            # the address first, on a line of its own (it fits 80 columns; scripts read it)
            render.show(
                f"pedigree serving at {url}", f"data folder {settings.home}", f"API docs at {url}/docs; Ctrl-C stops"
            )
            render.stderr().print(message, soft_wrap=True)
        config = uvicorn.Config(
            create_app(settings.home), log_level="warning", access_log=access_log, timeout_graceful_shutdown=5
        )
        try:
            uvicorn.Server(config).run(sockets=[sock])
        finally:
            sock.close()
