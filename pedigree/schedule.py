"""``pedigree schedule``: run refresh on a cron schedule with apscheduler.

- **No overlapping runs**: one job, ``max_instances=1``, ``coalesce=True`` (a run that is still
  going when the next is due makes the next one wait, and a backlog collapses into one run); a
  missed run is that same job brought forward, never a second job.  Across processes the DuckDB
  file lock keeps a second writer out.
- **Stops on Ctrl-C / SIGINT at once.**  The scheduler runs in a background thread and every run
  in that thread (apscheduler's ``DebugExecutor``); the main thread only waits, so the interrupt
  always reaches pedigree's code (apscheduler catches ``BaseException`` in its own loop, which
  swallowed a Ctrl-C that landed there).  :func:`run_schedule` then pauses the scheduler (its
  daemon thread ends with the process) and says whether a refresh was in progress; the CLI
  abandons it (a stopped refresh is resumed by the next one, as after a kill).  A run that fails
  says why in one line and the schedule goes on.
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
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

from apscheduler.executors.debug import DebugExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.schedulers.base import BaseScheduler
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


def refresh_once(settings: Settings, endpoint: str | None, limit: int | None) -> RefreshSummary:
    with Workspace(settings) as ws:
        return ws.refresh(endpoint, limit=limit)


Message = Callable[[str], None]


class ScheduledRefresh:
    """The job: one refresh at a time; a failure is a message and the schedule goes on."""

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
        self.running = threading.Event()

    def __call__(self) -> None:
        self.running.set()
        try:
            summary = refresh_once(self.settings, self.endpoint, self.limit)
        except PedigreeError as error:
            summary = None
            if self.on_message is not None:
                self.on_message(f"refresh failed: {error}")
        finally:
            self.running.clear()  # committed and closed: nothing left to abandon
        if summary is not None and self.on_run is not None:
            self.on_run(summary)

    def __repr__(self) -> str:  # apscheduler names the job by it in its log lines
        return "refresh"


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
) -> bool:
    """Run the schedule until Ctrl-C (options not given come from the saved schedule); returns
    whether a refresh was in progress when it stopped.  With ``scheduler`` given (a started
    background scheduler is the caller's to stop) it returns at once, False."""
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
    blocking = scheduler is None
    scheduler = scheduler or BackgroundScheduler(timezone=UTC, executors={"default": DebugExecutor()}, daemon=True)
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
    if not blocking:
        return False
    idle = threading.Event()
    try:
        with stop_signals():
            while scheduler.running:
                idle.wait(1.0)  # the main thread waits in pedigree's code: Ctrl-C lands here
    except KeyboardInterrupt:
        scheduler.pause()  # no new run; not shutdown(), which joins the thread and so waits for a run to end
    return job.running.is_set()


@contextmanager
def stop_signals() -> Iterator[None]:
    """SIGINT and SIGTERM raise ``KeyboardInterrupt`` here, even in a process started with SIGINT
    ignored (a background job of a non-interactive shell, some process managers): the schedule is
    stopped by them (compose's ``stop_signal``, systemd, ``docker stop``).  Main thread only."""

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = {sig: signal.signal(sig, interrupt) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
