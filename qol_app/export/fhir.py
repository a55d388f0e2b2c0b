"""FHIR R4 collection Bundle (4.0.1; also valid R4B) of the trial's forms, written as a stream.

Entries: the StructureDefinitions of the two extensions used, the Questionnaires (English), then
per patient (study id order) its Patient, RelatedPersons, QuestionnaireResponses and Provenances.
- Patients appear only by pseudonymous study id (Patient.identifier); no names or dates of birth.
- Respondent: ``self`` and ``self_assisted`` -> author and source are the Patient; ``proxy`` ->
  a RelatedPerson (one per patient and relationship) whose relationship is the standard code of
  the app's relationship (``columns.RELATIONSHIP_STANDARD``: HL7 v3 RoleCode, SNOMED CT, v2 0131).
  The app's respondent code also travels in the ``respondent`` extension, so ``self_assisted``
  survives the round trip.
- Items: a linkId not presented is left out; a presented but skipped one is kept with the
  data-absent-reason extension ``asked-declined`` (CLINICAL.md: an explicit skip, distinct from
  not presented). Item text is in the response's language. Choice answers are Codings whose
  system is per item (``<base>/CodeSystem/<questionnaire>-<linkId>``).
- Corrections: a form whose current revision is a staff correction has status ``amended`` and one
  Provenance per correction (target: the response; agent: the staff member by opaque staff id,
  as author; activity UPDATE; reason: records management). The staff member's free-text reason
  stays in the audit trail, never in the export.
- Calendar times (``authored``, Provenance ``recorded``) only with ISO dates; otherwise the study
  day travels in the ``study-day`` extension and ``recorded`` (required) is marked with the
  data-absent-reason ``masked``.
Both extensions are defined by StructureDefinitions inside the bundle; the base URL is the
installation's public address (QOL_PUBLIC_BASE_URL) + ``/fhir``.
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.compute as pc

from qol_app.export import columns as cols
from qol_app.export.asof import Form, local_day
from qol_app.export.build import ItemRows, Trial, day_of, distinct_keys, short_name, timepoint_code
from qol_app.export.writers.base import utc_iso

DATA_ABSENT_REASON = "http://hl7.org/fhir/StructureDefinition/data-absent-reason"
ITEM_TYPES = {"choice": "choice", "vas": "integer", "number": "decimal"}
_UNSAFE = re.compile(r"[^A-Za-z0-9\-.]+")
EXTENSIONS = {
    "respondent": (
        "Respondent",
        "Who answered the form: self, self_assisted (the patient, with help) or proxy.",
        "code",
        "QuestionnaireResponse",
    ),
    "study-day": (
        "StudyDay",
        "Study day (randomization = day 1, no day 0) in the patient's local calendar.",
        "integer",
        None,
    ),
}


def fhir_id(text: str) -> str:
    """A valid FHIR id ([A-Za-z0-9-.], <= 64) from any text; long ones end in a short hash."""
    safe = _UNSAFE.sub("-", text).strip("-") or "x"
    if len(safe) <= 64:
        return safe
    return f"{safe[:47]}-{hashlib.sha256(text.encode()).hexdigest()[:16]}"


def _language(locale: str) -> str:
    return locale.replace("_", "-")


def structure_definition(base: str, key: str) -> dict[str, Any]:
    """The StructureDefinition of one of this export's extensions."""
    name, description, value_type, context = EXTENSIONS[key]
    url = f"{base}/StructureDefinition/{key}"
    contexts = [context] if context else ["QuestionnaireResponse", "Provenance"]
    return {
        "resourceType": "StructureDefinition",
        "id": key,
        "url": url,
        "name": name,
        "status": "active",
        "description": description,
        "fhirVersion": "4.0.1",
        "kind": "complex-type",
        "abstract": False,
        "context": [{"type": "element", "expression": c} for c in contexts],
        "type": "Extension",
        "baseDefinition": "http://hl7.org/fhir/StructureDefinition/Extension",
        "derivation": "constraint",
        "differential": {
            "element": [
                {"id": "Extension", "path": "Extension", "short": name, "definition": description, "max": "1"},
                {"id": "Extension.extension", "path": "Extension.extension", "max": "0"},
                {"id": "Extension.url", "path": "Extension.url", "fixedUri": url},
                {"id": "Extension.value[x]", "path": "Extension.value[x]", "min": 1, "type": [{"code": value_type}]},
            ]
        },
    }


def questionnaire(trial: Trial, inst: str, base: str) -> dict[str, Any]:
    instrument = trial.catalog.registry.get(inst)
    items = []
    for item in instrument.items:
        entry: dict[str, Any] = {"linkId": item.id, "text": item.text["en"], "type": ITEM_TYPES[item.kind]}
        if item.kind == "choice":
            system = f"{base}/CodeSystem/{fhir_id(inst)}-{item.id}"
            entry["answerOption"] = [
                {"valueCoding": {"system": system, "code": str(o.code), "display": o.label["en"]}} for o in item.options
            ]
        items.append(entry)
    return {
        "resourceType": "Questionnaire",
        "id": fhir_id(f"{inst}-{instrument.version}"),
        "language": "en",
        "url": f"{base}/Questionnaire/{fhir_id(inst)}",
        "version": instrument.version,
        "name": re.sub(r"[^A-Za-z0-9]", "", inst.title()) or "Questionnaire",
        "title": instrument.name["en"],
        "status": "active",
        "subjectType": ["Patient"],
        "item": items,
    }


def related_person(patient_id: str, relationship: str) -> dict[str, Any]:
    """A RelatedPerson with no identifying data: just the patient link and the coded relationship."""
    system, code, display = cols.RELATIONSHIP_STANDARD[relationship]
    return {
        "resourceType": "RelatedPerson",
        "id": fhir_id(f"{patient_id}-{relationship.replace('_', '-')}"),
        "patient": {"reference": f"Patient/{patient_id}"},
        "relationship": [{"coding": [{"system": system, "code": code, "display": display}]}],
    }


def _dumps(value: Any) -> str:
    """The bundle's JSON encoding: sorted keys, no spaces, UTF-8 text as is."""
    return json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"))


def _item_entries(trial: Trial, rows: ItemRows, base: str) -> tuple[list[str | None], np.ndarray, np.ndarray]:
    """The response items of ``rows`` as JSON: one per distinct (instrument, item, language,
    answer), encoded once and shared by every response that gives it (None: an item the
    instrument does not have); for each row the number of its entry (-1: not presented), and
    where each form's rows start and stop."""
    catalog = trial.catalog
    forms = rows.forms
    kinds = sorted({(f.instrument_id, f.response.language) for f in forms})  # type: ignore[union-attr]
    kind_of = {kind: n for n, kind in enumerate(kinds)}
    form_kind = np.array([kind_of[(f.instrument_id, f.response.language)] for f in forms], np.int64)  # type: ignore[union-attr]
    value = rows.value  # null: skipped or no value
    links = pc.dictionary_encode(rows.item)
    link_names = links.dictionary.to_pylist()
    given = pc.dictionary_encode(value)
    del value
    distinct = given.dictionary.to_pylist()
    form_at = rows.form_at.to_numpy()
    keys = form_kind[form_at] * len(link_names) + links.indices.to_numpy()
    del links
    keys *= len(distinct) + 1
    keys += pc.fill_null(given.indices, len(distinct)).to_numpy()
    del given
    presented = rows.presented.to_numpy(zero_copy_only=False)
    unique, inverse = distinct_keys(keys[presented])
    entry_of = np.full(len(keys), -1, np.int64)
    entry_of[presented] = inverse
    del keys, inverse, presented

    def item_entry(instrument_id: str, link: str, language: str, answer: float | None) -> dict[str, Any] | None:
        """One item of a response (shared by every response with the same answer; never changed)."""
        instrument = catalog.registry.get(instrument_id)
        if not instrument.has_item(link):
            return None
        item = instrument.item(link)
        entry: dict[str, Any] = {"linkId": link, "text": item.text.get(language) or item.text["en"]}
        if answer is None:
            entry["extension"] = [{"url": DATA_ABSENT_REASON, "valueCode": "asked-declined"}]
        elif item.kind == "choice":
            code = int(answer)
            display = next((o.label[language] for o in item.options if o.code == code), str(code))
            system = f"{base}/CodeSystem/{fhir_id(instrument_id)}-{link}"
            entry["answer"] = [{"valueCoding": {"system": system, "code": str(code), "display": display}}]
        elif item.kind == "vas":
            entry["answer"] = [{"valueInteger": int(answer)}]
        else:
            entry["answer"] = [{"valueDecimal": float(answer)}]
        return entry

    entries = []
    for key in unique.tolist():
        rest, answer = divmod(key, len(distinct) + 1)
        kind, link = divmod(rest, len(link_names))
        instrument_id, language = kinds[kind]
        entry = item_entry(
            instrument_id, link_names[link], language, None if answer == len(distinct) else distinct[answer]
        )
        entries.append(None if entry is None else _dumps(entry))
    bounds = np.searchsorted(form_at, np.arange(len(forms) + 1))
    return entries, entry_of, bounds


def write_bundle(trial: Trial, rows: ItemRows, path: Path, *, base_url: str) -> Path:
    """Write the bundle to ``path``, one patient's resources at a time; same data -> same bytes."""
    base = base_url.rstrip("/")
    spec = trial.spec
    iso = spec.iso_dates
    day_url = f"{base}/StructureDefinition/study-day"
    entries, entry_of, bounds = _item_entries(trial, rows, base)

    def response_resource(form: Form, n: int, patient_id: str, who: str) -> tuple[dict[str, Any], str]:
        response, patient = form.response, form.patient
        assert response is not None
        code = timepoint_code(form.timepoint.key, patient.randomization_date, iso)
        rid = fhir_id(f"{patient.study_id}-{code}-{short_name(form.instrument_id)}")
        items = []
        for at in entry_of[bounds[n] : bounds[n + 1]].tolist():
            entry = entries[at] if at >= 0 else None
            if entry is not None:
                items.append(entry)
        done = form.status == "completed"
        moment = response.first_submitted_at if done else response.started_at
        status = ("amended" if response.revision > 0 else "completed") if done else "in-progress"
        resource: dict[str, Any] = {
            "resourceType": "QuestionnaireResponse",
            "id": rid,
            "language": _language(response.language),
            "extension": [{"url": f"{base}/StructureDefinition/respondent", "valueCode": response.respondent}],
            "questionnaire": f"{base}/Questionnaire/{fhir_id(form.instrument_id)}|{response.instrument_version}",
            "status": status,
            "subject": {"reference": f"Patient/{patient_id}"},
        }
        if iso and moment is not None:
            resource["authored"] = utc_iso(moment.replace(microsecond=0))
        resource["author"] = {"reference": who}
        resource["source"] = {"reference": who}
        if items:
            resource["item"] = items
        day = day_of(local_day(moment, patient.tz), patient.randomization_date)
        if day is not None:
            resource["extension"].append({"url": day_url, "valueInteger": day})
        return resource, rid

    def provenance(form: Form, rid: str, correction: Any) -> dict[str, Any]:
        patient = form.patient
        resource: dict[str, Any] = {
            "resourceType": "Provenance",
            "id": fhir_id(f"{rid}-r{correction.revision}"),
            "target": [{"reference": f"QuestionnaireResponse/{rid}"}],
        }
        if iso:
            resource["recorded"] = utc_iso(correction.submitted_at.replace(microsecond=0))
        else:
            resource["_recorded"] = {"extension": [{"url": DATA_ABSENT_REASON, "valueCode": "masked"}]}
            day = day_of(local_day(correction.submitted_at, patient.tz), patient.randomization_date)
            resource["extension"] = [{"url": day_url, "valueInteger": day}]
        resource["reason"] = [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/v3-ActReason",
                        "code": "RECORDMGT",
                        "display": "records management",
                    }
                ],
                "text": "Staff correction of a submitted form (revision "
                f"{correction.revision}); the stated reason is kept in the audit trail",
            }
        ]
        resource["activity"] = {
            "coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-DataOperation", "code": "UPDATE"}]
        }
        agent: dict[str, Any] = {
            "type": {
                "coding": [
                    {"system": "http://terminology.hl7.org/CodeSystem/provenance-participant-type", "code": "author"}
                ]
            },
            "who": {"type": "Practitioner", "identifier": {"system": f"{base}/NamingSystem/staff-id"}},
        }
        agent["who"]["identifier"]["value"] = str(correction.entered_by) if correction.entered_by else "unknown"
        resource["agent"] = [agent]
        return resource

    with Path(path).open("w", encoding="utf-8", newline="\n") as out:
        out.write(
            f'{{"resourceType":"Bundle","type":"collection","timestamp":{json.dumps(utc_iso(spec.as_of))},"entry":['
        )
        first = True
        placeholder = f"qol-items-{uuid.uuid4().hex}"  # stands for a response's items while it is encoded

        def emit(resource: Mapping[str, Any]) -> None:
            """Write one entry; a response's items are JSON already (``_item_entries``), put in
            where a placeholder stands for them."""
            nonlocal first
            items = resource.get("item") if resource["resourceType"] == "QuestionnaireResponse" else None
            if items:
                resource = {**resource, "item": placeholder}
            entry = {"fullUrl": f"{base}/{resource['resourceType']}/{resource['id']}", "resource": resource}
            text = _dumps(entry)
            if items:
                text = text.replace(f'"{placeholder}"', f"[{','.join(items)}]", 1)
            out.write(("\n" if first else ",\n") + text)
            first = False

        for key in EXTENSIONS:
            emit(structure_definition(base, key))
        for inst in spec.instruments:
            emit(questionnaire(trial, inst, base))
        by_patient: dict[int, list[int]] = {}
        for n, form in enumerate(rows.forms):
            by_patient.setdefault(form.patient.pk, []).append(n)
        for patient in trial.patients:
            numbers = by_patient.get(patient.pk)
            if not numbers:
                continue
            patient_id = fhir_id(patient.study_id)
            emit(
                {
                    "resourceType": "Patient",
                    "id": patient_id,
                    "identifier": [{"system": f"{base}/NamingSystem/study-id", "value": patient.study_id}],
                }
            )
            people: dict[str, dict[str, Any]] = {}
            resources = []
            for n in numbers:
                form = rows.forms[n]
                response = form.response
                assert response is not None
                who = f"Patient/{patient_id}"
                if response.respondent == "proxy":
                    relationship = (
                        response.relationship
                        if response.relationship is not None and response.relationship in cols.RELATIONSHIP_STANDARD
                        else "other"
                    )
                    person = related_person(patient_id, relationship)
                    people.setdefault(person["id"], person)
                    who = f"RelatedPerson/{person['id']}"
                resource, rid = response_resource(form, n, patient_id, who)
                resources.append(resource)
                if form.status == "completed":
                    resources.extend(provenance(form, rid, c) for c in response.corrections)
            for key in sorted(people):
                emit(people[key])
            for resource in resources:
                emit(resource)
        out.write("\n]}\n")
    return Path(path)
