"""Every staff route x every role x own-site / other-site object: no unauthorized success.

The routes come from ``app.url_map`` (nurse blueprint), so a new route that is not listed in
``MATRIX`` fails the test instead of escaping it. The expectations below are written by hand,
not derived from ``qol_app.policy``: the test checks the policy, it does not restate it.

A request "succeeds" when it returns 200/302 (not a redirect to sign-in) and, for list pages
and enrolment, when it actually shows or creates the other site's data. Allowed requests must
succeed too (otherwise a route answering 404 to everyone would pass trivially).
"""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import func, select

from qol_app.models import Patient, TreatmentEvent
from qol_app.services import locks, treatment_events
from qol_app.services.enrolment import enroll_patient
from tests.factories import STAFF_PASSWORD, add_alert, add_call_task, add_response, isolated_client, login, no_csrf

ROLES = ("anonymous", "nurse", "investigator", "statistician", "admin", "monitor", "data_manager", "nurse_nosite")
STAFF = set(ROLES) - {"anonymous"}
VIEWERS = {"nurse", "investigator", "admin", "monitor", "data_manager"}
EDITORS = {"nurse", "investigator"}
ADMIN = {"admin"}
TRIAL_WIDE = {"admin", "data_manager"}  # see every site without memberships
DATA_QUALITY = EDITORS | {"data_manager"}  # missed reasons and corrections
HISTORY = {"investigator", "monitor", "admin", "data_manager"}
NOBODY: set[str] = set()

# (endpoint, method) -> {variant: roles allowed}. Variants: "none" (no object), "own" (the
# role's own site, S1), "other" (S2, where no role has a membership), "foreign" (the own
# patient in the URL, but the event, timepoint, alert or response of the other site's patient).
MATRIX: dict[tuple[str, str], dict[str, set[str]]] = {
    ("nurse.login", "GET"): {"none": set(ROLES)},
    ("nurse.login", "POST"): {"none": set(ROLES)},
    # Without a password just checked, the second step sends everyone back to sign in.
    ("nurse.login_code", "GET"): {"none": set(ROLES)},
    ("nurse.login_code", "POST"): {"none": set(ROLES)},
    ("nurse.login_setup", "GET"): {"none": set(ROLES)},
    ("nurse.login_setup", "POST"): {"none": set(ROLES)},
    ("nurse.language", "POST"): {"none": set(ROLES)},
    ("nurse.logout", "POST"): {"none": STAFF},
    ("nurse.account", "GET"): {"none": STAFF},
    ("nurse.account", "POST"): {"none": STAFF},
    ("nurse.account_totp", "GET"): {"none": STAFF},
    ("nurse.account_totp", "POST"): {"none": STAFF},
    ("nurse.account_totp_off", "POST"): {"none": STAFF},
    ("nurse.account_recovery_codes", "POST"): {"none": STAFF},
    # Lists: "own"/"other" = that site's patient is shown (?site= filter on the dashboard too).
    ("nurse.dashboard", "GET"): {"none": VIEWERS | {"nurse_nosite"}, "own": VIEWERS, "other": TRIAL_WIDE},
    ("nurse.patients", "GET"): {"none": VIEWERS | {"nurse_nosite"}, "own": VIEWERS, "other": TRIAL_WIDE},
    ("nurse.enrol", "GET"): {"none": EDITORS | {"nurse_nosite"}},
    ("nurse.enrol", "POST"): {"own": EDITORS, "other": NOBODY},  # success = a card was issued
    ("nurse.patient", "GET"): {"own": VIEWERS, "other": TRIAL_WIDE},
    ("nurse.patient_history", "GET"): {"own": HISTORY, "other": TRIAL_WIDE},
    ("nurse.response_history", "GET"): {"own": HISTORY, "other": TRIAL_WIDE, "foreign": NOBODY},
    ("nurse.edit_details", "GET"): {"own": EDITORS, "other": NOBODY},
    ("nurse.edit_details", "POST"): {"own": EDITORS, "other": NOBODY},
    ("nurse.correct_randomization", "GET"): {"own": {"investigator", "admin"}, "other": ADMIN},
    ("nurse.correct_randomization", "POST"): {"own": {"investigator", "admin"}, "other": ADMIN},
    ("nurse.rotate_link", "POST"): {"own": EDITORS, "other": NOBODY},
    ("nurse.set_pin", "POST"): {"own": EDITORS, "other": NOBODY},
    ("nurse.set_status", "POST"): {"own": EDITORS, "other": NOBODY},
    ("nurse.record_event", "POST"): {"own": EDITORS, "other": NOBODY},
    ("nurse.move_event", "GET"): {"own": EDITORS, "other": NOBODY, "foreign": NOBODY},
    ("nurse.move_event", "POST"): {"own": EDITORS, "other": NOBODY, "foreign": NOBODY},
    ("nurse.delete_event", "POST"): {"own": EDITORS, "other": NOBODY, "foreign": NOBODY},
    ("nurse.missed_reason", "GET"): {"own": DATA_QUALITY, "other": {"data_manager"}, "foreign": NOBODY},
    ("nurse.missed_reason", "POST"): {"own": DATA_QUALITY, "other": {"data_manager"}, "foreign": NOBODY},
    ("nurse.enter_form", "GET"): {"own": EDITORS, "other": NOBODY, "foreign": NOBODY},
    ("nurse.enter_form", "POST"): {"own": EDITORS, "other": NOBODY, "foreign": NOBODY},
    ("nurse.correct_form", "GET"): {"own": DATA_QUALITY, "other": {"data_manager"}, "foreign": NOBODY},
    ("nurse.correct_form", "POST"): {"own": DATA_QUALITY, "other": {"data_manager"}, "foreign": NOBODY},
    ("nurse.acknowledge_alert", "POST"): {"own": EDITORS, "other": NOBODY, "foreign": NOBODY},
    ("nurse.call_task", "GET"): {"own": EDITORS, "other": NOBODY, "foreign": NOBODY},
    ("nurse.call_task", "POST"): {"own": EDITORS, "other": NOBODY, "foreign": NOBODY},
    ("nurse.users", "GET"): {"none": ADMIN},
    ("nurse.user_new", "GET"): {"none": ADMIN},
    ("nurse.user_new", "POST"): {"none": ADMIN},
    ("nurse.user", "GET"): {"none": ADMIN},
    ("nurse.user_active", "POST"): {"none": ADMIN},
    ("nurse.user_password", "POST"): {"none": ADMIN},
    ("nurse.user_role", "POST"): {"none": ADMIN},
    ("nurse.user_contact", "POST"): {"none": ADMIN},
    ("nurse.user_sites", "POST"): {"none": ADMIN},
    ("nurse.user_totp_reset", "POST"): {"none": ADMIN},
    ("nurse.sites", "GET"): {"none": ADMIN},
    ("nurse.sites", "POST"): {"none": ADMIN},
    ("nurse.site", "GET"): {"none": ADMIN},
    ("nurse.site", "POST"): {"none": ADMIN},
    ("nurse.data_locks", "GET"): {"none": TRIAL_WIDE},
    ("nurse.data_locks", "POST"): {"none": TRIAL_WIDE},
    ("nurse.release_lock", "POST"): {"none": TRIAL_WIDE},
    ("nurse.audit_search", "GET"): {"none": ADMIN},
}

POST_DATA = {
    "nurse.login": {"username": "nobody", "password": "wrong password"},
    "nurse.language": {"language": "en"},
    "nurse.account": {"current": "wrong", "new": "another long password"},
    "nurse.rotate_link": {"reason": "matrix"},
    "nurse.set_pin": {"action": "generate", "reason": "matrix"},
    "nurse.set_status": {"status": "lost", "date": "2026-03-09", "reason": "matrix"},
    "nurse.record_event": {"kind": "progression", "date": "2026-03-09"},
    "nurse.move_event": {"date": "2026-01-06", "reason": "matrix"},
    "nurse.delete_event": {"reason": "matrix"},
    "nurse.missed_reason": {"missed_reason": "too_ill"},
    "nurse.enter_form": {"entry_mode": "paper_transcribed", "entry_respondent": "self"},
    "nurse.acknowledge_alert": {"action": "called the patient"},
    "nurse.call_task": {"outcome": "no_answer"},
    "nurse.user_contact": {"email": "target@example.org", "phone": "+86 138 0000 0000"},
    "nurse.correct_form": {"q1": "3", "correction_reason": "matrix"},
    "nurse.user_active": {"enable": "0", "reason": "matrix"},
    "nurse.user_password": {"password": "a brand new password", "reason": "matrix"},
    "nurse.user_role": {"role": "investigator", "reason": "matrix"},
    "nurse.user_totp_reset": {"reason": "matrix"},
    "nurse.account_totp": {"code": "000000"},
    "nurse.account_totp_off": {"password": STAFF_PASSWORD},
    "nurse.account_recovery_codes": {"password": STAFF_PASSWORD},
    "nurse.login_code": {"code": "000000"},
    "nurse.login_setup": {"code": "000000"},
    "nurse.edit_details": {"language": "zh_Hans", "reason": "matrix"},  # nothing changes: shown again
    "nurse.correct_randomization": {"arm": "A", "randomization_date": "2026-01-01", "reason": "matrix"},
    "nurse.sites": {"name": "no code: shown again"},
    "nurse.site": {"reason": "matrix"},
    # A lock on an unknown patient is refused and shown again; a real lock would stop the next checks.
    "nurse.data_locks": {"scope": "patient", "study_id": "nobody", "reason": "matrix"},
    "nurse.release_lock": {"reason": "matrix"},
}


class World:
    """Per role: a fresh patient at each site (events, missed baseline, red alert) and a target account."""

    def __init__(self, session, factory, now, s1, s2, tag: str) -> None:
        self.sites = {"own": s1, "other": s2}
        self.patients, self.events, self.baselines, self.alerts, self.responses = {}, {}, {}, {}, {}
        self.tasks = {}
        actor = factory.actor
        for variant, site in self.sites.items():
            patient = enroll_patient(
                session,
                actor,
                study_id=f"{site.code}-{tag}",
                site=site,
                arm="A",
                randomization_date=dt.date(2026, 1, 1),
                language="zh_Hans",
                now=now,
                with_pin=False,
            ).patient
            event, _ = treatment_events.record_event(
                session, actor, patient, kind="systemic_cycle", date=dt.date(2026, 1, 5), now=now
            )
            self.patients[variant] = patient
            self.events[variant] = event
            self.baselines[variant] = next(tp for tp in _timepoints(session, patient) if tp.key == "baseline")
            self.alerts[variant] = add_alert(session, patient, at=now - dt.timedelta(hours=1))
            cycle = next(tp for tp in _timepoints(session, patient) if tp.key == "sys-c1")
            self.responses[variant] = add_response(session, cycle, at=now)
            self.tasks[variant] = add_call_task(session, self.baselines[variant], at=now)
        self.target = factory.staff("nurse", sites=[s1], username=f"target-{tag}")
        self.s1, self.s2 = s1, s2
        # A lock that starts next year: it blocks nothing now, and "release" has something to release.
        self.lock = locks.lock(
            session,
            actor,
            "patient",
            patient=self.patients["other"],
            reason="matrix",
            at=now + dt.timedelta(days=365),
            now=now,
        )

    def url_values(self, rule, variant: str) -> dict:
        values = {}
        owner = "own" if variant == "foreign" else variant
        child = "other" if variant == "foreign" else variant
        for arg in rule.arguments:
            if arg == "patient_id":
                values[arg] = self.patients[owner].id
            elif arg == "event_id":
                values[arg] = self.events[child].id
            elif arg == "timepoint_id":
                values[arg] = self.baselines[child].id
            elif arg == "alert_id":
                values[arg] = self.alerts[child].id
            elif arg == "instrument_id":
                values[arg] = "eortc_qlq_c30"
            elif arg == "response_id":
                values[arg] = self.responses[child].id
            elif arg == "task_id":
                values[arg] = self.tasks[child].id
            elif arg == "user_id":
                values[arg] = self.target.id
            elif arg == "site_id":
                values[arg] = self.s1.id
            elif arg == "lock_id":
                values[arg] = self.lock.id
            else:
                raise AssertionError(f"{rule.endpoint}: argument {arg!r} is not in the access matrix")
        return values


def _timepoints(session, patient):
    from qol_app.models import Timepoint

    return session.scalars(select(Timepoint).where(Timepoint.patient_id == patient.id)).all()


def _request(client, world, session, endpoint, method, variant, rule, app):
    from flask import url_for

    values = world.url_values(rule, variant)
    with app.test_request_context():
        url = url_for(endpoint, **values)
    if endpoint in ("nurse.dashboard", "nurse.patients") and variant != "none":
        url += f"?site={world.sites[variant].id}" if endpoint == "nurse.dashboard" else ""
    data = dict(POST_DATA.get(endpoint, {}))
    if endpoint == "nurse.enrol" and method == "POST":
        site = world.sites[variant]
        data = {
            "study_id": f"{site.code}-new-{world.target.id}",
            "site_id": site.id,
            "arm": "B",
            "randomization_date": "2026-03-01",
            "language": "zh_Hans",
        }
    if endpoint == "nurse.user_sites":
        data = {"op": "add", "site_id": world.s2.id}
    if endpoint == "nurse.user_new":
        data = {
            "username": f"new-{world.target.id}",
            "full_name": "N",
            "role": "nurse",
            "language": "en",
            "site_id": 0,
            "password": "a long enough password",
        }
    response = client.open(url, method=method, data=data if method == "POST" else None)
    return _succeeded(response, endpoint, method, variant, world, session)


def _succeeded(response, endpoint, method, variant, world, session) -> bool:
    location = response.headers.get("Location", "")
    # 400/422: the view ran and showed its form again (the matrix posts some forms incomplete on
    # purpose); counting them as successes only makes an unauthorized one easier to catch.
    if response.status_code not in (200, 302, 400, 422) or "/staff/login?next=" in location:
        return False  # staff_required sends strangers to sign in, remembering where they were going
    body = response.get_data(as_text=True)
    if endpoint in ("nurse.dashboard", "nurse.patients") and variant != "none":
        return world.patients[variant].study_id in body
    if endpoint == "nurse.enrol" and method == "POST":
        return 'class="qr"' in body
    return True


@pytest.fixture
def matrix_setup(app, session, factory, now):
    no_csrf(app)
    app.config["STAFF_MAX_FAILURES"] = 1000  # the matrix signs in as "nobody" once per role
    s1, s2 = factory.site(code="MS1"), factory.site(code="MS2")
    users = {
        "nurse": factory.staff("nurse", sites=[s1]),
        "investigator": factory.staff("investigator", sites=[s1]),
        "statistician": factory.staff("statistician", sites=[s1]),  # a membership grants it nothing
        "admin": factory.staff("admin"),
        "monitor": factory.staff("monitor", sites=[s1]),
        "data_manager": factory.staff("data_manager"),  # trial-wide without memberships
        "nurse_nosite": factory.staff("nurse"),
    }
    return s1, s2, users


def test_every_staff_route_is_in_the_matrix(app):
    routes = {
        (r.endpoint, m)
        for r in app.url_map.iter_rules()
        if r.endpoint.startswith("nurse.")
        for m in r.methods - {"HEAD", "OPTIONS"}
    }
    assert routes == set(MATRIX), f"add to MATRIX: {sorted(routes - set(MATRIX))}; gone: {sorted(set(MATRIX) - routes)}"


def test_access_matrix(app, session, factory, now, matrix_setup):
    s1, s2, users = matrix_setup
    rules = {r.endpoint: r for r in app.url_map.iter_rules() if r.endpoint.startswith("nurse.")}
    checks = unauthorized = 0
    failures: list[str] = []
    for role in ROLES:
        world = World(session, factory, now, s1, s2, tag=role)
        client = isolated_client(app)
        if role != "anonymous":
            login(client, users[role])
        # Logout last: it ends the session the other requests need.
        order = sorted(MATRIX, key=lambda k: (k[0] in ("nurse.logout", "nurse.login"), k[1] == "POST", k))
        for endpoint, method in order:
            for variant, allowed in MATRIX[(endpoint, method)].items():
                ok = _request(client, world, session, endpoint, method, variant, rules[endpoint], app)
                checks += 1
                if ok and role not in allowed:
                    unauthorized += 1
                    failures.append(f"UNAUTHORIZED {role} {method} {endpoint} [{variant}]")
                elif not ok and role in allowed:
                    failures.append(f"refused but allowed: {role} {method} {endpoint} [{variant}]")
    print(f"\naccess matrix: {checks} checks, {unauthorized} unauthorized successes")
    assert unauthorized == 0, "\n".join(failures)
    assert not failures, "\n".join(failures)
    # The other site's data were never changed by a non-admin (admins cannot change clinical data).
    assert (
        session.scalar(
            select(func.count())
            .select_from(TreatmentEvent)
            .join(Patient)
            .where(Patient.site_id == s2.id, TreatmentEvent.kind == "progression")
        )
        == 0
    )
    assert session.scalar(select(func.count()).select_from(Patient).where(Patient.study_id.like("MS2-new-%"))) == 0
