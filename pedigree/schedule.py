"""``pedigree schedule``: run refresh on a cron schedule with apscheduler.

- **No overlapping runs**: one job, ``max_instances=1``, ``coalesce=True`` (a run that is still
  going when the next is due makes the next one wait, and a backlog collapses into one run); a
  missed run is that same job brought forward, never a second job.  Across processes the DuckDB
  file lock keeps a second writer out.
- **Runs in the scheduler's thread** (apscheduler's ``DebugExecutor``): under ``BlockingScheduler``
  that is the main thread, so Ctrl-C / SIGINT stops a running refresh at once instead of waiting
  for a worker thread to finish it (a stopped refresh is resumed by the next one).  A run that
  fails says why in one line and the schedule goes on.
- **Persistent schedule**: the cron line, endpoint and limit are kept in the data folder
  (``schedule.json``), so ``pedigree schedule`` with no options after a restart resumes the same
  schedule; the job store itself is in memory (apscheduler 3's persistent stores need SQLAlchemy
  or a server, neither of which pedigree depends on).
- **Misfires**: the last run's start time is read from the ``runs`` table; if a scheduled time
  passed since then (the machine was off), one refresh runs at start (``--skip-missed`` to not).
- Every run is recorded in DuckDB by ``Workspace.refresh`` (start, end, counts, errors).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime

from apscheduler.executors.debug import DebugExecutor
from apscheduler.schedulers.base import BaseScheduler
from apscheduler.schedulers.blocking import BlockingScheduler
from apscheduler.triggers.cron import CronTrigger

from pedigree.config import Settings
from pedigree.errors import PedigreeError, UsageError
from pedigree.results import RefreshSummary
from pedigree.storage.crawl import last_runs
from pedigree.workspace import Workspace

MISFIRE_GRACE_SECONDS = 6 * 3600


def trigger(cron: str) -> CronTrigger:
    """A cron line (minute hour day month weekday) in UTC."""
    try:
        return CronTrigger.from_crontab(cron, timezone=UTC)
    except ValueError as error:
        raise UsageError(f"--cron {cron!r} is not a crontab line (minute hour day month weekday): {error}") from None


def missed_run(cron: str, last_start: datetime | None, now: datetime) -> bool:
    """Whether a scheduled time fell between the last run's start and ``now`` (both UTC)."""
    if last_start is None:
        return False
    last = last_start.replace(tzinfo=UTC) if last_start.tzinfo is None else last_start
    upcoming = trigger(cron).get_next_fire_time(None, last)
    return upcoming is not None and last < upcoming <= now


RunDone = Callable[[RefreshSummary], None]


def refresh_once(settings: Settings, endpoint: str | None, limit: int | None, on_run: RunDone | None = None) -> None:
    with Workspace(settings) as ws:
        summary = ws.refresh(endpoint, limit=limit)
    if on_run is not None:
        on_run(summary)


Message = Callable[[str], None]


class ScheduledRefresh:
    """The job: one refresh; a failure is a message, an interrupt is handed to the scheduler.

    apscheduler's ``run_job`` catches every ``BaseException`` a job raises (and logs a traceback),
    so Ctrl-C inside a run is caught here and marked; :class:`MainThreadScheduler` raises it again
    once the job has been accounted for.
    """

    def __init__(
        self,
        settings: Settings,
        endpoint: str | None,
        limit: int | None,
        on_run: RunDone | None,
        on_message: Message | None,
    ) -> None:
        self.settings, self.endpoint, self.limit = settings, endpoint, limit
        self.on_run, self.on_message = on_run, on_message
        self.interrupted = False

    def __call__(self) -> None:
        try:
            refresh_once(self.settings, self.endpoint, self.limit, self.on_run)
        except KeyboardInterrupt:
            self.interrupted = True
        except PedigreeError as error:
            if self.on_message is not None:
                self.on_message(f"refresh failed: {error}")

    def __repr__(self) -> str:  # apscheduler names the job by it in its log lines
        return "refresh"


class MainThreadScheduler(BlockingScheduler):
    """A blocking scheduler whose jobs run in its own (the main) thread and whose loop re-raises a
    Ctrl-C that arrived during a job, after apscheduler has updated the job's next run."""

    def __init__(self, job: ScheduledRefresh) -> None:
        super().__init__(timezone=UTC, executors={"default": DebugExecutor()})
        self.job = job

    def _process_jobs(self) -> float | None:
        wait_seconds = super()._process_jobs()
        if self.job.interrupted:
            raise KeyboardInterrupt
        return wait_seconds


DEFAULT_CRON = "0 2 * * *"


def saved_schedule(settings: Settings) -> dict:
    path = settings.home / "schedule.json"
    return json.loads(path.read_text()) if path.exists() else {}


def run_schedule(
    settings: Settings,
    cron: str | None,
    *,
    endpoint: str | None = None,
    limit: int | None = None,
    run_missed: bool = True,
    scheduler: BaseScheduler | None = None,
    on_run: RunDone | None = None,
    on_message: Message | None = None,
) -> BaseScheduler:
    """Start the blocking scheduler (options not given come from the saved schedule)."""
    saved = saved_schedule(settings)
    cron = cron or saved.get("cron") or DEFAULT_CRON
    endpoint = endpoint or saved.get("endpoint")
    limit = limit or saved.get("limit")
    trigger(cron)  # a bad cron line fails here, before anything is saved
    settings.home.mkdir(parents=True, exist_ok=True)
    (settings.home / "schedule.json").write_text(json.dumps({"cron": cron, "endpoint": endpoint, "limit": limit}))
    with Workspace(settings) as ws:
        runs = [r for r in last_runs(ws.store, 50) if r.kind == "refresh"]
    last_start = datetime.fromisoformat(runs[0].started_at) if runs else None
    job = ScheduledRefresh(settings, endpoint, limit, on_run, on_message)
    scheduler = scheduler or MainThreadScheduler(job)
    made_up = run_missed and missed_run(cron, last_start, datetime.now(UTC))
    scheduler.add_job(
        job,
        trigger(cron),
        id="refresh",
        max_instances=1,
        coalesce=True,
        misfire_grace_time=MISFIRE_GRACE_SECONDS,
        replace_existing=True,
        **({"next_run_time": datetime.now(UTC)} if made_up else {}),
    )
    if on_message is not None:
        upcoming = trigger(cron).get_next_fire_time(None, datetime.now(UTC))
        on_message(
            f"refresh scheduled '{cron}' (UTC); next at {upcoming}" + ("; a missed run first" if made_up else "")
        )
    scheduler.start()
    return scheduler
