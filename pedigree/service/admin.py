"""Admin actions: trigger a refresh, ingest one Hub repo by id; their jobs' state.

::

    POST /api/admin/refresh  {"endpoint": optional, "limit": optional}  -> 202 {"job": {...}}
    POST /api/admin/ingest   {"repo_id": "owner/name", "endpoint": optional} -> 202 {"job": {...}}
    GET  /api/admin/jobs/{job}                                            -> {"job": {...}}

Every admin request needs ``Authorization: Bearer <token>`` matching ``PEDIGREE_ADMIN_TOKEN`` (or
``create_app(admin_token=...)``), compared in constant time: no header 401, a wrong token 403.
With no token configured the admin actions are switched off and every admin request is answered
403 (the routes stay listed in the OpenAPI document).  Requests are rate-limited per client
address (a token bucket: :data:`BURST` at once, one more every :data:`REFILL_S` seconds; 429 with
``Retry-After``), failed authentications included.  Bodies are small JSON objects (at most
:data:`MAX_BODY` bytes, 413 beyond).

An accepted action runs as a child process - the real CLI (``python -m pedigree refresh --json``)
or :mod:`pedigree.service.ingest_job` - which writes the live index and publishes a snapshot when
it is done; the serving process keeps answering from the previous snapshot meanwhile and switches
on its next request.  One job at a time: 409 while one runs.
"""

from __future__ import annotations

import hmac
import json
import os
import re
import subprocess
import sys
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

if TYPE_CHECKING:
    from pedigree.service.snapshots import SnapshotReader

TOKEN_ENV = "PEDIGREE_ADMIN_TOKEN"
BURST = 5
REFILL_S = 12.0
MAX_BODY = 4096
MAX_OUTPUT = 4000  # characters of a job's stderr kept
JOBS_KEPT = 50
_ENDPOINT = re.compile(r"https?://[A-Za-z0-9.\-\[\]:]+(/[A-Za-z0-9._~/\-]*)?")


class AdminRefused(Exception):
    """An admin request answered with an error (status, one line, headers)."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.headers = headers or {}


class RateLimiter:
    """A token bucket per client: ``burst`` requests at once, refilled one per ``refill_s``."""

    def __init__(self, burst: int = BURST, refill_s: float = REFILL_S) -> None:
        self.burst, self.refill_s = burst, refill_s
        self._buckets: dict[str, tuple[float, float]] = {}  # client -> (tokens, at)
        self._lock = threading.Lock()

    def take(self, client: str) -> float:
        """0 when the request may go ahead, else the seconds until it may."""
        now = time.monotonic()
        with self._lock:
            tokens, at = self._buckets.get(client, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - at) / self.refill_s)
            if tokens >= 1:
                self._buckets[client] = (tokens - 1, now)
                return 0.0
            self._buckets[client] = (tokens, now)
            return (1 - tokens) * self.refill_s


@dataclass
class Job:
    """One admin action run as a child process."""

    id: str
    kind: str
    args: dict[str, Any]
    command: list[str]
    state: str = "running"  # running | succeeded | failed
    started_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    finished_at: str | None = None
    returncode: int | None = None
    result: Any = None
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "args": self.args,
            "state": self.state,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "returncode": self.returncode,
            "result": self.result,
            "error": self.error,
        }


class Jobs:
    """The admin jobs of this process: at most one running, the last :data:`JOBS_KEPT` kept."""

    def __init__(self, home: str) -> None:
        self.home = home
        self._jobs: dict[str, Job] = {}
        self._order: deque[str] = deque()
        self._lock = threading.Lock()

    def running(self) -> Job | None:
        with self._lock:
            return next((j for j in self._jobs.values() if j.state == "running"), None)

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            return self._jobs.get(job_id)

    def start(self, kind: str, args: dict[str, Any], command: list[str]) -> Job:
        with self._lock:
            busy = next((j for j in self._jobs.values() if j.state == "running"), None)
            if busy is not None:
                raise AdminRefused(409, f"job {busy.id} ({busy.kind}) is still running: one admin job at a time")
            job = Job(uuid.uuid4().hex[:16], kind, args, command)
            self._jobs[job.id] = job
            self._order.append(job.id)
            while len(self._order) > JOBS_KEPT:
                self._jobs.pop(self._order.popleft(), None)
        env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "OPENBLAS_NUM_THREADS": "1"}
        env.pop(TOKEN_ENV, None)  # the child needs no admin token
        try:
            child = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
            )
        except OSError as error:
            self._finish(job, None, "", f"could not start: {error}")
            return job
        threading.Thread(target=self._wait, args=(job, child), name=f"admin-job-{job.id}", daemon=True).start()
        return job

    def _wait(self, job: Job, child: subprocess.Popen[bytes]) -> None:
        stdout, stderr = child.communicate()
        self._finish(job, child.returncode, stdout.decode(errors="replace"), stderr.decode(errors="replace"))

    def _finish(self, job: Job, returncode: int | None, stdout: str, stderr: str) -> None:
        try:
            result = json.loads(stdout) if stdout.strip() else None
        except ValueError:
            result = None
        with self._lock:
            job.returncode = returncode
            job.result = result
            job.state = "succeeded" if returncode == 0 else "failed"
            if returncode != 0:
                message = result.get("error") if isinstance(result, dict) else None
                job.error = message or " ".join(stderr.split())[-MAX_OUTPUT:] or f"exit status {returncode}"
            job.finished_at = datetime.now(UTC).isoformat(timespec="seconds")


class Admin:
    """Authentication, rate limiting and the jobs of one app."""

    def __init__(self, home: str, token: str | None) -> None:
        self.home = home
        self.token = token
        self.limiter = RateLimiter()
        self.jobs = Jobs(home)

    def check(self, request: Request, *, action: bool = True) -> None:
        """Rate limit (actions, and every failed authentication), then the bearer token;
        AdminRefused (429, 403, 401) when refused."""
        client = request.client.host if request.client else "unknown"
        if action:
            self._limit(client)
        try:
            self._authenticate(request)
        except AdminRefused:
            if not action:
                self._limit(client)
            raise

    def _limit(self, client: str) -> None:
        wait = self.limiter.take(client)
        if wait > 0:
            raise AdminRefused(429, "too many admin requests: retry later", {"Retry-After": str(max(1, round(wait)))})

    def _authenticate(self, request: Request) -> None:
        if not self.token:
            raise AdminRefused(403, f"admin actions are switched off: the server has no {TOKEN_ENV}")
        header = request.headers.get("authorization", "")
        scheme, _, given = header.partition(" ")
        if scheme.lower() != "bearer" or not given.strip():
            raise AdminRefused(401, "admin action: send Authorization: Bearer <token>", {"WWW-Authenticate": "Bearer"})
        if not hmac.compare_digest(given.strip().encode(), self.token.encode()):
            raise AdminRefused(403, "admin action: wrong token")

    def command(self, *args: str) -> list[str]:
        return [sys.executable, "-m", *args]


async def small_json(request: Request) -> dict[str, Any]:
    """The request's body: a JSON object of at most MAX_BODY bytes (an empty body is {})."""
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > MAX_BODY):
        raise AdminRefused(413, f"request body over {MAX_BODY} bytes")
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY:
            raise AdminRefused(413, f"request body over {MAX_BODY} bytes")
    if not body.strip():
        return {}
    try:
        value = json.loads(body)
    except ValueError:
        raise AdminRefused(400, "request body: not JSON") from None
    if not isinstance(value, dict):
        raise AdminRefused(400, "request body: a JSON object is expected")
    return value


def _endpoint(body: dict[str, Any]) -> str | None:
    endpoint = body.get("endpoint")
    if endpoint is None:
        return None
    if not isinstance(endpoint, str) or len(endpoint) > 300 or not _ENDPOINT.fullmatch(endpoint):
        raise AdminRefused(400, "endpoint: an http(s) URL")
    return endpoint.rstrip("/")


def install(app: FastAPI, reader: SnapshotReader, *, admin_token: str | None = None) -> None:
    """Add the admin routes; the token is ``admin_token`` or ``$PEDIGREE_ADMIN_TOKEN``."""
    admin = Admin(str(reader.home), admin_token if admin_token is not None else os.environ.get(TOKEN_ENV))
    app.state.admin = admin

    @app.exception_handler(AdminRefused)
    async def refused(request: Request, exc: AdminRefused) -> JSONResponse:
        return JSONResponse({"error": str(exc)}, status_code=exc.status, headers=exc.headers)

    @app.post("/api/admin/refresh", tags=["admin"], status_code=202, summary="Start a refresh (bearer token)")
    async def refresh(request: Request) -> JSONResponse:
        admin.check(request)
        body = await small_json(request)
        endpoint = _endpoint(body)
        limit = body.get("limit")
        if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 1):
            raise AdminRefused(400, "limit: a positive integer")
        args = ["pedigree", "--home", admin.home, "--json", "refresh"]
        args += ["--endpoint", endpoint] if endpoint else []
        args += ["--limit", str(limit)] if limit else []
        job = admin.jobs.start("refresh", {"endpoint": endpoint, "limit": limit}, admin.command(*args))
        return JSONResponse({"job": job.to_json()}, status_code=202)

    @app.post("/api/admin/ingest", tags=["admin"], status_code=202, summary="Index one Hub repo by id (bearer token)")
    async def ingest(request: Request) -> JSONResponse:
        admin.check(request)
        body = await small_json(request)
        repo_id = body.get("repo_id")
        from pedigree.crawler.listing import valid_repo_id

        if not isinstance(repo_id, str) or not valid_repo_id(repo_id):
            raise AdminRefused(400, "repo_id: a Hub model id, owner/name")
        endpoint = _endpoint(body)
        args = ["pedigree.service.ingest_job", "--home", admin.home, "--repo-id", repo_id]
        args += ["--endpoint", endpoint] if endpoint else []
        job = admin.jobs.start("ingest", {"repo_id": repo_id, "endpoint": endpoint}, admin.command(*args))
        return JSONResponse({"job": job.to_json()}, status_code=202)

    @app.get("/api/admin/jobs/{job_id}", tags=["admin"], summary="An admin job's state (bearer token)")
    def job_state(request: Request, job_id: str) -> JSONResponse:
        admin.check(request, action=False)
        job = admin.jobs.get(job_id)
        if job is None:
            raise AdminRefused(404, f"no job {job_id[:40]!r}")
        return JSONResponse({"job": job.to_json()})
