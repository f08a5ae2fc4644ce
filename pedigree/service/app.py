"""The ASGI application: the JSON API, the fingerprint images and the web page in one app.

Each concern is its own router module: :mod:`pedigree.service.api` (the JSON API and admin
actions), :mod:`pedigree.service.images` (fingerprint pictures) and :mod:`pedigree.service.web`
(the page and its static files).  The interactive API docs at ``/docs`` are Swagger UI served
from the package (``static/vendor/swagger-ui``, vendored from the npm registry by ``make
vendor-swagger-ui``): nothing is loaded from a CDN at run time.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse

from pedigree._version import __version__

SWAGGER_UI = "/static/vendor/swagger-ui"


def create_app(home: str | Path | None = None, *, admin_token: str | None = None) -> FastAPI:
    """The app serving the data folder ``home`` (default: ``--home`` / ``$PEDIGREE_HOME`` rules).

    ``admin_token`` defaults to ``$PEDIGREE_ADMIN_TOKEN``; without one, admin actions are refused.
    """
    from pedigree.service import api, images, web

    app = FastAPI(
        title="pedigree",
        version=__version__,
        description="What is this model derived from? Lineage answers from the weights themselves.",
        docs_url=None,
        redoc_url=None,
    )

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        """Swagger UI over ``/openapi.json``, its script and styles from this server."""
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title="pedigree API",
            swagger_js_url=f"{SWAGGER_UI}/swagger-ui-bundle.js",
            swagger_css_url=f"{SWAGGER_UI}/swagger-ui.css",
            swagger_favicon_url="/static/favicon.svg",
        )

    # order matters: model ids hold slashes, so the routes with a fixed suffix
    # (``/api/models/{id}/fingerprint.svg``) come before the API's own, and the page last
    images.install(app, home)
    api.install(app, home, admin_token=admin_token)
    web.install(app)
    return app
