"""Pure row builders: streams of records (records.py) -> row tuples in a schema's column order.

No database and no clock: the as-of time and the options come in as values. Rows are produced
lazily, one patient at a time, so the memory held is one patient's forms whatever the trial size.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import itertools
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from qol_app.export.builders.columns import WIDE_KEY_COLUMNS, bi, col
from qol_app.export.builders.records import (
    AlertFacts,
    EventFacts,
    Form,
    PatientFacts,
    PatientForms,
    day_of,
    local_day,
    relationship_code,
    timepoint_code,
)
from qol_app.export.dataset import MAX_LABEL_CHARS, Column, check_name
from qol_app.instruments import Registry
from qol_app.scheduling.status import is_late
from qol_app.scoring import change_from_baseline, is_deteriorated, scale_info

Row = tuple[Any, ...]

#: Short instrument prefixes for wide column names and SDTM test codes.
SHORT_NAMES = {
    "eortc_qlq_c30": "C30",
    "eortc_qlq_bn20": "BN20",
    "eortc_qlq_br23": "BR23",
    "eq5d5l": "EQ5D",
    "symptom_diary": "DIARY",
}
#: Preferred order of instruments in wide files and manifests; others follow alphabetically.
INSTRUMENT_ORDER = ("eortc_qlq_c30", "eortc_qlq_bn20", "eortc_qlq_br23", "eq5d5l", "symptom_diary")


@dataclasses.dataclass(frozen=True)
class BuildOptions:
    """Per-export settings of the pure builders.

    ``threshold``: points of deterioration on 0-100 scales (CLINICAL.md §4: 10 by default).
    ``baseline_key``: the timepoint key whose scores are the baseline.
    """

    as_of: dt.datetime
    iso_dates: bool = False
    threshold: float = 10.0
    baseline_key: str = "baseline"

    def __post_init__(self) -> None:
        if self.as_of.utcoffset() is None:
            raise ValueError("as_of must be timezone-aware")
        if self.threshold <= 0:
            raise ValueError("the deterioration threshold must be positive")


def ordered_instruments(ids: Iterable[str]) -> tuple[str, ...]:
    """Instrument ids in the preferred order (C30, BN20, BR23, EQ-5D, diary, then alphabetical)."""
    rank = {inst: n for n, inst in enumerate(INSTRUMENT_ORDER)}
    return tuple(sorted(set(ids), key=lambda i: (rank.get(i, len(rank)), i)))


def short_name(instrument_id: str) -> str:
    """C30, BN20, ... or the id in capitals for instruments without a short name."""
    return SHORT_NAMES.get(instrument_id) or re.sub(r"[^A-Za-z0-9]+", "_", instrument_id).strip("_").upper()


class Catalog:
    """What the builders need to know about instruments, looked up once per export."""

    def __init__(self, registry: Registry, threshold: float = 10.0) -> None:
        self.registry = registry
        self.threshold = threshold
        self._scales: dict[str, tuple[str, ...]] = {}
        self._comparable: dict[str, frozenset[str]] = {}
        self.compare = functools.lru_cache(maxsize=1 << 16)(self._compare)

    def version(self, instrument_id: str) -> str:
        return self.registry.get(instrument_id).version

    def scales(self, instrument_id: str) -> tuple[str, ...]:
        """Scale codes in the instrument's order."""
        if instrument_id not in self._scales:
            self._scales[instrument_id] = tuple(s.code for s in self.registry.get(instrument_id).scales)
        return self._scales[instrument_id]

    def comparable(self, instrument_id: str) -> frozenset[str]:
        """Scales on 0-100 where a points threshold for deterioration makes sense."""
        if instrument_id not in self._comparable:
            infos = scale_info(instrument_id, registry=self.registry)
            self._comparable[instrument_id] = frozenset(
                code for code, info in infos.items() if (info.score_min, info.score_max) == (0.0, 100.0)
            )
        return self._comparable[instrument_id]

    def higher_is_better(self, instrument_id: str, scale: str) -> bool:
        """The scale's direction (``ValueError`` for an unknown scale, as ``change_from_baseline``)."""
        return self.registry.get(instrument_id).scale(scale).higher_is_better

    def _compare(
        self, instrument_id: str, scale: str, baseline: float, value: float
    ) -> tuple[float | None, bool | None]:
        """(change, deteriorated) through qol_app.scoring.change; memoised (scores take few values)."""
        change = change_from_baseline(instrument_id, scale, baseline, value, registry=self.registry)
        if scale not in self.comparable(instrument_id):
            return change, None
        return change, is_deteriorated(instrument_id, scale, baseline, value, self.threshold, registry=self.registry)


# ---------------------------------------------------------------- shared per-form facts


@dataclasses.dataclass(frozen=True, slots=True)
class _FormFacts:
    code: str
    version: str
    target_date: dt.date | None
    target_day: int | None
    completed_at: dt.datetime | None
    completed_day: int | None
    days_from_rand: int
    window: str | None
    respondent: str | None
    relationship: str | None
    mode: str | None
    language: str | None
    revision: int | None
    anchor_day: int | None


def _facts(patient: PatientFacts, form: Form, catalog: Catalog, opts: BuildOptions) -> _FormFacts:
    tp, response = form.timepoint, form.response
    rand = patient.randomization_date
    first = response.first_submitted_at if response is not None and form.status == "completed" else None
    done_day = local_day(first, patient.tz)
    return _FormFacts(
        code=timepoint_code(tp.key, rand, opts.iso_dates),
        version=response.instrument_version if response is not None else catalog.version(form.instrument_id),
        target_date=tp.target_date if opts.iso_dates else None,
        target_day=day_of(tp.target_date, rand),
        completed_at=first if opts.iso_dates else None,
        completed_day=day_of(done_day, rand),
        days_from_rand=((done_day or tp.target_date) - rand).days,
        window=None if first is None else ("late" if is_late(tp, first) else "on_time"),
        respondent=response.respondent if response is not None else None,
        relationship=relationship_code(response.relationship) if response is not None else None,
        mode=response.mode if response is not None else None,
        language=response.language if response is not None else None,
        revision=response.revision if response is not None else None,
        anchor_day=day_of(tp.anchor_date, rand),
    )


def _scales_of(form: Form, catalog: Catalog) -> tuple[str, ...]:
    known = catalog.scales(form.instrument_id)
    extra = sorted(set(form.scores) - set(known))
    return known + tuple(extra) if extra else known


def baseline_scores(forms: Sequence[Form], baseline_key: str) -> dict[tuple[str, str], float]:
    """(instrument, scale) -> score at the completed baseline forms."""
    out: dict[tuple[str, str], float] = {}
    for form in forms:
        if form.timepoint.key == baseline_key and form.status == "completed":
            for scale, (value, _n, _v) in form.scores.items():
                if value is not None:
                    out[(form.instrument_id, scale)] = value
    return out


# ---------------------------------------------------------------- (a) scores, long


def long_rows(stream: Iterable[PatientForms], catalog: Catalog, opts: BuildOptions) -> Iterator[Row]:
    """qol_long rows (columns.LONG_COLUMNS): every scale of every expected form, scored or not."""
    compare = catalog.compare
    for pf in stream:
        patient = pf.patient
        baseline = baseline_scores(pf.forms, opts.baseline_key)
        for form in pf.forms:
            tp = form.timepoint
            if not tp.in_range:
                continue
            f = _facts(patient, form, catalog, opts)
            inst = form.instrument_id
            is_base = tp.key == opts.baseline_key
            head = (patient.study_id, patient.site, patient.arm, f.code, inst, f.version)
            scores = form.scores
            middle = (
                f.target_date,
                f.completed_at,
                form.status,
                f.respondent,
                f.mode,
                f.language,
                form.missing_reason,
                tp.rule_id,
                f.target_day,
                f.completed_day,
                f.days_from_rand,
                f.window,
                tp.anchor_kind,
                tp.anchor_number,
                f.anchor_day,
                f.revision,
                is_base,
            )
            known = catalog.scales(inst)
            for scale in _scales_of(form, catalog):
                value, n_items, version = scores.get(scale) or _UNSCORED
                base = baseline.get((inst, scale))
                if is_base or base is None or value is None or scale not in known:
                    yield head + (scale, value, n_items) + middle + (base, None, None, version)
                else:
                    yield head + (scale, value, n_items) + middle + (base, *compare(inst, scale, base, value), version)


_UNSCORED = (None, None, None)


# ---------------------------------------------------------------- (b) scores, wide


@dataclasses.dataclass(frozen=True)
class WideLayout:
    """Columns of qol_wide and, per instrument, (status column index, {scale: column index})."""

    columns: tuple[Column, ...]
    slots: dict[str, tuple[int, dict[str, int]]]


def wide_layout(instrument_ids: Sequence[str], catalog: Catalog) -> WideLayout:
    """Key columns, then per instrument <P>_STATUS and <P>_<SCALE> (names valid in SAS/Stata/SPSS)."""
    from qol_app.export.builders.columns import FORM_STATUS_LABELS

    columns = list(WIDE_KEY_COLUMNS)
    slots: dict[str, tuple[int, dict[str, int]]] = {}
    for inst in ordered_instruments(instrument_ids):
        instrument = catalog.registry.get(inst)
        prefix = short_name(inst)
        columns.append(
            col(
                check_name(f"{prefix}_STATUS"),
                "string",
                f"{prefix} form status",
                f"{prefix} 问卷状态",
                FORM_STATUS_LABELS,
            )
        )
        status_at = len(columns) - 1
        scale_at: dict[str, int] = {}
        for scale in instrument.scales:
            name = check_name(f"{prefix}_{re.sub(r'[^A-Za-z0-9]+', '_', scale.code).upper()}")
            label = {loc: f"{prefix} {scale.name[loc]}"[:MAX_LABEL_CHARS] for loc in ("en", "zh_Hans")}
            columns.append(Column(name, "float", label))
            scale_at[scale.code] = len(columns) - 1
        slots[inst] = (status_at, scale_at)
    return WideLayout(tuple(columns), slots)


def wide_rows(
    stream: Iterable[PatientForms], layout: WideLayout, catalog: Catalog, opts: BuildOptions
) -> Iterator[Row]:
    """qol_wide rows: one per patient x timepoint, instrument statuses and scores side by side."""
    width = len(layout.columns)
    for pf in stream:
        patient = pf.patient
        rand = patient.randomization_date
        for _pk, group in itertools.groupby(pf.forms, key=lambda f: f.timepoint.pk):
            forms = list(group)
            tp = forms[0].timepoint
            if not tp.in_range:
                continue
            row: list[Any] = [None] * width
            reason = next((f.missing_reason for f in forms if f.missing_reason), None)
            row[: len(WIDE_KEY_COLUMNS)] = (
                patient.study_id,
                patient.site,
                patient.arm,
                timepoint_code(tp.key, rand, opts.iso_dates),
                tp.rule_id,
                tp.kind,
                tp.target_date if opts.iso_dates else None,
                day_of(tp.target_date, rand),
                tp.anchor_kind,
                tp.anchor_number,
                day_of(tp.anchor_date, rand),
                reason,
            )
            for form in forms:
                slot = layout.slots.get(form.instrument_id)
                if slot is None:
                    continue
                status_at, scale_at = slot
                row[status_at] = form.status
                for scale, (value, _n, _v) in form.scores.items():
                    at = scale_at.get(scale)
                    if at is not None:
                        row[at] = value
            yield tuple(row)


# ---------------------------------------------------------------- (c) items, (d) expected forms


def item_rows(stream: Iterable[PatientForms], catalog: Catalog, opts: BuildOptions) -> Iterator[Row]:
    """items rows: every item of every form with a response, with an explicit skip code."""
    for pf in stream:
        patient = pf.patient
        for form in pf.forms:
            if not form.timepoint.in_range or form.response is None:
                continue
            instrument = catalog.registry.get(form.instrument_id)
            head = (
                patient.study_id,
                patient.site,
                patient.arm,
                timepoint_code(form.timepoint.key, patient.randomization_date, opts.iso_dates),
                form.instrument_id,
                form.response.instrument_version,
            )
            tail = (form.status, form.response.revision)
            answers = form.answers
            for number, item in enumerate(instrument.items, start=1):
                answer = answers.get(item.id)
                if answer is None:
                    yield head + (item.id, number, None, "not_presented") + tail
                elif answer[1]:
                    yield head + (item.id, number, None, "skipped") + tail
                else:
                    yield head + (item.id, number, answer[0], "answered") + tail
            for item_id in sorted(set(answers) - set(instrument.item_ids)):  # from another version
                value, skipped = answers[item_id]
                yield head + (item_id, None, None if skipped else value, "skipped" if skipped else "answered") + tail


def form_rows(stream: Iterable[PatientForms], catalog: Catalog, opts: BuildOptions) -> Iterator[Row]:
    """forms rows (columns.FORMS_COLUMNS): every expected timepoint x instrument."""
    for pf in stream:
        patient = pf.patient
        rand = patient.randomization_date
        for form in pf.forms:
            tp = form.timepoint
            if not tp.in_range:
                continue
            f = _facts(patient, form, catalog, opts)
            yield (
                patient.study_id,
                patient.site,
                patient.arm,
                f.code,
                tp.rule_id,
                tp.kind,
                form.instrument_id,
                f.version,
                f.target_date,
                f.target_day,
                day_of(tp.window_start, rand),
                day_of(tp.window_end, rand),
                tp.anchor_kind,
                tp.anchor_number,
                f.anchor_day,
                form.status,
                form.missing_reason,
                f.completed_at,
                f.completed_day,
                f.window,
                f.respondent,
                f.relationship,
                f.mode,
                f.language,
                f.revision,
            )


def item_code_rows(instrument_ids: Sequence[str], catalog: Catalog) -> Iterator[Row]:
    """item_codes rows: one per option of each choice item, one per number/VAS item."""
    for inst in ordered_instruments(instrument_ids):
        instrument = catalog.registry.get(inst)
        for number, item in enumerate(instrument.items, start=1):
            base = (inst, instrument.version, item.id, number, item.kind)
            if item.kind == "choice":
                for option in item.options:
                    yield base + (option.code, option.label["en"], option.label["zh_Hans"], None, None, item.unit)
            else:
                yield base + (None, None, None, item.min, item.max, item.unit)


# ---------------------------------------------------------------- (e) patients, events, (f) alerts


def patient_rows(stream: Iterable[tuple[PatientFacts, Sequence[EventFacts]]], opts: BuildOptions) -> Iterator[Row]:
    """patients rows (columns.PATIENT_COLUMNS)."""
    for patient, events in stream:
        rand = patient.randomization_date
        end_day = day_of(patient.status_date, rand)
        progressions = [e.date for e in events if e.kind == "progression"]
        eot = [e.date for e in events if e.kind == "end_of_treatment"]
        yield (
            patient.study_id,
            patient.site,
            patient.arm,
            1,
            rand if opts.iso_dates else None,
            patient.language,
            patient.status,
            patient.status_date if opts.iso_dates else None,
            end_day if patient.status == "died" else None,
            end_day if patient.status == "withdrawn" else None,
            end_day if patient.status == "lost" else None,
            day_of(min(progressions), rand) if progressions else None,
            len(progressions),
            day_of(min(eot), rand) if eot else None,
            sum(e.kind == "systemic_cycle" for e in events),
            sum(e.kind == "intrathecal_dose" for e in events),
        )


def event_rows(stream: Iterable[tuple[PatientFacts, Sequence[EventFacts]]], opts: BuildOptions) -> Iterator[Row]:
    """events rows (columns.EVENT_COLUMNS), in date order per patient."""
    for patient, events in stream:
        for event in events:
            yield (
                patient.study_id,
                patient.site,
                patient.arm,
                event.kind,
                event.number,
                day_of(event.date, patient.randomization_date),
                event.date if opts.iso_dates else None,
                event.cycle_length_days,
            )


def alert_rows(stream: Iterable[AlertFacts], opts: BuildOptions) -> Iterator[Row]:
    """alerts rows (columns.ALERT_COLUMNS); no free text."""
    for alert in stream:
        patient = alert.patient
        rand = patient.randomization_date
        ack = alert.acknowledged_at
        hours = None if ack is None else (ack - alert.raised_at).total_seconds() / 3600
        yield (
            patient.study_id,
            patient.site,
            patient.arm,
            alert.seq,
            None if alert.timepoint_key is None else timepoint_code(alert.timepoint_key, rand, opts.iso_dates),
            alert.instrument_id,
            alert.level,
            alert.initial_level,
            ";".join(alert.rules) or None,
            day_of(local_day(alert.raised_at, patient.tz), rand),
            alert.raised_at if opts.iso_dates else None,
            alert.escalated,
            ack is not None,
            hours,
        )


def counted(rows: Iterable[Row], every: int, report: Callable[[int, bool], None] | None) -> Iterator[Row]:
    """Pass rows through, calling ``report(n, False)`` every ``every`` rows and ``report(n, True)`` at the end."""
    if report is None:
        yield from rows
        return
    n = 0
    for n, row in enumerate(rows, start=1):
        if n % every == 0:
            report(n, False)
        yield row
    report(n, True)


def counted_batches(batches: Iterable[Any], every: int, report: Callable[[int, bool], None] | None) -> Iterator[Any]:
    """``counted`` for record batches: the same calls, at the same row counts."""
    if report is None:
        yield from batches
        return
    n = 0
    for batch in batches:
        for mark in range(n // every * every + every, n + batch.num_rows + 1, every):
            report(mark, False)
        n += batch.num_rows
        yield batch
    report(n, True)


__all__ = [
    "BuildOptions",
    "Catalog",
    "WideLayout",
    "alert_rows",
    "baseline_scores",
    "bi",
    "counted",
    "counted_batches",
    "event_rows",
    "form_rows",
    "item_code_rows",
    "item_rows",
    "long_rows",
    "ordered_instruments",
    "patient_rows",
    "short_name",
    "wide_layout",
    "wide_rows",
]
