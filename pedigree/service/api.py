"""The JSON API: pedigree's library answers over HTTP, read from the newest published snapshot.

Routes (all JSON; model ids hold a slash and are written as they are, ``/api/models/atlas/m1``)::

    GET /healthz                               liveness, and the snapshot answers come from
    GET /api/status, /api/runs?limit=          StatusReport (plus "snapshot"), its runs
    GET /api/models?q=&architecture=&status=&limit=&cursor=    the index, paged by an opaque cursor
    GET /api/models/{id}                       a model: status, config summary, card, declared base
    GET /api/models/{id}/related?limit=        Related
    GET /api/models/{id}/lineage?mode=&limit=  LineageAnswer
    GET /api/models/{id}/family?mode=&format=json|graphml|gexf
    GET /api/compare?a=&b=                     Comparison of two indexed models with the tests
    GET /api/discrepancies?mode=               Discrepancies (with suggested card snippets)

Errors are ``{"error": "<one line>"}``: 404 unknown model, 400/422 bad parameters, 503 no
snapshot yet.  Answers that change only with a new snapshot version (store generation, graph
build, tested pairs) carry an ``ETag``; ``If-None-Match`` with it answers 304.  Admin actions are
:mod:`pedigree.service.admin`.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from pedigree.errors import EvidenceMissingError, ModelNotFoundError, PedigreeError, UsageError
from pedigree.service import admin
from pedigree.service.answers import (
    GRAPH_FORMATS,
    download_name,
    family_file,
    family_json,
    finite,
    list_models,
    model_detail,
    model_record,
)
from pedigree.service.snapshots import NoSnapshotError, SnapshotReader, reader_for
from pedigree.types import Status
from pedigree.workspace import Workspace

SNAPSHOT_HEADER = "X-Pedigree-Snapshot"  # the snapshot an answer was read from
MAX_RELATED = 100
MAX_RUNS = 100
Mode = Annotated[str, Query(pattern="^(full|time|weights)$", description="Evidence used: full, time or weights.")]


def error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    """The API's one error shape: ``{"error": "<one line>"}``."""
    line = " ".join(str(message).split()) or "error"
    return JSONResponse({"error": line[:500]}, status_code=status, headers=headers)


def status_of(exc: PedigreeError) -> int:
    if isinstance(exc, NoSnapshotError):
        return 503
    if isinstance(exc, ModelNotFoundError):
        return 404
    if isinstance(exc, EvidenceMissingError):
        return 409
    return 400


def install_errors(app: FastAPI) -> None:
    """Every error as one JSON line (HTTP errors, parameter validation, pedigree's errors)."""

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        return error(exc.status_code, str(exc.detail), getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def bad_parameters(request: Request, exc: RequestValidationError) -> Response:
        problems = [
            f"{'.'.join(str(p) for p in e.get('loc', ())[1:]) or 'request'}: {e.get('msg')}" for e in exc.errors()
        ]
        return error(422, "; ".join(problems) or "bad request")

    @app.exception_handler(PedigreeError)
    async def pedigree_error(request: Request, exc: PedigreeError) -> Response:
        return error(status_of(exc), str(exc))


def etag_of(version: str, request: Request) -> str:
    """A strong validator: the snapshot's version, the path and the query string."""
    key = f"{version}|{request.url.path}|{request.url.query}"
    return '"' + hashlib.sha256(key.encode()).hexdigest()[:32] + '"'


class Answers:
    """The routes' shared plumbing: lease a workspace, answer JSON, with or without an ETag."""

    def __init__(self, reader: SnapshotReader) -> None:
        self.reader = reader

    def json(self, request: Request, answer: Callable[[Workspace], Any], *, cached: bool = False) -> Response:
        with self.reader.workspace() as (ws, facts):
            headers = {SNAPSHOT_HEADER: facts["name"]}
            if cached:
                headers |= {"ETag": etag_of(facts["version"], request), "Cache-Control": "no-cache"}
                if headers["ETag"] in _tags(request.headers.get("if-none-match")):
                    return Response(status_code=304, headers=headers)
            content = finite(answer(ws))
        return JSONResponse(content, headers=headers)


def _tags(header: str | None) -> set[str]:
    if not header:
        return set()
    return {t.strip().removeprefix("W/") for t in header.split(",")} | ({"*"} if header.strip() == "*" else set())


def install(app: FastAPI, home: str | os.PathLike[str] | None = None, *, admin_token: str | None = None) -> None:
    """Add the JSON API (and the admin routes) for the data folder ``home`` to ``app``."""
    reader = reader_for(app, home)
    answers = Answers(reader)
    install_errors(app)

    @app.get("/healthz", tags=["status"], summary="Liveness and the snapshot answers come from")
    def healthz() -> dict[str, Any]:
        return {"ok": True, "snapshot": reader.current()}

    @app.get("/api/status", tags=["status"], summary="Last runs, crawl high-water marks, what the index holds")
    def status(request: Request, limit: Annotated[int, Query(ge=1, le=MAX_RUNS)] = 10) -> Response:
        def answer(ws: Workspace) -> dict[str, Any]:
            return {**ws.status(limit).to_json(), "snapshot": reader.current()}

        return answers.json(request, answer)

    @app.get("/api/runs", tags=["status"], summary="The last crawl / refresh runs, newest first")
    def runs(request: Request, limit: Annotated[int, Query(ge=1, le=MAX_RUNS)] = 10) -> Response:
        return answers.json(request, lambda ws: {"runs": [r.to_json() for r in ws.status(limit).runs]})

    @app.get("/api/models", tags=["models"], summary="Search the index: id substring, architecture, status; paged")
    def models(
        request: Request,
        q: Annotated[str | None, Query(description="Id prefix or substring (case-insensitive).")] = None,
        architecture: Annotated[str | None, Query(description="Architecture class or model type.")] = None,
        status: Annotated[str | None, Query(description="indexed, failed, unsupported ...")] = None,
        limit: Annotated[int, Query(ge=1, le=200)] = 50,
        cursor: Annotated[str | None, Query(description="The `next` of the previous page.")] = None,
    ) -> Response:
        return answers.json(request, lambda ws: list_models(ws, q, architecture, status, limit, cursor), cached=True)

    @app.get("/api/models/{model_id:path}/related", tags=["models"], summary="The indexed models most related")
    def related(request: Request, model_id: str, limit: Annotated[int, Query(ge=1, le=MAX_RELATED)] = 10) -> Response:
        def answer(ws: Workspace) -> dict[str, Any]:
            _indexed(ws, model_id)
            return ws.related(model_id, limit).to_json()

        return answers.json(request, answer, cached=True)

    @app.get(
        "/api/models/{model_id:path}/lineage",
        tags=["lineage"],
        summary="Parents (relation, confidence, log10 p, evidence), ancestors, children, family",
    )
    def lineage(
        request: Request, model_id: str, mode: Mode = "full", limit: Annotated[int, Query(ge=1, le=MAX_RELATED)] = 10
    ) -> Response:
        def answer(ws: Workspace) -> dict[str, Any]:
            record = model_record(ws, model_id)
            if record.status != Status.INDEXED:  # no fingerprint: lineage only
                from pedigree.query.graph import lineage as graph_lineage
                from pedigree.results import LineageAnswer, Related

                return LineageAnswer.of(Related(model_id, ()), graph_lineage(ws.store, model_id, mode)).to_json()
            return ws.query(model_id, limit, mode).to_json()

        return answers.json(request, answer, cached=True)

    @app.get(
        "/api/models/{model_id:path}/family",
        tags=["lineage"],
        summary="The model's family: node-link JSON, or a GraphML / GEXF download",
        responses={200: {"content": {"application/json": {}, **{t: {} for t in GRAPH_FORMATS.values()}}}},
    )
    def family(
        request: Request,
        model_id: str,
        mode: Mode = "full",
        format: Annotated[str, Query(pattern="^(json|graphml|gexf)$")] = "json",  # noqa: A002 - the API's name
    ) -> Response:
        if format == "json":
            return answers.json(request, lambda ws: family_json(ws, model_id, mode), cached=True)
        with reader.workspace() as (ws, facts):
            headers = {SNAPSHOT_HEADER: facts["name"], "ETag": etag_of(facts["version"], request)}
            headers["Cache-Control"] = "no-cache"
            if headers["ETag"] in _tags(request.headers.get("if-none-match")):
                return Response(status_code=304, headers=headers)
            body = family_file(ws, model_id, format, mode)
        headers["Content-Disposition"] = f'attachment; filename="{download_name(model_id, format)}"'
        return Response(body, media_type=GRAPH_FORMATS[format], headers=headers)

    @app.get("/api/models/{model_id:path}", tags=["models"], summary="A model: status, config, card, declared base")
    def model(request: Request, model_id: str) -> Response:
        return answers.json(request, lambda ws: model_detail(ws, model_id), cached=True)

    @app.get(
        "/api/compare",
        tags=["lineage"],
        summary="Two indexed models: fingerprint score, block map and each independence test's log10 p",
    )
    def compare(
        request: Request,
        a: Annotated[str, Query(min_length=1, max_length=300)],
        b: Annotated[str, Query(min_length=1, max_length=300)],
    ) -> Response:
        """A stored pair answers from its stored tests; a pair never tested is tested now from the
        two models' stored evidence files (read-only: the result is not stored, a few seconds on
        the small zoo).  Only indexed model ids are accepted - never a path on the server."""

        def answer(ws: Workspace) -> dict[str, Any]:
            if a == b:
                raise UsageError("a and b are the same model")
            _indexed(ws, a)
            _indexed(ws, b)
            return ws.compare(a, b).to_json()

        return answers.json(request, answer, cached=True)

    @app.get("/api/discrepancies", tags=["lineage"], summary="Cards the weights contradict, with card snippets")
    def discrepancies(request: Request, mode: Mode = "full") -> Response:
        return answers.json(request, lambda ws: ws.discrepancies(mode).to_json(), cached=True)

    admin.install(app, reader, admin_token=admin_token)


def _indexed(ws: Workspace, model_id: str) -> None:
    record = model_record(ws, model_id)
    if record.status != Status.INDEXED:
        raise UsageError(f"{model_id!r} is not indexed ({record.status}): it has no fingerprint to compare")
