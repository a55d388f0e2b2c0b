"""``qol check``: is this configuration safe to run a trial on?

Pure over the configuration mapping: each check returns findings. In production
(``ENV = "production"``, i.e. ``QOL_ENV=production``) every unsafe setting is an error; elsewhere
it is a warning, so a development install can still see what production would refuse.
"""

from __future__ import annotations

import dataclasses
import urllib.parse
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from qol_app.config import is_production
from qol_app.scheduling.forms import COMPLIANCE_RECEIVED_RULE, RECEIVED_RULES

#: Secret keys seen in examples, templates, tests and benchmarks: never a real key.
KNOWN_SECRETS = frozenset(
    {
        "",
        "dev",
        "development",
        "secret",
        "secret-key",
        "changeme",
        "change-me",
        "change_me",
        "test",
        "test-secret",
        "bench",
        "please-change-me",
        "replace-with-the-output-of-openssl-rand-hex-32",
    }
)
MIN_SECRET_LENGTH = 32
#: Backend names that deliver nothing, whatever other backends exist (a backend class may also
#: say so itself with ``LOG_ONLY = True``).
LOG_ONLY_NAMES = frozenset({"outbox", "log", "logonly", "log-only", "log_only", "console", "null", "none", "dummy"})


@dataclasses.dataclass(frozen=True)
class Finding:
    """``level`` is "error", "warning" or "ok"; ``setting`` the setting's name without ``QOL_``."""

    level: str
    setting: str
    message: str


def check_config(
    config: Mapping[str, Any],
    *,
    production: bool | None = None,
    backends: Mapping[str, Mapping[str, Callable[..., Any]]] | None = None,
) -> list[Finding]:
    """Every finding for ``config``; ``production`` defaults to :func:`is_production`.

    ``backends`` maps ``MAIL_BACKEND``/``SMS_BACKEND`` to their registries (name -> factory);
    by default the registries of :mod:`qol_app.notify.channels`.
    """
    production = is_production(config) if production is None else production
    if backends is None:
        import qol_app.notify.sms  # noqa: F401 - registers the shipped gateways (alibaba, tencent, webhook)
        from qol_app.notify.channels import MAIL_BACKENDS, SMS_GATEWAYS

        backends = {"MAIL_BACKEND": MAIL_BACKENDS, "SMS_BACKEND": SMS_GATEWAYS}
    unsafe = "error" if production else "warning"
    findings: list[Finding] = []
    for check in (_secret_key, _cookies, _base_url, _debug):
        findings.extend(check(config, unsafe))
    for setting, registry in backends.items():
        findings.extend(_backend(config, setting, registry, unsafe))
    findings.extend(_deployment(config, production))
    return findings


def _secret_key(config: Mapping[str, Any], unsafe: str) -> Iterator[Finding]:
    key = str(config.get("SECRET_KEY") or "")
    if config.get("SECRET_KEY_SOURCE") == "instance" or not key:
        yield Finding(
            unsafe,
            "SECRET_KEY",
            "not set: a key generated on this machine is used, so every node signs its own cookies; "
            "set QOL_SECRET_KEY (e.g. from `openssl rand -hex 32`) on every node",
        )
    elif key.strip().lower() in KNOWN_SECRETS:
        yield Finding(unsafe, "SECRET_KEY", "is a well-known example value; set a random one (openssl rand -hex 32)")
    elif len(key) < MIN_SECRET_LENGTH:
        yield Finding(unsafe, "SECRET_KEY", f"is only {len(key)} characters; use at least {MIN_SECRET_LENGTH}")
    else:
        yield Finding("ok", "SECRET_KEY", "set")


def _cookies(config: Mapping[str, Any], unsafe: str) -> Iterator[Finding]:
    if not config.get("SESSION_COOKIE_SECURE"):
        yield Finding(unsafe, "SESSION_COOKIE_SECURE", "is off: session cookies would travel over plain HTTP")
    else:
        yield Finding("ok", "SESSION_COOKIE_SECURE", "on")
    if not config.get("SESSION_COOKIE_HTTPONLY"):
        yield Finding(unsafe, "SESSION_COOKIE_HTTPONLY", "is off: scripts could read the session cookie")


def _base_url(config: Mapping[str, Any], unsafe: str) -> Iterator[Finding]:
    url = str(config.get("PUBLIC_BASE_URL") or "")
    parts = urllib.parse.urlsplit(url)
    if parts.scheme != "https" or not parts.hostname:
        yield Finding(
            unsafe,
            "PUBLIC_BASE_URL",
            f"{url or '(empty)'} is not an https:// address: patients' links would be plain HTTP",
        )
    else:
        yield Finding("ok", "PUBLIC_BASE_URL", url)


def _debug(config: Mapping[str, Any], unsafe: str) -> Iterator[Finding]:
    for name in ("DEBUG", "TESTING"):
        if config.get(name):
            yield Finding(unsafe, name, "is on: never in production (debug pages show internals)")


def _backend(
    config: Mapping[str, Any], setting: str, registry: Mapping[str, Callable[..., Any]], unsafe: str
) -> Iterator[Finding]:
    name = str(config.get(setting) or "outbox")
    factory = registry.get(name)
    if factory is None and ":" in name:
        import importlib

        module, _, attr = name.partition(":")
        try:
            factory = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as exc:
            yield Finding("error", setting, f"{name!r} cannot be imported: {type(exc).__name__}: {exc}")
            return
    if factory is None:
        yield Finding(
            "error", setting, f"{name!r} is unknown (known: {', '.join(sorted(registry))}, or module:attribute)"
        )
    elif name.lower() in LOG_ONLY_NAMES or getattr(factory, "LOG_ONLY", False):
        yield Finding(unsafe, setting, f"{name!r} only logs messages: no reminder or alert would reach anyone")
    else:
        yield Finding("ok", setting, name)


def _deployment(config: Mapping[str, Any], production: bool) -> Iterator[Finding]:
    url = str(config.get("DATABASE_URL") or "")
    if production and url.startswith("sqlite"):
        yield Finding(
            "warning",
            "DATABASE_URL",
            "SQLite serves one node only; run two web nodes on PostgreSQL (postgresql+psycopg://...)",
        )
    if production and not int(config.get("TRUSTED_PROXIES") or 0):
        yield Finding(
            "warning",
            "TRUSTED_PROXIES",
            "is 0: behind nginx set 1, or logs and throttling see the proxy's address instead of the client's",
        )
    for name in ("SCHEDULE_FILE", "ALERT_RULES_FILE", "QUESTIONNAIRE_DIR"):
        value = config.get(name)
        if value and not Path(value).exists():
            yield Finding("error", name, f"{value} does not exist")
    rule = config.get("COMPLIANCE_RECEIVED_RULE") or COMPLIANCE_RECEIVED_RULE
    if rule not in RECEIVED_RULES:
        yield Finding("error", "COMPLIANCE_RECEIVED_RULE", f"{rule} is not one of {', '.join(RECEIVED_RULES)}")


def schedule_finding(configured: str, in_force: str | None, unsafe: str) -> Finding:
    """``SCHEDULE_FILE`` against the version the database was planned with (``in_force``; None for
    an empty database): a different version changed without ``qol schedule apply``, and nothing is
    re-planned until the two agree."""
    if in_force is None or in_force == configured:
        return Finding("ok", "SCHEDULE_FILE", f"{configured}, the version in force")
    return Finding(
        unsafe,
        "SCHEDULE_FILE",
        f"is {configured}, but the database was planned with {in_force}: nothing is re-planned until "
        f"`qol schedule apply <file> --effective DATE` makes {configured} the version in force "
        f"(or SCHEDULE_FILE names the {in_force} file again)",
    )


def data_files(load: Mapping[str, Callable[[], Any]]) -> list[Finding]:
    """Load each data set (instruments, schedule, alert rules); a failure is an error naming it."""
    findings = []
    for name, loader in load.items():
        try:
            loader()
        except Exception as exc:  # noqa: BLE001 - any failure to load is what we report
            findings.append(Finding("error", name, f"does not load: {exc}"))
        else:
            findings.append(Finding("ok", name, "loads"))
    return findings
