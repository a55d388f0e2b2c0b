"""Statistician exports end to end: access, the zip and its manifest, as-of semantics, reproducible
bytes, the audit trail, the CLI, and a scan of every exported file for identifying data."""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import zipfile
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from fhir.resources.R4B.bundle import Bundle
from sqlalchemy import select

from qol_app import __version__
from qol_app.export.run import FORMATS, ExportSettings
from qol_app.export.source import ExportFilters
from qol_app.models import AuditEvent, ExportJob
from qol_app.scoring import SCORING_VERSION
from qol_app.services import exports, responses
from tests.factories import isolated_client
from tests.web.conftest import C30, EQ5D, export, read_csv

UTC = dt.UTC
EARLY = dt.datetime(2026, 2, 3, tzinfo=UTC)  # after cycle 1's form, before the correction and the death record


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
def test_other_roles_get_403_for_page_and_download(app, export_trial, role):
    app.config["WTF_CSRF_ENABLED"] = False
    client = isolated_client(app)
    _login(client, export_trial.nurse if role == "nurse" else export_trial.investigator)
    assert client.get("/stats/").status_code == 403
    assert client.post("/stats/export", data={"formats": "csv"}).status_code == 403


def test_anonymous_is_sent_to_sign_in(app):
    app.config["WTF_CSRF_ENABLED"] = False
    client = isolated_client(app)
    for response in (client.get("/stats/"), client.post("/stats/export", data={"formats": "csv"})):
        assert response.status_code == 302 and "/staff/login" in response.headers["Location"]


def test_statistician_downloads_an_audited_zip(app, export_trial, session):
    app.config["WTF_CSRF_ENABLED"] = False
    client = isolated_client(app)
    _login(client, export_trial.statistician)
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
    assert set(read_csv(archive, "patients.csv")["patient_id"]) == {"S1-001"}
    event = session.scalars(select(AuditEvent).where(AuditEvent.action == "export")).one()
    assert (event.actor_type, event.actor_id) == ("staff", str(export_trial.statistician.id))
    downloaded = session.scalars(select(AuditEvent).where(AuditEvent.action == "export_download")).one()
    assert downloaded.actor_id == str(export_trial.statistician.id)
    assert event.new["files"] == {e["name"]: e["sha256"] for e in manifest["files"]}
    assert event.new["zip_sha256"] == hashlib.sha256(data).hexdigest()
    assert event.new["filters"]["sites"] == ["S1"]
    page = client.get("/stats/").get_data(as_text=True)  # the audit trail lists it on the page
    assert event.new["zip_sha256"][:16] in page and export_trial.statistician.username in page


def test_bad_requests_come_back_to_the_form(app, export_trial):
    app.config["WTF_CSRF_ENABLED"] = False
    client = isolated_client(app)
    _login(client, export_trial.admin)
    assert client.post("/stats/export", data={"labels": "en", "threshold": "10"}).status_code == 400
    future = client.post(
        "/stats/export", data={"formats": "csv", "as_of": "2027-01-01T00:00:00Z", "labels": "en", "threshold": "10"}
    )
    assert future.status_code == 400 and "future" in future.get_data(as_text=True)
    assert session_jobs(app) == 0


def session_jobs(app) -> int:
    from qol_app.db import db

    return len(db.session.scalars(select(ExportJob)).all())


def test_progress_is_visible_from_another_request_while_the_job_runs(app, export_trial):
    """The runner commits progress after each step: a page load meanwhile (any web worker) sees it."""
    app.config["WTF_CSRF_ENABLED"] = False
    client = isolated_client(app)
    _login(client, export_trial.statistician)
    url = client.post("/stats/export", data={"formats": ["csv", "xlsx"], "labels": "en", "threshold": "10"}).headers[
        "Location"
    ]
    other = isolated_client(app)
    _login(other, export_trial.statistician)
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
    _login(stranger, export_trial.admin)
    assert stranger.get(url).status_code == 404 and stranger.get(url + "/download").status_code == 404


def test_a_failed_or_stale_job_says_so(app, export_trial, session):
    app.config["WTF_CSRF_ENABLED"] = False
    client = isolated_client(app)
    _login(client, export_trial.statistician)
    url = client.post("/stats/export", data={"formats": "csv", "labels": "en", "threshold": "10"}).headers["Location"]
    job = session.scalars(select(ExportJob)).one()
    job.status, job.heartbeat_at = "running", dt.datetime(2026, 3, 9, tzinfo=UTC)
    session.commit()
    run_jobs(app)
    page = client.get(url).get_data(as_text=True)
    assert "The export failed" in page and "interrupted" in page and 'http-equiv="refresh"' not in page


# ---------------------------------------------------------------- contents


def test_missed_form_appears_with_its_reason_code_in_long_and_forms(session, export_trial, tmp_path):
    result = export(session, tmp_path)
    archive = zipfile.ZipFile(result.zip_path)
    long = read_csv(archive, "qol_long.csv")
    missed = long[(long["patient_id"] == "S1-001") & (long["timepoint"] == "sys-c2")]
    assert len(missed) == 16 + 2 and set(missed["status"]) == {"missed"}
    assert set(missed["missing_reason"]) == {"other"} and set(missed["score"]) == {""}
    forms = read_csv(archive, "forms.csv")
    row = forms[(forms["timepoint"] == "sys-c2") & (forms["instrument"] == C30)].iloc[0]
    assert (row["status"], row["missing_reason"], row["target_day"]) == ("missed", "other", "49")
    dead = forms[forms["patient_id"] == "S2-001"]
    assert dead[dead["timepoint"] == "sys-c1"][["status", "missing_reason"]].values.tolist() == [
        ["not_expected", "died"],
        ["not_expected", "died"],
    ]
    assert "sys-c9" not in set(forms["timepoint"])  # cancelled
    dictionary = read_csv(archive, "data_dictionary.csv")
    ql2 = dictionary[(dictionary["dataset"] == "qol_long") & (dictionary["code"] == "QL2")].iloc[0]
    assert (ql2["code_label_en"], ql2["code_label_zh_hans"]) == ("Global health status/QoL", "总体健康状况/生活质量")
    assert set(forms[forms["timepoint"] == "sys-c3"]["status"]) == {"pending"}
    assert "diary-d11" in set(forms["timepoint"])  # a diary date becomes a study day
    corrected = long[(long["timepoint"] == "sys-c1") & (long["scale"] == "QL2")].iloc[0]
    assert (corrected["revision"], corrected["respondent"], corrected["deteriorated"]) == ("1", "proxy", "1")
    assert float(corrected["baseline_score"]) == 100.0
    patients = read_csv(archive, "patients.csv").set_index("patient_id")
    assert patients.loc["S2-001", "pt_status"] == "died" and patients.loc["S2-001", "death_day"] == "37"
    alert = read_csv(archive, "alerts.csv").iloc[0]
    assert (alert["timepoint"], alert["level"], alert["rules"], alert["acknowledged"], alert["ack_hours"]) == (
        "diary-d11",
        "red",
        "red_seizure",
        "1",
        "2",
    )


def test_as_of_keeps_only_what_was_known_then(session, export_trial, tmp_path):
    archive = zipfile.ZipFile(export(session, tmp_path, as_of=EARLY).zip_path)
    forms = read_csv(archive, "forms.csv")
    assert set(forms["timepoint"]) == {"baseline", "sys-c1", "diary-d11"}  # later ones not open yet
    cycle = forms[(forms["timepoint"] == "sys-c1") & (forms["instrument"] == C30)].iloc[0]
    assert (cycle["status"], cycle["revision"]) == ("completed", "0")  # the correction came later
    eq = forms[(forms["timepoint"] == "sys-c1") & (forms["instrument"] == EQ5D)].iloc[0]
    assert eq["status"] == "pending"
    assert read_csv(archive, "patients.csv").set_index("patient_id").loc["S2-001", "pt_status"] == "active"
    long = read_csv(archive, "qol_long.csv")
    ql = long[(long["timepoint"] == "sys-c1") & (long["scale"] == "QL2")].iloc[0]
    assert float(ql["score"]) == pytest.approx(100 / 6)


def test_filters_by_site_arm_instrument_and_date(session, export_trial, tmp_path):
    filters = ExportFilters(
        arms=("A",), instruments=(EQ5D,), date_from=dt.date(2026, 1, 20), date_to=dt.date(2026, 2, 28)
    )
    archive = zipfile.ZipFile(export(session, tmp_path, filters=filters).zip_path)
    long = read_csv(archive, "qol_long.csv")
    assert set(long["patient_id"]) == {"S1-001"} and set(long["instrument"]) == {EQ5D}
    assert set(long["timepoint"]) == {"sys-c1", "sys-c2"}
    vas = long[(long["timepoint"] == "sys-c1") & (long["scale"] == "VAS")].iloc[0]
    assert vas["baseline_score"] == "85"  # the baseline is outside the range but still the baseline
    wide = read_csv(archive, "qol_wide.csv")
    assert [c for c in wide.columns if c.startswith("C30")] == [] and "EQ5D_INDEX" in wide.columns


def test_same_as_of_gives_byte_identical_exports(session, export_trial, tmp_path):
    first = export(session, tmp_path, formats=FORMATS, name="a")
    second = export(session, tmp_path, formats=FORMATS, name="b")
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
    later = export(session, tmp_path, formats=("csv",), name="c", as_of=EARLY)
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


def test_no_names_contacts_tokens_or_free_text_in_any_file(session, export_trial, tmp_path):
    result = export(session, tmp_path, formats=FORMATS, iso_dates=True, settings=ExportSettings(iso_dates_allowed=True))
    archive = zipfile.ZipFile(result.zip_path)
    assert len(archive.namelist()) > 40
    found = []
    for name in archive.namelist():
        text = _searchable(name, archive.read(name)).lower()
        found += [(name, needle) for needle in export_trial.needles if needle and needle.lower() in text]
    assert found == []
    Bundle.model_validate(json.loads(archive.read("fhir_bundle.json")))
    # ISO dates were asked for and allowed here; by default none of them appear
    assert "2026-01-04" in archive.read("forms.csv").decode()
    default = zipfile.ZipFile(export(session, tmp_path, formats=("csv", "fhir", "sdtm"), name="d").zip_path)
    for name in default.namelist():  # the as-of time (the bundle's timestamp) is not patient data
        if name.endswith((".csv", ".json")) and name != "manifest.json":
            assert "2026-0" not in default.read(name).decode("utf-8").replace("2026-03-10T04:00:00Z", ""), name


def test_iso_dates_need_the_admin_setting(session, export_trial, tmp_path, app):
    with pytest.raises(PermissionError):
        export(session, tmp_path, iso_dates=True)
    app.config["WTF_CSRF_ENABLED"] = False
    client = isolated_client(app)
    _login(client, export_trial.statistician)
    form = {"formats": "csv", "iso_dates": "y", "labels": "en", "threshold": "10", "as_of": "2026-03-10T00:00:00Z"}
    archive = zipfile.ZipFile(io.BytesIO(_download(client, app, form)))  # study days: the option is not offered
    assert json.loads(archive.read("manifest.json"))["options"]["iso_dates"] is False
    app.config["EXPORT_ISO_DATES"] = True
    archive = zipfile.ZipFile(io.BytesIO(_download(client, app, form)))
    assert json.loads(archive.read("manifest.json"))["options"]["iso_dates"] is True
    assert "2026-01-05" in archive.read("patients.csv").decode()


def test_cli_export_writes_the_zip_and_audits(app, export_trial, session, tmp_path):
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
