"""Billing screens (issue 6): plans, subscriptions, payments, invoices, credit notes,
the Dodo webhook inbox and the GSTR-1 export for billing staff; a tenant admin's own
invoices. Invoices are made the way production makes them: a signed Dodo event posted
to /webhooks/dodo, then the billing jobs.

The PDF renderer is replaced by fixed bytes (`fake_pdf`) except in
`test_REAL_RENDERER_download_is_a_pdf`, which uses `app.services.invoice_pdf.render`.
"""

from __future__ import annotations

import csv
import io
import re
import sys
import types
from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select

from app.extensions import db
from app.models.audit import AuditEvent
from app.models.billing import (
    BillingEvent,
    DocumentType,
    Invoice,
    PdfStatus,
    Plan,
    Subscription,
)
from tests.fakes import dodo as fake_dodo

BILLING = "billing@xigmapro.example"
FAKE_PDF = b"%PDF-1.4\n% woffice test pdf\n%%EOF\n"


@pytest.fixture
def fake_pdf(monkeypatch):
    """`invoice_pdf.render` returns fixed bytes (the module may not exist yet)."""
    try:
        import app.services.invoice_pdf as module
    except ImportError:
        module = types.ModuleType("app.services.invoice_pdf")
        monkeypatch.setitem(sys.modules, "app.services.invoice_pdf", module)
    monkeypatch.setattr(module, "render", lambda invoice: FAKE_PDF, raising=False)
    return FAKE_PDF


@pytest.fixture
def send(client, run_jobs):
    """Post a signed Dodo event to the app and run the billing jobs."""

    def post(event: dict) -> BillingEvent:
        body, headers = fake_dodo.signed(event)
        response = client.post("/webhooks/dodo", data=body, headers=headers)
        assert response.status_code == 200, response.get_data(as_text=True)
        run_jobs("billing")
        return db.session.scalars(
            select(BillingEvent).where(BillingEvent.webhook_id == headers["webhook-id"])
        ).one()

    return post


def invoice_for(payment_id: str) -> Invoice:
    return db.session.scalars(
        select(Invoice).where(Invoice.payment.has(dodo_payment_id=payment_id))
    ).one()


@pytest.fixture
def invoices(send, fake_pdf, tenant_a, tenant_b):
    """Acme (B2B, Maharashtra) and Bharat Foods (B2B, Karnataka) paid; Acme refunded."""
    send(fake_dodo.payment("pay_view_acme", tenant_slug="acme"))
    send(
        fake_dodo.payment(
            "pay_view_bharat",
            tenant_slug="bharatfoods",
            subscription_id=None,
            total=590_000,
            tax=80_000,  # not 18%: flagged as a tax mismatch
        )
    )
    send(fake_dodo.refund("pay_view_acme", refund_id="ref_view_acme", amount=589_941))
    acme, bharat = invoice_for("pay_view_acme"), invoice_for("pay_view_bharat")
    note = db.session.scalars(
        select(Invoice).where(Invoice.dodo_refund_id == "ref_view_acme")
    ).one()
    return {"acme": acme, "bharat": bharat, "note": note}


def list_numbers(html: str) -> set[str]:
    return set(re.findall(r"(?:INV|CN)/\d\d-\d\d/\d{6}", html))


def staff_urls(docs) -> list[str]:
    acme, note = docs["acme"], docs["note"]
    plan = db.session.scalars(select(Plan)).first()
    event = db.session.scalars(select(BillingEvent)).first()
    return [
        "/invoices/list/",
        f"/invoices/show/{acme.id}",
        f"/invoices/pdf/{acme.id}",
        "/credit-notes/list/",
        f"/credit-notes/show/{note.id}",
        "/payments/list/",
        f"/payments/show/{acme.payment_id}",
        "/subscriptions/list/",
        "/plans/list/",
        f"/plans/show/{plan.id}",
        "/plans/add",
        "/billing-events/list/",
        f"/billing-events/show/{event.id}",
        "/billing/gstr1/",
        "/billing/gstr1/export.csv?month=2026-11",
    ]


# --------------------------------------------------------------------------- access


def test_billing_staff_open_every_billing_screen(client, login, invoices):
    login(BILLING)
    for url in staff_urls(invoices):
        response = client.get(url)
        assert response.status_code == 200, url


@pytest.mark.parametrize(
    "email",
    ["owner@acme.example", "agent@acme.example", "compliance@xigmapro.example"],
)
def test_tenant_users_and_compliance_are_refused(client, login, invoices, email):
    login(email)
    for url in staff_urls(invoices):
        assert client.get(url).status_code == 403, (email, url)


def test_agents_have_no_invoices_screen(client, login, invoices):
    login("agent@acme.example")
    assert client.get("/my-invoices/list/").status_code == 403
    assert client.get(f"/my-invoices/pdf/{invoices['acme'].id}").status_code == 403


# ---------------------------------------------------------------------------- plans


def plan_form(csrf_token, **values) -> dict:
    data = {
        "csrf_token": csrf_token("/plans/add"),
        "name": "Scale",
        "description": "",
        "price": "24,999.50",
        "billing_period": "month",
        "sac_code": "998315",
        "gst_rate": "18",
        "dodo_product_id": "pdt_scale_monthly",
        "active": "y",
    }
    data.update(values)
    return data


def test_plan_add_stores_paise_and_shows_rupees(client, login, csrf_token):
    login(BILLING)
    form = client.get("/plans/add").get_data(as_text=True)
    assert 'value="998315"' in form  # DEFAULT_SAC_CODE
    assert 'value="18"' in form  # default GST rate
    response = client.post("/plans/add", data=plan_form(csrf_token), follow_redirects=True)
    assert response.status_code == 200
    plan = db.session.scalars(select(Plan).where(Plan.name == "Scale")).one()
    assert (plan.price_paise, plan.gst_rate_bp, plan.sac_code) == (2_499_950, 1800, "998315")
    assert "Rs. 24,999.50" in client.get("/plans/list/").get_data(as_text=True)
    edit = client.get(f"/plans/edit/{plan.id}").get_data(as_text=True)
    assert 'value="24999.50"' in edit
    data = plan_form(csrf_token, price="30000", gst_rate="12.5", dodo_product_id="")
    client.post(f"/plans/edit/{plan.id}", data=data)
    db.session.refresh(plan)
    assert (plan.price_paise, plan.gst_rate_bp, plan.dodo_product_id) == (3_000_000, 1250, None)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("price", "-5", "cannot be negative"),
        ("price", "10.555", "at most 2 decimals"),
        ("price", "ten", "as a number"),
        ("price", "", "as a number"),
        ("sac_code", "12", "4 to 8 digits"),
        ("sac_code", "99831A", "4 to 8 digits"),
        ("gst_rate", "30", "at most 28 percent"),
        ("gst_rate", "-1", "cannot be negative"),
        ("dodo_product_id", "pdt bad!", "letters, digits"),
    ],
)
def test_plan_form_errors_are_clear(client, login, csrf_token, field, value, message):
    login(BILLING)
    response = client.post("/plans/add", data=plan_form(csrf_token, **{field: value}))
    assert response.status_code == 200
    assert message in response.get_data(as_text=True)
    assert db.session.scalar(select(func.count()).where(Plan.name == "Scale")) == 0


def test_a_plan_in_use_cannot_be_deleted(client, login, csrf_token):
    login(BILLING)
    used = db.session.scalars(select(Subscription).where(Subscription.plan_id.is_not(None))).first()
    assert used is not None, "the demo data subscribes a tenant to a plan"
    plan = used.plan
    token = csrf_token("/plans/list/")
    response = client.post(
        f"/plans/delete/{plan.id}", data={"csrf_token": token}, follow_redirects=True
    )
    assert response.status_code == 200
    assert "cannot be deleted" in response.get_data(as_text=True)
    assert db.session.get(Plan, plan.id) is not None


# ------------------------------------------------------------------------- invoices


def test_lists_split_invoices_and_credit_notes(client, login, invoices):
    login(BILLING)
    inv = list_numbers(client.get("/invoices/list/").get_data(as_text=True))
    notes = list_numbers(client.get("/credit-notes/list/").get_data(as_text=True))
    assert {invoices["acme"].number, invoices["bharat"].number} <= inv
    assert invoices["note"].number not in inv
    assert invoices["note"].number in notes
    assert invoices["bharat"].number not in notes  # only as "against invoice"
    # A credit note is not an invoice (and vice versa) by URL either.
    assert client.get(f"/invoices/show/{invoices['note'].id}").status_code == 404
    assert client.get(f"/credit-notes/show/{invoices['acme'].id}").status_code == 404


def test_invoice_filters(client, login, invoices, tenant_a, tenant_b):
    login(BILLING)
    acme, bharat = invoices["acme"].number, invoices["bharat"].number
    month = invoices["acme"].issue_date.strftime("%Y-%m")

    def listed(query: str) -> set[str]:
        page = client.get(f"/invoices/list/?{query}")
        assert page.status_code == 200, query
        return list_numbers(page.get_data(as_text=True)) & {acme, bharat}

    assert listed(f"_flt_0_tenant={tenant_a.id}") == {acme}
    assert listed("_flt_0_place_of_supply=Karnataka") == {bharat}
    assert listed("_flt_0_place_of_supply=27") == {acme}
    assert listed("_flt_0_place_of_supply=Atlantis") == set()
    assert listed(f"_flt_0_issue_date={month}") == {acme, bharat}
    assert listed("_flt_0_issue_date=2019-01") == set()
    assert listed("_flt_0_issue_date=not-a-month") == set()
    assert listed(f"_flt_0_fy={invoices['acme'].fy}") == {acme, bharat}
    assert listed(f"_flt_0_fy={invoices['acme'].fy[2:]}") == {acme, bharat}
    assert listed("_flt_0_fy=2019-20") == set()
    assert listed("_flt_0_tax_mismatch=y") == {bharat}
    assert listed("_flt_0_buyer_gstin=b2b") == {acme, bharat}
    assert listed("_flt_0_buyer_gstin=b2c") == set()
    # A B2C invoice: Bharat Foods without a GSTIN.
    invoices["bharat"].buyer_gstin = None
    db.session.commit()
    assert listed("_flt_0_buyer_gstin=b2c") == {bharat}


def test_show_page_has_every_particular(client, login, invoices):
    login(BILLING)
    acme = invoices["acme"]
    page = client.get(f"/invoices/show/{acme.id}").get_data(as_text=True)
    for text in (
        acme.number,
        "07AABCX1234K1ZD",  # supplier GSTIN
        "27AAPFU0939F1ZV",  # buyer GSTIN
        "27-Maharashtra",
        "998315",
        "Rs. 9,999.00",
        "Rs. 1,799.82",
        "Rs. 11,799.00",
        acme.amount_in_words,
        "Reverse charge",
        invoices["note"].number,  # the credit note against it
        'id="pdf-preview"',
        f'src="/invoices/pdf/{acme.id}"',
        f'href="/invoices/pdf/{acme.id}?download=1"',
    ):
        assert text in page, text
    assert 'id="tax-mismatch"' not in page
    bharat = client.get(f"/invoices/show/{invoices['bharat'].id}").get_data(as_text=True)
    assert 'id="tax-mismatch"' in bharat
    assert "Dodo charged Rs. 800.00" in bharat
    note = client.get(f"/credit-notes/show/{invoices['note'].id}").get_data(as_text=True)
    assert acme.number in note and 'id="invoice-original"' in note


def test_pdf_download_has_the_right_type_and_name(client, login, invoices):
    login(BILLING)
    acme = invoices["acme"]
    response = client.get(f"/invoices/pdf/{acme.id}?download=1")
    assert response.status_code == 200
    assert response.mimetype == "application/pdf"
    assert response.data == FAKE_PDF
    filename = acme.number.replace("/", "-") + ".pdf"
    assert re.fullmatch(r"INV-\d\d-\d\d-\d{6}\.pdf", filename)
    assert response.headers["Content-Disposition"] == f"attachment; filename={filename}"
    inline = client.get(f"/invoices/pdf/{acme.id}")
    assert inline.headers["Content-Disposition"].startswith("inline;")
    assert "frame-ancestors 'self'" in inline.headers["Content-Security-Policy"]


def test_pdf_not_rendered_is_a_clear_404_and_can_be_rendered_again(
    client, login, csrf_token, invoices, run_jobs
):
    login(BILLING)
    acme = invoices["acme"]
    acme.pdf_status, acme.pdf, acme.pdf_error = PdfStatus.failed, None, "LayoutError: boom"
    db.session.commit()
    response = client.get(f"/invoices/pdf/{acme.id}?download=1")
    assert response.status_code == 404
    assert "is not ready (failed)" in response.get_data(as_text=True)
    page = client.get(f"/invoices/show/{acme.id}").get_data(as_text=True)
    assert "LayoutError: boom" in page and 'id="pdf-render-again"' in page
    # GET is not allowed, nor a POST without the CSRF token.
    assert client.get(f"/invoices/render/{acme.id}").status_code == 405
    assert client.post(f"/invoices/render/{acme.id}").status_code == 400
    token = csrf_token(f"/invoices/show/{acme.id}")
    response = client.post(f"/invoices/render/{acme.id}", data={"csrf_token": token})
    assert response.status_code == 302
    db.session.refresh(acme)
    assert acme.pdf_status == PdfStatus.pending and acme.pdf_error is None
    run_jobs("billing")
    db.session.refresh(acme)
    assert acme.pdf_status == PdfStatus.rendered
    assert client.get(f"/invoices/pdf/{acme.id}").status_code == 200
    assert db.session.scalar(
        select(func.count()).where(
            AuditEvent.action == "invoice.pdf_requested", AuditEvent.object_id == str(acme.id)
        )
    )


# ------------------------------------------------------------------- tenant invoices


def test_tenant_admin_sees_only_their_invoices(client, login, invoices):
    login("owner@acme.example")
    page = client.get("/my-invoices/list/").get_data(as_text=True)
    numbers = list_numbers(page)
    assert {invoices["acme"].number, invoices["note"].number} <= numbers
    assert invoices["bharat"].number not in numbers
    acme = invoices["acme"]
    show = client.get(f"/my-invoices/show/{acme.id}").get_data(as_text=True)
    assert acme.number in show and "tax-mismatch" not in show and "Render again" not in show
    pdf = client.get(f"/my-invoices/pdf/{acme.id}?download=1")
    assert pdf.status_code == 200 and pdf.mimetype == "application/pdf"
    bharat = invoices["bharat"].id
    assert client.get(f"/my-invoices/show/{bharat}").status_code == 404
    assert client.get(f"/my-invoices/pdf/{bharat}").status_code == 404
    assert client.get(f"/my-invoices/pdf/{bharat}?download=1").status_code == 404
    assert client.get(f"/invoices/pdf/{bharat}").status_code == 403


# ------------------------------------------------------------------------- GSTR-1


def test_gstr1_export_sections_totals_and_audit(client, login, invoices):
    login(BILLING)
    month = invoices["acme"].issue_date.strftime("%Y-%m")
    page = client.get(f"/billing/gstr1/?month={month}").get_data(as_text=True)
    assert 'id="gstr1-totals"' in page
    response = client.get(f"/billing/gstr1/export.csv?month={month}")
    assert response.status_code == 200
    assert response.mimetype == "text/csv"
    assert f"filename=gstr1-{month}.csv" in response.headers["Content-Disposition"]
    rows = list(csv.reader(io.StringIO(response.get_data(as_text=True))))
    titles = [r[0] for r in rows if r and r[0].startswith("Section ")]
    assert titles == [f"Section {s}" for s in ("B2B", "B2CS", "EXP", "CDNR", "CDNUR", "TOTALS")]
    numbers = {r[2] for r in rows if len(r) > 2}
    assert {invoices["acme"].number, invoices["bharat"].number, invoices["note"].number} <= numbers
    totals = {
        r[0]: r for r in rows[rows.index(["Section TOTALS", "Sums of the documents' own totals"]) :]
    }
    docs = db.session.scalars(
        select(Invoice).where(Invoice.issue_date >= invoices["acme"].issue_date.replace(day=1))
    ).all()
    month_docs = [d for d in docs if d.issue_date.strftime("%Y-%m") == month]
    inv = [d for d in month_docs if d.doc_type == DocumentType.invoice]
    taxable = sum(d.taxable_total for d in inv)
    assert totals["All invoices"][1] == str(len(inv))
    assert totals["All invoices"][2] == f"{taxable / 100:.2f}"
    assert totals["All invoices"][7] == f"{sum(d.grand_total for d in inv) / 100:.2f}"
    assert db.session.scalar(
        select(func.count()).where(AuditEvent.action == "billing.gstr1_exported")
    )


def test_gstr1_bad_month_is_a_message_not_an_error(client, login):
    login(BILLING)
    page = client.get("/billing/gstr1/?month=2026-13")
    assert page.status_code == 200 and "Choose a month" in page.get_data(as_text=True)
    response = client.get("/billing/gstr1/export.csv?month=nope", follow_redirects=True)
    assert response.status_code == 200 and "Choose a month" in response.get_data(as_text=True)


# ------------------------------------------------------------------- webhook inbox


def test_inbox_reprocess_applies_a_deferred_event(
    client, login, csrf_token, send, fake_pdf, run_jobs
):
    # A refund for a payment not seen yet: kept with its reason (order not guaranteed).
    refund = send(fake_dodo.refund("pay_view_late", refund_id="ref_view_late", amount=None))
    assert refund.state == "failed" and "not invoiced yet" in refund.error
    login(BILLING)
    listing = client.get("/billing-events/list/?_flt_0_processed_at=failed").get_data(as_text=True)
    assert "refund.succeeded" in listing
    show = client.get(f"/billing-events/show/{refund.id}").get_data(as_text=True)
    assert "not invoiced yet" in show and "&#34;refund_id&#34;: &#34;ref_view_late&#34;" in show
    # The payment arrives; a person reprocesses the refund.
    send(fake_dodo.payment("pay_view_late", tenant_slug="acme"))
    assert client.post(f"/billing-events/reprocess/{refund.id}").status_code == 400  # no CSRF
    token = csrf_token(f"/billing-events/show/{refund.id}")
    response = client.post(f"/billing-events/reprocess/{refund.id}", data={"csrf_token": token})
    assert response.status_code == 302
    db.session.refresh(refund)
    assert refund.error is None and refund.state == "pending"
    run_jobs("billing")
    db.session.refresh(refund)
    assert refund.state == "processed"
    assert db.session.scalars(
        select(Invoice).where(Invoice.dodo_refund_id == "ref_view_late")
    ).one()
    audited = db.session.scalars(
        select(AuditEvent).where(AuditEvent.action == "billing_event.reprocess")
    ).all()
    assert [a.object_id for a in audited] == [str(refund.id)]


def test_inbox_payload_has_no_card_or_upi_details(client, login, send, fake_pdf):
    event = send(fake_dodo.payment("pay_view_sensitive", tenant_slug="acme"))
    login(BILLING)
    page = client.get(f"/billing-events/show/{event.id}").get_data(as_text=True)
    assert "pay_view_sensitive" in page and "processed" in page
    for value in ("4242", "asha.rao@okhdfcbank", "pm_card_secret_123", "Asha Rao"):
        assert value not in page
    assert 'id="event-reprocess"' not in page  # processed: nothing to reprocess


# ----------------------------------------------------------- the real PDF renderer


def test_REAL_RENDERER_download_is_a_pdf(client, login, send, tenant_a):  # noqa: N802
    """Uses app.services.invoice_pdf.render itself (no fake): a real PDF comes back."""
    pytest.importorskip("app.services.invoice_pdf")
    send(fake_dodo.payment("pay_view_real_pdf", tenant_slug="acme", at=datetime.now(UTC)))
    invoice = invoice_for("pay_view_real_pdf")
    assert invoice.pdf_status == PdfStatus.rendered, invoice.pdf_error
    login(BILLING)
    response = client.get(f"/invoices/pdf/{invoice.id}?download=1")
    assert response.status_code == 200
    assert response.data.startswith(b"%PDF")
    assert response.headers["Content-Disposition"].endswith(
        invoice.number.replace("/", "-") + ".pdf"
    )
