"""Statistician exports end to end: access, the zip and its manifest, as-of semantics, reproducible
bytes, the audit trail, the CLI, and a scan of every exported file for identifying data."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import io
import json
import zipfile
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
from fhir.resources.R4B.bundle import Bundle
from sqlalchemy import select

from qol_app import __version__
from qol_app.export.run import FORMATS, ExportRequest, ExportSettings, run_export
from qol_app.export.source import ExportFilters
from qol_app.models import AuditEvent, ExportJob
from qol_app.scoring import SCORING_VERSION
from qol_app.services import alerts, exports, responses
from qol_app.services.audit import Actor
from tests.factories import isolated_client

UTC = dt.UTC
C30, EQ5D, DIARY = "eortc_qlq_c30", "eq5d5l", "symptom_diary"
C30_ANSWERS = {f"q{i}": 1 for i in range(1, 29)} | {"q29": 7, "q30": 7}
C30_WORSE = {f"q{i}": 3 for i in range(1, 29)} | {"q29": 2, "q30": 2}
EQ_ANSWERS = {"mo": 1, "sc": 1, "ua": 2, "pd": 1, "ad": 1, "vas": 85}
EARLY = dt.datetime(2026, 2, 3, tzinfo=UTC)  # after cycle 1's form, before the correction and the death record
SECRET_TEXTS = (
    "Li Na at daughter's wedding in Hangzhou",
    "neighbour Auntie Wang",
    "Called Li Na's husband",
    "item 29 was mis-tapped by Li Na",
)


@dataclasses.dataclass
class Trial:
    nurse: object
    statistician: object
    admin: object
    investigator: object
    needles: list[str]


def _day(d: dt.date, hour: int = 16) -> dt.datetime:
    """16:00 UTC = midnight in Shanghai: the start of the next local day."""
    return dt.datetime.combine(d, dt.time(hour), tzinfo=UTC)


def _timepoint(factory, enrolled, key, target, instruments, **kw):
    opens = _day(target - dt.timedelta(days=4))
    tp = factory.timepoint(
        enrolled,
        key=key,
        instruments=instruments,
        target_date=target,
        anchor_date=target,
        opens_at=opens,
        closes_at=opens + dt.timedelta(days=7),
        grace_closes_at=opens + dt.timedelta(days=10),
        rule_id=key.split("-")[0],
        anchor_kind="randomization" if key == "baseline" else "systemic_cycle",
        kind="diary" if instruments == [DIARY] else "questionnaire",
        **kw,
    )
    tp.created_at = _day(target - dt.timedelta(days=30))
    return tp


def _fill(session, enrolled, tp, instrument_id, answers, at, *, respondent="self", relationship=None):
    patient = enrolled.patient
    actor = Actor("patient", str(patient.id))
    # The app stores only its relationship codes; free text here stands for a row written by an
    # older version, which the export must still never show.
    legacy = relationship if relationship not in (None, *responses.RELATIONSHIPS) else None
    responses.set_respondent(session, actor, tp, respondent, "other_relative" if legacy else relationship, at)
    instrument = responses.registry().get(instrument_id)
    texts = responses.localized(session, instrument, patient.language)
    response = responses.start_response(session, actor, tp, texts, at)
    items = responses.presented_items(instrument, patient)
    responses.save_page(session, actor, response, items, answers, at, skip=items)
    result = responses.submit(session, actor, response, patient, at)
    if legacy:
        tp.respondent_relationship = response.respondent_relationship = legacy
        session.flush()
    return result


@pytest.fixture
def trial(session, factory) -> Trial:
    """Two sites, two patients with contact details, completed / corrected / missed ('other' with free
    text) / pending / cancelled / not-expected forms, a diary with a red alert handled by a nurse."""
    s1 = factory.site("S1", name="Riverside Teaching Hospital", contact_phone="021-6666-1234")
    s2 = factory.site("S2", name="Lakeside Cancer Centre", contact_phone="0991-777-4321")
    nurse = factory.staff(
        "nurse", [s1], full_name="Zhou Meiling", email="zhou.meiling@riverside.example", phone="13700001111"
    )
    stat = factory.staff("statistician", full_name="Qian Jun", email="qian.jun@stats.example", phone="13600002222")
    admin = factory.staff("admin", [s1, s2], full_name="Admin Sun Li", email="sun.li@admin.example")
    inv = factory.staff("investigator", [s1, s2], full_name="Dr Wu Gang", email="wu.gang@riverside.example")
    p1 = factory.patient(
        s1,
        arm="A",
        study_id="S1-001",
        randomization_date=dt.date(2026, 1, 5),
        pin="739164",
        email="li.na.patient@example.com",
        phone="13912345678",
    )
    p2 = factory.patient(
        s2,
        arm="B",
        study_id="S2-001",
        randomization_date=dt.date(2026, 1, 20),
        pin="582046",
        email="zhang.wei@example.net",
        phone="+86 139 8765 4321",
        language="en",
    )
    for enrolled in (p1, p2):
        enrolled.patient.created_at = dt.datetime(2025, 12, 1, tzinfo=UTC)

    base = _timepoint(factory, p1, "baseline", dt.date(2026, 1, 5), [C30, EQ5D])
    _fill(session, p1, base, C30, C30_ANSWERS, dt.datetime(2026, 1, 4, 2, tzinfo=UTC))
    _fill(session, p1, base, EQ5D, EQ_ANSWERS, dt.datetime(2026, 1, 4, 2, 5, tzinfo=UTC))
    cycle1 = _timepoint(factory, p1, "sys-c1", dt.date(2026, 2, 1), [C30, EQ5D], anchor_number=1)
    first = _fill(
        session,
        p1,
        cycle1,
        C30,
        C30_WORSE,
        dt.datetime(2026, 2, 2, 3, tzinfo=UTC),
        respondent="proxy",
        relationship=SECRET_TEXTS[1],
    )
    responses.correct_response(
        session, nurse, first.response, {"q30": 1}, SECRET_TEXTS[3], dt.datetime(2026, 3, 5, tzinfo=UTC)
    )
    cycle2 = _timepoint(factory, p1, "sys-c2", dt.date(2026, 2, 22), [C30, EQ5D], anchor_number=2)
    cycle2.missed_reason, cycle2.missed_reason_text, cycle2.status = "other", SECRET_TEXTS[0], "missed"
    _timepoint(factory, p1, "sys-c3", dt.date(2026, 3, 12), [C30, EQ5D], anchor_number=3)  # open now
    _timepoint(
        factory,
        p1,
        "sys-c9",
        dt.date(2026, 2, 10),
        [C30],
        status="cancelled",
        status_changed_at=dt.datetime(2026, 2, 1, tzinfo=UTC),
        cancel_reason="cycle deleted",
    )
    diary = _timepoint(factory, p1, "diary-2026-01-15", dt.date(2026, 1, 15), [DIARY])
    raised = _fill(
        session, p1, diary, DIARY, {"seizure": 1, "headache": 1}, dt.datetime(2026, 1, 15, 3, tzinfo=UTC)
    ).alert
    assert raised is not None and raised.level == "red"
    alerts.acknowledge(
        session,
        Actor("staff", str(nurse.id)),
        raised,
        nurse,
        SECRET_TEXTS[2] + " on 13912345678",
        dt.datetime(2026, 1, 15, 5, tzinfo=UTC),
    )

    base2 = _timepoint(factory, p2, "baseline", dt.date(2026, 1, 20), [C30, EQ5D])
    _fill(session, p2, base2, C30, C30_ANSWERS, dt.datetime(2026, 1, 19, 1, tzinfo=UTC))
    _timepoint(
        factory,
        p2,
        "sys-c1",
        dt.date(2026, 3, 5),
        [C30, EQ5D],
        status="not_expected",
        not_expected_reason="died",
        status_changed_at=dt.datetime(2026, 2, 26, tzinfo=UTC),
    )
    p2.patient.status, p2.patient.status_date = "died", dt.date(2026, 2, 25)
    session.flush()

    needles = [
        s1.name,
        s2.name,
        "021-6666-1234",
        "0991-777-4321",
        *SECRET_TEXTS,
        nurse.full_name,
        nurse.email,
        "13700001111",
        stat.full_name,
        stat.email,
        "13600002222",
        admin.full_name,
        admin.email,
        inv.full_name,
        inv.email,
        nurse.username,
        stat.username,
        "li.na.patient@example.com",
        "13912345678",
        "zhang.wei@example.net",
        "8765 4321",
        p1.token,
        p2.token,
        p1.patient.link_token_hash,
        p2.patient.link_token_hash,
        "739164",
        "582046",
        "Li Na",
        "Zhang Wei",
        "Hangzhou",
        "Auntie",
    ]
    return Trial(nurse, stat, admin, inv, needles)


def _export(session, tmp_path: Path, *, formats=("csv",), as_of=None, name="out", settings=None, **kw):
    request = ExportRequest(
        formats=tuple(formats),
        filters=kw.pop("filters", ExportFilters()),
        as_of=as_of or dt.datetime(2026, 3, 10, 4, tzinfo=UTC),
        **kw,
    )
    return run_export(
        session,
        request,
        tmp_path / name,
        actor=Actor.system("tests"),
        now=dt.datetime(2026, 3, 10, 4, tzinfo=UTC),
        settings=settings or ExportSettings(),
    )


def _read_csv(archive: zipfile.ZipFile, name: str) -> pd.DataFrame:
    return pd.read_csv(io.BytesIO(archive.read(name)), dtype=str, keep_default_na=False)


# ---------------------------------------------------------------- access


def run_jobs(app, clock=None) -> int:
    """What the scheduler process does every few seconds: run the queued export jobs."""
    from qol_app.db import db

    return exports.run_pending(
        db.session,
        Path(app.config["EXPORT_DIR"]),
        settings=ExportSettings.from_config(app.config),
        registry=responses.registry(),
        clock=clock or (lambda: dt.datetime(2026, 3, 10, 4, tzinfo=UTC)),
    )


def _download(client, app, data: dict) -> bytes:
    """POST the export form, let the background runner do the job, then download the zip."""
    queued = client.post("/stats/export", data=data)
    assert queued.status_code == 303, queued.get_data(as_text=True)[:500]
    assert run_jobs(app) == 1
    page = client.get(queued.headers["Location"])
    assert page.status_code == 200 and "Download the zip" in page.get_data(as_text=True)
    with client.get(queued.headers["Location"] + "/download") as response:
        assert response.status_code == 200, response.get_data(as_text=True)[:500]
        assert response.mimetype == "application/zip"
        return response.get_data()


def _login(client, user) -> None:
    from tests.factories import login

    login(client, user)


@pytest.mark.parametrize("role", ["nurse", "investigator"])
def test_other_roles_get_403_for_page_and_download(app, trial, role):
    app.config["WTF_CSRF_ENABLED"] = False
    client = isolated_client(app)
    _login(client, trial.nurse if role == "nurse" else trial.investigator)
    assert client.get("/stats/").status_code == 403
    assert client.post("/stats/export", data={"formats": "csv"}).status_code == 403


def test_anonymous_is_sent_to_sign_in(app):
    app.config["WTF_CSRF_ENABLED"] = False
    client = isolated_client(app)
    for response in (client.get("/stats/"), client.post("/stats/export", data={"formats": "csv"})):
        assert response.status_code == 302 and "/staff/login" in response.headers["Location"]


def test_statistician_downloads_an_audited_zip(app, trial, session):
    app.config["WTF_CSRF_ENABLED"] = False
    client = isolated_client(app)
    _login(client, trial.statistician)
    page = client.get("/stats/")
    assert page.status_code == 200 and "S1" in page.get_data(as_text=True)
    form = {"formats": ["csv", "parquet"], "sites": ["S1"], "as_of": "2026-03-10T00:00:00Z", "labels": "en"}
    queued = client.post("/stats/export", data=form | {"threshold": "10"})
    assert queued.status_code == 303
    waiting = client.get(queued.headers["Location"]).get_data(as_text=True)
    assert 'http-equiv="refresh"' in waiting and "<progress" in waiting and "Waiting to start" in waiting
    assert run_jobs(app) == 1
    done = client.get(queued.headers["Location"]).get_data(as_text=True)
    assert 'http-equiv="refresh"' not in done and "conquer_qol_20260310T000000Z.zip" in done
    with client.get(queued.headers["Location"] + "/download") as response:
        assert response.status_code == 200, response.get_data(as_text=True)[:500]
        assert response.mimetype == "application/zip"
        assert "conquer_qol_20260310T000000Z.zip" in response.headers["Content-Disposition"]
        data = response.get_data()
    archive = zipfile.ZipFile(io.BytesIO(data))
    manifest = json.loads(archive.read("manifest.json"))
    assert manifest["app_version"] == __version__ and manifest["scoring_version"] == SCORING_VERSION
    assert manifest["as_of"] == "2026-03-10T00:00:00Z"
    assert manifest["filters"]["sites"] == ["S1"] and manifest["instrument_versions"][C30] == "3.0"
    for entry in manifest["files"]:
        assert hashlib.sha256(archive.read(entry["name"])).hexdigest() == entry["sha256"]
    assert {"qol_long.csv", "qol_long.parquet", "data_dictionary.csv", "data_dictionary.parquet"} <= set(
        archive.namelist()
    )
    assert set(_read_csv(archive, "patients.csv")["patient_id"]) == {"S1-001"}
    event = session.scalars(select(AuditEvent).where(AuditEvent.action == "export")).one()
    assert (event.actor_type, event.actor_id) == ("staff", str(trial.statistician.id))
    downloaded = session.scalars(select(AuditEvent).where(AuditEvent.action == "export_download")).one()
    assert downloaded.actor_id == str(trial.statistician.id)
    assert event.new["files"] == {e["name"]: e["sha256"] for e in manifest["files"]}
    assert event.new["zip_sha256"] == hashlib.sha256(data).hexdigest()
    assert event.new["filters"]["sites"] == ["S1"]
    page = client.get("/stats/").get_data(as_text=True)  # the audit trail lists it on the page
    assert event.new["zip_sha256"][:16] in page and trial.statistician.username in page


def test_bad_requests_come_back_to_the_form(app, trial):
    app.config["WTF_CSRF_ENABLED"] = False
    client = isolated_client(app)
    _login(client, trial.admin)
    assert client.post("/stats/export", data={"labels": "en", "threshold": "10"}).status_code == 400
    future = client.post(
        "/stats/export", data={"formats": "csv", "as_of": "2027-01-01T00:00:00Z", "labels": "en", "threshold": "10"}
    )
    assert future.status_code == 400 and "future" in future.get_data(as_text=True)
    assert session_jobs(app) == 0


def session_jobs(app) -> int:
    from qol_app.db import db

    return len(db.session.scalars(select(ExportJob)).all())


def test_progress_is_visible_from_another_request_while_the_job_runs(app, trial):
    """The runner commits progress after each step: a page load meanwhile (any web worker) sees it."""
    app.config["WTF_CSRF_ENABLED"] = False
    client = isolated_client(app)
    _login(client, trial.statistician)
    url = client.post("/stats/export", data={"formats": ["csv", "xlsx"], "labels": "en", "threshold": "10"}).headers[
        "Location"
    ]
    other = isolated_client(app)
    _login(other, trial.statistician)
    states = []

    def watching_clock() -> dt.datetime:
        if len(states) < 20:
            states.append(other.get(url).get_data(as_text=True))
        return dt.datetime(2026, 3, 10, 4, tzinfo=UTC)

    assert run_jobs(app, watching_clock) == 1
    running = [page for page in states if "Exporting:" in page]
    assert running and 'http-equiv="refresh"' in running[-1]
    import re

    values = [int(re.search(r'<progress id="progress" max="\d+" value="(\d+)"', page)[1]) for page in running]
    assert values == sorted(values) and values[-1] > values[0]
    assert "Download the zip" in other.get(url).get_data(as_text=True)
    stranger = isolated_client(app)
    _login(stranger, trial.admin)
    assert stranger.get(url).status_code == 404 and stranger.get(url + "/download").status_code == 404


def test_a_failed_or_stale_job_says_so(app, trial, session):
    app.config["WTF_CSRF_ENABLED"] = False
    client = isolated_client(app)
    _login(client, trial.statistician)
    url = client.post("/stats/export", data={"formats": "csv", "labels": "en", "threshold": "10"}).headers["Location"]
    job = session.scalars(select(ExportJob)).one()
    job.status, job.heartbeat_at = "running", dt.datetime(2026, 3, 9, tzinfo=UTC)
    session.commit()
    run_jobs(app)
    page = client.get(url).get_data(as_text=True)
    assert "The export failed" in page and "interrupted" in page and 'http-equiv="refresh"' not in page


# ---------------------------------------------------------------- contents


def test_missed_form_appears_with_its_reason_code_in_long_and_forms(session, trial, tmp_path):
    result = _export(session, tmp_path)
    archive = zipfile.ZipFile(result.zip_path)
    long = _read_csv(archive, "qol_long.csv")
    missed = long[(long["patient_id"] == "S1-001") & (long["timepoint"] == "sys-c2")]
    assert len(missed) == 16 + 2 and set(missed["status"]) == {"missed"}
    assert set(missed["missing_reason"]) == {"other"} and set(missed["score"]) == {""}
    forms = _read_csv(archive, "forms.csv")
    row = forms[(forms["timepoint"] == "sys-c2") & (forms["instrument"] == C30)].iloc[0]
    assert (row["status"], row["missing_reason"], row["target_day"]) == ("missed", "other", "49")
    dead = forms[forms["patient_id"] == "S2-001"]
    assert dead[dead["timepoint"] == "sys-c1"][["status", "missing_reason"]].values.tolist() == [
        ["not_expected", "died"],
        ["not_expected", "died"],
    ]
    assert "sys-c9" not in set(forms["timepoint"])  # cancelled
    dictionary = _read_csv(archive, "data_dictionary.csv")
    ql2 = dictionary[(dictionary["dataset"] == "qol_long") & (dictionary["code"] == "QL2")].iloc[0]
    assert (ql2["code_label_en"], ql2["code_label_zh_hans"]) == ("Global health status/QoL", "总体健康状况/生活质量")
    assert set(forms[forms["timepoint"] == "sys-c3"]["status"]) == {"pending"}
    assert "diary-d11" in set(forms["timepoint"])  # a diary date becomes a study day
    corrected = long[(long["timepoint"] == "sys-c1") & (long["scale"] == "QL2")].iloc[0]
    assert (corrected["revision"], corrected["respondent"], corrected["deteriorated"]) == ("1", "proxy", "1")
    assert float(corrected["baseline_score"]) == 100.0
    patients = _read_csv(archive, "patients.csv").set_index("patient_id")
    assert patients.loc["S2-001", "pt_status"] == "died" and patients.loc["S2-001", "death_day"] == "37"
    alert = _read_csv(archive, "alerts.csv").iloc[0]
    assert (alert["timepoint"], alert["level"], alert["rules"], alert["acknowledged"], alert["ack_hours"]) == (
        "diary-d11",
        "red",
        "red_seizure",
        "1",
        "2",
    )


def test_as_of_keeps_only_what_was_known_then(session, trial, tmp_path):
    archive = zipfile.ZipFile(_export(session, tmp_path, as_of=EARLY).zip_path)
    forms = _read_csv(archive, "forms.csv")
    assert set(forms["timepoint"]) == {"baseline", "sys-c1", "diary-d11"}  # later ones not open yet
    cycle = forms[(forms["timepoint"] == "sys-c1") & (forms["instrument"] == C30)].iloc[0]
    assert (cycle["status"], cycle["revision"]) == ("completed", "0")  # the correction came later
    eq = forms[(forms["timepoint"] == "sys-c1") & (forms["instrument"] == EQ5D)].iloc[0]
    assert eq["status"] == "pending"
    assert _read_csv(archive, "patients.csv").set_index("patient_id").loc["S2-001", "pt_status"] == "active"
    long = _read_csv(archive, "qol_long.csv")
    ql = long[(long["timepoint"] == "sys-c1") & (long["scale"] == "QL2")].iloc[0]
    assert float(ql["score"]) == pytest.approx(100 / 6)


def test_filters_by_site_arm_instrument_and_date(session, trial, tmp_path):
    filters = ExportFilters(
        arms=("A",), instruments=(EQ5D,), date_from=dt.date(2026, 1, 20), date_to=dt.date(2026, 2, 28)
    )
    archive = zipfile.ZipFile(_export(session, tmp_path, filters=filters).zip_path)
    long = _read_csv(archive, "qol_long.csv")
    assert set(long["patient_id"]) == {"S1-001"} and set(long["instrument"]) == {EQ5D}
    assert set(long["timepoint"]) == {"sys-c1", "sys-c2"}
    vas = long[(long["timepoint"] == "sys-c1") & (long["scale"] == "VAS")].iloc[0]
    assert vas["baseline_score"] == "85"  # the baseline is outside the range but still the baseline
    wide = _read_csv(archive, "qol_wide.csv")
    assert [c for c in wide.columns if c.startswith("C30")] == [] and "EQ5D_INDEX" in wide.columns


def test_same_as_of_gives_byte_identical_exports(session, trial, tmp_path):
    first = _export(session, tmp_path, formats=FORMATS, name="a")
    second = _export(session, tmp_path, formats=FORMATS, name="b")
    assert first.zip_path.read_bytes() == second.zip_path.read_bytes()
    names = zipfile.ZipFile(first.zip_path).namelist()
    assert {
        "qs.xpt",
        "qs.csv",
        "fhir_bundle.json",
        "qol_long.sav",
        "qol_long.dta",
        "qol_long.xpt",
        "qol_long.xlsx",
        "data_dictionary.sav",
    } <= set(names)
    later = _export(session, tmp_path, formats=("csv",), name="c", as_of=EARLY)
    assert later.zip_path.read_bytes() != first.zip_path.read_bytes()


def _searchable(name: str, data: bytes) -> str:
    """The text a reader could get out of one exported file, whatever its encoding or compression."""
    if name.endswith(".xlsx"):
        with zipfile.ZipFile(io.BytesIO(data)) as book:
            return "\n".join(book.read(n).decode("utf-8", "ignore") for n in book.namelist())
    if name.endswith(".parquet"):
        table = pq.read_table(io.BytesIO(data))
        return table.to_pandas().to_csv() + str(table.schema.metadata) + str(table.schema)
    return data.decode("utf-8", "ignore") + data.decode("latin-1")


def test_no_names_contacts_tokens_or_free_text_in_any_file(session, trial, tmp_path):
    result = _export(
        session, tmp_path, formats=FORMATS, iso_dates=True, settings=ExportSettings(iso_dates_allowed=True)
    )
    archive = zipfile.ZipFile(result.zip_path)
    assert len(archive.namelist()) > 40
    found = []
    for name in archive.namelist():
        text = _searchable(name, archive.read(name)).lower()
        found += [(name, needle) for needle in trial.needles if needle and needle.lower() in text]
    assert found == []
    Bundle.model_validate(json.loads(archive.read("fhir_bundle.json")))
    # ISO dates were asked for and allowed here; by default none of them appear
    assert "2026-01-04" in archive.read("forms.csv").decode()
    default = zipfile.ZipFile(_export(session, tmp_path, formats=("csv", "fhir", "sdtm"), name="d").zip_path)
    for name in default.namelist():  # the as-of time (the bundle's timestamp) is not patient data
        if name.endswith((".csv", ".json")) and name != "manifest.json":
            assert "2026-0" not in default.read(name).decode("utf-8").replace("2026-03-10T04:00:00Z", ""), name


def test_iso_dates_need_the_admin_setting(session, trial, tmp_path, app):
    with pytest.raises(PermissionError):
        _export(session, tmp_path, iso_dates=True)
    app.config["WTF_CSRF_ENABLED"] = False
    client = isolated_client(app)
    _login(client, trial.statistician)
    form = {"formats": "csv", "iso_dates": "y", "labels": "en", "threshold": "10", "as_of": "2026-03-10T00:00:00Z"}
    archive = zipfile.ZipFile(io.BytesIO(_download(client, app, form)))  # study days: the option is not offered
    assert json.loads(archive.read("manifest.json"))["options"]["iso_dates"] is False
    app.config["EXPORT_ISO_DATES"] = True
    archive = zipfile.ZipFile(io.BytesIO(_download(client, app, form)))
    assert json.loads(archive.read("manifest.json"))["options"]["iso_dates"] is True
    assert "2026-01-05" in archive.read("patients.csv").decode()


def test_cli_export_writes_the_zip_and_audits(app, trial, session, tmp_path):
    result = app.test_cli_runner().invoke(
        args=[
            "export",
            "--format",
            "csv,sdtm",
            "--out",
            str(tmp_path),
            "--site",
            "S2",
            "--as-of",
            "2026-03-01T00:00:00Z",
            "--keep-files",
        ]
    )
    assert result.exit_code == 0, result.output
    zip_path = tmp_path / "conquer_qol_20260301T000000Z.zip"
    assert str(zip_path) in result.output and "Exporting" in result.output
    assert (tmp_path / "conquer_qol_20260301T000000Z" / "qs.xpt").exists()
    manifest = json.loads(zipfile.ZipFile(zip_path).read("manifest.json"))
    assert manifest["filters"]["sites"] == ["S2"] and manifest["options"]["formats"] == ["csv", "sdtm"]
    event = session.scalars(select(AuditEvent).where(AuditEvent.action == "export")).one()
    assert event.actor_type == "system" and event.actor_id.startswith("cli:")
    bad = app.test_cli_runner().invoke(args=["export", "--format", "pdf", "--out", str(tmp_path)])
    assert bad.exit_code != 0 and "formats must be" in bad.output
