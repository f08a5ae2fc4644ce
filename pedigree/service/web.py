"""The web page: a single-page app (hand-written JavaScript, no framework, no CDN) over the JSON API.

``install(app)`` serves ``static/index.html`` at ``/`` and the files next to it at ``/static/``.
The page routes with the URL's hash (``#/model/<id>``, ``#/pair/<a>/<b>``, ``#/discrepancies``,
``#/status``, ``#/search?q=``), so the server only ever sends these fixed files; everything the
page shows comes from the API and is put on the page as text, never as HTML.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

STATIC_DIR = Path(__file__).with_name("static")

# The page's own files only: scripts from this origin, images from the API, no inline script.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)


def install(app: FastAPI) -> None:
    """Serve the page at ``/`` and its scripts, styles and icon at ``/static/``."""
    index = STATIC_DIR / "index.html"

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        """The single page; the browser asks the API for everything else."""
        return FileResponse(
            index,
            media_type="text/html; charset=utf-8",
            headers={"Content-Security-Policy": CONTENT_SECURITY_POLICY, "Cache-Control": "no-cache"},
        )

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
