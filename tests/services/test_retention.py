"""The daily retention purge (P19): each category at its boundary, FK order, audit."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import pytest
from sqlalchemy import select

from app.extensions import db
from app.jobs.registers import purge_retention
from app.models.audit import AuditEvent
from app.models.billing import BillingEvent, DocumentType, Invoice, Payment
from app.models.conversation import WebhookInbox
from app.models.mixins import utcnow
from app.models.privacy import (
    ArtifactKind,
    PrivacyArtifact,
    PrivacySubmission,
    RequestChannel,
    RequestType,
    SubjectKind,
)
from app.services import privacy, retention
from app.services.business_days import ist_date

# Mid-day UTC, so the IST date is the same day (17:30 IST).
NOW = datetime(2026, 11, 27, 12, 0)
TODAY = ist_date(NOW)
SECOND = timedelta(seconds=1)


@pytest.fixture
def clean_slate(app):
    """Purge whatever the shared data already has due, so counts are this test's own."""
    retention.purge(NOW)
    db.session.flush()


def _exists(model, row_id: int) -> bool:
    db.session.expire_all()
    return db.session.get(model, row_id) is not None


def _artifact(request_id: int, name: str, expires_at: datetime | None, kind=None) -> int:
    row = PrivacyArtifact(
        request_id=request_id,
        kind=kind or ArtifactKind.access_package,
        filename=name,
        content_type="application/zip",
        content=b"x",
        size=1,
        sha256="0" * 64,
        expires_at=expires_at,
    )
    db.session.add(row)
    db.session.flush()
    return row.id


def test_expired_exports_go_and_certificates_stay(app, tenant_a, clean_slate):
    request = privacy.open_request(
        request_type=RequestType.access,
        subject_kind=SubjectKind.tenant,
        subject=tenant_a,
        channel=RequestChannel.email,
        requester_email="owner@acme.example",
        received_at=NOW - timedelta(days=20),
    )
    expired = _artifact(request.id, "old.zip", NOW - SECOND)
    at_expiry = _artifact(request.id, "edge.zip", NOW)
    alive = _artifact(request.id, "new.zip", NOW + SECOND, ArtifactKind.portability_export)
    certificate = _artifact(request.id, "cert.pdf", None, ArtifactKind.deletion_certificate)

    assert retention.purge(NOW)["privacy_artifacts"] == 2
    assert not _exists(PrivacyArtifact, expired)
    assert not _exists(PrivacyArtifact, at_expiry)
    assert _exists(PrivacyArtifact, alive)
    assert _exists(PrivacyArtifact, certificate)


def test_expired_submissions_go(app, clean_slate):
    def submission(token: str, expires_at: datetime) -> int:
        row = PrivacySubmission(
            token=token,
            email=f"{token}@example.com",
            payload={},
            code_hash="h",
            expires_at=expires_at,
        )
        db.session.add(row)
        db.session.flush()
        return row.id

    gone = submission("expired", NOW - SECOND)
    kept = submission("pending", NOW + SECOND)
    assert retention.purge(NOW)["privacy_submissions"] == 1
    assert not _exists(PrivacySubmission, gone)
    assert _exists(PrivacySubmission, kept)


def test_raw_webhook_payloads_go_after_30_days_if_processed(app, tenant_a, clean_slate):
    cutoff = NOW - timedelta(days=30)

    def inbox(tag: str, received_at: datetime, processed: bool) -> int:
        row = WebhookInbox(
            source="whatsapp",
            content_hash=f"retention-{tag}".ljust(64, "0"),
            tenant_id=tenant_a.id,
            payload="{}",
            received_at=received_at,
            processed_at=received_at + SECOND if processed else None,
        )
        db.session.add(row)
        db.session.flush()
        return row.id

    old = inbox("old", cutoff - SECOND, True)
    edge = inbox("edge", cutoff, True)  # exactly 30 days: not older than 30 days
    unprocessed = inbox("stuck", cutoff - timedelta(days=60), False)
    counts = retention.purge(NOW)
    assert counts["webhook_inbox"] == 1
    assert not _exists(WebhookInbox, old)
    assert _exists(WebhookInbox, edge)
    assert _exists(WebhookInbox, unprocessed)


def test_processed_billing_events_go_after_30_days(app, clean_slate):
    cutoff = NOW - timedelta(days=30)

    def event(tag: str, received_at: datetime, processed: bool, error: str | None = None):
        row = BillingEvent(
            webhook_id=f"msg_retention_{tag}",
            event_type="payment.succeeded",
            payload={"type": "payment.succeeded", "data": {}},
            received_at=received_at,
            processed_at=received_at if processed else None,
            error=error,
        )
        db.session.add(row)
        db.session.flush()
        return row.id

    old = event("old", cutoff - SECOND, True)
    recent = event("recent", cutoff + SECOND, True)
    failed = event("failed", cutoff - timedelta(days=90), False, "no tenant matches")
    assert retention.purge(NOW)["billing_events"] == 1
    assert not _exists(BillingEvent, old)
    assert _exists(BillingEvent, recent)
    assert _exists(BillingEvent, failed)


# --------------------------------------------------------------------------- billing


def _payment(tenant_id: int, tag: str, retain_until: date | None) -> int:
    row = Payment(
        tenant_id=tenant_id,
        dodo_payment_id=f"pay_ret_{tag}",
        status="succeeded",
        currency="INR",
        total_amount=118000,
        paid_at=NOW - timedelta(days=8 * 365),
        retain_until=retain_until,
    )
    db.session.add(row)
    db.session.flush()
    return row.id


_SEQ = iter(range(1, 1000))


def _document(
    tenant_id: int,
    retain_until: date,
    *,
    payment_id: int | None = None,
    original_id: int | None = None,
) -> int:
    seq = next(_SEQ)
    credit = original_id is not None
    row = Invoice(
        tenant_id=tenant_id,
        doc_type=DocumentType.credit_note if credit else DocumentType.invoice,
        series="RTCN" if credit else "RTIN",
        fy="2018-19",
        seq=seq,
        number=f"{'RTCN' if credit else 'RTIN'}/{seq}",
        issue_date=date(2018, 10, 1),
        payment_id=payment_id,
        original_invoice_id=original_id,
        supplier={},
        buyer={},
        place_of_supply="07",
        regime="intra",
        lines=[],
        taxable_total=100000,
        grand_total=118000,
        amount_in_words="One thousand one hundred eighty rupees only",
        retain_until=retain_until,
    )
    db.session.add(row)
    db.session.flush()
    return row.id


def test_billing_records_go_after_retain_until_in_fk_order(app, tenant_a, clean_slate):
    past, today = TODAY - timedelta(days=1), TODAY
    # A: everything past retention: credit note, then invoice, then payment.
    pay_a = _payment(tenant_a.id, "a", past)
    inv_a = _document(tenant_a.id, past, payment_id=pay_a)
    note_a = _document(tenant_a.id, past, original_id=inv_a)
    # B: the credit note is kept through its retain-until day, so its invoice and that
    # invoice's payment stay too, although both are past their own dates.
    pay_b = _payment(tenant_a.id, "b", past)
    inv_b = _document(tenant_a.id, past, payment_id=pay_b)
    note_b = _document(tenant_a.id, today, original_id=inv_b)
    # C: a payment without a retention date (never invoiced) is kept.
    pay_c = _payment(tenant_a.id, "c", None)
    # D: an invoice on its retain-until day is kept, and so is its payment.
    pay_d = _payment(tenant_a.id, "d", past)
    inv_d = _document(tenant_a.id, today, payment_id=pay_d)

    counts = retention.purge(NOW)
    assert (counts["credit_notes"], counts["invoices"], counts["payments"]) == (1, 1, 1)
    for gone in (note_a, inv_a):
        assert not _exists(Invoice, gone)
    assert not _exists(Payment, pay_a)
    for kept in (note_b, inv_b, inv_d):
        assert _exists(Invoice, kept)
    for kept in (pay_b, pay_c, pay_d):
        assert _exists(Payment, kept)

    # The next day the B chain goes in one run (note, invoice, payment), D's invoice too.
    later = retention.purge(NOW + timedelta(days=1))
    assert (later["credit_notes"], later["invoices"], later["payments"]) == (1, 2, 2)
    assert not _exists(Payment, pay_b) and not _exists(Payment, pay_d)
    assert _exists(Payment, pay_c)


def test_the_purge_job_is_audited_with_its_counts(app, tenant_a, clean_slate):
    stale = WebhookInbox(
        source="whatsapp",
        content_hash="retention-job".ljust(64, "0"),
        tenant_id=tenant_a.id,
        payload="{}",
        received_at=utcnow() - timedelta(days=45),
        processed_at=utcnow() - timedelta(days=45),
    )
    db.session.add(stale)
    db.session.flush()

    counts = purge_retention()

    assert counts["webhook_inbox"] >= 1
    event = db.session.scalars(
        select(AuditEvent)
        .where(AuditEvent.action == "retention.purged")
        .order_by(AuditEvent.id.desc())
    ).first()
    assert event is not None
    assert event.details == counts
    assert set(counts) == {
        "privacy_artifacts",
        "privacy_submissions",
        "webhook_inbox",
        "billing_events",
        "credit_notes",
        "invoices",
        "payments",
    }
