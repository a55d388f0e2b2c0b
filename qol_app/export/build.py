"""The one builder: stored rows (``source``) -> the facts of the as-of time (``asof``) -> every
export dataset as an Arrow table, each built once per export and handed to every writer.

    trial = load(Source(session, spec.filters, spec.instruments), spec)
    long = qol_long(trial)                # a schema.Dataset

``load`` reads the database once (patients, timepoints, responses, events, alerts; scores and
answers as Arrow tables) and keeps only what counted at the as-of time. The dataset functions
are pure over that: per-form values are computed in Python (a form is the unit of every rule),
per-scale and per-item rows are the form's values repeated (``take``) beside the scores and
answers found by key (a sorted search), and what derives from a value alone (change from
baseline, a QS result, a FHIR item) is computed once per distinct value; no clock, no database.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import itertools
import re
import unicodedata
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from qol_app.export import asof
from qol_app.export import columns as cols
from qol_app.export.asof import AlertFacts, EventFacts, Form, PatientFacts, local_day
from qol_app.export.schema import (
    LOCALES,
    MAX_LABEL_CHARS,
    ROW_BATCH,
    XPT_LABEL,
    Code,
    Column,
    Dataset,
    LabelText,
    Spool,
    bi,
    columns_table,
    table_of,
)
from qol_app.export.source import SCORE_SCHEMA, ExportFilters, Source
from qol_app.instruments import Registry, get_registry
from qol_app.scheduling.forms import COMPLIANCE_RECEIVED_RULE, answered_items, check_rule, is_received
from qol_app.scheduling.status import is_late
from qol_app.scheduling.timewindows import local_day_start, zone
from qol_app.scoring import change_from_baseline, is_deteriorated, scale_info, score_detail

#: Short instrument prefixes for wide column names; XPT prefixes are shorter still.
SHORT_NAMES = {
    "eortc_qlq_c30": "C30",
    "eortc_qlq_bn20": "BN20",
    "eortc_qlq_br23": "BR23",
    "eq5d5l": "EQ5D",
    "symptom_diary": "DIARY",
}
XPT_PREFIXES = {
    "eortc_qlq_c30": "C",
    "eortc_qlq_bn20": "BN",
    "eortc_qlq_br23": "BR",
    "eq5d5l": "EQ",
    "symptom_diary": "DY",
}
#: Preferred order of instruments in wide files and manifests; others follow alphabetically.
INSTRUMENT_ORDER = ("eortc_qlq_c30", "eortc_qlq_bn20", "eortc_qlq_br23", "eq5d5l", "symptom_diary")

_ISO_DAY = re.compile(r"(\d{4})-(\d{2})-(\d{2})")
_ASCII = str.maketrans({"–": "-", "—": "-", "’": "'", "‘": "'", "“": '"', "”": '"', "°": "", "×": "x"})


def ordered_instruments(ids: Iterable[str]) -> tuple[str, ...]:
    """Instrument ids in the preferred order (C30, BN20, BR23, EQ-5D, diary, then alphabetical)."""
    rank = {inst: n for n, inst in enumerate(INSTRUMENT_ORDER)}
    return tuple(sorted(set(ids), key=lambda i: (rank.get(i, len(rank)), i)))


def short_name(instrument_id: str) -> str:
    """C30, BN20, ... or the id in capitals for instruments without a short name."""
    return SHORT_NAMES.get(instrument_id) or re.sub(r"[^A-Za-z0-9]+", "_", instrument_id).strip("_").upper()


def ascii_text(text: str) -> str:
    """Text for SAS transport (ASCII only): dashes and quotes folded, accents dropped, spaces squeezed."""
    folded = unicodedata.normalize("NFKD", text.translate(_ASCII))
    return " ".join(folded.encode("ascii", "ignore").decode().split())


def fit_words(text: str, limit: int) -> str:
    """``text`` in at most ``limit`` characters, shortened at a word boundary (never mid-word)."""
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    words = text[: limit + 1].split(" ")
    out = " ".join(words[:-1]).rstrip(" ,;:-/(")
    if not out:
        raise ValueError(f"no word boundary to shorten {text!r} to {limit} characters")
    return out


def study_day(day: dt.date, reference: dt.date) -> int:
    """SDTM study day: reference date is day 1, the day before is -1; there is no day 0."""
    delta = (day - reference).days
    return delta + 1 if delta >= 0 else delta


def day_of(day: dt.date | None, randomization: dt.date) -> int | None:
    return None if day is None else study_day(day, randomization)


def timepoint_code(key: str, randomization: dt.date, iso_dates: bool) -> str:
    """The timepoint key with calendar dates replaced by study days (diary-2026-03-14 -> diary-d45)."""
    if iso_dates:
        return key

    def replace(match: re.Match[str]) -> str:
        try:
            day = dt.date(int(match[1]), int(match[2]), int(match[3]))
        except ValueError:
            return "d"
        return f"d{study_day(day, randomization)}"

    return _ISO_DAY.sub(replace, key)


def _seconds(moment: dt.datetime | None) -> dt.datetime | None:
    return None if moment is None else moment.astimezone(dt.UTC).replace(microsecond=0)


# ---------------------------------------------------------------- what to build


@dataclasses.dataclass(frozen=True)
class ExportSpec:
    """What to export and how: filters, as-of time, ISO dates (already authorised), threshold
    (points of deterioration on 0-100 scales, CLINICAL.md §4) and the baseline timepoint key."""

    filters: ExportFilters
    as_of: dt.datetime
    iso_dates: bool = False
    threshold: float = 10.0
    baseline_key: str = "baseline"
    registry: Registry | None = None
    received_rule: str = COMPLIANCE_RECEIVED_RULE

    def __post_init__(self) -> None:
        if self.as_of.utcoffset() is None:
            raise ValueError("as_of must be timezone-aware")
        check_rule(self.received_rule)
        if self.threshold <= 0:
            raise ValueError("the deterioration threshold must be positive")
        unknown = sorted(set(self.filters.instruments) - set(self.reg))
        if unknown:
            raise ValueError(f"unknown instruments: {', '.join(unknown)}")

    @property
    def reg(self) -> Registry:
        return self.registry or get_registry()

    @property
    def instruments(self) -> tuple[str, ...]:
        """Selected instruments (all registered ones when the filter is empty), in export order."""
        return ordered_instruments(self.filters.instruments or tuple(self.reg))


class Catalog:
    """What the builders need to know about instruments, looked up once per export."""

    def __init__(self, registry: Registry, threshold: float = 10.0) -> None:
        self.registry = registry
        self.threshold = threshold
        self.compare = functools.lru_cache(maxsize=1 << 16)(self._compare)

    def version(self, instrument_id: str) -> str:
        return self.registry.get(instrument_id).version

    @functools.cache  # noqa: B019 - one catalog per export
    def scales(self, instrument_id: str) -> tuple[str, ...]:
        """Scale codes in the instrument's order."""
        return tuple(s.code for s in self.registry.get(instrument_id).scales)

    @functools.cache  # noqa: B019
    def items(self, instrument_id: str) -> tuple[str, ...]:
        return self.registry.get(instrument_id).item_ids

    @functools.cache  # noqa: B019
    def comparable(self, instrument_id: str) -> frozenset[str]:
        """Scales on 0-100 where a points threshold for deterioration makes sense."""
        infos = scale_info(instrument_id, registry=self.registry)
        return frozenset(code for code, info in infos.items() if (info.score_min, info.score_max) == (0.0, 100.0))

    def _compare(
        self, instrument_id: str, scale: str, baseline: float, value: float
    ) -> tuple[float | None, bool | None]:
        """(change, deteriorated) through qol_app.scoring.change; memoised (scores take few values)."""
        change = change_from_baseline(instrument_id, scale, baseline, value, registry=self.registry)
        if scale not in self.comparable(instrument_id):
            return change, None
        return change, is_deteriorated(instrument_id, scale, baseline, value, self.threshold, registry=self.registry)


# ---------------------------------------------------------------- the trial at the as-of time


@dataclasses.dataclass
class Trial:
    """Everything an export shows, as of its as-of time, read once.

    ``forms``: every expected form in output order (patients by study id; timepoints by target
    date, key, id; instruments in the timepoint's order), the baseline outside the date range
    included with ``in_range=False``. ``scores``: the stored scores of the current submitted
    revisions. ``answers``: the answers of the current revisions that counted then.
    """

    spec: ExportSpec
    catalog: Catalog
    patients: list[PatientFacts]
    forms: list[Form]
    events: dict[int, list[EventFacts]]
    alerts: list[AlertFacts]
    stored_scores: pa.Table | None
    read_answers: Callable[[], pa.Table] = dataclasses.field(repr=False)

    @property
    def scores(self) -> pa.Table:
        """The scores (qol_long and qol_wide show them); an error once dropped (:meth:`drop_scores`)."""
        if self.stored_scores is None:
            raise RuntimeError("the scores were dropped once the datasets that show them were built")
        return self.stored_scores

    def drop_scores(self) -> None:
        """Stop holding the scores (once qol_long and qol_wide are built: nothing else shows them)."""
        self.stored_scores = None

    @functools.cached_property
    def answers(self) -> pa.Table:
        """Read on first use (the long and wide files do not need them)."""
        return self.read_answers()

    def drop_answers(self) -> None:
        """Stop holding the answers (once :func:`item_rows` has taken what the datasets need)."""
        self.__dict__.pop("answers", None)

    def in_range(self) -> list[Form]:
        return [f for f in self.forms if f.timepoint.in_range]


def load(source: Source, spec: ExportSpec) -> Trial:
    """Read the selection and keep what counted at ``spec.as_of`` (rules: ``asof``)."""
    as_of, filters = spec.as_of, spec.filters
    wanted = set(spec.instruments)
    statuses = source.status_history()
    corrected = source.patient_history()
    patients = [
        p
        for p in (
            asof.patient_at(row, as_of, statuses.get(row.pk, ()), corrected.get(row.pk, ()))
            for row in source.patients()
        )
        if p is not None and (not filters.arms or p.arm in filters.arms)  # the arm of then (Source)
    ]
    timepoints = source.timepoints()
    changes = source.timepoint_history()
    revisions = source.responses()
    answered = source.answer_summary()
    forms: list[Form] = []
    for patient in patients:
        rows = timepoints.get(patient.pk, ())
        for tp in asof.timepoints_at(rows, as_of, changes, filters.in_range, spec.baseline_key):
            for inst in tp.instruments:
                if inst not in wanted:
                    continue
                response, started = asof.response_at(revisions.get((tp.pk, inst), ()), as_of)
                status = asof.form_status(
                    tp, as_of, submitted=response is not None and response.submitted, started=started
                )
                if status is not None:
                    n, first = answered.get(response.pk, (0, None)) if response is not None else (0, None)
                    n = answered_items(n, first, submitted=response is not None and response.submitted, as_of=as_of)
                    forms.append(Form(patient, tp, inst, status, response, is_received(status, n, spec.received_rule)))
    by_pk = {p.pk: p for p in patients}
    moves = source.event_history()
    events = {pk: asof.events_at(rows, as_of, moves) for pk, rows in source.events().items() if pk in by_pk}
    alerts: list[AlertFacts] = []
    for pk, alert_rows in source.alerts().items():
        if pk in by_pk:
            for seq, alert_row in enumerate(alert_rows, start=1):
                alert = asof.alert_at(alert_row, by_pk[pk], seq, as_of)
                if alert is not None and filters.in_range(local_day(alert.raised_at, by_pk[pk].tz)):
                    alerts.append(alert)
    alerts.sort(key=lambda a: (a.patient.study_id, a.seq))

    submitted = [f.response.pk for f in forms if f.response is not None and f.response.submitted]
    scores = source.scores(keep=pa.array(submitted, pa.int64()))
    scores = pa.concat_tables([scores, unconfirmed_scores(source, forms, spec)])

    def answers() -> pa.Table:
        current = {f.response.pk: f.response for f in forms if f.response is not None}
        table = source.answers(keep=pa.array(list(current), pa.int64()))
        unfinished = pa.array([pk for pk, r in current.items() if not r.submitted], pa.int64())
        if len(unfinished):
            check = pc.is_in(table["response_id"], value_set=unfinished)
            rows = table.filter(check)
            times = source.answer_times(unfinished.to_pylist())
            keep = np.ones(len(table), bool)  # every answer of a submitted response counts
            keep[np.flatnonzero(check.to_numpy(zero_copy_only=False))] = [
                asof.answer_counts(current[pk], times.get((pk, item), as_of), as_of)
                for pk, item in zip(rows["response_id"].to_pylist(), rows["item_id"].to_pylist())
            ]
            table = table.filter(pa.array(keep, pa.bool_()))
        return table

    return Trial(spec, Catalog(spec.reg, spec.threshold), patients, forms, events, alerts, scores, answers)


def unconfirmed_scores(source: Source, forms: Sequence[Form], spec: ExportSpec) -> pa.Table:
    """Scores of partial forms (saved, never sent) from the answers saved by the as-of time, where
    the half rule allows (CLINICAL.md §3: unsent answers are data); ``SCORE_SCHEMA`` rows, flagged
    ``confirmed = false`` by the datasets (see :func:`is_confirmed`)."""
    partial = {f.response.pk: f for f in forms if f.status == "partial" and f.response is not None}
    rows: list[tuple[Any, ...]] = []
    if partial:
        registry = spec.reg
        for pk, answers in sorted(source.answers_of(partial).items()):
            instrument = registry.get(partial[pk].instrument_id)
            known = set(instrument.item_ids)
            given: dict[str, int | float | None] = {}
            for item, value, skipped, at in answers:
                if item in known and not skipped and value is not None and asof.known(at, spec.as_of):
                    kind = instrument.item(item).kind
                    given[item] = int(value) if kind in ("choice", "vas") else float(value)
            try:
                detail = score_detail(instrument.id, given, registry=registry)
            except ValueError:  # a stored value outside the form's codes: left unscored
                continue
            rows.extend(
                (pk, scale, value, detail.n_answered[scale], detail.scoring_version)
                for scale, value in detail.scores.items()
            )
    return pa.table(
        [pa.array(c, f.type) for c, f in zip(zip(*rows), SCORE_SCHEMA)]
        if rows
        else [pa.array([], f.type) for f in SCORE_SCHEMA],
        schema=SCORE_SCHEMA,
    )


def is_confirmed(form: Form) -> bool | None:
    """True for the scores of a sent form, False for those of a partial one (saved answers only),
    None when the form has no scores."""
    if form.response is None:
        return None
    if form.response.submitted:
        return True
    return False if form.status == "partial" else None


def has_scores(form: Form) -> bool:
    return is_confirmed(form) is not None


# ---------------------------------------------------------------- per-form facts


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


def relationship_code(value: str | None) -> str | None:
    """A known relationship code, ``other`` for anything else (never free text), None if unset."""
    if value is None:
        return None
    return value if value in cols.RELATIONSHIP_LABELS else "other"


def form_facts(form: Form, trial: Trial) -> _FormFacts:
    patient, tp, response = form.patient, form.timepoint, form.response
    iso = trial.spec.iso_dates
    rand = patient.randomization_date
    first = response.first_submitted_at if response is not None and form.status == "completed" else None
    done_day = local_day(first, patient.tz)
    moment = first  # on time / late and the study day: when the patient completed it
    if first is not None and response is not None and response.completed_on is not None:
        done_day = response.completed_on  # paper/interview: the date on the form, not the transcription
        moment = local_day_start(done_day, zone(patient.tz))
    proxy = response is not None and response.respondent == "proxy"
    return _FormFacts(
        code=timepoint_code(tp.key, rand, iso),
        version=response.instrument_version if response is not None else trial.catalog.version(form.instrument_id),
        target_date=tp.target_date if iso else None,
        target_day=day_of(tp.target_date, rand),
        completed_at=_seconds(first) if iso else None,
        completed_day=day_of(done_day, rand),
        days_from_rand=((done_day or tp.target_date) - rand).days,
        window=None if moment is None else ("late" if is_late(tp, moment) else "on_time"),
        respondent=response.respondent if response is not None else None,
        relationship=relationship_code(response.relationship) if proxy and response is not None else None,
        mode=response.mode if response is not None else None,
        language=response.language if response is not None else None,
        revision=response.revision if response is not None else None,
        anchor_day=day_of(tp.anchor_date, rand),
    )


def _dataset(name: str, en: str, zh: str, columns: Sequence[Column], table: pa.Table, **kw: Any) -> Dataset:
    return Dataset(name, bi(en, zh), tuple(columns), table, **kw)


def labelled(columns: Sequence[Column], registry: Registry) -> tuple[Column, ...]:
    """``columns`` with every registered instrument's name and scale names as code labels (all of
    them, whatever the filters, so that numeric codes in Stata files are the same in every export)."""
    instruments: dict[str, dict[str, str]] = {}
    scales: dict[str, dict[str, str]] = {}
    for inst in ordered_instruments(registry):
        instrument = registry.get(inst)
        instruments[inst] = {loc: fit_words(instrument.name[loc], MAX_LABEL_CHARS) for loc in LOCALES}
        for scale in instrument.scales:
            names = scales.setdefault(scale.code, {loc: scale.name[loc] for loc in LOCALES})
            if names["en"] != scale.name["en"]:  # the same code in two instruments: say both
                for loc in LOCALES:
                    names[loc] = fit_words(f"{names[loc]} / {scale.name[loc]}", MAX_LABEL_CHARS)
    codes: dict[str, Mapping[Code, LabelText]] = {  # re-keyed as codes (Mapping keys are invariant)
        "instrument": {code: names for code, names in instruments.items()},
        "scale": {code: names for code, names in scales.items()},
    }
    return tuple(dataclasses.replace(c, value_labels=codes[c.name]) if c.name in codes else c for c in columns)


def _find(keys: np.ndarray, sorted_keys: np.ndarray, order: np.ndarray) -> pa.Array:
    """Position of each key's first occurrence in the unsorted keys (null where absent), given
    those keys sorted (stably) and the sorting order: what ``pc.index_in`` gives."""
    if not len(sorted_keys):
        return pa.nulls(len(keys), pa.int32())
    pos = np.searchsorted(sorted_keys, keys)
    np.minimum(pos, len(sorted_keys) - 1, out=pos)
    found = sorted_keys[pos] == keys
    at = order.take(pos).astype(np.int32, copy=False)  # arrays over every item row are large
    del pos
    return pa.array(at, pa.int32(), mask=~found)


DENSE_KEYS = 1 << 22
"""Key ranges up to this are counted rather than sorted by :func:`distinct_keys`."""


def distinct_keys(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """What ``np.unique(keys, return_inverse=True)`` gives for non-negative integer keys: the
    distinct keys ascending and, per key, its position among them. Keys below ``DENSE_KEYS``
    (a few thousand distinct (item, answer) pairs among millions of rows) are counted in one
    pass instead of sorted, so no sorted copy or sort order of the keys is made."""
    if not len(keys) or int(keys.max()) >= DENSE_KEYS or int(keys.min()) < 0:
        return np.unique(keys, return_inverse=True)
    seen = np.zeros(int(keys.max()) + 1, bool)
    seen[keys] = True
    rank = np.cumsum(seen, dtype=np.int32) - 1
    return np.flatnonzero(seen).astype(keys.dtype), rank[keys]


# ---------------------------------------------------------------- (a) scores, long


FORMS_PER_PART = 5_000
"""Forms whose rows a large dataset builds at once (a part; parts are spooled or concatenated)."""


def _parts(count: int, size: int = FORMS_PER_PART) -> list[tuple[int, int]]:
    return [(start, min(count, start + size)) for start in range(0, count, size)] or [(0, 0)]


def _assemble(columns: Sequence[Column], parts: Iterable[pa.Table], spool: bool) -> tuple[pa.Table, Spool | None]:
    """The parts as one table, or (``spool``) appended to a Spool with an empty table beside it."""
    schema = pa.schema([(c.name, c.arrow_type) for c in columns])
    if not spool:
        tables = list(parts)
        return (pa.concat_tables(tables) if len(tables) > 1 else tables[0]), None
    sink = Spool(columns)
    for part in parts:
        sink.append(part)
    return schema.empty_table(), sink.finish()


def qol_long(trial: Trial, *, spool: bool = False) -> Dataset:
    """qol_long: every scale of every expected form, scored or not (built a part of the forms at a
    time; ``spool`` keeps the rows in a temporary file instead of memory).

    Per form: its own values (``form_facts``) and its scales, the instrument's in order, then any
    other scale stored for it, sorted. Per scale row, column-wise: the stored score found by
    (response, scale), the baseline score by (patient, instrument, scale), and the change and
    deterioration computed once per distinct (instrument, scale, baseline, score)."""
    catalog, spec = trial.catalog, trial.spec
    forms = trial.in_range()
    scores = trial.scores
    names = sorted(set(pc.unique(scores["scale"]).to_pylist()) | _all_scales(catalog))
    scale_ids = {code: n for n, code in enumerate(names)}
    width = len(names) + 1
    score_codes = pc.index_in(scores["scale"], value_set=pa.array(names, pa.string())).cast(pa.int64())
    score_keys = pc.add(pc.multiply(scores["response_id"], width), score_codes).to_numpy()
    order = np.argsort(score_keys, kind="stable")  # searched per part (a hash set per part costs more)
    sorted_keys = score_keys[order]
    instruments = ordered_instruments(catalog.registry)
    inst_number = {inst: n for n, inst in enumerate(instruments)}

    scored = [f for f in forms if f.response is not None and has_scores(f)]
    extras: dict[int, list[str]] = {}
    if len(scores) and scored:
        scored_pks = pa.array([f.response.pk for f in scored], pa.int64())  # type: ignore[union-attr]
        scored_inst = pa.array([inst_number[f.instrument_id] for f in scored], pa.int64())
        known_keys = pa.array(
            [inst_number[inst] * width + scale_ids[code] for inst in instruments for code in catalog.scales(inst)],
            pa.int64(),
        )
        of_form = pc.index_in(scores["response_id"], value_set=scored_pks)
        own = pc.is_in(pc.add(pc.multiply(scored_inst.take(of_form), width), score_codes), value_set=known_keys)
        rest = scores.filter(pc.and_(pc.is_valid(of_form), pc.invert(own)))  # scales of another version
        for pk, scale in zip(rest["response_id"].to_pylist(), rest["scale"].to_pylist()):
            extras.setdefault(pk, []).append(scale)

    baseline: dict[tuple[int, str], dict[str, float]] = {}
    base_pks = {
        f.response.pk: f
        for f in trial.forms
        if f.timepoint.key == spec.baseline_key and f.status == "completed" and f.response is not None
    }
    if base_pks:
        rows = scores.filter(pc.is_in(scores["response_id"], value_set=pa.array(list(base_pks), pa.int64())))
        for pk, scale, value in zip(*(rows[c].to_pylist() for c in ("response_id", "scale", "value"))):
            if value is not None:
                form = base_pks[pk]
                baseline.setdefault((form.patient.pk, form.instrument_id), {})[scale] = value
    base_index = {
        ((patient * len(instruments) + inst_number[inst]) * width + scale_ids[code]): value
        for (patient, inst), by_scale in baseline.items()
        for code, value in by_scale.items()
    }
    base_order = np.array(sorted(base_index), np.int64)
    base_values = pa.array([base_index[k] for k in base_order.tolist()], pa.float64())
    shared = {inst: np.array([scale_ids[code] for code in catalog.scales(inst)], np.int64) for inst in instruments}
    names_array = pa.array(names, pa.string())
    form_columns = [c.name for c in cols.LONG_COLUMNS if c.name not in _LONG_ROW_COLUMNS]
    head_columns = [c for c in cols.LONG_COLUMNS if c.name in form_columns]
    columns = labelled(cols.LONG_COLUMNS, catalog.registry)

    def part(first: int, stop: int) -> pa.Table:
        head: list[tuple[Any, ...]] = []
        segments: list[np.ndarray] = []
        known = np.empty(stop - first, np.int64)  # the instrument's own scales (the rest: extras)
        per_form = np.empty((stop - first, 4), np.int64)  # response pk (-1: no scores), patient, instrument, baseline?
        for n in range(first, stop):
            form = forms[n]
            f = form_facts(form, trial)
            tp, inst, patient = form.timepoint, form.instrument_id, form.patient
            is_base = tp.key == spec.baseline_key
            head.append(
                (patient.study_id, patient.site, patient.arm, f.code, inst, f.version)
                + (f.target_date, f.completed_at, form.status, f.respondent, f.mode, f.language, form.missing_reason)
                + (tp.rule_id, f.target_day, f.completed_day, f.days_from_rand, f.window, tp.anchor_kind)
                + (tp.anchor_number, f.anchor_day, f.revision, is_base, form.received, is_confirmed(form))
            )
            response = form.response
            pk = response.pk if response is not None and has_scores(form) else -1
            segment = shared[inst]
            known[n - first] = len(segment)
            if pk in extras:
                more = np.array([scale_ids[code] for code in sorted(extras[pk])], np.int64)
                segment = np.concatenate([segment, more])
            segments.append(segment)
            per_form[n - first] = (pk, patient.pk, inst_number[inst], is_base)
        lengths = np.array([len(seg) for seg in segments], np.int64)
        codes = np.concatenate(segments) if segments else np.empty(0, np.int64)
        form_at = np.repeat(np.arange(stop - first, dtype=np.int64), lengths)
        extra = np.arange(len(codes)) - np.repeat(np.cumsum(lengths) - lengths, lengths) >= known[form_at]
        pk, patient, inst, is_base = (per_form[form_at, k] for k in range(4))
        at = _find(np.where(pk >= 0, pk * width + codes, -1), sorted_keys, order)
        base_at = _find((patient * len(instruments) + inst) * width + codes, base_order, np.arange(len(base_order)))
        bases = base_values.take(base_at)
        values = scores["value"].take(at) if len(scores) else pa.nulls(len(codes), pa.float64())
        compare = ~is_base.astype(bool) & ~extra & pc.is_valid(base_at).to_numpy(zero_copy_only=False)
        compare &= pc.is_valid(values).to_numpy(zero_copy_only=False)
        changes, worse = _compared(catalog, instruments, names, inst, codes, bases, values, compare)
        repeated = table_of(head_columns, head).take(pa.array(form_at, pa.int64()))
        data = {name: repeated[name] for name in form_columns} | {
            "scale": names_array.take(pa.array(codes, pa.int64())),
            "score": values,
            "n_items": scores["n_items"].take(at) if len(scores) else pa.nulls(len(codes), pa.int64()),
            "baseline_score": bases,
            "change": changes,
            "deteriorated": worse,
            "scoring_version": scores["scoring_version"].take(at) if len(scores) else pa.nulls(len(codes), pa.string()),
        }
        return columns_table(columns, data)

    table, sink = _assemble(columns, (part(a, b) for a, b in _parts(len(forms))), spool)
    return _dataset(
        "qol_long",
        "QoL scores, one row per patient, timepoint and scale",
        "生活质量得分（每位患者、时间点、维度一行）",
        columns,
        table,
        xpt="QOLLONG",
        xpt_label="QoL scores, long (one row per scale)",
        spool=sink,
    )


def _compared(
    catalog: Catalog,
    instruments: Sequence[str],
    names: Sequence[str],
    inst: np.ndarray,
    codes: np.ndarray,
    bases: pa.Array,
    values: pa.Array | pa.ChunkedArray,
    compare: np.ndarray,
) -> tuple[pa.Array, pa.Array]:
    """(change, deteriorated) of the rows where ``compare`` holds (null elsewhere): the rule of
    ``Catalog.compare`` applied once per distinct (instrument, scale, baseline, score)."""
    rows = np.flatnonzero(compare)
    if not len(rows):
        return pa.nulls(len(compare), pa.float64()), pa.nulls(len(compare), pa.bool_())
    picked = pa.array(rows, pa.int64())
    base = pc.dictionary_encode(bases.take(picked))
    value = pc.dictionary_encode(
        pc.take(values, picked).combine_chunks() if isinstance(values, pa.ChunkedArray) else values.take(picked)
    )
    n_base, n_value = len(base.dictionary), len(value.dictionary)
    keys = ((inst[rows] * len(names) + codes[rows]) * n_base + base.indices.to_numpy()) * n_value
    keys += value.indices.to_numpy()
    unique, inverse = np.unique(keys, return_inverse=True)
    base_values, score_values = base.dictionary.to_pylist(), value.dictionary.to_pylist()
    results = []
    for key in unique.tolist():
        rest, v = divmod(key, n_value)
        rest, b = divmod(rest, n_base)
        i, code = divmod(rest, len(names))
        results.append(catalog.compare(instruments[i], names[code], base_values[b], score_values[v]))
    change = np.full(len(compare), np.nan)
    change[rows] = np.array([r[0] if r[0] is not None else np.nan for r in results], np.float64)[inverse]
    flags = [r[1] for r in results]
    worse = np.zeros(len(compare), np.int8)
    worse_known = np.zeros(len(compare), bool)
    worse[rows] = np.array([bool(f) for f in flags], np.int8)[inverse]
    worse_known[rows] = np.array([f is not None for f in flags], bool)[inverse]
    changed = np.zeros(len(compare), bool)
    changed[rows] = np.array([r[0] is not None for r in results], bool)[inverse]
    return (
        pa.array(change, pa.float64(), mask=~changed),
        pa.array(worse.astype(bool), pa.bool_(), mask=~worse_known),
    )


_LONG_ROW_COLUMNS = ("scale", "score", "n_items", "baseline_score", "change", "deteriorated", "scoring_version")


def _all_scales(catalog: Catalog) -> set[str]:
    return {code for inst in catalog.registry for code in catalog.scales(inst)}


# ---------------------------------------------------------------- (b) scores, wide


@dataclasses.dataclass(frozen=True)
class WideLayout:
    """Columns of qol_wide and, per instrument, (status column index, {scale: column index})."""

    columns: tuple[Column, ...]
    slots: dict[str, tuple[int, dict[str, int]]]


def wide_layout(instrument_ids: Sequence[str], catalog: Catalog) -> WideLayout:
    """Key columns, then per instrument <P>_STATUS and <P>_<SCALE>. XPT names: a short prefix
    (C, BN, BR, EQ, DY) and the scale code, at most 8 characters (``STAT`` for the status)."""
    columns = list(cols.WIDE_KEY_COLUMNS)
    slots: dict[str, tuple[int, dict[str, int]]] = {}
    for inst in ordered_instruments(instrument_ids):
        instrument = catalog.registry.get(inst)
        prefix = short_name(inst)
        short = XPT_PREFIXES.get(inst) or re.sub(r"[^A-Z0-9]", "", prefix)[:3]
        columns.append(
            cols.col(
                f"{prefix}_STATUS",
                "string",
                f"{prefix} form status",
                f"{prefix} 问卷状态",
                cols.FORM_STATUS_LABELS,
                xpt=f"{short}STAT"[:8],
            )
        )
        status_at = len(columns) - 1
        scale_at: dict[str, int] = {}
        for scale in instrument.scales:
            code = re.sub(r"[^A-Za-z0-9]+", "_", scale.code).upper()
            label = {loc: fit_words(f"{prefix} {scale.name[loc]}", MAX_LABEL_CHARS) for loc in LOCALES}
            xpt_label = fit_words(ascii_text(f"{prefix} {scale.name['en']}"), XPT_LABEL)
            columns.append(
                Column(
                    f"{prefix}_{code}", "float", label, xpt=f"{short}{code.replace('_', '')}"[:8], xpt_label=xpt_label
                )
            )
            scale_at[scale.code] = len(columns) - 1
        slots[inst] = (status_at, scale_at)
    return WideLayout(tuple(columns), slots)


def qol_wide(trial: Trial) -> Dataset:
    """qol_wide: one row per patient x timepoint, instrument statuses and scores side by side.

    The key columns and statuses are made per row; the scores are placed column-wise: each stored
    score of a submitted form goes to (its form's row, the column of its instrument and scale),
    later forms of a row and later scores of a form overwriting earlier ones."""
    catalog, spec = trial.catalog, trial.spec
    layout = wide_layout(spec.instruments, catalog)
    scores = trial.scores
    n_keys = len(cols.WIDE_KEY_COLUMNS)
    status_columns = sorted(status_at for status_at, _ in layout.slots.values())
    status_slot = {status_at: n for n, status_at in enumerate(status_columns)}
    score_columns = sorted(at for _, scale_at in layout.slots.values() for at in scale_at.values())
    score_slot = {at: n for n, at in enumerate(score_columns)}
    instruments = list(layout.slots)
    names = sorted({scale for _, scale_at in layout.slots.values() for scale in scale_at})
    slot_of = np.full((len(instruments), len(names) + 1), -1, np.int64)  # last: a scale of no column
    for i, (_, scale_at) in enumerate(layout.slots.values()):
        for scale, at in scale_at.items():
            slot_of[i, names.index(scale)] = score_slot[at]
    inst_number = {inst: n for n, inst in enumerate(instruments)}

    keys: list[tuple[Any, ...]] = []
    statuses: list[list[str | None]] = []
    submitted: list[tuple[int, int, int]] = []  # (response pk, row, instrument) in form order
    for _key, group in itertools.groupby(trial.in_range(), key=lambda f: (f.patient.pk, f.timepoint.pk)):
        forms = list(group)
        patient, tp = forms[0].patient, forms[0].timepoint
        rand = patient.randomization_date
        keys.append(
            (
                patient.study_id,
                patient.site,
                patient.arm,
                timepoint_code(tp.key, rand, spec.iso_dates),
                tp.rule_id,
                tp.kind,
                tp.target_date if spec.iso_dates else None,
                day_of(tp.target_date, rand),
                tp.anchor_kind,
                tp.anchor_number,
                day_of(tp.anchor_date, rand),
                next((f.missing_reason for f in forms if f.missing_reason), None),
            )
        )
        status: list[str | None] = [None] * len(status_columns)
        for form in forms:
            status[status_slot[layout.slots[form.instrument_id][0]]] = form.status
            if form.response is not None and form.response.submitted:
                submitted.append((form.response.pk, len(keys) - 1, inst_number[form.instrument_id]))
        statuses.append(status)

    n_rows = len(keys)
    values = np.full((len(score_columns), n_rows), np.nan)  # a contiguous row per score column
    known = np.zeros((len(score_columns), n_rows), bool)
    if submitted and len(scores):
        form_pk, form_row, form_inst = np.array(submitted, np.int64).T
        by_pk = np.argsort(form_pk, kind="stable")
        found_at = _find(scores["response_id"].to_numpy(), form_pk[by_pk], by_pk)  # each score's form
        found = pc.is_valid(found_at).to_numpy(zero_copy_only=False)
        form_of = pc.fill_null(found_at, 0).to_numpy()
        scale = pc.fill_null(pc.index_in(scores["scale"], value_set=pa.array(names, pa.string())), len(names))
        slot = slot_of[form_inst[form_of], scale.to_numpy()]
        placed = np.flatnonzero(found & (slot >= 0))
        placed = placed[np.argsort(form_of[placed], kind="stable")]  # form order, then score order
        value = scores["value"]
        rows, slots = form_row[form_of[placed]], slot[placed]
        values[slots, rows] = value.to_numpy(zero_copy_only=False)[placed]
        known[slots, rows] = pc.is_valid(value).to_numpy(zero_copy_only=False)[placed]

    names_of = [c.name for c in layout.columns]
    data: dict[str, Any] = dict(zip(names_of[:n_keys], zip(*keys) if keys else [()] * n_keys))
    for n, at in enumerate(status_columns):
        data[names_of[at]] = [row[n] for row in statuses]
    for n, at in enumerate(score_columns):
        data[names_of[at]] = pa.array(values[n], pa.float64(), mask=~known[n])
    return _dataset(
        "qol_wide",
        "QoL scores, one row per patient and timepoint",
        "生活质量得分（每位患者、时间点一行）",
        layout.columns,
        columns_table(layout.columns, data),
        xpt="QOLWIDE",
        xpt_label="QoL scores, wide (one row per visit)",
    )


# ---------------------------------------------------------------- (c) items


@dataclasses.dataclass(frozen=True)
class ItemRows:
    """Every item of every form with a response, in form and item order: the form (index into
    ``forms``), item id and number (null: an item of another version of the instrument), whether
    the item was skipped (null: not presented) and the answer's value (null: skipped, not
    presented or none). The items dataset, SDTM QS and the FHIR bundle all read it, and the
    answers are not held once it is made (``Trial.drop_answers``). Held from the items dataset to
    the end of an export, so compact: int32 positions and numbers, item ids dictionary-encoded."""

    forms: list[Form]
    form_at: pa.Array
    item: pa.Array
    number: pa.Array
    skipped: pa.Array
    value: pa.Array

    @property
    def presented(self) -> pa.Array:
        """Whether each item was presented (has an answer row, skipped or not)."""
        return pc.is_valid(self.skipped)


def item_rows(trial: Trial) -> ItemRows:
    """Per form the instrument's items in order, then any item of another version it has, sorted.
    Made from one item list per instrument (a form without such extra items shares it), so there
    is Python work per form, not per item; the answers are found with one Arrow lookup."""
    answers = trial.answers
    catalog = trial.catalog
    forms = [f for f in trial.in_range() if f.response is not None]
    names = sorted(set(pc.unique(answers["item_id"]).to_pylist()) | _all_items(catalog))
    item_ids = {i: n for n, i in enumerate(names)}
    width = len(item_ids) + 1
    answer_codes = pc.index_in(answers["item_id"], value_set=pa.array(names, pa.string()))
    instruments = sorted({f.instrument_id for f in forms})
    known_keys = pa.array(
        [n * width + item_ids[item] for n, inst in enumerate(instruments) for item in catalog.items(inst)], pa.int32()
    )
    inst_number = {inst: n for n, inst in enumerate(instruments)}
    pks = pa.array([f.response.pk for f in forms], pa.int64())  # type: ignore[union-attr]
    inst_at = pa.array([inst_number[f.instrument_id] for f in forms], pa.int32())
    of_form = pc.index_in(answers["response_id"], value_set=pks)  # null: a response outside the range
    known = pc.is_in(pc.add(pc.multiply(inst_at.take(of_form), width), answer_codes), value_set=known_keys)
    other = pc.and_(pc.is_valid(of_form), pc.invert(known))  # answers to items of another version
    del known
    extras: dict[int, list[str]] = {}
    rest = answers.filter(other)
    for pk, item in zip(rest["response_id"].to_pylist(), rest["item_id"].to_pylist()):
        extras.setdefault(pk, []).append(item)
    del other, rest
    shared: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for inst in instruments:
        ids = catalog.items(inst)
        shared[inst] = (np.array([item_ids[i] for i in ids], np.int32), np.arange(1, len(ids) + 1, dtype=np.int32))
    segments = []
    for form in forms:
        pk = form.response.pk  # type: ignore[union-attr]
        segment = shared[form.instrument_id]
        if pk in extras:
            more = np.array([item_ids[i] for i in sorted(extras[pk])], np.int32)
            segment = (np.concatenate([segment[0], more]), np.concatenate([segment[1], np.zeros(len(more), np.int32)]))
        segments.append(segment)
    # Arrays over every item row (millions at 100,000 forms): made in place, dropped once used. A
    # key is (form, item): the form's position times the item-id count plus the item's code, int32
    # while that fits (below 2**31: some 19 million forms).
    key_type: type[np.signedinteger[Any]] = np.int32 if len(forms) * width < 2**31 else np.int64
    lengths = np.array([len(seg[0]) for seg in segments], np.int64)
    numbers = np.concatenate([seg[1] for seg in segments]) if segments else np.empty(0, np.int32)
    number = pa.array(numbers, pa.int32(), mask=numbers == 0)
    del numbers
    codes = np.concatenate([seg[0] for seg in segments]) if segments else np.empty(0, np.int32)
    del segments
    item = pa.DictionaryArray.from_arrays(pa.array(codes, pa.int32()), pa.array(names, pa.string()))
    keys: np.ndarray = np.repeat(np.arange(len(forms), dtype=key_type) * width, lengths)
    keys += codes
    del codes
    form_at = pa.array(np.repeat(np.arange(len(forms), dtype=np.int32), lengths), pa.int32())
    # each answer's key; -1 (matching no item row) for an answer of a response outside the range
    answer_np = pc.add(
        pc.multiply(of_form.cast(pa.int64() if key_type is np.int64 else pa.int32()), width), answer_codes
    )
    answer_np = pc.fill_null(answer_np, -1).to_numpy()
    del of_form, answer_codes
    order = np.argsort(answer_np, kind="stable").astype(np.int32 if len(answer_np) < 2**31 else np.int64)
    answer_np = answer_np[order]
    at = _find(keys, answer_np, order)  # each item's answer (null: not presented)
    del keys, answer_np, order
    if len(answers):
        skipped = pc.fill_null(answers["skipped"], False).take(at).combine_chunks()
        value = pc.if_else(skipped, pa.scalar(None, pa.float64()), answers["value"].take(at).combine_chunks())
    else:
        skipped, value = pa.nulls(len(at), pa.bool_()), pa.nulls(len(at), pa.float64())
    return ItemRows(forms, form_at, item, number, skipped, value)


def _all_items(catalog: Catalog) -> set[str]:
    return {item for inst in catalog.registry for item in catalog.items(inst)}


def items(trial: Trial, rows: ItemRows | None = None, *, spool: bool = False) -> Dataset:
    """items: every item of every form with a response, with an explicit skip code (built
    ROW_BATCH item rows at a time; ``spool`` keeps the rows in a temporary file)."""
    rows = rows or item_rows(trial)
    spec = trial.spec
    head = []
    for form in rows.forms:
        patient, response = form.patient, form.response
        head.append(
            (patient.study_id, patient.site, patient.arm)
            + (timepoint_code(form.timepoint.key, patient.randomization_date, spec.iso_dates), form.instrument_id)
            + (response.instrument_version, form.status, response.revision)  # type: ignore[union-attr]
        )
    form_names = ("patient_id", "site", "arm", "timepoint", "instrument", "instrument_version", "status", "revision")
    form_columns = [next(c for c in cols.ITEM_COLUMNS if c.name == name) for name in form_names]
    per_form = table_of(form_columns, head)
    columns = labelled(cols.ITEM_COLUMNS, trial.catalog.registry)

    def part(first: int, stop: int) -> pa.Table:
        repeated = per_form.take(rows.form_at.slice(first, stop - first))
        skipped = rows.skipped.slice(first, stop - first)
        status = pc.if_else(pc.is_null(skipped), "not_presented", pc.if_else(skipped, "skipped", "answered"))
        data = {name: repeated[name] for name in form_names} | {
            "item": rows.item[first:stop],
            "item_number": rows.number[first:stop],
            "value": rows.value.slice(first, stop - first),
            "item_status": status,
        }
        return columns_table(columns, data)

    parts = (part(a, b) for a, b in _parts(len(rows.item), ROW_BATCH))
    table, sink = _assemble(columns, parts, spool)
    return _dataset(
        "items",
        "Item responses with skip codes",
        "条目回答（含跳过编码）",
        columns,
        table,
        xpt_label="Item responses with skip codes",
        spool=sink,
    )


# ---------------------------------------------------------------- (d) expected forms


def _presentation(form: Form) -> tuple[str | None, bool | None, bool | None]:
    """display_mode, read_aloud, audio_used of the form's current response (empty without one)."""
    response = form.response
    if response is None:
        return None, None, None
    return response.display_mode, response.read_aloud_used, response.audio_used


def forms(trial: Trial) -> Dataset:
    """forms: every expected timepoint x instrument with status and missing reason."""

    def rows() -> Iterator[tuple[Any, ...]]:  # converted a batch at a time (table_of), never all held
        for form in trial.in_range():
            tp, rand = form.timepoint, form.patient.randomization_date
            f = form_facts(form, trial)
            yield (
                (form.patient.study_id, form.patient.site, form.patient.arm, f.code, tp.rule_id, tp.kind)
                + (form.instrument_id, f.version, f.target_date, f.target_day)
                + (day_of(tp.window_start, rand), day_of(tp.window_end, rand), tp.anchor_kind, tp.anchor_number)
                + (f.anchor_day, form.status, form.missing_reason, f.completed_at, f.completed_day, f.window)
                + (f.respondent, f.relationship, f.mode, f.language, f.revision, form.received)
                + _presentation(form)
            )

    columns = labelled(cols.FORMS_COLUMNS, trial.catalog.registry)
    return _dataset(
        "forms",
        "Expected forms with status and missing reason",
        "应填问卷（状态与缺失原因）",
        columns,
        table_of(columns, rows()),
        xpt_label="Expected forms, status and reason",
    )


# ---------------------------------------------------------------- (e) patients, events, (f) alerts


def patients(trial: Trial) -> Dataset:
    """patients: pseudonymous id, site, arm, randomization, end of follow-up, progression."""
    iso = trial.spec.iso_dates
    rows = []
    for patient in trial.patients:
        events = trial.events.get(patient.pk, [])
        rand = patient.randomization_date
        end_day = day_of(patient.status_date, rand)
        progressions = [e.date for e in events if e.kind == "progression"]
        eot = [e.date for e in events if e.kind == "end_of_treatment"]
        rows.append(
            (patient.study_id, patient.site, patient.arm, 1, rand if iso else None, patient.language, patient.status)
            + (patient.status_date if iso else None,)
            + tuple(end_day if patient.status == s else None for s in ("died", "withdrawn", "lost"))
            + (day_of(min(progressions), rand) if progressions else None, len(progressions))
            + (day_of(min(eot), rand) if eot else None,)
            + tuple(sum(e.kind == kind for e in events) for kind in ("systemic_cycle", "intrathecal_dose"))
        )
    return _dataset("patients", "Patients", "患者", cols.PATIENT_COLUMNS, table_of(cols.PATIENT_COLUMNS, rows))


def events(trial: Trial) -> Dataset:
    """events: treatment and clinical events as study days."""
    iso = trial.spec.iso_dates
    rows = [
        (patient.study_id, patient.site, patient.arm, e.kind, e.number)
        + (day_of(e.date, patient.randomization_date), e.date if iso else None, e.cycle_length_days)
        for patient in trial.patients
        for e in trial.events.get(patient.pk, [])
    ]
    return _dataset(
        "events",
        "Treatment and clinical events",
        "治疗与临床事件",
        cols.EVENT_COLUMNS,
        table_of(cols.EVENT_COLUMNS, rows),
    )


def alerts(trial: Trial) -> Dataset:
    """alerts: symptom alerts without free text."""
    iso = trial.spec.iso_dates
    rows = []
    for alert in trial.alerts:
        patient = alert.patient
        rand = patient.randomization_date
        ack = alert.acknowledged_at
        hours = None if ack is None else (ack - alert.raised_at).total_seconds() / 3600
        key = alert.timepoint_key
        rows.append(
            (patient.study_id, patient.site, patient.arm, alert.seq)
            + (None if key is None else timepoint_code(key, rand, iso), alert.instrument_id)
            + (alert.level, alert.initial_level, ";".join(alert.rules) or None)
            + (day_of(local_day(alert.raised_at, patient.tz), rand), _seconds(alert.raised_at) if iso else None)
            + (alert.escalated, ack is not None, hours)
        )
    columns = labelled(cols.ALERT_COLUMNS, trial.catalog.registry)
    return _dataset("alerts", "Symptom alerts", "症状警报", columns, table_of(columns, rows))


def item_codes(trial: Trial) -> Dataset:
    """item_codes: every item's answer codes and labels (en, zh_Hans); no database access."""
    rows: list[tuple[Any, ...]] = []
    for inst in trial.spec.instruments:
        instrument = trial.catalog.registry.get(inst)
        for number, item in enumerate(instrument.items, start=1):
            base = (inst, instrument.version, item.id, number, item.kind)
            if item.kind == "choice":
                for option in item.options:
                    rows.append(
                        base + (option.code, option.label["en"], option.label["zh_Hans"], None, None, item.unit)
                    )
            else:
                rows.append(base + (None, None, None, item.min, item.max, item.unit))
    columns = labelled(cols.ITEM_CODE_COLUMNS, trial.catalog.registry)
    return _dataset(
        "item_codes",
        "Answer codes of every item",
        "各条目的回答编码",
        columns,
        table_of(columns, rows),
        xpt="ITEMCODE",
        xpt_drop=("label_zh_hans",),
    )


DatasetBuilder = Callable[[Trial], Dataset]

#: The tabular datasets of an export, in the order they are written and documented.
DATASETS: dict[str, DatasetBuilder] = {
    "qol_long": qol_long,
    "qol_wide": qol_wide,
    "items": items,
    "forms": forms,
    "patients": patients,
    "events": events,
    "alerts": alerts,
    "item_codes": item_codes,
}
