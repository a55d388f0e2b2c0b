"""Read the stored rows an export needs, as they are now: the only export module that touches the
database. No time conditions here (``asof`` decides what counted when); only the filters (sites,
arms, instruments) narrow what is read.

Reads go through the caller's session, so they see its transaction; small tables become plain
records (``asof.*Row``), the two large ones (scores, answers) Arrow tables read in batches.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from sqlalchemy import Select, func, or_, select
from sqlalchemy.orm import Session

from qol_app.export.asof import (
    EVENT_REWOUND_FIELDS,
    HISTORY_FIELDS,
    PATIENT_REWOUND_FIELDS,
    REWOUND_FIELDS,
    AlertRow,
    ChangeRow,
    EventRow,
    PatientRow,
    ResponseRow,
    StatusRow,
    TimepointRow,
)
from qol_app.models import (
    Alert,
    Answer,
    AuditEvent,
    Patient,
    PatientStatusChange,
    Response,
    Score,
    Site,
    Timepoint,
    TreatmentEvent,
)

BATCH = 50_000
_CHANGED_FIELDS = tuple(dict.fromkeys((*HISTORY_FIELDS, *REWOUND_FIELDS)))
_DATE_FIELDS = frozenset({"anchor_date", "target_date", "window_start", "window_end"})
_INSTANT_FIELDS = frozenset({"opens_at", "closes_at", "grace_closes_at"})


def _positions(row_type: type, names: tuple[str, ...]) -> tuple[int, ...]:
    order = [field.name for field in dataclasses.fields(row_type)]
    return tuple(order.index(name) for name in names)


_TIMEPOINT_CODES = _positions(
    TimepointRow,
    ("key", "rule_id", "kind", "instruments", "anchor_kind", "missed_reason", "not_expected_reason", "status"),
)
_RESPONSE_CODES = _positions(
    ResponseRow,
    ("instrument_id", "instrument_version", "language", "respondent", "relationship", "mode", "status", "display_mode"),
)
"""Positions of the coded columns read once per distinct value: one object per code instead of one
per row (a large trial holds a row per form)."""


def _typed(field: str, value: Any) -> Any:
    """An audited timepoint value (JSON: ISO dates, UTC ISO instants, lists) typed as its column."""
    if value is None:
        return None
    if field in _DATE_FIELDS:
        return dt.date.fromisoformat(value)
    if field in _INSTANT_FIELDS:
        return dt.datetime.fromisoformat(value).astimezone(dt.UTC)
    if field == "instruments":
        return tuple(value)
    return value


@dataclasses.dataclass(frozen=True)
class ExportFilters:
    """What to export. Empty tuples mean "all"; dates bound the timepoints' target dates (inclusive)
    and the alerts' local dates. Sites are site codes."""

    sites: tuple[str, ...] = ()
    arms: tuple[str, ...] = ()
    instruments: tuple[str, ...] = ()
    date_from: dt.date | None = None
    date_to: dt.date | None = None

    def __post_init__(self) -> None:
        for name in ("sites", "arms", "instruments"):
            object.__setattr__(self, name, tuple(sorted(set(getattr(self, name)))))
        if self.date_from and self.date_to and self.date_from > self.date_to:
            raise ValueError("the date range ends before it starts")

    def in_range(self, day: dt.date) -> bool:
        return (self.date_from is None or day >= self.date_from) and (self.date_to is None or day <= self.date_to)

    def describe(self) -> dict[str, object]:
        """The filters as recorded in the manifest and the audit trail ("all" when not limited)."""
        return {
            "sites": list(self.sites) or "all",
            "arms": list(self.arms) or "all",
            "instruments": list(self.instruments) or "all",
            "date_from": self.date_from.isoformat() if self.date_from else None,
            "date_to": self.date_to.isoformat() if self.date_to else None,
        }


SCORE_SCHEMA = pa.schema(
    [("response_id", pa.int64()), ("scale", pa.string()), ("value", pa.float64()), ("n_items", pa.int64())]
    + [("scoring_version", pa.string())]
)
ANSWER_SCHEMA = pa.schema(
    [("response_id", pa.int64()), ("item_id", pa.string()), ("value", pa.float64()), ("skipped", pa.bool_())]
)


#: The audited acts that correct a patient's ``PATIENT_REWOUND_FIELDS`` (the arm among them).
PATIENT_CORRECTIONS = ("correct_randomization", "patient_details")


class Source:
    """The stored rows of one export's selection (patients of the chosen sites and arms, forms of
    the chosen instruments)."""

    def __init__(self, session: Session, filters: ExportFilters, instruments: Sequence[str]) -> None:
        self.session = session
        self.filters = filters
        self.instruments = tuple(instruments)

    def _rows(self, stmt: Select[*tuple[Any, ...]]) -> Iterable[Any]:
        """The rows, fetched as they are iterated (each caller reads them once, keeping only what
        it makes of them: a whole result's row objects are never held beside it), BATCH at a time
        (one driver call per batch instead of one per row)."""
        return self.session.connection().execute(stmt.execution_options(yield_per=BATCH))

    def _selected_patients(self, stmt: Select[*tuple[Any, ...]]) -> Select[*tuple[Any, ...]]:
        if self.filters.sites:
            stmt = stmt.where(Patient.site_id.in_(select(Site.id).where(Site.code.in_(self.filters.sites))))
        if self.filters.arms:
            # A later arm correction must not move a patient into or out of a past snapshot: a
            # patient whose arm was ever corrected is read too, and ``build.load`` keeps the ones
            # whose arm at the as-of time is selected.
            corrected = select(AuditEvent.patient_id).where(
                AuditEvent.entity_type == "patients",
                AuditEvent.action.in_(PATIENT_CORRECTIONS),
                AuditEvent.patient_id.is_not(None),
            )
            stmt = stmt.where(or_(Patient.arm.in_(self.filters.arms), Patient.id.in_(corrected)))
        return stmt

    def _selected_responses(self) -> Select[*tuple[Any, ...]]:
        return self._selected_patients(
            select(Response.id)
            .join(Patient, Response.patient_id == Patient.id)
            .where(Response.instrument_id.in_(self.instruments))
        )

    def patients(self) -> list[PatientRow]:
        """Patients of the selection, by study id (code-point order, the same on every database)."""
        stmt = self._selected_patients(
            select(
                Patient.id,
                Patient.study_id,
                Site.code,
                Patient.arm,
                Patient.randomization_date,
                Patient.timezone,
                Site.timezone,
                Patient.language,
                Patient.status,
                Patient.status_date,
                Patient.created_at,
            ).join(Site, Patient.site_id == Site.id)
        )
        rows = [
            PatientRow(pk, sid, site, arm, rand, tz or site_tz, lang, status, sdate, created, site_tz)
            for pk, sid, site, arm, rand, tz, site_tz, lang, status, sdate, created in self._rows(stmt)
        ]
        return sorted(rows, key=lambda p: p.study_id)

    def timepoints(self) -> dict[int, list[TimepointRow]]:
        """Patient pk -> its timepoints (every status), by target date, key and id."""
        stmt = self._selected_patients(
            select(
                Timepoint.id,
                Timepoint.patient_id,
                Timepoint.key,
                Timepoint.rule_id,
                Timepoint.kind,
                Timepoint.instruments,
                Timepoint.anchor_kind,
                Timepoint.anchor_number,
                Timepoint.anchor_date,
                Timepoint.target_date,
                Timepoint.window_start,
                Timepoint.window_end,
                Timepoint.opens_at,
                Timepoint.closes_at,
                Timepoint.grace_closes_at,
                Timepoint.missed_reason,
                Timepoint.not_expected_reason,
                Timepoint.status,
                Timepoint.status_changed_at,
                Timepoint.created_at,
            ).join(Patient, Timepoint.patient_id == Patient.id)
        )
        out: dict[int, list[TimepointRow]] = defaultdict(list)
        shared: dict[Any, Any] = {}
        for row in self._rows(stmt):
            values = list(row)
            values[5] = tuple(values[5] or ())
            for n in _TIMEPOINT_CODES:
                values[n] = shared.setdefault(values[n], values[n])
            tp = TimepointRow(*values)
            out[tp.patient_pk].append(tp)
        for tps in out.values():
            tps.sort(key=lambda t: (t.target_date, t.key, t.pk))
        return out

    def responses(self) -> dict[tuple[int, str], list[ResponseRow]]:
        """(timepoint pk, instrument) -> its revisions."""
        stmt = self._selected_patients(
            select(
                Response.id,
                Response.timepoint_id,
                Response.instrument_id,
                Response.instrument_version,
                Response.revision,
                Response.language,
                Response.respondent,
                Response.respondent_relationship,
                Response.mode,
                Response.status,
                Response.started_at,
                Response.submitted_at,
                Response.entered_by,
                Response.completed_on,
                Response.display_mode,
                Response.read_aloud_used,
                Response.audio_used,
            )
            .join(Patient, Response.patient_id == Patient.id)
            .where(Response.instrument_id.in_(self.instruments))
        )
        out: dict[tuple[int, str], list[ResponseRow]] = defaultdict(list)
        shared: dict[Any, Any] = {}
        for row in self._rows(stmt):
            values = list(row)
            for n in _RESPONSE_CODES:
                values[n] = shared.setdefault(values[n], values[n])
            response = ResponseRow(*values)
            out[(response.timepoint_pk, response.instrument_id)].append(response)
        return out

    def _arrow(self, stmt: Select[*tuple[Any, ...]], schema: pa.Schema, keep: pa.Array | None) -> pa.Table:
        """The rows as an Arrow table, read BATCH at a time; with ``keep``, only the rows whose
        ``response_id`` is in it (dropped batch by batch, so the whole read is never held).

        Read from the driver's own cursor (in the session's transaction; a server-side one on
        PostgreSQL): for millions of rows SQLAlchemy's row objects cost as much again as the
        driver. These columns need no type processing but SQLite's booleans (0/1), cast here."""
        connection = self.session.connection()
        compiled = stmt.compile(dialect=connection.dialect, compile_kwargs={"render_postcompile": True})
        params = compiled.construct_params()
        args = tuple(params[name] for name in compiled.positiontup or ()) if compiled.positional else params
        dbapi = connection.connection.dbapi_connection
        assert dbapi is not None
        server_side = connection.dialect.name == "postgresql"
        cursor = dbapi.cursor(name="qol_export_read") if server_side else dbapi.cursor()
        try:
            cursor.execute(str(compiled), args)
            batches = []
            while rows := cursor.fetchmany(BATCH):
                columns = list(zip(*rows))
                batch = pa.record_batch([_column(c, f.type) for c, f in zip(columns, schema)], schema=schema)
                if keep is not None:
                    batch = batch.filter(pc.is_in(batch.column("response_id"), value_set=keep))
                batches.append(batch)
        finally:
            cursor.close()
        return pa.Table.from_batches(batches, schema=schema)

    def scores(self, keep: pa.Array | None = None) -> pa.Table:
        """Stored scores of the selection's responses (``SCORE_SCHEMA``); of the responses in
        ``keep`` (int64 response pks) only, when given."""
        return self._arrow(
            select(Score.response_id, Score.scale, Score.value, Score.n_items, Score.scoring_version).where(
                Score.response_id.in_(self._selected_responses())
            ),
            SCORE_SCHEMA,
            keep,
        )

    def answers(self, keep: pa.Array | None = None) -> pa.Table:
        """Stored answers of the selection's responses (``ANSWER_SCHEMA``); of the responses in
        ``keep`` (int64 response pks) only, when given."""
        return self._arrow(
            select(Answer.response_id, Answer.item_id, Answer.value, Answer.skipped).where(
                Answer.response_id.in_(self._selected_responses())
            ),
            ANSWER_SCHEMA,
            keep,
        )

    def status_history(self) -> dict[int, list[StatusRow]]:
        """Patient pk -> its recorded statuses (``PatientStatusChange``), in the order recorded."""
        stmt = self._selected_patients(
            select(
                PatientStatusChange.patient_id,
                PatientStatusChange.status,
                PatientStatusChange.status_date,
                PatientStatusChange.recorded_at,
                PatientStatusChange.id,
            ).join(Patient, PatientStatusChange.patient_id == Patient.id)
        )
        out: dict[int, list[StatusRow]] = defaultdict(list)
        for pk, status, date, recorded_at, _id in sorted(self._rows(stmt), key=lambda r: (r[3], r[4])):
            out[pk].append(StatusRow(status, date, recorded_at))
        return out

    def timepoint_history(self) -> dict[int, list[ChangeRow]]:
        """Timepoint pk -> the recorded changes of its reasons (``HISTORY_FIELDS``), planned fields and
        status (``REWOUND_FIELDS``), from the audit trail (where every change is recorded with its
        time, the new value and the one it replaced), in chain order, typed as the columns."""
        stmt = self._selected_patients(
            select(AuditEvent.entity_id, AuditEvent.occurred_at, AuditEvent.old, AuditEvent.new, AuditEvent.id)
            .join(Patient, AuditEvent.patient_id == Patient.id)
            .where(AuditEvent.entity_type.in_(("timepoint", "timepoints")))
        )
        out: dict[int, list[ChangeRow]] = defaultdict(list)
        for entity_id, at, old, new, _id in sorted(self._rows(stmt), key=lambda r: r[4]):
            if not isinstance(new, dict) or not str(entity_id or "").isdigit():
                continue
            old = old if isinstance(old, dict) else {}
            for field in _CHANGED_FIELDS:
                if field in new:
                    out[int(entity_id)].append(
                        ChangeRow(at, field, _typed(field, new[field]), _typed(field, old.get(field)))
                    )
        return out

    def answer_summary(self) -> dict[int, tuple[int, dt.datetime]]:
        """Response pk -> (items answered, when the earliest of them was saved), for the selection's
        responses with at least one answered (not skipped) item: one aggregate, for "received"."""
        stmt = (
            select(Answer.response_id, func.count(), func.min(Answer.answered_at))
            .where(Answer.response_id.in_(self._selected_responses()), Answer.skipped.is_(False))
            .group_by(Answer.response_id)
        )
        return {pk: (n, first) for pk, n, first in self._rows(stmt)}

    def answers_of(self, response_pks: Iterable[int]) -> dict[int, list[tuple[str, float | None, bool, dt.datetime]]]:
        """Response pk -> its answers (item, value, skipped, saved at), by item, for a few responses."""
        pks = sorted(set(response_pks))
        out: dict[int, list[tuple[str, float | None, bool, dt.datetime]]] = defaultdict(list)
        for start in range(0, len(pks), 1000):
            stmt = select(Answer.response_id, Answer.item_id, Answer.value, Answer.skipped, Answer.answered_at).where(
                Answer.response_id.in_(pks[start : start + 1000])
            )
            for pk, item, value, skipped, at in sorted(self._rows(stmt), key=lambda r: (r[0], r[1])):
                out[pk].append((item, value, skipped, at))
        return out

    def answer_times(self, response_pks: Iterable[int]) -> dict[tuple[int, str], dt.datetime]:
        """(response pk, item) -> when the answer was saved, for the given responses."""
        pks = sorted(set(response_pks))
        out: dict[tuple[int, str], dt.datetime] = {}
        for start in range(0, len(pks), 1000):
            stmt = select(Answer.response_id, Answer.item_id, Answer.answered_at).where(
                Answer.response_id.in_(pks[start : start + 1000])
            )
            out.update({(pk, item): at for pk, item, at in self._rows(stmt)})
        return out

    def events(self) -> dict[int, list[EventRow]]:
        """Patient pk -> its treatment events (deleted ones too), by date, kind, number and id."""
        stmt = self._selected_patients(
            select(
                TreatmentEvent.patient_id,
                TreatmentEvent.kind,
                TreatmentEvent.number,
                TreatmentEvent.date,
                TreatmentEvent.cycle_length_days,
                TreatmentEvent.created_at,
                TreatmentEvent.deleted_at,
                TreatmentEvent.id,
            ).join(Patient, TreatmentEvent.patient_id == Patient.id)
        )
        out: dict[int, list[tuple[Any, ...]]] = defaultdict(list)
        for row in self._rows(stmt):
            out[row[0]].append(tuple(row))
        return {
            pk: [EventRow(*r) for r in sorted(rows, key=lambda r: (r[3], r[1], r[2] or 0, r[7]))]
            for pk, rows in out.items()
        }

    def patient_history(self) -> dict[int, list[ChangeRow]]:
        """Patient pk -> the recorded corrections of ``PATIENT_REWOUND_FIELDS`` (randomization,
        details), from the audit trail, with the value each replaced, in chain order."""
        stmt = self._selected_patients(
            select(AuditEvent.patient_id, AuditEvent.occurred_at, AuditEvent.old, AuditEvent.new, AuditEvent.id)
            .join(Patient, AuditEvent.patient_id == Patient.id)
            .where(
                AuditEvent.entity_type == "patients",
                AuditEvent.action.in_(PATIENT_CORRECTIONS),
            )
        )
        out: dict[int, list[ChangeRow]] = defaultdict(list)
        for pk, at, old, new, _id in sorted(self._rows(stmt), key=lambda r: r[4]):
            if not isinstance(new, dict) or not isinstance(old, dict):
                continue
            for field in PATIENT_REWOUND_FIELDS:
                if field in new and field in old:
                    before = old[field]
                    if field == "randomization_date" and before:
                        before = dt.date.fromisoformat(before)
                    out[pk].append(ChangeRow(at, field, new[field], before))
        return out

    def event_history(self) -> dict[int, list[ChangeRow]]:
        """Event pk -> the recorded corrections of its date and cycle length (``EVENT_REWOUND_FIELDS``),
        from the audit trail, with the value each replaced, in chain order."""
        stmt = self._selected_patients(
            select(AuditEvent.entity_id, AuditEvent.occurred_at, AuditEvent.old, AuditEvent.new, AuditEvent.id)
            .join(Patient, AuditEvent.patient_id == Patient.id)
            .where(AuditEvent.entity_type == "treatment_event", AuditEvent.action == "move_event")
        )
        out: dict[int, list[ChangeRow]] = defaultdict(list)
        for entity_id, at, old, new, _id in sorted(self._rows(stmt), key=lambda r: r[4]):
            if not isinstance(new, dict) or not isinstance(old, dict) or not str(entity_id or "").isdigit():
                continue
            for field in EVENT_REWOUND_FIELDS:
                if field in new and field in old:
                    before = dt.date.fromisoformat(old[field]) if field == "date" and old[field] else old[field]
                    out[int(entity_id)].append(ChangeRow(at, field, new[field], before))
        return out

    def alerts(self) -> dict[int, list[AlertRow]]:
        """Patient pk -> its alerts, by time raised and id; rule ids only (never stored values or text)."""
        stmt = self._selected_patients(
            select(
                Alert.patient_id,
                Alert.level,
                Alert.initial_level,
                Alert.rules,
                Alert.raised_at,
                Alert.escalated_at,
                Alert.acknowledged_at,
                Timepoint.key,
                Response.instrument_id,
                Alert.id,
            )
            .join(Patient, Alert.patient_id == Patient.id)
            .outerjoin(Response, Alert.response_id == Response.id)
            .outerjoin(Timepoint, Response.timepoint_id == Timepoint.id)
        )
        out: dict[int, list[tuple[Any, ...]]] = defaultdict(list)
        for row in self._rows(stmt):
            out[row[0]].append(tuple(row))
        return {
            pk: [
                AlertRow(r[0], r[1], r[2], _rule_ids(r[3]), r[4], r[5], r[6], r[7], r[8])
                for r in sorted(rows, key=lambda r: (r[4], r[9]))
            ]
            for pk, rows in out.items()
        }


def _column(values: Sequence[Any], kind: pa.DataType) -> pa.Array:
    """Driver values as an Arrow column of ``kind`` (booleans may come as 0/1: SQLite)."""
    if kind == pa.bool_():
        return pa.array(values).cast(pa.bool_())
    return pa.array(values, kind)


def _rule_ids(rules: Iterable[Any] | None) -> tuple[str, ...]:
    """Rule ids only: stored entries may carry more (values, text) that must not leave the app."""
    out = []
    for entry in rules or ():
        rule_id = entry.get("id") if isinstance(entry, dict) else entry
        if isinstance(rule_id, str):
            out.append(rule_id)
    return tuple(out)
