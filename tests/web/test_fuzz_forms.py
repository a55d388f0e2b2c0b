"""HTTP fuzz with Hypothesis over the form body of every POST route: no 5xx, no invalid value stored.

Each route gets 30 bodies on SQLite and 20 on PostgreSQL, each database its own fixed sequence,
so a run on both tries 50 different bodies per route (before, both ran the same 50). Set
``QOL_FUZZ_EXAMPLES`` for more on demand, e.g. ``QOL_FUZZ_EXAMPLES=2000``, which gives each
database that many and draws new random examples instead of the fixed CI sequences): every field it reads, each
present or not, holding a valid value, a hostile one (control characters, NaN, huge numbers,
whitespace, formula and script text...) or random text. Every example runs in a savepoint that
is rolled back, so each starts from the same data. While it runs, every INSERT and UPDATE is
watched: a parameter holding a control character (other than a line break or tab), a blank
string or an integer beyond the database's range fails the test, and so does a stored answer
outside its item's codes or range.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re

import pytest
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st
from sqlalchemy import event, select

from qol_app.inputs import MAX_DB_INT
from qol_app.models import Answer, Response
from qol_app.services import responses
from qol_app.services.audit import Actor
from tests.factories import (
    STAFF_PASSWORD,
    add_alert,
    add_call_task,
    add_response,
    add_timepoint,
    isolated_client,
    login,
    sign_in,
)

#: Bodies per route on each database; the two databases draw different fixed sequences (a seed
#: each), so together they try 50 distinct bodies. ``QOL_FUZZ_EXAMPLES`` asks for more, at random.
EXAMPLES = {"sqlite": 30, "postgresql": 20}
if "QOL_FUZZ_EXAMPLES" in os.environ:
    EXAMPLES = dict.fromkeys(EXAMPLES, int(os.environ["QOL_FUZZ_EXAMPLES"]))
SEEDS = {"sqlite": 20261, "postgresql": 20262}
DIARY, C30 = "symptom_diary", "eortc_qlq_c30"

HOSTILE = [
    "",
    " ",
    "\t",
    "\x00",
    "a\x00b",
    "\r\n",
    "\x1b[2J",
    "\x7f",
    "\u202eevil",
    "\u200b",
    "sNaN",
    "NaN",
    "-Infinity",
    "1e999",
    "-1",
    "0",
    "1.5",
    str(MAX_DB_INT + 1),
    str(10**20),
    "9" * 300,
    "x" * 5000,
    "<script>alert(1)</script>",
    "' OR 1=1 --",
    '=HYPERLINK("http://evil")',
    "../../etc/passwd",
    "１２３４",
    "٣٧٫٥",
    "2026-02-30",
    "0000-01-01",
    "9999-12-31",
    "//evil.example",
    "true",
    "None",
]

DIARY_ITEMS = ("temperature", "chills", "headache", "neck_stiffness", "nausea", "vomiting", "confusion", "seizure")

#: endpoint -> who posts, and each field with some valid values.
ROUTES: dict[str, tuple[str, dict[str, list[str]]]] = {
    "nurse.login": ("anonymous", {"username": ["{nurse}"], "password": [STAFF_PASSWORD, "wrong password"]}),
    "nurse.language": ("nurse", {"language": ["en", "zh_Hans"], "next": ["/staff/patients"]}),
    "nurse.logout": ("nurse", {}),
    "nurse.account": ("nurse", {"current": [STAFF_PASSWORD], "new": ["another long password"]}),
    "nurse.enrol": (
        "nurse",
        {
            "study_id": ["FZ-001"],
            "site_id": ["{site}"],
            "arm": ["A", "B"],
            "randomization_date": ["2026-03-01"],
            "consent_date": ["2026-02-28"],
            "language": ["en", "zh_Hans"],
            "timezone": ["Asia/Shanghai", "Europe/Paris"],
            "email": ["a@b.cn"],
            "phone": ["13800000000", "+86 138 0000 0000"],
            "with_pin": ["y"],
        },
    ),
    "nurse.rotate_link": ("nurse", {"reason": ["card lost"], "new_pin": ["y"]}),
    "nurse.set_pin": ("nurse", {"action": ["generate", "set", "remove"], "pin": ["1234", "12345678"], "reason": ["r"]}),
    "nurse.set_status": (
        "nurse",
        {
            "status": ["died", "withdrawn", "lost", "active"],
            "date": ["2026-03-05", "2026-03-10"],
            "reason": ["r"],
            "correct_death": ["y"],
        },
    ),
    "nurse.record_event": (
        "nurse",
        {
            "kind": ["intrathecal_dose", "systemic_cycle", "progression", "end_of_treatment"],
            "date": ["2026-03-05", "2026-03-10"],
            "number": ["1", "2", "7"],
            "cycle_length_days": ["21", "14"],
            "drug": ["pemetrexed 15 mg"],
        },
    ),
    "nurse.move_event": ("nurse", {"date": ["2026-03-04"], "cycle_length_days": ["28"], "reason": ["delayed"]}),
    "nurse.delete_event": ("nurse", {"reason": ["entered twice"]}),
    "nurse.missed_reason": (
        "nurse",
        {"missed_reason": ["too_ill", "other", "refused"], "text": ["in hospital"], "reason": ["corrected"]},
    ),
    "nurse.enter_form": (
        "nurse",
        {
            "entry_mode": ["paper_transcribed", "interview", "site_tablet", "web"],
            "entry_respondent": ["self", "self_assisted", "proxy"],
            "entry_relationship": ["", "child", "spouse_partner"],
            "entry_completed_on": ["2026-03-09", "", "2026-02-30"],
            "temperature": ["37.5", "38,2", "36"],
            **{item: ["0", "1", "4"] for item in DIARY_ITEMS[1:]},
        },
    ),
    "nurse.correct_form": ("nurse", {"q1": ["1", "4"], "q29": ["1", "7"], "correction_reason": ["mis-tapped"]}),
    "nurse.acknowledge_alert": ("nurse", {"action": ["called the patient"]}),
    "nurse.user_new": (
        "admin",
        {
            "username": ["new.nurse"],
            "full_name": ["New Nurse"],
            "email": ["n@b.cn"],
            "role": ["nurse", "statistician"],
            "language": ["en", "zh_Hans"],
            "site_id": ["0", "{site}"],
            "password": ["a long enough password"],
        },
    ),
    "nurse.user_active": ("admin", {"enable": ["0", "1"], "reason": ["left"]}),
    "nurse.user_password": ("admin", {"password": ["a brand new password"], "reason": ["reset"]}),
    "nurse.user_role": ("admin", {"role": ["investigator", "admin"], "reason": ["promoted"]}),
    "nurse.user_sites": ("admin", {"op": ["add", "remove"], "site_id": ["{site}", "{site2}"], "reason": ["moved"]}),
    "nurse.login_code": ("anonymous", {"code": ["123456", "abcd-efgh"]}),
    "nurse.login_setup": ("anonymous", {"code": ["123456"]}),
    "nurse.account_totp": ("nurse", {"code": ["123456"]}),
    "nurse.account_totp_off": ("nurse", {"password": [STAFF_PASSWORD]}),
    "nurse.account_recovery_codes": ("nurse", {"password": [STAFF_PASSWORD]}),
    "nurse.user_totp_reset": ("admin", {"reason": ["lost phone"]}),
    "nurse.sites": (
        "admin",
        {
            "code": ["S99"],
            "name": ["New site"],
            "timezone": ["Asia/Shanghai", "Europe/Paris", "Mars/Olympus"],
            "default_language": ["en", "zh_Hans"],
            "contact_phone": ["021 1234 5678"],
            "emergency_phone": ["120"],
        },
    ),
    "nurse.site": (
        "admin",
        {
            "code": ["{site_code}"],
            "name": ["Renamed site"],
            "timezone": ["Asia/Shanghai", "Asia/Urumqi"],
            "default_language": ["en", "zh_Hans"],
            "contact_phone": ["021 1234 5678"],
            "emergency_phone": ["120"],
            "reason": ["renamed"],
        },
    ),
    "nurse.data_locks": (
        "admin",
        {
            "scope": ["trial", "site", "patient"],
            "site_id": ["{site}"],
            "study_id": ["{study_id}"],
            "at": ["", "2027-01-31T18:00"],
            "reason": ["primary analysis"],
        },
    ),
    "nurse.release_lock": ("admin", {"reason": ["analysis redone"]}),
    "nurse.edit_details": (
        "nurse",
        {
            "email": ["a@b.cn"],
            "phone": ["13800000000"],
            "language": ["en", "zh_Hans"],
            "timezone": ["", "Europe/Paris"],
            "reason": ["moved"],
        },
    ),
    "nurse.correct_randomization": (
        "admin",
        {"arm": ["A", "B"], "randomization_date": ["2026-02-28", "2026-03-01"], "reason": ["entry error"]},
    ),
    "nurse.call_task": (
        "nurse",
        {"outcome": ["will_answer", "too_ill", "done_by_phone", "no_answer", "wrong_number"], "note": ["busy"]},
    ),
    "nurse.user_contact": ("admin", {"email": ["n@b.cn", ""], "phone": ["+86 138 0000 0000", ""]}),
    "patient.reminder_sign_in": ("anonymous", {"pin": ["123456", "000000"]}),
    "patient.link_sign_in": ("anonymous", {"pin": ["123456", "000000"]}),
    "patient.logout": ("patient", {}),
    "patient.signed_out_sign_in": ("anonymous", {"pin": ["123456", "000000"]}),
    "patient.language": ("patient", {"lang": ["en", "zh_Hans"], "next": ["/p/"]}),
    "patient.large_print": ("patient", {"on": ["0", "1"], "next": ["/p/", "/p/?item=2"]}),
    "patient.respondent": (
        "patient",
        {"respondent": ["self", "self_assisted", "proxy"], "relationship": ["child", "friend", "spouse"]},
    ),
    "patient.page": (
        "patient",
        {
            "temperature": ["37.5", "38,2"],
            "chills": ["0", "1"],
            "confirm_skip": ["temperature", "temperature,chills"],
            "client_time": ["2026-03-10T12:00:00+08:00"],
            "client_offset": ["480", "-300"],
            "nav": ["next", "back", "lang:en", "signout"],
        },
    ),
    "patient.review": ("patient", {"client_time": ["2026-03-10T12:00"], "client_offset": ["480"]}),
    "stats.export": (
        "statistician",
        {
            "sites": ["{site_code}"],
            "arms": ["A", "B"],
            "instruments": [C30],
            "date_from": ["2026-01-01"],
            "date_to": ["2026-12-31"],
            "as_of": ["2026-03-10T00:00:00Z"],
            "formats": ["csv"],
            "labels": ["en", "zh_Hans"],
            "threshold": ["10", "5.5"],
            "iso_dates": ["y"],
        },
    ),
}
#: Routes whose successful example is costly (a whole export): fewer examples.
FEWER = {"stats.export": 4}


def test_every_post_route_is_fuzzed(app):
    posts = {r.endpoint for r in app.url_map.iter_rules() if "POST" in r.methods}
    assert posts == set(ROUTES), f"add to ROUTES: {sorted(posts - set(ROUTES))}; gone: {sorted(set(ROUTES) - posts)}"


class World:
    def __init__(self, app, session, factory, now) -> None:
        self.site, self.site2 = factory.site(), factory.site()
        self.nurse = factory.staff("nurse", sites=[self.site])
        self.admin = factory.staff("admin")
        self.statistician = factory.staff("statistician")
        self.target = factory.staff("nurse", sites=[self.site])
        enrolled = factory.patient(self.site, pin="123456", language="en", randomization_date=dt.date(2026, 3, 1))
        self.token, self.patient = enrolled.token, enrolled.patient
        from qol_app.services import treatment_events

        staff_actor = Actor("staff", str(self.nurse.id))
        self.event, _ = treatment_events.record_event(
            session, staff_actor, self.patient, kind="systemic_cycle", date=dt.date(2026, 3, 2), now=now
        )
        self.diary = factory.timepoint(enrolled, instruments=[DIARY], respondent="self")
        actor = Actor("patient", str(self.patient.id))
        texts = responses.localized(session, responses.registry().get(DIARY), "en")
        started = responses.start_response(session, actor, self.diary, texts, now)
        responses.save_page(session, actor, started, ["chills"], {"chills": 0}, now)
        self.entry = factory.timepoint(enrolled, instruments=[DIARY])
        self.missed = add_timepoint(
            session, self.patient, "sys-c9", status="missed", target=dt.date(2026, 3, 2), before=0, after=0, grace=0
        )
        done = factory.timepoint(enrolled, instruments=[C30], respondent="self")
        self.submitted = add_response(session, done, at=now)
        for n in range(1, 31):
            session.add(
                Answer(response_id=self.submitted.id, item_id=f"q{n}", value=2.0, skipped=False, answered_at=now)
            )
        self.alert = add_alert(session, self.patient, at=now - dt.timedelta(hours=2))
        from qol_app.services import locks, reminder_links

        self.task = add_call_task(session, self.missed, at=now)
        self.reminder = reminder_links.issue(
            session,
            patient_id=self.patient.id,
            timepoint_id=self.diary.id,
            window=reminder_links.window_key(self.diary.opens_at, self.diary.closes_at),
            expires_at=self.diary.grace_closes_at,
            now=now,
        )

        # A lock from a later moment: not in force, so every other route still writes.
        self.lock = locks.lock(
            session, staff_actor, "trial", reason="analysis", now=now, at=now + dt.timedelta(days=365)
        )
        session.flush()
        self.cookies = {}
        for who, user in (("nurse", self.nurse), ("admin", self.admin), ("statistician", self.statistician)):
            client = isolated_client(app)
            login(client, user)
            self.cookies[who] = client.get_cookie("qol_session").value
        client = isolated_client(app)
        assert sign_in(client, self.token).status_code == 302
        self.cookies["patient"] = client.get_cookie("qol_session").value
        # Plain values: the examples roll back (expiring every loaded object) and must not reload any.
        self.places = {
            "{nurse}": self.nurse.username,
            "{site}": str(self.site.id),
            "{site2}": str(self.site2.id),
            "{site_code}": self.site.code,
            "{study_id}": self.patient.study_id,
        }

        self.urls = self._urls()

    def url(self, endpoint: str) -> str:
        return self.urls[endpoint]

    def _urls(self) -> dict[str, str]:
        pid = self.patient.id
        return {
            "nurse.login": "/staff/login",
            "nurse.language": "/staff/language",
            "nurse.logout": "/staff/logout",
            "nurse.account": "/staff/account",
            "nurse.enrol": "/staff/patients/new",
            "nurse.rotate_link": f"/staff/patients/{pid}/link",
            "nurse.set_pin": f"/staff/patients/{pid}/pin",
            "nurse.set_status": f"/staff/patients/{pid}/status",
            "nurse.record_event": f"/staff/patients/{pid}/events",
            "nurse.move_event": f"/staff/patients/{pid}/events/{self.event.id}/move",
            "nurse.delete_event": f"/staff/patients/{pid}/events/{self.event.id}/delete",
            "nurse.missed_reason": f"/staff/patients/{pid}/timepoints/{self.missed.id}/reason",
            "nurse.enter_form": f"/staff/patients/{pid}/timepoints/{self.entry.id}/enter/{DIARY}",
            "nurse.correct_form": f"/staff/patients/{pid}/responses/{self.submitted.id}/correct",
            "nurse.acknowledge_alert": f"/staff/patients/{pid}/alerts/{self.alert.id}/acknowledge",
            "nurse.user_new": "/staff/admin/users/new",
            "nurse.user_active": f"/staff/admin/users/{self.target.id}/active",
            "nurse.user_password": f"/staff/admin/users/{self.target.id}/password",
            "nurse.user_role": f"/staff/admin/users/{self.target.id}/role",
            "nurse.user_sites": f"/staff/admin/users/{self.target.id}/sites",
            "nurse.login_code": "/staff/login/code",
            "nurse.login_setup": "/staff/login/setup",
            "nurse.account_totp": "/staff/account/totp",
            "nurse.account_totp_off": "/staff/account/totp/off",
            "nurse.account_recovery_codes": "/staff/account/recovery-codes",
            "nurse.user_totp_reset": f"/staff/admin/users/{self.target.id}/totp",
            "nurse.sites": "/staff/admin/sites",
            "nurse.site": f"/staff/admin/sites/{self.site.id}",
            "nurse.data_locks": "/staff/admin/locks",
            "nurse.release_lock": f"/staff/admin/locks/{self.lock.id}/release",
            "nurse.edit_details": f"/staff/patients/{pid}/details",
            "nurse.correct_randomization": f"/staff/patients/{pid}/randomization",
            "nurse.call_task": f"/staff/patients/{pid}/calls/{self.task.id}",
            "nurse.user_contact": f"/staff/admin/users/{self.target.id}/contact",
            "patient.reminder_sign_in": f"/p/r/{self.reminder}",
            "patient.link_sign_in": f"/p/l/{self.token}",
            "patient.logout": "/p/logout",
            "patient.signed_out_sign_in": "/p/signed-out",
            "patient.language": "/p/language",
            "patient.large_print": "/p/large-print",
            "patient.respondent": f"/p/t/{self.diary.id}/respondent",
            "patient.page": f"/p/t/{self.diary.id}/{DIARY}/1",
            "patient.review": f"/p/t/{self.diary.id}/submit",
            "stats.export": "/stats/export",
        }

    def fill(self, value: str) -> str:
        return self.places.get(value, value)


_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]|\\u00(?:0[0-8bcef]|1[0-9a-f])|\\u007f", re.IGNORECASE)


class StoredValues:
    """Watches every INSERT/UPDATE and keeps what should never reach the database."""

    def __init__(self) -> None:
        self.bad: list[str] = []

    def __call__(self, conn, cursor, statement, parameters, context, executemany) -> None:
        head = statement.lstrip()[:12].upper()
        if not (head.startswith(("INSERT", "UPDATE")) or "audit_append" in statement):
            return
        self._check(statement, parameters)

    def _check(self, statement: str, value) -> None:
        if isinstance(value, dict):
            for item in value.values():
                self._check(statement, item)
        elif isinstance(value, (list, tuple)):
            for item in value:
                self._check(statement, item)
        elif isinstance(value, str):
            if _CONTROL.search(value):
                self.bad.append(f"control character stored: {value!r} in {statement[:60]}")
            elif value and not value.strip():
                self.bad.append(f"blank text stored: {value!r} in {statement[:60]}")
        elif isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_DB_INT:
            self.bad.append(f"integer beyond range: {value} in {statement[:60]}")


def _answers_valid(session) -> list[str]:
    """Every stored answer within its item's codes or range (explicit skips aside)."""
    from qol_app.scoring.answers import check_answers

    problems = []
    reg = responses.registry()
    for response in session.scalars(select(Response).execution_options(populate_existing=True)):
        answers = {
            a.item_id: responses.typed_value(reg.get(response.instrument_id), a.item_id, a)
            for a in session.scalars(select(Answer).where(Answer.response_id == response.id))
        }
        try:
            check_answers(reg.get(response.instrument_id), answers)
        except ValueError as exc:
            problems.append(f"response {response.id}: {exc}")
    return problems


def _body(fields: dict[str, list[str]]):
    def value(valid: list[str]):
        return st.one_of(
            st.sampled_from(valid), st.sampled_from(HOSTILE), st.text(max_size=12), st.lists(st.sampled_from(valid))
        )

    optional = {name: value(valid) for name, valid in fields.items()}
    optional["unexpected_field"] = st.sampled_from(HOSTILE)
    return st.fixed_dictionaries({}, optional=optional)


@pytest.fixture
def world(app, session, factory, now):
    app.config["WTF_CSRF_ENABLED"] = False
    return World(app, session, factory, now)


@pytest.mark.slow
def test_fuzz_every_post_route(app, session, world, rollback_engine):
    """One world for all routes (building it is most of a route's cost); each route its own run."""
    session.commit()  # the world is in the outer transaction; each example gets a savepoint of its own
    report = {}
    for endpoint in sorted(ROUTES):
        report[endpoint] = _fuzz(app, session, world, rollback_engine, endpoint)
    print("\n" + "\n".join(f"{e}: {json.dumps(s, sort_keys=True)}" for e, s in report.items()))


def _fuzz(app, session, world, rollback_engine, endpoint) -> dict[int, int]:
    who, fields = ROUTES[endpoint]
    url = world.url(endpoint)
    connection = app.extensions["qol_db"]["bind"]
    watch = StoredValues()
    checks_answers = endpoint in ("patient.page", "nurse.enter_form", "nurse.correct_form", "patient.review")
    statuses: dict[int, int] = {}

    backend = rollback_engine.dialect.name
    fixed = "QOL_FUZZ_EXAMPLES" not in os.environ

    @settings(
        max_examples=min(FEWER.get(endpoint, EXAMPLES[backend]), EXAMPLES[backend]),
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )
    @seed(SEEDS[backend] if fixed else None)
    @given(body=_body(fields))
    def example(body):
        data = {k: ([world.fill(x) for x in v] if isinstance(v, list) else world.fill(v)) for k, v in body.items()}
        client = isolated_client(app)
        if who != "anonymous":
            client.set_cookie("qol_session", world.cookies[who], domain="localhost")
        savepoint = connection.begin_nested()
        event.listen(rollback_engine, "before_cursor_execute", watch)
        try:
            response = client.post(url, data=data)
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
            assert response.status_code < 500, f"{endpoint} answered {response.status_code} to {data!r}"
            problems = _answers_valid(session) if checks_answers else []
            assert not problems, f"{endpoint} stored an invalid answer from {data!r}: {problems}"
            assert not watch.bad, f"{endpoint} stored from {data!r}: {watch.bad}"
        finally:
            event.remove(rollback_engine, "before_cursor_execute", watch)
            session.rollback()  # its own savepoint (opened by the checks) sits inside the example's
            savepoint.rollback()

    example()
    return statuses
