"""A local stand-in for Dodo Payments' webhook sender (reference B).

Builds events shaped like Dodo's (`payment.succeeded`, `subscription.*`,
`refund.succeeded`), signs them exactly as Dodo does (Standard Webhooks: HMAC-SHA256 over
``"{webhook-id}.{webhook-timestamp}.{body}"`` with the base64 key after ``whsec_``,
through the `standardwebhooks` package) and POSTs them over real HTTP.

Payment events carry card and UPI details on purpose, as real ones can: the app must
never store them (P4).

CLI (the demo: pay for Acme's subscription with a running `make run`):

    python -m tests.fakes.dodo --url http://127.0.0.1:5000/webhooks/dodo \\
        payment --tenant acme --amount 1179882
"""

from __future__ import annotations

import argparse
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from standardwebhooks import Webhook

DEMO_SECRET = "whsec_d29mZmljZS1kZW1vLWRvZG8tc2VjcmV0"
BUSINESS_ID = "bus_woffice_demo"
# What a card/UPI payment may carry and we must never keep.
SENSITIVE = {
    "card_last_four": "4242",
    "card_network": "VISA",
    "card_type": "credit",
    "card_issuing_country": "IN",
    "card_holder_name": "Asha Rao",
    "upi_vpa": "asha.rao@okhdfcbank",
    "payment_method_id": "pm_card_secret_123",
}


def iso(ts: datetime) -> str:
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def envelope(event_type: str, data: dict[str, Any], at: datetime | None = None) -> dict[str, Any]:
    at = at or datetime.now(UTC)
    return {"business_id": BUSINESS_ID, "type": event_type, "timestamp": iso(at), "data": data}


def payment(
    payment_id: str | None = None,
    *,
    tenant_slug: str | None = "acme",
    total: int = 1_179_882,
    tax: int | None = 179_982,
    status: str = "succeeded",
    subscription_id: str | None = "sub_acme_demo",
    customer_id: str = "cus_acme_demo",
    email: str = "accounts@acme.example",
    state: str | None = "Maharashtra",
    country: str = "IN",
    at: datetime | None = None,
    with_sensitive: bool = True,
) -> dict[str, Any]:
    """A ``payment.*`` event (``total`` and ``tax`` in paise)."""
    at = at or datetime.now(UTC)
    data: dict[str, Any] = {
        "payload_type": "Payment",
        "payment_id": payment_id or f"pay_{uuid.uuid4().hex[:16]}",
        "business_id": BUSINESS_ID,
        "brand_id": BUSINESS_ID,
        "status": status,
        "currency": "INR",
        "total_amount": total,
        "tax": tax,
        "settlement_amount": total,
        "settlement_currency": "INR",
        "subscription_id": subscription_id,
        "customer": {
            "customer_id": customer_id,
            "email": email,
            "name": "Asha Rao",
            "phone_number": "+919876543210",
        },
        "billing": {
            "country": country,
            "state": state,
            "city": "Mumbai",
            "street": "12 Marine Drive",
            "zipcode": "400001",
        },
        "payment_method": "upi_collect",
        "payment_method_type": "upi_collect",
        "payment_provider": "dodo",
        "retry_attempt": 0,
        "invoice_id": None,
        "invoice_url": None,
        "refunds": [],
        "disputes": [],
        "metadata": {"tenant_slug": tenant_slug} if tenant_slug else {},
        "is_update_payment_method": False,
        "digital_products_delivered": False,
        "created_at": iso(at - timedelta(seconds=12)),
        "updated_at": iso(at),
    }
    if with_sensitive:
        data.update(SENSITIVE)
    if tax is None:
        del data["tax"]
    return envelope(f"payment.{status}", data, at)


def subscription(
    event_type: str = "subscription.active",
    *,
    subscription_id: str = "sub_acme_demo",
    tenant_slug: str | None = "acme",
    status: str | None = None,
    product_id: str = "pdt_woffice_growth_monthly",
    next_billing: datetime | None = None,
    at: datetime | None = None,
    tax_id: str | None = None,
    cancel_at_next_billing_date: bool = False,
) -> dict[str, Any]:
    at = at or datetime.now(UTC)
    next_billing = next_billing or at + timedelta(days=30)
    default_status = {
        "subscription.active": "active",
        "subscription.renewed": "active",
        "subscription.on_hold": "on_hold",
        "subscription.failed": "failed",
        "subscription.cancelled": "cancelled",
        "subscription.expired": "expired",
        "subscription.paused": "paused",
    }.get(event_type, "active")
    data = {
        "payload_type": "Subscription",
        "subscription_id": subscription_id,
        "status": status or default_status,
        "product_id": product_id,
        "quantity": 1,
        "recurring_pre_tax_amount": 999_900,
        "tax_inclusive": False,
        "currency": "INR",
        "previous_billing_date": iso(next_billing - timedelta(days=30)),
        "next_billing_date": iso(next_billing),
        "payment_frequency_interval": "Month",
        "payment_frequency_count": 1,
        "subscription_period_interval": "Year",
        "subscription_period_count": 10,
        "trial_period_days": 0,
        "cancel_at_next_billing_date": cancel_at_next_billing_date,
        "on_demand": False,
        "tax_id": tax_id,
        "customer_business_name": None,
        "customer": {"customer_id": "cus_acme_demo", "email": "accounts@acme.example"},
        "billing": {"country": "IN", "state": "Maharashtra"},
        "metadata": {"tenant_slug": tenant_slug} if tenant_slug else {},
        "addons": [],
        "meters": [],
        "created_at": iso(at - timedelta(days=60)),
    }
    return envelope(event_type, data, at)


def refund(
    payment_id: str,
    *,
    refund_id: str | None = None,
    amount: int | None = None,
    at: datetime | None = None,
) -> dict[str, Any]:
    data = {
        "payload_type": "Refund",
        "refund_id": refund_id or f"ref_{uuid.uuid4().hex[:16]}",
        "payment_id": payment_id,
        "business_id": BUSINESS_ID,
        "brand_id": BUSINESS_ID,
        "status": "succeeded",
        "amount": amount,
        "currency": "INR",
        "is_partial": amount is not None,
        "reason": "Downgrade",
        "customer": {"customer_id": "cus_acme_demo", "email": "accounts@acme.example"},
        "metadata": {},
        "created_at": iso(at or datetime.now(UTC)),
    }
    return envelope("refund.succeeded", data, at)


def signed(
    event: dict[str, Any] | bytes,
    *,
    secret: str = DEMO_SECRET,
    webhook_id: str | None = None,
    at: datetime | None = None,
) -> tuple[bytes, dict[str, str]]:
    """(raw body, headers) exactly as Dodo sends them."""
    body = event if isinstance(event, bytes) else json.dumps(event).encode()
    webhook_id = webhook_id or f"msg_{uuid.uuid4().hex}"
    at = at or datetime.now(UTC)
    signature = Webhook(secret).sign(webhook_id, at, body.decode())
    headers = {
        "webhook-id": webhook_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": signature,
        "content-type": "application/json",
    }
    return body, headers


def deliver(url: str, event: dict[str, Any], **kwargs: Any) -> httpx.Response:
    """POST one signed event over HTTP, as Dodo does."""
    body, headers = signed(event, **kwargs)
    return httpx.post(url, content=body, headers=headers, timeout=15)


def main() -> None:  # pragma: no cover - demo tool
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:5000/webhooks/dodo")
    parser.add_argument("--secret", default=DEMO_SECRET)
    sub = parser.add_subparsers(dest="kind", required=True)
    pay = sub.add_parser("payment")
    pay.add_argument("--tenant", default="acme")
    pay.add_argument("--amount", type=int, default=1_179_882, help="total in paise")
    pay.add_argument("--tax", type=int, default=179_982, help="tax in paise")
    ren = sub.add_parser("renew")
    ren.add_argument("--tenant", default="acme")
    ren.add_argument("--subscription", default="sub_acme_demo")
    ref = sub.add_parser("refund")
    ref.add_argument("payment_id")
    ref.add_argument("--amount", type=int)
    args = parser.parse_args()
    if args.kind == "payment":
        event = payment(tenant_slug=args.tenant, total=args.amount, tax=args.tax)
    elif args.kind == "renew":
        event = subscription(
            "subscription.renewed", subscription_id=args.subscription, tenant_slug=args.tenant
        )
    else:
        event = refund(args.payment_id, amount=args.amount)
    response = deliver(args.url, event, secret=args.secret)
    print(response.status_code, response.text, event["data"].get("payment_id", ""))


if __name__ == "__main__":  # pragma: no cover
    main()
