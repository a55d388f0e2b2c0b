"""What the patient page shows, read in a fixed handful of queries (none per timepoint or form).

Scores and diary answers come from the current revision of each submitted form: a staff
correction supersedes the original, which stays stored but is not charted.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections import defaultdict
from typing import Any

from flask_babel import gettext as _
from sqlalchemy import exists, select
from sqlalchemy.orm import Session, aliased

from qol_app.charts import Point, heat_level, trajectory_svg
from qol_app.models import Alert, Answer, Patient, Response, Score, StaffUser, Timepoint, TreatmentEvent
from qol_app.scoring import scale_info
from qol_app.services.compliance import current_status
from qol_app.services.responses import registry

CHART_INSTRUMENTS = ("eortc_qlq_c30", "eortc_qlq_bn20", "eq5d5l")
DIARY = "symptom_diary"
BAND_TYPES = ("functional", "symptom", "global", "summary")  # 0-100 scales: ±10 points is meaningful
DIARY_DAYS_SHOWN = 42
ENTERABLE = ("open", "overdue", "partial", "missed")


@dataclasses.dataclass
class Chart:
    scale: str
    name: str
    svg: Any
    points: list[Point]


@dataclasses.dataclass
class InstrumentCharts:
    instrument_id: str
    name: str
    scales: list[str]
    charts: list[Chart]
    table: list[tuple[str, dict[str, float | None]]]  # (visit label, scale -> score)


@dataclasses.dataclass
class DiaryGrid:
    days: list[tuple[dt.date, str]]  # (day, effective status)
    rows: list[tuple[str, str, list[tuple[str, str]]]]  # (item id, label, [(css class, text)])


@dataclasses.dataclass
class PatientData:
    timeline: list[tuple[Timepoint, str]]
    events: list[TreatmentEvent]
    charts: list[InstrumentCharts]
    diary: DiaryGrid
    alerts: list[tuple[Alert, StaffUser | None]]
    submitted: dict[int, dict[str, int]]  # timepoint id -> instrument -> id of its current submitted revision
    #: timepoint id -> how the patient's own forms were shown: (instrument, display mode, read-aloud, recordings)
    shown: dict[int, list[tuple[str, str, bool, bool]]] = dataclasses.field(default_factory=dict)


def _current_responses(patient_id: int):
    """Submitted responses of the patient not superseded by a correction."""
    newer = aliased(Response)
    # ``newer.patient_id`` lets the subquery use the patient index (supersedes_id has none).
    return (
        Response.patient_id == patient_id,
        Response.status == "submitted",
        ~exists().where(newer.patient_id == patient_id, newer.supersedes_id == Response.id),
    )


def load(session: Session, patient: Patient, now: dt.datetime, locale: str) -> PatientData:
    timepoints = list(
        session.scalars(
            select(Timepoint).where(Timepoint.patient_id == patient.id).order_by(Timepoint.target_date, Timepoint.key)
        )
    )
    timeline = [(tp, current_status(tp, now)) for tp in timepoints]
    submitted: dict[int, dict[str, int]] = defaultdict(dict)
    for response_id, tp_id, instrument_id in session.execute(
        select(Response.id, Response.timepoint_id, Response.instrument_id).where(*_current_responses(patient.id))
    ):
        submitted[tp_id][instrument_id] = response_id
    shown: dict[int, list[tuple[str, str, bool, bool]]] = defaultdict(list)
    for tp_id, instrument_id, mode, read_aloud, audio in session.execute(
        select(
            Response.timepoint_id,
            Response.instrument_id,
            Response.display_mode,
            Response.read_aloud_used,
            Response.audio_used,
        )
        .where(Response.patient_id == patient.id, Response.revision == 0, Response.display_mode.is_not(None))
        .order_by(Response.timepoint_id, Response.id)
    ):
        shown[tp_id].append((instrument_id, mode or "default", bool(read_aloud), bool(audio)))
    events = list(
        session.scalars(
            select(TreatmentEvent)
            .where(TreatmentEvent.patient_id == patient.id)
            .order_by(TreatmentEvent.date, TreatmentEvent.id)
        )
    )
    alerts: list[tuple[Alert, StaffUser | None]] = [  # outer join: None when not acknowledged
        (alert, by)
        for alert, by in session.execute(
            select(Alert, StaffUser)
            .outerjoin(StaffUser, StaffUser.id == Alert.acknowledged_by)
            .where(Alert.patient_id == patient.id)
            .order_by(Alert.acknowledged_at.is_not(None), (Alert.level == "red").desc(), Alert.raised_at.desc())
        )
    ]
    return PatientData(
        timeline=timeline,
        events=events,
        charts=_charts(session, patient, locale),
        diary=_diary(session, patient, timeline, locale),
        alerts=alerts,
        submitted=dict(submitted),
        shown=dict(shown),
    )


def _charts(session: Session, patient: Patient, locale: str) -> list[InstrumentCharts]:
    rows = session.execute(
        select(Response.instrument_id, Timepoint.key, Timepoint.target_date, Score.scale, Score.value)
        .join(Score, Score.response_id == Response.id)
        .join(Timepoint, Timepoint.id == Response.timepoint_id)
        .where(*_current_responses(patient.id), Response.instrument_id.in_(CHART_INSTRUMENTS))
        .order_by(Timepoint.target_date, Timepoint.key)
    ).all()
    by_instrument: dict[str, dict[tuple[dt.date, str], dict[str, float | None]]] = defaultdict(dict)
    for instrument_id, key, target, scale, value in rows:
        by_instrument[instrument_id].setdefault((target, key), {})[scale] = value
    out: list[InstrumentCharts] = []
    from qol_app.labels import timepoint_label

    reg = registry()
    for instrument_id in CHART_INSTRUMENTS:
        visits = by_instrument.get(instrument_id)
        if not visits:
            continue
        infos = scale_info(instrument_id, registry=reg)
        instrument_name = _text(reg.get(instrument_id).name, locale)
        ordered = sorted(visits.items())
        charts: list[Chart] = []
        for code, info in infos.items():
            points = [
                Point(
                    float((target - patient.randomization_date).days),
                    scores.get(code),
                    f"{timepoint_label(key)} ({target.isoformat()})",
                )
                for (target, key), scores in ordered
            ]
            baseline = next((scores.get(code) for (_t, key), scores in ordered if key == "baseline"), None)
            name = _text(info.name, locale)
            desc = _describe(points, baseline)
            svg = trajectory_svg(
                points,
                chart_id=f"c-{instrument_id}-{code}",
                title=f"{instrument_name}: {name}",
                desc=desc,
                y_min=info.score_min,
                y_max=info.score_max,
                baseline=baseline,
                band=10.0 if info.type in BAND_TYPES else None,
            )
            charts.append(Chart(code, name, svg, points))
        table = [(f"{timepoint_label(key)} ({target.isoformat()})", scores) for (target, key), scores in ordered]
        out.append(InstrumentCharts(instrument_id, instrument_name, list(infos), charts, table))
    return out


def _describe(points: list[Point], baseline: float | None) -> str:
    scored = [(p, p.value) for p in points if p.value is not None]
    if not scored:
        return _("No score yet.")
    latest, value = scored[-1]
    text = _("%(n)s scores; latest %(value).1f on %(label)s.", n=len(scored), value=value, label=latest.label)
    if baseline is not None:
        text += " " + _("Baseline %(value).1f; change %(change)+.1f.", value=baseline, change=value - baseline)
    return text


def _text(mapping, locale: str) -> str:
    return mapping.get(locale) or mapping.get("en") or next(iter(mapping.values()), "")


def _diary(session: Session, patient: Patient, timeline: list[tuple[Timepoint, str]], locale: str) -> DiaryGrid:
    days = [
        (tp.target_date, status)
        for tp, status in timeline
        if tp.kind == "diary" and status not in ("scheduled", "cancelled")
    ][-DIARY_DAYS_SHOWN:]
    if not days:
        return DiaryGrid([], [])
    first = days[0][0]
    values: dict[tuple[str, dt.date], float | None] = {}
    for item_id, value, skipped, target in session.execute(
        select(Answer.item_id, Answer.value, Answer.skipped, Timepoint.target_date)
        .join(Response, Response.id == Answer.response_id)
        .join(Timepoint, Timepoint.id == Response.timepoint_id)
        .where(*_current_responses(patient.id), Response.instrument_id == DIARY, Timepoint.target_date >= first)
    ):
        values[(item_id, target)] = None if skipped else value
    instrument = registry().get(DIARY)
    rows = []
    for item in instrument.items:
        if "ommaya" in item.tags and patient.arm != "A":
            continue
        cells = []
        for day, _status in days:
            if (item.id, day) in values:
                value = values[(item.id, day)]
                cells.append((heat_level(value, **_scale_of(item)), "–" if value is None else _fmt(value)))
            else:
                cells.append(("hnone", ""))
        rows.append((item.id, _text(item.text, locale), cells))
    return DiaryGrid(days, rows)


def _scale_of(item) -> dict[str, Any]:
    if item.kind == "number":
        kind = "temperature" if item.unit == "°C" else "graded"
        return {"low": item.min or 0, "high": item.max or 1, "kind": kind}
    codes = item.codes or (0, 1)
    nominal = item.grading is None and len(codes) > 2
    return {"low": min(codes), "high": max(codes), "kind": "nominal" if nominal else "graded"}


def _fmt(value: float) -> str:
    return f"{value:.0f}" if float(value).is_integer() else f"{value:.1f}"
