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

import pyarrow.compute as pc

from qol_app.export import columns as cols
from qol_app.export.asof import local_day, zone
from qol_app.export.build import ItemRows, Trial, ascii_text, day_of, fit_words, ordered_instruments, timepoint_code
from qol_app.export.schema import Column, Dataset, bi, spool_of, table_of

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


def _qs_records(trial: Trial, rows: ItemRows, studyid: str) -> Iterator[tuple[Any, ...]]:
    spec, catalog = trial.spec, trial.catalog
    tests = test_codes(trial)
    answers = trial.answers
    values = answers["value"].take(rows.at).to_pylist() if len(answers) else [None] * len(rows.item)
    skipped = answers["skipped"].take(rows.at).to_pylist() if len(answers) else [None] * len(rows.item)
    form_at = rows.form_at.to_pylist()
    presented = pc.is_valid(rows.at).to_pylist()
    items_of: dict[int, list[int]] = {}
    for n, (f, shown) in enumerate(zip(form_at, presented)):
        if shown:
            items_of.setdefault(f, []).append(n)
    responded = {id(form): n for n, form in enumerate(rows.forms)}
    seq: dict[str, int] = {}

    for form in trial.in_range():
        if form.status in ("pending", "not_expected"):
            continue
        patient, tp = form.patient, form.timepoint
        rand = patient.randomization_date
        usubjid = f"{studyid}-{patient.study_id}"
        visitnum, visit_name = visit(tp.key, timepoint_code(tp.key, rand, spec.iso_dates), day_of(tp.target_date, rand))
        grp = group_id(form.instrument_id, visitnum)
        cat = category(form.instrument_id)[2]
        if form.status == "missed":
            reason = MISSED_REASONS.get(form.missing_reason or "", NOT_RECORDED)
            seq[usubjid] = seq.get(usubjid, 0) + 1
            planned = tp.target_date.isoformat() if spec.iso_dates else None
            yield (
                (studyid, "QS", usubjid, seq[usubjid], grp, "QSALL", "Questionnaire", cat)
                + (None, None, None, None, None, "NOT DONE", reason, None, None, None, None, visitnum, visit_name)
                + (planned, day_of(tp.target_date, rand))
            )
            continue
        response = form.response
        if response is None or id(form) not in responded:
            continue
        moment = response.first_submitted_at if form.status == "completed" else response.started_at
        local = moment.astimezone(zone(patient.tz)) if moment is not None else None
        qsdtc = (
            local.replace(tzinfo=None).isoformat(timespec="seconds") if local is not None and spec.iso_dates else None
        )
        qsdy = day_of(local_day(moment, patient.tz), rand)
        evaluator = EVALUATORS.get(response.respondent)
        base = "Y" if tp.key == spec.baseline_key and form.status == "completed" else None
        instrument = catalog.registry.get(form.instrument_id)
        by_item = dict(zip(catalog.items(form.instrument_id), tests[form.instrument_id]))
        for n in items_of.get(responded[id(form)], ()):
            item_id = rows.item[n]
            if item_id not in by_item:
                continue  # an item of another instrument version: no test code for it
            testcd, test, evlint, evintx = by_item[item_id]
            item = instrument.item(item_id)
            seq[usubjid] = seq.get(usubjid, 0) + 1
            first = (studyid, "QS", usubjid, seq[usubjid], grp, testcd, test, cat)
            tail = (evaluator, evlint, evintx, visitnum, visit_name, qsdtc, qsdy)
            unit = ascii_text(item.unit) if item.unit else None
            value = values[n]
            if skipped[n] or value is None:
                yield first + (None, None, None, None, None, "NOT DONE", SKIPPED_REASON, None) + tail
                continue
            if item.kind == "choice":
                code = int(value)
                label = next((o.label["en"] for o in item.options if o.code == code), str(code))
                orres, stresc = ascii_text(label), str(code)
            else:
                stresc = repr(float(value)).removesuffix(".0")
                orres = stresc
            yield first + (orres, unit, stresc, float(value), unit, None, None, base) + tail


def qs(trial: Trial, rows: ItemRows, *, studyid: str, spool: bool = False) -> Dataset:
    """QS (``spool``: its rows kept in a temporary file instead of memory)."""
    records = _qs_records(trial, rows, studyid)
    if spool:
        sink = spool_of(QS_COLUMNS, records, batch=10_000)
        return Dataset("qs", bi("Questionnaires", "问卷"), QS_COLUMNS, sink.schema.empty_table(), xpt="QS", spool=sink)
    return Dataset("qs", bi("Questionnaires", "问卷"), QS_COLUMNS, table_of(QS_COLUMNS, records), xpt="QS")


def suppqs(trial: Trial, *, studyid: str) -> Dataset:
    records = []
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
                records.append(
                    (studyid, "QS", usubjid, "QSGRPID", grp, qnam, SUPP_QUALIFIERS[qnam], ascii_text(qval), "CRF")
                )
    return Dataset(
        "suppqs",
        bi("Supplemental Qualifiers for QS", "QS补充限定符"),
        SUPPQS_COLUMNS,
        table_of(SUPPQS_COLUMNS, records),
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
