"""Mail jobs (queue ``mail``)."""

from __future__ import annotations

from typing import Any

from app.jobs._runtime import job
from app.services import mail


@job
def send_email(payload: dict[str, Any]) -> dict[str, int]:
    """Deliver one rendered email; safe to retry (SMTP is the only effect)."""
    mail.deliver(payload)
    return {"messages": 1}
