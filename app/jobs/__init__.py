"""RQ job functions (thin adapters over services) and the one way to enqueue them.

With ``REDIS_URL`` set, jobs go to Redis queues (JSON serializer, no pickle) and run in
`rq worker` processes. Without it (``make run``), jobs run inline in the web process,
in a fresh app context with its own database session, and the app logs that it does so.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from flask import current_app
from redis import Redis
from rq import Queue, Retry
from rq.serializers import JSONSerializer
from sqlalchemy import event

from app.extensions import db

log = logging.getLogger(__name__)

QUEUES = ("whatsapp", "billing", "privacy", "mail", "default")
COALESCE_TTL = 60  # seconds a coalesced job stays "already queued" at most


def redis_connection() -> Redis | None:
    """The shared Redis connection, or None when jobs run inline."""
    ext = current_app.extensions["woffice_jobs"]
    return ext["redis"]


def get_queue(name: str) -> Queue:
    """An RQ queue by name, with its configured timeout and the JSON serializer."""
    if name not in QUEUES:
        raise ValueError(f"unknown queue {name!r}")
    conn = redis_connection()
    if conn is None:
        raise RuntimeError("jobs run inline: there is no Redis queue")
    timeout = current_app.config["JOB_TIMEOUTS"].get(name, 600)
    return Queue(name, connection=conn, serializer=JSONSerializer, default_timeout=timeout)


def _func_path(func: Callable[..., Any]) -> str:
    return f"{func.__module__}.{func.__qualname__}"


def enqueue(
    queue: str,
    func: Callable[..., Any],
    *args: Any,
    retry: int = 3,
    at_front: bool = False,
    **kwargs: Any,
) -> str | None:
    """Enqueue ``func(*args, **kwargs)`` now; returns the job id (None when inline).

    Use for jobs that need nothing from the current transaction (e.g. a rendered email);
    use `enqueue_after_commit` when the job reads rows this transaction writes.
    ``at_front`` puts the job ahead of those already queued.
    """
    conn = redis_connection()
    if conn is None:
        app = current_app._get_current_object()
        with app.app_context():  # a fresh context: its own session and commit
            func(*args, **kwargs)
        return None
    job = get_queue(queue).enqueue(
        _func_path(func),
        *args,
        retry=Retry(max=retry, interval=[10, 60, 300]),
        at_front=at_front,
        **kwargs,
    )
    return job.id


def enqueue_after_commit(
    queue: str,
    func: Callable[..., Any],
    *args: Any,
    coalesce: str | None = None,
    **kwargs: Any,
) -> None:
    """Enqueue once the current transaction commits; drop it if it rolls back.

    With ``coalesce``, the job is enqueued through `enqueue_coalesced` under that key.
    """
    session = db.session()
    pending = session.info.setdefault("woffice_pending_jobs", [])
    pending.append((queue, func, args, kwargs, coalesce))


def enqueue_coalesced(
    queue: str, key: str, func: Callable[..., Any], *args: Any, **kwargs: Any
) -> str | None:
    """Enqueue unless a job under ``key`` is already queued and has not started yet.

    For jobs that drain a table (they take whatever work is committed when they run): a
    burst of requests then costs one job, not one per request. The job calls
    `release_coalesced(key)` before it reads its work, so anything committed after that
    enqueues the next run. The key expires after ``COALESCE_TTL`` seconds, so a lost job
    (worker killed, Redis flushed) only delays the work until the next request.
    """
    conn = redis_connection()
    if conn is not None and not conn.set(_coalesce_key(key), "1", nx=True, ex=COALESCE_TTL):
        return None
    return enqueue(queue, func, *args, **kwargs)


def release_coalesced(key: str) -> None:
    """Called by a coalesced job as it starts: the next request enqueues a new run."""
    conn = redis_connection()
    if conn is not None:
        conn.delete(_coalesce_key(key))


def _coalesce_key(key: str) -> str:
    return f"woffice:coalesce:{key}"


def _after_commit(session: Any) -> None:
    pending = session.info.pop("woffice_pending_jobs", [])
    for queue, func, args, kwargs, coalesce in pending:
        if coalesce:
            enqueue_coalesced(queue, coalesce, func, *args, **kwargs)
        else:
            enqueue(queue, func, *args, **kwargs)


def _after_rollback(session: Any, previous_transaction: Any) -> None:
    if previous_transaction.parent is None:  # the whole unit of work is gone
        session.info.pop("woffice_pending_jobs", None)


def init_app(app: Any) -> None:
    """Bind the Redis connection (or inline mode) and the after-commit hooks."""
    url = app.config.get("REDIS_URL")
    conn = Redis.from_url(url) if url else None
    app.extensions["woffice_jobs"] = {"redis": conn}
    if conn is None:
        app.logger.warning("REDIS_URL is not set: background jobs run inline in the web process")
    session_class = db.session.session_factory.class_
    if not event.contains(session_class, "after_commit", _after_commit):
        event.listen(session_class, "after_commit", _after_commit)
        event.listen(session_class, "after_soft_rollback", _after_rollback)
