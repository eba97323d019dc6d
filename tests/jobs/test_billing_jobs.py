"""Billing jobs: invoice email with its PDF, the sweeper (lost work, grace, reminders)."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from app.extensions import db
from app.jobs.billing import sweep_billing
from app.models.billing import (
    BillingEvent,
    Invoice,
    Payment,
    PdfStatus,
    Subscription,
    SubscriptionStatus,
)
from app.models.mixins import utcnow
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
