"""Invoice PDFs: every Rule 46 / Rule 53 particular on the page, stable bytes, the job.

Invoices are issued through `issue_invoice` / `issue_credit_note` on rows this test
writes (rolled back afterwards), rendered, and read back with pypdf.
"""

from __future__ import annotations

import hashlib
import io
import re
from datetime import datetime

import pypdf
import pytest
from sqlalchemy import select
from stdnum import luhn

from app.extensions import db
from app.jobs.billing import render_invoice_pdf
from app.models.billing import (
    BillingPeriod,
    DocumentType,
    Invoice,
    Payment,
    PdfStatus,
    Plan,
    Subscription,
    SubscriptionStatus,
)
from app.models.tenant import Tenant, TenantStatus
from app.services import invoice_pdf
from app.services.gst import EXPORT_NOTE
from app.services.invoices import issue_credit_note, issue_invoice

# 31 Mar 2026 20:00 UTC is 1 Apr 2026 in India: the invoice is dated (and numbered) by IST.
ISSUED_AT = datetime(2026, 3, 31, 20, 0)
ISSUE_DATE = "01-04-2026"
ACME_ADDRESS = "14 Marine Lines, Mumbai, 400002"


def gstin(prefix14: str) -> str:
    """A GSTIN with its check character (for a synthetic Chandigarh supplier)."""
    return prefix14 + luhn.calc_check_digit(prefix14, "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ")


def pdf_text(pdf: bytes) -> str:
    reader = pypdf.PdfReader(io.BytesIO(pdf))
    return " ".join(" ".join(page.extract_text().split()) for page in reader.pages)


def pages(pdf: bytes) -> int:
    return len(pypdf.PdfReader(io.BytesIO(pdf)).pages)


@pytest.fixture
def plan(app) -> Plan:
    plan = Plan(
        name="Growth (PDF test)",
        price_paise=999_900,
        billing_period=BillingPeriod.month,
        sac_code="998315",
        gst_rate_bp=1800,
    )
    db.session.add(plan)
    db.session.flush()
    return plan


def make_tenant(slug: str, state_code: str, city: str, gstin_: str | None = None) -> Tenant:
    tenant = Tenant(
        name=f"{slug.title()} Shop",
        legal_name=f"{slug.title()} Shop Proprietorship",
        slug=slug,
        status=TenantStatus.active,
        contact_email=f"accounts@{slug}.example",
        contact_phone="+911123456789",
        gstin=gstin_,
        address_line1="7 Test Road",
        city=city,
        state_code=state_code,
        postal_code="110001",
    )
    db.session.add(tenant)
    db.session.flush()
    return tenant


def invoice_for(
    tenant: Tenant,
    plan: Plan,
    *,
    total: int = 1_179_882,
    tax: int | None = 179_982,
    billing: dict | None = None,
) -> Invoice:
    """A subscription and a succeeded payment of ``tenant``, invoiced."""
    subscription = Subscription(
        tenant_id=tenant.id,
        plan_id=plan.id,
        dodo_subscription_id=f"sub_pdf_{tenant.slug}",
        status=SubscriptionStatus.active,
    )
    payment = Payment(
        tenant_id=tenant.id,
        dodo_payment_id=f"pay_pdf_{tenant.slug}_{total}",
        status="succeeded",
        currency="INR",
        total_amount=total,
        tax_amount=tax,
        paid_at=ISSUED_AT,
    )
    db.session.add_all([subscription, payment])
    db.session.flush()
    return issue_invoice(payment, tenant, subscription, billing=billing, now=ISSUED_AT)


def assert_supplier_and_common(text: str, invoice: Invoice) -> None:
    """Rule 46 (a)-(c), (g)-(m), (p), (q) and the e-invoice signature proviso."""
    for particular in (
        "Xigmapro Software Pvt. Ltd.",
        "4th Floor, 21 Nehru Place, New Delhi, Delhi 110019",
        "GSTIN: 07AABCX1234K1ZD",
        "PAN: AABCX1234K",
        f"No.: {invoice.number}",
        f"Date of issue: {ISSUE_DATE}",
        "998315",
        "Woffice Growth (PDF test) plan, monthly subscription",
        "Whether tax is payable on reverse charge: No",
        "computer-generated invoice",
        "does not require a signature",
        "Authorised signatory: Meera Iyer, Director",
        invoice.amount_in_words,
    ):
        assert particular in text, particular


# ------------------------------------------------------------------------------ B2B


def test_b2b_inter_state_invoice_has_every_rule_46_particular(tenant_a, plan):
    invoice = invoice_for(tenant_a, plan)
    pdf = invoice_pdf.render(invoice)
    text = pdf_text(pdf)

    assert pages(pdf) == 1
    assert text.startswith("TAX INVOICE")
    assert_supplier_and_common(text, invoice)
    assert "State: Delhi State code: 07" in text  # supplier
    for particular in (
        "Acme Traders Private Limited",
        ACME_ADDRESS,
        "GSTIN: 27AAPFU0939F1ZV",
        "State: Maharashtra State code: 27",
        "Place of supply: 27-Maharashtra",
        "Qty",
        "NOS",
        "Taxable value (Rs.)",
        "9,999.00",  # rate and taxable value
        "IGST rate",
        "18%",
        "1,799.82",  # IGST amount
        "IGST @ 18% 1,799.82",
        "Round off 0.18",
        "Grand total (Rs.) 11,799.00",
        "Rupees Eleven Thousand Seven Hundred Ninety-Nine Only",
    ):
        assert particular in text, particular
    # Only the heads that apply.
    assert "CGST" not in text and "SGST" not in text and "UTGST" not in text


def test_pdf_metadata_and_no_external_resources(tenant_a, plan):
    invoice = invoice_for(tenant_a, plan)
    pdf = invoice_pdf.render(invoice)
    meta = pypdf.PdfReader(io.BytesIO(pdf)).metadata

    assert meta.title == f"Tax invoice {invoice.number}"
    assert meta.author == "Xigmapro Software Pvt. Ltd."
    assert meta["/CreationDate"].startswith("D:20260401")
    assert b"/URI" not in pdf and b"/Launch" not in pdf and b"/GoTo" not in pdf


def test_rendering_twice_gives_identical_bytes(tenant_a, plan):
    invoice = invoice_for(tenant_a, plan)
    first = invoice_pdf.render(invoice)
    db.session.expire_all()
    again = db.session.get(Invoice, invoice.id)
    assert invoice_pdf.render(again) == first


# ------------------------------------------------------------------------------ B2C


def test_b2c_intra_state_invoice_prints_unregistered_and_the_state(plan):
    tenant = make_tenant("dilli", "07", "New Delhi")
    invoice = invoice_for(tenant, plan)
    pdf = invoice_pdf.render(invoice)
    text = pdf_text(pdf)

    assert pages(pdf) == 1
    assert_supplier_and_common(text, invoice)
    for particular in (
        "Dilli Shop Proprietorship",
        "7 Test Road, New Delhi, 110001",
        "GSTIN: Unregistered",
        "State: Delhi State code: 07",  # OIDAR proviso: the state, whatever the value
        "Place of supply: 07-Delhi",
        "CGST rate",
        "SGST rate",
        "9%",
        "899.91",
        "CGST @ 9% 899.91",
        "SGST @ 9% 899.91",
        "Total taxable value 9,999.00",
        "Grand total (Rs.) 11,799.00",
    ):
        assert particular in text, particular
    assert "IGST" not in text and "UTGST" not in text


def test_union_territory_supplier_prints_utgst(app, plan, monkeypatch):
    monkeypatch.setitem(app.config, "SUPPLIER_GSTIN", gstin("04AABCX1234K1Z"))
    monkeypatch.setitem(app.config, "SUPPLIER_STATE_CODE", "04")
    monkeypatch.setitem(app.config, "SUPPLIER_ADDRESS", "SCO 10, Sector 17, Chandigarh 160017")
    tenant = make_tenant("sukhna", "04", "Chandigarh")
    invoice = invoice_for(tenant, plan)
    text = pdf_text(invoice_pdf.render(invoice))

    assert invoice.regime == "intra_ut"
    assert "Place of supply: 04-Chandigarh" in text
    assert "State: Chandigarh State code: 04" in text
    assert "CGST @ 9% 899.91" in text and "UTGST @ 9% 899.91" in text
    assert "SGST @" not in text and "IGST" not in text


def test_export_prints_the_lut_note(plan):
    tenant = make_tenant("overseas", "07", "New Delhi")
    invoice = invoice_for(tenant, plan, total=999_900, tax=0, billing={"country": "US"})
    text = pdf_text(invoice_pdf.render(invoice))

    assert invoice.regime == "export"
    assert "Place of supply: 96-Other Country" in text
    assert " ".join(EXPORT_NOTE.split()) in text
    assert "IGST @ 0% 0.00" in text
    assert "Grand total (Rs.) 9,999.00" in text


def test_tax_mismatch_is_never_shown_to_the_customer(tenant_a, plan):
    # Dodo says Rs. 1,000.00 of tax: not what 18% of the taxable value comes to.
    invoice = invoice_for(tenant_a, plan, total=1_100_000, tax=100_000)
    text = pdf_text(invoice_pdf.render(invoice))

    assert invoice.tax_mismatch
    assert "mismatch" not in text.lower() and "dodo" not in text.lower()
    assert "1,000.00" not in text  # Dodo's own tax figure


def test_non_latin_text_is_folded_not_dropped(plan):
    tenant = make_tenant("cafe", "07", "New Delhi")
    tenant.legal_name = "Café Şükran – “Delhi”"
    db.session.flush()
    text = pdf_text(invoice_pdf.render(invoice_for(tenant, plan)))
    assert "Café Sükran – “Delhi”" in text  # Ş is outside Windows-1252


# ------------------------------------------------------------------------ credit note


def test_credit_note_names_the_original_invoice_and_date(tenant_a, plan):
    original = invoice_for(tenant_a, plan)
    note = issue_credit_note(original, "ref_pdf_1", 589_941, now=ISSUED_AT)
    pdf = invoice_pdf.render(note)
    text = pdf_text(pdf)

    assert note.doc_type == DocumentType.credit_note
    assert pages(pdf) == 1
    assert text.startswith("CREDIT NOTE")
    assert f"Credit note No.: {note.number}" in text
    assert f"Original invoice: {original.number} dated {ISSUE_DATE}" in text
    assert "GSTIN: 27AAPFU0939F1ZV" in text and "GSTIN: 07AABCX1234K1ZD" in text
    assert "Place of supply: 27-Maharashtra" in text
    assert "Partial refund" in text and "IGST @ 18%" in text
    assert note.amount_in_words in text
    assert pypdf.PdfReader(io.BytesIO(pdf)).metadata.title == f"Credit note {note.number}"


def test_many_lines_continue_on_a_second_page(tenant_a, plan):
    invoice = invoice_for(tenant_a, plan)
    invoice.lines = [dict(invoice.lines[0], description=f"Line {n}") for n in range(60)]
    pdf = invoice_pdf.render(invoice)
    assert pages(pdf) > 1
    assert "Continued on the next page" in pdf_text(pdf)
    assert "Line 59" in pdf_text(pdf)


# ------------------------------------------------------------------------------- job


def test_job_stores_pdf_and_sha256(tenant_a, plan):
    invoice = invoice_for(tenant_a, plan)
    number = invoice.number
    db.session.commit()

    assert render_invoice_pdf(invoice_id=invoice.id) == {"rendered": 1, "bytes": len(invoice.pdf)}

    stored = db.session.scalar(select(Invoice).where(Invoice.id == invoice.id))
    assert stored.pdf_status == PdfStatus.rendered
    assert stored.pdf_sha256 == hashlib.sha256(stored.pdf).hexdigest()
    assert stored.pdf == invoice_pdf.render(stored)
    assert stored.number == number and stored.pdf_error is None
    assert render_invoice_pdf(invoice_id=invoice.id) == {"skipped": 1}


def test_failed_render_keeps_the_number_and_a_rerun_succeeds(tenant_a, plan, monkeypatch):
    invoice = invoice_for(tenant_a, plan)
    number, invoice_id = invoice.number, invoice.id
    db.session.commit()

    def broken(_invoice: Invoice) -> bytes:
        raise RuntimeError("font cache unreadable")

    monkeypatch.setattr(invoice_pdf, "render", broken)
    assert render_invoice_pdf(invoice_id=invoice_id) == {"failed": 1}
    db.session.expire_all()
    failed = db.session.get(Invoice, invoice_id)
    assert failed.pdf_status == PdfStatus.failed
    assert failed.pdf_error == "RuntimeError: font cache unreadable"
    assert failed.number == number and failed.pdf is None and failed.pdf_sha256 is None

    monkeypatch.undo()
    assert render_invoice_pdf(invoice_id=invoice_id)["rendered"] == 1
    db.session.expire_all()
    done = db.session.get(Invoice, invoice_id)
    assert done.pdf_status == PdfStatus.rendered and done.pdf_error is None
    assert done.number == number
    assert re.fullmatch(r"[0-9a-f]{64}", done.pdf_sha256)


def test_job_runs_from_the_billing_queue(tenant_a, plan, run_jobs):
    from app.jobs import enqueue

    invoice = invoice_for(tenant_a, plan)
    db.session.commit()
    enqueue("billing", render_invoice_pdf, invoice_id=invoice.id)
    assert run_jobs("billing") >= 1
    db.session.expire_all()
    assert db.session.get(Invoice, invoice.id).pdf_status == PdfStatus.rendered
