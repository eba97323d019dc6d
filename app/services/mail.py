"""Build and deliver email through Flask-Mailman.

Delivery is always a job on the ``mail`` queue (`app.jobs.mail.send_email`); this module
only turns a JSON-safe message dict into a sent email. The demo's ``file`` backend
writes one ``.eml`` file per message under ``instance/mail/``.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from flask import current_app
from flask_mailman import EmailMultiAlternatives
from flask_mailman.backends.base import BaseEmailBackend


class EmlFileBackend(BaseEmailBackend):
    """Write each message to its own ``.eml`` file (readable by any mail client)."""

    def send_messages(self, email_messages: list[Any]) -> int:
        folder = Path(current_app.config["MAIL_FILE_PATH"])
        folder.mkdir(parents=True, exist_ok=True)
        for message in email_messages:
            stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
            path = folder / f"{stamp}-{uuid.uuid4().hex[:8]}.eml"
            path.write_bytes(message.message().as_bytes())
        return len(email_messages)


def message_payload(
    *, to: str, subject: str, body: str | None, html: str | None = None, sender: str | None = None
) -> dict[str, Any]:
    """A JSON-safe description of one email, to hand to the mail job."""
    return {
        "to": to,
        "subject": str(subject),
        "body": body or "",
        "html": html,
        "sender": str(sender or current_app.config["MAIL_DEFAULT_SENDER"]),
    }


def deliver(payload: dict[str, Any]) -> None:
    """Send one message now through the configured backend."""
    msg = EmailMultiAlternatives(
        payload["subject"],
        body=payload["body"],
        from_email=payload["sender"],
        to=[payload["to"]],
    )
    if payload.get("html"):
        msg.attach_alternative(payload["html"], "text/html")
    msg.send()
