"""Deletion jobs (queue ``privacy``; P18): run an approved deletion, resume lost ones.

* `schedule_deletion(request_id)`: call after the approval; the run is enqueued once
  the approving transaction commits.
* `run_deletion(request_id)`: commits after every batch (`deletion.run` is handed the
  session's commit), so other tenants are never held up by one long transaction and a
  killed worker loses one batch at most. It works for half the queue's timeout, then
  enqueues its own continuation. Safe to run twice: a completed request is skipped, and
  two runs of one request take turns on its row lock.
* `resume_deletions()` (cron sweeper): re-enqueues approved deletions whose progress
  has not moved for ``STALE_AFTER`` (worker killed, Redis flushed).
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import select

from app.extensions import db
from app.jobs import enqueue, enqueue_after_commit, enqueue_coalesced, release_coalesced
from app.jobs._runtime import job
from app.models.mixins import utcnow
from app.models.privacy import PrivacyRequest, RequestType
from app.services import deletion

STALE_AFTER = timedelta(minutes=10)
SWEEP_KEY = "resume-deletions"  # the coalescing key app.jobs.schedule enqueues it under


def run_key(request_id: int) -> str:
    """The coalescing key of a request's deletion runs."""
    return f"deletion-run:{request_id}"


def schedule_deletion(request_id: int) -> None:
    """Have `run_deletion` run once this transaction (the approval) commits."""
    enqueue_after_commit("privacy", run_deletion, request_id, coalesce=run_key(request_id))


@job
def run_deletion(
    request_id: int, batch_size: int | None = None, stop_after: int | None = None
) -> dict[str, int]:
    """Delete the subject of an approved request, batch by batch (resumable)."""
    release_coalesced(run_key(request_id))
    cfg = current_app.config
    budget = cfg["JOB_TIMEOUTS"].get("privacy", 1800) / 2
    result = deletion.run(
        request_id,
        batch_size or int(cfg.get("DELETION_BATCH_SIZE", deletion.DEFAULT_BATCH_SIZE)),
        stop_after,
        after_batch=db.session.commit,
        deadline=time.monotonic() + budget,
        pause=float(cfg.get("DELETION_BATCH_PAUSE_S", 0.0)),
    )
    if not result["done"] and stop_after is None:
        enqueue("privacy", run_deletion, request_id)  # out of time: continue in a new job
    return {k: int(v) for k, v in result.items()}


@job
def resume_deletions() -> dict[str, int]:
    """Re-enqueue approved deletions that are not finished and not moving."""
    release_coalesced(SWEEP_KEY)
    now = utcnow()
    rows = db.session.execute(
        select(PrivacyRequest.id, PrivacyRequest.approved_at, PrivacyRequest.deletion_progress)
        .where(
            PrivacyRequest.request_type == RequestType.deletion,
            PrivacyRequest.approved_by_id.is_not(None),
            PrivacyRequest.status.in_(deletion.RUNNABLE),
        )
        .order_by(PrivacyRequest.id)
    ).all()
    resumed = 0
    for request_id, approved_at, progress in rows:
        moved = (progress or {}).get("updated_at")
        last = datetime.fromisoformat(moved) if moved else approved_at
        if last is None or now - last >= STALE_AFTER:
            enqueue_coalesced("privacy", run_key(request_id), run_deletion, request_id)
            resumed += 1
    return {"resumed": resumed}
