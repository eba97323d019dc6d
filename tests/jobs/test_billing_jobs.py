"""Billing jobs: invoice email with its PDF, the sweeper (lost work, grace, reminders),
and batches of events (month end): one invoice per payment, consecutive numbers."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select

from app.extensions import db
from app.jobs.billing import drain_billing_events, sweep_billing
from app.models.billing import (
    BillingEvent,
    DocumentCounter,
    Invoice,
    Payment,
    PdfStatus,
    Subscription,
    SubscriptionStatus,
)
from app.models.mixins import utcnow
from app.services import dodo as dodo_service
from app.services import gst, invoices
from tests.fakes import dodo


def _post(client, event, **kwargs):
    body, headers = dodo.signed(event, **kwargs)
    return client.post("/webhooks/dodo", data=body, headers=headers)


def test_paid_invoice_is_rendered_and_emailed_once_with_its_pdf(
    client, run_jobs, mailbox, tenant_a
):
    _post(client, dodo.payment("pay_mail_1"))
    run_jobs("billing", "mail")
    run_jobs("billing", "mail")  # a second pass finds nothing more to do

    invoice = db.session.scalar(
        select(Invoice).join(Payment).where(Payment.dodo_payment_id == "pay_mail_1")
    )
    assert invoice.pdf_status == PdfStatus.rendered and invoice.emailed_at is not None
    messages = mailbox.to(tenant_a.contact_email)
    assert len(messages) == 1
    message = messages[0]
    assert invoice.number in str(message["Subject"])
    attachments = list(message.iter_attachments())
    assert len(attachments) == 1
    assert attachments[0].get_content_type() == "application/pdf"
    assert attachments[0].get_filename() == invoice.number.replace("/", "-") + ".pdf"
    assert attachments[0].get_content().startswith(b"%PDF")


def test_sweeper_re_enqueues_an_event_whose_job_was_lost(client, run_jobs, app):
    _post(client, dodo.payment("pay_lost_1"))
    from app.jobs import redis_connection

    redis_connection().flushdb()  # the job is gone, the event is in the database
    row = db.session.scalar(select(BillingEvent))
    row.received_at = utcnow() - timedelta(minutes=10)
    db.session.flush()

    counts = sweep_billing()
    run_jobs("billing")

    assert counts["events"] == 1
    db.session.refresh(row)
    assert row.processed_at is not None
    assert db.session.scalar(
        select(Invoice.number).join(Payment).where(Payment.dodo_payment_id == "pay_lost_1")
    )


def test_renewal_reminder_is_sent_once_per_period(client, run_jobs, mailbox, tenant_a):
    _post(
        client,
        dodo.subscription(
            "subscription.active",
            subscription_id="sub_remind",
            next_billing=(utcnow() + timedelta(days=3)).replace(tzinfo=dodo.UTC),
        ),
    )
    run_jobs("billing")

    sweep_billing()
    sweep_billing()
    run_jobs("mail")

    reminders = [m for m in mailbox.to(tenant_a.contact_email) if "renews" in str(m["Subject"])]
    assert len(reminders) == 1
    assert "renews on" in mailbox.text(reminders[0])
    subscription = db.session.scalar(
        select(Subscription).where(Subscription.dodo_subscription_id == "sub_remind")
    )
    assert subscription.status == SubscriptionStatus.active
    assert subscription.reminder_sent_for == subscription.next_billing_date


# --------------------------------------------------------------------------- batches


def _store(*events: dict) -> list[BillingEvent]:
    """Events stored as the webhook stores them (one webhook id each)."""
    return [dodo_service.store(f"msg_batch_{n}_{id(e)}", e) for n, e in enumerate(events)]


def _invoices(*dodo_payment_ids: str) -> list[Invoice]:
    return list(
        db.session.scalars(
            select(Invoice)
            .join(Payment)
            .where(Payment.dodo_payment_id.in_(dodo_payment_ids))
            .order_by(Invoice.seq)
        )
    )


def _last_seq(series: str = "INV") -> int:
    return db.session.scalar(
        select(func.coalesce(func.max(DocumentCounter.last_seq), 0)).where(
            DocumentCounter.series == series
        )
    )


def test_a_batch_gives_one_invoice_per_payment_with_consecutive_numbers(app, tenant_a, tenant_b):
    _store(dodo.payment("pay_batch_0"))
    drain_billing_events()
    before = _last_seq()
    rows = _store(
        dodo.payment("pay_batch_1"),
        dodo.payment(
            "pay_batch_2",
            tenant_slug="bharatfoods",
            subscription_id="sub_bharatfoods_demo",
            customer_id="cus_bharatfoods_demo",
        ),
        dodo.payment("pay_batch_1"),  # redelivered in the same batch
        dodo.payment("pay_batch_0"),  # applied by the run before
        dodo.payment("pay_batch_3", status="processing"),
        dodo.payment("pay_batch_3"),  # then succeeded, in the same batch
    )

    counts = drain_billing_events()

    assert counts["applied"] == 6 and counts["failed"] == counts["deferred"] == 0
    assert counts["payments"] == 3 and counts["invoices"] == 3
    issued = _invoices("pay_batch_1", "pay_batch_2", "pay_batch_3")
    assert [invoice.seq for invoice in issued] == [before + 1, before + 2, before + 3]
    assert [invoice.number for invoice in issued] == [
        gst.format_document_number("INV", invoice.fy, invoice.seq) for invoice in issued
    ]
    by_payment = {invoice.payment.dodo_payment_id: invoice for invoice in issued}
    assert by_payment["pay_batch_2"].tenant_id == tenant_b.id
    assert by_payment["pay_batch_1"].tenant_id == by_payment["pay_batch_3"].tenant_id == tenant_a.id
    assert all(invoice.pdf_status == PdfStatus.pending for invoice in issued)
    # P19: numbered later, still kept as long as the law asks (from the FY and issue date).
    assert all(
        invoice.retain_until == gst.retain_until(invoice.fy, invoice.issue_date)
        for invoice in issued
    )
    assert len(_invoices("pay_batch_0")) == 1
    assert _last_seq() == before + 3
    for row in rows:
        db.session.refresh(row)
        assert row.processed_at is not None and row.error is None and row.attempts == 1


def test_a_batch_that_fails_after_numbering_gives_its_numbers_back(app, tenant_a, monkeypatch):
    real = invoices.number_documents
    calls = []

    def number_then_fail(documents):
        real(documents)
        calls.append(len(documents))
        if len(calls) == 1:  # the batch fast path: numbers taken, then the flush fails
            raise RuntimeError("flush failed")

    monkeypatch.setattr(invoices, "number_documents", number_then_fail)
    before = _last_seq()
    rows = _store(
        dodo.payment("pay_redo_1"), dodo.payment("pay_redo_2"), dodo.payment("pay_redo_3")
    )

    counts = drain_billing_events()

    assert calls == [3]  # then one savepoint per event, each numbered as it is issued
    assert counts["applied"] == 3 and counts["invoices"] == 3
    issued = _invoices("pay_redo_1", "pay_redo_2", "pay_redo_3")
    assert [invoice.seq for invoice in issued] == [before + 1, before + 2, before + 3]
    assert _last_seq() == before + 3
    for row in rows:
        db.session.refresh(row)
        assert row.processed_at is not None and row.attempts == 1
