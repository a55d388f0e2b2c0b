"""FHIR R4 Bundle of Questionnaires and QuestionnaireResponses, built from plain values.

The output is a JSON-ready dict (R4 4.0.1; also valid R4B, which these resources share).

Decisions:
- Patients appear only by pseudonymous study id (Patient.identifier); no names or dates of birth.
- Respondent: `self` and `self_assisted` -> author and source are the Patient; `proxy` -> both are
  a RelatedPerson (one per patient and relationship) linked to the Patient, with the relationship
  coded. Every response also carries the app's respondent code in an extension, so
  `self_assisted` survives the round trip.
- Items: a linkId absent from `answers` was not presented and is left out; a linkId mapped to None
  was presented and skipped, and is kept with the data-absent-reason extension `asked-declined`.
  This keeps CLINICAL.md's "explicit skip, distinct from not presented".
- Choice answers are Codings whose system is per item (`<base>/CodeSystem/<questionnaire>-<linkId>`),
  because "1" means "Not at all" for one item and "Very poor" for another.
- The bundle is built in memory: export it per patient or per batch, not the whole trial at once.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from qol_app.export.writers.base import utc_iso

ItemType = Literal["choice", "integer", "decimal", "string"]
Respondent = Literal["self", "self_assisted", "proxy"]
AnswerValue = int | float | str | None

DATA_ABSENT_REASON = "http://hl7.org/fhir/StructureDefinition/data-absent-reason"
_V3_ROLE = "http://terminology.hl7.org/CodeSystem/v3-RoleCode"
_V2_0131 = "http://terminology.hl7.org/CodeSystem/v2-0131"
_SNOMED = "http://snomed.info/sct"

RELATIONSHIPS: Mapping[str, tuple[str, str, str]] = {
    "spouse": (_V3_ROLE, "SPS", "spouse"),
    "partner": (_V3_ROLE, "DOMPART", "domestic partner"),
    "parent": (_V3_ROLE, "PRN", "parent"),
    "child": (_V3_ROLE, "CHILD", "child"),
    "sibling": (_V3_ROLE, "SIB", "sibling"),
    "other_family": (_V3_ROLE, "FAMMEM", "family member"),
    "friend": (_V3_ROLE, "FRND", "unrelated friend"),
    "caregiver": (_SNOMED, "133932002", "Caregiver"),
    "other": (_V2_0131, "O", "Other"),
}
"""App proxy relationship -> (system, code, display) for RelatedPerson.relationship."""

_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")


def _fhir_id(value: str, what: str) -> str:
    if not _ID.match(value):
        raise ValueError(f"{what} {value!r} is not a valid FHIR id ([A-Za-z0-9-.], 1-64 chars)")
    return value


@dataclass(frozen=True)
class FhirAnswerOption:
    """One permitted answer: the stored integer code and its display text."""

    code: int
    display: str


@dataclass(frozen=True)
class FhirItem:
    """A question: linkId (the app's item id), text, type and, for choice items, the options."""

    link_id: str
    text: str
    type: ItemType = "choice"
    options: tuple[FhirAnswerOption, ...] = ()


@dataclass(frozen=True)
class FhirQuestionnaire:
    """An instrument version in one language."""

    id: str
    version: str
    title: str
    items: tuple[FhirItem, ...]
    language: str = "en"


@dataclass(frozen=True)
class FhirResponse:
    """A submitted (or partial) form. `authored` must be timezone-aware; it is written in UTC.

    `authored` may be None (left out) when an export must not carry calendar dates.
    """

    response_id: str
    patient_id: str
    questionnaire_id: str
    questionnaire_version: str
    status: Literal["completed", "in-progress"]
    authored: datetime | None
    respondent: Respondent
    answers: Mapping[str, AnswerValue]
    language: str
    proxy_relationship: str | None = None


def _language(locale: str) -> str:
    """App locale (zh_Hans) -> BCP 47 tag (zh-Hans)."""
    return locale.replace("_", "-")


def _resource_id(questionnaire: FhirQuestionnaire) -> str:
    return _fhir_id(f"{questionnaire.id}-{questionnaire.version}", "questionnaire id-version")


def _answer_system(base_url: str, questionnaire: FhirQuestionnaire, item: FhirItem) -> str:
    return f"{base_url}/CodeSystem/{questionnaire.id}-{item.link_id}"


def questionnaire_resource(q: FhirQuestionnaire, base_url: str) -> dict[str, Any]:
    """The Questionnaire resource for one instrument version."""
    items = []
    for item in q.items:
        entry: dict[str, Any] = {"linkId": item.link_id, "text": item.text, "type": item.type}
        if item.type == "choice":
            if not item.options:
                raise ValueError(f"{q.id} {item.link_id}: a choice item needs answer options")
            system = _answer_system(base_url, q, item)
            entry["answerOption"] = [
                {"valueCoding": {"system": system, "code": str(o.code), "display": o.display}} for o in item.options
            ]
        items.append(entry)
    return {
        "resourceType": "Questionnaire",
        "id": _resource_id(q),
        "language": _language(q.language),
        "url": f"{base_url}/Questionnaire/{_fhir_id(q.id, 'questionnaire id')}",
        "version": q.version,
        "name": re.sub(r"[^A-Za-z0-9]", "", q.id.title()) or "Questionnaire",
        "title": q.title,
        "status": "active",
        "subjectType": ["Patient"],
        "item": items,
    }


def _answer(q: FhirQuestionnaire, item: FhirItem, value: AnswerValue, base_url: str) -> dict[str, Any]:
    where = f"{q.id} {item.link_id}"
    if item.type == "choice":
        displays = {o.code: o.display for o in item.options}
        if type(value) is not int or value not in displays:
            raise ValueError(f"{where}: {value!r} is not one of the codes {sorted(displays)}")
        return {
            "valueCoding": {"system": _answer_system(base_url, q, item), "code": str(value), "display": displays[value]}
        }
    if item.type == "integer" and type(value) is int:
        return {"valueInteger": value}
    if item.type == "decimal" and type(value) in (int, float):
        return {"valueDecimal": float(value)}  # type: ignore[arg-type]
    if item.type == "string" and type(value) is str:
        return {"valueString": value}
    raise ValueError(f"{where}: {value!r} does not fit a {item.type} item")


def _relationship(response: FhirResponse) -> str | None:
    if response.respondent == "proxy":
        if response.proxy_relationship not in RELATIONSHIPS:
            raise ValueError(
                f"response {response.response_id}: proxy relationship "
                f"{response.proxy_relationship!r} not one of {sorted(RELATIONSHIPS)}"
            )
        return response.proxy_relationship
    if response.proxy_relationship is not None:
        raise ValueError(f"response {response.response_id}: relationship given for a non-proxy response")
    return None


def related_person_id(patient_id: str, relationship: str) -> str:
    """Stable id of the RelatedPerson answering for `patient_id` in that relationship."""
    return _fhir_id(f"{patient_id}-{relationship.replace('_', '-')}", "related person id")


def related_person_resource(patient_id: str, relationship: str) -> dict[str, Any]:
    """A RelatedPerson with no identifying data: just the patient link and the relationship."""
    system, code, display = RELATIONSHIPS[relationship]
    return {
        "resourceType": "RelatedPerson",
        "id": related_person_id(patient_id, relationship),
        "patient": {"reference": f"Patient/{patient_id}"},
        "relationship": [{"coding": [{"system": system, "code": code, "display": display}]}],
    }


def patient_resource(patient_id: str, base_url: str) -> dict[str, Any]:
    """A Patient known only by pseudonymous study id."""
    return {
        "resourceType": "Patient",
        "id": _fhir_id(patient_id, "patient id"),
        "identifier": [{"system": f"{base_url}/NamingSystem/study-id", "value": patient_id}],
    }


def response_resource(r: FhirResponse, q: FhirQuestionnaire, base_url: str) -> dict[str, Any]:
    """The QuestionnaireResponse for one form, validated against its Questionnaire."""
    if r.authored is not None and r.authored.utcoffset() is None:
        raise ValueError(f"response {r.response_id}: authored must be timezone-aware")
    known = {item.link_id for item in q.items}
    unknown = sorted(set(r.answers) - known)
    if unknown:
        raise ValueError(f"response {r.response_id}: unknown linkIds {unknown} for {q.id}")
    relationship = _relationship(r)
    who = (
        f"RelatedPerson/{related_person_id(r.patient_id, relationship)}" if relationship else f"Patient/{r.patient_id}"
    )
    items: list[dict[str, Any]] = []
    for item in q.items:
        if item.link_id not in r.answers:
            continue  # not presented
        value = r.answers[item.link_id]
        entry: dict[str, Any] = {"linkId": item.link_id, "text": item.text}
        if value is None:
            entry["extension"] = [{"url": DATA_ABSENT_REASON, "valueCode": "asked-declined"}]
        else:
            entry["answer"] = [_answer(q, item, value, base_url)]
        items.append(entry)
    resource = {
        "resourceType": "QuestionnaireResponse",
        "id": _fhir_id(r.response_id, "response id"),
        "language": _language(r.language),
        "extension": [{"url": f"{base_url}/StructureDefinition/respondent", "valueCode": r.respondent}],
        "questionnaire": f"{base_url}/Questionnaire/{q.id}|{q.version}",
        "status": r.status,
        "subject": {"reference": f"Patient/{r.patient_id}"},
        "authored": utc_iso(r.authored) if r.authored is not None else None,
        "author": {"reference": who},
        "source": {"reference": who},
        "item": items,
    }
    if r.authored is None:
        del resource["authored"]
    return resource


def build_bundle(
    questionnaires: Sequence[FhirQuestionnaire],
    responses: Iterable[FhirResponse],
    *,
    base_url: str,
    as_of: datetime,
    bundle_type: Literal["collection", "transaction"] = "collection",
) -> dict[str, Any]:
    """A Bundle with the Questionnaires, the Patients and RelatedPersons referenced, and the responses.

    Order is deterministic: questionnaires as given, patients and related persons sorted by id,
    responses as given. A transaction bundle PUTs every resource (idempotent on re-import).
    Raises ValueError for unknown questionnaires, linkIds or codes, naive times or invalid ids.
    """
    if as_of.utcoffset() is None:
        raise ValueError("as_of must be timezone-aware")
    base_url = base_url.rstrip("/")
    by_key = {(q.id, q.version): q for q in questionnaires}
    patients: dict[str, dict[str, Any]] = {}
    proxies: dict[str, dict[str, Any]] = {}
    answered: list[dict[str, Any]] = []
    for response in responses:
        q = by_key.get((response.questionnaire_id, response.questionnaire_version))
        if q is None:
            raise ValueError(
                f"response {response.response_id}: no questionnaire "
                f"{response.questionnaire_id} version {response.questionnaire_version}"
            )
        answered.append(response_resource(response, q, base_url))
        patients.setdefault(response.patient_id, patient_resource(response.patient_id, base_url))
        relationship = _relationship(response)
        if relationship:
            proxy = related_person_resource(response.patient_id, relationship)
            proxies.setdefault(proxy["id"], proxy)
    resources = [
        *(questionnaire_resource(q, base_url) for q in questionnaires),
        *(patients[k] for k in sorted(patients)),
        *(proxies[k] for k in sorted(proxies)),
        *answered,
    ]
    entries = []
    for resource in resources:
        path = f"{resource['resourceType']}/{resource['id']}"
        entry: dict[str, Any] = {"fullUrl": f"{base_url}/{path}", "resource": resource}
        if bundle_type == "transaction":
            entry["request"] = {"method": "PUT", "url": path}
        entries.append(entry)
    return {"resourceType": "Bundle", "type": bundle_type, "timestamp": utc_iso(as_of), "entry": entries}
