"""Jobs of the compliance registers: the daily retention purge and register emails."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from app.jobs import enqueue_after_commit
from app.jobs._runtime import job
from app.jobs.mail import send_email
from app.services import retention


@job
def purge_retention() -> dict[str, int]:
    """Daily (cron): remove what is past its retention; the counts are audited."""
    return retention.purge()


def send_after_commit(emails: Iterable[dict[str, Any]]) -> int:
    """Queue each email on ``mail`` once the current transaction commits; returns how many."""
    count = 0
    for payload in emails:
        enqueue_after_commit("mail", send_email, payload)
        count += 1
    return count
