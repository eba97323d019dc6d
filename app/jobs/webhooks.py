"""Webhook jobs (queue ``default``): process a stored webhook payload."""

from __future__ import annotations

import json

from sqlalchemy import select

from app.extensions import db
from app.jobs._runtime import job
from app.models.conversation import WebhookInbox
from app.models.mixins import utcnow
from app.services import inbound


@job
def process_inbox(inbox_id: int, tenant_id: int | None = None) -> dict[str, int]:
    """Apply one ``webhook_inbox`` row in its tenant's scope; a processed row is skipped.

    The row is locked while it is processed, so two runs of the same row are ordered and
    the second sees ``processed_at`` and does nothing.
    """
    row = db.session.scalars(
        select(WebhookInbox).where(WebhookInbox.id == inbox_id).with_for_update()
    ).first()
    if row is None or row.processed_at is not None:
        return {"skipped": 1}
    if row.tenant_id != tenant_id:
        raise ValueError(f"webhook_inbox {inbox_id} belongs to another tenant")
    row.attempts += 1
    try:
        payload = json.loads(row.payload)
    except ValueError:
        row.error = "malformed payload"
        row.processed_at = utcnow()
        return {"malformed": 1}
    counts = inbound.process_payload(db.session, payload)
    row.processed_at = utcnow()
    row.error = None
    return counts
