"""Billing emails: an issued invoice (PDF attached) and the renewal reminder.

Both are sent from billing jobs that record the send on the row (``emailed_at``,
``reminder_sent_for``) in the same transaction, so a job run twice sends once.
"""

from __future__ import annotations

from datetime import UTC
from typing import Any

from flask import current_app
from flask_mailman import EmailMessage

from app.models.billing import DocumentType, Invoice, Subscription
from app.services import gst, mail


def recipient(invoice: Invoice) -> str | None:
    """The tenant's billing address, as frozen on the invoice (else the tenant's now)."""
    email = (invoice.buyer or {}).get("email")
    if not email and invoice.tenant is not None:
        email = invoice.tenant.billing_email or invoice.tenant.contact_email
    return email or None


def send_invoice(invoice: Invoice) -> None:
    """Email ``invoice`` with its PDF attached."""
    to = recipient(invoice)
    if not to or invoice.pdf is None:
        return
    kind = "Tax invoice" if invoice.doc_type == DocumentType.invoice else "Credit note"
    supplier = invoice.supplier.get("legal_name", "")
    body = (
        f"Dear {invoice.buyer.get('legal_name', 'customer')},\n\n"
        f"Please find attached {kind.lower()} {invoice.number} dated "
        f"{invoice.issue_date:%d %b %Y} for Rs. {gst.format_inr(invoice.grand_total)}.\n\n"
        f"This is a computer-generated document and needs no signature.\n\n"
        f"{supplier}\n"
    )
    message = EmailMessage(
        subject=f"{kind} {invoice.number} from {supplier}",
        body=body,
        from_email=current_app.config["MAIL_DEFAULT_SENDER"],
        to=[to],
    )
    message.attach(f"{invoice.number.replace('/', '-')}.pdf", invoice.pdf, "application/pdf")
    message.send()


def renewal_reminder(subscription: Subscription) -> dict[str, Any] | None:
    """The reminder email for the coming renewal (a mail job payload); None if nobody."""
    tenant = subscription.tenant
    if tenant is None or subscription.next_billing_date is None:
        return None
    to = tenant.billing_email or tenant.contact_email
    if not to:
        return None
    plan = subscription.plan
    price = (
        f" at Rs. {gst.format_inr(plan.price_paise)} plus GST at {plan.gst_rate_bp / 100:g}%"
        if plan
        else ""
    )
    when = gst.ist_date(subscription.next_billing_date.replace(tzinfo=UTC))
    body = (
        f"Dear {tenant.legal_name},\n\n"
        f"Your Woffice subscription{f' ({plan.name})' if plan else ''} renews on "
        f"{when:%d %b %Y}{price}. Dodo Payments collects it with your saved payment "
        f"method; a GST tax invoice is emailed to you when the payment succeeds.\n\n"
        f"To change or cancel your plan before then, reply to this email.\n\n"
        f"{current_app.config['SUPPLIER_LEGAL_NAME']}\n"
    )
    return mail.message_payload(to=to, subject="Your Woffice subscription renews soon", body=body)
