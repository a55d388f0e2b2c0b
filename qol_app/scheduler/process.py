"""The ``qol scheduler`` process: an APScheduler 3 BlockingScheduler under a single-instance lock.

Never started from ``create_app``: under gunicorn every worker would run every job. The job
store is in memory (APScheduler cannot share one between processes); the lock is what makes
this the only scheduler, and the jobs' idempotency is what makes a second one harmless.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import signal
from collections.abc import Callable
from typing import Any

from apscheduler.schedulers import SchedulerNotRunningError
from apscheduler.schedulers.blocking import BlockingScheduler
from flask import Flask

from qol_app.db import utcnow
from qol_app.scheduler.jobs import SweepReport, forget_instance, run_export_jobs, run_sweep
from qol_app.scheduler.lock import LockLost, SchedulerLock, lock_for

log = logging.getLogger("qol_app.scheduler")
DEFAULT_INTERVAL_SECONDS = 60


def run_once(app: Flask, *, wait: bool = False, lock: SchedulerLock | None = None) -> SweepReport:
    """One sweep under the lock (cron deployments); raises LockHeld if another one runs."""
    lock = lock or lock_for(app)
    lock.acquire(wait=wait)
    try:
        report = run_sweep(app)
        run_export_jobs(app)
        return report
    finally:
        lock.release()


def build_scheduler(app: Flask, lock: SchedulerLock, interval_seconds: int) -> BlockingScheduler:
    """The scheduler with its one interval job (explicit misfire, coalescing and instance limits)."""
    scheduler = BlockingScheduler(timezone=dt.UTC)

    def sweep() -> None:
        if not lock.check():
            log.critical("the scheduler lock was lost (database connection gone?); stopping")
            scheduler.lock_lost = True
            with contextlib.suppress(SchedulerNotRunningError):  # a signal stopped it meanwhile
                scheduler.shutdown(wait=False)
            return
        run_sweep(app)

    scheduler.lock_lost = False

    def renew() -> None:
        if not lock.check():
            log.critical("the scheduler lease could not be renewed (taken over?); stopping")
            scheduler.lock_lost = True
            with contextlib.suppress(SchedulerNotRunningError):
                scheduler.shutdown(wait=False)

    renew_every = getattr(lock, "renew_every", None)
    if renew_every is not None:  # a lease: renewed while a long sweep runs, in another worker thread
        scheduler.add_job(
            renew,
            "interval",
            seconds=renew_every,
            id="renew_lease",
            name="renew the scheduler lease",
            misfire_grace_time=int(renew_every),
            coalesce=True,
            max_instances=1,
        )

    scheduler.add_job(
        sweep,
        "interval",
        seconds=interval_seconds,
        id="sweep",
        name="status, reminders, outbox",
        next_run_time=utcnow(),
        # A run missed by more than one interval (process suspended, clock jump) is skipped and
        # missed runs collapse into one: the next sweep catches up anyway, because every state
        # is derived from data and the clock. Never two sweeps at once in this process.
        misfire_grace_time=interval_seconds,
        coalesce=True,
        max_instances=1,
    )
    poll = int(app.config.get("EXPORT_POLL_SECONDS") or 5)
    scheduler.add_job(
        lambda: run_export_jobs(app) if lock.check() else None,
        "interval",
        seconds=poll,
        id="exports",
        name="background exports of the statistician page",
        misfire_grace_time=poll,
        coalesce=True,
        max_instances=1,  # one export at a time, beside the sweep (its own thread)
    )
    return scheduler


def stop_handler(scheduler: BlockingScheduler) -> Callable[[int, Any], None]:
    """The SIGTERM handler: stop after the running sweep. A second signal (a supervisor and a
    shell both sending one) or a stop after the lost-lock shutdown changes nothing."""

    def stop(signum: int, frame: Any) -> None:
        log.info("signal %s: stopping after the running sweep", signum)
        with contextlib.suppress(SchedulerNotRunningError):
            scheduler.shutdown(wait=False)

    return stop


def run_forever(app: Flask, *, interval_seconds: int = DEFAULT_INTERVAL_SECONDS, wait: bool = False) -> None:
    """Hold the lock and sweep every ``interval_seconds`` until SIGTERM/SIGINT.

    Raises :class:`~qol_app.scheduler.lock.LockLost` if the lock went away (a supervisor
    should restart the process, which then waits for or retakes the lock).
    """
    lock = lock_for(app)
    lock.acquire(wait=wait)
    log.info("scheduler started (%s held; sweep every %ss)", lock.description, interval_seconds)
    scheduler = build_scheduler(app, lock, interval_seconds)

    previous = signal.signal(signal.SIGTERM, stop_handler(scheduler))
    try:
        scheduler.start()
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        lock.release()
        forget_instance(app)
        log.info("scheduler stopped")
    if scheduler.lock_lost:
        raise LockLost("the scheduler lock was lost while running; stopped to avoid running unguarded")
