"""Billing jobs (queue ``billing``): Dodo events, invoice PDFs, invoice emails, sweeps.

`process_billing_event` is what the Dodo webhook enqueues after storing an event. It
locks the event row, applies it (`app.services.billing`) and, for a new invoice or
credit note, has its PDF rendered after the commit. `render_invoice_pdf` stores the
PDF and its SHA-256, then has it emailed; a failed render records the error and leaves
the number untouched. `sweep_billing` (cron) re-enqueues whatever was left behind, so a
lost job or a flushed Redis loses no work, suspends tenants past their grace period and
sends renewal reminders once per period.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from flask import current_app
from sqlalchemy import select

from app.extensions import db
from app.jobs import enqueue_after_commit, release_coalesced
from app.jobs._runtime import job
from app.jobs.mail import send_email
from app.models.billing import BillingEvent, Invoice, PdfStatus
from app.models.mixins import utcnow
from app.services import billing, invoice_mail, invoices
from app.services.invoices import BillingError

log = logging.getLogger(__name__)

SWEEP_KEY = "sweep-billing"
MAX_EVENT_ATTEMPTS = 10  # then the event waits for a person's "reprocess"
STALE_AFTER = timedelta(minutes=5)  # work older than this is re-enqueued by the sweeper


def schedule_event(event_id: int) -> None:
    enqueue_after_commit("billing", process_billing_event, event_id=event_id)


def schedule_pdf(invoice_id: int) -> None:
    enqueue_after_commit("billing", render_invoice_pdf, invoice_id=invoice_id)


@job
def process_billing_event(event_id: int) -> dict[str, Any]:
    """Apply one stored Dodo event once (a second run finds it processed)."""
    row = db.session.scalar(
        select(BillingEvent).where(BillingEvent.id == event_id).with_for_update(skip_locked=True)
    )
    if row is None or row.processed_at is not None:
        return {"skipped": 1}
    row.attempts += 1
    try:
        with db.session.begin_nested():
            result = billing.apply_event(row)
    except BillingError as exc:  # cannot be applied yet: kept for the sweeper / a person
        row.error = str(exc)[:1000]
        return {"deferred": 1}
    invoice_id = result.pop("invoice_id", None)
    if invoice_id is not None:
        schedule_pdf(invoice_id)
    return {key: value for key, value in result.items() if isinstance(value, int)}


@job
def render_invoice_pdf(invoice_id: int) -> dict[str, int]:
    """Render and store the PDF of an invoice or credit note (idempotent)."""
    from app.services.invoice_pdf import render

    invoice = db.session.scalar(
        select(Invoice)
        .where(Invoice.id == invoice_id)
        .with_for_update(skip_locked=True, of=Invoice)
    )
    if invoice is None or invoice.pdf_status == PdfStatus.rendered:
        return {"skipped": 1}
    try:
        pdf = render(invoice)
    except Exception as exc:  # recorded on the invoice; the number is never touched
        log.exception("invoice %s: PDF failed", invoice_id)
        invoice.pdf_status = PdfStatus.failed
        invoice.pdf_error = f"{type(exc).__name__}: {exc}"[:300]
        return {"failed": 1}
    invoices.store_pdf(invoice, pdf)
    if invoice.emailed_at is None and invoice_mail.recipient(invoice):
        enqueue_after_commit("mail", email_invoice, invoice_id=invoice.id)
    return {"rendered": 1, "bytes": len(pdf)}


@job
def email_invoice(invoice_id: int) -> dict[str, int]:
    """Email a rendered invoice to the tenant's billing address, once."""
    invoice = db.session.scalar(
        select(Invoice)
        .where(Invoice.id == invoice_id)
        .with_for_update(skip_locked=True, of=Invoice)
    )
    if invoice is None or invoice.emailed_at is not None:
        return {"skipped": 1}
    if invoice.pdf_status != PdfStatus.rendered:
        return {"not_rendered": 1}
    invoice_mail.send_invoice(invoice)
    invoice.emailed_at = utcnow()
    return {"emailed": 1}


@job
def sweep_billing() -> dict[str, int]:
    """Re-enqueue stale billing work; grace-period suspensions; renewal reminders."""
    release_coalesced(SWEEP_KEY)
    now = utcnow()
    stale = now - STALE_AFTER
    events = db.session.scalars(
        select(BillingEvent.id).where(
            BillingEvent.processed_at.is_(None),
            BillingEvent.attempts < MAX_EVENT_ATTEMPTS,
            BillingEvent.received_at <= stale,
        )
    ).all()
    for event_id in events:
        schedule_event(event_id)
    pdfs = db.session.scalars(
        select(Invoice.id).where(
            Invoice.pdf_status == PdfStatus.pending, Invoice.issued_at <= stale
        )
    ).all()
    for invoice_id in pdfs:
        schedule_pdf(invoice_id)
    suspended = billing.enforce_grace(now)
    reminders = 0
    for subscription in billing.reminders_due(now):
        payload = invoice_mail.renewal_reminder(subscription)
        if payload is not None:  # sent once: the period is marked in this transaction
            enqueue_after_commit("mail", send_email, payload)
            reminders += 1
        subscription.reminder_sent_for = subscription.next_billing_date
    return {
        "events": len(events),
        "pdfs": len(pdfs),
        "suspended": suspended,
        "reminders": reminders,
        "grace_days": int(current_app.config["BILLING_GRACE_DAYS"]),
    }
