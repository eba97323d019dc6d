"""GSTR-1 month export: sections, B2CS aggregation, credit notes, totals = the documents."""

from __future__ import annotations

import csv
import io
from datetime import datetime

import pytest
from sqlalchemy import func, select

from app.extensions import db
from app.models.billing import DocumentType, Invoice, Payment
from app.models.mixins import utcnow
from app.services import gstr1, invoices
from app.services.exceptions import ValidationError
from app.services.gstr1 import month_bounds, rupees, write_csv

# 15 Apr 2026 10:00 IST: April 2026, FY 2026-27.
APRIL = datetime(2026, 4, 15, 4, 30)


def make_payment(tenant, total: int, tax: int | None, n: int) -> Payment:
    payment = Payment(
        dodo_payment_id=f"pay_gstr1_{n}",
        tenant_id=tenant.id,
        status="succeeded",
        currency="INR",
        total_amount=total,
        tax_amount=tax,
        paid_at=APRIL,
        received_at=utcnow(),
    )
    db.session.add(payment)
    db.session.flush()
    return payment


def issue(tenant, total: int, tax: int | None, n: int, *, at: datetime = APRIL) -> Invoice:
    return invoices.issue_invoice(make_payment(tenant, total, tax, n), tenant, None, now=at)


def sections(text: str) -> dict[str, list[list[str]]]:
    """CSV -> {section code: rows after its header}."""
    out: dict[str, list[list[str]]] = {}
    current = None
    skip_header = False
    for row in csv.reader(io.StringIO(text)):
        if row and row[0].startswith("Section "):
            current = row[0].removeprefix("Section ")
            out[current] = []
            skip_header = True
            continue
        if not row or current is None:
            continue
        if skip_header:
            skip_header = False
            continue
        if row[0] == "Note":
            continue
        out[current].append(row)
    return out


@pytest.fixture
def april(app, tenant_a, tenant_b):
    """Acme (B2B, Maharashtra), Bharat Foods made B2C in Delhi (the supplier's state),
    and Karnataka B2C; one credit note each for a B2B and a B2C invoice."""
    docs = {}
    docs["b2b_1"] = issue(tenant_a, 1_179_882, 179_982, 1)
    docs["b2b_2"] = issue(tenant_a, 590_000, 90_000, 2)
    tenant_b.gstin = None
    tenant_b.state_code = "07"
    docs["b2c_delhi_1"] = issue(tenant_b, 118_000, 18_000, 3)
    docs["b2c_delhi_2"] = issue(tenant_b, 236_000, 36_000, 4)
    # A mis-stated Dodo tax: flagged, and our own figures are reported.
    docs["b2c_delhi_odd"] = issue(tenant_b, 118_000, 17_000, 5)
    tenant_b.state_code = "29"
    docs["b2c_ka"] = issue(tenant_b, 59_000, 9_000, 6)
    docs["cn_b2b"] = invoices.issue_credit_note(docs["b2b_1"], "ref_gstr1_1", 589_941, now=APRIL)
    docs["cn_b2c"] = invoices.issue_credit_note(docs["b2c_delhi_1"], "ref_gstr1_2", None, now=APRIL)
    # Next month: not in April's export.
    issue(tenant_a, 118_000, 18_000, 7, at=datetime(2026, 5, 2, 6, 0))
    db.session.flush()
    return docs


def test_month_bounds_and_bad_months():
    assert month_bounds("2026-12") == (datetime(2026, 12, 1).date(), datetime(2027, 1, 1).date())
    for bad in ("", "2026", "2026-13", "abcd-ef", None):
        with pytest.raises(ValidationError):
            month_bounds(bad)


def test_documents_are_sorted_into_sections(april):
    report = gstr1.collect(db.session, "2026-04")
    assert [d.number for d in report.b2b] == [april["b2b_1"].number, april["b2b_2"].number]
    assert {d.id for d in report.b2cs} == {
        april[k].id for k in ("b2c_delhi_1", "b2c_delhi_2", "b2c_delhi_odd", "b2c_ka")
    }
    assert [d.id for d in report.cdnr] == [april["cn_b2b"].id]
    # A credit note on a B2CS invoice is netted into B2CS, not reported in CDNUR (which
    # takes only B2CL and export notes).
    assert [d.id for d in report.b2cs_notes] == [april["cn_b2c"].id]
    assert report.cdnur == []
    assert report.exp == []
    assert april["b2c_delhi_odd"].tax_mismatch


def test_csv_sections_rows_and_exact_totals(april):
    report = gstr1.collect(db.session, "2026-04")
    found = sections(write_csv(report, "07AABCX1234K1ZD"))
    assert list(found) == ["B2B", "B2CS", "EXP", "CDNR", "CDNUR", "TOTALS"]

    b2b = found["B2B"]
    assert [r[2] for r in b2b] == [april["b2b_1"].number, april["b2b_2"].number]
    first = b2b[0]
    assert first[0] == "27AAPFU0939F1ZV"
    assert first[3] == april["b2b_1"].issue_date.isoformat()
    assert first[4] == "11799.00"  # invoice value: 11,798.82 rounded off to the rupee
    assert first[5] == "27-Maharashtra"
    assert first[6] == "N"
    assert first[8:13] == ["18", "9999.00", "1799.82", "0.00", "0.00"]

    # B2CS: one row per place of supply and rate, aggregated (Delhi: CGST + SGST).
    b2cs = {(r[1], r[2]): r for r in found["B2CS"]}
    assert set(b2cs) == {("07-Delhi", "18"), ("29-Karnataka", "18")}
    delhi = b2cs[("07-Delhi", "18")]
    assert delhi[0] == "OE"
    # taxable 1,000 + 2,000 + 1,010 (the odd one: total minus Dodo's tax), less the
    # 1,000 credited on the first one
    assert delhi[3:7] == ["3010.00", "0.00", "270.90", "270.90"]
    assert delhi[8] == "4"
    assert b2cs[("29-Karnataka", "18")][3:7] == ["500.00", "90.00", "0.00", "0.00"]

    cdnr = found["CDNR"][0]
    assert cdnr[2] == april["cn_b2b"].number
    assert cdnr[5:7] == [april["b2b_1"].number, april["b2b_1"].issue_date.isoformat()]
    assert found["CDNUR"] == []

    # Totals equal the sums of the documents' own totals, to the paisa.
    totals = {r[0]: r for r in found["TOTALS"]}
    month = [d for d in april.values()]
    inv = [d for d in month if d.doc_type == DocumentType.invoice]
    notes = [d for d in month if d.doc_type == DocumentType.credit_note]

    def expect(docs):
        return [
            str(len(docs)),
            rupees(sum(d.taxable_total for d in docs)),
            rupees(sum(d.igst_total for d in docs)),
            rupees(sum(d.cgst_total for d in docs)),
            rupees(sum(d.sgst_total + d.utgst_total for d in docs)),
            rupees(sum(d.tax_total for d in docs)),
            rupees(sum(d.grand_total for d in docs)),
        ]

    assert totals["All invoices"][1:] == expect(inv)
    assert totals["All credit notes"][1:] == expect(notes)
    assert totals["B2B invoices"][1:] == expect([april["b2b_1"], april["b2b_2"]])
    net = totals["Net (invoices minus credit notes)"]
    assert net[2] == rupees(sum(d.taxable_total for d in inv) - sum(d.taxable_total for d in notes))
    # And against the database directly (no document of another month).
    db_taxable = db.session.scalar(
        select(func.sum(Invoice.taxable_total)).where(
            Invoice.doc_type == DocumentType.invoice,
            Invoice.issue_date >= report.start,
            Invoice.issue_date < report.end,
        )
    )
    assert totals["All invoices"][2] == rupees(db_taxable)
    # Section rows add up to the totals too (per-line and per-document sums agree).
    b2cs_rows = sum(int(round(float(r[3]) * 100)) for r in found["B2CS"])
    b2cs_invoices = sum(
        april[k].taxable_total for k in ("b2c_delhi_1", "b2c_delhi_2", "b2c_delhi_odd", "b2c_ka")
    )
    assert rupees(b2cs_rows) == rupees(b2cs_invoices - april["cn_b2c"].taxable_total)
    assert totals["B2CS invoices"][2] == rupees(b2cs_invoices)


def test_formula_cells_are_escaped(april):
    april["b2b_1"].buyer = {**april["b2b_1"].buyer, "legal_name": '=HYPERLINK("x")'}
    db.session.flush()
    text = write_csv(gstr1.collect(db.session, "2026-04"))
    assert "'=HYPERLINK" in text
    assert ",=HYPERLINK" not in text


def test_an_empty_month_has_every_section_and_zero_totals(app):
    found = sections(write_csv(gstr1.collect(db.session, "2019-01")))
    assert list(found) == ["B2B", "B2CS", "EXP", "CDNR", "CDNUR", "TOTALS"]
    assert all(not found[k] for k in ("B2B", "B2CS", "EXP", "CDNR", "CDNUR"))
    assert {r[1] for r in found["TOTALS"]} == {"0"}
