"""Planner throughput: a full sweep re-plans every patient, so it must stay cheap.

Run: python bench/bench_planner.py [patients]
Prints patients/s and timepoints/s for plan() and plan()+diff() on a
synthetic heavy arm-A history (6 cycles, 14 intrathecal doses, EOT, follow-up).
"""

from __future__ import annotations

import sys
import time
from datetime import date, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from qol_app.scheduling import (
    SCHEDULES_DIR,
    EventFact,
    PatientFacts,
    apply_plan,
    diff,
    load_schedule,
    plan,
)


def history(rand: date) -> list[EventFact]:
    """Induction twice weekly x2, weekly x4, then 4-weekly; 21-day cycles."""
    events: list[EventFact] = []
    for n in range(6):
        events.append(EventFact(f"c{n}", "systemic_cycle", rand + timedelta(days=2 + 23 * n), n + 1, 21))
    offsets = [1, 4, 8, 11, 15, 22, 29, 36, 64, 92, 120, 148, 176, 204]
    for n, day in enumerate(offsets, start=1):
        events.append(EventFact(f"it{n}", "intrathecal_dose", rand + timedelta(days=day), n))
    events.append(EventFact("eot", "end_of_treatment", rand + timedelta(days=210)))
    return events


def main() -> None:
    patients = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    schedule = load_schedule(SCHEDULES_DIR / "conquer.yaml")
    rand = date(2026, 1, 5)
    facts = PatientFacts("A", rand, "Asia/Shanghai")
    events = history(rand)
    today = rand + timedelta(days=400)
    planned = plan(schedule, facts, events, today)
    stored = apply_plan([], diff([], planned))

    start = time.perf_counter()
    for _ in range(patients):
        plan(schedule, facts, events, today)
    plan_s = time.perf_counter() - start

    start = time.perf_counter()
    for _ in range(patients):
        diff(stored, plan(schedule, facts, events, today))
    sweep_s = time.perf_counter() - start

    print(f"timepoints per patient: {len(planned)}")
    print(f"plan():        {patients / plan_s:8.0f} patients/s  {patients * len(planned) / plan_s:9.0f} timepoints/s")
    print(f"plan()+diff(): {patients / sweep_s:8.0f} patients/s")


if __name__ == "__main__":
    main()
