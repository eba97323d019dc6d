"""The one decorator every job wears (STYLE 11).

It ensures an app context (reusing the worker's, or creating the app once per process),
enters the job's tenant scope, commits once on success, rolls back on failure and lets
the exception propagate so RQ records the failure and retries.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from flask import Flask, current_app, has_app_context

from app.extensions import db
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
        with _app_context(), tenant_scope(tenant_id):
            try:
                result = func(*args, **kwargs)
                db.session.commit()
            except Exception:
                db.session.rollback()
                current_app.logger.exception("job %s failed", func.__name__)
                raise
            return result

    return wrapper  # type: ignore[return-value]
