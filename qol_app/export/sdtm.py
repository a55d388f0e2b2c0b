"""CDISC SDTM from the built trial: QS, SUPPQS, and minimal DM, TS and TV (with define.xml, see
``export.define``, generated from the same metadata).

QS conventions (SDTMIG 3.4 QS; CDISC QRS supplements):
- Test codes: the CDISC QRS codes where CDISC publishes them: EORTC QLQ-C30 ``EOR0101`` ...
  ``EOR0130`` (item n = EOR01nn) and EQ-5D-5L ``EQ5D0201`` ... ``EQ5D0206`` (mobility, self-care,
  usual activities, pain/discomfort, anxiety/depression, VAS), with QSCAT "EORTC QLQ-C30 V3.0" and
  "EQ-5D-5L". Sponsor-defined codes where no QRS supplement is known to us: QLQ-BN20 ``BN20Q01``
  ..., QLQ-BR23 ``BR23Q01`` ..., the trial's diary ``DIARY01`` ... (``SPONSOR_CODES``).
  QSTEST is the code's prefix and the project's own short item label (the licensed QRS wording is
  distributed by the copyright holders), unique per QSTESTCD and at most 40 characters.
- One record per presented item; QSORRES holds the response text, QSSTRESC/QSSTRESN the code;
  numeric items carry the number in all three. A presented but skipped item: QSSTAT = NOT DONE,
  QSREASND = SKIPPED BY RESPONDENT. A missed form: one record QSTESTCD = QSALL, QSSTAT = NOT
  DONE, QSREASND = the nurse's reason (NOT RECORDED when none was given). Not-expected forms
  (after death, withdrawal, loss) and pending ones get no record.
- QSDTC: ISO 8601 in the site's local wall time, only when the export carries ISO dates: the
  collection time, or for a NOT DONE form its planned (target) date. QSDY is always given (from
  the randomization date, no day 0). QSBLFL = Y on the results of the baseline visit.
- QSEVLINT per item: QLQ-C30 items 6-30, BN20 and BR23 "-P1W" (BR23 items 14-16 "-P4W"); C30
  items 1-5 have no recall period; the diary "-P1D"; EQ-5D-5L is about today (QSEVINTX TODAY).
- QSGRPID groups one form's records; SUPPQS carries, per form, the respondent type (QSRESP),
  a proxy's relationship (QSRELPR) and the mode of administration (QSMODE).

Derived scores are not in QS (sponsor-derived: analysis data, the long scored file has them).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from qol_app.export import columns as cols
from qol_app.export.asof import local_day, zone
from qol_app.export.build import (
    FORMS_PER_PART,
    ItemRows,
    Trial,
    ascii_text,
    day_of,
    distinct_keys,
    fit_words,
    ordered_instruments,
    timepoint_code,
)
from qol_app.export.memory import release_memory
from qol_app.export.schema import Column, Dataset, Spool, bi, columns_table, table_of

SKIPPED_REASON = "SKIPPED BY RESPONDENT"
NOT_RECORDED = "NOT RECORDED"
MISSED_REASONS: Mapping[str, str] = {
    "too_ill": "TOO ILL",
    "hospitalised": "HOSPITALISED",
    "cognitive_impairment": "COGNITIVE IMPAIRMENT",
    "refused": "REFUSED",
    "technical": "TECHNICAL PROBLEM",
    "forgot": "FORGOT",
    "site_error": "SITE ERROR",
    "other": "OTHER",
}
EVALUATORS: Mapping[str, str] = {"self": "STUDY SUBJECT", "self_assisted": "STUDY SUBJECT", "proxy": "CAREGIVER"}

QRS_CODES: Mapping[str, tuple[str, str, str]] = {
    "eortc_qlq_c30": ("EOR01", "EOR01", "EORTC QLQ-C30 V3.0"),
    "eq5d5l": ("EQ5D02", "EQ5D02", "EQ-5D-5L"),
}
"""Instrument -> (QSTESTCD prefix, QSTEST prefix, QSCAT) of its published CDISC QRS supplement."""
SPONSOR_CODES: Mapping[str, tuple[str, str, str]] = {
    "eortc_qlq_bn20": ("BN20Q", "BN20", "EORTC QLQ-BN20"),
    "eortc_qlq_br23": ("BR23Q", "BR23", "EORTC QLQ-BR23"),
    "symptom_diary": ("DIARY", "DIARY", "CONQUER SYMPTOM DIARY"),
}
"""Sponsor-defined test codes for instruments without a QRS supplement (documented in define.xml)."""
EQ5D_TESTS = ("Mobility", "Self-Care", "Usual Activities", "Pain/Discomfort", "Anxiety/Depression", "EQ VAS Score")


def evaluation_interval(instrument_id: str, number: int) -> tuple[str | None, str | None]:
    """(QSEVLINT, QSEVINTX) of item ``number`` (1-based) of an instrument."""
    if instrument_id == "eortc_qlq_c30":
        return (None, None) if number <= 5 else ("-P1W", None)
    if instrument_id == "eortc_qlq_br23":
        return ("-P4W", None) if 14 <= number <= 16 else ("-P1W", None)
    if instrument_id == "eortc_qlq_bn20":
        return "-P1W", None
    if instrument_id == "eq5d5l":
        return None, "TODAY"
    if instrument_id == "symptom_diary":
        return "-P1D", None
    return None, None


def test_codes(trial: Trial) -> dict[str, list[tuple[str, str, str | None, str | None]]]:
    """Instrument -> per item (QSTESTCD, QSTEST, QSEVLINT, QSEVINTX), in item order."""
    out: dict[str, list[tuple[str, str, str | None, str | None]]] = {}
    for inst in ordered_instruments(trial.catalog.registry):
        instrument = trial.catalog.registry.get(inst)
        code_prefix, test_prefix, _cat = category(inst)
        tests = []
        seen: set[str] = set()
        for number, item in enumerate(instrument.items, start=1):
            testcd = f"{code_prefix}{number:02d}"
            if inst == "eq5d5l" and number <= len(EQ5D_TESTS):
                name = EQ5D_TESTS[number - 1]
            else:
                name = ascii_text(item.text["en"])
            test = fit_words(f"{test_prefix}-{name}", 40)
            if test in seen:  # two labels alike in their first 40 characters
                test = fit_words(f"{test_prefix}-{number:02d} {name}", 40)
            seen.add(test)
            tests.append((testcd, test, *evaluation_interval(inst, number)))
        out[inst] = tests
    return out


def category(instrument_id: str) -> tuple[str, str, str]:
    if instrument_id in QRS_CODES:
        return QRS_CODES[instrument_id]
    if instrument_id in SPONSOR_CODES:
        return SPONSOR_CODES[instrument_id]
    short = re.sub(r"[^A-Z0-9]", "", instrument_id.upper())[:5] or "Q"
    return short, short, ascii_text(instrument_id.upper())


_VISITS = (
    (re.compile(r"^sys-c(\d+)$"), 100, "AFTER CYCLE {n}"),
    (re.compile(r"^prog-(\d+)$"), 200, "PROGRESSION {n}"),
    (re.compile(r"^fu-(\d+)$"), 400, "FOLLOW-UP {n}"),
    (re.compile(r"^cal-(\d+)$"), 500, "VISIT {n}"),
)


def visit(key: str, code: str, target_day: int | None) -> tuple[float, str]:
    """(VISITNUM, VISIT): baseline 1, after cycle n 100+n, progression n 200+n, end of treatment 300,
    follow-up k 400+k, calendar visit n 500+n, diary days 1000 + study day, anything else 9000."""
    if key == "baseline":
        return 1.0, "BASELINE"
    if key == "eot":
        return 300.0, "END OF TREATMENT"
    if key.startswith("diary-") and target_day is not None:
        return 1000.0 + target_day, f"DIARY DAY {target_day}"
    for pattern, base, name in _VISITS:
        match = pattern.match(key)
        if match:
            return float(base + int(match[1])), name.format(n=match[1])
    return 9000.0, ascii_text(code.upper())[:40]


def _c(name: str, kind: Any, label: str) -> Column:
    return Column(name, kind, bi(label, label))


QS_COLUMNS: tuple[Column, ...] = (
    _c("STUDYID", "string", "Study Identifier"),
    _c("DOMAIN", "string", "Domain Abbreviation"),
    _c("USUBJID", "string", "Unique Subject Identifier"),
    _c("QSSEQ", "integer", "Sequence Number"),
    _c("QSGRPID", "string", "Group ID"),
    _c("QSTESTCD", "string", "Question Short Name"),
    _c("QSTEST", "string", "Question Name"),
    _c("QSCAT", "string", "Category of Question"),
    _c("QSORRES", "string", "Finding in Original Units"),
    _c("QSORRESU", "string", "Original Units"),
    _c("QSSTRESC", "string", "Character Result/Finding in Std Format"),
    _c("QSSTRESN", "float", "Numeric Finding in Standard Units"),
    _c("QSSTRESU", "string", "Standard Units"),
    _c("QSSTAT", "string", "Completion Status"),
    _c("QSREASND", "string", "Reason Not Performed"),
    _c("QSBLFL", "string", "Baseline Flag"),
    _c("QSEVAL", "string", "Evaluator"),
    _c("QSEVLINT", "string", "Evaluation Interval"),
    _c("QSEVINTX", "string", "Evaluation Interval Text"),
    _c("VISITNUM", "float", "Visit Number"),
    _c("VISIT", "string", "Visit Name"),
    _c("QSDTC", "string", "Date/Time of Finding"),
    _c("QSDY", "integer", "Study Day of Finding"),
)
SUPPQS_COLUMNS: tuple[Column, ...] = (
    _c("STUDYID", "string", "Study Identifier"),
    _c("RDOMAIN", "string", "Related Domain Abbreviation"),
    _c("USUBJID", "string", "Unique Subject Identifier"),
    _c("IDVAR", "string", "Identifying Variable"),
    _c("IDVARVAL", "string", "Identifying Variable Value"),
    _c("QNAM", "string", "Qualifier Variable Name"),
    _c("QLABEL", "string", "Qualifier Variable Label"),
    _c("QVAL", "string", "Data Value"),
    _c("QORIG", "string", "Origin"),
)
DM_COLUMNS: tuple[Column, ...] = (
    _c("STUDYID", "string", "Study Identifier"),
    _c("DOMAIN", "string", "Domain Abbreviation"),
    _c("USUBJID", "string", "Unique Subject Identifier"),
    _c("SUBJID", "string", "Subject Identifier for the Study"),
    _c("RFSTDTC", "string", "Subject Reference Start Date/Time"),
    _c("SITEID", "string", "Study Site Identifier"),
    _c("SEX", "string", "Sex"),
    _c("ARMCD", "string", "Planned Arm Code"),
    _c("ARM", "string", "Description of Planned Arm"),
    _c("ACTARMCD", "string", "Actual Arm Code"),
    _c("ACTARM", "string", "Description of Actual Arm"),
    _c("COUNTRY", "string", "Country"),
    _c("DTHFL", "string", "Subject Death Flag"),
    _c("DTHDTC", "string", "Date/Time of Death"),
)
TS_COLUMNS: tuple[Column, ...] = (
    _c("STUDYID", "string", "Study Identifier"),
    _c("DOMAIN", "string", "Domain Abbreviation"),
    _c("TSSEQ", "integer", "Sequence Number"),
    _c("TSPARMCD", "string", "Trial Summary Parameter Short Name"),
    _c("TSPARM", "string", "Trial Summary Parameter"),
    _c("TSVAL", "string", "Parameter Value"),
)
TV_COLUMNS: tuple[Column, ...] = (
    _c("STUDYID", "string", "Study Identifier"),
    _c("DOMAIN", "string", "Domain Abbreviation"),
    _c("VISITNUM", "float", "Visit Number"),
    _c("VISIT", "string", "Visit Name"),
    _c("TVSTRL", "string", "Visit Start Rule"),
)
SUPP_QUALIFIERS = {
    "QSRESP": "Respondent Type",
    "QSRELPR": "Relationship of Proxy to Subject",
    "QSMODE": "Mode of Administration",
}
TRIAL_SUMMARY = (
    (
        "TITLE",
        "Trial Title",
        "Intrathecal chemotherapy via Ommaya reservoir plus systemic chemotherapy versus "
        "systemic chemotherapy in HER2-negative breast cancer with leptomeningeal metastasis (CONQUER)",
    ),
    ("REGID", "Registry Identifier", "NCT06230055"),
    ("SPONSOR", "Clinical Study Sponsor", "Fudan University"),
    ("STYPE", "Study Type", "INTERVENTIONAL"),
    ("RANDOM", "Trial is Randomized", "Y"),
    ("NARMS", "Planned Number of Arms", "2"),
    ("SDTIGVER", "SDTM IG Version", "3.4"),
    ("SDTMVER", "SDTM Version", "2.0"),
)


def group_id(instrument_id: str, visitnum: float) -> str:
    """QSGRPID of one form: the test code prefix and the visit number (unique per subject)."""
    return f"{category(instrument_id)[0]}-{visitnum:g}"


def _qs_forms(trial: Trial, rows: ItemRows, studyid: str) -> tuple[pa.Table, np.ndarray, np.ndarray]:
    """The forms QS has records of, in output order, with what their records share (one row per
    form: USUBJID, QSGRPID, QSCAT, QSBLFL, QSEVAL, VISITNUM, VISIT, QSDTC, QSDY, missed reason),
    for each row of ``rows`` the position of its form here (-1: none), and the positions of the
    missed forms (one QSALL record each)."""
    spec = trial.spec
    responded = {id(form): n for n, form in enumerate(rows.forms)}
    columns: list[list[Any]] = [[] for _ in range(10)]
    item_form = np.full(len(rows.forms), -1, np.int32)
    missed: list[int] = []
    for form in trial.in_range():
        if form.status in ("pending", "not_expected"):
            continue
        if form.status != "missed" and (form.response is None or id(form) not in responded):
            continue
        patient, tp = form.patient, form.timepoint
        rand = patient.randomization_date
        visitnum, visit_name = visit(tp.key, timepoint_code(tp.key, rand, spec.iso_dates), day_of(tp.target_date, rand))
        n = len(columns[0])
        if form.status == "missed":
            missed.append(n)
            reason = MISSED_REASONS.get(form.missing_reason or "", NOT_RECORDED)
            qsdtc = tp.target_date.isoformat() if spec.iso_dates else None
            qsdy, evaluator, base = day_of(tp.target_date, rand), None, None
        else:
            item_form[responded[id(form)]] = n
            response = form.response
            assert response is not None
            moment = response.first_submitted_at if form.status == "completed" else response.started_at
            local = moment.astimezone(zone(patient.tz)) if moment is not None else None
            qsdtc = (
                local.replace(tzinfo=None).isoformat(timespec="seconds")
                if local is not None and spec.iso_dates
                else None
            )
            qsdy = day_of(local_day(moment, patient.tz), rand)
            evaluator = EVALUATORS.get(response.respondent)
            base = "Y" if tp.key == spec.baseline_key and form.status == "completed" else None
            reason = None
        values: tuple[Any, ...] = (f"{studyid}-{patient.study_id}", group_id(form.instrument_id, visitnum))
        values += (category(form.instrument_id)[2], base, evaluator, visitnum, visit_name, qsdtc, qsdy, reason)
        for column, value in zip(columns, values):
            column.append(value)
    names = ("USUBJID", "QSGRPID", "QSCAT", "QSBLFL", "QSEVAL", "VISITNUM", "VISIT", "QSDTC", "QSDY", "reason")
    types = [pa.string()] * 5 + [pa.float64(), pa.string(), pa.string(), pa.int64(), pa.string()]
    table = pa.table([pa.array(c, t) for c, t in zip(columns, types)], names=names)
    return (
        table,
        item_form.take(rows.form_at.to_numpy()) if len(rows.forms) else np.empty(0, np.int32),
        np.array(missed, np.int32),
    )


def _qs_parts(trial: Trial, rows: ItemRows, studyid: str) -> Iterator[pa.Table]:
    """QS records a part of the forms at a time: the forms' shared values repeated beside each
    presented item's own (test code, result), looked up per distinct (item, answer)."""
    catalog = trial.catalog
    per_form, form_of_row, missed = _qs_forms(trial, rows, studyid)
    tests = test_codes(trial)
    # one test row per (instrument, item number): its codes and the item itself
    test_index: dict[tuple[str, int], int] = {}
    test_rows: list[tuple[str, str, str | None, str | None]] = []
    test_items: list[Any] = []
    for inst in ordered_instruments(catalog.registry):
        instrument = catalog.registry.get(inst)
        for number, (item, codes) in enumerate(zip(instrument.items, tests[inst]), start=1):
            test_index[(inst, number)] = len(test_rows)
            test_rows.append(codes)
            test_items.append(item)
    inst_codes = {inst: n for n, inst in enumerate(ordered_instruments(catalog.registry))}
    form_inst = pa.array([inst_codes[f.instrument_id] for f in rows.forms], pa.int32())
    base_of = np.array(
        [test_index.get((inst, 1), 0) - 1 for inst in ordered_instruments(catalog.registry)], np.int32
    )  # test row of item 1 of each instrument, minus one
    # Arrays over every item row (millions at 100,000 forms) are dropped as soon as used, and are
    # int32: positions among the item rows and forms (ItemRows holds them as int32 too).
    presented = pc.and_(rows.presented, pc.is_valid(rows.number))  # items of another version: no test code
    keep = np.flatnonzero(presented.to_numpy(zero_copy_only=False) & (form_of_row >= 0)).astype(np.int32)
    del presented
    picked = pa.array(keep, pa.int32())
    test = base_of[form_inst.take(rows.form_at.take(picked)).to_numpy()] + rows.number.take(picked).to_numpy()
    # record order: by form, a missed form's one record or a form's items in order
    record_form = np.concatenate([missed, form_of_row[keep]])
    del keep, form_of_row
    value = rows.value.take(picked)  # null: skipped or no value (NOT DONE)
    del picked
    # the result cells of each distinct (test, value): few, so formatted in Python
    encoded = pc.dictionary_encode(value.combine_chunks() if isinstance(value, pa.ChunkedArray) else value)
    del value
    distinct = encoded.dictionary.to_pylist()
    keys = test * (len(distinct) + 1) + pc.fill_null(encoded.indices, len(distinct)).to_numpy()
    del encoded, test
    unique, position = distinct_keys(keys)
    del keys
    cells: list[tuple[Any, ...]] = []
    for key in unique.tolist():
        t, v = divmod(key, len(distinct) + 1)
        testcd, name, evlint, evintx = test_rows[t]
        item = test_items[t]
        head = (testcd, name)
        tail = (evlint, evintx)
        if v == len(distinct):
            cells.append(head + (None, None, None, None, None, "NOT DONE", SKIPPED_REASON, False) + tail)
            continue
        answer = distinct[v]
        unit = ascii_text(item.unit) if item.unit else None
        if item.kind == "choice":
            code = int(answer)
            label = next((o.label["en"] for o in item.options if o.code == code), str(code))
            orres, stresc = ascii_text(label), str(code)
        else:
            stresc = repr(float(answer)).removesuffix(".0")
            orres = stresc
        cells.append(head + (orres, unit, stresc, float(answer), unit, None, None, True) + tail)
    cell_names = (
        *("QSTESTCD", "QSTEST", "QSORRES", "QSORRESU", "QSSTRESC", "QSSTRESN", "QSSTRESU", "QSSTAT"),
        *("QSREASND", "answered", "QSEVLINT", "QSEVINTX"),
    )
    cell_types = [pa.string()] * 5 + [pa.float64()] + [pa.string()] * 3 + [pa.bool_(), pa.string(), pa.string()]
    cell_table = pa.table(
        [pa.array(list(c), t) for c, t in zip(zip(*cells), cell_types)]
        if cells
        else [pa.array([], t) for t in cell_types],
        names=cell_names,
    )
    # record order: by form, a missed form's one record or a form's items in order
    order = np.argsort(record_form, kind="stable").astype(np.int32)
    record_form = record_form[order]
    cell_of = np.concatenate([np.full(len(missed), -1, np.int32), position.astype(np.int32)])[order]
    del order, unique, position
    first_of_patient = _group_starts(per_form["USUBJID"].combine_chunks(), record_form)
    release_memory()  # the temporaries above, before the parts are made
    bounds = np.searchsorted(record_form, np.arange(0, len(per_form) + FORMS_PER_PART, FORMS_PER_PART))
    for start, stop in zip(bounds[:-1], bounds[1:]):
        if start == stop and start:
            continue
        forms_at = pa.array(record_form[start:stop], pa.int32())
        shared = per_form.take(forms_at)
        cell_at = cell_of[start:stop]
        cell = cell_table.take(pa.array(cell_at, pa.int32(), mask=cell_at < 0))
        is_missed = pa.array(cell_at < 0)
        answered = pc.fill_null(cell["answered"], False)
        count = stop - start
        data = {
            "STUDYID": pa.array([studyid] * count, pa.string()),
            "DOMAIN": pa.array(["QS"] * count, pa.string()),
            "USUBJID": shared["USUBJID"],
            "QSSEQ": pa.array(np.arange(start, stop) - first_of_patient[start:stop] + 1, pa.int64()),
            "QSGRPID": shared["QSGRPID"],
            "QSTESTCD": pc.if_else(is_missed, "QSALL", cell["QSTESTCD"]),
            "QSTEST": pc.if_else(is_missed, "Questionnaire", cell["QSTEST"]),
            "QSCAT": shared["QSCAT"],
            "QSSTAT": pc.if_else(is_missed, "NOT DONE", cell["QSSTAT"]),
            "QSREASND": pc.if_else(is_missed, shared["reason"], cell["QSREASND"]),
            "QSBLFL": pc.if_else(answered, shared["QSBLFL"], pa.scalar(None, pa.string())),
            "QSEVAL": shared["QSEVAL"],
            "VISITNUM": shared["VISITNUM"],
            "VISIT": shared["VISIT"],
            "QSDTC": shared["QSDTC"],
            "QSDY": shared["QSDY"],
        }
        for name in ("QSORRES", "QSORRESU", "QSSTRESC", "QSSTRESN", "QSSTRESU", "QSEVLINT", "QSEVINTX"):
            data[name] = cell[name]
        yield columns_table(QS_COLUMNS, data)


def _group_starts(usubjid: pa.Array, record_form: np.ndarray) -> np.ndarray:
    """For each record (by form, in order), the position of its subject's first record."""
    if not len(record_form):
        return np.empty(0, np.int32)
    subject = pc.dictionary_encode(usubjid).indices.to_numpy()[record_form]
    change = np.flatnonzero(np.concatenate([[True], subject[1:] != subject[:-1]])).astype(np.int32)
    return np.repeat(change, np.diff(np.concatenate([change, [len(record_form)]])))


def qs(trial: Trial, rows: ItemRows, *, studyid: str, spool: bool = False) -> Dataset:
    """QS (``spool``: its rows kept in a temporary file instead of memory)."""
    parts = _qs_parts(trial, rows, studyid)
    if spool:
        sink = Spool(QS_COLUMNS)
        for part in parts:
            sink.append(part)
        sink.finish()
        return Dataset("qs", bi("Questionnaires", "问卷"), QS_COLUMNS, sink.schema.empty_table(), xpt="QS", spool=sink)
    tables = list(parts)
    table = pa.concat_tables(tables) if len(tables) > 1 else tables[0]
    return Dataset("qs", bi("Questionnaires", "问卷"), QS_COLUMNS, table, xpt="QS")


def suppqs(trial: Trial, *, studyid: str) -> Dataset:
    def records() -> Iterator[tuple[Any, ...]]:  # converted a batch at a time (table_of), never all held
        for form in trial.in_range():
            response = form.response
            if form.status not in ("completed", "partial") or response is None:
                continue
            patient, tp = form.patient, form.timepoint
            code = timepoint_code(tp.key, patient.randomization_date, trial.spec.iso_dates)
            visitnum, _name = visit(tp.key, code, day_of(tp.target_date, patient.randomization_date))
            grp = group_id(form.instrument_id, visitnum)
            usubjid = f"{studyid}-{patient.study_id}"
            values = {
                "QSRESP": cols.RESPONDENT_LABELS[response.respondent]["en"].upper()
                if response.respondent in cols.RESPONDENT_LABELS
                else response.respondent.upper(),
                "QSRELPR": None,
                "QSMODE": cols.MODE_LABELS[response.mode]["en"].upper() if response.mode in cols.MODE_LABELS else None,
            }
            if response.respondent == "proxy":
                relationship = (
                    response.relationship
                    if response.relationship is not None and response.relationship in cols.RELATIONSHIP_LABELS
                    else "other"
                )
                values["QSRELPR"] = cols.RELATIONSHIP_LABELS[relationship]["en"].upper()
            for qnam, qval in values.items():
                if qval:
                    yield (studyid, "QS", usubjid, "QSGRPID", grp, qnam, SUPP_QUALIFIERS[qnam], ascii_text(qval), "CRF")

    return Dataset(
        "suppqs",
        bi("Supplemental Qualifiers for QS", "QS补充限定符"),
        SUPPQS_COLUMNS,
        table_of(SUPPQS_COLUMNS, records()),
    )


def dm(trial: Trial, *, studyid: str, country: str = "CHN") -> Dataset:
    iso = trial.spec.iso_dates
    records = []
    for p in trial.patients:
        arm = cols.ARM_LABELS[p.arm]["en"] if p.arm in cols.ARM_LABELS else p.arm
        died = p.status == "died"
        records.append(
            (studyid, "DM", f"{studyid}-{p.study_id}", p.study_id, p.randomization_date.isoformat() if iso else None)
            + (p.site, "U", p.arm, arm, p.arm, arm, country, "Y" if died else None)
            + ((p.status_date.isoformat() if iso and died and p.status_date else None),)
        )
    return Dataset("dm", bi("Demographics", "人口学"), DM_COLUMNS, table_of(DM_COLUMNS, records))


def ts(*, studyid: str) -> Dataset:
    records = [(studyid, "TS", n, code, name, value[:200]) for n, (code, name, value) in enumerate(TRIAL_SUMMARY, 1)]
    return Dataset("ts", bi("Trial Summary", "试验概要"), TS_COLUMNS, table_of(TS_COLUMNS, records))


def tv(trial: Trial, *, studyid: str) -> Dataset:
    """Planned visits: every visit the schedule planned for the exported patients (by VISITNUM)."""
    visits: dict[float, tuple[str, str]] = {}
    for form in trial.in_range():
        tp, rand = form.timepoint, form.patient.randomization_date
        code = timepoint_code(tp.key, rand, trial.spec.iso_dates)
        visitnum, name = visit(tp.key, code, day_of(tp.target_date, rand))
        rule = ascii_text(f"Schedule rule {tp.rule_id}: anchored on {tp.anchor_kind.replace('_', ' ')}")
        visits.setdefault(visitnum, (name, rule))
    records = [(studyid, "TV", num, name, rule) for num, (name, rule) in sorted(visits.items())]
    return Dataset("tv", bi("Trial Visits", "试验访视"), TV_COLUMNS, table_of(TV_COLUMNS, records))


def build_domains(trial: Trial, rows: ItemRows, *, studyid: str, spool: bool = False) -> list[Dataset]:
    """QS, SUPPQS, DM, TS, TV (in that order); ``spool``: QS kept in a temporary file."""
    return [
        qs(trial, rows, studyid=studyid, spool=spool),
        suppqs(trial, studyid=studyid),
        dm(trial, studyid=studyid),
    ] + [
        ts(studyid=studyid),
        tv(trial, studyid=studyid),
    ]
