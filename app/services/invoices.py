"""GST tax invoices and credit notes: numbers, tax, frozen parties (Rule 46, Rule 53).

An invoice is issued in the transaction that records its payment: its number comes from
`DocumentCounter` (an upsert ``… RETURNING`` takes the row lock, held to commit, so numbers
are consecutive and a rolled-back transaction gives its number back; a batch of events
takes one block of numbers at its end), the supplier and buyer are copied onto it, and
tax is computed per line per head (`app.services.gst`).
The PDF is rendered later by a job; it never touches the number.

Dodo's own ``tax`` figure is kept and compared with ours: a difference of more than one
paisa flags the invoice for billing staff instead of trusting either silently.
"""

from __future__ import annotations

import functools
import hashlib
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from flask import current_app
from sqlalchemy import Connection, select

from app.extensions import db
from app.models.billing import (
    DocumentCounter,
    DocumentType,
    Invoice,
    Payment,
    PdfStatus,
    Plan,
    Subscription,
)
from app.models.mixins import utcnow
from app.models.tenant import Tenant
from app.services import gst
from app.services.exceptions import WofficeError
from app.services.supplier import supplier_snapshot

EXPORT_POS = "96"
TAX_TOLERANCE_PAISE = 1


class BillingError(WofficeError):
    """A billing event cannot be applied (yet): kept on the event for a person."""


# ------------------------------------------------------------------------ numbering


def allocate_number(series: str, fy: str, conn: Connection | None = None) -> tuple[int, str]:
    """The next (sequence, document number) of ``series`` in ``fy``, row-locked.

    The counter row stays locked until the caller's transaction ends: a commit keeps the
    number, a rollback gives it back, so numbers are consecutive and never skipped.
    """
    return allocate_numbers(series, fy, 1, conn)[0]


def allocate_numbers(
    series: str, fy: str, count: int, conn: Connection | None = None
) -> list[tuple[int, str]]:
    """The next ``count`` consecutive (sequence, number) pairs of ``series`` in ``fy``.

    One statement (``INSERT … ON CONFLICT DO UPDATE … RETURNING``) creates or bumps the
    counter row by ``count`` and locks it until the caller's transaction ends, as
    `allocate_number` does for one: a batch takes its block at the end, just before
    it inserts its invoices and commits, so the lock is held for that much only.
    """
    if count < 1:
        return []
    table = DocumentCounter.__table__
    conn = conn if conn is not None else db.session.connection()
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as dialect_insert
    else:
        from sqlalchemy.dialects.sqlite import insert as dialect_insert
    stmt = dialect_insert(table).values(series=series, fy=fy, last_seq=count)
    last = conn.execute(
        stmt.on_conflict_do_update(
            index_elements=[table.c.series, table.c.fy],
            set_={"last_seq": table.c.last_seq + stmt.excluded.last_seq},
        ).returning(table.c.last_seq)
    ).scalar_one()
    # Raises (and so rolls the block back) if the series cannot fit 16 characters.
    return [
        (seq, gst.format_document_number(series, fy, seq))
        for seq in range(last - count + 1, last + 1)
    ]


def number_documents(documents: list[Invoice]) -> None:
    """Number documents issued with ``number_later`` and add them to the session.

    One block per series and financial year, in the order given (so consecutive within
    the batch too); the counter rows stay locked until the transaction ends.
    """
    groups: dict[tuple[str, str], list[Invoice]] = {}
    for document in documents:
        groups.setdefault((document.series, document.fy), []).append(document)
    for (series, fy), group in groups.items():
        for document, (seq, number) in zip(
            group, allocate_numbers(series, fy, len(group)), strict=True
        ):
            document.seq, document.number = seq, number
    db.session.add_all(documents)


# ---------------------------------------------------------------------------- parties


def buyer_snapshot(
    tenant: Tenant, subscription: Subscription | None, billing: dict[str, Any] | None
) -> tuple[dict[str, Any], str]:
    """(the buyer as printed, place-of-supply code).

    GSTIN from the tenant, else the subscription's tax id; the place of supply is the
    GSTIN's state (B2B), else Dodo's billing state, else the tenant's address (B2C);
    a billing country other than India makes it an export (96).
    """
    gstin = _valid_gstin(tenant.gstin) or _valid_gstin(subscription and subscription.tax_id)
    billing = billing or {}
    country = (billing.get("country") or "IN").upper()
    if gstin:
        pos = gst.gstin_state(gstin)
    elif country != "IN":
        pos = EXPORT_POS
    else:
        pos = gst.state_code_for(billing.get("state")) or tenant.state_code
    name = tenant.legal_name
    if not tenant.gstin and subscription and subscription.customer_business_name and gstin:
        name = subscription.customer_business_name
    address = ", ".join(
        part
        for part in (tenant.address_line1, tenant.address_line2, tenant.city, tenant.postal_code)
        if part
    )
    buyer = {
        "legal_name": name,
        "address": address,
        "gstin": gstin,
        "state_code": tenant.state_code if pos != EXPORT_POS else EXPORT_POS,
        "state_name": gst.POS_NAMES.get(tenant.state_code if pos != EXPORT_POS else EXPORT_POS, ""),
        "email": tenant.billing_email or tenant.contact_email,
        "tenant_slug": tenant.slug,
    }
    return buyer, pos


def _valid_gstin(value: str | None) -> str | None:
    if not value:
        return None
    try:
        return gst.validate_gstin(value)
    except ValueError:
        return None


# ---------------------------------------------------------------------------- issuing


def taxable_from_payment(payment: Payment, rate_bp: int) -> int:
    """The taxable value: total minus Dodo's tax, or backed out of the total at the rate."""
    if payment.tax_amount is not None:
        return payment.total_amount - payment.tax_amount
    base = Decimal(payment.total_amount) * 10_000 / (10_000 + rate_bp)
    return int(base.quantize(Decimal(1), rounding=ROUND_HALF_UP))


def issue_invoice(
    payment: Payment,
    tenant: Tenant,
    subscription: Subscription | None,
    *,
    billing: dict[str, Any] | None = None,
    now: datetime | None = None,
    new_payment: bool = False,
    number_later: bool = False,
) -> Invoice:
    """The tax invoice of ``payment`` (once: an existing one is returned).

    ``new_payment``: the payment is known to have no invoice (e.g. it is being created
    in this flush), so it is not looked up. ``number_later``: a batch numbers its
    invoices together at its end (`number_documents`), which also adds them to the
    session; until then the invoice has no number and is not in the session.
    """
    if not new_payment:
        existing = db.session.scalar(select(Invoice).where(Invoice.payment_id == payment.id))
        if existing is not None:
            return existing
    plan = _plan_for(subscription, tenant)
    cfg = current_app.config
    rate_bp = plan.gst_rate_bp if plan else int(cfg["DEFAULT_GST_RATE_BP"])
    sac = plan.sac_code if plan else cfg["DEFAULT_SAC_CODE"]
    buyer, pos = buyer_snapshot(tenant, subscription, billing)
    taxable = taxable_from_payment(payment, rate_bp)
    description = _line_description(plan)
    return _issue(
        DocumentType.invoice,
        cfg["INVOICE_SERIES_PREFIX"],
        tenant_id=tenant.id,
        buyer=buyer,
        pos=pos,
        lines=[(description, sac, taxable, rate_bp)],
        now=now,
        payment=payment,
        dodo_tax=payment.tax_amount,
        expected_total=payment.total_amount,
        number_later=number_later,
    )


def issue_credit_note(
    original: Invoice, refund_id: str, amount_paise: int | None, *, now: datetime | None = None
) -> Invoice:
    """The credit note for refund ``refund_id`` of ``original`` (once per refund).

    A full refund reverses every line; a partial one reverses the refunded share of the
    invoice's taxable value, with the tax recomputed per head on that amount.
    """
    existing = db.session.scalar(select(Invoice).where(Invoice.dodo_refund_id == refund_id))
    if existing is not None:
        return existing
    if amount_paise is None or amount_paise >= original.grand_total:
        lines = [
            (f"Reversal: {line['description']}", line["sac"], line["taxable"], line["rate_bp"])
            for line in original.lines
        ]
    else:
        line = original.lines[0]
        gross_rate = Decimal(10_000 + line["rate_bp"])
        taxable = int(
            (Decimal(amount_paise) * 10_000 / gross_rate).quantize(
                Decimal(1), rounding=ROUND_HALF_UP
            )
        )
        lines = [(f"Partial refund: {line['description']}", line["sac"], taxable, line["rate_bp"])]
    return _issue(
        DocumentType.credit_note,
        current_app.config["CREDIT_NOTE_SERIES_PREFIX"],
        tenant_id=original.tenant_id,
        buyer=dict(original.buyer),
        pos=original.place_of_supply,
        lines=lines,
        now=now,
        refund_id=refund_id,
        original_invoice_id=original.id,
        expected_total=amount_paise,
    )


def _issue(
    doc_type: DocumentType,
    series: str,
    *,
    tenant_id: int | None,
    buyer: dict[str, Any],
    pos: str,
    lines: list[tuple[str, str, int, int]],
    now: datetime | None,
    payment: Payment | None = None,
    refund_id: str | None = None,
    original_invoice_id: int | None = None,
    dodo_tax: int | None = None,
    expected_total: int | None = None,
    number_later: bool = False,
) -> Invoice:
    supplier = supplier_snapshot(current_app.config)
    issued_at = now or utcnow()
    issue_date = gst.ist_date(issued_at.replace(tzinfo=UTC))
    fy = gst.financial_year(issue_date)
    breakdowns = [
        gst.compute_tax(taxable, rate_bp, supplier["state_code"], pos)
        for (_d, _s, taxable, rate_bp) in lines
    ]
    sums = gst.totals(breakdowns)
    grand_total, rounding = gst.round_off(sums.total)
    seq, number = allocate_number(series, fy) if not number_later else (None, None)
    invoice = Invoice(
        doc_type=doc_type,
        series=series,
        fy=fy,
        seq=seq,
        number=number,
        issue_date=issue_date,
        issued_at=issued_at,
        payment=payment,
        dodo_refund_id=refund_id,
        original_invoice_id=original_invoice_id,
        supplier=supplier,
        buyer=buyer,
        buyer_gstin=buyer.get("gstin"),
        place_of_supply=pos,
        regime=str(breakdowns[0].regime),
        reverse_charge=False,
        lines=[_line_json(line, tax) for line, tax in zip(lines, breakdowns, strict=True)],
        taxable_total=sums.taxable,
        cgst_total=sums.cgst,
        sgst_total=sums.sgst,
        utgst_total=sums.utgst,
        igst_total=sums.igst,
        round_off=rounding,
        grand_total=grand_total,
        amount_in_words=_amount_in_words(grand_total),
        note=breakdowns[0].note or None,
        dodo_tax_amount=dodo_tax,
        tax_mismatch=_mismatch(dodo_tax, sums.tax_total, expected_total, sums.total),
        pdf_status=PdfStatus.pending,
        retain_until=gst.retain_until(fy, issue_date),
        tenant_id=tenant_id,
    )
    if number_later:
        return invoice
    db.session.add(invoice)
    if db.session.autoflush:  # else (a batch under no_autoflush) the caller flushes once
        db.session.flush()
    return invoice


# Pure, and a month end prints the same few plan totals thousands of times (num2words).
_amount_in_words = functools.lru_cache(maxsize=1024)(gst.amount_in_words)


def _mismatch(dodo_tax: int | None, our_tax: int, expected: int | None, our_total: int) -> bool:
    if dodo_tax is not None and abs(dodo_tax - our_tax) > TAX_TOLERANCE_PAISE:
        return True
    return expected is not None and abs(expected - our_total) > TAX_TOLERANCE_PAISE


def _line_json(line: tuple[str, str, int, int], tax: gst.TaxBreakdown) -> dict[str, Any]:
    description, sac, taxable, rate_bp = line
    return {
        "description": description,
        "sac": sac,
        "quantity": 1,
        "unit": "NOS",
        "rate_paise": taxable,
        "taxable": taxable,
        "rate_bp": rate_bp,
        "cgst": tax.cgst,
        "sgst": tax.sgst,
        "utgst": tax.utgst,
        "igst": tax.igst,
        "cgst_rate_bp": tax.cgst_rate_bp,
        "sgst_rate_bp": tax.sgst_rate_bp,
        "utgst_rate_bp": tax.utgst_rate_bp,
        "igst_rate_bp": tax.igst_rate_bp,
        "total": tax.total,
    }


def _plan_for(subscription: Subscription | None, tenant: Tenant) -> Plan | None:
    if subscription is not None and subscription.plan is not None:
        return subscription.plan
    latest = db.session.scalar(
        select(Subscription)
        .where(Subscription.tenant_id == tenant.id, Subscription.plan_id.is_not(None))
        .order_by(Subscription.id.desc())
    )
    return latest.plan if latest else None


def _line_description(plan: Plan | None) -> str:
    if plan is None:
        return "Woffice WhatsApp CRM subscription"
    period = "monthly" if plan.billing_period == "month" else "annual"
    return f"Woffice {plan.name} plan, {period} subscription"


def retention_date(issued_on: date) -> date:
    """Retain-until for a payment issued on ``issued_on`` (same rule as its invoice)."""
    return gst.retain_until(gst.financial_year(issued_on), issued_on)


def store_pdf(invoice: Invoice, pdf: bytes) -> None:
    """Keep a rendered PDF with its SHA-256 (the number and figures never change)."""
    invoice.pdf = pdf
    invoice.pdf_sha256 = hashlib.sha256(pdf).hexdigest()
    invoice.pdf_status = PdfStatus.rendered
    invoice.pdf_rendered_at = utcnow()
    invoice.pdf_error = None
