"""Apply stored Dodo events: payments, invoices, credit notes, subscriptions (issue 6).

Every handler is idempotent and order-independent (reference B.3): one payment per
``payment_id`` and one invoice per payment, one credit note per ``refund_id``, a
subscription changed only by an event newer than the last one applied, a succeeded
payment never moved back. An event that cannot be applied yet (no tenant matches, a
refund for a payment not seen yet) raises `BillingError`; the event keeps the reason
and can be reprocessed from the inbox screen or by the sweeper.

Tenant lifecycle (P6): a subscription going on hold or failing starts the grace period
(``BILLING_GRACE_DAYS``), after which `enforce_grace` suspends the tenant; a renewal or
an active subscription makes it active again; cancelled or expired moves it to closing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from flask import current_app
from sqlalchemy import select

from app.extensions import db
from app.models.billing import (
    BillingEvent,
    Invoice,
    Payment,
    Plan,
    Subscription,
    SubscriptionStatus,
)
from app.models.mixins import utcnow
from app.models.tenant import Tenant, TenantStatus
from app.services import audit, invoices
from app.services.dodo import parse_time
from app.services.invoices import BillingError

SUCCEEDED = "succeeded"
# Tenant states a subscription event may move; deleted and closing are left alone,
# except that a cancelled subscription moves an active tenant to closing.
_REVIVABLE = {TenantStatus.trial, TenantStatus.active, TenantStatus.suspended}


def apply_event(row: BillingEvent, batch: Batch | None = None) -> dict[str, Any]:
    """Apply one stored event; returns what it did (for the job's audit counts).

    With ``batch`` (see `apply_batch`), payment events use its prefetched rows and leave
    their invoices unnumbered, in ``batch.unnumbered``.
    """
    event_type = row.event_type
    data = row.payload.get("data") or {}
    event_at = row.event_at or parse_time(row.payload.get("timestamp")) or row.received_at
    if event_type.startswith("payment."):
        result = _apply_payment(data, event_type, batch)
    elif event_type.startswith("subscription."):
        result = _apply_subscription(data, event_type, event_at)
    elif event_type == "refund.succeeded":
        result = _apply_refund(data)
    else:
        result = {"ignored": 1}
    row.tenant_id = result.pop("tenant_id", row.tenant_id)
    row.processed_at = utcnow()
    row.error = None
    return result


# --------------------------------------------------------------------------- batches


@dataclass
class Batch:
    """The rows a batch of payment events needs, read in four queries instead of
    three or four per event, and the invoices it issued, to be numbered together.

    ``payments`` is authoritative for the payment ids it was built from (a miss means
    "no such payment yet"; payments created by the batch are added), as is
    ``invoiced`` (payment ids that have an invoice). Tenants and subscriptions that
    were not prefetched are looked up as usual.
    """

    tenants: dict[str, Tenant] = field(default_factory=dict)
    subscriptions: dict[str, Subscription] = field(default_factory=dict)
    payment_ids: set[str] = field(default_factory=set)
    payments: dict[str, Payment] = field(default_factory=dict)
    invoiced: set[str] = field(default_factory=set)
    unnumbered: list[Invoice] = field(default_factory=list)

    @classmethod
    def prefetch(cls, rows: list[BillingEvent]) -> Batch:
        """Load what the payment events among ``rows`` refer to."""
        batch = cls()
        slugs, subscription_ids, batch.payment_ids = _payment_references(rows)
        if slugs:
            batch.tenants = {
                t.slug: t for t in db.session.scalars(select(Tenant).where(Tenant.slug.in_(slugs)))
            }
        if subscription_ids:
            batch.subscriptions = {
                s.dodo_subscription_id: s
                for s in db.session.scalars(
                    select(Subscription).where(
                        Subscription.dodo_subscription_id.in_(subscription_ids)
                    )
                ).unique()
            }
        if batch.payment_ids:
            batch.payments = {
                p.dodo_payment_id: p
                for p in db.session.scalars(
                    select(Payment).where(Payment.dodo_payment_id.in_(batch.payment_ids))
                ).unique()
            }
        if batch.payments:
            batch.invoiced = set(
                db.session.scalars(
                    select(Payment.dodo_payment_id)
                    .join(Invoice, Invoice.payment_id == Payment.id)
                    .where(Payment.dodo_payment_id.in_(batch.payments))
                )
            )
        return batch


def _payment_references(rows: list[BillingEvent]) -> tuple[set[str], set[str], set[str]]:
    """(tenant slugs, subscription ids, payment ids) named by the payment events."""
    slugs: set[str] = set()
    subscription_ids: set[str] = set()
    payment_ids: set[str] = set()
    for row in rows:
        if not row.event_type.startswith("payment."):
            continue
        data = row.payload.get("data") or {}
        if data.get("payment_id"):
            payment_ids.add(str(data["payment_id"]))
        if slug := (data.get("metadata") or {}).get("tenant_slug"):
            slugs.add(str(slug))
        if data.get("subscription_id"):
            subscription_ids.add(str(data["subscription_id"]))
    return slugs, subscription_ids, payment_ids


def apply_batch(rows: list[BillingEvent]) -> list[dict[str, Any]]:
    """Apply locked events together, as `apply_event` would one by one (month end).

    Lookups are prefetched and everything is written in two flushes: first payments,
    events and any other changes, then, having taken one block of numbers per series
    (the counter row stays locked until the caller commits, which should follow
    promptly), the new invoices. Raises on the first failure; the caller's savepoint
    then undoes the whole batch.
    """
    batch = Batch.prefetch(rows)
    with db.session.no_autoflush:
        results = [apply_event(row, batch) for row in rows]
    db.session.flush()
    invoices.number_documents(batch.unnumbered)
    db.session.flush()
    return results


# --------------------------------------------------------------------------- tenants


def tenant_for(data: dict[str, Any], batch: Batch | None = None) -> Tenant | None:
    """The tenant of an event: metadata ``tenant_slug``, else the subscription or customer."""
    slug = (data.get("metadata") or {}).get("tenant_slug")
    if slug:
        tenant = batch.tenants.get(str(slug)) if batch is not None else None
        if tenant is None:
            tenant = db.session.scalar(select(Tenant).where(Tenant.slug == str(slug)))
        if tenant is not None:
            return tenant
    subscription = _subscription(data.get("subscription_id"), batch)
    if subscription is not None and subscription.tenant is not None:
        return subscription.tenant
    customer_id = (data.get("customer") or {}).get("customer_id")
    if customer_id:
        by_customer = db.session.scalar(
            select(Subscription)
            .where(Subscription.dodo_customer_id == str(customer_id))
            .order_by(Subscription.id.desc())
        )
        if by_customer is not None and by_customer.tenant is not None:
            return by_customer.tenant
    return None


def _subscription(subscription_id: Any, batch: Batch | None = None) -> Subscription | None:
    if not subscription_id:
        return None
    if batch is not None and str(subscription_id) in batch.subscriptions:
        return batch.subscriptions[str(subscription_id)]
    return db.session.scalar(
        select(Subscription).where(Subscription.dodo_subscription_id == str(subscription_id))
    )


# -------------------------------------------------------------------------- payments


def _apply_payment(
    data: dict[str, Any], event_type: str, batch: Batch | None = None
) -> dict[str, Any]:
    payment_id = data.get("payment_id")
    if not payment_id:
        raise BillingError("payment event without payment_id")
    payment_id = str(payment_id)
    tenant = tenant_for(data, batch)
    if tenant is None:
        raise BillingError(f"no tenant matches payment {payment_id}")
    status = str(data.get("status") or event_type.split(".", 1)[1])
    known = batch is not None and payment_id in batch.payment_ids
    if known:
        payment = batch.payments.get(payment_id)
    else:
        payment = db.session.scalar(select(Payment).where(Payment.dodo_payment_id == payment_id))
    created = payment is None
    if payment is None:
        payment = Payment(dodo_payment_id=payment_id, tenant_id=tenant.id)
        db.session.add(payment)
        if known:
            batch.payments[payment_id] = payment
    _copy_payment(payment, data, status)
    result: dict[str, Any] = {"tenant_id": tenant.id, "payments": int(created)}
    if payment.status != SUCCEEDED:
        db.session.flush()
        return result
    # A new payment has no invoice yet: no lookup, and the payment and its invoice are
    # written in one flush (one audit capture), which matters at month end.
    if known:
        had_invoice = payment_id in batch.invoiced
    else:
        had_invoice = (
            not created
            and db.session.scalar(select(Invoice.id).where(Invoice.payment_id == payment.id))
            is not None
        )
    if not had_invoice:
        with db.session.no_autoflush:  # lookups first; payment + invoice in one flush
            subscription = _subscription(data.get("subscription_id"), batch)
            invoice = invoices.issue_invoice(
                payment,
                tenant,
                subscription,
                billing=data.get("billing") or {},
                new_payment=created or known,
                number_later=batch is not None,
            )
        if batch is not None:
            batch.invoiced.add(payment_id)
            batch.unnumbered.append(invoice)
        result["invoices"] = 1
        result["invoice"] = invoice  # its id once flushed: the PDF to render
    return result


def _copy_payment(payment: Payment, data: dict[str, Any], status: str) -> None:
    """Allow-listed fields onto the row; a succeeded payment never moves back."""
    updated = parse_time(data.get("updated_at")) or parse_time(data.get("created_at"))
    if payment.status == SUCCEEDED and status != SUCCEEDED:
        return
    if (
        payment.source_updated_at is not None
        and updated is not None
        and updated < payment.source_updated_at
        and status != SUCCEEDED
    ):
        return
    customer = data.get("customer") or {}
    billing = data.get("billing") or {}
    payment.status = status
    payment.currency = str(data.get("currency") or "INR")[:3]
    payment.total_amount = int(data.get("total_amount") or 0)
    payment.tax_amount = _int_or_none(data.get("tax"))
    payment.settlement_amount = _int_or_none(data.get("settlement_amount"))
    payment.settlement_currency = data.get("settlement_currency")
    payment.payment_method_type = data.get("payment_method_type") or data.get("payment_method")
    payment.dodo_subscription_id = data.get("subscription_id")
    payment.dodo_customer_id = customer.get("customer_id")
    payment.customer_email = customer.get("email")
    payment.billing_state = billing.get("state")
    payment.billing_country = billing.get("country")
    payment.paid_at = parse_time(data.get("created_at")) or payment.paid_at or utcnow()
    payment.source_updated_at = updated
    payment.retain_until = invoices.retention_date(payment.paid_at.date())


def _int_or_none(value: Any) -> int | None:
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


# --------------------------------------------------------------------------- refunds


def _apply_refund(data: dict[str, Any]) -> dict[str, Any]:
    refund_id, payment_id = data.get("refund_id"), data.get("payment_id")
    if not refund_id or not payment_id:
        raise BillingError("refund event without refund_id or payment_id")
    payment = db.session.scalar(select(Payment).where(Payment.dodo_payment_id == payment_id))
    invoice = (
        db.session.scalar(select(Invoice).where(Invoice.payment_id == payment.id))
        if payment
        else None
    )
    if payment is None or invoice is None:
        # Out of order: the payment's event has not been applied yet. Retried later.
        raise BillingError(f"refund {refund_id} for payment {payment_id} not invoiced yet")
    exists = db.session.scalar(select(Invoice.id).where(Invoice.dodo_refund_id == refund_id))
    if exists:
        return {"tenant_id": payment.tenant_id}
    amount = _int_or_none(data.get("amount"))
    note = invoices.issue_credit_note(invoice, str(refund_id), amount)
    payment.refunded_amount = (payment.refunded_amount or 0) + (amount or payment.total_amount)
    return {"tenant_id": payment.tenant_id, "credit_notes": 1, "invoice": note}


# --------------------------------------------------------------------- subscriptions


def _apply_subscription(
    data: dict[str, Any], event_type: str, event_at: datetime
) -> dict[str, Any]:
    subscription_id = data.get("subscription_id")
    if not subscription_id:
        raise BillingError("subscription event without subscription_id")
    tenant = tenant_for(data)
    if tenant is None:
        raise BillingError(f"no tenant matches subscription {subscription_id}")
    subscription = _subscription(subscription_id)
    if subscription is None:
        subscription = Subscription(
            dodo_subscription_id=str(subscription_id),
            tenant_id=tenant.id,
            status=SubscriptionStatus.pending,
        )
        db.session.add(subscription)
    elif subscription.source_event_at is not None and event_at <= subscription.source_event_at:
        return {"tenant_id": tenant.id, "stale": 1}
    status = _subscription_status(data.get("status"), event_type)
    subscription.status = status
    subscription.source_event_at = event_at
    subscription.dodo_customer_id = (data.get("customer") or {}).get("customer_id")
    subscription.current_period_start = parse_time(data.get("previous_billing_date"))
    subscription.next_billing_date = parse_time(data.get("next_billing_date"))
    subscription.cancel_at_period_end = bool(data.get("cancel_at_next_billing_date"))
    subscription.tax_id = data.get("tax_id")
    subscription.customer_business_name = data.get("customer_business_name")
    plan = _plan_by_product(data.get("product_id"))
    if plan is not None:
        subscription.plan_id = plan.id
    if status in (SubscriptionStatus.on_hold, SubscriptionStatus.failed):
        subscription.on_hold_since = subscription.on_hold_since or event_at
    else:
        subscription.on_hold_since = None
    _move_tenant(tenant, status)
    db.session.flush()
    return {"tenant_id": tenant.id, "subscriptions": 1}


def _subscription_status(value: Any, event_type: str) -> SubscriptionStatus:
    try:
        return SubscriptionStatus(str(value))
    except ValueError:
        suffix = event_type.split(".", 1)[1]
        fallback = {"renewed": "active", "plan_changed": "active", "updated": "active"}
        return SubscriptionStatus(fallback.get(suffix, suffix))


def _plan_by_product(product_id: Any) -> Plan | None:
    if not product_id:
        return None
    return db.session.scalar(select(Plan).where(Plan.dodo_product_id == str(product_id)))


def _move_tenant(tenant: Tenant, status: SubscriptionStatus) -> None:
    before = tenant.status
    if status == SubscriptionStatus.active and before in _REVIVABLE:
        tenant.status = TenantStatus.active
    elif status in (SubscriptionStatus.cancelled, SubscriptionStatus.expired) and before in (
        TenantStatus.trial,
        TenantStatus.active,
        TenantStatus.suspended,
    ):
        tenant.status = TenantStatus.closing
    if tenant.status != before:
        audit.record(
            "tenant.billing_status",
            tenant,
            tenant_id=tenant.id,
            before=str(before),
            after=str(tenant.status),
            subscription=str(status),
        )


def enforce_grace(now: datetime | None = None) -> int:
    """Suspend tenants whose subscription has been on hold past the grace period."""
    now = now or utcnow()
    cutoff = now - timedelta(days=int(current_app.config["BILLING_GRACE_DAYS"]))
    overdue = db.session.scalars(
        select(Subscription).where(
            Subscription.status.in_([SubscriptionStatus.on_hold, SubscriptionStatus.failed]),
            Subscription.on_hold_since.is_not(None),
            Subscription.on_hold_since <= cutoff,
        )
    ).all()
    suspended = 0
    for subscription in overdue:
        tenant = subscription.tenant
        if tenant is not None and tenant.status in (TenantStatus.active, TenantStatus.trial):
            tenant.status = TenantStatus.suspended
            audit.record(
                "tenant.billing_status",
                tenant,
                tenant_id=tenant.id,
                before="active",
                after="suspended",
                subscription=str(subscription.status),
            )
            suspended += 1
    return suspended


def reminders_due(now: datetime | None = None) -> list[Subscription]:
    """Active subscriptions renewing within ``RENEWAL_REMINDER_DAYS`` not yet reminded."""
    now = now or utcnow()
    horizon = now + timedelta(days=int(current_app.config["RENEWAL_REMINDER_DAYS"]))
    rows = db.session.scalars(
        select(Subscription).where(
            Subscription.status == SubscriptionStatus.active,
            Subscription.cancel_at_period_end.is_(False),
            Subscription.next_billing_date.is_not(None),
            Subscription.next_billing_date > now,
            Subscription.next_billing_date <= horizon,
        )
    ).all()
    return [s for s in rows if s.reminder_sent_for != s.next_billing_date]
