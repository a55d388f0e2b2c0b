"""Read the database as of a point in time, streaming: rows in, records (records.py) out.

Timepoints are read through one ordered query with ``yield_per`` (a server-side cursor on
PostgreSQL); for each batch of timepoints, their responses, scores and answers come from one
``IN`` query each. Records are handed out one patient at a time, so memory holds one batch plus
one patient's forms, never the trial. Selecting columns (not ORM objects) keeps it fast.

Ordering is total and the same on every run: patients by study id (byte order on PostgreSQL as
on SQLite), timepoints by target date, key and id, instruments in the timepoint's order.

``iter_long_chunks`` reads the same selection for the column-wise long file (``columnar.py``):
columns per run of patients, each query's result as one text the database renders (CSV on
PostgreSQL, JSON on SQLite) that Arrow parses in another thread, no records.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import itertools
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Date,
    DateTime,
    Float,
    Integer,
    Select,
    String,
    Text,
    and_,
    any_,
    bindparam,
    case,
    cast,
    extract,
    func,
    literal_column,
    or_,
    select,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session

from qol_app.db import UTCDateTime
from qol_app.export.builders.records import (
    AlertFacts,
    EventFacts,
    ExportFilters,
    Form,
    PatientFacts,
    PatientForms,
    ResponseFacts,
    TimepointFacts,
    counts_at,
    form_status,
    local_day,
    not_expected_at,
    patient_status_at,
)
from qol_app.models import Alert, Answer, Patient, Response, Score, Site, Timepoint, TreatmentEvent

DEFAULT_BATCH = 1000
DEFAULT_CHUNK_PATIENTS = 200
"""Patients per chunk of the column-wise long file: its memory is one chunk's forms and scales."""


def _conn(session: Session) -> Any:
    """Core execution on the session's connection and transaction: rows, not ORM loading."""
    return session.connection()


def _study_id_order(session: Session) -> Any:
    """Study ids in byte order on every backend (PostgreSQL's locale collation would differ)."""
    if session.get_bind().dialect.name == "postgresql":
        return Patient.study_id.collate("C")
    return Patient.study_id


def _date_filter(stmt: Select[Any], filters: ExportFilters, baseline_key: str) -> Select[Any]:
    """Timepoints in the date range, and the baseline whatever its date (change needs it)."""
    if not (filters.date_from or filters.date_to):
        return stmt
    bounds = []
    if filters.date_from:
        bounds.append(Timepoint.target_date >= filters.date_from)
    if filters.date_to:
        bounds.append(Timepoint.target_date <= filters.date_to)
    return stmt.where(or_(and_(*bounds), Timepoint.key == baseline_key))


def _counted_timepoints(as_of: dt.datetime) -> Any:
    """SQL for ``records.counts_at``: created by ``as_of`` and not cancelled by then."""
    return and_(
        Timepoint.created_at <= as_of, or_(Timepoint.status != "cancelled", Timepoint.status_changed_at > as_of)
    )


def _patient_filter(stmt: Select[Any], filters: ExportFilters, as_of: dt.datetime) -> Select[Any]:
    stmt = stmt.where(Patient.created_at <= as_of)
    if filters.sites:
        stmt = stmt.where(Site.code.in_(filters.sites))
    if filters.arms:
        stmt = stmt.where(Patient.arm.in_(filters.arms))
    return stmt


_PATIENT_COLUMNS = (
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
)


def _patient(row: Any, as_of: dt.datetime) -> PatientFacts:
    pk, study_id, site, arm, rand, tz, site_tz, language, status, status_date = row[:10]
    tz = tz or site_tz
    status, status_date = patient_status_at(status, status_date, local_day(as_of, tz))
    return PatientFacts(pk, study_id, site, arm, rand, tz, language, status, status_date)


# ---------------------------------------------------------------- forms


def iter_patient_forms(
    session: Session,
    filters: ExportFilters,
    as_of: dt.datetime,
    *,
    instruments: Sequence[str],
    baseline_key: str = "baseline",
    scores: bool = True,
    answers: bool = False,
    batch: int = DEFAULT_BATCH,
) -> Iterator[PatientForms]:
    """Every expected form of the selected patients and instruments, as of ``as_of``, per patient.

    Timepoints outside the date range are skipped, except the baseline, which is loaded with
    ``in_range=False`` so change from baseline works whatever the range.
    """
    wanted = set(instruments)
    stmt = (
        select(
            *_PATIENT_COLUMNS,
            Timepoint.id,
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
        )
        .join(Patient, Timepoint.patient_id == Patient.id)
        .join(Site, Patient.site_id == Site.id)
        .where(_counted_timepoints(as_of))
        .order_by(_study_id_order(session), Timepoint.target_date, Timepoint.key, Timepoint.id)
    )
    stmt = _date_filter(_patient_filter(stmt, filters, as_of), filters, baseline_key)

    current: PatientFacts | None = None
    forms: list[Form] = []
    result = _conn(session).execute(stmt.execution_options(yield_per=batch))
    for chunk in result.partitions():
        for patient, chunk_forms in _chunk_forms(session, chunk, as_of, wanted, filters, scores, answers):
            if current is not None and patient.pk != current.pk:
                yield PatientForms(current, _sorted(forms))
                forms = []
            current = patient
            forms.extend(chunk_forms)
    if current is not None:
        yield PatientForms(current, _sorted(forms))


def _sorted(forms: list[Form]) -> list[Form]:
    """Within a patient: by target date, key (Python's byte order, whatever the DB collation), id,
    then the timepoint's instrument order."""
    return sorted(
        forms,
        key=lambda f: (
            f.timepoint.target_date,
            f.timepoint.key,
            f.timepoint.pk,
            f.timepoint.instruments.index(f.instrument_id),
        ),
    )


def _chunk_forms(
    session: Session,
    rows: Sequence[Any],
    as_of: dt.datetime,
    wanted: set[str],
    filters: ExportFilters,
    with_scores: bool,
    with_answers: bool,
) -> Iterator[tuple[PatientFacts, list[Form]]]:
    """The forms of one batch of timepoint rows, with their scores and answers, per patient."""
    revisions = _responses(session, [row[10] for row in rows], as_of, wanted)
    forms: list[tuple[PatientFacts, Form]] = []
    patients: dict[int, PatientFacts] = {}
    for row in rows:
        (
            tp_id,
            key,
            rule_id,
            kind,
            instruments,
            anchor_kind,
            anchor_number,
            anchor_date,
            target_date,
            window_start,
            window_end,
            opens_at,
            closes_at,
            grace_closes_at,
            missed_reason,
            not_expected_reason,
            status,
            status_changed_at,
            created_at,
        ) = row[10:]
        if not counts_at(status, status_changed_at, created_at, as_of):
            continue
        patient = patients.get(row[0])
        if patient is None:
            patient = patients[row[0]] = _patient(row, as_of)
        tp = TimepointFacts(
            tp_id,
            key,
            rule_id,
            kind,
            tuple(instruments or ()),
            anchor_kind,
            anchor_number,
            anchor_date,
            target_date,
            window_start,
            window_end,
            opens_at,
            closes_at,
            grace_closes_at,
            missed_reason,
            not_expected_at(not_expected_reason, status_changed_at, as_of),
            filters.in_range(target_date),
        )
        for inst in tp.instruments:
            if inst not in wanted:
                continue
            started = revisions.get((tp_id, inst), ())
            response = _current(started, as_of)
            status_now = form_status(
                tp, as_of, submitted=response is not None and response.submitted, started=bool(started)
            )
            if status_now is not None:
                forms.append((patient, Form(tp, inst, status_now, response)))
    if with_scores:
        scores = _scores(session, [f.response.pk for _p, f in forms if f.response and f.response.submitted])
        for _p, form in forms:
            if form.response is not None and form.response.submitted:
                form.scores = scores.get(form.response.pk, {})
    if with_answers:
        answers = _answers(session, [f.response.pk for _p, f in forms if f.response], as_of)
        for _p, form in forms:
            if form.response is not None:
                form.answers = answers.get(form.response.pk, {})
    for _pk, group in itertools.groupby(forms, key=lambda item: item[0].pk):
        items = list(group)
        yield items[0][0], [form for _p, form in items]


_RESPONSE_COLUMNS = (
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
)


def _responses(
    session: Session, tp_ids: list[int], as_of: dt.datetime, wanted: set[str]
) -> dict[tuple[int, str], list[Any]]:
    """(timepoint, instrument) -> response rows started by ``as_of``, by revision."""
    out: dict[tuple[int, str], list[Any]] = defaultdict(list)
    if not tp_ids:
        return out
    rows = (
        _conn(session)
        .execute(
            select(*_RESPONSE_COLUMNS)
            .where(
                Response.timepoint_id.in_(tp_ids),
                Response.started_at <= as_of,
                Response.instrument_id.in_(sorted(wanted)),
            )
            .order_by(Response.timepoint_id, Response.instrument_id, Response.revision)
        )
        .all()
    )
    for row in rows:
        out[(row[1], row[2])].append(row)
    return out


def _current(rows: Sequence[Any], as_of: dt.datetime) -> ResponseFacts | None:
    """The current revision (the newest submitted by ``as_of``), else the unfinished revision 0."""
    first = current = None
    first_at = None
    for row in rows:  # by revision
        done = row[9] == "submitted" and row[11] is not None and row[11] <= as_of
        if row[4] == 0:
            first = row
            first_at = row[11] if done else None
        if done:
            current = row
    row = current or first
    if row is None:
        return None
    return ResponseFacts(row[0], row[3], row[4], row[5], row[6], row[7], row[8], current is not None, row[10], first_at)


def _scores(session: Session, response_ids: list[int]) -> dict[int, dict[str, tuple[float | None, int | None, str]]]:
    out: dict[int, dict[str, tuple[float | None, int | None, str]]] = defaultdict(dict)
    if not response_ids:
        return out
    rows = (
        _conn(session)
        .execute(
            select(Score.response_id, Score.scale, Score.value, Score.n_items, Score.scoring_version).where(
                Score.response_id.in_(response_ids)
            )
        )
        .all()
    )
    for response_id, scale, value, n_items, version in rows:
        out[response_id][scale] = (value, n_items, version)
    return out


def _answers(
    session: Session, response_ids: list[int], as_of: dt.datetime
) -> dict[int, dict[str, tuple[float | None, bool]]]:
    out: dict[int, dict[str, tuple[float | None, bool]]] = defaultdict(dict)
    if not response_ids:
        return out
    rows = (
        _conn(session)
        .execute(
            select(Answer.response_id, Answer.item_id, Answer.value, Answer.skipped).where(
                Answer.response_id.in_(response_ids), Answer.answered_at <= as_of
            )
        )
        .all()
    )
    for response_id, item_id, value, skipped in rows:
        out[response_id][item_id] = (value, bool(skipped))
    return out


# ---------------------------------------------------------------- forms, column-wise

Columns = dict[str, Any]
"""A query result as column name -> values: a sequence of what the database driver returns (on
SQLite, dates and times are ISO text; on PostgreSQL, ``date`` and aware ``datetime``) or a
``pyarrow.Array`` (``_ArrowReader``)."""


@dataclasses.dataclass(frozen=True, slots=True)
class LongChunk:
    """What the column-wise long file needs about a run of patients (``columnar.long_batch``):
    ``patients`` in output order, their ``timepoints`` that count at the as-of time (``instruments``
    as JSON text), the ``responses`` to them started by then for the selected instruments (``done``:
    submitted by then) and the ``scores`` of the done ones (the builder keeps the current revision's)."""

    patients: Columns
    timepoints: Columns
    responses: Columns
    scores: Columns


IdList = str
"""Ids as the database writes a list and reads it back as one parameter: a JSON array on SQLite,
an array literal ``{...}`` on PostgreSQL. Each query of a chunk hands its ids on to the next in
this form, so no Python reads them."""

IDS = bindparam("ids", type_=String)
"""The ``IdList`` parameter of ``_in``."""


def _postgres(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def _id_list(session: Session, ids: Iterable[int]) -> IdList:
    listed = ",".join(map(str, ids))
    return f"{{{listed}}}" if _postgres(session) else f"[{listed}]"


def _in(session: Session, column: Any, ids: Any = IDS) -> Any:
    """``column IN ids`` for an ``IdList`` parameter: on PostgreSQL ``= ANY('{...}'::int[])``, on
    SQLite ``IN (SELECT value FROM json_each('[...]'))`` (both use the column's index). One
    parameter per id, or a list the driver adapts value by value, costs more than the query."""
    if _postgres(session):
        return column == any_(cast(ids, ARRAY(BigInteger)))
    return column.in_(select(literal_column("value")).select_from(func.json_each(ids)))


IN_BATCH = 20_000
"""Most ids in one query of ``_ArrowReader.columns_in``."""


def iter_long_chunks(
    session: Session,
    filters: ExportFilters,
    as_of: dt.datetime,
    *,
    instruments: Sequence[str],
    baseline_key: str = "baseline",
    patients_per_chunk: int = DEFAULT_CHUNK_PATIENTS,
) -> Iterator[Callable[[], LongChunk]]:
    """The long file's forms, ``patients_per_chunk`` patients at a time, in patient order.

    The same selection as ``iter_patient_forms`` (patients, timepoints counted at ``as_of``, date
    range plus the baseline, responses started by then), read as columns: patients through the
    driver (a few hundred rows), timepoints, responses and scores as Arrow arrays (``_ArrowReader``).

    Each item has read its chunk from the database when it is yielded (in this thread: connections
    belong to it) and converts it to Arrow when called, in any thread: reading never waits for
    converting, as each query's ids come from the one before as the database's own text.
    """
    stmt = _patient_filter(
        select(
            Patient.id.label("pk"),
            Patient.study_id,
            Site.code.label("site"),
            Patient.arm,
            Patient.randomization_date.label("rand"),
            func.coalesce(func.nullif(Patient.timezone, ""), Site.timezone).label("tz"),
        )
        .join(Site, Patient.site_id == Site.id)
        .order_by(_study_id_order(session)),
        filters,
        as_of,
    )
    names = list(stmt.selected_columns.keys())
    responses = select(
        Response.id,
        Response.timepoint_id,
        Response.instrument_id,
        Response.instrument_version,
        Response.revision,
        Response.language,
        Response.respondent,
        Response.mode,
        Response.submitted_at,
        and_(Response.status == "submitted", Response.submitted_at <= as_of).label("done"),
    ).where(Response.started_at <= as_of, Response.instrument_id.in_(sorted(set(instruments))))
    scores = select(Score.response_id, Score.scale, Score.value, Score.n_items, Score.scoring_version)
    reader = _ArrowReader(session)
    read_timepoints = reader.query(
        _long_timepoints(filters, as_of, baseline_key).where(_in(session, Timepoint.patient_id)), ids_of="id"
    )
    read_responses = reader.query(responses.where(_in(session, Response.timepoint_id)), ids_of="id", ids_where="done")
    read_scores = reader.query(
        scores.where(_in(session, Score.response_id)), key=(Score.response_id, Score.id)
    )  # the order of its index
    for chunk in _conn(session).execute(stmt.execution_options(yield_per=patients_per_chunk)).partitions():
        timepoints = read_timepoints(_id_list(session, (row[0] for row in chunk)))
        started = read_responses(timepoints.ids)
        done = read_scores(started.ids)
        patients = {name: [row[i] for row in chunk] for i, name in enumerate(names)}
        yield functools.partial(_long_chunk, patients, timepoints.convert, started.convert, done.convert)


def _long_chunk(patients: Columns, *parts: Callable[[], ArrowColumns]) -> LongChunk:
    timepoints, responses, scores = (convert() for convert in parts)
    return LongChunk(patients=patients, timepoints=timepoints, responses=responses, scores=scores)


@dataclasses.dataclass(frozen=True, slots=True)
class Fetched:
    """A query's result as the database sent it: ``convert()`` makes Arrow columns of it (in any
    thread); ``ids`` lists the ids asked for (``_ArrowReader.query``), for the next query's ``_in``."""

    convert: Callable[[], ArrowColumns]
    ids: IdList | None = None


class _ArrowReader:
    """Query results as Arrow arrays, in the session's transaction, with a Python object per query
    rather than per value where the database allows it: a Python object per value costs more than
    the query, and holds the GIL that the builder's and the writer's threads need.

    PostgreSQL renders each row as a CSV line (``concat``) and the query's lines as one text value
    (``string_agg``), which Arrow parses with the column types given: text is quoted, so empty text
    stays empty text, and NULL is an empty unquoted field; floats are PostgreSQL's shortest
    round-trip text (``extra_float_digits`` >= 1, the default since PostgreSQL 12, is checked, else
    the driver path below is used); instants are UTC ISO text (``DateStyle`` ISO is checked, else
    epoch microseconds) and dates days since 1970, so nothing depends on TimeZone. (``COPY ... TO
    STDOUT`` would do the same but psycopg hands its rows over one Python call each.)

    SQLite renders each text column as a JSON array (``json_group_array``: text exactly, NULL as
    null), all in one JSON object that Arrow parses, and each integer column as a comma-separated
    list (``group_concat``), which Arrow splits; all in one row, in one pass over the rows. Its text
    conversions of floats are not exact (15 or 17 significant digits, neither round-trips every
    value), so each float travels as two integers that give it back bit for bit (``_exact_parts``).
    A chunk with a float outside their range (none of the scores) has its floats fetched through
    the driver instead, one value per row in the order of the query's ``key`` columns, and the
    other columns put in that order. Dates and instants stay the stored ISO text (``columnar``
    parses them), booleans 0/1.

    The driver path: the driver's rows, converted by Arrow in one call (as a struct array;
    transposing them in Python costs more than fetching them).
    """

    def __init__(self, session: Session) -> None:
        self.session = session
        self.postgres = _postgres(session)
        self.mode = "json"
        self.iso_times = False
        self.float_fallbacks = 0  # SQLite chunks whose floats came through the driver (see above)
        if self.postgres:
            conn = _conn(session)
            self.mode = "csv" if int(conn.exec_driver_sql("SHOW extra_float_digits").scalar_one()) >= 1 else "driver"
            self.iso_times = str(conn.exec_driver_sql("SHOW DateStyle").scalar_one()).startswith("ISO")

    def columns_in(
        self, stmt: Select[Any], column: Any, ids: Sequence[int], batch: int = IN_BATCH, key: Sequence[Any] = ()
    ) -> ArrowColumns:
        """``stmt`` for rows whose ``column`` is in ``ids``, one indexed query per ``batch`` ids."""
        import pyarrow as pa

        read = self.query(stmt.where(_in(self.session, column)), key=key)
        parts = [
            read(_id_list(self.session, ids[start : start + batch])).convert() for start in range(0, len(ids), batch)
        ] or [read(_id_list(self.session, ())).convert()]
        if len(parts) == 1:
            return parts[0]
        return {name: pa.concat_arrays([part[name] for part in parts]) for name in parts[0]}

    def query(
        self, stmt: Select[Any], ids_of: str | None = None, ids_where: str | None = None, key: Sequence[Any] = ()
    ) -> Callable[[IdList], Fetched]:
        """A function that runs ``stmt`` for an ``IdList`` (its ``IDS`` parameter). ``ids_of``: also
        list that column's values (of the rows where the boolean column ``ids_where`` is true).
        ``key``: table columns that tell the rows apart (unique together, never NULL), needed on
        SQLite when ``stmt`` has floats (else the driver path is used; the result then also has
        the key's columns). Built once per export: building and compiling the statements for each
        chunk cost more than running them."""
        if self.mode == "json" and key:
            stmt = stmt.add_columns(*(column for column in key if column.key not in stmt.selected_columns))
        names = list(stmt.selected_columns.keys())
        kinds = [_kind(column.type) for column in stmt.selected_columns]
        if self.mode == "csv":
            return self._csv(stmt, names, kinds, ids_of, ids_where)
        if self.mode == "json" and (key or "float" not in kinds):
            return self._json(stmt, names, kinds, ids_of, ids_where, [column.key for column in key])
        return functools.partial(self._driver, stmt, names, kinds, ids_of, ids_where)

    def _driver(
        self,
        stmt: Select[Any],
        names: list[str],
        kinds: list[str],
        ids_of: str | None,
        ids_where: str | None,
        ids: IdList,
    ) -> Fetched:
        rows = _raw_rows(self.session, stmt, ids)
        listed = None
        if ids_of is not None:
            at, where = names.index(ids_of), None if ids_where is None else names.index(ids_where)
            listed = _id_list(self.session, (row[at] for row in rows if where is None or row[where]))
        return Fetched(functools.partial(self._rows_to_arrow, rows, names, kinds), listed)

    def _rows_to_arrow(self, rows: list[Any], names: list[str], kinds: list[str]) -> ArrowColumns:
        import pyarrow as pa

        source = "driver" if self.postgres else "sqlite"
        row_type = pa.struct([(name, _arrow_type(kind, source)) for name, kind in zip(names, kinds)])
        arrays = pa.array(rows, row_type).flatten()
        return {
            name: values.cast(pa.bool_()) if kind == "bool" else values
            for name, kind, values in zip(names, kinds, arrays)
        }

    def _json(
        self,
        stmt: Select[Any],
        names: list[str],
        kinds: list[str],
        ids_of: str | None,
        ids_where: str | None,
        key: Sequence[str],
    ) -> Callable[[IdList], Fetched]:
        """SQLite: text columns as one JSON object of arrays, integer columns as comma-separated
        lists (which Arrow splits faster than it parses JSON), and the ids as a JSON array; floats
        as rows, ordered by ``key``. (Ordering the other columns' rows too costs SQLite more than
        sorting them costs Arrow.)"""
        sub = stmt.subquery()
        texts = [name for name, kind in zip(names, kinds) if kind in _TEXT_KINDS]
        numbers = [name for name, kind in zip(names, kinds) if kind in _NUMBER_KINDS]
        floats = [name for name, kind in zip(names, kinds) if kind == "float"]
        document = func.json_object(
            *(part for name in texts for part in (literal_column(f"'{name}'"), func.json_group_array(sub.c[name])))
        )
        lists = [_listed_numbers(sub.c[name]) for name in numbers]
        lists += [_listed_numbers(part) for name in floats for part in _exact_parts(sub.c[name])]
        outside = (
            [func.total(case((or_(*(_outside_exact_range(sub.c[name]) for name in floats)), 1), else_=0))]
            if floats
            else []
        )
        aggregate = select(document, *lists, *outside, *_listed(sub, ids_of, ids_where, func.json_group_array))
        by_key = select(*(sub.c[name] for name in floats)).order_by(*(sub.c[name] for name in key))

        def read(ids: IdList) -> Fetched:
            ((text, *rest),) = _raw_rows(self.session, aggregate, ids)
            columns, rest = dict(zip(numbers, rest)), rest[len(numbers) :]
            pairs, rest = rest[: 2 * len(floats)], rest[2 * len(floats) :]
            parts = dict(zip(floats, zip(pairs[::2], pairs[1::2])))
            rows = None
            if floats:
                if rest[0]:
                    self.float_fallbacks += 1
                    parts, rows = {}, _raw_rows(self.session, by_key, ids)
                rest = rest[1:]
            return Fetched(functools.partial(_parse_json, text, columns, names, kinds, key, parts, rows), *rest)

        return read

    def _csv(
        self, stmt: Select[Any], names: list[str], kinds: list[str], ids_of: str | None, ids_where: str | None
    ) -> Callable[[IdList], Fetched]:
        """PostgreSQL: the rows as CSV text (and the ids as an array literal)."""
        sub = stmt.subquery()
        fields: list[Any] = []
        for name, kind in zip(names, kinds):
            fields += [literal_column("','"), _csv_field(sub.c[name], kind, self.iso_times)]
        line = func.concat(*fields[1:])  # NULL -> ''; other values through their type's output function
        listed = [
            cast(func.coalesce(ids, literal_column("'{}'")), Text)
            for ids in _listed(sub, ids_of, ids_where, func.array_agg)
        ]
        aggregate = select(func.string_agg(line, literal_column("chr(10)")), *listed)

        def read(ids: IdList) -> Fetched:
            ((text, *listed),) = _raw_rows(self.session, aggregate, ids)
            return Fetched(functools.partial(self._parse_csv, text, names, kinds), *listed)

        return read

    def _parse_csv(self, text: str | None, names: list[str], kinds: list[str]) -> ArrowColumns:
        import pyarrow as pa
        import pyarrow.csv as pcsv

        types = {
            name: pa.string() if kind == "time" and self.iso_times else _arrow_type(kind, "csv")
            for name, kind in zip(names, kinds)
        }
        if not text:
            return {name: pa.array([], kind) for name, kind in types.items()}
        table = pcsv.read_csv(
            pa.py_buffer(text.encode()),
            read_options=pcsv.ReadOptions(column_names=names, use_threads=False),
            parse_options=pcsv.ParseOptions(newlines_in_values=True),
            convert_options=pcsv.ConvertOptions(
                column_types=types,
                null_values=[""],
                strings_can_be_null=True,
                quoted_strings_can_be_null=False,
                true_values=["t"],
                false_values=["f"],
            ),
        )
        out = {name: table.column(name).combine_chunks() for name in names}
        for name, kind in zip(names, kinds):
            if kind == "time" and not self.iso_times:
                out[name] = out[name].cast(pa.timestamp("us", tz="UTC"))
            elif kind == "date":
                out[name] = out[name].cast(pa.date32())
        return out


def _listed(sub: Any, ids_of: str | None, ids_where: str | None, aggregate: Any) -> list[Any]:
    """The aggregate of column ``ids_of`` (where ``ids_where``), if asked for."""
    if ids_of is None:
        return []
    ids = aggregate(sub.c[ids_of])
    return [ids if ids_where is None else ids.filter(sub.c[ids_where])]


_TEXT_KINDS = ("text", "time", "date")
_NUMBER_KINDS = ("int", "bool")


def _parse_json(
    document: str,
    numbers: dict[str, str | None],
    names: list[str],
    kinds: list[str],
    key: Sequence[str],
    parts: dict[str, tuple[str | None, str | None]],
    floats: list[Any] | None,
) -> ArrowColumns:
    """``_ArrowReader._json``'s result as Arrow columns: the JSON object's arrays, the number lists
    and the floats from their ``parts``; or, when the floats came as driver rows, the rest put in
    ``key`` order (as SQLite's ORDER BY sorts integers and text: by value, by bytes) to meet them."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.json as pj

    texts = [name for name, kind in zip(names, kinds) if kind in _TEXT_KINDS]
    data = document.encode()
    table = pj.read_json(
        pa.py_buffer(data),
        read_options=pj.ReadOptions(use_threads=False, block_size=len(data) + 1),
        parse_options=pj.ParseOptions(explicit_schema=pa.schema([(name, pa.list_(pa.string())) for name in texts])),
    )
    out = {name: pc.list_flatten(table.column(name).combine_chunks()) for name in texts}
    out |= {name: _numbers(listed) for name, listed in numbers.items()}
    out |= {name: _exact_float(*listed) for name, listed in parts.items()}
    if floats is not None:
        order = pc.sort_indices(pa.table({name: out[name] for name in key}), [(name, "ascending") for name in key])
        out = {name: values.take(order) for name, values in out.items()}
        float_type = pa.struct([(name, pa.float64()) for name, kind in zip(names, kinds) if kind == "float"])
        out |= dict(zip(float_type.names, pa.array(floats, float_type).flatten()))
    return {name: out[name].cast(pa.bool_()) if kind == "bool" else out[name] for name, kind in zip(names, kinds)}


def _listed_numbers(column: Any) -> Any:
    """SQLite: an integer column's values as one comma-separated text (NULL as nothing)."""
    return func.group_concat(func.ifnull(column, literal_column("''")))


_HIGH = 2**55
_LOW = 2**57


def _exact_parts(column: Any) -> tuple[Any, Any]:
    """SQLite: a float ``v`` as two integers, ``high = trunc(v * 2**55)`` and ``low`` = the rest
    times 2**57, from which ``_exact_float`` gives ``v`` back bit for bit.

    Exact for 0 and 1e-12 <= |v| < 128 (``_outside_exact_range``): ``v * 2**55`` is exact (a power
    of two) and below 2**62, so ``high`` fits; the rest, ``v * 2**55 - high``, is exact (a double's
    fraction always is) and a multiple of its last bit, at least 2**-57 there, so ``low`` is an
    integer; both are doubles' values, so converting them back loses nothing.
    """
    scaled = column * literal_column(str(_HIGH))
    high = cast(scaled, Integer)
    return high, cast((scaled - high) * literal_column(str(_LOW)), Integer)


def _outside_exact_range(column: Any) -> Any:
    return or_(func.abs(column) >= 128, and_(column != 0, func.abs(column) < 1e-12))


def _exact_float(high: str | None, low: str | None) -> Any:
    """The floats of ``_exact_parts``' comma-separated integers: ``(high + low * 2**-57) * 2**-55``,
    every step exact (a sum whose exact value is a double, products by powers of two)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    high_part, low_part = (_numbers(listed).cast(pa.float64(), safe=False) for listed in (high, low))
    return pc.multiply(pc.add(high_part, pc.multiply(low_part, 1 / _LOW)), 1 / _HIGH)


def _numbers(listed: str | None) -> Any:
    """SQLite's ``group_concat`` of integers (NULL written as nothing) as an int64 array."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if listed is None:  # no rows
        return pa.array([], pa.int64())
    values = pc.list_flatten(pc.split_pattern(pa.array([listed]), ","))
    return pc.if_else(pc.equal(values, ""), pa.scalar(None, pa.string()), values).cast(pa.int64())


def _csv_field(column: Any, kind: str, iso_times: bool) -> Any:
    """``column`` as one CSV field for ``concat`` (PostgreSQL), which writes NULL as nothing and
    other values as their type's output function does: text quoted (so empty text is ``""``),
    instants as UTC ISO text (with ``DateStyle`` ISO; else epoch microseconds, which numeric
    arithmetic makes slower), dates as days since 1970, booleans t/f, numbers as PostgreSQL writes
    them."""
    if kind == "text":
        quote = literal_column("'\"'")
        return quote.op("||")(func.replace(column, quote, literal_column("'\"\"'"))).op("||")(quote)
    if kind == "time" and iso_times:
        return func.timezone(literal_column("'UTC'"), column)
    if kind == "time":
        return cast(extract("epoch", column) * 1_000_000, BigInteger)
    if kind == "date":
        return column - literal_column("DATE '1970-01-01'")
    return column


ArrowColumns = dict[str, Any]
"""Column name -> ``pyarrow.Array``."""


def _kind(kind: Any) -> str:
    if isinstance(kind, UTCDateTime | DateTime):
        return "time"
    if isinstance(kind, Date):
        return "date"
    if isinstance(kind, Boolean):
        return "bool"
    if isinstance(kind, Integer):
        return "int"
    if isinstance(kind, Float):
        return "float"
    if isinstance(kind, String):
        return "text"
    raise TypeError(f"no Arrow reading for {kind!r}")


def _arrow_type(kind: str, source: str) -> Any:
    """Arrow type of each kind of column as read from ``source``: "csv" (PostgreSQL's text, instants as
    epoch microseconds), "sqlite" (its driver's values: ISO text for dates and instants, 0/1) or
    "driver" (psycopg's ``date`` and aware ``datetime``)."""
    import pyarrow as pa

    if kind in ("time", "date"):
        return {
            "csv": pa.int64() if kind == "time" else pa.int32(),
            "sqlite": pa.string(),
            "driver": pa.timestamp("us", tz="UTC") if kind == "time" else pa.date32(),
        }[source]
    if kind == "bool" and source == "sqlite":
        return pa.int64()
    return {"int": pa.int64(), "bool": pa.bool_(), "float": pa.float64(), "text": pa.string()}[kind]


def _raw_rows(session: Session, stmt: Select[Any], ids: IdList | None = None) -> list[Any]:
    result = _conn(session).execute(stmt, {} if ids is None else {"ids": ids})
    try:
        return result.cursor.fetchall()
    finally:
        result.close()


def _long_timepoints(filters: ExportFilters, as_of: dt.datetime, baseline_key: str) -> Select[Any]:
    stmt = select(
        Timepoint.id,
        Timepoint.patient_id,
        Timepoint.key,
        Timepoint.rule_id,
        cast(Timepoint.instruments, Text).label("instruments"),
        Timepoint.anchor_kind,
        Timepoint.anchor_number,
        Timepoint.anchor_date,
        Timepoint.target_date,
        Timepoint.opens_at,
        Timepoint.closes_at,
        Timepoint.grace_closes_at,
        Timepoint.missed_reason,
        Timepoint.not_expected_reason,
        Timepoint.status_changed_at,
    ).where(_counted_timepoints(as_of))
    return _date_filter(stmt, filters, baseline_key)


# ---------------------------------------------------------------- patients, events, alerts


def iter_patients(
    session: Session, filters: ExportFilters, as_of: dt.datetime, *, batch: int = DEFAULT_BATCH
) -> Iterator[tuple[PatientFacts, list[EventFacts]]]:
    """Patients enrolled by ``as_of`` with their events recorded by then (deleted ones excluded)."""
    stmt = _patient_filter(
        select(*_PATIENT_COLUMNS).join(Site, Patient.site_id == Site.id).order_by(_study_id_order(session)),
        filters,
        as_of,
    )
    for chunk in _conn(session).execute(stmt.execution_options(yield_per=batch)).partitions():
        events = _events(session, [row[0] for row in chunk], as_of)
        for row in chunk:
            yield _patient(row, as_of), events.get(row[0], [])


def _events(session: Session, patient_ids: list[int], as_of: dt.datetime) -> dict[int, list[EventFacts]]:
    out: dict[int, list[EventFacts]] = defaultdict(list)
    rows = (
        _conn(session)
        .execute(
            select(
                TreatmentEvent.patient_id,
                TreatmentEvent.kind,
                TreatmentEvent.number,
                TreatmentEvent.date,
                TreatmentEvent.cycle_length_days,
            )
            .where(
                TreatmentEvent.patient_id.in_(patient_ids),
                TreatmentEvent.created_at <= as_of,
                or_(TreatmentEvent.deleted_at.is_(None), TreatmentEvent.deleted_at > as_of),
            )
            .order_by(
                TreatmentEvent.patient_id,
                TreatmentEvent.date,
                TreatmentEvent.kind,
                TreatmentEvent.number,
                TreatmentEvent.id,
            )
        )
        .all()
    )
    for patient_id, kind, number, date, cycle in rows:
        out[patient_id].append(EventFacts(kind, number, date, cycle))
    return out


def iter_alerts(
    session: Session, filters: ExportFilters, as_of: dt.datetime, *, batch: int = DEFAULT_BATCH
) -> Iterator[AlertFacts]:
    """Alerts raised by ``as_of``, their level and acknowledgement as of then; date range on the
    patient's local date of raising. Numbered per patient over all its alerts, before filtering."""
    stmt = _patient_filter(
        select(
            *_PATIENT_COLUMNS,
            Alert.level,
            Alert.initial_level,
            Alert.rules,
            Alert.raised_at,
            Alert.escalated_at,
            Alert.acknowledged_at,
            Timepoint.key,
            Response.instrument_id,
        )
        .join(Patient, Alert.patient_id == Patient.id)
        .join(Site, Patient.site_id == Site.id)
        .outerjoin(Response, Alert.response_id == Response.id)
        .outerjoin(Timepoint, Response.timepoint_id == Timepoint.id)
        .where(Alert.raised_at <= as_of)
        .order_by(_study_id_order(session), Alert.raised_at, Alert.id),
        filters,
        as_of,
    )
    last_pk, seq = None, 0
    for row in _conn(session).execute(stmt.execution_options(yield_per=batch)):
        patient = _patient(row, as_of)
        seq = seq + 1 if patient.pk == last_pk else 1
        last_pk = patient.pk
        level, initial, rules, raised_at, escalated_at, ack_at, key, inst = row[10:]
        if not filters.in_range(local_day(raised_at, patient.tz)):
            continue
        escalated = escalated_at is not None and escalated_at <= as_of
        yield AlertFacts(
            patient=patient,
            seq=seq,
            level=level if escalated else initial,
            initial_level=initial,
            rules=_rule_ids(rules),
            raised_at=raised_at,
            escalated=escalated,
            acknowledged_at=ack_at if ack_at is not None and ack_at <= as_of else None,
            timepoint_key=key,
            instrument_id=inst,
        )


def _rule_ids(rules: Iterable[Any] | None) -> tuple[str, ...]:
    """Rule ids only: stored entries may carry more (values, text) that must not leave the app."""
    out = []
    for entry in rules or ():
        rule_id = entry.get("id") if isinstance(entry, dict) else entry
        if isinstance(rule_id, str):
            out.append(rule_id)
    return tuple(out)
