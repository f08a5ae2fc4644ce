"""Fingerprint pictures over HTTP: ``GET /api/models/{id}/fingerprint.svg`` and ``.png``.

The picture (:mod:`pedigree.query.fingerprint_image`) is read from the newest published snapshot
through the app's one :class:`~pedigree.service.snapshots.SnapshotReader`, the same way the JSON
API reads.  A picture changes only when the model's vectors do, so its ETag is made of the
snapshot's store generation, the image recipe, the format and the scale; a matching
``If-None-Match`` gets 304.  Errors are the API's: ``{"error": ...}`` with 404 for a model that
has no fingerprint, 503 before the first snapshot.
"""

from __future__ import annotations

import hashlib
import os
from typing import Annotated

from fastapi import FastAPI, Query, Request
from fastapi.responses import JSONResponse, Response

from pedigree.errors import ModelNotFoundError
from pedigree.query.fingerprint_image import IMAGE_RECIPE, png_bytes, stored_picture, svg_text
from pedigree.service.snapshots import NoSnapshotError, reader_for

MEDIA_TYPES = {"svg": "image/svg+xml", "png": "image/png"}
MAX_SCALE = 8
CACHE_CONTROL = "public, max-age=60"

Scale = Annotated[int, Query(ge=1, le=MAX_SCALE, description="Pixels per unit (the picture is 176 x 208 units).")]


def _etag(model_id: str, generation: object, kind: str, scale: int) -> str:
    digest = hashlib.sha256(f"{model_id}\0{generation}\0{IMAGE_RECIPE}\0{kind}\0{scale}".encode()).hexdigest()
    return f'"{digest[:32]}"'


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": " ".join(message.split())}, status_code=status)


def install(app: FastAPI, home: str | os.PathLike[str] | None = None) -> None:
    """Add the two picture routes to ``app`` (before the API's ``/api/models/{id:path}`` routes,
    which would otherwise take ``.../fingerprint.svg`` as part of an id)."""

    def picture(request: Request, model_id: str, kind: str, scale: int) -> Response:
        reader = reader_for(app, home)
        try:
            with reader.workspace() as (workspace, facts):
                etag = _etag(model_id, facts.get("generation"), kind, scale)
                if request.headers.get("if-none-match") == etag:
                    return Response(status_code=304, headers={"ETag": etag, "Cache-Control": CACHE_CONTROL})
                found = stored_picture(workspace.store, model_id)
        except ModelNotFoundError as missing:
            return _error(404, str(missing))
        except NoSnapshotError as none_yet:
            return _error(503, str(none_yet))
        body = png_bytes(found, scale) if kind == "png" else svg_text(found, scale).encode()
        headers = {"ETag": etag, "Cache-Control": CACHE_CONTROL}
        return Response(body, media_type=MEDIA_TYPES[kind], headers=headers)

    @app.get(
        "/api/models/{model_id:path}/fingerprint.svg",
        tags=["models"],
        summary="The model's fingerprint picture (SVG)",
        response_class=Response,
        responses={200: {"content": {"image/svg+xml": {}}}, 404: {"description": "not indexed"}},
    )
    def fingerprint_svg(request: Request, model_id: str, scale: Scale = 1) -> Response:
        """A deterministic picture of the model's fingerprint: relatives look alike, unrelated
        models look different (see docs/fingerprint-images.md)."""
        return picture(request, model_id, "svg", scale)

    @app.get(
        "/api/models/{model_id:path}/fingerprint.png",
        tags=["models"],
        summary="The model's fingerprint picture (PNG)",
        response_class=Response,
        responses={200: {"content": {"image/png": {}}}, 404: {"description": "not indexed"}},
    )
    def fingerprint_png(request: Request, model_id: str, scale: Scale = 1) -> Response:
        """The same picture as 8-bit RGB PNG, ``scale`` pixels per unit."""
        return picture(request, model_id, "png", scale)
