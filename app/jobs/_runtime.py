"""The one decorator every job wears (STYLE 11).

It ensures an app context (reusing the worker's, or creating the app once per process),
enters the job's tenant scope, stamps the RQ job id on its log lines, commits once on
success, rolls back on failure and lets the exception propagate so RQ records the
failure and retries.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from flask import Flask, current_app, has_app_context
from rq import get_current_job

from app.extensions import db
from app.logging_setup import job_log_context
from app.services import audit
from app.tenancy import tenant_scope

F = TypeVar("F", bound=Callable[..., Any])
log = logging.getLogger(__name__)
_worker_app: Flask | None = None


@contextmanager
def _app_context() -> Iterator[None]:
    global _worker_app
    if has_app_context():
        yield
        return
    if _worker_app is None:
        from app import create_app  # the worker process builds the app once

        _worker_app = create_app()
    with _worker_app.app_context():
        yield


def job(func: F) -> F:
    """Wrap a job: app context, tenant scope from ``tenant_id``, one commit."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        tenant_id = kwargs.get("tenant_id")
        rq_job = get_current_job()
        token = audit.set_job_context(rq_job.id if rq_job else None, kwargs.get("actor_id"))
        try:
            with (
                job_log_context(rq_job.id if rq_job else None),
                _app_context(),
                tenant_scope(tenant_id),
            ):
                name = f"{func.__module__.rsplit('.', 1)[-1]}.{func.__name__}"
                audit.record("job.started", job=name, tenant_id=tenant_id)
                db.session.commit()
                try:
                    result = func(*args, **kwargs)
                    counts = result if isinstance(result, dict) else {}
                    audit.record("job.finished", job=name, tenant_id=tenant_id, **counts)
                    db.session.commit()
                except Exception as exc:
                    db.session.rollback()
                    current_app.logger.exception("job %s failed", func.__name__)
                    audit.record(
                        "job.failed", job=name, tenant_id=tenant_id, error=type(exc).__name__
                    )
                    db.session.commit()
                    raise
                return result
        finally:
            audit.reset_job_context(token)

    return wrapper  # type: ignore[return-value]
