"""Dodo Payments webhooks from outside: signatures, storage once, order independence (issue 6).

Events are built and signed by `tests.fakes.dodo` exactly as Dodo signs them (Standard
Webhooks) and posted to ``/webhooks/dodo``; the billing jobs run on real Redis.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from app.extensions import db
from app.models import AuditEvent, Tenant, TenantStatus
from app.models.billing import (
    BillingEvent,
    DocumentType,
    Invoice,
    Payment,
    Plan,
    Subscription,
    SubscriptionStatus,
)
from app.services import gst
from tests.fakes import dodo

URL = "/webhooks/dodo"


@pytest.fixture
def post(client):
    def send(event, **kwargs):
        body, headers = dodo.signed(event, **kwargs)
        return client.post(URL, data=body, headers=headers)

    return send


@pytest.fixture
def growth_plan(app) -> Plan:
    plan = db.session.scalar(select(Plan).where(Plan.dodo_product_id == "pdt_test_growth"))
    if plan is None:
        plan = Plan(
            name="Test Growth",
            price_paise=999_900,
            billing_period="month",
            sac_code="998315",
            gst_rate_bp=1800,
            dodo_product_id="pdt_test_growth",
        )
        db.session.add(plan)
        db.session.flush()
    return plan


def _count(model, *where) -> int:
    return db.session.scalar(select(func.count()).select_from(model).where(*where))


def _payment_id(dodo_payment_id: str) -> int:
    return db.session.scalar(select(Payment.id).where(Payment.dodo_payment_id == dodo_payment_id))


def _rejections(reason: str) -> int:
    return _count(
        AuditEvent,
        AuditEvent.action == "webhook.rejected",
        AuditEvent.details["reason"].as_string() == reason,
    )


def test_signed_payment_becomes_payment_and_invoice(post, run_jobs, tenant_a):
    event = dodo.payment("pay_test_ok", tenant_slug="acme", total=1_179_882, tax=179_982)

    response = post(event)
    assert response.status_code == 200
    run_jobs("billing")

    payment = db.session.scalar(select(Payment).where(Payment.dodo_payment_id == "pay_test_ok"))
    assert payment.tenant_id == tenant_a.id
    assert (payment.status, payment.total_amount, payment.tax_amount) == (
        "succeeded",
        1_179_882,
        179_982,
    )
    invoice = db.session.scalar(select(Invoice).where(Invoice.payment_id == payment.id))
    fy = gst.financial_year(invoice.issue_date)
    assert invoice.number == f"INV/{gst.short_fy(fy)}/{invoice.seq:06d}"
    # Supplier in Delhi (07), Acme's GSTIN in Maharashtra (27): inter-state, IGST 18 %.
    assert (invoice.place_of_supply, invoice.regime) == ("27", "inter")
    assert invoice.taxable_total == 999_900
    assert invoice.igst_total == 179_982 and invoice.cgst_total == invoice.sgst_total == 0
    assert invoice.grand_total == 1_179_900 and invoice.round_off == 18
    assert invoice.buyer_gstin == tenant_a.gstin
    assert invoice.buyer["legal_name"] == tenant_a.legal_name
    assert invoice.supplier["gstin"] == "07AABCX1234K1ZD"
    assert not invoice.tax_mismatch
    assert invoice.retain_until >= invoice.issue_date.replace(year=invoice.issue_date.year + 7)


def test_card_and_upi_details_are_never_stored(post, run_jobs):
    event = dodo.payment("pay_test_pii", tenant_slug="acme")
    assert post(event).status_code == 200
    run_jobs("billing")

    row = db.session.scalar(
        select(BillingEvent).where(BillingEvent.event_type == "payment.succeeded")
    )
    stored = json.dumps(row.payload)
    for key in dodo.SENSITIVE:
        assert f'"{key}"' not in stored, key
    distinctive = [value for value in dodo.SENSITIVE.values() if len(value) > 3]
    for value in (*distinctive, "Asha Rao", "+919876543210", "12 Marine Drive", "400001"):
        assert value not in stored, value
    payment_row = db.session.execute(
        select(Payment.__table__).where(Payment.dodo_payment_id == "pay_test_pii")
    ).one()
    assert not any(value in str(column) for column in payment_row for value in distinctive)
    assert row.payload["data"]["customer"] == {
        "customer_id": "cus_acme_demo",
        "email": "accounts@acme.example",
    }


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda body, headers: (body.replace(b"1179882", b"1"), headers), "bad_signature"),
        (
            lambda body, headers: (body, {**headers, "webhook-signature": "v1,not base64!!"}),
            "malformed_signature",
        ),
        (
            lambda body, headers: (body, {k: v for k, v in headers.items() if k != "webhook-id"}),
            "missing_signature_headers",
        ),
    ],
    ids=["tampered", "malformed-header", "missing-id"],
)
def test_bad_signatures_are_refused_audited_and_store_nothing(client, mutate, reason):
    body, headers = dodo.signed(dodo.payment("pay_test_bad"))
    body, headers = mutate(body, headers)

    response = client.post(URL, data=body, headers=headers)

    assert response.status_code == 401
    assert _count(BillingEvent) == 0
    assert _rejections(reason) == 1


def test_expired_timestamp_is_refused(client):
    old = datetime.now(UTC) - timedelta(minutes=6)
    body, headers = dodo.signed(dodo.payment("pay_test_old"), at=old)

    assert client.post(URL, data=body, headers=headers).status_code == 401
    assert _count(BillingEvent) == 0
    assert _rejections("expired_timestamp") == 1


def test_wrong_secret_is_refused(client):
    body, headers = dodo.signed(dodo.payment(), secret="whsec_" + "c2VjcmV0LW5vdC1vdXJz")
    assert client.post(URL, data=body, headers=headers).status_code == 401


def test_signed_body_that_is_not_an_event_is_a_400(client):
    body, headers = dodo.signed(b'{"hello": "world"}')
    assert client.post(URL, data=body, headers=headers).status_code == 400
    assert _rejections("malformed_event") == 1


def test_duplicate_delivery_is_stored_and_applied_once(post, run_jobs):
    event = dodo.payment("pay_test_dup")
    assert post(event, webhook_id="msg_dup_1").data == b"ok"
    assert post(event, webhook_id="msg_dup_1").data == b"duplicate"
    # A replay under a new webhook id: still one payment, one invoice.
    assert post(event, webhook_id="msg_dup_2").data == b"ok"
    run_jobs("billing")

    assert _count(BillingEvent) == 2
    assert _count(Payment, Payment.dodo_payment_id == "pay_test_dup") == 1
    assert _count(Invoice, Invoice.payment_id == _payment_id("pay_test_dup")) == 1


@pytest.mark.parametrize("renewal_first", [True, False], ids=["renewed-first", "payment-first"])
def test_renewal_and_payment_in_either_order(post, run_jobs, growth_plan, renewal_first):
    now = datetime.now(UTC)
    renewal = dodo.subscription(
        "subscription.renewed",
        subscription_id="sub_test_order",
        product_id="pdt_test_growth",
        next_billing=now + timedelta(days=30),
        at=now,
    )
    payment = dodo.payment("pay_test_order", subscription_id="sub_test_order", at=now)
    for event in (renewal, payment) if renewal_first else (payment, renewal):
        assert post(event).status_code == 200
        run_jobs("billing")

    subscription = db.session.scalar(
        select(Subscription).where(Subscription.dodo_subscription_id == "sub_test_order")
    )
    assert subscription.status == SubscriptionStatus.active
    assert subscription.plan_id == growth_plan.id
    invoices = db.session.scalars(
        select(Invoice).where(Invoice.payment_id == _payment_id("pay_test_order"))
    ).all()
    assert len(invoices) == 1
    assert invoices[0].lines[0]["sac"] == "998315"


def test_older_subscription_event_does_not_overwrite_newer(post, run_jobs, tenant_a):
    now = datetime.now(UTC)
    newer = dodo.subscription("subscription.on_hold", subscription_id="sub_test_stale", at=now)
    older = dodo.subscription(
        "subscription.active", subscription_id="sub_test_stale", at=now - timedelta(hours=1)
    )
    post(newer)
    post(older)
    run_jobs("billing")

    subscription = db.session.scalar(
        select(Subscription).where(Subscription.dodo_subscription_id == "sub_test_stale")
    )
    assert subscription.status == SubscriptionStatus.on_hold
    assert subscription.on_hold_since is not None


def test_refund_gives_one_credit_note_with_tax_reversed(post, run_jobs):
    post(dodo.payment("pay_test_refund", total=1_179_882, tax=179_982))
    run_jobs("billing")
    refund = dodo.refund("pay_test_refund", refund_id="ref_test_1", amount=589_941)
    post(refund)
    post(refund)  # redelivered under a new webhook id
    run_jobs("billing")

    notes = db.session.scalars(select(Invoice).where(Invoice.dodo_refund_id == "ref_test_1")).all()
    assert len(notes) == 1
    note = notes[0]
    assert note.doc_type == DocumentType.credit_note
    original = db.session.scalar(
        select(Invoice).where(Invoice.payment_id == _payment_id("pay_test_refund"))
    )
    assert note.original_invoice_id == original.id
    assert note.number.startswith("CN/")
    assert note.taxable_total == 499_950  # 5,899.41 incl. 18 % → 4,999.50 taxable
    assert note.igst_total == 89_991
    payment = db.session.scalar(select(Payment).where(Payment.dodo_payment_id == "pay_test_refund"))
    assert payment.refunded_amount == 589_941


def test_refund_before_its_payment_waits_then_applies(post, run_jobs, app):
    post(dodo.refund("pay_test_late", refund_id="ref_test_late"))
    run_jobs("billing")
    waiting = db.session.scalar(
        select(BillingEvent).where(BillingEvent.event_type == "refund.succeeded")
    )
    assert waiting.processed_at is None and "not invoiced yet" in waiting.error

    post(dodo.payment("pay_test_late"))
    run_jobs("billing")
    from app.jobs.billing import process_billing_event

    process_billing_event(event_id=waiting.id)
    db.session.refresh(waiting)
    assert waiting.processed_at is not None
    assert _count(Invoice, Invoice.dodo_refund_id == "ref_test_late") == 1


def test_unknown_tenant_is_kept_with_its_reason(post, run_jobs):
    post(
        dodo.payment(
            "pay_test_orphan",
            tenant_slug="no-such-tenant",
            subscription_id=None,
            customer_id="cus_unknown",
        )
    )
    run_jobs("billing")

    row = db.session.scalar(select(BillingEvent))
    assert row.processed_at is None
    assert "no tenant matches payment pay_test_orphan" in row.error
    assert _count(Payment, Payment.dodo_payment_id == "pay_test_orphan") == 0


def test_subscription_lifecycle_moves_the_tenant(post, run_jobs, tenant_a, app):
    from app.services import billing

    now = datetime.now(UTC)
    post(dodo.subscription("subscription.on_hold", subscription_id="sub_test_life", at=now))
    run_jobs("billing")
    assert db.session.get(Tenant, tenant_a.id).status == TenantStatus.active  # grace period

    later = datetime.now(UTC).replace(tzinfo=None) + timedelta(days=8)
    assert billing.enforce_grace(later) == 1
    assert db.session.get(Tenant, tenant_a.id).status == TenantStatus.suspended

    post(
        dodo.subscription(
            "subscription.renewed", subscription_id="sub_test_life", at=now + timedelta(minutes=1)
        )
    )
    run_jobs("billing")
    assert db.session.get(Tenant, tenant_a.id).status == TenantStatus.active

    post(
        dodo.subscription(
            "subscription.cancelled", subscription_id="sub_test_life", at=now + timedelta(minutes=2)
        )
    )
    run_jobs("billing")
    assert db.session.get(Tenant, tenant_a.id).status == TenantStatus.closing
