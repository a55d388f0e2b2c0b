"""Adapters from export records to the standard formats: FHIR R4 bundle and CDISC SDTM QS.

Both reuse the pure modules ``export.fhir`` and ``export.sdtm``; this file only maps the app's
instruments, forms and timepoints onto them and keeps the minimum-necessary rules:
- FHIR: patients by pseudonymous study id only; ``authored`` only with ISO dates, otherwise the
  study day travels in an extension (``<base>/StructureDefinition/study-day``).
- SDTM: QSDTC (a calendar date-time) is emptied unless ISO dates are on; QSDY is always there;
  the free text of a missed reason "other" is never passed on.
The bundle is written as a stream (one patient's resources at a time), not built in memory.
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from qol_app.export.builders.records import PatientForms, day_of, local_day, relationship_code, timepoint_code
from qol_app.export.builders.tables import BuildOptions, Catalog, ordered_instruments, short_name
from qol_app.export.dataset import Dataset
from qol_app.export.fhir import (
    FhirAnswerOption,
    FhirItem,
    FhirQuestionnaire,
    FhirResponse,
    build_bundle,
    questionnaire_resource,
)
from qol_app.export.sdtm import QS_COLUMNS, QsForm, QsInstrument, QsItem, qs_dataset, sponsor_testcd
from qol_app.export.writers.base import utc_iso
from qol_app.scheduling.timewindows import zone

#: App proxy relationship -> export.fhir.RELATIONSHIPS key.
FHIR_RELATIONSHIPS = {
    "spouse_partner": "spouse",
    "child": "child",
    "parent": "parent",
    "sibling": "sibling",
    "other_relative": "other_family",
    "friend": "friend",
    "professional_carer": "caregiver",
    "other": "other",
}
FHIR_ITEM_TYPES = {"choice": "choice", "vas": "integer", "number": "decimal"}
_FHIR_UNSAFE = re.compile(r"[^A-Za-z0-9\-.]+")


def fhir_id(text: str) -> str:
    """A valid FHIR id ([A-Za-z0-9-.], <= 64) from any text; long ones end in a short hash."""
    safe = _FHIR_UNSAFE.sub("-", text).strip("-") or "x"
    if len(safe) <= 64:
        return safe
    return f"{safe[:47]}-{hashlib.sha256(text.encode()).hexdigest()[:16]}"


def fhir_questionnaires(catalog: Catalog, instrument_ids: Sequence[str]) -> list[FhirQuestionnaire]:
    """One Questionnaire per instrument (registered version), English item texts and option labels."""
    out = []
    for inst in ordered_instruments(instrument_ids):
        instrument = catalog.registry.get(inst)
        items = tuple(
            FhirItem(
                item.id,
                item.text["en"],
                FHIR_ITEM_TYPES[item.kind],  # type: ignore[arg-type]
                tuple(FhirAnswerOption(o.code, o.label["en"]) for o in item.options),
            )
            for item in instrument.items
        )
        out.append(FhirQuestionnaire(fhir_id(inst), instrument.version, instrument.name["en"], items, "en"))
    return out


def _typed(kind: str, value: float) -> int | float:
    return float(value) if kind == "number" else int(value)


def fhir_responses(pf: PatientForms, catalog: Catalog, opts: BuildOptions) -> list[tuple[FhirResponse, int | None]]:
    """QuestionnaireResponses (with their study day) of a patient's forms that have answers."""
    patient = pf.patient
    out = []
    for form in pf.forms:
        response = form.response
        if not form.timepoint.in_range or response is None:
            continue
        instrument = catalog.registry.get(form.instrument_id)
        answers = {}
        for item_id, (value, skipped) in form.answers.items():
            if instrument.has_item(item_id):
                answers[item_id] = None if skipped or value is None else _typed(instrument.item(item_id).kind, value)
        done = form.status == "completed"
        moment = response.first_submitted_at if done else response.started_at
        relationship = relationship_code(response.relationship) if response.respondent == "proxy" else None
        code = timepoint_code(form.timepoint.key, patient.randomization_date, opts.iso_dates)
        out.append(
            (
                FhirResponse(
                    response_id=fhir_id(f"{patient.study_id}-{code}-{short_name(form.instrument_id)}"),
                    patient_id=fhir_id(patient.study_id),
                    questionnaire_id=fhir_id(form.instrument_id),
                    questionnaire_version=response.instrument_version,
                    status="completed" if done else "in-progress",
                    authored=moment if opts.iso_dates else None,  # type: ignore[arg-type]
                    respondent=response.respondent,  # type: ignore[arg-type]
                    answers=answers,
                    language=response.language,
                    proxy_relationship=FHIR_RELATIONSHIPS[relationship or "other"]
                    if response.respondent == "proxy"
                    else None,
                ),
                day_of(local_day(moment, patient.tz), patient.randomization_date),
            )
        )
    return out


def write_fhir_bundle(
    stream: Iterable[PatientForms],
    path: Path,
    catalog: Catalog,
    instrument_ids: Sequence[str],
    opts: BuildOptions,
    *,
    base_url: str,
) -> Path:
    """Write a FHIR R4 collection Bundle to ``path``, one patient's resources at a time.

    Entries: the Questionnaires, then per patient (study id order) its Patient, RelatedPersons
    and QuestionnaireResponses. Same records and as-of time -> same bytes.
    """
    base_url = base_url.rstrip("/")
    questionnaires = fhir_questionnaires(catalog, instrument_ids)
    day_url = f"{base_url}/StructureDefinition/study-day"
    with Path(path).open("w", encoding="utf-8", newline="\n") as out:
        out.write(
            f'{{"resourceType":"Bundle","type":"collection","timestamp":{json.dumps(utc_iso(opts.as_of))},"entry":['
        )
        first = True

        def emit(entry: Mapping[str, Any]) -> None:
            nonlocal first
            out.write(
                ("\n" if first else ",\n")
                + json.dumps(entry, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
            )
            first = False

        for q in questionnaires:
            resource = questionnaire_resource(q, base_url)
            emit({"fullUrl": f"{base_url}/Questionnaire/{resource['id']}", "resource": resource})
        for pf in stream:
            responses = fhir_responses(pf, catalog, opts)
            if not responses:
                continue
            days = {r.response_id: day for r, day in responses}
            bundle = build_bundle(questionnaires, [r for r, _d in responses], base_url=base_url, as_of=opts.as_of)
            for entry in bundle["entry"]:
                resource = entry["resource"]
                if resource["resourceType"] == "Questionnaire":
                    continue
                if resource["resourceType"] == "QuestionnaireResponse":
                    if days.get(resource["id"]) is not None:
                        resource["extension"].append({"url": day_url, "valueInteger": days[resource["id"]]})
                    if not resource["item"]:
                        del resource["item"]  # FHIR JSON has no empty arrays
                emit(entry)
        out.write("\n]}\n")
    return Path(path)


# ---------------------------------------------------------------- SDTM QS

QS_PREFIXES = {
    "eortc_qlq_c30": "C30Q",
    "eortc_qlq_bn20": "BN20Q",
    "eortc_qlq_br23": "BR23Q",
    "eq5d5l": "EQ5D",
    "symptom_diary": "DIARY",
}
QS_INTERVALS = {"eortc_qlq_c30": "-P1W", "eortc_qlq_bn20": "-P1W", "eortc_qlq_br23": "-P1W", "symptom_diary": "-P1D"}
_ASCII = str.maketrans({"–": "-", "—": "-", "’": "'", "‘": "'", "“": '"', "”": '"', "°": ""})


def ascii_text(text: str) -> str:
    """Submission data in ASCII (XPT has no encoding marker): dashes and quotes folded, rest dropped."""
    folded = unicodedata.normalize("NFKD", text.translate(_ASCII))
    return " ".join(folded.encode("ascii", "ignore").decode().split())


def qs_instruments(catalog: Catalog, instrument_ids: Sequence[str]) -> dict[str, QsInstrument]:
    """QS metadata per instrument with sponsor-defined test codes (see export.sdtm)."""
    out = {}
    for inst in ordered_instruments(instrument_ids):
        instrument = catalog.registry.get(inst)
        prefix = QS_PREFIXES.get(inst) or short_name(inst)[:6]
        items = tuple(
            QsItem(
                item.id,
                sponsor_testcd(prefix, number),
                ascii_text(item.text["en"])[:40].strip() or item.id,
                {o.code: ascii_text(o.label["en"]) for o in item.options},
                unit=ascii_text(item.unit) if item.unit else None,
            )
            for number, item in enumerate(instrument.items, start=1)
        )
        name = ascii_text(instrument.name["en"]).split(" (")[0].upper()
        out[inst] = QsInstrument(inst, f"{name} V{instrument.version}", items, QS_INTERVALS.get(inst))
    return out


_VISITS = (
    (re.compile(r"^sys-c(\d+)$"), 100, "AFTER CYCLE {n}"),
    (re.compile(r"^prog-(\d+)$"), 200, "PROGRESSION {n}"),
    (re.compile(r"^fu-(\d+)$"), 400, "FOLLOW-UP {n}"),
    (re.compile(r"^cal-(\d+)$"), 500, "VISIT {n}"),
)


def visit(key: str, code: str, study_day: int | None) -> tuple[float, str]:
    """(VISITNUM, VISIT): baseline 1, after cycle n 100+n, progression n 200+n, end of treatment 300,
    follow-up k 400+k, calendar visit n 500+n, diary days 1000 + study day, anything else 9000."""
    if key == "baseline":
        return 1.0, "BASELINE"
    if key == "eot":
        return 300.0, "END OF TREATMENT"
    if key.startswith("diary-") and study_day is not None:
        return 1000.0 + study_day, f"DIARY DAY {study_day}"
    for pattern, base, name in _VISITS:
        match = pattern.match(key)
        if match:
            return float(base + int(match[1])), name.format(n=match[1])
    return 9000.0, code.upper()[:40]


def qs_forms(stream: Iterable[PatientForms], catalog: Catalog, opts: BuildOptions, *, studyid: str) -> Iterator[QsForm]:
    """QS forms in subject, visit and instrument order; pending forms (not decided yet) are left out."""
    for pf in stream:
        patient = pf.patient
        rand = patient.randomization_date
        tz = zone(patient.tz)
        for form in pf.forms:
            tp, response = form.timepoint, form.response
            if not tp.in_range or form.status == "pending":
                continue
            code = timepoint_code(tp.key, rand, opts.iso_dates)
            visitnum, visit_name = visit(tp.key, code, day_of(tp.target_date, rand))
            collected = None
            answers: dict[str, int | float | None] = {}
            if response is not None and form.status in ("completed", "partial"):
                moment = response.first_submitted_at if form.status == "completed" else response.started_at
                collected = moment.astimezone(tz) if moment is not None else None
                instrument = catalog.registry.get(form.instrument_id)
                for item_id, (value, skipped) in form.answers.items():
                    if instrument.has_item(item_id):
                        answers[item_id] = (
                            None if skipped or value is None else _typed(instrument.item(item_id).kind, value)
                        )
            status = form.status
            yield QsForm(
                usubjid=f"{studyid}-{patient.study_id}",
                instrument_id=form.instrument_id,
                visitnum=visitnum,
                visit=visit_name,
                status=status,  # type: ignore[arg-type]
                reference_date=rand,
                collected_at=collected,
                respondent=response.respondent if response else None,  # type: ignore[arg-type]
                answers=answers,
                missed_reason=form.missing_reason if status == "missed" else None,
            )


def qs_export(
    stream: Iterable[PatientForms], catalog: Catalog, instrument_ids: Sequence[str], opts: BuildOptions, *, studyid: str
) -> Dataset:
    """The QS dataset (``qs``); QSDTC emptied unless ISO dates are on."""
    dataset = qs_dataset(
        qs_forms(stream, catalog, opts, studyid=studyid), qs_instruments(catalog, instrument_ids), studyid=studyid
    )
    if opts.iso_dates:
        return dataset
    at = [c.name for c in QS_COLUMNS].index("QSDTC")
    rows = (row[:at] + (None,) + row[at + 1 :] for row in dataset.rows)
    return Dataset(dataset.name, dataset.label, dataset.columns, rows)
