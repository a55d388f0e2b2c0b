"""CDISC SDTM QS (Questionnaires) domain from plain values, as a streaming `Dataset`.

Conventions followed (SDTMIG QS and the CDISC QRS supplements for EORTC instruments):
- One record per presented item. QSORRES holds the response text ("Not at all"), QSSTRESC and
  QSSTRESN the numeric code; numeric items (VAS, temperature) carry the number in all three.
- A presented but skipped item: QSSTAT = "NOT DONE", QSREASND = "SKIPPED BY RESPONDENT".
  Items not presented get no record.
- A missed form: one record QSTESTCD = "QSALL", QSTEST = "Questionnaire", QSSTAT = "NOT DONE",
  QSREASND = the nurse-entered reason. Forms `not_expected` (death, withdrawal) get no record:
  they were not planned any more.
- QSEVAL = "STUDY SUBJECT" for self and self-assisted forms, "CAREGIVER" for proxy forms.
- QSDTC is the collection time in the site's local wall time (ISO 8601, no offset) and QSDY is
  counted from the subject's reference start date, with no day 0.
- QSSEQ is 1, 2, ... per subject in the order records are produced: pass forms sorted by subject,
  visit and instrument to get conventional numbering. Only a counter per subject is kept, so
  rows stream.

Not included: derived scale scores. In SDTM they belong in QS only when collected on the CRF;
sponsor-derived scores (all EORTC and EQ-5D scales here) are analysis data for ADaM (ADQS), and
the long scored export already carries them.

Test codes: the official CDISC QSTESTCD/QSTEST values for EORTC instruments are distributed by
EORTC to licensed sponsors, so this module does not invent "official" ones. The caller supplies
codes per item; `sponsor_testcd` builds documented sponsor-defined ones (e.g. C30Q01) to be
replaced with the licensed CDISC terminology when the sponsor has it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Literal

from qol_app.export.dataset import Column, Dataset

FormStatus = Literal["completed", "partial", "missed", "not_expected"]
Respondent = Literal["self", "self_assisted", "proxy"]

SKIPPED_REASON = "SKIPPED BY RESPONDENT"
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
EVALUATORS: Mapping[str, str] = {
    "self": "STUDY SUBJECT",
    "self_assisted": "STUDY SUBJECT",
    "proxy": "CAREGIVER",
}

_TESTCD = re.compile(r"^[A-Z][A-Z0-9_]{0,7}$")


def sponsor_testcd(prefix: str, number: int) -> str:
    """Sponsor-defined QSTESTCD: prefix + two-digit item number, e.g. ("C30Q", 1) -> "C30Q01"."""
    code = f"{prefix.upper()}{number:02d}"
    if not _TESTCD.match(code):
        raise ValueError(f"QSTESTCD {code!r}: 1-8 characters, A-Z 0-9 _, starting with a letter")
    return code


@dataclass(frozen=True)
class QsItem:
    """One item: app item id, QSTESTCD (<= 8), QSTEST (<= 40), response texts for coded items."""

    item_id: str
    testcd: str
    test: str
    responses: Mapping[int, str] = field(default_factory=dict)
    subcategory: str | None = None
    unit: str | None = None

    def __post_init__(self) -> None:
        if not _TESTCD.match(self.testcd) or self.testcd == "QSALL":
            raise ValueError(f"QSTESTCD {self.testcd!r}: 1-8 characters, A-Z 0-9 _, starting with a letter")
        if not self.test or len(self.test) > 40:
            raise ValueError(f"QSTEST for {self.testcd}: 1-40 characters")


@dataclass(frozen=True)
class QsInstrument:
    """An instrument: QSCAT (e.g. "EORTC QLQ-C30 V3.0"), its items, and QSEVLINT (e.g. "-P1W")."""

    instrument_id: str
    category: str
    items: tuple[QsItem, ...]
    evaluation_interval: str | None = None

    def __post_init__(self) -> None:
        codes = [i.testcd for i in self.items]
        if len(set(codes)) != len(codes):
            raise ValueError(f"{self.category}: QSTESTCD values must be unique")
        if len({i.item_id for i in self.items}) != len(self.items):
            raise ValueError(f"{self.category}: item ids must be unique")


@dataclass(frozen=True)
class QsForm:
    """One expected form of one subject at one visit.

    `collected_at` is timezone-aware in the site's local time (QSDTC keeps its wall time).
    `answers`: item id -> code or number; None = presented and skipped; absent = not presented.
    """

    usubjid: str
    instrument_id: str
    visitnum: float
    visit: str
    status: FormStatus
    reference_date: date
    collected_at: datetime | None = None
    respondent: Respondent | None = None
    answers: Mapping[str, int | float | None] = field(default_factory=dict)
    missed_reason: str | None = None
    missed_reason_text: str | None = None


def _col(name: str, kind: Any, en: str, zh: str) -> Column:
    return Column(name, kind, {"en": en, "zh_Hans": zh})


QS_COLUMNS: tuple[Column, ...] = (
    _col("STUDYID", "string", "Study Identifier", "研究标识"),
    _col("DOMAIN", "string", "Domain Abbreviation", "域缩写"),
    _col("USUBJID", "string", "Unique Subject Identifier", "受试者唯一标识"),
    _col("QSSEQ", "integer", "Sequence Number", "序号"),
    _col("QSTESTCD", "string", "Question Short Name", "问题简称"),
    _col("QSTEST", "string", "Question Name", "问题名称"),
    _col("QSCAT", "string", "Category of Question", "问题类别"),
    _col("QSSCAT", "string", "Subcategory for Question", "问题子类别"),
    _col("QSORRES", "string", "Finding in Original Units", "原始结果"),
    _col("QSORRESU", "string", "Original Units", "原始单位"),
    _col("QSSTRESC", "string", "Character Result/Finding in Std Format", "标准化字符结果"),
    _col("QSSTRESN", "float", "Numeric Finding in Standard Units", "标准化数值结果"),
    _col("QSSTRESU", "string", "Standard Units", "标准单位"),
    _col("QSSTAT", "string", "Completion Status", "完成状态"),
    _col("QSREASND", "string", "Reason Not Performed", "未完成原因"),
    _col("QSEVAL", "string", "Evaluator", "评估者"),
    _col("QSEVLINT", "string", "Evaluation Interval", "评估区间"),
    _col("VISITNUM", "float", "Visit Number", "访视编号"),
    _col("VISIT", "string", "Visit Name", "访视名称"),
    _col("QSDTC", "string", "Date/Time of Finding", "结果日期/时间"),
    _col("QSDY", "integer", "Study Day of Finding", "研究日"),
)
"""QS variables in SDTMIG order, labels as in the SDTMIG (all within XPT v5's 40 characters)."""


def study_day(day: date, reference: date) -> int:
    """SDTM study day: reference date is day 1, the day before is -1; there is no day 0."""
    delta = (day - reference).days
    return delta + 1 if delta >= 0 else delta


def _number_text(value: float) -> str:
    return repr(float(value)).removesuffix(".0")


def _result(item: QsItem, value: float, where: str) -> tuple[str, str, float]:
    """(QSORRES, QSSTRESC, QSSTRESN) for one answer."""
    if type(value) not in (int, float):
        raise ValueError(f"{where}: {value!r} is not a number")
    if item.responses:
        if type(value) is not int or value not in item.responses:
            raise ValueError(f"{where}: code {value!r} not in {sorted(item.responses)}")
        return item.responses[value], str(value), float(value)
    text = _number_text(value)
    return text, text, float(value)


def _form_rows(form: QsForm, instrument: QsInstrument) -> Iterator[dict[str, Any]]:
    """The QS records of one form, without STUDYID/DOMAIN/QSSEQ."""
    common = {
        "USUBJID": form.usubjid,
        "QSCAT": instrument.category,
        "VISITNUM": float(form.visitnum),
        "VISIT": form.visit,
    }
    if form.status == "missed":
        reason = None
        if form.missed_reason is not None:
            if form.missed_reason not in MISSED_REASONS:
                raise ValueError(f"{form.usubjid} {form.visit}: unknown missed reason {form.missed_reason!r}")
            reason = MISSED_REASONS[form.missed_reason]
        if reason and form.missed_reason_text:
            reason = f"{reason}: {form.missed_reason_text}"
        yield {**common, "QSTESTCD": "QSALL", "QSTEST": "Questionnaire", "QSSTAT": "NOT DONE", "QSREASND": reason}
        return
    if form.collected_at is None or form.collected_at.utcoffset() is None:
        raise ValueError(f"{form.usubjid} {form.visit}: a received form needs a timezone-aware collected_at")
    evaluator = EVALUATORS.get(form.respondent or "")
    if evaluator is None:
        raise ValueError(f"{form.usubjid} {form.visit}: respondent {form.respondent!r} not in {sorted(EVALUATORS)}")
    unknown = sorted(set(form.answers) - {i.item_id for i in instrument.items})
    if unknown:
        raise ValueError(f"{form.usubjid} {form.visit}: unknown items {unknown} for {instrument.category}")
    common |= {
        "QSEVAL": evaluator,
        "QSEVLINT": instrument.evaluation_interval,
        "QSDTC": form.collected_at.replace(tzinfo=None).isoformat(timespec="seconds"),
        "QSDY": study_day(form.collected_at.date(), form.reference_date),
    }
    for item in instrument.items:
        if item.item_id not in form.answers:
            continue  # not presented
        record = {**common, "QSTESTCD": item.testcd, "QSTEST": item.test, "QSSCAT": item.subcategory}
        value = form.answers[item.item_id]
        if value is None:
            yield record | {"QSSTAT": "NOT DONE", "QSREASND": SKIPPED_REASON}
            continue
        orres, stresc, stresn = _result(item, value, f"{form.usubjid} {form.visit} {item.item_id}")
        yield record | {
            "QSORRES": orres,
            "QSORRESU": item.unit,
            "QSSTRESC": stresc,
            "QSSTRESN": stresn,
            "QSSTRESU": item.unit,
        }


def _rows(forms: Iterable[QsForm], instruments: Mapping[str, QsInstrument], studyid: str) -> Iterator[tuple[Any, ...]]:
    names = [c.name for c in QS_COLUMNS]
    last_seq: dict[str, int] = {}
    for form in forms:
        if form.status == "not_expected":
            continue
        instrument = instruments.get(form.instrument_id)
        if instrument is None:
            raise ValueError(f"{form.usubjid} {form.visit}: unknown instrument {form.instrument_id!r}")
        for record in _form_rows(form, instrument):
            seq = last_seq.get(form.usubjid, 0) + 1
            last_seq[form.usubjid] = seq
            record |= {"STUDYID": studyid, "DOMAIN": "QS", "QSSEQ": seq}
            yield tuple(record.get(name) for name in names)


def qs_dataset(
    forms: Iterable[QsForm], instruments: Sequence[QsInstrument] | Mapping[str, QsInstrument], *, studyid: str
) -> Dataset:
    """The QS domain as a `Dataset` named `qs` (so `write_dataset("xpt", ...)` gives qs.xpt, v5).

    `forms` are read lazily while the dataset is written; errors (unknown instrument, item or
    code, a received form without a time) surface then, naming the subject and visit.
    """
    catalogue = dict(instruments) if isinstance(instruments, Mapping) else {i.instrument_id: i for i in instruments}
    return Dataset(
        name="qs",
        label={"en": "Questionnaires", "zh_Hans": "问卷"},
        columns=QS_COLUMNS,
        rows=_rows(forms, catalogue, studyid),
    )
