"""Logging for operations: a JSON line format carrying request ids, and one access line per request.

``LOG_FORMAT = "json"`` sends every record of the ``qol_app`` loggers (the app, the scheduler,
notifications, the access lines) to standard error as one JSON object per line, with the
request id of the request that wrote it. nginx passes its ``$request_id`` as ``X-Request-ID``, so
an nginx log line, the app's lines and the audit rows of one request share one id.

The access line names the URL rule (``/p/l/<token>``), never the path: a personal link is a
credential and must not end up in log files.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import sys
import time
from typing import Any

from flask import Flask, g, has_request_context, request

#: The loggers this module formats: ``qol_app`` and every child (``qol_app.scheduler`` ...).
ROOT_LOGGER = "qol_app"
ACCESS_LOGGER = "qol_app.access"
#: Extra attributes copied into the JSON object when a record carries them.
FIELDS = ("request_id", "method", "rule", "endpoint", "status", "duration_ms", "remote_addr")


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time (UTC, ISO 8601), level, logger, message, request fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in FIELDS:
            value = getattr(record, name, None)
            if value is not None and value != "":
                entry[name] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


class RequestContextFilter(logging.Filter):
    """Give records written during a request that request's id and client address."""

    def filter(self, record: logging.LogRecord) -> bool:
        if has_request_context():
            if getattr(record, "request_id", None) is None:
                record.request_id = g.get("request_id")
            if getattr(record, "remote_addr", None) is None:
                record.remote_addr = request.remote_addr
        return True


def _handler() -> logging.Handler:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RequestContextFilter())
    handler.qol_json = True  # type: ignore[attr-defined]
    return handler


def configure(log_format: str, level: str = "INFO") -> None:
    """Set up the ``qol_app`` loggers for ``log_format`` ("text" leaves logging as it is).

    Idempotent: every gunicorn worker builds the app once, and tests build many apps.
    """
    if log_format == "text":
        return
    if log_format != "json":
        raise RuntimeError(f"LOG_FORMAT={log_format!r} is unknown; use 'text' or 'json'")
    logger = logging.getLogger(ROOT_LOGGER)
    logger.setLevel(level.upper())
    if not any(getattr(h, "qol_json", False) for h in logger.handlers):
        for old in list(logger.handlers):  # Flask's default handler, if the app logger was touched
            logger.removeHandler(old)
        logger.addHandler(_handler())
    logger.propagate = False


def _started() -> None:
    g.started_at = time.perf_counter()


def _access(response: Any) -> Any:
    started = g.get("started_at")
    rule = request.url_rule.rule if request.url_rule is not None else None
    logging.getLogger(ACCESS_LOGGER).info(
        "%s %s %s",
        request.method,
        rule or "<no route>",
        response.status_code,
        extra={
            "method": request.method,
            "rule": rule,
            "endpoint": request.endpoint,
            "status": response.status_code,
            "duration_ms": round(1000 * (time.perf_counter() - started), 2) if started else None,
        },
    )
    return response


def init_app(app: Flask) -> None:
    """Configure logging from ``LOG_FORMAT``/``LOG_LEVEL``; with JSON, log one line per request."""
    log_format = str(app.config.get("LOG_FORMAT") or "text").lower()
    configure(log_format, str(app.config.get("LOG_LEVEL") or "INFO"))
    if log_format == "json":
        # Hooks run in registration order: call this after ``security.init_app``, whose hook
        # clears ``g`` and sets the request id.
        app.before_request(_started)
        app.after_request(_access)
