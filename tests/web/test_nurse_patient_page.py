"""The patient page: timeline, score charts (SVG + table), diary heat map, alerts; staff-entered forms."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from sqlalchemy import select

from qol_app.charts import Point, heat_level, trajectory_svg
from qol_app.models import Alert, Response, Timepoint
from qol_app.services import timepoints
from tests.factories import isolated_client, login, no_csrf


@pytest.fixture
def setup(app, session, factory, now):
    no_csrf(app)
    site = factory.site(code="P1")
    nurse = factory.staff("nurse", sites=[site])
    client = isolated_client(app)
    login(client, nurse)
    patient = factory.patient(site, arm="A", randomization_date=dt.date(2026, 2, 20), pin=None).patient
    timepoints.reconcile_patient(session, factory.actor, patient, now)
    return client, nurse, patient


def _tp(session, patient, key):
    return session.scalar(select(Timepoint).where(Timepoint.patient_id == patient.id, Timepoint.key == key))


def _enter(client, patient, tp, instrument_id, answers, **extra):
    data = {"entry_mode": "interview", "entry_respondent": "self_assisted"} | extra | answers
    return client.post(f"/staff/patients/{patient.id}/timepoints/{tp.id}/enter/{instrument_id}", data=data)


def _record(client, patient, **data):
    assert client.post(f"/staff/patients/{patient.id}/events", data=data).status_code == 302


def test_staff_entered_forms_charts_heat_map_and_alert_acknowledgement(session, setup):
    client, nurse, patient = setup
    # The baseline was missed on the phone; the nurse transcribes the paper forms.
    baseline = _tp(session, patient, "baseline")
    page = client.get(f"/staff/patients/{patient.id}/timepoints/{baseline.id}/enter/eortc_qlq_c30")
    assert page.status_code == 200 and 'name="q30"' in page.get_data(as_text=True)
    c30 = {f"q{i}": 2 for i in range(1, 29)} | {"q29": 5, "q30": 5}
    assert _enter(client, patient, baseline, "eortc_qlq_c30", c30, entry_mode="paper_transcribed").status_code == 302
    _enter(client, patient, baseline, "eortc_qlq_bn20", {f"q{i}": 1 for i in range(1, 21)})
    _enter(client, patient, baseline, "eq5d5l", {"mo": 1, "sc": 1, "ua": 2, "pd": 2, "ad": 1, "vas": 70})
    session.expire_all()
    assert _tp(session, patient, "baseline").status == "completed"
    response = session.scalar(
        select(Response).where(Response.timepoint_id == baseline.id, Response.instrument_id == "eortc_qlq_c30")
    )
    assert (response.mode, response.respondent, response.entered_by) == ("paper_transcribed", "self_assisted", nurse.id)
    # A proxy needs a relationship.
    _record(client, patient, kind="systemic_cycle", date="2026-02-23", cycle_length_days="14")
    c1 = _tp(session, patient, "sys-c1")
    refused = _enter(client, patient, c1, "eortc_qlq_c30", c30, entry_respondent="proxy")
    assert refused.status_code == 422 and "relationship" in refused.get_data(as_text=True)
    worse = c30 | {"q29": 2, "q30": 2}
    _enter(client, patient, c1, "eortc_qlq_c30", worse, entry_respondent="proxy", entry_relationship="child")
    # Diary after an intrathecal dose, with a seizure: a red alert.
    _record(client, patient, kind="intrathecal_dose", date="2026-03-08")
    day1 = _tp(session, patient, "diary-2026-03-09")
    diary = {
        "temperature": "38.4",
        "chills": 0,
        "headache": 3,
        "neck_stiffness": 0,
        "nausea": 1,
        "vomiting": 0,
        "back_pain": 0,
        "vision": 0,
        "new_weakness": 0,
        "bladder_bowel": 0,
        "confusion": 0,
        "seizure": 1,
        "ommaya_site": 0,
    }
    entered = _enter(client, patient, day1, "symptom_diary", diary)
    assert entered.status_code == 302
    assert "RED ALERT" in client.get(entered.headers["Location"]).get_data(as_text=True)
    alert = session.scalar(select(Alert).where(Alert.patient_id == patient.id))
    assert alert.level == "red"
    dash = client.get("/staff/").get_data(as_text=True)
    assert "Red alerts" in dash and patient.study_id in dash

    page = client.get(f"/staff/patients/{patient.id}")
    assert page.status_code == 200
    body = page.get_data(as_text=True)
    assert "style=" not in body and "<script" not in body
    # QL2 chart: two points, baseline line and ±10 band, accessible title/desc.
    ql2 = re.search(
        r'<svg[^>]*aria-labelledby="c-eortc_qlq_c30-QL2-t c-eortc_qlq_c30-QL2-d">.*?</svg>', body, re.DOTALL
    )
    assert ql2, "QL2 chart missing"
    svg = ql2.group(0)
    assert '<title id="c-eortc_qlq_c30-QL2-t">' in svg and "<desc" in svg
    assert svg.count("<circle") == 2 and "stroke-dasharray" in svg and "<rect" in svg
    assert "change -50.0" in svg  # QL2 66.7 -> 16.7
    assert "Scores as a table" in body and "66.7" in body
    assert "c-eq5d5l-INDEX" in body or "c-eq5d5l-" in body
    # Heat map: the seizure cell is the darkest class, temperature 38.4 too; no inline styles.
    heat = re.search(r'<table class="heat">.*?</table>', body, re.DOTALL).group(0)
    assert '<td class="h4">1</td>' in heat and '<td class="h4">38.4</td>' in heat
    # Timeline: statuses and the patient's local dates.
    assert "Diary 2026-03-10" in body and "Completed" in body
    # Acknowledge: an action is required; then who, when and what are shown.
    ack = f"/staff/patients/{patient.id}/alerts/{alert.id}/acknowledge"
    client.post(ack, data={"action": ""})
    session.refresh(alert)
    assert alert.acknowledged_at is None
    assert client.post(ack, data={"action": "Called patient, sent to ER"}).status_code == 302
    session.refresh(alert)
    assert alert.acknowledged_by == nurse.id and alert.action_taken == "Called patient, sent to ER"
    body = client.get(f"/staff/patients/{patient.id}").get_data(as_text=True)
    assert f"Acknowledged by {nurse.full_name}" in body and "Called patient, sent to ER" in body
    assert "Red alerts" not in client.get("/staff/").get_data(as_text=True)
    # Help shares on the dashboard: 4 forms entered by staff, 1 by a proxy.
    assert client.get("/staff/").status_code == 200


def test_entering_a_form_that_was_submitted_already_is_refused(session, setup):
    client, _nurse, patient = setup
    baseline = _tp(session, patient, "baseline")
    answers = {"mo": 1, "sc": 1, "ua": 1, "pd": 1, "ad": 1, "vas": 90}
    _enter(client, patient, baseline, "eq5d5l", answers)
    again = _enter(client, patient, baseline, "eq5d5l", answers)
    assert again.status_code == 302
    assert "already submitted" in client.get(again.headers["Location"]).get_data(as_text=True)
    assert client.get(f"/staff/patients/{patient.id}/timepoints/{baseline.id}/enter/no_such_form").status_code == 404


def test_chart_is_pure_svg_with_missing_values_breaking_the_line():
    points = [Point(0, 50.0, "baseline"), Point(21, None, "c1"), Point(42, 70.0, "c2"), Point(63, 80.0, "c3")]
    svg = str(trajectory_svg(points, chart_id="x", title="T <b>", desc="D", y_min=0, y_max=100, baseline=50.0))
    assert svg.startswith("<svg") and "T &lt;b&gt;" in svg and "style=" not in svg
    assert svg.count("<polyline") == 1  # c1 missing: only c2-c3 are joined
    assert svg.count("<circle") == 3
    no_band = str(
        trajectory_svg(points, chart_id="y", title="t", desc="d", y_min=-0.4, y_max=1, band=None, baseline=0.8)
    )
    assert "<rect" not in no_band
    with pytest.raises(ValueError):
        trajectory_svg(points, chart_id="z", title="t", desc="d", y_min=1, y_max=1)


@pytest.mark.parametrize(
    "value,kw,expected",
    [
        (None, {"low": 0, "high": 4}, "hskip"),
        (0, {"low": 0, "high": 4}, "h0"),
        (3, {"low": 0, "high": 4}, "h3"),
        (1, {"low": 0, "high": 1}, "h4"),
        (37.6, {"low": 34, "high": 43, "kind": "temperature"}, "h2"),
        (36.8, {"low": 34, "high": 43, "kind": "temperature"}, "h0"),
        (2, {"low": 0, "high": 4, "kind": "nominal"}, "h3"),
        (4, {"low": 0, "high": 4, "kind": "nominal"}, "h4"),
    ],
)
def test_heat_levels(value, kw, expected):
    assert heat_level(value, **kw) == expected


def test_correcting_a_submitted_form_makes_a_new_audited_revision(session, setup):
    client, nurse, patient = setup
    baseline = _tp(session, patient, "baseline")
    _enter(client, patient, baseline, "eq5d5l", {"mo": 1, "sc": 1, "ua": 1, "pd": 1, "ad": 1, "vas": 90})
    original = session.scalar(select(Response).where(Response.timepoint_id == baseline.id))
    page = client.get(f"/staff/patients/{patient.id}").get_data(as_text=True)
    url = f"/staff/patients/{patient.id}/responses/{original.id}/correct"
    assert url in page
    form = client.get(url).get_data(as_text=True)
    assert 'value="90"' in form  # prefilled with the stored answers
    same = {"mo": 1, "sc": 1, "ua": 1, "pd": 1, "ad": 1, "vas": 90}
    assert client.post(url, data=same | {"correction_reason": "typo", "mo": 3}).status_code == 302
    assert client.post(url, data=same | {"mo": 2, "correction_reason": ""}).status_code == 422  # reason required
    revisions = session.scalars(
        select(Response).where(Response.timepoint_id == baseline.id).order_by(Response.revision)
    ).all()
    assert [r.revision for r in revisions] == [0, 1]
    assert revisions[1].supersedes_id == original.id and revisions[1].correction_reason == "typo"
    assert revisions[1].entered_by == nurse.id
    # The page now offers to correct the newest revision, not the original.
    page = client.get(f"/staff/patients/{patient.id}").get_data(as_text=True)
    assert f"/responses/{revisions[1].id}/correct" in page and url not in page


def test_paper_form_entered_days_after_it_was_filled_counts_from_its_date(app, session, factory, now, tmp_path):
    """CLINICAL.md §3: a paper form records the date the patient completed it; window status and
    study day come from that date, the transcription time is kept; items numbered as on paper."""
    import io
    import zipfile

    import pandas as pd

    from qol_app.export.run import ExportRequest, ExportSettings
    from qol_app.export.source import ExportFilters
    from qol_app.models import Patient
    from qol_app.scheduling import is_late
    from qol_app.services import compliance
    from qol_app.services.audit import Actor
    from qol_app.services.exports import run_export

    no_csrf(app)
    site = factory.site(code="PP1")
    nurse = factory.staff("nurse", sites=[site])
    client = isolated_client(app)
    login(client, nurse)
    rand = dt.date(2026, 3, 8)
    patient = factory.patient(site, arm="B", randomization_date=rand, pin=None).patient
    patient.created_at = dt.datetime(2026, 3, 1, 2, tzinfo=dt.UTC)  # enrolled before the window opened
    timepoints.reconcile_patient(session, factory.actor, patient, now)
    baseline = _tp(session, patient, "baseline")  # window 1-8 March, grace to 11 March; today 10 March
    assert baseline.status == "overdue" and baseline.missed_reason is None

    page = client.get(f"/staff/patients/{patient.id}/timepoints/{baseline.id}/enter/eortc_qlq_bn20")
    html = page.get_data(as_text=True)
    assert 'name="entry_completed_on"' in html and 'value="2026-03-10"' in html  # today unless changed
    numbers = re.findall(r'class="item-number"[^>]*>(\d+)\.', html)
    assert numbers == [str(n) for n in range(31, 51)]  # BN20 after the C30 on the paper form

    c30 = {f"q{i}": 2 for i in range(1, 29)} | {"q29": 5, "q30": 5}
    paper = {"entry_mode": "paper_transcribed", "entry_completed_on": "2026-03-12"}
    assert _enter(client, patient, baseline, "eortc_qlq_c30", c30, **paper).status_code == 422  # future
    paper["entry_completed_on"] = "2026-02-28"
    response = _enter(client, patient, baseline, "eortc_qlq_c30", c30, **paper)
    assert response.status_code == 422 and "before this form" in response.get_data(as_text=True)
    paper["entry_completed_on"] = ""
    assert _enter(client, patient, baseline, "eortc_qlq_c30", c30, **paper).status_code == 422  # no date
    paper["entry_completed_on"] = "2026-03-07"  # filled on time, transcribed three days later
    assert _enter(client, patient, baseline, "eortc_qlq_c30", c30, **paper).status_code == 302
    assert (
        _enter(client, patient, baseline, "eortc_qlq_bn20", {f"q{i}": 1 for i in range(1, 21)}, **paper).status_code
        == 302
    )
    eq5d = {"mo": 1, "sc": 1, "ua": 2, "pd": 2, "ad": 1, "vas": 70}
    assert _enter(client, patient, baseline, "eq5d5l", eq5d, **paper).status_code == 302
    session.expire_all()
    baseline = _tp(session, patient, "baseline")
    forms = session.scalars(select(Response).where(Response.timepoint_id == baseline.id)).all()
    assert {r.completed_on for r in forms} == {dt.date(2026, 3, 7)}
    assert {r.submitted_at for r in forms} == {now}  # the transcription time is kept
    assert baseline.status == "completed"
    assert baseline.completed_at == dt.datetime(2026, 3, 6, 16, tzinfo=dt.UTC)  # 7 March 00:00 in Shanghai
    assert not is_late(baseline, baseline.completed_at)  # on time, though entered during the grace period
    cell = compliance.totals(compliance.compute(session, Patient.id == patient.id, now), "questionnaire", "B")
    assert (cell.on_time, cell.late) == (1, 0)
    out = tmp_path / "export"
    request = ExportRequest(formats=("csv",), filters=ExportFilters(), as_of=now)
    result = run_export(session, request, out, actor=Actor.system("tests"), now=now, settings=ExportSettings())
    archive = zipfile.ZipFile(result.zip_path)
    forms = pd.read_csv(io.BytesIO(archive.read("forms.csv")), dtype=str, keep_default_na=False)
    mine = forms[forms["patient_id"] == patient.study_id]
    assert set(mine["window_status"]) == {"on_time"} and set(mine["completed_day"]) == {"-1"}  # 7 March, randomized 8th
