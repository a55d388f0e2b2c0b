"""Staff second factor: TOTP (RFC 6238, through pyotp) and one-time recovery codes.

Optional for staff, required for the roles the installation names (admins by default: the web
layer enforces that at sign-in). A TOTP code is accepted once: the last accepted time step is
stored and only a later step passes, with one conditional UPDATE so two workers cannot both
accept the same code. Recovery codes are random (80 bits), shown once, stored as SHA-256 hashes,
and each works once (conditional UPDATE on ``used_at``). Every change is audited.
Services flush; the caller commits.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import secrets

import pyotp
from sqlalchemy import delete, or_, update
from sqlalchemy.orm import Session

from qol_app.db import rowcount
from qol_app.errors import N_, ServiceError
from qol_app.models import RecoveryCode, StaffUser
from qol_app.services import audit
from qol_app.services.audit import Actor

RECOVERY_CODES = 10
_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"  # no 0/o, 1/l/i: read aloud or typed from paper
_CODE_GROUPS = 4
_GROUP = 4
STEP_SECONDS = 30
#: Codes from one step before or after are accepted too (phone clocks drift).
VALID_WINDOW = 1


def new_secret() -> str:
    """A fresh base32 TOTP secret (160 bits)."""
    return pyotp.random_base32(32)


def provisioning_uri(secret: str, username: str, issuer: str) -> str:
    """The otpauth:// address an authenticator app reads from the QR code."""
    return pyotp.TOTP(secret).provisioning_uri(name=username, issuer_name=issuer)


def _step(now: dt.datetime) -> int:
    return int(now.timestamp()) // STEP_SECONDS


def _matching_step(secret: str, code: str, now: dt.datetime) -> int | None:
    """The time step whose code is ``code`` (within the drift window), or None."""
    code = "".join(code.split())
    if not (code.isdigit() and len(code) == 6):
        return None
    totp = pyotp.TOTP(secret)
    here = _step(now)
    for step in range(here - VALID_WINDOW, here + VALID_WINDOW + 1):
        if secrets.compare_digest(totp.at(step * STEP_SECONDS), code):
            return step
    return None


def _hash(code: str) -> str:
    return hashlib.sha256(normalise_recovery_code(code).encode()).hexdigest()


def normalise_recovery_code(code: str) -> str:
    """Lowercase without spaces or dashes (people type them as they like)."""
    return "".join(ch for ch in code.lower() if ch.isalnum())


def _new_recovery_code() -> str:
    raw = "".join(secrets.choice(_ALPHABET) for _ in range(_CODE_GROUPS * _GROUP))
    return "-".join(raw[i : i + _GROUP] for i in range(0, len(raw), _GROUP))


def _replace_recovery_codes(session: Session, user: StaffUser, now: dt.datetime) -> list[str]:
    session.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user.id))
    codes = [_new_recovery_code() for _ in range(RECOVERY_CODES)]
    session.add_all(RecoveryCode(user_id=user.id, code_hash=_hash(c), created_at=now) for c in codes)
    session.flush()
    return codes


def enable(session: Session, actor: Actor, user: StaffUser, secret: str, code: str, *, now: dt.datetime) -> list[str]:
    """Turn TOTP on with ``secret`` once ``code`` proves the app has it; returns new recovery codes."""
    step = _matching_step(secret, code, now)
    if step is None:
        raise ServiceError(N_("That code is not right. Check the phone's clock and enter the newest code."))
    user.totp_secret = secret
    user.totp_enabled_at = now
    user.totp_last_step = step
    codes = _replace_recovery_codes(session, user, now)
    audit.record(session, actor, "staff_2fa_enable", user, new={"totp": True, "recovery_codes": len(codes)}, now=now)
    return codes


def disable(session: Session, actor: Actor, user: StaffUser, *, reason: str, now: dt.datetime) -> bool:
    """Turn TOTP off (the user's choice, or an admin's reset after a lost phone); False if it was off."""
    if user.totp_secret is None and user.totp_enabled_at is None:
        return False
    user.totp_secret = None
    user.totp_enabled_at = None
    user.totp_last_step = None
    session.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user.id))
    audit.record(
        session, actor, "staff_2fa_disable", user, old={"totp": True}, new={"totp": False}, reason=reason, now=now
    )
    return True


def new_recovery_codes(session: Session, actor: Actor, user: StaffUser, *, now: dt.datetime) -> list[str]:
    """Replace the user's recovery codes (the old ones stop working)."""
    if not user.has_totp:
        raise ServiceError(N_("Two-step sign-in is not set up."))
    codes = _replace_recovery_codes(session, user, now)
    audit.record(session, actor, "staff_recovery_codes", user, new={"recovery_codes": len(codes)}, now=now)
    return codes


@dataclasses.dataclass(frozen=True)
class Verified:
    method: str  # "totp" or "recovery"
    recovery_left: int | None = None


def verify(session: Session, user: StaffUser, code: str, *, now: dt.datetime) -> Verified | None:
    """Check a TOTP code (each accepted once) or a recovery code (each works once); None if neither."""
    if not user.has_totp:
        return None
    step = _matching_step(user.totp_secret or "", code, now)
    if step is not None:
        won = rowcount(
            session.execute(
                update(StaffUser)
                .where(
                    StaffUser.id == user.id,
                    or_(StaffUser.totp_last_step.is_(None), StaffUser.totp_last_step < step),
                )
                .values(totp_last_step=step)
                .execution_options(synchronize_session=False)
            )
        )
        if won:
            user.totp_last_step = step
            return Verified("totp")
        return None
    if len(normalise_recovery_code(code)) != _CODE_GROUPS * _GROUP:
        return None
    used = rowcount(
        session.execute(
            update(RecoveryCode)
            .where(
                RecoveryCode.user_id == user.id, RecoveryCode.code_hash == _hash(code), RecoveryCode.used_at.is_(None)
            )
            .values(used_at=now)
            .execution_options(synchronize_session=False)
        )
    )
    if not used:
        return None
    left = recovery_codes_left(session, user)
    audit.record(session, Actor("staff", str(user.id)), "staff_recovery_code_used", user, new={"left": left}, now=now)
    return Verified("recovery", left)


def recovery_codes_left(session: Session, user: StaffUser) -> int:
    from sqlalchemy import func, select

    return (
        session.scalar(select(func.count()).where(RecoveryCode.user_id == user.id, RecoveryCode.used_at.is_(None))) or 0
    )
