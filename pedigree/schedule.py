"""``pedigree schedule``: run refresh on a cron schedule with apscheduler.

- **No overlapping runs**: one job, ``max_instances=1``, ``coalesce=True`` (a run that is still
  going when the next is due makes the next one wait, and a backlog collapses into one run).
  Across processes the DuckDB file lock keeps a second writer out.
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

from apscheduler.schedulers.blocking import BlockingScheduler
from apscheduler.triggers.cron import CronTrigger

from pedigree.config import Settings
from pedigree.errors import UsageError
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
    scheduler: BlockingScheduler | None = None,
    on_run: RunDone | None = None,
    on_message: Callable[[str], None] | None = None,
) -> BlockingScheduler:
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
    scheduler = scheduler or BlockingScheduler(timezone=UTC)
    scheduler.add_job(
        refresh_once,
        trigger(cron),
        args=[settings, endpoint, limit, on_run],
        id="refresh",
        max_instances=1,
        coalesce=True,
        misfire_grace_time=MISFIRE_GRACE_SECONDS,
        replace_existing=True,
    )
    if run_missed and missed_run(cron, last_start, datetime.now(UTC)):
        scheduler.add_job(refresh_once, args=[settings, endpoint, limit, on_run], id="missed", max_instances=1)
    if on_message is not None:
        upcoming = trigger(cron).get_next_fire_time(None, datetime.now(UTC))
        on_message(f"refresh scheduled '{cron}' (UTC); next at {upcoming}")
    scheduler.start()
    return scheduler
