"""Billing jobs (queue ``billing``): Dodo events, invoice PDFs, invoice emails, sweeps.

Dodo events and PDFs are worked in batches, like the WhatsApp webhook drain: the
webhook has one coalesced `drain_billing_events` run after its commit, which claims up
to `EVENT_BATCH` stored events with ``FOR UPDATE SKIP LOCKED`` (so two workers share a
backlog without touching the same event), applies them together in one savepoint
(`billing.apply_batch`: lookups prefetched, the invoices numbered in one block at the
end, so the invoice counter is locked only from there to the commit; if any event
fails, one savepoint per event instead) and has the new invoices' PDFs rendered by one
coalesced `render_pending_pdfs` run, which renders up to `PDF_BATCH` pending invoices.
A batch costs one job (two audit events, two commits) instead of one per event or PDF.
A failed render records the error and leaves the number untouched.

`process_billing_event` and `render_invoice_pdf` work one given row (the inbox's
"reprocess" and tests). `sweep_billing` (cron) restarts whatever was left behind, so
a lost job or a flushed Redis loses no work, suspends tenants past their grace period
and sends renewal reminders once per period.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from flask import current_app
from sqlalchemy import func, select, update
from sqlalchemy.orm import lazyload

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
EVENTS_KEY = "billing-events"
PDFS_KEY = "billing-pdfs"
EMAILS_KEY = "billing-emails"
EVENT_BATCH = 200
PDF_BATCH = 200
MAX_EVENT_ATTEMPTS = 10  # then the event waits for a person's "reprocess"
STALE_AFTER = timedelta(minutes=5)  # work older than this is restarted by the sweeper


def schedule_events() -> None:
    """Have the stored events applied after this transaction commits (coalesced)."""
    enqueue_after_commit("billing", drain_billing_events, coalesce=EVENTS_KEY)


def schedule_event(event_id: int) -> None:
    """Have one event applied again (the inbox's "reprocess"), whatever its attempts."""
    enqueue_after_commit("billing", process_billing_event, event_id=event_id)


def schedule_pdf(invoice_id: int | None = None) -> None:
    """Have pending PDFs rendered after this transaction commits (coalesced).

    Ahead of queued event drains: while one worker holds the invoice counter (numbers
    are consecutive, so event batches take turns on it), another renders PDFs instead
    of waiting for that lock (month-end: 70.6 s -> see docs/benchmarks.md).
    """
    enqueue_after_commit("billing", render_pending_pdfs, coalesce=PDFS_KEY, at_front=True)


def _apply(row: BillingEvent, counts: dict[str, int]) -> int | None:
    """Apply one locked event in a savepoint; the new document's id, if any."""
    row.attempts += 1
    try:
        with db.session.begin_nested():
            result = billing.apply_event(row)
    except BillingError as exc:  # cannot be applied yet: kept for the sweeper / a person
        row.error = str(exc)[:1000]
        counts["deferred"] += 1
        return None
    except Exception as exc:  # one bad event must not hold up the others
        log.exception("billing_event %s failed", row.id)
        row.error = f"{type(exc).__name__}: {exc}"[:1000]
        counts["failed"] += 1
        return None
    counts["applied"] += 1
    for key in ("payments", "invoices", "credit_notes", "subscriptions", "ignored", "stale"):
        counts[key] += int(result.get(key, 0) or 0)
    document = result.get("invoice")
    return document.id if document is not None else None


def _apply_together(rows: list[BillingEvent], counts: dict[str, int]) -> list[int] | None:
    """The fast path: apply the whole batch in one savepoint (`billing.apply_batch`:
    prefetched lookups, two flushes, one block of invoice numbers taken last). None,
    with nothing applied, if any event fails: the caller then applies them one by one,
    each in its own savepoint."""
    trial = _new_counts()
    try:
        with db.session.begin_nested(), db.session.no_autoflush:
            for row in rows:  # written with the rest in the batch's first flush
                row.attempts += 1
            results = billing.apply_batch(rows)
    except Exception:  # noqa: BLE001 - any failure: the slow path finds and records it
        log.info("billing batch of %s events: applying one by one", len(rows))
        return None
    documents: list[Invoice] = []
    for result in results:
        trial["applied"] += 1
        for key in ("payments", "invoices", "credit_notes", "subscriptions", "ignored"):
            trial[key] += int(result.get(key, 0) or 0)
        if result.get("invoice") is not None:
            documents.append(result["invoice"])
    for key, value in trial.items():
        counts[key] += value
    return [document.id for document in documents]


def _new_counts() -> dict[str, int]:
    keys = ("events", "applied", "deferred", "failed", "payments", "invoices")
    return dict.fromkeys(keys + ("credit_notes", "subscriptions", "ignored", "stale"), 0)


@job
def drain_billing_events(batch_size: int = EVENT_BATCH) -> dict[str, int]:
    """Apply a batch of stored events; a full batch schedules the next run."""
    release_coalesced(EVENTS_KEY)  # events committed from now on: a new run
    rows = db.session.scalars(
        select(BillingEvent)
        .where(
            BillingEvent.processed_at.is_(None),
            BillingEvent.error.is_(None),
            BillingEvent.attempts < MAX_EVENT_ATTEMPTS,
        )
        .order_by(BillingEvent.id)
        .limit(batch_size)
        .with_for_update(skip_locked=True)
    ).all()
    counts = _new_counts()
    counts["events"] = len(rows)
    documents = _apply_together(rows, counts)
    if documents is None:  # something in the batch failed: one savepoint per event
        documents = [doc for row in rows if (doc := _apply(row, counts)) is not None]
    if documents:
        schedule_pdf()
    if len(rows) == batch_size:
        schedule_events()
    return counts


@job
def process_billing_event(event_id: int) -> dict[str, Any]:
    """Apply one stored Dodo event once (a second run finds it processed)."""
    row = db.session.scalar(
        select(BillingEvent).where(BillingEvent.id == event_id).with_for_update(skip_locked=True)
    )
    if row is None or row.processed_at is not None:
        return {"skipped": 1}
    counts = _new_counts()
    counts["events"] = 1
    if _apply(row, counts) is not None:
        schedule_pdf()
    return counts


def _render(invoice: Invoice) -> bool:
    """Render and store one locked invoice's PDF; False (error recorded) on failure."""
    from app.services.invoice_pdf import render

    try:
        pdf = render(invoice)
    except Exception as exc:  # recorded on the invoice; the number is never touched
        log.exception("invoice %s: PDF failed", invoice.id)
        invoice.pdf_status = PdfStatus.failed
        invoice.pdf_error = f"{type(exc).__name__}: {exc}"[:300]
        return False
    invoices.store_pdf(invoice, pdf)
    return True


@job
def render_pending_pdfs(batch_size: int = PDF_BATCH) -> dict[str, int]:
    """Render a batch of pending PDFs; a full batch schedules the next run."""
    release_coalesced(PDFS_KEY)
    pending = db.session.scalars(
        select(Invoice)
        .where(Invoice.pdf_status == PdfStatus.pending)
        .order_by(Invoice.id)
        .limit(batch_size)
        .with_for_update(skip_locked=True, of=Invoice)
        # The PDF prints the invoice's own frozen copy: no payment or tenant row needed.
        .options(lazyload(Invoice.payment), lazyload(Invoice.tenant))
    ).all()
    rendered = sum(_render(invoice) for invoice in pending)
    if rendered:
        enqueue_after_commit("mail", email_pending_invoices, coalesce=EMAILS_KEY)
    if len(pending) == batch_size:
        schedule_pdf()  # at the front again: the backlog of PDFs goes on
    return {"rendered": rendered, "failed": len(pending) - rendered}


@job
def render_invoice_pdf(invoice_id: int) -> dict[str, int]:
    """Render and store the PDF of one invoice or credit note (idempotent)."""
    invoice = db.session.scalar(
        select(Invoice)
        .where(Invoice.id == invoice_id)
        .with_for_update(skip_locked=True, of=Invoice)
    )
    if invoice is None or invoice.pdf_status == PdfStatus.rendered:
        return {"skipped": 1}
    if not _render(invoice):
        return {"failed": 1}
    if invoice.emailed_at is None and invoice_mail.recipient(invoice):
        enqueue_after_commit("mail", email_invoice, invoice_id=invoice.id)
    return {"rendered": 1, "bytes": len(invoice.pdf or b"")}


@job
def email_pending_invoices(batch_size: int = PDF_BATCH) -> dict[str, int]:
    """Email rendered invoices not emailed yet, each once (``emailed_at`` in this
    transaction; a failed send rolls the batch back and RQ retries it)."""
    release_coalesced(EMAILS_KEY)
    due = db.session.scalars(
        select(Invoice)
        .where(Invoice.pdf_status == PdfStatus.rendered, Invoice.emailed_at.is_(None))
        .order_by(Invoice.id)
        .limit(batch_size)
        .with_for_update(skip_locked=True, of=Invoice)
    ).all()
    sent = 0
    for invoice in due:
        if invoice_mail.recipient(invoice):
            invoice_mail.send_invoice(invoice)
            sent += 1
        invoice.emailed_at = utcnow()
    if len(due) == batch_size:
        enqueue_after_commit("mail", email_pending_invoices, coalesce=EMAILS_KEY)
    return {"emailed": sent}


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
    """Restart stale billing work; grace-period suspensions; renewal reminders."""
    release_coalesced(SWEEP_KEY)
    now = utcnow()
    stale = now - STALE_AFTER
    events = db.session.scalar(
        select(func.count(BillingEvent.id)).where(
            BillingEvent.processed_at.is_(None),
            BillingEvent.attempts < MAX_EVENT_ATTEMPTS,
            BillingEvent.received_at <= stale,
        )
    )
    if events:
        # Deferred events (e.g. a refund whose payment was not in yet) get another try.
        db.session.execute(
            update(BillingEvent)
            .where(
                BillingEvent.processed_at.is_(None),
                BillingEvent.attempts < MAX_EVENT_ATTEMPTS,
                BillingEvent.received_at <= stale,
            )
            .values(error=None)
        )
        schedule_events()
    pdfs = db.session.scalar(
        select(func.count(Invoice.id)).where(
            Invoice.pdf_status == PdfStatus.pending, Invoice.issued_at <= stale
        )
    )
    if pdfs:
        schedule_pdf()
    unsent = db.session.scalar(
        select(func.count(Invoice.id)).where(
            Invoice.pdf_status == PdfStatus.rendered,
            Invoice.emailed_at.is_(None),
            Invoice.pdf_rendered_at <= stale,
        )
    )
    if unsent:
        enqueue_after_commit("mail", email_pending_invoices, coalesce=EMAILS_KEY)
    suspended = billing.enforce_grace(now)
    reminders = 0
    for subscription in billing.reminders_due(now):
        payload = invoice_mail.renewal_reminder(subscription)
        if payload is not None:  # sent once: the period is marked in this transaction
            enqueue_after_commit("mail", send_email, payload)
            reminders += 1
        subscription.reminder_sent_for = subscription.next_billing_date
    return {
        "events": events or 0,
        "pdfs": pdfs or 0,
        "unsent": unsent or 0,
        "suspended": suspended,
        "reminders": reminders,
        "grace_days": int(current_app.config["BILLING_GRACE_DAYS"]),
    }
