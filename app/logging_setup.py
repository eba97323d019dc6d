"""Logging: one JSON object per line in production, today's text lines elsewhere.

Why JSON: several web nodes, workers and a cron process write to one log store, and a
line must be found by request, user, tenant or job without parsing free text. Each line
carries ``time, level, logger, message, request_id, user_id, tenant_id, job_id`` (and
``exc`` with the traceback when there is one).

Why these fields and no others: logs leave the database's access controls and outlive
erasure requests, so they hold ids, never emails, phones, names or message bodies. The
formatter writes a fixed set of fields, so whatever a library puts in ``extra`` (RQ puts
a failed job's arguments there) never reaches the line, and RQ's job descriptions
(``func(args...)``, where a mail job's arguments are the email) are cut to the function
name before any handler sees them.

``LOG_FORMAT`` (environment, or the app config) chooses ``json`` or ``text``; the default
is ``json`` in production and ``text`` in development and tests.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import IO, Any

from flask import Flask, g, has_request_context, request

from app.tenancy import current_tenant_id

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"
CONTEXT_FIELDS = ("request_id", "user_id", "tenant_id", "job_id")
REQUEST_ID_HEADER = "X-Request-ID"
_SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{8,64}")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_CALL = re.compile(r"([A-Za-z_][\w.]*)\(.*\)", re.DOTALL)
_job_id: ContextVar[str | None] = ContextVar("woffice_log_job_id", default=None)
access_log = logging.getLogger("woffice.access")


# ------------------------------------------------------------------------ the context


@contextmanager
def job_log_context(job_id: str | None) -> Iterator[None]:
    """Stamp ``job_id`` on every line logged inside the block (the job decorator)."""
    token = _job_id.set(job_id)
    try:
        yield
    finally:
        _job_id.reset(token)


def request_id() -> str | None:
    """This request's id: X-Request-ID when it is a plain token of 8-64 chars, else new.

    A client-chosen id is echoed into every log line, so only letters, digits and
    ``._:-`` pass: no spaces or newlines that could forge a second line.
    """
    if not has_request_context():
        return None
    if "request_id" not in g:
        incoming = request.headers.get(REQUEST_ID_HEADER, "")
        g.request_id = incoming if _SANE_REQUEST_ID.fullmatch(incoming) else uuid.uuid4().hex
    return g.request_id


def _user_id() -> int | None:
    # Only a user Flask-Login has already loaded: loading one here would query the
    # database from inside a log call (and log again).
    if not has_request_context():
        return None
    user = g.get("_login_user")
    return getattr(user, "id", None) if getattr(user, "is_authenticated", False) else None


class ContextFilter(logging.Filter):
    """Adds request_id, user_id, tenant_id and job_id to every record a handler emits."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id()
        record.user_id = _user_id()
        record.tenant_id = current_tenant_id()
        record.job_id = _job_id.get()
        return True


class RqDescriptionFilter(logging.Filter):
    """Cuts RQ's job descriptions ``module.func(arg, ...)`` to ``module.func(...)``.

    RQ's worker logs each job's description, which repeats its arguments; ours are ids,
    except a mail job's, which is the rendered email (address and body).
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(_redact_call(arg) for arg in record.args)
        return True


def _redact_call(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    match = _CALL.fullmatch(_ANSI.sub("", value))
    return f"{match.group(1)}(...)" if match else value


class JsonFormatter(logging.Formatter):
    """One JSON object per line, with a fixed set of fields."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": _ANSI.sub("", record.getMessage()),
        }
        for name in CONTEXT_FIELDS:
            line[name] = getattr(record, name, None)
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        elif record.stack_info:
            line["exc"] = self.formatStack(record.stack_info)
        return json.dumps(line, ensure_ascii=False, default=str)


# ------------------------------------------------------------------------- the set-up


def log_format(app: Flask) -> str:
    """``json`` or ``text``: LOG_FORMAT from the environment or config, else by env."""
    chosen = os.environ.get("LOG_FORMAT") or app.config.get("LOG_FORMAT")
    if not chosen:
        chosen = "json" if app.config.get("ENV_NAME") == "production" else "text"
    chosen = chosen.strip().lower()
    if chosen not in {"json", "text"}:
        raise ValueError(f"LOG_FORMAT must be json or text, not {chosen!r}")
    return chosen


def configure_logging(app: Flask, fmt: str | None = None, stream: IO[str] | None = None):
    """Set up the root logger for ``fmt`` (default `log_format`); returns the JSON handler.

    Text keeps the historical ``basicConfig`` line. JSON replaces only a handler this
    function installed before (one per process, however many apps are built), so the
    handlers of a host (pytest's capture, gunicorn's own loggers) stay as they are.
    """
    fmt = fmt or log_format(app)
    logging.getLogger("rq.worker").addFilter(_RQ_FILTER)
    app.extensions["woffice_logging"] = {"format": fmt}
    if fmt == "text":
        logging.basicConfig(level=logging.INFO, format=TEXT_FORMAT)
        return None
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, "_woffice_json", False)]:
        root.removeHandler(old)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler._woffice_json = True  # type: ignore[attr-defined]
    handler.setFormatter(JsonFormatter())
    handler.addFilter(ContextFilter())
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    return handler


_RQ_FILTER = RqDescriptionFilter()


def install_request_ids(app: Flask) -> None:
    """Give each request an id (echoed in X-Request-ID) and, in JSON mode, one access line.

    The access line names the route (``/contacts/show/<pk>``), not the URL: a path or a
    query string can hold a search for a phone number, or a download token.
    """

    @app.before_request
    def _start_request() -> None:
        request_id()
        g._log_started = time.perf_counter()

    @app.after_request
    def _finish_request(response):
        response.headers[REQUEST_ID_HEADER] = request_id()
        if app.extensions.get("woffice_logging", {}).get("format") == "json":
            rule = request.url_rule.rule if request.url_rule else "(no route)"
            took = (time.perf_counter() - g.get("_log_started", time.perf_counter())) * 1000
            access_log.info("%s %s %s %.1fms", request.method, rule, response.status_code, took)
        return response
