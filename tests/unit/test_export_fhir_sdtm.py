"""FHIR R4 bundles and SDTM QS records built from plain values."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pyreadstat
import pytest
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.questionnaireresponse import QuestionnaireResponse
from fhir.resources.R4B.relatedperson import RelatedPerson

from qol_app.export import checked_rows, write_dataset
from qol_app.export.fhir import (
    DATA_ABSENT_REASON,
    FhirAnswerOption,
    FhirItem,
    FhirQuestionnaire,
    FhirResponse,
    build_bundle,
)
from qol_app.export.sdtm import (
    QS_COLUMNS,
    QsForm,
    QsInstrument,
    QsItem,
    qs_dataset,
    sponsor_testcd,
    study_day,
)

BASE = "https://conquer.example.org/fhir"
AS_OF = datetime(2026, 4, 1, tzinfo=UTC)
SHANGHAI = timezone(timedelta(hours=8))
FOUR = tuple(
    FhirAnswerOption(c, d) for c, d in [(1, "Not at all"), (2, "A little"), (3, "Quite a bit"), (4, "Very much")]
)
DIARY = FhirQuestionnaire(
    id="diary",
    version="1.0",
    title="Daily symptom diary",
    language="zh_Hans",
    items=(
        FhirItem("headache", "头痛", options=FOUR),
        FhirItem("nausea", "恶心", options=FOUR),
        FhirItem("temperature", "体温 (°C)", type="decimal"),
        FhirItem("vas", "今天的健康状况 (0-100)", type="integer"),
    ),
)


def response(**overrides: Any) -> FhirResponse:
    values: dict[str, Any] = {
        "response_id": "r1",
        "patient_id": "CQ01-0007",
        "questionnaire_id": "diary",
        "questionnaire_version": "1.0",
        "status": "completed",
        "authored": datetime(2026, 3, 2, 8, 30, tzinfo=SHANGHAI),
        "respondent": "self",
        "answers": {"headache": 3, "nausea": None, "temperature": 37.8},
        "language": "zh_Hans",
    }
    return FhirResponse(**(values | overrides))


def bundle(*responses: FhirResponse, **kwargs: Any) -> dict[str, Any]:
    return build_bundle([DIARY], responses or [response()], base_url=BASE, as_of=AS_OF, **kwargs)


def resources(data: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [e["resource"] for e in data["entry"] if e["resource"]["resourceType"] == kind]


# --- FHIR ----------------------------------------------------------------------------------


def test_bundle_parses_as_fhir_r4() -> None:
    proxy = response(
        response_id="r2", respondent="proxy", proxy_relationship="spouse", status="in-progress", answers={"vas": 55}
    )
    data = bundle(response(), proxy)
    parsed = Bundle.model_validate(json.loads(json.dumps(data)))
    kinds = [e.resource.get_resource_type() for e in parsed.entry]
    assert kinds == ["Questionnaire", "Patient", "RelatedPerson", "QuestionnaireResponse", "QuestionnaireResponse"]
    assert data["timestamp"] == "2026-04-01T00:00:00Z"
    full_urls = {e["fullUrl"] for e in data["entry"]}
    for qr in resources(data, "QuestionnaireResponse"):  # every reference resolves inside the bundle
        for ref in (qr["subject"], qr["author"], qr["source"]):
            assert f"{BASE}/{ref['reference']}" in full_urls


def test_questionnaire_carries_items_and_coded_options() -> None:
    (questionnaire,) = resources(bundle(), "Questionnaire")
    assert questionnaire["url"] == f"{BASE}/Questionnaire/diary"
    assert questionnaire["version"] == "1.0" and questionnaire["language"] == "zh-Hans"
    headache = questionnaire["item"][0]
    assert headache["type"] == "choice"
    assert headache["answerOption"][3]["valueCoding"] == {
        "system": f"{BASE}/CodeSystem/diary-headache",
        "code": "4",
        "display": "Very much",
    }
    assert questionnaire["item"][2]["type"] == "decimal"


def test_self_response_answers_skips_and_unpresented_items() -> None:
    (qr,) = resources(bundle(), "QuestionnaireResponse")
    QuestionnaireResponse.model_validate(qr)
    assert qr["questionnaire"] == f"{BASE}/Questionnaire/diary|1.0"
    assert qr["authored"] == "2026-03-02T00:30:00Z"
    assert qr["author"] == qr["source"] == {"reference": "Patient/CQ01-0007"}
    items = {item["linkId"]: item for item in qr["item"]}
    assert list(items) == ["headache", "nausea", "temperature"]  # vas not presented
    assert items["headache"]["answer"] == [
        {"valueCoding": {"system": f"{BASE}/CodeSystem/diary-headache", "code": "3", "display": "Quite a bit"}}
    ]
    assert "answer" not in items["nausea"]
    assert items["nausea"]["extension"] == [{"url": DATA_ABSENT_REASON, "valueCode": "asked-declined"}]
    assert items["temperature"]["answer"] == [{"valueDecimal": 37.8}]


def test_proxy_response_is_authored_by_a_related_person() -> None:
    data = bundle(response(respondent="proxy", proxy_relationship="other_family"))
    (person,) = resources(data, "RelatedPerson")
    RelatedPerson.model_validate(person)
    assert person["patient"] == {"reference": "Patient/CQ01-0007"}
    assert person["relationship"][0]["coding"][0]["code"] == "FAMMEM"
    (qr,) = resources(data, "QuestionnaireResponse")
    assert qr["source"] == qr["author"] == {"reference": f"RelatedPerson/{person['id']}"}
    assert qr["extension"][0]["valueCode"] == "proxy"


def test_self_assisted_keeps_the_patient_as_source_and_says_so() -> None:
    (qr,) = resources(bundle(response(respondent="self_assisted")), "QuestionnaireResponse")
    assert qr["source"] == {"reference": "Patient/CQ01-0007"}
    assert qr["extension"][0]["valueCode"] == "self_assisted"


def test_one_related_person_per_patient_and_relationship() -> None:
    proxies = [response(response_id=f"r{i}", respondent="proxy", proxy_relationship="spouse") for i in range(3)]
    data = bundle(*proxies)
    assert len(resources(data, "RelatedPerson")) == 1 and len(resources(data, "Patient")) == 1


def test_transaction_bundle_puts_every_resource() -> None:
    data = bundle(bundle_type="transaction")
    Bundle.model_validate(data)
    assert data["type"] == "transaction"
    assert [e["request"] for e in data["entry"]][-1] == {"method": "PUT", "url": "QuestionnaireResponse/r1"}


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"answers": {"headache": 5}}, "not one of the codes"),
        ({"answers": {"headache": True}}, "not one of the codes"),
        ({"answers": {"vas": 5.5}}, "integer item"),
        ({"answers": {"mood": 1}}, "unknown linkIds"),
        ({"authored": datetime(2026, 3, 2, 8, 30)}, "timezone-aware"),
        ({"questionnaire_version": "2.0"}, "no questionnaire"),
        ({"respondent": "proxy"}, "proxy relationship"),
        ({"proxy_relationship": "spouse"}, "non-proxy"),
        ({"patient_id": "CQ01_0007"}, "not a valid FHIR id"),
    ],
)
def test_invalid_responses_are_refused(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        bundle(response(**overrides))


def test_bundle_is_deterministic() -> None:
    assert json.dumps(bundle()) == json.dumps(bundle())


# --- SDTM QS -------------------------------------------------------------------------------

C30 = QsInstrument(
    instrument_id="qlq_c30",
    category="EORTC QLQ-C30 V3.0",
    evaluation_interval="-P1W",
    items=(
        QsItem(
            "q1",
            sponsor_testcd("C30Q", 1),
            "C30 item 1: strenuous activities",
            {1: "Not at all", 2: "A little", 3: "Quite a bit", 4: "Very much"},
        ),
        QsItem(
            "q2",
            sponsor_testcd("C30Q", 2),
            "C30 item 2: long walk",
            {1: "Not at all", 2: "A little", 3: "Quite a bit", 4: "Very much"},
        ),
        QsItem("q29", sponsor_testcd("C30Q", 29), "C30 item 29: overall health", {i: str(i) for i in range(1, 8)}),
    ),
)
TEMP = QsInstrument(
    instrument_id="diary",
    category="CONQUER SYMPTOM DIARY",
    items=(QsItem("temperature", "DIARYTMP", "Body temperature", unit="C"),),
)


def form(**overrides: Any) -> QsForm:
    values: dict[str, Any] = {
        "usubjid": "CONQUER-CQ01-0007",
        "instrument_id": "qlq_c30",
        "visitnum": 1.0,
        "visit": "BASELINE",
        "status": "completed",
        "reference_date": date(2026, 3, 1),
        "collected_at": datetime(2026, 3, 1, 7, 30, tzinfo=SHANGHAI),
        "respondent": "self",
        "answers": {"q1": 2, "q2": None, "q29": 6},
    }
    return QsForm(**(values | overrides))


def qs_rows(*forms: QsForm) -> list[dict[str, Any]]:
    dataset = qs_dataset(forms, [C30, TEMP], studyid="CONQUER")
    return [dict(zip(dataset.names, row)) for row in checked_rows(dataset)]


def test_qs_has_the_sdtm_variables_in_order() -> None:
    names = [c.name for c in QS_COLUMNS]
    assert names == [
        "STUDYID",
        "DOMAIN",
        "USUBJID",
        "QSSEQ",
        "QSTESTCD",
        "QSTEST",
        "QSCAT",
        "QSSCAT",
        "QSORRES",
        "QSORRESU",
        "QSSTRESC",
        "QSSTRESN",
        "QSSTRESU",
        "QSSTAT",
        "QSREASND",
        "QSEVAL",
        "QSEVLINT",
        "VISITNUM",
        "VISIT",
        "QSDTC",
        "QSDY",
    ]
    assert all(len(n) <= 8 and len(c.label["en"]) <= 40 for n, c in zip(names, QS_COLUMNS))


def test_item_records_for_a_completed_form() -> None:
    q1, q2, q29 = qs_rows(form())
    assert q1["STUDYID"] == "CONQUER" and q1["DOMAIN"] == "QS"
    assert (q1["QSTESTCD"], q1["QSORRES"], q1["QSSTRESC"], q1["QSSTRESN"]) == ("C30Q01", "A little", "2", 2.0)
    assert q1["QSCAT"] == "EORTC QLQ-C30 V3.0" and q1["QSEVLINT"] == "-P1W"
    assert q1["QSEVAL"] == "STUDY SUBJECT" and q1["QSSTAT"] is None
    assert q1["QSDTC"] == "2026-03-01T07:30:00" and q1["QSDY"] == 1
    assert (q2["QSSTAT"], q2["QSREASND"], q2["QSORRES"], q2["QSSTRESN"]) == (
        "NOT DONE",
        "SKIPPED BY RESPONDENT",
        None,
        None,
    )
    assert q29["QSTESTCD"] == "C30Q29" and q29["QSSTRESN"] == 6.0


def test_missed_form_is_one_not_done_record_with_the_reason() -> None:
    (record,) = qs_rows(form(status="missed", collected_at=None, respondent=None, answers={}, missed_reason="too_ill"))
    assert (record["QSTESTCD"], record["QSTEST"], record["QSSTAT"], record["QSREASND"]) == (
        "QSALL",
        "Questionnaire",
        "NOT DONE",
        "TOO ILL",
    )
    assert record["QSCAT"] == "EORTC QLQ-C30 V3.0" and record["VISIT"] == "BASELINE"
    assert record["QSDTC"] is None and record["QSDY"] is None and record["QSEVAL"] is None
    (other,) = qs_rows(
        form(
            status="missed",
            collected_at=None,
            respondent=None,
            answers={},
            missed_reason="other",
            missed_reason_text="PATIENT TRAVELLING",
        )
    )
    assert other["QSREASND"] == "OTHER: PATIENT TRAVELLING"


def test_not_expected_forms_have_no_records() -> None:
    assert qs_rows(form(status="not_expected", collected_at=None, respondent=None, answers={})) == []


def test_proxy_forms_are_evaluated_by_a_caregiver() -> None:
    assert {r["QSEVAL"] for r in qs_rows(form(respondent="proxy"))} == {"CAREGIVER"}


def test_numeric_items_keep_the_number_and_unit() -> None:
    (record,) = qs_rows(form(instrument_id="diary", answers={"temperature": 38.0}))
    assert (record["QSORRES"], record["QSSTRESC"], record["QSSTRESN"], record["QSORRESU"]) == ("38", "38", 38.0, "C")
    assert record["QSEVLINT"] is None


def test_qsseq_is_unique_and_consecutive_per_subject() -> None:
    other = "CONQUER-CQ02-0001"
    rows = qs_rows(
        form(),
        form(usubjid=other),
        form(visitnum=2.0, visit="CYCLE 1"),
        form(
            usubjid=other,
            visitnum=2.0,
            visit="CYCLE 1",
            status="missed",
            collected_at=None,
            respondent=None,
            answers={},
            missed_reason="hospitalised",
        ),
    )
    by_subject: dict[str, list[int]] = {}
    for row in rows:
        by_subject.setdefault(row["USUBJID"], []).append(row["QSSEQ"])
    assert by_subject == {"CONQUER-CQ01-0007": [1, 2, 3, 4, 5, 6], other: [1, 2, 3, 4]}


def test_study_day_has_no_day_zero() -> None:
    ref = date(2026, 3, 1)
    assert [study_day(ref + timedelta(days=d), ref) for d in (-2, -1, 0, 1)] == [-2, -1, 1, 2]
    # QSDY follows the site's local date, not the UTC one.
    (record, *_) = qs_rows(form(collected_at=datetime(2026, 2, 28, 23, 30, tzinfo=SHANGHAI)))
    assert record["QSDY"] == -1 and record["QSDTC"] == "2026-02-28T23:30:00"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"answers": {"q1": 9}}, "code 9 not in"),
        ({"answers": {"q99": 1}}, "unknown items"),
        ({"collected_at": None}, "timezone-aware collected_at"),
        ({"collected_at": datetime(2026, 3, 1, 7, 30)}, "timezone-aware collected_at"),
        ({"instrument_id": "bn20"}, "unknown instrument"),
        ({"status": "missed", "missed_reason": "bored"}, "unknown missed reason"),
    ],
)
def test_invalid_forms_are_refused(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        qs_rows(form(**overrides))


@pytest.mark.parametrize("code", ["1ABC", "TOOLONGCODE", "qsall", "QSALL"])
def test_test_codes_follow_sdtm_rules(code: str) -> None:
    with pytest.raises(ValueError, match="QSTESTCD"):
        QsItem("x", code, "Some test")
    with pytest.raises(ValueError, match="QSTEST"):
        QsItem("x", "C30Q01", "x" * 41)


def test_qs_writes_as_sas_transport_version_5(tmp_path: Path) -> None:
    path = write_dataset(
        "xpt",
        qs_dataset([form(), form(respondent="proxy", visitnum=2.0, visit="CYCLE 1")], [C30], studyid="CONQUER"),
        tmp_path,
    )
    assert path.name == "qs.xpt"
    assert path.read_bytes().startswith(b"HEADER RECORD*******LIBRARY HEADER RECORD")
    frame, meta = pyreadstat.read_xport(path)
    assert list(frame.columns) == [c.name for c in QS_COLUMNS]
    assert meta.table_name == "QS"
    assert meta.column_names_to_labels["QSSTRESC"] == "Character Result/Finding in Std Format"
    assert frame["QSSEQ"].tolist() == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    assert frame["QSEVAL"].tolist()[-1] == "CAREGIVER"
