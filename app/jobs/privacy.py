"""Privacy jobs (queue ``privacy``): the daily digest of due and overdue requests.

`send_privacy_digest` may be enqueued by every cron sweep: it sends nothing before
09:00 IST (support hours, P25) and nothing a second time the same IST day.
"""

from __future__ import annotations

from datetime import UTC

from app.jobs import enqueue_after_commit, redis_connection
from app.jobs._runtime import job
from app.jobs.mail import send_email
from app.models.mixins import utcnow
from app.services import business_days, privacy_digest

DIGEST_HOUR_IST = 9  # support hours start (P25): the digest goes out from then on
LOCK_KEY = "woffice:privacy-digest:lock"
LOCK_SECONDS = 600  # two overlapping runs: the second finds the lock and stops


@job
def send_privacy_digest(not_before_hour: int = DIGEST_HOUR_IST) -> dict[str, int]:
    """Email each assignee their due-soon and overdue requests; escalate overdue ones to
    every Compliance user. Once per IST day, from ``not_before_hour`` IST."""
    now = utcnow()
    if now.replace(tzinfo=UTC).astimezone(business_days.IST).hour < not_before_hour:
        return {"emails": 0, "too_early": 1}
    conn = redis_connection()
    if conn is not None and not conn.set(LOCK_KEY, "1", nx=True, ex=LOCK_SECONDS):
        return {"emails": 0, "busy": 1}
    try:
        emails = privacy_digest.build_digest(now)
    except Exception:
        if conn is not None:
            conn.delete(LOCK_KEY)  # let RQ's retry run at once
        raise
    for payload in emails:  # enqueued only if the "sent today" record commits
        enqueue_after_commit("mail", send_email, payload)
    return {"emails": len(emails)}
