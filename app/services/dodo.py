"""Dodo Payments webhooks: verify, allow-list, store once (reference B).

Dodo signs with Standard Webhooks: ``webhook-id``, ``webhook-timestamp`` and
``webhook-signature`` headers, HMAC-SHA256 over ``"{id}.{timestamp}.{raw body}"``,
five minutes' tolerance. The `standardwebhooks` library verifies; a malformed header
makes it raise ValueError (binascii.Error), not WebhookVerificationError, so both are
refusals.

What is stored is the event after an allow-list of fields (P4): ids, amounts, currency,
tax, status, method type, customer id and email, billing state and country,
timestamps. Card and UPI details, names, phone numbers and street addresses never reach
the database, not even the raw inbox.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from flask import current_app
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from standardwebhooks import Webhook, WebhookVerificationError

from app.extensions import db
from app.models.billing import BillingEvent
from app.models.mixins import utcnow

HEADERS = ("webhook-id", "webhook-timestamp", "webhook-signature")

# Allow-lists: field -> None (keep the value) or a nested allow-list for an object.
_CUSTOMER = {"customer_id": None, "email": None}
_BILLING = {"state": None, "country": None}
# The one metadata key we read: the tenant, set when the checkout is created.
_METADATA = {"tenant_slug": None}
_REFUND_ITEM = {
    "refund_id": None,
    "payment_id": None,
    "amount": None,
    "currency": None,
    "status": None,
    "is_partial": None,
    "created_at": None,
}
PAYMENT_FIELDS: dict[str, Any] = {
    "payload_type": None,
    "payment_id": None,
    "business_id": None,
    "brand_id": None,
    "subscription_id": None,
    "checkout_session_id": None,
    "invoice_id": None,
    "status": None,
    "currency": None,
    "total_amount": None,
    "tax": None,
    "settlement_amount": None,
    "settlement_currency": None,
    "settlement_tax": None,
    # the kind of method ("upi_collect", "credit"), never its details
    "payment_method": None,
    "payment_method_type": None,
    "refund_status": None,
    "retry_attempt": None,
    "error_code": None,
    "created_at": None,
    "updated_at": None,
    "customer": _CUSTOMER,
    "billing": _BILLING,
    "metadata": _METADATA,
    "refunds": [_REFUND_ITEM],
}
SUBSCRIPTION_FIELDS: dict[str, Any] = {
    "payload_type": None,
    "subscription_id": None,
    "business_id": None,
    "status": None,
    "product_id": None,
    "quantity": None,
    "recurring_pre_tax_amount": None,
    "tax_inclusive": None,
    "currency": None,
    "previous_billing_date": None,
    "next_billing_date": None,
    "payment_frequency_interval": None,
    "payment_frequency_count": None,
    "subscription_period_interval": None,
    "subscription_period_count": None,
    "trial_period_days": None,
    "cancel_at_next_billing_date": None,
    "cancelled_at": None,
    "expires_at": None,
    "on_demand": None,
    "tax_id": None,
    "customer_business_name": None,
    "created_at": None,
    "updated_at": None,
    "customer": _CUSTOMER,
    "billing": _BILLING,
    "metadata": _METADATA,
}
REFUND_FIELDS: dict[str, Any] = {
    "payload_type": None,
    "refund_id": None,
    "payment_id": None,
    "business_id": None,
    "status": None,
    "amount": None,
    "currency": None,
    "is_partial": None,
    "reason": None,
    "created_at": None,
    "customer": _CUSTOMER,
    "metadata": _METADATA,
}
# Any other event (disputes, payouts, ...) is kept as ids and a status only.
OTHER_FIELDS: dict[str, Any] = {
    "payload_type": None,
    "payment_id": None,
    "subscription_id": None,
    "refund_id": None,
    "dispute_id": None,
    "business_id": None,
    "status": None,
    "created_at": None,
}


class DodoRejected(Exception):
    """A delivery that is refused; ``reason`` is audited, ``status`` answered."""

    def __init__(self, reason: str, status: int = 401) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


def fields_for(event_type: str) -> dict[str, Any]:
    prefix = event_type.split(".", 1)[0]
    return {
        "payment": PAYMENT_FIELDS,
        "subscription": SUBSCRIPTION_FIELDS,
        "refund": REFUND_FIELDS,
    }.get(prefix, OTHER_FIELDS)


def allow(value: Any, spec: Any) -> Any:
    """``value`` reduced to the fields ``spec`` allows (recursively)."""
    if spec is None:
        return value if isinstance(value, str | int | float | bool) or value is None else None
    if isinstance(spec, list):
        return [allow(item, spec[0]) for item in value] if isinstance(value, list) else []
    if not isinstance(value, dict):
        return None
    return {key: allow(value[key], sub) for key, sub in spec.items() if key in value}


def sanitize(event: dict[str, Any]) -> dict[str, Any]:
    """The envelope with ``data`` reduced to its type's allow-list."""
    event_type = str(event.get("type") or "")
    return {
        "business_id": event.get("business_id"),
        "type": event_type,
        "timestamp": event.get("timestamp"),
        "data": allow(event.get("data") or {}, fields_for(event_type)),
    }


def verify(raw: bytes, headers: dict[str, str]) -> dict[str, Any]:
    """The verified event, or `DodoRejected` (401 for signatures, 400 for its shape)."""
    secret = current_app.config.get("DODO_WEBHOOK_SECRET")
    if not secret:
        raise DodoRejected("no_webhook_secret", 503)
    present = {name: headers.get(name, "") for name in HEADERS}
    if not all(present.values()):
        raise DodoRejected("missing_signature_headers")
    try:
        Webhook(secret).verify(raw, present, json_parse=False)
    except WebhookVerificationError as exc:
        reason = "expired_timestamp" if "timestamp" in str(exc).lower() else "bad_signature"
        raise DodoRejected(reason) from exc
    except ValueError as exc:  # a malformed header: binascii.Error is a ValueError
        raise DodoRejected("malformed_signature") from exc
    try:
        event = json.loads(raw)
    except ValueError as exc:
        raise DodoRejected("malformed_event", 400) from exc
    if (
        not isinstance(event, dict)
        or not isinstance(event.get("type"), str)
        or not isinstance(event.get("data"), dict)
    ):
        raise DodoRejected("malformed_event", 400)
    return event


def parse_time(value: Any) -> datetime | None:
    """An ISO 8601 timestamp as naive UTC (None if missing or unreadable)."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(UTC).replace(tzinfo=None)
    return parsed


def store(webhook_id: str, event: dict[str, Any]) -> BillingEvent | None:
    """Insert the allow-listed event once; None when ``webhook_id`` was seen before."""
    if db.session.scalar(select(BillingEvent.id).where(BillingEvent.webhook_id == webhook_id)):
        return None
    clean = sanitize(event)
    row = BillingEvent(
        webhook_id=webhook_id[:100],
        event_type=clean["type"][:64],
        event_at=parse_time(clean["timestamp"]),
        payload=clean,
        received_at=utcnow(),
    )
    nested = db.session.begin_nested()
    db.session.add(row)
    try:
        db.session.flush()
    except IntegrityError:  # a concurrent delivery of the same id won the unique index
        nested.rollback()
        return None
    nested.commit()
    return row


def payload_json(row: BillingEvent) -> str:
    """The stored payload, pretty-printed for the inbox screen."""
    return json.dumps(row.payload, indent=2, sort_keys=True, ensure_ascii=False)
