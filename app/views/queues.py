"""Platform > Queues: the job queues at a glance, failed jobs and requeueing (issue 9).

The equivalent of rq-dashboard, inside FAB's permissions (Platform Admin only): per
queue the queued, started, failed, scheduled and finished counts; the failed jobs with
id, function, times and the last line of their exception; and a requeue for one failed
job or all of a queue's. Job arguments are never shown: a mail job's argument is the
rendered email, and other jobs' ids are of no use here. Each requeue is audited.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from flask import abort, flash, redirect, url_for
from flask_appbuilder import BaseView, expose
from flask_appbuilder.security.decorators import has_access
from rq.exceptions import DeserializationError, InvalidJobOperation, NoSuchJobError
from rq.job import Job
from rq.queue import Queue
from rq.registry import FailedJobRegistry

from app.extensions import db
from app.jobs import QUEUES, get_queue, redis_connection
from app.services import audit
from app.tenancy import current_tenant_id

FAILED_SHOWN = 100  # per queue; the count above the list gives the total


@dataclass(frozen=True)
class QueueCounts:
    name: str
    queued: int
    started: int
    failed: int
    scheduled: int
    finished: int


@dataclass(frozen=True)
class FailedJob:
    id: str
    queue: str
    function: str
    enqueued_at: datetime | None
    ended_at: datetime | None
    error: str  # the exception's last line, e.g. "ValueError: no such campaign"


def queue_counts(queue: Queue) -> QueueCounts:
    """How many jobs the queue holds in each state."""
    return QueueCounts(
        name=queue.name,
        queued=queue.count,
        started=queue.started_job_registry.count,
        failed=queue.failed_job_registry.count,
        scheduled=queue.scheduled_job_registry.count,
        finished=queue.finished_job_registry.count,
    )


def failed_jobs(queue: Queue, limit: int = FAILED_SHOWN) -> list[FailedJob]:
    """The newest failed jobs of ``queue``, without their arguments."""
    ids = queue.failed_job_registry.get_job_ids(0, limit - 1, desc=True)
    jobs = Job.fetch_many(ids, connection=queue.connection, serializer=queue.serializer)
    return [_describe(queue.name, job_id, job) for job_id, job in zip(ids, jobs, strict=True)]


def _describe(queue: str, job_id: str, job: Job | None) -> FailedJob:
    if job is None:  # the job's hash expired before the registry entry
        return FailedJob(job_id, queue, "(expired)", None, None, "")
    try:
        function = job.func_name or "(unknown)"
    except DeserializationError:
        function = "(unreadable)"
    result = job.latest_result()
    lines = [ln for ln in (result.exc_string or "").splitlines() if ln.strip()] if result else []
    return FailedJob(
        job_id, queue, function, job.enqueued_at, job.ended_at, lines[-1] if lines else ""
    )


def requeue_failed(queue: Queue, job_ids: list[str]) -> list[str]:
    """Put failed jobs back on their queue; returns the ids actually requeued."""
    registry = FailedJobRegistry(queue=queue, serializer=queue.serializer)
    done = []
    for job_id in job_ids:
        try:
            registry.requeue(job_id)
        except (InvalidJobOperation, NoSuchJobError):
            continue  # requeued meanwhile, or expired: nothing to do
        done.append(job_id)
    return done


class QueuesView(BaseView):
    """Platform Admin: queue counts, failed jobs, requeue."""

    route_base = "/queues"
    class_permission_name = "Queues"
    method_permission_name = {"index": "list", "requeue": "requeue", "requeue_all": "requeue"}
    default_view = "index"

    @expose("/")
    @has_access
    def index(self):
        _platform_only()
        if redis_connection() is None:
            return self.render_template(
                "woffice/queues.html", title="Queues", inline=True, counts=[], failed=[]
            )
        queues = [get_queue(name) for name in QUEUES]
        return self.render_template(
            "woffice/queues.html",
            title="Queues",
            inline=False,
            counts=[queue_counts(q) for q in queues],
            failed=[job for q in queues for job in failed_jobs(q)],
            shown=FAILED_SHOWN,
        )

    @expose("/<queue>/requeue/<job_id>", methods=["POST"])
    @has_access
    def requeue(self, queue: str, job_id: str):
        done = requeue_failed(_queue(queue), [job_id])
        _audit(queue, done)
        flash(f"Job {job_id} is back on {queue}." if done else "That job is no longer failed.")
        return redirect(url_for("QueuesView.index"))

    @expose("/<queue>/requeue-all", methods=["POST"])
    @has_access
    def requeue_all(self, queue: str):
        rq_queue = _queue(queue)
        done = requeue_failed(rq_queue, rq_queue.failed_job_registry.get_job_ids())
        _audit(queue, done)
        flash(f"{len(done)} failed job(s) of {queue} are back on the queue.")
        return redirect(url_for("QueuesView.index"))


def _platform_only() -> None:
    if current_tenant_id() is not None:  # never for a tenant's users, whatever the role
        abort(403)


def _queue(name: str) -> Queue:
    _platform_only()
    if name not in QUEUES:
        abort(404, description="There is no such queue.")
    if redis_connection() is None:
        abort(404, description="Jobs run inline: there are no queues.")
    return get_queue(name)


def _audit(queue: str, job_ids: list[str]) -> None:
    for job_id in job_ids:
        audit.record("queue.job_requeued", queue=queue, job_id=job_id)
    db.session.commit()
