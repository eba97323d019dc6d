"""The daily retention purge (P19 and data minimisation).

What goes, and why only that:

* ``privacy_artifacts``: access packages and portability exports past ``expires_at``.
  Deletion certificates have no ``expires_at`` and are kept.
* ``privacy_submissions``: public-form submissions past ``expires_at`` (confirmed ones
  became requests; unconfirmed ones are dead codes holding an email address).
* ``webhook_inbox``: raw WhatsApp payloads older than `RAW_PAYLOAD_DAYS` that were
  processed. An unprocessed row (pending, or given up after its retries) is kept for
  someone to look at: deleting it would lose messages silently.
* ``billing_events``: Dodo deliveries older than `RAW_PAYLOAD_DAYS` that were
  processed. Their payload is allow-listed (no card or UPI details) but still holds the
  customer's name, email and billing address; the GST record is the invoice (buyer
  frozen on it) and the payment row, kept below. A delivery older than a few minutes
  cannot be replayed (Standard Webhooks' timestamp tolerance), so the ``webhook-id``
  dedupe row is not needed after 30 days either. Failed or pending events are kept.
* ``credit_notes``, ``invoices``, ``payments``: billing records whose ``retain_until``
  (the GST retention date) has passed. Foreign keys are RESTRICT, so the order is credit
  notes → invoices → payments, and a row goes only when every row pointing at it goes
  too: an invoice with a credit note still retained stays, and so does its payment.
  A payment without ``retain_until`` (never invoiced) is kept.

Deletes run in batches of `BATCH` ids. The purge records one audit event with the
counts. Services never commit: the job does.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import Select, delete, exists, not_, select
from sqlalchemy.orm import aliased

from app.extensions import db
from app.models.billing import BillingEvent, DocumentType, Invoice, Payment
from app.models.conversation import WebhookInbox
from app.models.mixins import utcnow
from app.models.privacy import PrivacyArtifact, PrivacySubmission
from app.services import audit
from app.services.business_days import ist_date

RAW_PAYLOAD_DAYS = 30
BATCH = 500


def _delete_in_batches(model: Any, ids_query: Select) -> int:
    """Delete the rows whose ids ``ids_query`` selects, ``BATCH`` at a time."""
    total = 0
    while True:
        ids = list(db.session.scalars(ids_query.limit(BATCH)))
        if not ids:
            return total
        db.session.execute(
            delete(model).where(model.id.in_(ids)).execution_options(synchronize_session=False)
        )
        total += len(ids)
        if len(ids) < BATCH:
            return total


def purge_privacy_artifacts(now: datetime) -> int:
    """Expired exports (never a deletion certificate: its ``expires_at`` is NULL)."""
    query = select(PrivacyArtifact.id).where(
        PrivacyArtifact.expires_at.is_not(None), PrivacyArtifact.expires_at <= now
    )
    return _delete_in_batches(PrivacyArtifact, query.order_by(PrivacyArtifact.id))


def purge_privacy_submissions(now: datetime) -> int:
    """Public-form submissions past their expiry."""
    query = select(PrivacySubmission.id).where(PrivacySubmission.expires_at <= now)
    return _delete_in_batches(PrivacySubmission, query.order_by(PrivacySubmission.id))


def purge_webhook_inbox(now: datetime) -> int:
    """Processed raw WhatsApp payloads received more than 30 days ago."""
    cutoff = now - timedelta(days=RAW_PAYLOAD_DAYS)
    query = select(WebhookInbox.id).where(
        WebhookInbox.processed_at.is_not(None), WebhookInbox.received_at < cutoff
    )
    return _delete_in_batches(WebhookInbox, query.order_by(WebhookInbox.id))


def purge_billing_events(now: datetime) -> int:
    """Processed Dodo deliveries received more than 30 days ago."""
    cutoff = now - timedelta(days=RAW_PAYLOAD_DAYS)
    query = select(BillingEvent.id).where(
        BillingEvent.processed_at.is_not(None), BillingEvent.received_at < cutoff
    )
    return _delete_in_batches(BillingEvent, query.order_by(BillingEvent.id))


def _credit_notes_due(today: date) -> Select:
    return select(Invoice.id).where(
        Invoice.doc_type == DocumentType.credit_note, Invoice.retain_until < today
    )


def _invoices_due(today: date) -> Select:
    """Invoices past retention that no retained credit note points at."""
    note = aliased(Invoice)
    return select(Invoice.id).where(
        Invoice.doc_type == DocumentType.invoice,
        Invoice.retain_until < today,
        not_(exists().where(note.original_invoice_id == Invoice.id)),
    )


def _payments_due(today: date) -> Select:
    """Payments past retention that no remaining invoice or credit note points at."""
    return select(Payment.id).where(
        Payment.retain_until.is_not(None),
        Payment.retain_until < today,
        not_(exists().where(Invoice.payment_id == Payment.id)),
    )


def purge_billing_records(today: date) -> dict[str, int]:
    """Credit notes, then invoices, then payments whose ``retain_until`` has passed.

    A record is kept through its ``retain_until`` day (IST) and removed from the next.
    """
    notes = _delete_in_batches(Invoice, _credit_notes_due(today).order_by(Invoice.id))
    invoices = _delete_in_batches(Invoice, _invoices_due(today).order_by(Invoice.id))
    payments = _delete_in_batches(Payment, _payments_due(today).order_by(Payment.id))
    return {"credit_notes": notes, "invoices": invoices, "payments": payments}


def purge(now: datetime | None = None) -> dict[str, int]:
    """Run every purge category once; audited with the counts. Returns the counts."""
    now = now or utcnow()
    counts = {
        "privacy_artifacts": purge_privacy_artifacts(now),
        "privacy_submissions": purge_privacy_submissions(now),
        "webhook_inbox": purge_webhook_inbox(now),
        "billing_events": purge_billing_events(now),
        **purge_billing_records(ist_date(now)),
    }
    audit.record("retention.purged", **counts)
    return counts
