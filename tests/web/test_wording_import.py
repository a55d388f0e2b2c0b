"""`qol instruments import-wording`: licensed wording as a validated, versioned overlay."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select

from qol_app.models import AuditEvent, WordingOverlay
from qol_app.services.wording import active_overlay

EXAMPLE = Path(__file__).resolve().parents[2] / "qol_app" / "questionnaires" / "wording-overlay.example.yaml"


def _invoke(app, *args):
    return app.test_cli_runner().invoke(args=["instruments", *args])


def test_import_makes_overlay_active_and_audited(app, session):
    result = _invoke(app, "import-wording", str(EXAMPLE), "--by", "site-admin")
    assert result.exit_code == 0, result.output
    assert "example-zh_Hans-0 is now active" in result.output
    overlay = active_overlay(session, "eortc_qlq_c30", "zh_Hans")
    assert overlay is not None and overlay.wording_version == "example-zh_Hans-0"
    assert overlay.items["q1"] == "[Official text of item 1 goes here]"
    assert active_overlay(session, "eortc_qlq_c30", "en") is None
    actions = session.scalars(select(AuditEvent.action)).all()
    assert "import_wording" in actions
    listed = _invoke(app, "list")
    assert "zh_Hans: example-zh_Hans-0" in listed.output


def test_unknown_item_id_is_refused_with_its_name(app, session, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(EXAMPLE.read_text(encoding="utf-8").replace("  q2:", "  q99:"), encoding="utf-8")
    result = _invoke(app, "import-wording", str(bad))
    assert result.exit_code == 1
    assert "bad.yaml" in result.output and "q99" in result.output
    assert session.scalar(select(WordingOverlay.id)) is None


def test_same_version_with_other_text_is_refused(app, session, tmp_path):
    assert _invoke(app, "import-wording", str(EXAMPLE)).exit_code == 0
    changed = tmp_path / "changed.yaml"
    changed.write_text(EXAMPLE.read_text(encoding="utf-8").replace("item 1 goes", "item one goes"), encoding="utf-8")
    result = _invoke(app, "import-wording", str(changed))
    assert result.exit_code == 1 and "new version" in result.output
    newer = tmp_path / "newer.yaml"
    newer.write_text(
        changed.read_text(encoding="utf-8").replace("example-zh_Hans-0", "example-zh_Hans-1"), encoding="utf-8"
    )
    assert _invoke(app, "import-wording", str(newer)).exit_code == 0
    assert active_overlay(session, "eortc_qlq_c30", "zh_Hans").wording_version == "example-zh_Hans-1"
    assert len(session.scalars(select(WordingOverlay)).all()) == 2


def test_patient_sees_the_licensed_wording_and_response_records_it(app, factory, session):
    from tests.factories import isolated_client, send_page, sign_in

    assert _invoke(app, "import-wording", str(EXAMPLE)).exit_code == 0
    enrolled = factory.patient(language="zh_Hans", pin=None)
    tp = factory.timepoint(enrolled, instruments=("eortc_qlq_c30",))
    tp.respondent = "self"
    session.flush()
    client = isolated_client(app)
    sign_in(client, enrolled.token, pin=None)
    page = client.get(f"/p/t/{tp.id}/eortc_qlq_c30/1", follow_redirects=True).get_data(as_text=True)
    assert "[Official text of item 1 goes here]" in page
    send_page(client, f"/p/t/{tp.id}/eortc_qlq_c30/1", {f"q{i}": "1" for i in range(1, 6)})
    from qol_app.models import Response

    response = session.scalar(select(Response).where(Response.timepoint_id == tp.id))
    assert response.wording_version == "example-zh_Hans-0"


def test_home_page_titles_come_from_the_active_overlay_of_each_form(app, factory, session):
    """The home page fetches every form's overlay in one query; each form keeps its own title."""
    from tests.factories import isolated_client, sign_in

    assert _invoke(app, "import-wording", str(EXAMPLE)).exit_code == 0
    enrolled = factory.patient(language="zh_Hans", pin=None)
    factory.timepoint(enrolled, instruments=("eortc_qlq_c30", "eq5d5l"))
    session.flush()
    client = isolated_client(app)
    sign_in(client, enrolled.token, pin=None)
    home = client.get("/p/").get_data(as_text=True)
    overlay = active_overlay(session, "eortc_qlq_c30", "zh_Hans")
    assert overlay.title in home
    with app.app_context():
        from qol_app.instruments.wording import localize
        from qol_app.services import protocol

        shipped = localize(protocol.current().registry.get("eq5d5l"), "zh_Hans").title
    assert shipped in home and overlay.title != shipped
