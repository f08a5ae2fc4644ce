"""The ASGI application: the JSON API, the fingerprint images and the web page in one app.

Each concern is its own router module: :mod:`pedigree.service.api` (the JSON API and admin
actions), :mod:`pedigree.service.images` (fingerprint pictures) and :mod:`pedigree.service.web`
(the page and its static files).
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from pedigree._version import __version__


def create_app(home: str | Path | None = None, *, admin_token: str | None = None) -> FastAPI:
    """The app serving the data folder ``home`` (default: ``--home`` / ``$PEDIGREE_HOME`` rules).

    ``admin_token`` defaults to ``$PEDIGREE_ADMIN_TOKEN``; without one, admin actions are refused.
    """
    from pedigree.service import api, images, web

    app = FastAPI(
        title="pedigree",
        version=__version__,
        description="What is this model derived from? Lineage answers from the weights themselves.",
    )
    # order matters: model ids hold slashes, so the routes with a fixed suffix
    # (``/api/models/{id}/fingerprint.svg``) come before the API's own, and the page last
    images.install(app, home)
    api.install(app, home, admin_token=admin_token)
    web.install(app)
    return app
