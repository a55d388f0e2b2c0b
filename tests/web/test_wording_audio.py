"""Recorded audio in a licensed-wording overlay: validated and stored on import, served to the
signed-in patient as a cacheable file, shown as plain ``<audio>`` controls; and what each
response records of how it was shown (display mode, read-aloud, recordings), audited."""

from __future__ import annotations

import hashlib
import re

import pytest
from sqlalchemy import select

from qol_app.models import AuditEvent, Response, WordingAudio, WordingOverlay
from tests.audio_overlay import wav_bytes, write_overlay
from tests.factories import isolated_client, send_page, sign_in

C30 = "eortc_qlq_c30"


def _invoke(app, *args):
    return app.test_cli_runner().invoke(args=["instruments", *args])


@pytest.fixture
def visit(factory, session):
    enrolled = factory.patient(language="zh_Hans", pin=None)
    tp = factory.timepoint(enrolled, instruments=(C30,), respondent="self")
    session.flush()
    return enrolled, tp


def _client(app, enrolled):
    client = isolated_client(app)
    assert sign_in(client, enrolled.token, pin=None).status_code == 302
    return client


def test_overlay_with_recordings_imports_and_the_page_plays_them(app, session, tmp_path, visit):
    result = _invoke(app, "import-wording", str(write_overlay(tmp_path)))
    assert result.exit_code == 0, result.output
    # one row per distinct recording (31 texts + 4 + 7 options), named in the stored overlay by content
    assert session.scalar(select(WordingAudio.id).limit(1)) is not None
    assert len(session.scalars(select(WordingAudio.sha256)).all()) == 42
    stored = session.scalar(select(WordingOverlay.content))["yaml"]
    assert "audio/q1.wav" not in stored and f"sha256:{hashlib.sha256(wav_bytes(310)).hexdigest()}" in stored
    enrolled, tp = visit
    client = _client(app, enrolled)
    page = client.get(f"/p/t/{tp.id}/{C30}/1").get_data(as_text=True)
    clips = re.findall(
        r'<audio class="clip" controls preload="none" src="(/p/audio/[0-9a-f]{64})" aria-label="[^"]+">', page
    )
    assert len(clips) == 1 + 5 + 5 * 4  # instructions, 5 items, their 4 options each
    q1 = f"/p/audio/{hashlib.sha256(wav_bytes(310)).hexdigest()}"
    assert q1 in clips
    served = client.get(q1)
    assert served.status_code == 200 and served.data == wav_bytes(310)
    assert served.mimetype == "audio/wav"
    cache = served.headers["Cache-Control"]
    assert "private" in cache and "immutable" in cache and "max-age=31536000" in cache and "no-store" not in cache
    assert served.headers["ETag"].strip('"') == q1.rsplit("/", 1)[1]
    assert served.headers["X-Content-Type-Options"] == "nosniff"
    ranged = client.get(q1, headers={"Range": "bytes=0-43"})  # phones' media players ask for ranges
    assert ranged.status_code == 206 and ranged.data == wav_bytes(310)[:44]
    assert client.get(q1, headers={"If-None-Match": served.headers["ETag"]}).status_code == 304
    # pages stay uncacheable; recordings only for signed-in patients; nothing but a known hash
    assert client.get(f"/p/t/{tp.id}/{C30}/1").headers["Cache-Control"] == "no-store"
    assert client.get("/p/audio/" + "0" * 64).status_code == 404
    assert client.get("/p/audio/" + "G" * 64).status_code == 404
    assert client.get("/p/audio/..%2F..%2Fqol.sqlite").status_code == 404
    anonymous = isolated_client(app).get(q1)
    assert anonymous.status_code == 302 and anonymous.data != wav_bytes(310)


def test_large_print_item_shows_its_recordings(app, session, tmp_path, visit):
    assert _invoke(app, "import-wording", str(write_overlay(tmp_path))).exit_code == 0
    enrolled, tp = visit
    enrolled.patient.display_preferences = {"large_print": True}
    session.flush()
    client = _client(app, enrolled)
    page = client.get(f"/p/t/{tp.id}/{C30}/1?item=2").get_data(as_text=True)
    assert page.count("<audio ") == 1 + 4 and 'preload="none"' in page
    assert f"/p/audio/{hashlib.sha256(wav_bytes(320)).hexdigest()}" in page


def _unlink(text, folder, name):
    (folder / "audio" / name).unlink()
    return text


def _garble(text, folder, name):
    (folder / "audio" / name).write_bytes(b"<html>not audio</html>")
    return text


BAD = {
    "unknown-item": (lambda t, f: t.replace("    q7: audio/q7.wav", "    q99: audio/q7.wav"), "audio.items.q99", "q99"),
    "item-without-recording": (lambda t, f: t.replace("    q7: audio/q7.wav\n", ""), "audio.items.q7", "q7"),
    "missing-file": (lambda t, f: _unlink(t, f, "q3.wav"), "audio.items.q3", "audio/q3.wav: cannot read"),
    "not-audio": (lambda t, f: _garble(t, f, "rating7-5.wav"), "audio.options.rating7.5", "rating7-5.wav: not a"),
    "unknown-code": (
        lambda t, f: t.replace(
            "      4: audio/eortc4-4.wav", "      4: audio/eortc4-4.wav\n      5: audio/eortc4-4.wav"
        ),
        "audio.options.eortc4.5",
        "5 is not a code",
    ),
    "outside": (lambda t, f: t.replace("    q2: audio/q2.wav", "    q2: ../../etc/passwd"), "audio.items.q2", "../"),
    "no-instructions": (
        lambda t, f: t.replace("  instructions: audio/instructions.wav\n", ""),
        "audio",
        "instructions",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_a_bad_overlay_is_refused_naming_file_and_field(app, session, tmp_path, case):
    change, field, named = BAD[case]
    path = write_overlay(tmp_path)
    path.write_text(change(path.read_text(encoding="utf-8"), tmp_path), encoding="utf-8")
    result = _invoke(app, "import-wording", str(path))
    assert result.exit_code == 1, result.output
    assert "not imported" in result.output and "c30.zh_Hans.yaml" in result.output
    assert field in result.output and named in result.output, result.output
    assert session.scalar(select(WordingOverlay.id)) is None
    assert session.scalar(select(WordingAudio.id)) is None


def test_same_version_with_other_recordings_is_refused(app, tmp_path):
    path = write_overlay(tmp_path)
    assert _invoke(app, "import-wording", str(path)).exit_code == 0
    (tmp_path / "audio" / "q5.wav").write_bytes(wav_bytes(999))
    result = _invoke(app, "import-wording", str(path))
    assert result.exit_code == 1 and "new version" in result.output


def _presentation(session, tp):
    session.expire_all()
    response = session.scalar(select(Response).where(Response.timepoint_id == tp.id))
    return response.display_mode, response.read_aloud_used, response.audio_used


def _events(session):
    return session.scalars(select(AuditEvent).where(AuditEvent.action == "presentation").order_by(AuditEvent.id)).all()


def test_response_records_display_mode_and_what_was_played_audited(app, session, visit):
    enrolled, tp = visit
    client = _client(app, enrolled)
    url = f"/p/t/{tp.id}/{C30}/1"
    send_page(client, url, {f"q{n}": 1 for n in range(1, 6)})
    assert _presentation(session, tp) == ("default", False, False)
    send_page(client, f"/p/t/{tp.id}/{C30}/2", {f"q{n}": 1 for n in range(6, 11)}, aid_audio="1")
    assert _presentation(session, tp) == ("default", False, True)
    events = _events(session)
    assert [e.new for e in events] == [
        {"display_mode": "default", "read_aloud_used": False, "audio_used": False},
        {"audio_used": True},
    ]
    assert events[1].old == {"audio_used": False} and events[1].actor_type == "patient"
    # nothing new played: nothing recorded; an odd value is not "played"
    send_page(client, url, {"q1": 2}, aid_listen="yes")
    assert _presentation(session, tp) == ("default", False, True) and len(_events(session)) == 2
    # the same form carried on in large print: mixed; the listen button noted on Next past an answer
    enrolled.patient.display_preferences = {"large_print": True}
    session.flush()
    page = client.get(f"{url}?item=1").get_data(as_text=True)
    assert 'name="aid_listen" value=""' in page and 'name="aid_audio" value=""' in page
    response = send_page(client, f"{url}?item=1", {}, aid_listen="1")
    assert response.status_code == 302 and response.headers["Location"] == f"{url}?item=2"
    assert _presentation(session, tp) == ("mixed", True, True)
    assert _events(session)[-1].new == {"display_mode": "mixed", "read_aloud_used": True}


def test_a_form_saved_only_in_large_print_says_so(app, session, visit):
    enrolled, tp = visit
    enrolled.patient.display_preferences = {"large_print": True}
    session.flush()
    client = _client(app, enrolled)
    url = f"/p/t/{tp.id}/{C30}/1"
    page = client.get(url).get_data(as_text=True)
    assert 'class="answer" name="q1"' in page
    send_page(client, url, {"q1": 2}, aid_listen="1")
    assert _presentation(session, tp) == ("large_print", True, False)


def test_the_nurse_patient_page_shows_how_each_form_was_shown(app, session, factory, visit):
    from tests.factories import login, no_csrf

    enrolled, tp = visit
    client = _client(app, enrolled)
    send_page(client, f"/p/t/{tp.id}/{C30}/1", {f"q{n}": 1 for n in range(1, 6)}, aid_audio="1")
    nurse = factory.staff("nurse", sites=[enrolled.patient.site])
    staff = isolated_client(app)
    no_csrf(app)
    login(staff, nurse)
    page = staff.get(f"/staff/patients/{enrolled.patient.id}").get_data(as_text=True)
    shown = re.findall(r'<span class="shown">([^<]*)</span>', page)
    assert shown == ["EORTC QLQ-C30: Normal text · recordings played"], shown
    enrolled.patient.display_preferences = {"large_print": True}
    session.flush()
    send_page(client, f"/p/t/{tp.id}/{C30}/2", {"q6": 1}, aid_listen="1")
    page = staff.get(f"/staff/patients/{enrolled.patient.id}").get_data(as_text=True)
    shown = re.findall(r'<span class="shown">([^<]*)</span>', page)
    assert shown == ["EORTC QLQ-C30: Normal text and large print · read aloud · recordings played"], shown


def test_the_forms_export_carries_display_mode_and_aids_per_form(app, session, factory, visit, tmp_path):
    import datetime as dt
    import io
    import zipfile

    import pandas as pd

    from qol_app.export.run import ExportRequest, ExportSettings
    from qol_app.export.source import ExportFilters
    from qol_app.services.audit import Actor
    from qol_app.services.exports import run_export

    enrolled, tp = visit
    other = factory.timepoint(enrolled, instruments=(C30,), respondent="self", key="sys-c1")
    client = _client(app, enrolled)
    send_page(client, f"/p/t/{tp.id}/{C30}/1", {f"q{n}": 1 for n in range(1, 6)}, aid_audio="1")
    enrolled.patient.display_preferences = {"large_print": True}
    session.flush()
    send_page(client, f"/p/t/{other.id}/{C30}/1", {"q1": 3}, aid_listen="1")
    at = dt.datetime.now(dt.UTC) + dt.timedelta(days=1)
    result = run_export(
        session,
        ExportRequest(formats=("csv", "xpt"), filters=ExportFilters(), as_of=at),
        tmp_path / "out",
        actor=Actor.system("tests"),
        now=at,
        settings=ExportSettings(),
    )
    archive = zipfile.ZipFile(result.zip_path)

    def read(name):
        return pd.read_csv(io.BytesIO(archive.read(name)), dtype=str, keep_default_na=False)

    forms = read("forms.csv")
    rows = forms[forms["instrument"] == C30].set_index("timepoint")[["display_mode", "read_aloud", "audio_used"]]
    assert sorted(rows.values.tolist()) == [["default", "0", "1"], ["large_print", "1", "0"]], rows
    dictionary = read("data_dictionary.csv")
    defined = dictionary[
        (dictionary["dataset"] == "forms") & dictionary["variable"].isin(["display_mode", "read_aloud", "audio_used"])
    ]
    heads = defined[defined["code"] == ""]
    assert heads["xpt_name"].tolist() == ["DISPMODE", "READALD", "AUDIOUSE"]
    assert all(len(label) <= 40 for label in heads["xpt_label"])
    codes = defined[(defined["variable"] == "display_mode") & (defined["code"] != "")]
    assert codes["code"].tolist() == ["default", "large_print", "mixed"]
    assert "Large print, one item per screen" in codes["code_label_en"].tolist()
    assert any(name.endswith("forms.xpt") for name in archive.namelist())
