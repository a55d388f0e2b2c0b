"""Sites from nothing: ``qol sites add|list|update`` and the admin page, time zones validated, audited."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select

from qol_app.models import AuditEvent, Site, Timepoint
from qol_app.services import sites
from qol_app.services.audit import Actor
from tests.factories import isolated_client, login, no_csrf

ADD = ["sites", "add", "S07", "--name", "Sichuan Cancer Hospital", "--timezone", "Asia/Shanghai"]


def test_cli_adds_lists_and_updates_a_site(app, session):
    runner = app.test_cli_runner()
    result = runner.invoke(args=[*ADD, "--emergency-phone", "120", "--phone", "028-8542-0000"])
    assert result.exit_code == 0, result.output
    site = session.scalar(select(Site).where(Site.code == "S07"))
    assert (site.timezone, site.default_language, site.emergency_phone) == ("Asia/Shanghai", "zh_Hans", "120")
    listed = runner.invoke(args=["sites", "list"]).output
    assert "S07\tAsia/Shanghai\tzh_Hans\t120\t028-8542-0000\tSichuan Cancer Hospital" in listed
    again = runner.invoke(args=[*ADD, "--emergency-phone", "120"])
    assert again.exit_code != 0 and "taken" in again.output
    assert runner.invoke(args=["sites", "update", "S07", "--phone", "028-1"]).exit_code != 0  # no reason
    changed = runner.invoke(args=["sites", "update", "S07", "--reason", "new switchboard", "--phone", "028-8542-1111"])
    assert changed.exit_code == 0 and "contact_phone changed" in changed.output
    events = session.scalars(select(AuditEvent).where(AuditEvent.entity_type == "sites").order_by(AuditEvent.id)).all()
    assert [e.action for e in events] == ["site_create", "site_update"]
    assert events[1].old == {"contact_phone": "028-8542-0000"} and events[1].reason == "new switchboard"
    assert events[0].actor_type == "system" and events[0].actor_id == "cli"


@pytest.mark.parametrize("zone", ["China Standard Time", "Asia/Beijing", "CST", "../etc/passwd", ""])
def test_unknown_time_zones_are_refused(app, session, zone):
    result = app.test_cli_runner().invoke(args=[*ADD[:-1], zone, "--emergency-phone", "120"])
    assert result.exit_code != 0 and "time zone" in result.output
    assert session.scalar(select(Site)) is None


def test_language_and_phones_are_checked(app, session):
    runner = app.test_cli_runner()
    assert "language" in runner.invoke(args=[*ADD, "--emergency-phone", "120", "--language", "fr"]).output
    assert "emergency" in runner.invoke(args=[*ADD, "--emergency-phone", "call us"]).output
    assert session.scalar(select(Site)) is None


def test_admin_page_creates_and_edits_sites_keeping_what_was_typed(app, session, factory):
    no_csrf(app)
    admin = factory.staff("admin")
    client = isolated_client(app)
    login(client, admin)
    bad = {
        "code": "S08",
        "name": "Xinjiang Hospital",
        "timezone": "Asia/Xinjiang",
        "default_language": "zh_Hans",
        "emergency_phone": "120",
        "contact_phone": "0991-000",
    }
    refused = client.post("/staff/admin/sites", data=bad)
    body = refused.get_data(as_text=True)
    assert refused.status_code == 422 and "Unknown time zone" in body
    assert 'value="Xinjiang Hospital"' in body and 'value="0991-000"' in body and 'value="Asia/Xinjiang"' in body
    assert client.post("/staff/admin/sites", data=bad | {"timezone": "Asia/Urumqi"}).status_code == 302
    site = session.scalar(select(Site).where(Site.code == "S08"))
    assert site.timezone == "Asia/Urumqi"
    edit = f"/staff/admin/sites/{site.id}"
    assert client.get(edit).status_code == 200
    no_reason = client.post(edit, data=bad | {"timezone": "Asia/Urumqi", "name": "Renamed", "reason": ""})
    assert no_reason.status_code == 422 and 'value="Renamed"' in no_reason.get_data(as_text=True)
    ok = client.post(edit, data=bad | {"timezone": "Asia/Urumqi", "name": "Renamed", "reason": "official name"})
    assert ok.status_code == 302
    session.refresh(site)
    assert site.name == "Renamed"
    page = client.get("/staff/admin/sites").get_data(as_text=True)
    assert "Renamed" in page and "Asia/Urumqi" in page


def test_a_new_site_time_zone_moves_unstarted_forms(app, session, factory, now):
    site = factory.site(code="TZ1", tz="Asia/Shanghai")
    patient = factory.patient(site, randomization_date=now.date()).patient
    from qol_app.services.timepoints import reconcile_patient

    reconcile_patient(session, Actor.system("tests"), patient, now)
    baseline = session.scalar(select(Timepoint).where(Timepoint.patient_id == patient.id, Timepoint.key == "baseline"))
    before = baseline.opens_at
    sites.update_site(
        session,
        Actor.system("tests"),
        site,
        {"timezone": "Asia/Urumqi"},
        reason="site is in Urumqi",
        languages=["en", "zh_Hans"],
        now=now,
    )
    session.refresh(baseline)
    assert baseline.opens_at - before == dt.timedelta(hours=2)  # Urumqi is UTC+6, Shanghai UTC+8


def test_only_admins_manage_sites(app, session, factory):
    no_csrf(app)
    nurse = factory.staff("nurse", sites=[factory.site()])
    client = isolated_client(app)
    login(client, nurse)
    assert client.get("/staff/admin/sites").status_code == 403
