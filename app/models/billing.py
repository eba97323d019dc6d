"""Plans, subscriptions, payments from Dodo Payments, GST invoices and credit notes.

Billing records outlive their tenant (P19: kept for the GST retention period), so they
are `TenantBilled`: tenant-scoped like every tenant row, but ``tenant_id`` becomes NULL
when the tenant is deleted instead of taking the rows with it. An invoice freezes the
supplier and the buyer as they were when it was issued.

Payments keep an allow-list of Dodo's fields; card and UPI details never reach the
database (P4). Money is integer paise.
"""

from __future__ import annotations

import enum
from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, declared_attr, mapped_column, relationship

from app.extensions import db
from app.models.mixins import BigId, TenantOwned, Timestamped, utcnow, value_enum
from app.models.tenant import Tenant


class TenantBilled(TenantOwned):
    """A tenant's billing row that survives the tenant: ``tenant_id`` is set NULL."""

    @declared_attr
    def tenant_id(cls) -> Mapped[int | None]:  # noqa: N805 - declared_attr takes the class
        return mapped_column(
            Integer, ForeignKey("tenant.id", ondelete="SET NULL"), nullable=True, index=True
        )


class BillingPeriod(enum.StrEnum):
    month = "month"
    year = "year"


class Plan(Timestamped, db.Model):
    """What a tenant subscribes to: a price before tax, its SAC code and GST rate."""

    __tablename__ = "plan"
    __table_args__ = (
        CheckConstraint("price_paise >= 0", name="ck_plan_price_paise"),
        CheckConstraint("gst_rate_bp BETWEEN 0 AND 2800", name="ck_plan_gst_rate_bp"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), nullable=False, unique=True)
    description: Mapped[str | None] = mapped_column(String(300), nullable=True)
    price_paise: Mapped[int] = mapped_column(BigInteger, nullable=False)
    billing_period: Mapped[BillingPeriod] = mapped_column(
        value_enum(BillingPeriod, "billing_period", 8), nullable=False
    )
    sac_code: Mapped[str] = mapped_column(String(8), nullable=False)
    gst_rate_bp: Mapped[int] = mapped_column(Integer, nullable=False, default=1800)
    dodo_product_id: Mapped[str | None] = mapped_column(String(64), nullable=True, unique=True)
    active: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)

    def __repr__(self) -> str:
        return self.name


class SubscriptionStatus(enum.StrEnum):
    """Dodo's subscription states."""

    pending = "pending"
    active = "active"
    on_hold = "on_hold"
    paused = "paused"
    cancelled = "cancelled"
    failed = "failed"
    expired = "expired"


class Subscription(TenantBilled, Timestamped, db.Model):
    __tablename__ = "subscription"
    # The audit trail keeps keyed hashes of these, never the values.
    __personal_fields__ = ("tax_id", "customer_business_name")

    id: Mapped[int] = mapped_column(primary_key=True)
    plan_id: Mapped[int | None] = mapped_column(
        ForeignKey("plan.id", ondelete="RESTRICT"), nullable=True
    )
    dodo_subscription_id: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)
    dodo_customer_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    status: Mapped[SubscriptionStatus] = mapped_column(
        value_enum(SubscriptionStatus, "subscription_status"), nullable=False
    )
    current_period_start: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    next_billing_date: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    cancel_at_period_end: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    # The buyer's tax id and business name as Dodo holds them (used when the tenant has
    # no GSTIN of its own).
    tax_id: Mapped[str | None] = mapped_column(String(20), nullable=True)
    customer_business_name: Mapped[str | None] = mapped_column(String(200), nullable=True)
    on_hold_since: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    # The time of the newest Dodo event applied: an older one never overwrites it.
    source_event_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    # The next_billing_date a renewal reminder was sent for (once per period).
    reminder_sent_for: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)

    plan: Mapped[Plan | None] = relationship(lazy="joined")
    tenant: Mapped[Tenant | None] = relationship(lazy="joined")

    def __repr__(self) -> str:
        return self.dodo_subscription_id


class Payment(TenantBilled, db.Model):
    """One Dodo payment (unique ``payment_id``), allow-listed fields only (P4)."""

    __tablename__ = "payment"
    __personal_fields__ = ("customer_email",)
    __table_args__ = (Index("ix_payment_paid_at", "paid_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    dodo_payment_id: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)
    dodo_subscription_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    dodo_customer_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    customer_email: Mapped[str | None] = mapped_column(String(320), nullable=True)
    status: Mapped[str] = mapped_column(String(32), nullable=False)
    currency: Mapped[str] = mapped_column(String(3), nullable=False)
    total_amount: Mapped[int] = mapped_column(BigInteger, nullable=False)
    tax_amount: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    settlement_amount: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    settlement_currency: Mapped[str | None] = mapped_column(String(3), nullable=True)
    refunded_amount: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    payment_method_type: Mapped[str | None] = mapped_column(String(40), nullable=True)
    billing_state: Mapped[str | None] = mapped_column(String(100), nullable=True)
    billing_country: Mapped[str | None] = mapped_column(String(2), nullable=True)
    paid_at: Mapped[datetime] = mapped_column(DateTime, nullable=False)
    source_updated_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    received_at: Mapped[datetime] = mapped_column(DateTime, nullable=False, default=utcnow)
    retain_until: Mapped[date | None] = mapped_column(Date, nullable=True, index=True)

    tenant: Mapped[Tenant | None] = relationship(lazy="joined")

    def __repr__(self) -> str:
        return self.dodo_payment_id


class DocumentType(enum.StrEnum):
    invoice = "invoice"
    credit_note = "credit_note"


class PdfStatus(enum.StrEnum):
    pending = "pending"
    rendered = "rendered"
    failed = "failed"


class Invoice(TenantBilled, db.Model):
    """A GST tax invoice or a credit note (Rule 46 / Rule 53), frozen once issued.

    ``number`` is allocated from `DocumentCounter` in the transaction that creates the
    row; the PDF is rendered afterwards by a job and never changes the number.
    """

    __tablename__ = "invoice"
    __table_args__ = (
        UniqueConstraint("series", "fy", "seq", name="uq_invoice_series_fy_seq"),
        CheckConstraint("length(number) <= 16", name="ck_invoice_number_length"),
        Index("ix_invoice_fy_issue_date", "fy", "issue_date"),
    )
    __audit_name__ = "invoice"
    # The buyer's name, address and email are hashed in the audit trail; the PDF is
    # never copied into it (only that it changed: its SHA-256 is a column).
    __personal_fields__ = ("buyer", "buyer_gstin")
    __secret_fields__ = ("pdf",)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    doc_type: Mapped[DocumentType] = mapped_column(
        value_enum(DocumentType, "document_type"), nullable=False
    )
    series: Mapped[str] = mapped_column(String(8), nullable=False)
    fy: Mapped[str] = mapped_column(String(7), nullable=False)
    seq: Mapped[int] = mapped_column(Integer, nullable=False)
    number: Mapped[str] = mapped_column(String(16), nullable=False, unique=True)
    issue_date: Mapped[date] = mapped_column(Date, nullable=False)
    issued_at: Mapped[datetime] = mapped_column(DateTime, nullable=False, default=utcnow)
    payment_id: Mapped[int | None] = mapped_column(
        ForeignKey("payment.id", ondelete="RESTRICT"), nullable=True, unique=True
    )
    # Credit notes: the refund behind it and the invoice it reverses.
    dodo_refund_id: Mapped[str | None] = mapped_column(String(64), nullable=True, unique=True)
    original_invoice_id: Mapped[int | None] = mapped_column(
        ForeignKey("invoice.id", ondelete="RESTRICT"), nullable=True
    )
    supplier: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False)
    buyer: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False)
    buyer_gstin: Mapped[str | None] = mapped_column(String(15), nullable=True)
    place_of_supply: Mapped[str] = mapped_column(String(2), nullable=False)
    regime: Mapped[str] = mapped_column(String(10), nullable=False)
    reverse_charge: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    lines: Mapped[list[dict[str, Any]]] = mapped_column(JSON, nullable=False)
    taxable_total: Mapped[int] = mapped_column(BigInteger, nullable=False)
    cgst_total: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    sgst_total: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    utgst_total: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    igst_total: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    round_off: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    grand_total: Mapped[int] = mapped_column(BigInteger, nullable=False)
    amount_in_words: Mapped[str] = mapped_column(String(300), nullable=False)
    note: Mapped[str | None] = mapped_column(String(300), nullable=True)
    # Dodo's own tax figure and whether it disagrees with ours (shown, never trusted).
    dodo_tax_amount: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    tax_mismatch: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    pdf_status: Mapped[PdfStatus] = mapped_column(
        value_enum(PdfStatus, "pdf_status", 10), nullable=False, default=PdfStatus.pending
    )
    pdf: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True, deferred=True)
    pdf_sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    pdf_rendered_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    pdf_error: Mapped[str | None] = mapped_column(String(300), nullable=True)
    emailed_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    retain_until: Mapped[date] = mapped_column(Date, nullable=False, index=True)

    payment: Mapped[Payment | None] = relationship(lazy="joined")
    original_invoice: Mapped[Invoice | None] = relationship(remote_side="Invoice.id", lazy="joined")
    tenant: Mapped[Tenant | None] = relationship(lazy="joined")

    @property
    def is_b2b(self) -> bool:
        return bool(self.buyer_gstin)

    @property
    def tax_total(self) -> int:
        return self.cgst_total + self.sgst_total + self.utgst_total + self.igst_total

    def __repr__(self) -> str:
        return self.number


class DocumentCounter(db.Model):
    """The last number issued per series and financial year (row-locked to allocate)."""

    __tablename__ = "document_counter"
    __audit__ = False

    series: Mapped[str] = mapped_column(String(8), primary_key=True)
    fy: Mapped[str] = mapped_column(String(7), primary_key=True)
    last_seq: Mapped[int] = mapped_column(Integer, nullable=False, default=0)


class BillingEvent(db.Model):
    """A Dodo webhook delivery, stored once per ``webhook-id`` before it is processed.

    The payload is stored after the allow-list has removed card and UPI details (P4),
    so not even the inbox holds them.
    """

    __tablename__ = "billing_event"
    __audit__ = False
    __table_args__ = (Index("ix_billing_event_unprocessed", "processed_at", "id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    webhook_id: Mapped[str] = mapped_column(String(100), nullable=False, unique=True)
    event_type: Mapped[str] = mapped_column(String(64), nullable=False)
    event_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False)
    tenant_id: Mapped[int | None] = mapped_column(
        ForeignKey("tenant.id", ondelete="SET NULL"), nullable=True, index=True
    )
    received_at: Mapped[datetime] = mapped_column(DateTime, nullable=False, default=utcnow)
    processed_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)

    @property
    def state(self) -> str:
        if self.processed_at is not None:
            return "processed"
        return "failed" if self.error else "pending"
