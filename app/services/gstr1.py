"""The month's outward supplies for the accountant, organised as GSTR-1 sections.

One month (of issue dates, which are IST dates) of invoices and credit notes, in the
sections the accountant keys into the GST portal or its offline tool:

* **B2B** (table 4A): one row per invoice and tax rate, to registered buyers (GSTIN).
* **B2CS** (table 7): unregistered domestic buyers, aggregated by place of supply and
  rate. Reference C.6: inter-state B2C invoices above the B2CL threshold (reportedly
  Rs. 1 lakh since 2024, unconfirmed) belong in B2CL; they are counted in the notes.
* **EXP** (table 6A): buyers outside India (place of supply 96), one row per invoice.
* **CDNR** / **CDNUR** (table 9B): credit notes to registered / unregistered buyers, with
  the original invoice's number and date.
* **Totals**: count, taxable value, each tax head and value per section, and the net of
  invoices minus credit notes. They are sums of the documents' own totals, so they equal
  what the invoices say (a test checks it).

Amounts are rupees with two decimals and no digit grouping (spreadsheet-friendly).
Text cells that could start a formula are escaped (`csv_safe`). Pure reads: no commit.
"""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.models.billing import DocumentType, Invoice
from app.services import gst
from app.services.contact_import import csv_safe
from app.services.exceptions import ValidationError

B2CL_THRESHOLD_PAISE = 1_00_000_00  # Rs. 1 lakh (reference C.6, unconfirmed)
EXPORT_POS = "96"

B2B_HEADER = (
    "GSTIN/UIN of recipient",
    "Receiver name",
    "Invoice number",
    "Invoice date",
    "Invoice value",
    "Place of supply",
    "Reverse charge",
    "Invoice type",
    "Rate",
    "Taxable value",
    "IGST",
    "CGST",
    "SGST/UTGST",
    "Cess",
)
B2CS_HEADER = (
    "Type",
    "Place of supply",
    "Rate",
    "Taxable value",
    "IGST",
    "CGST",
    "SGST/UTGST",
    "Cess",
    "Invoices",
)
EXP_HEADER = (
    "Export type",
    "Invoice number",
    "Invoice date",
    "Invoice value",
    "Rate",
    "Taxable value",
    "IGST",
)
CDNR_HEADER = (
    "GSTIN/UIN of recipient",
    "Receiver name",
    "Note number",
    "Note date",
    "Note type",
    "Original invoice number",
    "Original invoice date",
    "Place of supply",
    "Reverse charge",
    "Note value",
    "Rate",
    "Taxable value",
    "IGST",
    "CGST",
    "SGST/UTGST",
    "Cess",
)
CDNUR_HEADER = (
    "UR type",
    "Note number",
    "Note date",
    "Note type",
    "Original invoice number",
    "Original invoice date",
    "Place of supply",
    "Note value",
    "Rate",
    "Taxable value",
    "IGST",
    "CGST",
    "SGST/UTGST",
    "Cess",
)
TOTALS_HEADER = (
    "Section",
    "Documents",
    "Taxable value",
    "IGST",
    "CGST",
    "SGST/UTGST",
    "Total tax",
    "Value",
)


@dataclass
class Amounts:
    """Money of one row or section, in paise."""

    taxable: int = 0
    igst: int = 0
    cgst: int = 0
    sgst: int = 0  # SGST and UTGST: one column on the return
    value: int = 0
    count: int = 0

    @property
    def tax(self) -> int:
        return self.igst + self.cgst + self.sgst

    def add_document(self, doc: Invoice) -> None:
        self.taxable += doc.taxable_total
        self.igst += doc.igst_total
        self.cgst += doc.cgst_total
        self.sgst += doc.sgst_total + doc.utgst_total
        self.value += doc.grand_total
        self.count += 1

    def add_line(self, line: dict[str, Any]) -> None:
        self.taxable += int(line["taxable"])
        self.igst += int(line.get("igst") or 0)
        self.cgst += int(line.get("cgst") or 0)
        self.sgst += int(line.get("sgst") or 0) + int(line.get("utgst") or 0)

    def minus(self, other: Amounts) -> Amounts:
        return Amounts(
            self.taxable - other.taxable,
            self.igst - other.igst,
            self.cgst - other.cgst,
            self.sgst - other.sgst,
            self.value - other.value,
            self.count + other.count,
        )


@dataclass
class Gstr1Month:
    """The month's documents sorted into sections, with per-section totals."""

    start: date
    end: date  # exclusive
    b2b: list[Invoice] = field(default_factory=list)
    b2cs: list[Invoice] = field(default_factory=list)
    exp: list[Invoice] = field(default_factory=list)
    cdnr: list[Invoice] = field(default_factory=list)
    cdnur: list[Invoice] = field(default_factory=list)
    # Credit notes on B2CS invoices: not reported in CDNUR (which takes only B2CL and
    # export notes) but netted into the B2CS rows of their place of supply and rate.
    b2cs_notes: list[Invoice] = field(default_factory=list)

    @property
    def b2cs_net(self) -> list[Invoice]:
        return self.b2cs + self.b2cs_notes

    @property
    def label(self) -> str:
        return self.start.strftime("%B %Y")

    @property
    def last_day(self) -> date:
        return self.end - timedelta(days=1)

    def totals(self) -> dict[str, Amounts]:
        """Per section, from the documents' own totals; plus the net outward supply."""
        sections = {
            "B2B invoices": self.b2b,
            "B2CS invoices": self.b2cs,
            "EXP invoices": self.exp,
            "CDNR credit notes": self.cdnr,
            "CDNUR credit notes": self.cdnur,
            "B2CS credit notes (netted in B2CS)": self.b2cs_notes,
        }
        out: dict[str, Amounts] = {}
        for name, docs in sections.items():
            amounts = Amounts()
            for doc in docs:
                amounts.add_document(doc)
            out[name] = amounts
        invoices = _sum(out[k] for k in ("B2B invoices", "B2CS invoices", "EXP invoices"))
        notes = _sum(
            out[k]
            for k in (
                "CDNR credit notes",
                "CDNUR credit notes",
                "B2CS credit notes (netted in B2CS)",
            )
        )
        out["All invoices"] = invoices
        out["All credit notes"] = notes
        out["Net (invoices minus credit notes)"] = invoices.minus(notes)
        return out

    def b2cl_candidates(self) -> list[Invoice]:
        """Inter-state B2C invoices above the B2CL threshold (reported invoice-wise)."""
        return [
            doc for doc in self.b2cs if doc.igst_total and doc.grand_total > B2CL_THRESHOLD_PAISE
        ]


def _sum(items: Iterable[Amounts]) -> Amounts:
    total = Amounts()
    for item in items:
        total.taxable += item.taxable
        total.igst += item.igst
        total.cgst += item.cgst
        total.sgst += item.sgst
        total.value += item.value
        total.count += item.count
    return total


def month_bounds(month: str) -> tuple[date, date]:
    """ "2026-04" -> (1 Apr 2026, 1 May 2026).

    :raises ValidationError: unless ``month`` is YYYY-MM.
    """
    try:
        year, number = (int(part) for part in (month or "").split("-"))
        start = date(year, number, 1)
    except (TypeError, ValueError) as exc:
        raise ValidationError("Choose a month (YYYY-MM).", field="month") from exc
    end = date(year + (number == 12), number % 12 + 1, 1)
    return start, end


def collect(session: Session, month: str) -> Gstr1Month:
    """The month's invoices and credit notes (all tenants), sorted into sections.

    :raises ValidationError: for a malformed month.
    """
    start, end = month_bounds(month)
    docs = session.scalars(
        select(Invoice)
        .where(Invoice.issue_date >= start, Invoice.issue_date < end)
        .order_by(Invoice.doc_type, Invoice.fy, Invoice.seq)
    ).all()
    report = Gstr1Month(start=start, end=end)
    for doc in docs:
        if doc.doc_type == DocumentType.credit_note:
            if doc.buyer_gstin:
                report.cdnr.append(doc)
            elif _ur_type(doc) == "B2CS":
                report.b2cs_notes.append(doc)
            else:
                report.cdnur.append(doc)
        elif doc.buyer_gstin:
            report.b2b.append(doc)
        elif doc.place_of_supply == EXPORT_POS:
            report.exp.append(doc)
        else:
            report.b2cs.append(doc)
    return report


# ------------------------------------------------------------------------------ CSV


def rupees(paise: int) -> str:
    """Paise as plain rupees with two decimals: 1179882 -> "11798.82"."""
    return f"{Decimal(paise).scaleb(-2):.2f}"


def rate(rate_bp: int) -> str:
    """Basis points as a percentage: 1800 -> "18", 250 -> "2.5"."""
    return f"{Decimal(rate_bp).scaleb(-2).normalize():f}"


def _pos(code: str) -> str:
    try:
        return gst.place_of_supply_label(code)
    except ValueError:
        return code


def _by_rate(doc: Invoice) -> list[tuple[int, Amounts]]:
    """The document's lines summed per tax rate (GSTR-1 reports a row per rate)."""
    rates: dict[int, Amounts] = defaultdict(Amounts)
    for line in doc.lines:
        rates[int(line["rate_bp"])].add_line(line)
    return sorted(rates.items())


def _money(amounts: Amounts) -> list[str]:
    return [rupees(amounts.taxable), rupees(amounts.igst), rupees(amounts.cgst)] + [
        rupees(amounts.sgst)
    ]


def _name(doc: Invoice) -> str:
    return csv_safe(str((doc.buyer or {}).get("legal_name") or ""))


def _b2b_rows(docs: list[Invoice]) -> Iterable[list[Any]]:
    for doc in docs:
        for rate_bp, amounts in _by_rate(doc):
            yield [
                doc.buyer_gstin,
                _name(doc),
                doc.number,
                doc.issue_date.isoformat(),
                rupees(doc.grand_total),
                _pos(doc.place_of_supply),
                "Y" if doc.reverse_charge else "N",
                "Regular B2B",
                rate(rate_bp),
                *_money(amounts),
                "0.00",
            ]


def _b2cs_rows(docs: list[Invoice]) -> Iterable[list[Any]]:
    heads: dict[tuple[str, int], Amounts] = defaultdict(Amounts)
    for doc in docs:
        sign = -1 if doc.doc_type == DocumentType.credit_note else 1
        for rate_bp, amounts in _by_rate(doc):
            head = heads[(doc.place_of_supply, rate_bp)]
            head.taxable += sign * amounts.taxable
            head.igst += sign * amounts.igst
            head.cgst += sign * amounts.cgst
            head.sgst += sign * amounts.sgst
            head.count += 1
    for (pos, rate_bp), amounts in sorted(heads.items()):
        yield ["OE", _pos(pos), rate(rate_bp), *_money(amounts), "0.00", amounts.count]


def _exp_rows(docs: list[Invoice]) -> Iterable[list[Any]]:
    for doc in docs:
        for rate_bp, amounts in _by_rate(doc):
            kind = "WPAY" if amounts.igst else "WOPAY"
            yield [
                kind,
                doc.number,
                doc.issue_date.isoformat(),
                rupees(doc.grand_total),
                rate(rate_bp),
                rupees(amounts.taxable),
                rupees(amounts.igst),
            ]


def _original(doc: Invoice) -> list[str]:
    original = doc.original_invoice
    if original is None:
        return ["", ""]
    return [original.number, original.issue_date.isoformat()]


def _cdnr_rows(docs: list[Invoice]) -> Iterable[list[Any]]:
    for doc in docs:
        for rate_bp, amounts in _by_rate(doc):
            yield [
                doc.buyer_gstin,
                _name(doc),
                doc.number,
                doc.issue_date.isoformat(),
                "C",
                *_original(doc),
                _pos(doc.place_of_supply),
                "Y" if doc.reverse_charge else "N",
                rupees(doc.grand_total),
                rate(rate_bp),
                *_money(amounts),
                "0.00",
            ]


def _ur_type(doc: Invoice) -> str:
    if doc.place_of_supply == EXPORT_POS:
        return "EXPWP" if doc.igst_total else "EXPWOP"
    original = doc.original_invoice
    if original is not None and original.igst_total and original.grand_total > B2CL_THRESHOLD_PAISE:
        return "B2CL"
    return "B2CS"


def _cdnur_rows(docs: list[Invoice]) -> Iterable[list[Any]]:
    for doc in docs:
        for rate_bp, amounts in _by_rate(doc):
            yield [
                _ur_type(doc),
                doc.number,
                doc.issue_date.isoformat(),
                "C",
                *_original(doc),
                _pos(doc.place_of_supply),
                rupees(doc.grand_total),
                rate(rate_bp),
                *_money(amounts),
                "0.00",
            ]


def _totals_rows(report: Gstr1Month) -> Iterable[list[Any]]:
    for name, amounts in report.totals().items():
        yield [name, amounts.count, *_money(amounts), rupees(amounts.tax), rupees(amounts.value)]


SECTIONS = (
    ("B2B", "Invoices to registered buyers (table 4A)", B2B_HEADER, "b2b", _b2b_rows),
    (
        "B2CS",
        "Invoices to unregistered buyers by place of supply and rate, net of their "
        "credit notes (table 7)",
        B2CS_HEADER,
        "b2cs_net",
        _b2cs_rows,
    ),
    ("EXP", "Exports (table 6A)", EXP_HEADER, "exp", _exp_rows),
    ("CDNR", "Credit notes to registered buyers (table 9B)", CDNR_HEADER, "cdnr", _cdnr_rows),
    (
        "CDNUR",
        "Credit notes to unregistered buyers: B2CL and exports (table 9B)",
        CDNUR_HEADER,
        "cdnur",
        _cdnur_rows,
    ),
)


def write_csv(report: Gstr1Month, supplier_gstin: str | None = None) -> str:
    """The report as one CSV: a titled block per section, then the totals."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["GSTR-1 outward supplies", report.label])
    writer.writerow(["Supplier GSTIN", supplier_gstin or ""])
    writer.writerow(["Issue dates (IST)", report.start.isoformat(), report.last_day.isoformat()])
    for code, title, header, attr, rows in SECTIONS:
        writer.writerow([])
        writer.writerow([f"Section {code}", title])
        writer.writerow(header)
        writer.writerows(rows(getattr(report, attr)))
    writer.writerow([])
    writer.writerow(["Section TOTALS", "Sums of the documents' own totals"])
    writer.writerow(TOTALS_HEADER)
    writer.writerows(_totals_rows(report))
    candidates = report.b2cl_candidates()
    if candidates:
        writer.writerow([])
        writer.writerow(
            [
                "Note",
                f"{len(candidates)} inter-state B2C invoice(s) above Rs. 1,00,000 may belong "
                "in B2CL (threshold unconfirmed): " + " ".join(d.number for d in candidates),
            ]
        )
    return buffer.getvalue()
