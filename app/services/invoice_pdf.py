"""The PDF of a GST tax invoice or credit note (Rule 46 / Rule 53), drawn with ReportLab.

Everything printed comes from the invoice row (its frozen supplier, buyer and lines), so
re-rendering an old invoice gives the same document. Rendering is deterministic: ReportLab
runs in invariant mode, the creation date is the issue date and the producer is fixed, so
the same invoice always yields the same bytes and its stored SHA-256 stays valid.

Fonts: the standard Helvetica pair (not embedded, nothing to load per render) and money as
"Rs." rather than the rupee sign. Embedding a TTF that has the rupee glyph (DejaVu Sans)
costs a per-document font subset (measured here: ~4 ms and ~20 KB more per invoice, four
times this renderer's whole cost); "Rs." is also what the invoice email and
`gst.format_inr(symbol=True)` use. Text outside Windows-1252 is folded to ASCII (GST
registrations are in English, so this is a safety net, not a feature).

`tax_mismatch` and Dodo's own tax figure are internal: never printed.
"""

from __future__ import annotations

import functools
import io
import unicodedata
from collections.abc import Iterable
from datetime import date
from typing import Any

from reportlab import rl_config
from reportlab.lib.pagesizes import A4
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfgen.canvas import Canvas

from app.models.billing import DocumentType, Invoice
from app.services import gst

# Binary (zlib only) streams: ReportLab's pure-Python ASCII85 pass was a third of the
# render time, and 7-bit-clean PDFs buy nothing. This module is ReportLab's only user.
rl_config.useA85 = 0

FONT, BOLD = "Helvetica", "Helvetica-Bold"
PAGE_W, PAGE_H = A4
MARGIN = 40.0
RIGHT = PAGE_W - MARGIN
WIDTH = RIGHT - MARGIN
BOTTOM = 60.0
PRODUCER = "Woffice Back Office"
COMPUTER_GENERATED = (
    "This is a computer-generated invoice issued electronically; it does not require a signature."
)

# Which tax heads a regime levies (gst.regime_for): only those are printed.
HEADS_BY_REGIME: dict[str, tuple[str, ...]] = {
    "intra": ("cgst", "sgst"),
    "intra_ut": ("cgst", "utgst"),
    "inter": ("igst",),
    "export": ("igst",),
}
HEAD_LABELS = {"cgst": "CGST", "sgst": "SGST", "utgst": "UTGST", "igst": "IGST"}

# Items table: (header, width, align); the description takes what is left.
ITEM_COLUMNS: tuple[tuple[str, float, str], ...] = (
    ("#", 18, "l"),
    ("Description of service", 0, "l"),
    ("SAC", 48, "l"),
    ("Qty", 30, "r"),
    ("Unit", 34, "l"),
    ("Rate (Rs.)", 70, "r"),
    ("Taxable value (Rs.)", 90, "r"),
)
_FIXED = sum(w for _h, w, _a in ITEM_COLUMNS)
ITEM_WIDTHS = tuple(w or WIDTH - _FIXED for _h, w, _a in ITEM_COLUMNS)


def render(invoice: Invoice) -> bytes:
    """The invoice's PDF (one A4 page for a normal invoice), identical on every call."""
    buf = io.BytesIO()
    canvas = Canvas(buf, pagesize=A4, invariant=1, pageCompression=1)
    _metadata(canvas, invoice)
    page = _Page(canvas)
    y = _header(page, invoice)
    y = _items(page, invoice, y)
    y = _tax_table(page, invoice, y)
    y = _totals(page, invoice, y)
    _footer(page, invoice, y)
    page.finish()
    canvas.save()
    return buf.getvalue()


# ------------------------------------------------------------------------ text helpers


def clean(value: Any) -> str:
    """Printable text: Windows-1252 as is, anything else folded to ASCII (or "?")."""
    text = "" if value is None else str(value)
    if not text.isprintable():  # tabs, newlines, control characters
        text = "".join(ch if ch.isprintable() else " " for ch in text)
    try:
        text.encode("cp1252")
    except UnicodeEncodeError:
        text = "".join(ch if _encodable(ch) else _fold(ch) for ch in text)
    return text


def _fold(ch: str) -> str:
    """A character outside Windows-1252 as its ASCII base letter ("Ş" -> "S"), else "?"."""
    base = "".join(
        c
        for c in unicodedata.normalize("NFKD", ch)
        if _encodable(c) and not unicodedata.combining(c)
    )
    return base or "?"


def _encodable(ch: str) -> bool:
    try:
        ch.encode("cp1252")
    except UnicodeEncodeError:
        return False
    return True


def wrap(text: str, font: str, size: float, width: float) -> list[str]:
    """Greedy word wrap to ``width`` points (a word longer than a line is cut)."""
    if "\n" not in text and text_width(text, font, size) <= width:
        return [text]
    space = text_width(" ", font, size)
    lines: list[str] = []
    for paragraph in text.split("\n"):
        current: list[str] = []
        used = 0.0
        for word in paragraph.split():
            w = text_width(word, font, size)
            if current and used + space + w <= width:
                current.append(word)
                used += space + w
                continue
            if current:
                lines.append(" ".join(current))
            while w > width and len(word) > 1:
                cut = max(1, int(len(word) * width / w))
                lines.append(word[:cut])
                word = word[cut:]
                w = text_width(word, font, size)
            current, used = [word], w
        lines.append(" ".join(current))
    return lines


@functools.lru_cache(maxsize=4096)
def money(paise: int) -> str:
    """Indian digit grouping, two decimals (the "Rs." is in the column header)."""
    return gst.format_inr(int(paise))


def percent(rate_bp: int) -> str:
    """Basis points as a percentage: 900 -> "9%", 250 -> "2.5%"."""
    return f"{rate_bp / 100:g}%"


def day(value: date) -> str:
    """Date of issue as dd-mm-yyyy."""
    return value.strftime("%d-%m-%Y")


def heads(invoice: Invoice) -> tuple[str, ...]:
    """The tax heads printed: those of the regime, plus any head that carries tax."""
    base = HEADS_BY_REGIME.get(invoice.regime, ())
    extra = tuple(
        h for h in ("cgst", "sgst", "utgst", "igst") if h not in base and _head_total(invoice, h)
    )
    return base + extra


def _head_total(invoice: Invoice, head: str) -> int:
    return int(getattr(invoice, f"{head}_total") or 0)


def _head_rate(invoice: Invoice, head: str) -> str:
    """The head's rate over all lines ("9%"), or "" when lines differ."""
    rates = {int(line.get(f"{head}_rate_bp") or 0) for line in invoice.lines}
    return percent(rates.pop()) if len(rates) == 1 else ""


# ------------------------------------------------------------------------------ page


class _Widths(dict[str, float]):
    """Glyph widths in em; an unknown character counts as a digit's width."""

    def __missing__(self, key: str) -> float:
        return 0.556


def _tables(font: str) -> tuple[dict[int, str], _Widths]:
    """(escape table for PDF strings, glyph widths) of a standard WinAnsi font."""
    widths = pdfmetrics.getFont(font).widths
    escape: dict[int, str] = {}
    width = _Widths()
    for code in range(32, 256):
        try:
            ch = bytes([code]).decode("cp1252")
        except UnicodeDecodeError:
            continue
        if ch in "()\\":
            escape[ord(ch)] = "\\" + ch
        elif code >= 127:
            escape[ord(ch)] = f"\\{code:03o}"
        width[ch] = widths[code] / 1000
    return escape, width


# Built once at import: nothing font-related happens per render.
ESCAPE, _HELVETICA = _tables(FONT)
WIDTHS = {FONT: _HELVETICA, BOLD: _tables(BOLD)[1]}


def text_width(text: str, font: str, size: float) -> float:
    """Width in points of ``text`` (already `clean`) in a standard font."""
    return sum(map(WIDTHS[font].__getitem__, text)) * size


class _Page:
    """One page's text as raw PDF operators in one BT/ET block.

    ReportLab's drawString formats and escapes every string in pure Python (its C
    accelerator is a separate package) and was most of the render time; these strings
    are all WinAnsi text in two standard fonts, so they are written directly.
    """

    def __init__(self, canvas: Canvas) -> None:
        self.c = canvas
        # Registers both fonts with the document (page resources) and learns their names.
        self.names = {f: canvas._doc.getInternalFontName(f) for f in (FONT, BOLD)}
        self.ops: list[str] = []
        self.font: tuple[str, float] | None = None

    def text(self, x: float, y: float, value: str, font: str = FONT, size: float = 9) -> None:
        if self.font != (font, size):
            self.ops.append(f"{self.names[font]} {size:g} Tf")
            self.font = (font, size)
        self.ops.append(f"1 0 0 1 {x:.2f} {y:.2f} Tm ({value.translate(ESCAPE)}) Tj")

    def right(self, x: float, y: float, value: str, font: str = FONT, size: float = 9) -> None:
        self.text(x - text_width(value, font, size), y, value, font, size)

    def rule(self, y: float, x0: float = MARGIN, x1: float = RIGHT) -> None:
        self.c.addLiteral(f"{x0:.2f} {y:.2f} m {x1:.2f} {y:.2f} l S")

    def finish(self) -> None:
        """Write the page's text and end the page."""
        self.c.addLiteral("BT\n" + "\n".join(self.ops) + "\nET")
        self.c.showPage()
        self.ops = []
        self.font = None

    def room(self, y: float, needed: float) -> float:
        """``y``, or the top of a new page when less than ``needed`` points are left."""
        if y - needed >= BOTTOM:
            return y
        self.text(MARGIN, BOTTOM - 20, "Continued on the next page", size=8)
        self.finish()
        return PAGE_H - MARGIN


def _metadata(canvas: Canvas, invoice: Invoice) -> None:
    kind = "Tax invoice" if invoice.doc_type == DocumentType.invoice else "Credit note"
    canvas.setTitle(f"{kind} {invoice.number}")
    canvas.setAuthor(clean(invoice.supplier.get("legal_name")))
    canvas.setSubject(f"{kind} {invoice.number} to {clean(invoice.buyer.get('legal_name'))}")
    canvas.setCreator(PRODUCER)
    canvas.setProducer(PRODUCER)
    issued = invoice.issue_date
    # Invariant mode fixes the timestamp; print the issue date instead of 2000-01-01.
    canvas.setDateFormatter(lambda *_ts: f"D:{issued:%Y%m%d}000000+05'30'")


# ---------------------------------------------------------------------------- blocks


def _header(page: _Page, invoice: Invoice) -> float:
    supplier, buyer = invoice.supplier, invoice.buyer
    is_invoice = invoice.doc_type == DocumentType.invoice
    top = PAGE_H - MARGIN
    page.right(RIGHT, top - 4, "TAX INVOICE" if is_invoice else "CREDIT NOTE", BOLD, 16)
    y = top - 22
    label = "Invoice No." if is_invoice else "Credit note No."
    for line in (
        f"{label}: {invoice.number}",
        f"Date of issue: {day(invoice.issue_date)}",
        *_original(invoice),
        f"Place of supply: {gst.place_of_supply_label(invoice.place_of_supply)}",
    ):
        page.right(RIGHT, y, line)
        y -= 12
    left_w = WIDTH * 0.55
    ys = top - 4
    page.text(MARGIN, ys, clean(supplier.get("legal_name")), BOLD, 12)
    ys -= 14
    for line in _party_lines(supplier, left_w, registered_label=None):
        page.text(MARGIN, ys, line)
        ys -= 11
    y = min(y, ys) - 6
    page.rule(y)
    y -= 14
    page.text(MARGIN, y, "Details of recipient (billed to)", BOLD, 9)
    y -= 13
    page.text(MARGIN, y, clean(buyer.get("legal_name")), BOLD, 10)
    y -= 12
    for line in _party_lines(buyer, WIDTH, registered_label="Unregistered"):
        page.text(MARGIN, y, line)
        y -= 11
    return y - 4


def _original(invoice: Invoice) -> list[str]:
    """Rule 53: the credit note names the invoice it adjusts, with its date."""
    original = invoice.original_invoice
    if invoice.doc_type != DocumentType.credit_note or original is None:
        return []
    return [f"Original invoice: {original.number} dated {day(original.issue_date)}"]


def _party_lines(party: dict[str, Any], width: float, *, registered_label: str | None) -> list[str]:
    """Address, GSTIN (or "Unregistered"), PAN, state name and code, wrapped."""
    lines = wrap(clean(party.get("address")), FONT, 9, width) if party.get("address") else []
    gstin = party.get("gstin")
    ids = f"GSTIN: {gstin}" if gstin else f"GSTIN: {registered_label or '-'}"
    if party.get("pan"):
        ids += f"    PAN: {party['pan']}"
    lines.append(ids)
    lines.append(
        f"State: {clean(party.get('state_name'))}    State code: {party.get('state_code')}"
    )
    if registered_label is None and party.get("email"):
        lines.append(f"Email: {clean(party['email'])}")
    return lines


def _row(
    page: _Page,
    y: float,
    cells: Iterable[str],
    widths: Iterable[float],
    aligns: Iterable[str],
    font: str = FONT,
) -> None:
    x = MARGIN
    for cell, w, align in zip(cells, widths, aligns, strict=True):
        if align == "r":
            page.right(x + w - 3, y, cell, font, 8)
        else:
            page.text(x + 3, y, cell, font, 8)
        x += w


def _items(page: _Page, invoice: Invoice, y: float) -> float:
    aligns = [a for _h, _w, a in ITEM_COLUMNS]
    desc_w = ITEM_WIDTHS[1] - 6
    y = page.room(y, 40)
    page.rule(y)
    _row(page, y - 10, [h for h, _w, _a in ITEM_COLUMNS], ITEM_WIDTHS, aligns, BOLD)
    y -= 14
    page.rule(y)
    for n, line in enumerate(invoice.lines, start=1):
        desc = wrap(clean(line.get("description")), FONT, 8, desc_w)
        y = page.room(y, 12 * len(desc) + 4)
        cells = [
            str(n),
            desc[0],
            clean(line.get("sac")),
            str(line.get("quantity", 1)),
            clean(line.get("unit", "")),
            money(line.get("rate_paise", line["taxable"])),
            money(line["taxable"]),
        ]
        _row(page, y - 10, cells, ITEM_WIDTHS, aligns)
        for k, more in enumerate(desc[1:], start=1):
            page.text(MARGIN + ITEM_WIDTHS[0] + 3, y - 10 - 10 * k, more, size=8)
        y -= 10 * len(desc) + 4
    page.rule(y)
    return y - 10


def _tax_table(page: _Page, invoice: Invoice, y: float) -> float:
    """Tax per line per head: SAC, taxable value, then rate and amount of each head."""
    printed = heads(invoice)
    headers = ["SAC", "Taxable value (Rs.)"]
    for head in printed:
        headers += [f"{HEAD_LABELS[head]} rate", f"{HEAD_LABELS[head]} amount (Rs.)"]
    headers.append("Total tax (Rs.)")
    n_heads = len(printed)
    head_w = (WIDTH - 60 - 100 - 90) / max(n_heads, 1)
    widths = [60.0, 100.0]
    for _ in printed:
        widths += [head_w * 0.38, head_w * 0.62]
    widths.append(90.0)
    aligns = ["l"] + ["r"] * (len(widths) - 1)
    y = page.room(y, 40)
    page.rule(y)
    _row(page, y - 10, headers, widths, aligns, BOLD)
    y -= 14
    page.rule(y)
    for line in invoice.lines:
        y = page.room(y, 14)
        cells = [clean(line.get("sac")), money(line["taxable"])]
        tax = 0
        for head in printed:
            amount = int(line.get(head) or 0)
            tax += amount
            cells += [percent(int(line.get(f"{head}_rate_bp") or 0)), money(amount)]
        cells.append(money(tax))
        _row(page, y - 10, cells, widths, aligns)
        y -= 14
    page.rule(y)
    return y - 14


def _totals(page: _Page, invoice: Invoice, y: float) -> float:
    rows = [("Total taxable value", money(invoice.taxable_total))]
    for head in heads(invoice):
        rate = _head_rate(invoice, head)
        label = f"{HEAD_LABELS[head]} @ {rate}" if rate else HEAD_LABELS[head]
        rows.append((label, money(_head_total(invoice, head))))
    rows.append(("Round off", money(invoice.round_off)))
    y = page.room(y, 14 * (len(rows) + 1) + 40)
    label_x = RIGHT - 110
    for label, value in rows:
        page.right(label_x, y, label)
        page.right(RIGHT, y, value)
        y -= 12
    page.rule(y + 8, RIGHT - 250)
    y -= 6
    grand = (
        "Grand total (Rs.)" if invoice.doc_type == DocumentType.invoice else "Total credit (Rs.)"
    )
    page.right(label_x, y, grand, BOLD, 10)
    page.right(RIGHT, y, money(invoice.grand_total), BOLD, 10)
    y -= 18
    for line in wrap(f"Amount in words: {clean(invoice.amount_in_words)}", FONT, 9, WIDTH):
        page.text(MARGIN, y, line)
        y -= 11
    return y - 4


def _footer(page: _Page, invoice: Invoice, y: float) -> None:
    notes = []
    note = invoice.note or (gst.EXPORT_NOTE if invoice.regime == "export" else None)
    if note:
        notes.append(clean(note))
    notes.append(
        f"Whether tax is payable on reverse charge: {'Yes' if invoice.reverse_charge else 'No'}"
    )
    lines = [ln for text in notes for ln in wrap(text, FONT, 9, WIDTH)]
    y = page.room(y, 11 * len(lines) + 60)
    for line in lines:
        page.text(MARGIN, y, line)
        y -= 11
    supplier = invoice.supplier
    y -= 14
    page.right(RIGHT, y, f"For {clean(supplier.get('legal_name'))}", BOLD, 9)
    y -= 12
    if supplier.get("signatory"):
        page.right(RIGHT, y, f"Authorised signatory: {clean(supplier['signatory'])}")
        y -= 12
    page.rule(BOTTOM - 4)
    page.text(MARGIN, BOTTOM - 16, COMPUTER_GENERATED, size=8)
