"""Configuration: defaults here, then ``instance/config.py``, then ``QOL_*`` environment variables.

Later sources win, so a deployment can keep secrets in the environment while a site keeps
its stable settings in the instance folder.
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from typing import Any

DEFAULTS: dict[str, Any] = {
    # Database: SQLite in the instance folder unless QOL_DATABASE_URL says otherwise.
    "DATABASE_URL": None,
    "SECRET_KEY": None,
    # Keys the audit trail's hashes (HMAC); never stored in the database. Default: a random key
    # kept in instance/audit_key. Losing it makes the existing trail unverifiable: back it up.
    "AUDIT_KEY": None,
    "DEBUG": False,
    "TESTING": False,
    # "production" refuses `qol demo` and demo accounts and makes `qol check` refuse unsafe settings.
    "ENV": "development",
    # Reverse proxies in front of the app whose X-Forwarded-For/-Proto/-Host are trusted (0: none).
    # nginx alone in front: 1. Throttling, logs and audit then see the real client address.
    "TRUSTED_PROXIES": 0,
    # Logs: "text" (human) or "json" (one object per line, with request ids and an access line).
    "LOG_FORMAT": "text",
    "LOG_LEVEL": "INFO",
    # Languages offered; the first is the default for staff pages.
    "LANGUAGES": ["en", "zh_Hans"],
    "BABEL_DEFAULT_LOCALE": "en",
    "BABEL_DEFAULT_TIMEZONE": "UTC",
    # Sessions and access.
    "PATIENT_IDLE_MINUTES": 30,
    "STAFF_IDLE_MINUTES": 30,
    "PIN_MAX_FAILURES": 5,
    "PIN_LOCK_MINUTES": 15,
    # A patient who signed in with a PIN may sign in again on the same device with the PIN alone.
    "PATIENT_DEVICE_DAYS": 30,
    # A session ends this long after sign-in, however active (idle limits above).
    "STAFF_SESSION_MAX_HOURS": 12,
    "PATIENT_SESSION_MAX_HOURS": 12,
    # Staff sign-in throttling (per account and per client address, shared by all workers).
    "STAFF_MAX_FAILURES": 5,
    "STAFF_ADDRESS_MAX_FAILURES": 20,
    "STAFF_FAILURE_WINDOW_MINUTES": 15,
    "STAFF_LOCK_MINUTES": 15,
    # Roles that must use a second factor (TOTP); others may choose to.
    "STAFF_TOTP_REQUIRED_ROLES": ["admin"],
    "TOTP_ISSUER": "CONQUER QoL",
    "SESSION_COOKIE_SECURE": True,
    "SESSION_COOKIE_HTTPONLY": True,
    "SESSION_COOKIE_SAMESITE": "Lax",
    "SESSION_COOKIE_NAME": "qol_session",
    "WTF_CSRF_TIME_LIMIT": 3600,
    # Flask-WTF's extra Referer check on HTTPS would refuse every form: our pages send no Referer
    # (Referrer-Policy: no-referrer keeps personal links out of other sites' logs). The CSRF token
    # and the SameSite=Lax session cookie are the protection; HSTS covers the sub-domain attack
    # the Referer check is meant for.
    "WTF_CSRF_SSL_STRICT": False,
    # Where the personal links point; used by `qol demo`, QR cards and reminders.
    "PUBLIC_BASE_URL": "http://127.0.0.1:5000",
    # Questionnaires, schedules and alert rules (data directories).
    "QUESTIONNAIRE_DIR": None,
    "SCHEDULE_FILE": None,
    # Reminders: SMTP and SMS.
    "MAIL_BACKEND": "outbox",  # "outbox" (log only) or "smtp"
    "SMTP_HOST": "127.0.0.1",
    "SMTP_PORT": 25,
    "SMTP_USER": None,
    "SMTP_PASSWORD": None,
    "SMTP_STARTTLS": False,
    "MAIL_SENDER": "qol@localhost",
    "SMS_BACKEND": "outbox",  # "outbox" (log only), "alibaba", "tencent", "webhook" or module:Class
    # Pre-approved SMS templates (see qol_app/notify/sms.py and the README): the signature name,
    # {"reminder": {"zh_Hans": id, "en": id}, "alert": {...}}, optional parameter order.
    "SMS_SIGN_NAME": "",
    "SMS_TEMPLATES": {},
    "SMS_TEMPLATE_PARAMS": {},
    "SMS_DEFAULT_COUNTRY_CODE": "86",
    "SMS_TIMEOUT": 10,
    "ALIBABA_SMS_ACCESS_KEY_ID": "",
    "ALIBABA_SMS_ACCESS_KEY_SECRET": "",
    "ALIBABA_SMS_ENDPOINT": "https://dysmsapi.aliyuncs.com/",
    "ALIBABA_SMS_REGION": "cn-hangzhou",
    "TENCENT_SMS_SECRET_ID": "",
    "TENCENT_SMS_SECRET_KEY": "",
    "TENCENT_SMS_SDK_APP_ID": "",
    "TENCENT_SMS_REGION": "ap-guangzhou",
    "TENCENT_SMS_ENDPOINT": "sms.tencentcloudapi.com",
    "TENCENT_SMS_SCHEME": "https",
    "SMS_WEBHOOK_URL": "",
    "SMS_WEBHOOK_SECRET": "",
    "QUIET_HOURS_START": "21:00",
    "QUIET_HOURS_END": "08:00",
    # Compliance: when a form counts as received (qol_app.scheduling.forms.RECEIVED_RULES):
    # "any_answer" = at least one item answered, sent or only saved; "submitted_answer" = sent.
    "COMPLIANCE_RECEIVED_RULE": "any_answer",
    # Exports: ISO calendar dates only when an admin enables them.
    "EXPORT_ISO_DATES": False,
    # Background exports: where the scheduler process leaves the zips (default instance/exports;
    # shared storage if web workers and scheduler run on different hosts), and how often it looks.
    "EXPORT_DIR": None,
    "EXPORT_POLL_SECONDS": 5,
    "EQ5D_VALUE_SET": "CN_2017",
    "SCHEDULER_STALE_MINUTES": 30,
    "SCHEDULER_INTERVAL_SECONDS": 60,
    "SCHEDULER_LEASE_SECONDS": 300,  # SQLite: the scheduler's lease; a crashed one is replaced after this
    "REMINDER_CHANNELS": ["sms", "email"],  # first channel with contact details wins
    "DIARY_REMINDER_TIME": "09:00",
    "SMTP_TIMEOUT": 30,
}


def _coerce(raw: str, default: Any) -> Any:
    """Environment values are strings; read them as the type of the default they override."""
    if isinstance(default, bool):
        return raw.strip().lower() in {"1", "true", "yes", "on"}
    if isinstance(default, int):
        return int(raw)
    if isinstance(default, list):
        return json.loads(raw) if raw.strip().startswith("[") else [p.strip() for p in raw.split(",")]
    return raw


def load_config(app, test_config: dict[str, Any] | None = None) -> None:
    """Fill ``app.config`` from defaults, the instance file, the environment and ``test_config``."""
    app.config.from_mapping(DEFAULTS)
    instance_file = Path(app.instance_path) / "config.py"
    if instance_file.is_file():
        app.config.from_pyfile(str(instance_file))
    for key, value in os.environ.items():
        if key.startswith("QOL_"):
            name = key[4:]
            app.config[name] = _coerce(value, app.config.get(name))
    if test_config:
        app.config.update(test_config)
    if not app.config["DATABASE_URL"]:
        app.config["DATABASE_URL"] = f"sqlite:///{Path(app.instance_path) / 'qol.sqlite'}"
    if not app.config["EXPORT_DIR"]:
        app.config["EXPORT_DIR"] = str(Path(app.instance_path) / "exports")
    if not app.config["SECRET_KEY"]:
        # Per machine: fine for one node, wrong for two (each would sign its own cookies).
        app.config["SECRET_KEY"] = _instance_secret(Path(app.instance_path), "secret_key")
        app.config["SECRET_KEY_SOURCE"] = "instance"
    else:
        app.config["SECRET_KEY_SOURCE"] = "configured"
    if not app.config["AUDIT_KEY"]:
        app.config["AUDIT_KEY"] = _instance_secret(Path(app.instance_path), "audit_key")
    explicit_secure = "SESSION_COOKIE_SECURE" in (test_config or {}) or "QOL_SESSION_COOKIE_SECURE" in os.environ
    if (app.config["DEBUG"] or app.config["TESTING"]) and not explicit_secure:
        # Plain-HTTP development servers and test clients cannot send Secure cookies back.
        app.config["SESSION_COOKIE_SECURE"] = False


def _instance_secret(instance: Path, name: str) -> str:
    """A per-installation secret kept in the instance folder, so it survives restarts.

    Reading a file is I/O, but only a tiny one and only when no key is configured; deployments
    set ``QOL_SECRET_KEY`` and ``QOL_AUDIT_KEY``.
    """
    path = instance / name
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        instance.mkdir(parents=True, exist_ok=True)
    key = secrets.token_hex(32)
    try:
        # O_EXCL: workers starting at once agree on one key (the first to create the file wins).
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return _read_when_written(path)
    with os.fdopen(fd, "w") as handle:
        handle.write(key)
    return key


def _read_when_written(path: Path) -> str:
    """The key another process has just created (it may not have written it yet)."""
    import time

    for _ in range(100):
        value = path.read_text().strip()
        if value:
            return value
        time.sleep(0.01)
    raise RuntimeError(f"{path} exists but is empty; delete it or set the key in the environment")


def is_production(config: Any) -> bool:
    """``QOL_ENV=production``: no demo data or demo accounts, and unsafe settings are errors (``qol check``)."""
    return str(config.get("ENV") or "").strip().lower() == "production"
