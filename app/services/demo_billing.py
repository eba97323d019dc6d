"""Demo billing data (issue 6): two plans, both demo tenants subscribed, paid invoices.

Payments are recorded as the Dodo webhook would record them (`tests/fakes/dodo.py`
sends the same shapes) and invoiced through `app.services.invoices`, with the issue
date of each payment, so the screens, the GSTR-1 month export and the PDFs have a few
months of history. Idempotent: an existing plan, subscription or payment is kept.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import select

from app.extensions import db
from app.models.billing import (
    BillingPeriod,
    Payment,
    Plan,
    Subscription,
    SubscriptionStatus,
)
from app.models.mixins import utcnow
from app.models.tenant import Tenant
from app.services import invoices

DEMO_PLANS: list[dict[str, Any]] = [
    {
        "name": "Starter",
        "description": "One WhatsApp number, 3 team members, 5,000 contacts.",
        "price_paise": 299_900,
        "billing_period": BillingPeriod.month,
        "dodo_product_id": "pdt_woffice_starter_monthly",
    },
    {
        "name": "Growth",
        "description": "One WhatsApp number, 15 team members, 1,00,000 contacts, campaigns.",
        "price_paise": 999_900,
        "billing_period": BillingPeriod.month,
        "dodo_product_id": "pdt_woffice_growth_monthly",
    },
]
# tenant slug -> (plan name, Dodo subscription id, Dodo customer id, billing state)
DEMO_SUBSCRIPTIONS = {
    "acme": ("Growth", "sub_acme_demo", "cus_acme_demo", "Maharashtra"),
    "bharatfoods": ("Starter", "sub_bharatfoods_demo", "cus_bharatfoods_demo", "Karnataka"),
}
PAID_MONTHS = 3


def seed_demo_billing(config: dict[str, Any]) -> int:
    """Create what is missing; returns how many rows were created."""
    created = 0
    plans: dict[str, Plan] = {}
    for spec in DEMO_PLANS:
        plan = db.session.scalar(select(Plan).where(Plan.name == spec["name"]))
        if plan is None:
            plan = Plan(
                **spec,
                sac_code=config["DEFAULT_SAC_CODE"],
                gst_rate_bp=int(config["DEFAULT_GST_RATE_BP"]),
                active=True,
            )
            db.session.add(plan)
            created += 1
        plans[spec["name"]] = plan
    db.session.flush()
    now = utcnow().replace(microsecond=0)
    subscribed: list[tuple[Tenant, Subscription, Plan, str, str]] = []
    for slug, (plan_name, sub_id, customer_id, state) in DEMO_SUBSCRIPTIONS.items():
        tenant = db.session.scalar(select(Tenant).where(Tenant.slug == slug))
        if tenant is None:
            continue
        plan = plans[plan_name]
        subscription = db.session.scalar(
            select(Subscription).where(Subscription.dodo_subscription_id == sub_id)
        )
        if subscription is None:
            subscription = Subscription(
                tenant_id=tenant.id,
                plan_id=plan.id,
                dodo_subscription_id=sub_id,
                dodo_customer_id=customer_id,
                status=SubscriptionStatus.active,
                current_period_start=now - timedelta(days=10),
                next_billing_date=now + timedelta(days=20),
                source_event_at=now - timedelta(days=10),
            )
            db.session.add(subscription)
            created += 1
        subscribed.append((tenant, subscription, plan, customer_id, state))
    db.session.flush()
    # Oldest first, so invoice numbers follow their issue dates (Rule 46: consecutive).
    for months_ago in range(PAID_MONTHS, 0, -1):
        for tenant, subscription, plan, customer_id, state in subscribed:
            created += _demo_payment(
                tenant, subscription, plan, customer_id, state, now, months_ago
            )
    return created


def _demo_payment(
    tenant: Tenant,
    subscription: Subscription,
    plan: Plan,
    customer_id: str,
    state: str,
    now: Any,
    months_ago: int,
) -> int:
    payment_id = f"pay_demo_{tenant.slug}_{months_ago}"
    if db.session.scalar(select(Payment.id).where(Payment.dodo_payment_id == payment_id)):
        return 0
    paid_at = now - timedelta(days=30 * months_ago - 20)
    tax = plan.price_paise * plan.gst_rate_bp // 10_000
    payment = Payment(
        tenant_id=tenant.id,
        dodo_payment_id=payment_id,
        dodo_subscription_id=subscription.dodo_subscription_id,
        dodo_customer_id=customer_id,
        customer_email=tenant.contact_email,
        status="succeeded",
        currency="INR",
        total_amount=plan.price_paise + tax,
        tax_amount=tax,
        settlement_amount=plan.price_paise + tax,
        settlement_currency="INR",
        payment_method_type="upi_collect",
        billing_state=state,
        billing_country="IN",
        paid_at=paid_at,
        received_at=paid_at,
        retain_until=invoices.retention_date(paid_at.date()),
    )
    db.session.add(payment)
    db.session.flush()
    invoice = invoices.issue_invoice(
        payment, tenant, subscription, billing={"state": state, "country": "IN"}, now=paid_at
    )
    from app.services.invoice_pdf import render

    invoices.store_pdf(invoice, render(invoice))
    invoice.emailed_at = paid_at  # the demo does not email its history
    return 2
