"""A realistic synthetic CONQUER trial for demonstrations and benchmarks.

Deterministic for a given ``today`` and seed. Demo personal links are derived from the
app's secret key, so running ``qol demo`` again prints the same working links (real patients
get random tokens that are never stored).

One story, played forward with a clock: each patient is enrolled on the randomization day, each
treatment event is recorded on the day it was given, each form is answered, each status and
missed-form reason is recorded when the story says, and every one of those writes (and its audit
row) carries that time. So an as-of export of a past day shows the trial as it was then. Every
query the story draws from has a total order, so SQLite and PostgreSQL get the same data.

Every site, account and patient it creates is marked in ``demo_records``. ``build`` refuses a
database holding anything unmarked (real trial data must never receive demo patients or the
printed demo logins), and a production installation refuses demo accounts at sign-in.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import hmac
import random
from collections.abc import Callable, Iterator
from typing import TypedDict

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from qol_app.models import DemoRecord, Patient, Site, SiteMembership, StaffUser
from qol_app.passwords import hash_secret
from qol_app.services.audit import Actor
from qol_app.services.enrolment import enroll_patient
from qol_app.services.sessions import token_hash

ACTOR = Actor.system("demo")

SITES = (
    dict(
        code="S01",
        name="Shanghai demo hospital",
        timezone="Asia/Shanghai",
        default_language="zh_Hans",
        emergency_phone="120",
        contact_phone="021-5555-0101",
    ),
    dict(
        code="S02",
        name="Urumqi demo hospital",
        timezone="Asia/Urumqi",
        default_language="zh_Hans",
        emergency_phone="120",
        contact_phone="0991-555-0202",
    ),
)


class StaffSpec(TypedDict):
    username: str
    full_name: str
    role: str
    sites: tuple[str, ...]
    language: str


STAFF: tuple[StaffSpec, ...] = (
    StaffSpec(username="nurse.s01", full_name="Demo nurse (S01)", role="nurse", sites=("S01",), language="zh_Hans"),
    StaffSpec(username="nurse.s02", full_name="Demo nurse (S02)", role="nurse", sites=("S02",), language="en"),
    StaffSpec(
        username="investigator", full_name="Demo investigator", role="investigator", sites=("S01", "S02"), language="en"
    ),
    StaffSpec(username="statistician", full_name="Demo statistician", role="statistician", sites=(), language="en"),
    StaffSpec(username="admin", full_name="Demo administrator", role="admin", sites=("S01", "S02"), language="en"),
)


def demo_password(username: str) -> str:
    """``demo-<username>-pass``: long enough for the 12-character rule, printed by ``qol demo``."""
    return f"demo-{username}-pass"


def demo_totp_secret(secret: str, username: str) -> str:
    """The demo admin's TOTP key (base32), derived like the links so ``qol demo`` can print it again."""
    import base64

    digest = hmac.new(secret.encode(), f"demo-totp:{username}".encode(), hashlib.sha256).digest()
    return base64.b32encode(digest[:20]).decode()


class DemoRefused(RuntimeError):
    """The database holds data ``qol demo`` did not create."""


TABLES: dict[str, type[Site] | type[StaffUser] | type[Patient]] = {
    "sites": Site,
    "staff_users": StaffUser,
    "patients": Patient,
}


def mark(session: Session, entity_type: str, entity_id: int) -> None:
    session.add(DemoRecord(entity_type=entity_type, entity_id=entity_id))


def is_demo(session: Session, entity_type: str, entity_id: int) -> bool:
    return session.get(DemoRecord, (entity_type, entity_id)) is not None


def foreign_rows(session: Session) -> dict[str, int]:
    """How many sites, accounts and patients are not demo rows (all zero: an empty or demo database)."""
    found = {}
    for name, model in TABLES.items():
        marked = select(DemoRecord.entity_id).where(DemoRecord.entity_type == name)
        found[name] = session.scalar(select(func.count()).select_from(model).where(model.id.not_in(marked))) or 0
    return found


def check_demo_database(session: Session) -> None:
    """Raise DemoRefused unless every site, account and patient here came from ``qol demo``."""
    found = foreign_rows(session)
    if any(found.values()):
        raise DemoRefused(
            "this database holds data that qol demo did not create "
            f"({found['sites']} site(s), {found['staff_users']} staff account(s), {found['patients']} patient(s)); "
            "demo data go only into an empty database or one filled by qol demo"
        )


def demo_token(secret: str, study_id: str) -> str:
    """256 bits derived from the installation secret: stable across runs, unguessable without it."""
    return hmac.new(secret.encode(), f"demo-link:{study_id}".encode(), hashlib.sha256).hexdigest()


def demo_pin(secret: str, study_id: str) -> str:
    digest = hmac.new(secret.encode(), f"demo-pin:{study_id}".encode(), hashlib.sha256).digest()
    return f"{int.from_bytes(digest[:4], 'big') % 10**6:06d}"


@dataclasses.dataclass
class DemoPatient:
    study_id: str
    token: str
    pin: str | None
    arm: str
    language: str
    due_now: int = 0


@dataclasses.dataclass
class DemoResult:
    created: bool
    patients: list[DemoPatient]
    staff: list[tuple[str, str, str]]
    totp: dict[str, str] = dataclasses.field(default_factory=dict)  # username -> TOTP key (base32)


def ensure_sites_and_staff(session: Session, now: dt.datetime, secret: str = "") -> dict[str, Site]:
    sites = {s.code: s for s in session.scalars(select(Site)).all()}
    for spec in SITES:
        if spec["code"] not in sites:
            site = Site(**spec, created_at=now)
            session.add(site)
            session.flush()
            mark(session, "sites", site.id)
            sites[spec["code"]] = site
    session.flush()
    existing = set(session.scalars(select(StaffUser.username)).all())
    for staff in STAFF:
        if staff["username"] in existing:
            continue
        user = StaffUser(
            username=staff["username"],
            full_name=staff["full_name"],
            role=staff["role"],
            language=staff["language"],
            email=f"{staff['username']}@demo.invalid",
            password_hash=hash_secret(demo_password(staff["username"])),
            created_at=now,
        )
        user.memberships = [SiteMembership(site_id=sites[c].id) for c in staff["sites"]]
        if staff["role"] == "admin":  # admins must use a second factor: give the demo one a known key
            user.totp_secret = demo_totp_secret(secret, staff["username"])
            user.totp_enabled_at = now
        session.add(user)
        session.flush()
        mark(session, "staff_users", user.id)
    session.flush()
    return sites


def intrathecal_dates(start: dt.date, today: dt.date) -> Iterator[dt.date]:
    """Pemetrexed-style course: twice weekly x 2 weeks, weekly x 4 weeks, then every 4 weeks."""
    offsets = [0, 3, 7, 10] + [14 + 7 * k for k in range(4)] + [42 + 28 * k for k in range(20)]
    for offset in offsets:
        day = start + dt.timedelta(days=offset)
        if day > today:
            return
        yield day


def plan_patients(n: int, today: dt.date, seed: int = 2026) -> list[dict]:
    """The demo cohort: enrolment spread over the last ~5 months, both arms, both sites."""
    rng = random.Random(seed)
    cohort = []
    for i in range(n):
        site = "S01" if i % 2 == 0 else "S02"
        number = i // 2 + 1
        days_ago = int(150 * (i + 1) / n) if i % 5 else rng.randint(0, 14)
        rand_date = today - dt.timedelta(days=days_ago)
        roll = rng.random()
        status = None
        if days_ago > 60 and roll < 0.25:
            status = ("died", rand_date + dt.timedelta(days=rng.randint(40, days_ago - 5)))
        elif days_ago > 30 and roll < 0.32:
            status = ("withdrawn", rand_date + dt.timedelta(days=rng.randint(20, days_ago - 3)))
        cohort.append(
            dict(
                study_id=f"{site}-{number:03d}",
                site=site,
                arm="A" if (i // 2) % 2 == 0 else "B",
                randomization_date=rand_date,
                language="zh_Hans" if rng.random() < 0.8 else "en",
                status=status,
                cycle_length=rng.choice((21, 21, 21, 14, 28)),
                rng_seed=rng.randrange(10**9),
            )
        )
    return cohort


def ensure_patients(
    session: Session,
    sites: dict[str, Site],
    cohort: list[dict],
    secret: str,
    now: dt.datetime,
    on_patient: Callable[[Patient, dict], None] | None = None,
) -> list[DemoPatient]:
    """Enroll missing cohort members (with demo links) and hand each new one to ``on_patient``."""
    existing = set(session.scalars(select(Patient.study_id)).all())
    shown = []
    for spec in cohort:
        token = demo_token(secret, spec["study_id"])
        pin = demo_pin(secret, spec["study_id"])
        if spec["study_id"] not in existing:
            site = sites[spec["site"]]
            enrolled = enroll_patient(
                session,
                ACTOR,
                study_id=spec["study_id"],
                site=site,
                arm=spec["arm"],
                randomization_date=spec["randomization_date"],
                language=spec["language"],
                now=at_local(spec["randomization_date"], 9, site.timezone, now),  # enrolled that morning
                consent_date=spec["randomization_date"] - dt.timedelta(days=2),
                pin=pin,
            )
            enrolled.patient.link_token_hash = token_hash(token)
            mark(session, "patients", enrolled.patient.id)
            if on_patient is not None:
                on_patient(enrolled.patient, spec)
        shown.append(DemoPatient(spec["study_id"], token, pin, spec["arm"], spec["language"]))
    return shown


# ---------------------------------------------------------------- history: events and forms


def at_local(day: dt.date, hour: int, tz: str, now: dt.datetime) -> dt.datetime:
    """``hour``:00 on local ``day`` in ``tz`` (UTC), never later than ``now``."""
    from qol_app.scheduling.timewindows import local_day_start, zone

    return min(local_day_start(day, zone(tz)) + dt.timedelta(hours=hour), now)


def history_events(patient: Patient, spec: dict, today: dt.date) -> list[dict]:
    """Treatment events on their actual dates (with the usual delays), up to death or withdrawal,
    in the order staff record them (by date; systemic cycle before the dose of the same day)."""
    rng = random.Random(spec["rng_seed"])
    end = spec["status"][1] if spec["status"] else today
    start = patient.randomization_date + dt.timedelta(days=rng.randint(1, 4))
    events: list[dict] = []
    day, cycle = start, 1
    while day <= end and cycle <= 8:
        events.append(
            dict(
                kind="systemic_cycle",
                date=day,
                number=cycle,
                cycle_length_days=spec["cycle_length"],
                drug="capecitabine",
            )
        )
        delay = rng.choice((0, 0, 0, 3, 7))  # low blood counts delay some cycles
        day += dt.timedelta(days=spec["cycle_length"] + delay)
        cycle += 1
    if patient.arm == "A":
        for number, dose_day in enumerate(intrathecal_dates(start, end), start=1):
            events.append(dict(kind="intrathecal_dose", date=dose_day, number=number, drug="pemetrexed 15 mg"))
    if spec["status"]:
        status, when = spec["status"]
        if (when - patient.randomization_date).days > 50 and rng.random() < 0.6:
            events.append(dict(kind="progression", date=when - dt.timedelta(days=20)))
    order = {"systemic_cycle": 0, "intrathecal_dose": 1, "progression": 2}
    return sorted(events, key=lambda e: (e["date"], order[e["kind"]], e.get("number") or 0))


def play_story(session: Session, patient: Patient, spec: dict, now: dt.datetime, keep_open: bool) -> None:
    """One patient's story forward in time: events recorded on their day (10:00 local), forms
    answered in between, then the end status (noon local on its date); each at its own time."""
    from qol_app.services.timepoints import reconcile_patient
    from qol_app.services.treatment_events import record_event, set_patient_status

    tz = patient.tz
    handled: set[str] = set()
    for event in history_events(patient, spec, now.date()):
        at = at_local(event["date"], 10, tz, now)
        fill_forms(session, patient, spec, now, keep_open, until=at, handled=handled)
        record_event(session, ACTOR, patient, now=at, **event)
    if spec["status"]:
        status, when = spec["status"]
        at = at_local(when, 12, tz, now)
        fill_forms(session, patient, spec, now, keep_open, until=at, handled=handled)
        set_patient_status(session, ACTOR, patient, status, now=at, status_date=when, reason="demo data")
    fill_forms(session, patient, spec, now, keep_open, until=now, handled=handled)
    reconcile_patient(session, ACTOR, patient, now, reason="demo: today")  # follow-ups up to today


def fill_forms(
    session: Session,
    patient: Patient,
    spec: dict,
    now: dt.datetime,
    keep_open: bool,
    *,
    until: dt.datetime | None = None,
    handled: set[str] | None = None,
) -> None:
    """Answer timepoints like real patients do: most complete, some partial, some missed.

    Only forms answered before ``until`` (default ``now``) are written, at their answering time;
    ``handled`` (keys) carries over between calls, so the story can record the next event in
    between. Each timepoint's draw comes from its own seed (patient seed + key), so the result
    does not depend on the order or the number of calls. ``keep_open`` leaves forms whose window
    is open now unanswered, so demo links show work.
    """
    from qol_app.models import Timepoint
    from qol_app.services import responses as svc

    until = until or now
    handled = set() if handled is None else handled
    frailty = random.Random(spec["rng_seed"] + 1).random()  # sicker patients answer less and score worse
    timepoints = session.scalars(
        select(Timepoint)
        .where(
            Timepoint.patient_id == patient.id,
            Timepoint.status.not_in(("not_expected", "cancelled")),
            Timepoint.cancel_reason.is_(None),
            Timepoint.opens_at < until,
        )
        .order_by(Timepoint.opens_at, Timepoint.key)  # a total order: the same story on every database
    ).all()
    actor = Actor("patient", str(patient.id))
    end = spec["status"][1] if spec["status"] else None
    for tp in timepoints:
        if tp.key in handled:
            continue
        if end is not None and tp.window_start > end:
            continue  # after death or withdrawal: never answered (not expected once the status is in)
        still_open = tp.grace_closes_at > now
        if still_open and keep_open:
            continue
        rng = random.Random(f"{spec['rng_seed']}:{tp.key}")
        roll = rng.random()
        if roll < 0.12 + 0.25 * frailty:
            handled.add(tp.key)
            continue  # missed (a reason is given below for most)
        answered_at = min(tp.opens_at + dt.timedelta(hours=rng.randint(9, 40)), now - dt.timedelta(minutes=5))
        if answered_at >= until:
            continue  # later in the story
        handled.add(tp.key)
        if end is not None and answered_at.date() >= end:
            continue
        who = rng.choices(("self", "self_assisted", "proxy"), weights=(6, 3, 2))[0]
        svc.set_respondent(session, actor, tp, who, "spouse_partner" if who == "proxy" else None, answered_at)
        partial = roll > 0.95
        for instrument_id in tp.instruments:
            instrument = svc.registry().get(instrument_id)
            texts = svc.localized(session, instrument, patient.language)
            response = svc.start_response(session, actor, tp, texts, answered_at)
            answers = {
                item: _answer(rng, instrument.item(item), frailty) for item in svc.presented_items(instrument, patient)
            }
            if partial:
                answers = dict(list(answers.items())[: len(answers) // 3])
            svc.save_page(
                session,
                actor,
                response,
                answers.keys(),
                answers,
                answered_at,
                skip=[k for k, v in answers.items() if v is None],
                texts=texts,
            )
            if not partial:
                svc.submit(session, actor, response, patient, answered_at)


def _answer(rng: random.Random, item, frailty: float) -> int | float | None:
    if rng.random() < 0.02:
        return None
    if item.kind == "number":
        return None if rng.random() < 0.5 else round(rng.gauss(36.7 + frailty * 0.3, 0.3), 1)
    if item.kind == "vas":
        return max(0, min(100, int(rng.gauss(70 - 40 * frailty, 12))))
    codes = list(item.codes)
    if "ommaya" in item.tags:
        return codes[0] if rng.random() < 0.97 else rng.choice(codes[1:])
    if codes == [0, 1]:  # diary yes/no warning signs: rare
        return 1 if rng.random() < 0.004 + 0.012 * frailty else 0
    if codes[0] == 0:  # diary severity/frequency 0-4: mostly none or mild
        return rng.choices(codes, weights=[6, 3 * frailty + 1, 2 * frailty, 0.4 * frailty, 0.1 * frailty])[0]
    # Skew towards the better end for fitter patients; the scale direction is the item's codes.
    weight = [(1 - frailty) ** k if k else 1.0 for k in range(len(codes))]
    if item.kind == "choice" and codes[0] == 1 and len(codes) == 7:
        return 8 - rng.choices(codes, weights=weight)[0]
    return rng.choices(codes, weights=weight)[0]


MISSED_REASONS = ("too_ill", "too_ill", "hospitalised", "forgot", "technical", "cognitive_impairment", "refused")


def _site_nurse(session: Session, site_id: int) -> StaffUser | None:
    return session.scalar(
        select(StaffUser)
        .join(SiteMembership)
        .where(SiteMembership.site_id == site_id, StaffUser.role == "nurse")
        .order_by(StaffUser.id)
        .limit(1)
    )


def give_missed_reasons(session: Session, now: dt.datetime, seed: int = 11) -> None:
    """Nurses give a reason for most missed forms, the day after the grace period ended (audited
    at that time, through the nurses' own service); a few stay on their to-do list."""
    from qol_app.models import Timepoint
    from qol_app.services.compliance import set_missed_reason

    rng = random.Random(seed)
    nurses: dict[int, StaffUser | None] = {}
    for tp in session.scalars(
        select(Timepoint)
        .where(Timepoint.status.in_(("missed", "partial")), Timepoint.missed_reason.is_(None))
        .order_by(Timepoint.id)
    ).all():
        when = tp.grace_closes_at + dt.timedelta(days=1)
        if rng.random() >= 0.8 or when > now:
            continue
        site_id = tp.patient.site_id
        if site_id not in nurses:
            nurses[site_id] = _site_nurse(session, site_id)
        nurse = nurses[site_id]
        if nurse is None:
            continue
        reason = rng.choice(MISSED_REASONS)
        set_missed_reason(session, Actor("staff", str(nurse.id)), nurse, tp, reason, None, change_reason=None, now=when)


def handle_old_alerts(session: Session, now: dt.datetime) -> None:
    """Nurses have called about alerts older than a day; recent ones still wait on the work list."""
    from qol_app.models import Alert
    from qol_app.services.alerts import acknowledge

    nurses = {}
    for alert in session.scalars(
        select(Alert)
        .where(Alert.acknowledged_at.is_(None), Alert.raised_at < now - dt.timedelta(days=1))
        .order_by(Alert.id)
    ):
        site_id = alert.patient.site_id
        if site_id not in nurses:
            nurses[site_id] = _site_nurse(session, site_id)
        nurse = nurses[site_id]
        if nurse is None:  # as in give_missed_reasons: a site without a nurse is left as it is
            continue
        when = alert.raised_at + dt.timedelta(hours=3)
        action = (
            "Called the patient; advised to come to clinic" if alert.level == "red" else "Called; symptoms settling"
        )
        acknowledge(session, Actor("staff", str(nurse.id)), alert, nurse, action, when)


def build(
    session: Session, secret: str, now: dt.datetime, n_patients: int = 40, progress: Callable[[str], None] | None = None
) -> DemoResult:
    """Create (or complete) the demo trial; idempotent: existing demo patients are left alone."""
    from qol_app.services.timepoints import reconcile_patient, sweep_statuses

    check_demo_database(session)
    say = progress or (lambda _msg: None)
    today = now.date()
    cohort = plan_patients(n_patients, today)
    opened = min(
        [now - dt.timedelta(days=7)]
        + [at_local(spec["randomization_date"] - dt.timedelta(days=7), 8, "UTC", now) for spec in cohort]
    )
    sites = ensure_sites_and_staff(session, opened, secret)  # the trial opened before the first patient
    created = []

    def on_patient(patient: Patient, spec: dict) -> None:
        reconcile_patient(session, ACTOR, patient, patient.created_at, reason="demo: enrolled")
        created.append((patient, spec))

    shown = ensure_patients(session, sites, cohort, secret, now, on_patient)
    for index, (patient, spec) in enumerate(created):
        play_story(session, patient, spec, now, keep_open=index < 12)
        if index % 10 == 9:
            say(f"{index + 1} patients with forms")
    sweep_statuses(session, now, actor=ACTOR)
    give_missed_reasons(session, now)
    handle_old_alerts(session, now)
    session.flush()
    _count_due(session, shown)
    staff = [(s["username"], demo_password(s["username"]), s["role"]) for s in STAFF]
    totp = {s["username"]: demo_totp_secret(secret, s["username"]) for s in STAFF if s["role"] == "admin"}
    return DemoResult(created=bool(created), patients=shown, staff=staff, totp=totp)


def _count_due(session: Session, shown: list[DemoPatient]) -> None:
    """How many forms each demo patient has open now, so the printed links lead somewhere useful."""
    from sqlalchemy import func

    from qol_app.models import Timepoint

    counts = dict(
        session.execute(
            select(Patient.study_id, func.count(Timepoint.id))
            .join(Timepoint, Timepoint.patient_id == Patient.id)
            .where(Timepoint.status.in_(("open", "overdue")))
            .group_by(Patient.study_id)
        ).all()
    )
    for p in shown:
        p.due_now = counts.get(p.study_id, 0)
    shown.sort(key=lambda p: (p.due_now == 0, p.study_id))
