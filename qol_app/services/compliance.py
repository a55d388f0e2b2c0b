"""Form compliance (SISAQOL) by timepoint, arm and site, from a fixed number of GROUP BY queries.

Definitions (CLINICAL.md §3; shown on the dashboard):

* A timepoint's *effective status* is derived from its instants and ``now`` like
  ``scheduling.status.derive_status``, so a stalled scheduler cannot distort the figures.
* **Expected** = timepoints whose outcome is known: completed + partial + missed. Forms from
  patients who died, withdrew or were lost after that timepoint are ``not_expected`` and leave
  the denominator; cancelled ones never count; open, overdue (in grace) and future ones are
  *pending* and enter the denominator once decided.
* **Rate** = completed / expected. **Rate per randomized** = completed / patients randomized in
  that arm (and site), the second SISAQOL figure.
* **On time** = submitted before the window closed; **late** = in the grace period or after.
* **Not offered** = missed with the administrative reason ``not_offered`` (the window had closed
  before the event that creates the form was recorded): counted apart from patient-related
  misses, still in the denominator.

The query count does not depend on the number of patients: three aggregates in total.
Missed-form reasons are written here too (:func:`set_missed_reason`): they feed these figures.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence

from sqlalchemy import ColumnElement, and_, case, func, literal, select
from sqlalchemy.orm import Session

from qol_app.errors import N_, ServiceError
from qol_app.models import Patient, Response, StaffUser, Timepoint
from qol_app.models.schedule import MISSED_REASONS
from qol_app.scheduling.status import derive_status
from qol_app.services import audit
from qol_app.services.audit import Actor

DECIDED = ("completed", "partial", "missed")
NOT_OFFERED = "not_offered"
PENDING = ("open", "overdue")


def effective_status(now: dt.datetime) -> ColumnElement[str]:
    """SQL twin of ``derive_status``: stored final states win, the rest follows the clock."""
    return case(
        (Timepoint.status.in_(("completed", "not_expected", "cancelled")), Timepoint.status),
        (Timepoint.opens_at > now, literal("scheduled")),
        (Timepoint.closes_at > now, literal("open")),
        (Timepoint.grace_closes_at > now, literal("overdue")),
        (Timepoint.started_at.is_not(None), literal("partial")),
        else_=literal("missed"),
    )


@dataclasses.dataclass
class Cell:
    """Counts for one (timepoint group or site) x arm."""

    randomized: int = 0
    on_time: int = 0
    late: int = 0
    partial: int = 0
    missed: int = 0
    #: Missed for an administrative reason (``not_offered``), apart from ``missed``.
    not_offered: int = 0
    pending: int = 0
    not_expected: int = 0
    reasons: Counter[str] = dataclasses.field(default_factory=Counter)

    @property
    def completed(self) -> int:
        return self.on_time + self.late

    @property
    def expected(self) -> int:
        return self.completed + self.partial + self.missed + self.not_offered

    @property
    def without_reason(self) -> int:
        return self.reasons.get("", 0)

    @property
    def rate(self) -> float | None:
        return self.completed / self.expected if self.expected else None

    @property
    def rate_randomized(self) -> float | None:
        return self.completed / self.randomized if self.randomized else None

    def add(self, status: str, late: bool, reason: str | None, n: int) -> None:
        if status == "completed":
            if late:
                self.late += n
            else:
                self.on_time += n
        elif status == "missed" and reason == NOT_OFFERED:
            self.not_offered += n
        elif status in ("partial", "missed"):
            setattr(self, status, getattr(self, status) + n)
            self.reasons[reason or ""] += n
        elif status in PENDING:
            self.pending += n
        elif status == "not_expected":
            self.not_expected += n


@dataclasses.dataclass(frozen=True)
class Group:
    """A timepoint group: one questionnaire timepoint (baseline, sys-c2...) or one diary rule."""

    kind: str
    rule_id: str
    key: str | None  # None for diaries (all days of a rule together)

    @property
    def number(self) -> int:
        digits = re.findall(r"\d+", self.key or "")
        return int(digits[-1]) if digits else 0


@dataclasses.dataclass
class Compliance:
    arms: tuple[str, ...]
    groups: list[Group]
    by_group: dict[tuple[Group, str], Cell]
    by_site: dict[tuple[int, str, str], Cell]  # (site id, kind, arm)
    site_ids: list[int]
    randomized: dict[str, int]
    randomized_by_site: dict[tuple[int, str], int]
    respondents: dict[str, Counter[str]]  # arm -> respondent -> forms
    modes: dict[str, Counter[str]]  # arm -> mode -> forms

    def cell(self, group: Group, arm: str) -> Cell:
        return self.by_group.get((group, arm)) or Cell(randomized=self.randomized.get(arm, 0))

    def site_cell(self, site_id: int, kind: str, arm: str) -> Cell:
        default = Cell(randomized=self.randomized_by_site.get((site_id, arm), 0))
        return self.by_site.get((site_id, kind, arm)) or default

    def help_share(self, arm: str) -> tuple[int, int, int]:
        """(forms with help, forms by a proxy, all submitted forms) for ``arm``."""
        counts = self.respondents.get(arm, Counter())
        return counts["self_assisted"], counts["proxy"], sum(counts.values())


def compute(
    session: Session,
    scope: ColumnElement[bool],
    now: dt.datetime,
    *,
    rule_order: Sequence[str] = (),
    arms: Iterable[str] = ("A", "B"),
) -> Compliance:
    """Compliance over the patients matching ``scope`` (a condition on ``Patient``, e.g. the policy's).

    Three queries whatever the number of patients: randomized counts, timepoint status counts
    (one GROUP BY over site, arm, group, status, lateness and reason), respondent/mode counts.
    """
    randomized_by_site: dict[tuple[int, str], int] = {
        (site_id, arm): n
        for site_id, arm, n in session.execute(
            select(Patient.site_id, Patient.arm, func.count()).where(scope).group_by(Patient.site_id, Patient.arm)
        )
    }
    randomized: dict[str, int] = defaultdict(int)
    for (_site, arm), n in randomized_by_site.items():
        randomized[arm] += n

    # Derived columns in a subquery: GROUP BY on its plain columns, because PostgreSQL with
    # server-side parameters would not match a CASE repeated in GROUP BY to the one selected.
    late = case((and_(Timepoint.completed_at.is_not(None), Timepoint.completed_at >= Timepoint.closes_at), 1), else_=0)
    facts = (
        select(
            Patient.site_id.label("site_id"),
            Patient.arm.label("arm"),
            Timepoint.kind.label("kind"),
            Timepoint.rule_id.label("rule_id"),
            case((Timepoint.kind == "diary", None), else_=Timepoint.key).label("group_key"),
            effective_status(now).label("eff_status"),
            late.label("is_late"),
            Timepoint.missed_reason.label("reason"),
        )
        .join(Patient, Patient.id == Timepoint.patient_id)
        .where(scope)
        .subquery()
    )
    columns = [
        facts.c.site_id,
        facts.c.arm,
        facts.c.kind,
        facts.c.rule_id,
        facts.c.group_key,
        facts.c.eff_status,
        facts.c.is_late,
        facts.c.reason,
    ]
    rows = session.execute(select(*columns, func.count()).group_by(*columns)).all()

    by_group: dict[tuple[Group, str], Cell] = {}
    by_site: dict[tuple[int, str, str], Cell] = {}
    for site_id, arm, kind, rule_id, tp_key, st, is_late, reason, n in rows:
        if st in ("cancelled", "scheduled"):
            continue
        group = Group(kind, rule_id, tp_key)
        cell = by_group.setdefault((group, arm), Cell(randomized=randomized.get(arm, 0)))
        cell.add(st, bool(is_late), reason, n)
        site_cell = by_site.setdefault((site_id, kind, arm), Cell(randomized=randomized_by_site.get((site_id, arm), 0)))
        site_cell.add(st, bool(is_late), reason, n)

    respondents: dict[str, Counter[str]] = defaultdict(Counter)
    modes: dict[str, Counter[str]] = defaultdict(Counter)
    for arm, respondent, mode, n in session.execute(
        select(Patient.arm, Response.respondent, Response.mode, func.count())
        .join(Patient, Patient.id == Response.patient_id)
        .where(scope, Response.status == "submitted", Response.revision == 0)
        .group_by(Patient.arm, Response.respondent, Response.mode)
    ):
        respondents[arm][respondent] += n
        modes[arm][mode] += n

    order = {rule: i for i, rule in enumerate(rule_order)}
    groups = sorted(
        {g for g, _arm in by_group},
        key=lambda g: (g.kind != "questionnaire", order.get(g.rule_id, len(order)), g.rule_id, g.number, g.key or ""),
    )
    site_ids = sorted({site for site, _arm in randomized_by_site} | {site for site, _k, _a in by_site})
    return Compliance(
        arms=tuple(arms),
        groups=groups,
        by_group=by_group,
        by_site=by_site,
        site_ids=site_ids,
        randomized=dict(randomized),
        randomized_by_site=randomized_by_site,
        respondents=dict(respondents),
        modes=dict(modes),
    )


def totals(result: Compliance, kind: str, arm: str) -> Cell:
    """All groups of one kind (questionnaire or diary) summed for ``arm``."""
    total = Cell(randomized=result.randomized.get(arm, 0))
    for (group, cell_arm), cell in result.by_group.items():
        if group.kind == kind and cell_arm == arm:
            total.on_time += cell.on_time
            total.late += cell.late
            total.partial += cell.partial
            total.missed += cell.missed
            total.not_offered += cell.not_offered
            total.pending += cell.pending
            total.not_expected += cell.not_expected
            total.reasons.update(cell.reasons)
    return total


def current_status(tp: Timepoint, now: dt.datetime) -> str:
    """Python twin of :func:`effective_status` for one loaded row."""
    if tp.status in ("completed", "not_expected", "cancelled"):
        return tp.status
    return derive_status(tp, now, submitted=False, started=tp.started_at is not None, not_expected_reason=None)


def set_missed_reason(
    session: Session,
    actor: Actor,
    staff: StaffUser,
    tp: Timepoint,
    reason: str,
    text: str | None,
    *,
    change_reason: str | None,
    now: dt.datetime,
) -> None:
    """Record why a missed or partial form was not completed (CLINICAL.md §3), audited.

    ``other`` needs ``text``; replacing an earlier reason needs ``change_reason``. ``ValueError``
    otherwise, or when the form is not (yet) missed or partial.
    """
    if current_status(tp, now) not in ("missed", "partial"):
        raise ServiceError(N_("Only a missed or partial form takes a reason."))
    if reason not in MISSED_REASONS:
        raise ServiceError(N_("Unknown reason %(reason)s."), reason=reason)
    if tp.missed_reason == NOT_OFFERED:
        raise ServiceError(N_("This form was never offered to the patient: its reason is administrative."))
    text = (text or "").strip() or None
    if reason == "other" and not text:
        raise ServiceError(N_('The reason "Other" needs a description.'))
    change_reason = (change_reason or "").strip() or None
    if tp.missed_reason is not None and change_reason is None:
        raise ServiceError(N_("Changing an earlier reason needs a reason for the change."))
    old = {"missed_reason": tp.missed_reason, "missed_reason_text": tp.missed_reason_text}
    new = {"missed_reason": reason, "missed_reason_text": text}
    if old == new:
        return
    tp.missed_reason, tp.missed_reason_text, tp.missed_reason_by = reason, text, staff.id
    patient = tp.patient
    audit.record(
        session,
        actor,
        "missed_reason",
        tp,
        patient_id=patient.id,
        site_id=patient.site_id,
        old=old if old["missed_reason"] else None,
        new=new,
        reason=change_reason,
        now=now,
    )
