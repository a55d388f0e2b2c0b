"""A realistic synthetic CONQUER trial for demonstrations and benchmarks.

Deterministic for a given ``today`` and seed. Demo personal links are derived from the
app's secret key, so running ``qol demo`` again prints the same working links (real patients
get random tokens that are never stored).
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import hmac
import random
from collections.abc import Callable, Iterator

from sqlalchemy import select
from sqlalchemy.orm import Session

from qol_app.auth import token_hash
from qol_app.models import Patient, Site, SiteMembership, StaffUser
from qol_app.passwords import hash_secret
from qol_app.services.audit import Actor
from qol_app.services.enrolment import enroll_patient

ACTOR = Actor.system("demo")

SITES = (
    dict(code="S01", name="Shanghai demo hospital", timezone="Asia/Shanghai", default_language="zh_Hans",
         emergency_phone="120", contact_phone="021-5555-0101"),
    dict(code="S02", name="Urumqi demo hospital", timezone="Asia/Urumqi", default_language="zh_Hans",
         emergency_phone="120", contact_phone="0991-555-0202"),
)
STAFF = (
    dict(username="nurse.s01", full_name="Demo nurse (S01)", role="nurse", sites=("S01",), language="zh_Hans"),
    dict(username="nurse.s02", full_name="Demo nurse (S02)", role="nurse", sites=("S02",), language="en"),
    dict(username="investigator", full_name="Demo investigator", role="investigator", sites=("S01", "S02"),
         language="en"),
    dict(username="statistician", full_name="Demo statistician", role="statistician", sites=(), language="en"),
    dict(username="admin", full_name="Demo administrator", role="admin", sites=("S01", "S02"), language="en"),
)


def demo_password(username: str) -> str:
    return f"demo-{username}"


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


@dataclasses.dataclass
class DemoResult:
    created: bool
    patients: list[DemoPatient]
    staff: list[tuple[str, str, str]]


def ensure_sites_and_staff(session: Session, now: dt.datetime) -> dict[str, Site]:
    sites = {s.code: s for s in session.scalars(select(Site)).all()}
    for spec in SITES:
        if spec["code"] not in sites:
            site = Site(**spec, created_at=now)
            session.add(site)
            sites[spec["code"]] = site
    session.flush()
    existing = set(session.scalars(select(StaffUser.username)).all())
    for spec in STAFF:
        if spec["username"] in existing:
            continue
        user = StaffUser(username=spec["username"], full_name=spec["full_name"], role=spec["role"],
                         language=spec["language"], email=f"{spec['username']}@demo.invalid",
                         password_hash=hash_secret(demo_password(spec["username"])), created_at=now)
        user.memberships = [SiteMembership(site_id=sites[c].id) for c in spec["sites"]]
        session.add(user)
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
        cohort.append(dict(
            study_id=f"{site}-{number:03d}", site=site, arm="A" if (i // 2) % 2 == 0 else "B",
            randomization_date=rand_date, language="zh_Hans" if rng.random() < 0.8 else "en",
            status=status, cycle_length=rng.choice((21, 21, 21, 14, 28)), rng_seed=rng.randrange(10**9),
        ))
    return cohort


def ensure_patients(session: Session, sites: dict[str, Site], cohort: list[dict], secret: str,
                    now: dt.datetime, on_patient: Callable[[Patient, dict], None] | None = None) -> list[DemoPatient]:
    """Enroll missing cohort members (with demo links) and hand each new one to ``on_patient``."""
    existing = set(session.scalars(select(Patient.study_id)).all())
    shown = []
    for spec in cohort:
        token = demo_token(secret, spec["study_id"])
        pin = demo_pin(secret, spec["study_id"])
        if spec["study_id"] not in existing:
            enrolled = enroll_patient(
                session, ACTOR, study_id=spec["study_id"], site=sites[spec["site"]], arm=spec["arm"],
                randomization_date=spec["randomization_date"], language=spec["language"], now=now,
                consent_date=spec["randomization_date"] - dt.timedelta(days=2), pin=pin,
            )
            enrolled.patient.link_token_hash = token_hash(token)
            if on_patient is not None:
                on_patient(enrolled.patient, spec)
        shown.append(DemoPatient(spec["study_id"], token, pin, spec["arm"], spec["language"]))
    return shown
