"""The background process (``qol scheduler``): status sweep, reminders, outbox, alert escalation.

:mod:`.jobs` holds the sweep (thin calls into the services), :mod:`.lock` the single-instance
lock, :mod:`.process` the APScheduler loop. Nothing here is imported by ``create_app``.
"""

from qol_app.scheduler.jobs import SweepReport, run_sweep
from qol_app.scheduler.lock import LockHeld, LockLost, lock_for
from qol_app.scheduler.process import run_forever, run_once

__all__ = ["LockHeld", "LockLost", "SweepReport", "lock_for", "run_forever", "run_once", "run_sweep"]
