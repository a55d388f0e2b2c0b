"""Form compliance (SISAQOL) by timepoint, instrument, arm and site (CLINICAL.md §3; shown on the
dashboard).

**Per form** (timepoint x instrument), the primary figures, with the rules of
``scheduling.forms`` that every export uses too (same numerators and denominators):

* a form's status follows its own revisions and the clock (``scheduling.forms.form_status``):
  completed (sent), partial (saved, not sent, after the grace period), missed, not_expected,
  pending (window or grace period still open);
* **expected** = completed + partial + missed; **received** = expected forms meeting the received
  rule (``COMPLIANCE_RECEIVED_RULE``: at least one item answered by default; a form with every
  item skipped is not received). **Rate** = received / expected; **rate per randomized** =
  received / patients randomized in that arm (and site), the second SISAQOL figure, for
  questionnaires only;
* diaries are counted per expected diary day: received days / expected days of patients on
  study that day (days after death, withdrawal or loss are not expected), never per randomized;
* **not offered** = missed with the administrative reason ``not_offered`` (the window had closed
  before the event that creates the form was recorded): counted apart from patient-related
  misses, still in the denominator.

**Per timepoint** (a secondary table): a timepoint's *effective status* derived from its instants
and ``now`` like ``scheduling.status.derive_status``; completed only when every form was sent.

On time = submitted before the window closed; late = in the grace period or after. The query
count does not depend on the number of patients. Missed-form reasons are written here too
(:func:`set_missed_reason`): they feed these figures.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy import ColumnElement, Select, String, Subquery, and_, case, cast, func, literal, or_, select
from sqlalchemy.orm import Session

from qol_app.errors import N_, ServiceError
from qol_app.models import Answer, Patient, Response, StaffUser, Timepoint
from qol_app.models.schedule import MISSED_REASONS
from qol_app.scheduling import forms as form_rules
from qol_app.scheduling.forms import COMPLIANCE_RECEIVED_RULE
from qol_app.scheduling.status import derive_status
from qol_app.services import audit
from qol_app.services.audit import Actor

DECIDED = ("completed", "partial", "missed")
NOT_OFFERED = "not_offered"
#: Not decided yet: a timepoint open or in its grace period (``open``, ``overdue``), a form ``pending``.
PENDING = ("open", "overdue", "pending")


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


@dataclasses.dataclass
class FormCell(Cell):
    """Counts of forms (timepoint x instrument) for one (form group or site) x arm; statuses as
    ``Cell`` but of forms, plus ``received`` (the compliance numerator)."""

    received: int = 0
    kind: str = "questionnaire"

    @property
    def rate(self) -> float | None:
        return self.received / self.expected if self.expected else None

    @property
    def rate_randomized(self) -> float | None:
        """Received / randomized; None for diaries (counted per expected day, CLINICAL.md §3)."""
        if self.kind == "diary" or not self.randomized:
            return None
        return self.received / self.randomized


@dataclasses.dataclass(frozen=True)
class FormGroup:
    """A form group: one instrument at one questionnaire timepoint, or one diary rule's days."""

    kind: str
    rule_id: str
    key: str | None  # None for diaries (all days of a rule together)
    instrument: str

    @property
    def number(self) -> int:
        digits = re.findall(r"\d+", self.key or "")
        return int(digits[-1]) if digits else 0

    @property
    def timepoint(self) -> Group:
        return Group(self.kind, self.rule_id, self.key)


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
    form_groups: list[FormGroup] = dataclasses.field(default_factory=list)
    by_form: dict[tuple[FormGroup, str], FormCell] = dataclasses.field(default_factory=dict)
    by_site_form: dict[tuple[int, str, str], FormCell] = dataclasses.field(default_factory=dict)
    received_rule: str = COMPLIANCE_RECEIVED_RULE

    def form_cell(self, group: FormGroup, arm: str) -> FormCell:
        default = FormCell(randomized=self.randomized.get(arm, 0), kind=group.kind)
        return self.by_form.get((group, arm)) or default

    def site_form_cell(self, site_id: int, kind: str, arm: str) -> FormCell:
        default = FormCell(randomized=self.randomized_by_site.get((site_id, arm), 0), kind=kind)
        return self.by_site_form.get((site_id, kind, arm)) or default

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
    received_rule: str = COMPLIANCE_RECEIVED_RULE,
) -> Compliance:
    """Compliance over the patients matching ``scope`` (a condition on ``Patient``, e.g. the policy's).

    Four queries whatever the number of patients: randomized counts, one GROUP BY over the
    timepoints (site, arm, group, effective status, lateness and reason for the timepoint table,
    with instruments, window phase and not-expected reason where the per-form count starts), the
    forms with revisions grouped by what their revisions make of them (see
    :func:`started_form_facts`), respondent/mode counts. The rules of
    ``scheduling.forms`` are applied once per aggregate row, not per form. ``received_rule``:
    ``COMPLIANCE_RECEIVED_RULE`` (``scheduling.forms``).
    """
    form_rules.check_rule(received_rule)
    randomized_by_site: dict[tuple[int, str], int] = {
        (site_id, arm): n
        for site_id, arm, n in session.execute(
            select(Patient.site_id, Patient.arm, func.count()).where(scope).group_by(Patient.site_id, Patient.arm)
        )
    }
    randomized: dict[str, int] = defaultdict(int)
    for (_site, arm), n in randomized_by_site.items():
        randomized[arm] += n

    # One pass over the timepoints serves both tables: grouped by what the timepoint table needs
    # (effective status, lateness, reason) and what the per-form count starts from (instruments,
    # window phase, not-expected reason, opened by now), a few hundred rows.
    rows = _timepoint_facts(session, scope, now)

    by_group: dict[tuple[Group, str], Cell] = {}
    by_site: dict[tuple[int, str, str], Cell] = {}
    for site_id, arm, kind, rule_id, tp_key, st, is_late, reason, *_form_facts, n in rows:
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

    by_form, by_site_form = _form_cells(session, scope, now, received_rule, randomized, randomized_by_site, rows)

    order = {rule: i for i, rule in enumerate(rule_order)}

    def rank(g: Group | FormGroup) -> tuple[object, ...]:
        return (g.kind != "questionnaire", order.get(g.rule_id, len(order)), g.rule_id, g.number, g.key or "")

    groups = sorted({g for g, _arm in by_group}, key=rank)
    form_groups = sorted({g for g, _arm in by_form}, key=lambda g: (*rank(g), g.instrument))
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
        form_groups=form_groups,
        by_form=by_form,
        by_site_form=by_site_form,
        received_rule=received_rule,
    )


def _phase(now: dt.datetime) -> ColumnElement[str]:
    """Where ``now`` falls for an opened window: open, overdue (grace period) or closed."""
    return case(
        (Timepoint.closes_at > now, literal("open")),
        (Timepoint.grace_closes_at > now, literal("overdue")),
        else_=literal("closed"),
    )


def _timepoint_facts(session: Session, scope: ColumnElement[bool], now: dt.datetime) -> Sequence[Any]:
    """The scope's timepoints counted by (site, arm, kind, rule, group key, effective status,
    late, missed reason, instruments, phase, not-expected reason, opened by ``now``): the rows of
    the timepoint table (the first eight) and the start of the per-form count (the rest), one scan."""
    late = case((and_(Timepoint.completed_at.is_not(None), Timepoint.completed_at >= Timepoint.closes_at), 1), else_=0)
    # Derived columns in a subquery: GROUP BY on its plain columns, because PostgreSQL with
    # server-side parameters would not match a CASE repeated in GROUP BY to the one selected.
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
            cast(Timepoint.instruments, String).label("instruments"),
            _phase(now).label("phase"),
            Timepoint.not_expected_reason.label("not_expected"),
            case((Timepoint.opens_at <= now, 1), else_=0).label("opened"),
        )
        .join(Patient, Patient.id == Timepoint.patient_id)
        .where(scope)
        .subquery()
    )
    columns = list(facts.c)
    session.flush()
    return session.connection().execute(select(*columns, func.count()).group_by(*columns)).all()


def _form_cells(
    session: Session,
    scope: ColumnElement[bool],
    now: dt.datetime,
    received_rule: str,
    randomized: Mapping[str, int],
    randomized_by_site: Mapping[tuple[int, str], int],
    timepoint_facts: Sequence[Any],
) -> tuple[dict[tuple[FormGroup, str], FormCell], dict[tuple[int, str, str], FormCell]]:
    """Per-form cells: every form of every uncancelled timepoint open by ``now``, its status from
    its own revisions (``scheduling.forms``, as in exports), received or not. ``timepoint_facts``:
    :func:`_timepoint_facts` of the same scope and ``now``."""
    columns: list[Any] = [
        Patient.site_id.label("site_id"),
        Patient.arm.label("arm"),
        Timepoint.kind.label("kind"),
        Timepoint.rule_id.label("rule_id"),
        case((Timepoint.kind == "diary", None), else_=Timepoint.key).label("group_key"),
        cast(Timepoint.instruments, String).label("instruments"),
        _phase(now).label("phase"),
        Timepoint.not_expected_reason.label("not_expected"),
        Timepoint.missed_reason.label("reason"),
    ]
    where = (scope, Timepoint.status != "cancelled", Timepoint.opens_at <= now)
    session.flush()
    conn = session.connection()  # Core rows, instants compared in SQL: no per-row conversions
    lists: dict[str | None, tuple[str, ...]] = {}

    def parsed(text: str | None) -> tuple[str, ...]:
        if text not in lists:
            lists[text] = tuple(json.loads(text) if text else ())
        return lists[text]

    # 1. Every form of an uncancelled timepoint opened by now, as if nothing had been started ...
    counts: Counter[tuple[Any, ...]] = Counter()
    for (
        site_id,
        arm,
        kind,
        rule_id,
        group_key,
        eff,
        _late,
        reason,
        instruments,
        tp_phase,
        ne,
        opened,
        n,
    ) in timepoint_facts:
        if eff == "cancelled" or not opened:  # the effective status is cancelled exactly when the stored one is
            continue
        status = form_rules.status_in_phase(tp_phase, submitted=False, started=False, not_expected_reason=ne)
        for inst in parsed(instruments):
            counts[(site_id, arm, kind, rule_id, group_key, inst, status, False, reason, False)] += n
    # 2. ... then the forms with revisions moved to what their revisions make of them: one row
    # per distinct (timepoint group, instrument, form facts), the rules applied once per row.
    for row in conn.execute(_started_form_facts(columns, where, now)):
        *fact, inst, started, submitted, late, answers, n = tuple[Any, ...](row)
        site_id, arm, kind, rule_id, group_key, instruments, tp_phase, not_expected, reason = fact
        if inst not in parsed(instruments):  # not a form of this timepoint
            continue
        status = form_rules.status_in_phase(
            tp_phase, submitted=bool(submitted), started=bool(started), not_expected_reason=not_expected
        )
        # Whether any item is answered is all ``is_received`` asks of the count; the earliest
        # answer's time was compared with ``now`` in SQL.
        first = now if answers & 1 else None
        answered = form_rules.answered_items(1 if answers & 2 else 0, first, submitted=bool(submitted), as_of=now)
        received = form_rules.is_received(status, answered, received_rule)
        base = form_rules.status_in_phase(tp_phase, submitted=False, started=False, not_expected_reason=not_expected)
        counts[(site_id, arm, kind, rule_id, group_key, inst, base, False, reason, False)] -= n
        counts[(site_id, arm, kind, rule_id, group_key, inst, status, bool(late), reason, received)] += n

    by_form: dict[tuple[FormGroup, str], FormCell] = {}
    by_site: dict[tuple[int, str, str], FormCell] = {}
    for (site_id, arm, kind, rule_id, group_key, inst, status, late, reason, received), n in counts.items():
        if n <= 0 or status is None:
            continue
        group = FormGroup(kind, rule_id, group_key, inst)
        cell = by_form.get((group, arm))
        if cell is None:
            cell = by_form[(group, arm)] = FormCell(randomized=randomized.get(arm, 0), kind=kind)
        site_cell = by_site.get((site_id, kind, arm))
        if site_cell is None:
            site_cell = by_site[(site_id, kind, arm)] = FormCell(
                randomized=randomized_by_site.get((site_id, arm), 0),
                kind=kind,
            )
        for target in (cell, site_cell):
            target.add(status, bool(late), reason, n)
            target.received += n if received else 0
    return by_form, by_site


_FACTS = ("site_id", "arm", "kind", "rule_id", "group_key", "instruments", "phase", "not_expected", "reason")


def started_form_facts(
    columns: Sequence[ColumnElement[object]], where: Sequence[ColumnElement[bool]], now: dt.datetime
) -> Subquery:
    """Each form with revisions of the timepoints matching ``where`` (conditions on ``Timepoint``
    and ``Patient``) at ``now``, one row per (``tp_id``, ``inst``) with the timepoint's
    ``columns`` (labelled expressions over its and its patient's columns), one GROUP BY (on the
    primary keys: the timepoint's columns depend on them):

    * ``started``, ``submitted`` (0/1): a revision started, and one sent, by ``now``;
    * ``late`` (0/1): revision 0 sent by ``now``, at or after the window closed;
    * ``current``: the current revision of ``scheduling.forms.current_revision`` (the newest
      revision started and sent by ``now``, else revision 0 if started by then, else none) as a
      number ``rank * 4 + answers``, where ``rank`` is revision + 2 for a sent revision, 1 for an
      unsent revision 0 (0 when there is no current revision) and ``answers`` (``current % 4``) is
      2 if any item of it is answered (not skipped) plus 1 if one was by ``now``: the maximum
      over the form's revisions picks the current one and its answers.

    This is ``current_revision`` in SQL: tests/web/test_compliance_aggregate.py checks that the
    two agree on every form of awkward data, at many instants.
    """
    begun = Response.started_at <= now
    sent = and_(begun, Response.status == "submitted", Response.submitted_at <= now)
    sent_at_all = and_(Response.status == "submitted", Response.submitted_at <= now)
    not_skipped = and_(Answer.response_id == Response.id, Answer.skipped.is_(False))
    answers = case((select(Answer.id).where(not_skipped).exists(), 2), else_=0) + case(
        (select(Answer.id).where(not_skipped, Answer.answered_at <= now).exists(), 1), else_=0
    )
    candidate = or_(sent, and_(begun, Response.revision == 0))
    rank = case((sent, Response.revision + 2), (candidate, 1), else_=0)
    current = rank * 4 + case((candidate, answers), else_=0)
    late = and_(Response.revision == 0, sent_at_all, Response.submitted_at >= Timepoint.closes_at)
    return (
        select(
            Timepoint.id.label("tp_id"),
            *columns,
            Response.instrument_id.label("inst"),
            func.max(case((begun, 1), else_=0)).label("started"),
            func.max(case((sent, 1), else_=0)).label("submitted"),
            func.max(case((late, 1), else_=0)).label("late"),
            func.max(current).label("current"),
        )
        .join(Timepoint, Timepoint.id == Response.timepoint_id)
        .join(Patient, Patient.id == Timepoint.patient_id)
        .where(*where)
        .group_by(Timepoint.id, Patient.id, Response.instrument_id)
        .subquery()
    )


def _started_form_facts(
    columns: Sequence[ColumnElement[object]], where: Sequence[ColumnElement[bool]], now: dt.datetime
) -> Select[tuple[object, ...]]:
    """Forms with revisions counted by (timepoint facts, instrument, started, submitted, late,
    answers of the current revision: 2 if any item is answered + 1 if one was by ``now``)."""
    forms = started_form_facts(columns, where, now)
    # Derived columns in a subquery, grouped on its plain columns (see ``compute``).
    flags = select(
        *(forms.c[name] for name in _FACTS),
        forms.c.inst,
        forms.c.started,
        forms.c.submitted,
        forms.c.late,
        (forms.c.current % 4).label("answers"),
    ).subquery()
    return select(*flags.c, func.count()).group_by(*flags.c)


def form_totals(result: Compliance, kind: str, arm: str) -> FormCell:
    """All form groups of one kind (questionnaire or diary) summed for ``arm``."""
    total = FormCell(randomized=result.randomized.get(arm, 0), kind=kind)
    for (group, cell_arm), cell in result.by_form.items():
        if group.kind == kind and cell_arm == arm:
            for name in ("on_time", "late", "partial", "missed", "not_offered", "pending", "not_expected", "received"):
                setattr(total, name, getattr(total, name) + getattr(cell, name))
            total.reasons.update(cell.reasons)
    return total


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
