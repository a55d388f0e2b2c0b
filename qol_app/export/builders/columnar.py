"""qol_long column by column with Arrow, one chunk of patients at a time (for CSV and Parquet).

``tables.long_rows`` over ``source.iter_patient_forms`` defines the long file row by row and feeds
the formats that need Python rows. At a million rows its per-row Python is most of an export's
time, so this module computes the same table with ``pyarrow.compute`` from
``source.iter_long_chunks``. Python still runs per distinct value, through the functions the row
builder uses: timepoint codes of dated keys (``records.timepoint_code``) and each (instrument,
scale)'s direction and comparability (``Catalog``), from which change and deterioration are
computed as ``scoring.change`` does (a Python call per distinct score pair cost a third of the
build). Each vectorised step names the rule it mirrors; tests compare both builders on both
databases.

Intermediate tables are plain ``dict[str, pa.Array]`` ("frames"), one row per timepoint, form or
output row; ``*_at`` columns index into the frame one level up.
"""

from __future__ import annotations

import collections
import datetime as dt
import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from qol_app.export.builders.records import ExportFilters, timepoint_code
from qol_app.export.builders.source import Columns, LongChunk
from qol_app.export.builders.tables import BuildOptions, Catalog
from qol_app.export.dataset import Column
from qol_app.export.writers.arrow import arrow_type
from qol_app.scoring.change import TOLERANCE as DETERIORATION_TOLERANCE

Frame = dict[str, pa.Array]

UTC_US = pa.timestamp("us", tz="UTC")
PATIENT_TYPES = {
    "pk": pa.int64(),
    "study_id": pa.string(),
    "site": pa.string(),
    "arm": pa.string(),
    "rand": pa.date32(),
    "tz": pa.string(),
}
TIMEPOINT_TYPES = {
    "id": pa.int64(),
    "patient_id": pa.int64(),
    "key": pa.string(),
    "rule_id": pa.string(),
    "instruments": pa.string(),
    "anchor_kind": pa.string(),
    "anchor_number": pa.int64(),
    "anchor_date": pa.date32(),
    "target_date": pa.date32(),
    "opens_at": UTC_US,
    "closes_at": UTC_US,
    "grace_closes_at": UTC_US,
    "missed_reason": pa.string(),
    "not_expected_reason": pa.string(),
    "status_changed_at": UTC_US,
}
RESPONSE_TYPES = {
    "id": pa.int64(),
    "timepoint_id": pa.int64(),
    "instrument_id": pa.string(),
    "instrument_version": pa.string(),
    "revision": pa.int64(),
    "language": pa.string(),
    "respondent": pa.string(),
    "mode": pa.string(),
    "submitted_at": UTC_US,
    "done": pa.bool_(),
}
SCORE_TYPES = {
    "response_id": pa.int64(),
    "scale": pa.string(),
    "value": pa.float64(),
    "n_items": pa.int64(),
    "scoring_version": pa.string(),
}
_FORM_ORDER = ("patient_at", "target_date", "key", "id", "position")
"""``source._sorted``: patients in export order, then target date, key (byte order), id, instrument."""
_EXTRA = 1 << 20
"""Sort position of scales a form has but its instrument does not list: after the listed ones."""


def long_batches(
    chunks: Iterable[Callable[[], LongChunk]],
    columns: Sequence[Column],
    catalog: Catalog,
    opts: BuildOptions,
    filters: ExportFilters,
    instruments: Sequence[str],
) -> Iterator[pa.RecordBatch]:
    """One record batch of ``columns`` (columns.LONG_COLUMNS) per chunk of patients that has rows.

    Each chunk (``source.iter_long_chunks``: read, to be converted) is converted and computed in a
    worker thread while this one reads the next ones (Arrow releases the GIL), so the export takes
    about as long as the slower of the two, not their sum.
    """
    schema = pa.schema([(column.name, arrow_type(column)) for column in columns])
    for batch in _overlapped(chunks, lambda load: long_batch(load(), schema, catalog, opts, filters, instruments)):
        if batch.num_rows:
            yield batch


def _overlapped(
    chunks: Iterable[Callable[[], LongChunk]], work: Callable[[Callable[[], LongChunk]], pa.RecordBatch], ahead: int = 2
) -> Iterator[pa.RecordBatch]:
    """``map(work, chunks)`` with ``work`` in one background thread, while the reading goes on in
    the calling thread (database connections belong to it). Finished results are handed on as soon
    as they are there; reading waits only when ``ahead`` chunks are queued or being worked on."""
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="qol-export") as pool:
        pending: collections.deque[Future[pa.RecordBatch]] = collections.deque()
        try:
            for chunk in chunks:
                pending.append(pool.submit(work, chunk))
                while pending and (pending[0].done() or len(pending) > ahead):
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for future in pending:  # when the consumer stopped early
                future.cancel()


def long_batch(
    chunk: LongChunk,
    schema: pa.Schema,
    catalog: Catalog,
    opts: BuildOptions,
    filters: ExportFilters,
    instruments: Sequence[str],
) -> pa.RecordBatch:
    """The long file's rows for one chunk of patients, in ``long_rows`` order."""
    as_of = pa.scalar(opts.as_of, UTC_US)
    patients = _frame(chunk.patients, PATIENT_TYPES)
    timepoints = _timepoints(_frame(chunk.timepoints, TIMEPOINT_TYPES), patients, as_of, opts, filters)
    forms = _forms(timepoints, _frame(chunk.responses, RESPONSE_TYPES), as_of, catalog, opts, instruments)
    rows = _rows(forms, _frame(chunk.scores, SCORE_TYPES), catalog, instruments)
    return pa.RecordBatch.from_arrays([rows[f.name].cast(f.type) for f in schema], schema=schema)


# ---------------------------------------------------------------- driver values -> Arrow


def _array(values: Sequence[Any] | pa.Array, kind: pa.DataType) -> pa.Array:
    """Driver values (or Arrow arrays read from the database's text) as ``kind``: SQLite hands
    dates and (naive UTC) times over as ISO text, which Arrow parses, and booleans as 0/1."""
    if isinstance(values, pa.Array):
        if pa.types.is_string(values.type) and pa.types.is_timestamp(kind):
            return values.cast(pa.timestamp("us")).cast(kind)
        return values if values.type == kind else values.cast(kind)
    sample = next((v for v in values if v is not None), None)
    if isinstance(sample, str) and not pa.types.is_string(kind):
        text = pa.array(values, pa.string())
        return text.cast(pa.timestamp("us")).cast(kind) if pa.types.is_timestamp(kind) else text.cast(kind)
    if type(sample) is int and pa.types.is_boolean(kind):
        return pa.array(values, pa.int64()).cast(kind)
    return pa.array(values, kind)


def _frame(columns: Columns, types: dict[str, pa.DataType]) -> Frame:
    return {name: _array(columns[name], kind) for name, kind in types.items()}


def _take(frame: Frame, indices: pa.Array) -> Frame:
    return {name: values.take(indices) for name, values in frame.items()}


def _nulls(like: pa.Array, kind: pa.DataType) -> pa.Array:
    return pa.nulls(len(like), kind)


def _study_day(day: pa.Array, randomization: pa.Array) -> pa.Array:
    """``sdtm.study_day``: randomization is day 1, the day before is -1 (no day 0)."""
    delta = pc.days_between(randomization, day)
    return pc.if_else(pc.greater_equal(delta, 0), pc.add(delta, 1), delta)


def _local_day(instants: pa.Array, zones: pa.Array) -> pa.Array:
    """``records.local_day``: each instant's calendar date in its own zone."""
    out = _nulls(instants, pa.date32())
    for zone in pc.unique(zones).to_pylist():
        local = pc.local_timestamp(instants.cast(pa.timestamp("us", tz=zone))).cast(pa.date32())
        out = pc.if_else(pc.equal(zones, zone), local, out)
    return out


# ---------------------------------------------------------------- timepoints


def _timepoints(tps: Frame, patients: Frame, as_of: pa.Scalar, opts: BuildOptions, filters: ExportFilters) -> Frame:
    """Per timepoint: its patient's facts, code, study days, as-of not-expected reason, in range?"""
    at = pc.index_in(tps["patient_id"], value_set=patients["pk"])
    out = tps | {name: patients[name].take(at) for name in ("study_id", "site", "arm", "rand", "tz")}
    out["patient_at"] = at
    reason, changed = tps["not_expected_reason"], tps["status_changed_at"]
    recorded = pc.and_kleene(pc.not_equal(reason, ""), pc.or_kleene(pc.is_null(changed), pc.less_equal(changed, as_of)))
    out["not_expected"] = pc.if_else(recorded, reason, None)  # records.not_expected_at
    out["code"] = _codes(tps["key"], out["rand"], opts.iso_dates)
    out["target_day"] = _study_day(tps["target_date"], out["rand"])
    out["anchor_day"] = _study_day(tps["anchor_date"], out["rand"])
    out["in_range"] = _in_range(tps["target_date"], filters)
    out["is_baseline"] = pc.equal(tps["key"], opts.baseline_key)
    return out


def _codes(keys: pa.Array, randomization: pa.Array, iso_dates: bool) -> pa.Array:
    """``records.timepoint_code`` for the keys it changes (dated ones), the key itself for the rest."""
    if iso_dates:
        return keys
    probe = dt.date(2000, 1, 1)
    dated = [key for key in pc.unique(keys).to_pylist() if timepoint_code(key, probe, False) != key]
    if not dated:
        return keys
    mask = pc.is_in(keys, value_set=pa.array(dated, pa.string()))
    codes = [
        timepoint_code(key, rand, False)
        for key, rand in zip(keys.filter(mask).to_pylist(), randomization.filter(mask).to_pylist())
    ]
    return pc.replace_with_mask(keys, mask, pa.array(codes, pa.string()))


def _in_range(target: pa.Array, filters: ExportFilters) -> pa.Array:
    """``ExportFilters.in_range`` of each target date."""
    inside = pc.is_valid(target)
    if filters.date_from is not None:
        inside = pc.and_(inside, pc.greater_equal(target, pa.scalar(filters.date_from, pa.date32())))
    if filters.date_to is not None:
        inside = pc.and_(inside, pc.less_equal(target, pa.scalar(filters.date_to, pa.date32())))
    return inside


# ---------------------------------------------------------------- forms


def _forms(
    tps: Frame, responses: Frame, as_of: pa.Scalar, catalog: Catalog, opts: BuildOptions, instruments: Sequence[str]
) -> Frame:
    """One row per expected form (timepoint x selected instrument) with its as-of status, in output order."""
    wanted = list(instruments)
    forms = _expand_instruments(tps["instruments"], wanted)
    forms |= _take(tps, forms["tp_at"])
    forms["form_key"] = _form_key(forms["id"], forms["inst_at"], len(wanted))
    forms |= _current_responses(forms["form_key"], responses, wanted)
    forms["status"] = _status(forms, as_of)
    kept = pc.indices_nonzero(pc.is_valid(forms["status"]))
    order = kept.take(
        pc.sort_indices(
            pa.table({k: forms[k].take(kept) for k in _FORM_ORDER}), sort_keys=[(k, "ascending") for k in _FORM_ORDER]
        )
    )
    forms = _take(forms, order)  # one take of every column for both the filter and the sort
    return forms | _form_facts(forms, catalog, opts, wanted)


def _expand_instruments(lists: pa.Array, wanted: list[str]) -> Frame:
    """A row per selected instrument of each timepoint's JSON list (decoded once per distinct list)."""
    encoded = pc.dictionary_encode(lists)
    chosen: list[list[int]] = []
    places: list[list[int]] = []
    for text in encoded.dictionary.to_pylist():
        listed = tuple(json.loads(text) or ())
        picked = [inst for inst in listed if inst in wanted]
        chosen.append([wanted.index(inst) for inst in picked])
        places.append([listed.index(inst) for inst in picked])
    per_tp = pa.array(chosen, pa.list_(pa.int64())).take(encoded.indices)
    return {
        "tp_at": pc.list_parent_indices(per_tp),
        "inst_at": pc.list_flatten(per_tp),
        "position": pc.list_flatten(pa.array(places, pa.list_(pa.int64())).take(encoded.indices)),
    }


def _form_key(timepoint_ids: pa.Array, inst_at: pa.Array, n_instruments: int) -> pa.Array:
    return pc.add(pc.multiply(timepoint_ids, n_instruments), inst_at)


def _current_responses(form_key: pa.Array, responses: Frame, wanted: list[str]) -> Frame:
    """``source._current``: the newest revision submitted by ``as_of``, else the unfinished revision 0;
    ``first_at`` is when revision 0 was submitted (by ``as_of``); ``started`` if any revision was."""
    key = _form_key(
        responses["timepoint_id"], pc.index_in(responses["instrument_id"], value_set=pa.array(wanted)), len(wanted)
    )
    done = pc.fill_null(responses["done"], False)
    first = pc.equal(responses["revision"], 0)
    candidates = pc.indices_nonzero(pc.or_(done, first))
    ranked = pa.table(
        {"key": key.take(candidates), "done": done.take(candidates), "revision": responses["revision"].take(candidates)}
    )
    best_first = pc.sort_indices(
        ranked, sort_keys=[("key", "ascending"), ("done", "descending"), ("revision", "descending")]
    )
    current = candidates.take(best_first)
    at = current.take(pc.index_in(form_key, value_set=key.take(current)))  # the first match is the best
    picked = {f"r_{name}": values.take(at) for name, values in responses.items()}
    first_done = pc.indices_nonzero(pc.and_(first, done))
    first_at = responses["submitted_at"].take(first_done).take(pc.index_in(form_key, value_set=key.take(first_done)))
    return picked | {
        "submitted": pc.fill_null(done.take(at), False),
        "started": pc.is_in(form_key, value_set=key),
        "first_at": first_at,
    }


def _status(forms: Frame, as_of: pa.Scalar) -> pa.Array:
    """``records.form_status`` (``scheduling.status.derive_status``); null for forms not open yet."""
    later = pc.if_else(forms["started"], "partial", "missed")
    status = pc.if_else(pc.less(as_of, forms["grace_closes_at"]), "pending", later)
    status = pc.if_else(pc.less(as_of, forms["opens_at"]), pa.scalar(None, pa.string()), status)
    status = pc.if_else(pc.is_valid(forms["not_expected"]), "not_expected", status)
    return pc.if_else(forms["submitted"], "completed", status)


def _form_facts(forms: Frame, catalog: Catalog, opts: BuildOptions, wanted: list[str]) -> Frame:
    """``tables._facts`` and ``Form.missing_reason`` for every form."""
    status, has_response = forms["status"], pc.is_valid(forms["r_id"])
    completed = pc.equal(status, "completed")
    first = pc.if_else(completed, forms["first_at"], pa.scalar(None, UTC_US))
    done_day = _local_day(first, forms["tz"])
    versions = pa.array([catalog.version(inst) for inst in wanted], pa.string()).take(forms["inst_at"])
    lapsed = pc.is_in(status, value_set=pa.array(["missed", "partial"]))
    return {
        "instrument": pa.array(wanted, pa.string()).take(forms["inst_at"]),
        "version": pc.if_else(has_response, forms["r_instrument_version"], versions),
        "target_out": forms["target_date"] if opts.iso_dates else _nulls(status, pa.date32()),
        "completed_at": first if opts.iso_dates else _nulls(status, UTC_US),
        "completed_day": _study_day(done_day, forms["rand"]),
        "days_from_rand": pc.days_between(forms["rand"], pc.coalesce(done_day, forms["target_date"])),
        "window": pc.if_else(pc.greater_equal(first, forms["closes_at"]), "late", "on_time"),
        "missing_reason": pc.if_else(
            pc.equal(status, "not_expected"),
            forms["not_expected"],
            pc.if_else(lapsed, forms["missed_reason"], pa.scalar(None, pa.string())),
        ),
    }


# ---------------------------------------------------------------- rows: forms x scales


def _rows(forms: Frame, scores: Frame, catalog: Catalog, instruments: Sequence[str]) -> Frame:
    """Every scale of every form (the instrument's, then any other the form was scored on, by name),
    with its score, the patient's baseline score, change and deterioration (``tables.long_rows``)."""
    wanted = list(instruments)
    known = [catalog.scales(inst) for inst in wanted]
    names = sorted({*(s for scales in known for s in scales), *pc.unique(scores["scale"]).to_pylist()})
    n = len(names)
    scored = pc.if_else(forms["submitted"], forms["r_id"], pa.scalar(None, pa.int64()))
    score_form = pc.index_in(scores["response_id"], value_set=scored)
    kept = pc.indices_nonzero(pc.is_valid(score_form))
    scores = _take(scores, kept) | {"form_at": score_form.take(kept).cast(pa.int64())}
    scores["scale_at"] = pc.index_in(scores["scale"], value_set=pa.array(names, pa.string())).cast(pa.int64())
    rows = _scale_rows(forms, scores, known, names)
    form_of = rows["form_at"]
    found = _index_in(
        _pair(form_of, rows["scale_at"], n), _pair(scores["form_at"], scores["scale_at"], n), len(scored) * n
    )  # scores["form_at"] only points at scored forms
    rows |= {name: scores[name].take(found) for name in ("value", "n_items", "scoring_version")}
    rows["baseline"] = _baseline(forms, rows, len(wanted), n)
    in_range = forms["in_range"].take(rows["form_at"])
    if not pc.all(in_range).as_py():
        rows = _take(rows, pc.indices_nonzero(in_range))
    change, worse = _compare(forms, rows, catalog, wanted, names)
    by_form = {
        "patient_id": "study_id",
        "site": "site",
        "arm": "arm",
        "timepoint": "code",
        "instrument": "instrument",
        "instrument_version": "version",
        "target_date": "target_out",
        "completed_at": "completed_at",
        "status": "status",
        "respondent": "r_respondent",
        "mode": "r_mode",
        "language": "r_language",
        "missing_reason": "missing_reason",
        "rule": "rule_id",
        "target_day": "target_day",
        "completed_day": "completed_day",
        "days_from_rand": "days_from_rand",
        "window_status": "window",
        "anchor_kind": "anchor_kind",
        "anchor_number": "anchor_number",
        "anchor_day": "anchor_day",
        "revision": "r_revision",
        "is_baseline": "is_baseline",
    }
    out = {column: forms[source].take(rows["form_at"]) for column, source in by_form.items()}
    return out | {
        "scale": pa.array(names, pa.string()).take(rows["scale_at"]),
        "score": rows["value"],
        "n_items": rows["n_items"],
        "baseline_score": rows["baseline"],
        "change": change,
        "deteriorated": worse,
        "scoring_version": rows["scoring_version"],
    }


def _index_in(keys: pa.Array, value_set: pa.Array, size: int) -> pa.Array:
    """``pc.index_in(keys, value_set=value_set)`` (the first match, null for none) for keys and
    values in ``range(size)``: a direct-address table instead of a hash table."""
    if keys.null_count or value_set.null_count or size > 1 << 26:
        return pc.index_in(keys, value_set=value_set)
    import numpy as np

    values, first = np.unique(value_set.to_numpy(), return_index=True)
    slots = np.full(size, -1, np.int64)
    slots[values] = first
    at = slots[keys.to_numpy()]
    return pa.array(at, mask=at < 0)


def _pair(high: pa.Array, low: pa.Array, n_low: int) -> pa.Array:
    """One int64 key for two small non-negative ints (or ids), for hash lookups with ``index_in``."""
    return pc.add(pc.multiply(high.cast(pa.int64()), n_low), low.cast(pa.int64()))


def _scale_rows(forms: Frame, scores: Frame, known: list[tuple[str, ...]], names: list[str]) -> Frame:
    """(form, scale) pairs in output order: ``tables._scales_of`` for every form."""
    index = {name: at for at, name in enumerate(names)}
    listed = pa.array([[index[s] for s in scales] for scales in known], pa.list_(pa.int64())).take(forms["inst_at"])
    places = pa.array([list(range(len(scales))) for scales in known], pa.list_(pa.int64())).take(forms["inst_at"])
    scale_at = pc.list_flatten(listed)
    rows = {
        "form_at": pc.list_parent_indices(listed),
        "scale_at": scale_at,
        "within": pc.list_flatten(places),
        "extra": pa.repeat(False, len(scale_at)),
    }
    known_pairs = pa.array([at * len(names) + index[s] for at, scales in enumerate(known) for s in scales], pa.int64())
    score_inst = forms["inst_at"].take(scores["form_at"])
    extra = pc.invert(pc.is_in(_pair(score_inst, scores["scale_at"], len(names)), value_set=known_pairs))
    if not pc.any(extra).as_py():
        return rows
    extra_at = scores["scale_at"].filter(extra)
    extras = {
        "form_at": scores["form_at"].filter(extra),
        "scale_at": extra_at,
        "within": pc.add(extra_at, _EXTRA),
        "extra": pa.repeat(True, len(extra_at)),
    }
    rows = {name: pa.concat_arrays([rows[name], extras[name]]) for name in rows}
    order = pc.sort_indices(
        pa.table({"form_at": rows["form_at"], "within": rows["within"]}),
        sort_keys=[("form_at", "ascending"), ("within", "ascending")],
    )
    return _take(rows, order)


def _baseline(forms: Frame, rows: Frame, n_instruments: int, n_scales: int) -> pa.Array:
    """``tables.baseline_scores``: each scale's score at the patient's completed baseline form."""
    form_of = rows["form_at"]
    base_form = pc.and_(forms["is_baseline"], pc.equal(forms["status"], "completed"))
    key = _pair(_pair(forms["patient_at"], forms["inst_at"], n_instruments).take(form_of), rows["scale_at"], n_scales)
    base_rows = pc.indices_nonzero(pc.and_(base_form.take(form_of), pc.is_valid(rows["value"])))
    size = (pc.max(forms["patient_at"]).as_py() or 0) * n_instruments * n_scales + n_instruments * n_scales
    return rows["value"].take(base_rows).take(_index_in(key, key.take(base_rows), size))


def _compare(
    forms: Frame, rows: Frame, catalog: Catalog, wanted: list[str], names: list[str]
) -> tuple[pa.Array, pa.Array]:
    """(change, deteriorated) as ``Catalog.compare`` computes them (``scoring.change``), column-wise:
    ``value - baseline``; deteriorated on the scales ``Catalog.comparable`` lists when the change in
    the scale's worse direction is at least the threshold (less the same tolerance), else empty.
    Empty at baseline, for unlisted scales and missing scores. The direction and comparability of
    each (instrument, scale) come from the catalog, once each."""
    form_of = rows["form_at"]
    eligible = pc.and_(
        pc.and_(pc.invert(forms["is_baseline"].take(form_of)), pc.invert(rows["extra"])),
        pc.and_(pc.is_valid(rows["baseline"]), pc.is_valid(rows["value"])),
    )
    picked = pc.indices_nonzero(eligible)
    inst_scale = _pair(forms["inst_at"].take(form_of).take(picked), rows["scale_at"].take(picked), len(names))
    pairs = pc.unique(inst_scale)
    comparable, higher_is_better = [], []
    for code in pairs.to_pylist():
        inst, scale = divmod(code, len(names))
        higher_is_better.append(catalog.higher_is_better(wanted[inst], names[scale]))
        comparable.append(names[scale] in catalog.comparable(wanted[inst]))
    at = pc.index_in(inst_scale, value_set=pairs)
    value, base = rows["value"].take(picked), rows["baseline"].take(picked)
    change = pc.subtract(value, base)
    worsening = pc.if_else(pa.array(higher_is_better, pa.bool_()).take(at), pc.subtract(base, value), change)
    worse = pc.greater_equal(worsening, catalog.threshold - DETERIORATION_TOLERANCE)
    worse = pc.if_else(pa.array(comparable, pa.bool_()).take(at), worse, pa.scalar(None, pa.bool_()))
    return (
        pc.replace_with_mask(_nulls(eligible, pa.float64()), eligible, change),
        pc.replace_with_mask(_nulls(eligible, pa.bool_()), eligible, worse),
    )
