"""Builders for test data through the real services (so audit rows and hashes are real too)."""

from __future__ import annotations

import contextvars
import datetime as dt
import itertools
import re
from zoneinfo import ZoneInfo

from flask.testing import FlaskClient
from sqlalchemy import text

from qol_app.models import Alert, Answer, Response, Site, SiteMembership, StaffUser, Timepoint
from qol_app.passwords import hash_secret
from qol_app.scheduling.timewindows import day_after_start, local_day_start
from qol_app.services.audit import Actor
from qol_app.services.enrolment import Enrolled, enroll_patient

_seq = itertools.count(1)
STAFF_PASSWORD = "correct horse battery"
TEST_TOTP_SECRET = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"


class Factory:
    def __init__(self, session, now: dt.datetime) -> None:
        self.session = session
        self.now = now
        self.actor = Actor.system("tests")

    def site(self, code: str | None = None, tz: str = "Asia/Shanghai", **kw) -> Site:
        n = next(_seq)
        site = Site(
            code=code or f"T{n:02d}",
            name=kw.pop("name", f"Test site {n}"),
            timezone=tz,
            default_language=kw.pop("default_language", "zh_Hans"),
            emergency_phone=kw.pop("emergency_phone", "120"),
            **kw,
        )
        self.session.add(site)
        self.session.flush()
        return site

    def staff(
        self,
        role: str = "nurse",
        sites: list[Site] = (),
        username: str | None = None,
        *,
        totp: bool | None = None,
        **kw,
    ) -> StaffUser:
        """An account; admins (who must use a second factor) get the TOTP key ``TEST_TOTP_SECRET``
        unless ``totp=False`` (``totp=True`` gives it to any role)."""
        with_totp = role == "admin" if totp is None else totp
        user = StaffUser(
            username=username or f"{role}{next(_seq)}",
            full_name=kw.pop("full_name", f"Test {role}"),
            role=role,
            password_hash=hash_secret(STAFF_PASSWORD),
            totp_secret=TEST_TOTP_SECRET if with_totp else None,
            totp_enabled_at=self.now if with_totp else None,
            **kw,
        )
        user.memberships = [SiteMembership(site_id=s.id) for s in sites]
        self.session.add(user)
        self.session.flush()
        return user

    def patient(
        self,
        site: Site | None = None,
        *,
        arm: str = "A",
        language: str = "zh_Hans",
        randomization_date: dt.date | None = None,
        pin: str | None = "123456",
        enrolled_at: dt.datetime | None = None,
        **kw,
    ) -> Enrolled:
        """Enrol through the real service; ``enrolled_at`` (default: the factory's now) is when the
        enrolment was recorded, which decides whether past forms were offered (late entry)."""
        site = site or self.site()
        n = next(_seq)
        return enroll_patient(
            self.session,
            self.actor,
            study_id=kw.pop("study_id", f"{site.code}-{n:03d}"),
            site=site,
            arm=arm,
            randomization_date=randomization_date or self.now.date(),
            language=language,
            now=enrolled_at or self.now,
            with_pin=pin is not None,
            pin=pin,
            **kw,
        )


# ---- timepoints (patient survey tests) ------------------------------------------------------
def _timepoint(
    self,
    patient,
    *,
    instruments=("eortc_qlq_c30",),
    kind: str | None = None,
    key: str | None = None,
    status: str = "open",
    opens_at: dt.datetime | None = None,
    closes_at: dt.datetime | None = None,
    grace_closes_at: dt.datetime | None = None,
    respondent: str | None = None,
    **kw,
):
    """A Timepoint row written directly, window open around ``now`` (opened a day ago, closes in two,
    grace ends in three). ``patient`` is a Patient or the Enrolled returned by ``patient()``."""
    from qol_app.models import Timepoint

    patient = getattr(patient, "patient", patient)
    opens_at = opens_at or self.now - dt.timedelta(days=1)
    closes_at = closes_at or self.now + dt.timedelta(days=2)
    grace_closes_at = grace_closes_at or closes_at + dt.timedelta(days=1)
    today = self.now.date()
    kind = kind or ("diary" if list(instruments) == ["symptom_diary"] else "questionnaire")
    tp = Timepoint(
        patient_id=patient.id,
        key=key or f"tp-{next(_seq)}",
        rule_id=kw.pop("rule_id", "test"),
        kind=kind,
        instruments=list(instruments),
        anchor_kind=kw.pop("anchor_kind", "randomization"),
        anchor_date=kw.pop("anchor_date", today),
        target_date=kw.pop("target_date", today),
        window_start=kw.pop("window_start", opens_at.date()),
        window_end=kw.pop("window_end", closes_at.date()),
        grace_end=kw.pop("grace_end", grace_closes_at.date()),
        opens_at=opens_at,
        closes_at=closes_at,
        grace_closes_at=grace_closes_at,
        status=status,
        respondent=respondent,
        created_at=self.now,
        **kw,
    )
    self.session.add(tp)
    self.session.flush()
    return tp


Factory.timepoint = _timepoint


# ---- patient web helpers (real HTTP through the Flask test client) ----------------------------
def hidden_fields(html: str) -> dict[str, str]:
    """The hidden inputs of a page (CSRF token, confirm_skip, ...), as a browser would send them."""
    import html as html_lib
    import re

    fields = {}
    for tag in re.findall(r"<input[^>]*>", html):
        if 'type="hidden"' not in tag:
            continue
        name = re.search(r'name="([^"]*)"', tag)
        value = re.search(r'value="([^"]*)"', tag)
        if name:
            fields[name.group(1)] = html_lib.unescape(value.group(1)) if value else ""
    return fields


def page_form(html: str) -> dict[str, str]:
    """Hidden fields of the last form on the page (the survey form comes after the language switch)."""
    import re

    forms = re.findall(r"<form[^>]*>.*?</form>", html, flags=re.DOTALL)
    fields = hidden_fields(forms[-1])
    fields.pop("next", None)
    return fields


def sign_in(client, token: str, pin: str | None = "123456"):
    """Open the personal link and press Sign in; returns the POST response."""
    page = client.get(f"/p/l/{token}")
    data = {"csrf_token": hidden_fields(page.get_data(as_text=True))["csrf_token"]}
    if pin is not None:
        data["pin"] = pin
    return client.post(f"/p/l/{token}", data=data)


def send_page(client, url: str, answers: dict, nav: str = "next", **extra):
    """GET a survey page, then POST it with ``answers`` as a browser would (hidden fields included)."""
    page = client.get(url)
    assert page.status_code == 200, page.status_code
    data = page_form(page.get_data(as_text=True)) | {"nav": nav} | {k: str(v) for k, v in answers.items()}
    return client.post(url, data=data | extra)


class IsolatedClient(FlaskClient):
    """A test client whose every request runs in its own app context, as in production.

    The ``app`` fixture keeps one app context open for the whole test, and Flask would reuse it
    for test-client requests, so ``g`` (who is signed in, cached locale, CSRF token) and the db
    session would leak from one request into the next. Running each request in an empty
    ``contextvars`` context gives it a fresh app context and session, still bound to the test's
    rolled-back connection. The ``app`` fixtures make it every test client's class.
    """

    def open(self, *args, **kwargs):
        return contextvars.Context().run(super().open, *args, **kwargs)


def isolated_client(app):
    """A fresh test client (each of its requests in its own app context, see ``IsolatedClient``)."""
    return app.test_client()


def fill_form(client, tp_id: int, instrument_id: str, answers: dict, *, max_pages: int = 20) -> str:
    """Answer every page of one form through the web (confirming skips when reminded); returns the
    review page URL."""
    url = f"/p/t/{tp_id}/{instrument_id}/1"
    for _ in range(max_pages * 2):
        response = send_page(client, url, answers)
        assert response.status_code == 302, response.get_data(as_text=True)[:500]
        url = response.headers["Location"]
        if url.endswith("/call"):  # a red finding: the call page, then on with the form
            url = continue_after_call(client, url)
        if url.endswith("/submit"):
            return url
    raise AssertionError("form never reached its review page")


def continue_after_call(client, call_url: str) -> str:
    """Open the call page shown after a red finding and press its "continue" button; returns where
    it leads (the next page to answer, or the review)."""
    import re

    page = client.get(call_url)
    assert page.status_code == 200 and 'href="tel:' in page.get_data(as_text=True), page.status_code
    onward = re.search(r'href="(/p/t/\d+)"', page.get_data(as_text=True))
    assert onward, "the call page has no way to continue"
    response = client.get(onward.group(1))
    assert response.status_code == 302, response.status_code
    return response.headers["Location"]


def fill_visit(client, tp_id: int, answers: dict, *, max_pages: int = 40) -> list[str]:
    """Answer the whole visit of a timepoint (every form's pages in sequence, from where it resumes),
    confirming skips when reminded; returns the URLs answered, the visit's review URL last."""
    start = client.get(f"/p/t/{tp_id}")
    assert start.status_code == 302, start.status_code
    url, seen = start.headers["Location"], []
    for _ in range(max_pages * 2):
        if url.endswith("/call"):
            url = continue_after_call(client, url)
        if url.endswith(f"/p/t/{tp_id}/submit"):
            seen.append(url)
            return seen
        seen.append(url)
        response = send_page(client, url, answers)
        assert response.status_code == 302, response.get_data(as_text=True)[:500]
        url = response.headers["Location"]
    raise AssertionError("visit never reached its review page")


def submit_form(client, review_url: str):
    """Open the (visit's) review page and press Send."""
    page = client.get(review_url)
    assert page.status_code == 200, page.status_code
    return client.post(review_url, data=page_form(page.get_data(as_text=True)))


def add_call_task(session, tp, *, at):
    """An open call task for ``tp``, as the sweep creates one."""
    from qol_app.models import OutboxMessage

    task = OutboxMessage(
        dedupe_key=f"tp:{tp.id}:test:call",
        kind="call_task",
        channel="task",
        patient_id=tp.patient_id,
        timepoint_id=tp.id,
        language="en",
        subject="call",
        body="call",
        status="open",
        created_at=at,
        step="call",
    )
    session.add(task)
    session.flush()
    return task


# ---- staff-side helpers: sign-in, CSRF, timepoint, response and alert rows ---------------------
CSRF_RE = re.compile(r'name="csrf_token" type="hidden" value="([^"]+)"|name="csrf_token" value="([^"]+)"')


def no_csrf(app) -> None:
    """Most staff tests post forms directly; CSRF itself is covered by its own test."""
    app.config["WTF_CSRF_ENABLED"] = False


def totp_code(client, secret: str) -> str:
    """The code an authenticator app shows at the app's (frozen) clock."""
    import pyotp

    return pyotp.TOTP(secret).at(client.application.config["FROZEN_NOW"])


def login(client, user) -> None:
    """Sign in through the real pages, with the second factor when the account has one."""
    response = client.post("/staff/login", data={"username": user.username, "password": STAFF_PASSWORD})
    assert response.status_code == 302, response.get_data(as_text=True)[:500]
    if response.headers["Location"].endswith("/staff/login/code"):
        from sqlalchemy.orm import object_session

        # Each code is accepted once; with a frozen clock, forget the last one so tests may sign in again.
        user.totp_last_step = None
        object_session(user).flush()
        response = client.post("/staff/login/code", data={"code": totp_code(client, user.totp_secret)})
        assert response.status_code == 302, response.get_data(as_text=True)[:500]


def csrf_token(client, path: str) -> str:
    body = client.get(path).get_data(as_text=True)
    match = CSRF_RE.search(body)
    assert match, f"no CSRF token on {path}"
    return match.group(1) or match.group(2)


def add_timepoint(
    session,
    patient,
    key: str,
    *,
    status: str,
    target: dt.date,
    kind: str = "questionnaire",
    rule_id: str | None = None,
    before: int = 3,
    after: int = 3,
    grace: int = 3,
    completed_at: dt.datetime | None = None,
    started_at: dt.datetime | None = None,
    missed_reason: str | None = None,
    missed_reason_text: str | None = None,
    not_expected_reason: str | None = None,
    instruments=("eortc_qlq_c30",),
) -> Timepoint:
    """A timepoint row built by hand (window in the patient's zone), independent of the planner."""
    tz = ZoneInfo(patient.tz)
    start, end = target - dt.timedelta(days=before), target + dt.timedelta(days=after)
    if kind == "diary":
        start = end = target
        grace = 1
    tp = Timepoint(
        patient_id=patient.id,
        key=key,
        rule_id=rule_id or {"questionnaire": key.split("-")[0], "diary": "nadir_diary"}[kind],
        kind=kind,
        instruments=list(instruments if kind == "questionnaire" else ("symptom_diary",)),
        anchor_kind="randomization",
        anchor_date=target,
        target_date=target,
        window_start=start,
        window_end=end,
        grace_end=end + dt.timedelta(days=grace),
        opens_at=local_day_start(start, tz),
        closes_at=day_after_start(end, tz),
        grace_closes_at=day_after_start(end + dt.timedelta(days=grace), tz),
        status=status,
        completed_at=completed_at,
        started_at=started_at,
        missed_reason=missed_reason,
        missed_reason_text=missed_reason_text,
        not_expected_reason=not_expected_reason,
    )
    session.add(tp)
    session.flush()
    return tp


def add_response(
    session, tp, *, respondent: str = "self", mode: str = "web", at: dt.datetime, answers: dict | None = None
) -> Response:
    """A submitted revision 0 of the timepoint's first instrument; ``answers``: item -> value (None:
    an explicit skip)."""
    response = Response(
        timepoint_id=tp.id,
        patient_id=tp.patient_id,
        instrument_id=tp.instruments[0],
        instrument_version="3.0",
        revision=0,
        language="zh_Hans",
        wording_version="own",
        respondent=respondent,
        mode=mode,
        status="submitted",
        started_at=at,
        submitted_at=at,
    )
    session.add(response)
    session.flush()
    for item, value in (answers or {}).items():
        session.add(Answer(response_id=response.id, item_id=item, value=value, skipped=value is None, answered_at=at))
    session.flush()
    return response


def add_alert(session, patient, *, level: str = "red", at: dt.datetime) -> Alert:
    alert = Alert(
        patient_id=patient.id,
        level=level,
        initial_level=level,
        rules=[{"id": "seizure"}],
        triggering_answers={"seizure": 1},
        raised_at=at,
    )
    session.add(alert)
    session.flush()
    return alert


def tamper(session, sql, **params):
    """Change rows behind the app's back, the way an attacker with the owner's access would."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SET LOCAL session_replication_role = replica"))
    session.execute(text(sql), params)
    session.expire_all()


def browser_sign_in(page, base: str, token: str, pin: str) -> None:
    """In Chromium (Playwright): open the personal link, type the PIN, sign in."""
    page.goto(f"{base}/p/l/{token}")
    page.fill("#pin", pin)
    with page.expect_navigation():
        page.locator("main button[type=submit].primary").click()
