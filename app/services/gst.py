"""GST arithmetic and identifiers for tax invoices (India). Pure: no database, no Flask.

Rules: shared/reference/gst-and-dodo.md A.1-A.6. Money is integer paise; tax is computed per
line per head and rounded half-up to the paisa; dates follow the IST calendar.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Literal
from zoneinfo import ZoneInfo

from babel.numbers import format_decimal
from stdnum import luhn
from stdnum.exceptions import ValidationError
from stdnum.in_ import gstin as stdnum_gstin
from stdnum.in_ import pan as stdnum_pan

from app.services.gst_states import EXPORT_POS, GST_STATES, POS_NAMES
from app.services.gst_states import state_code_for as state_code_for  # re-exported

IST = ZoneInfo("Asia/Kolkata")

# UTs without a legislature levy UTGST instead of SGST (A.2). 97 = Other Territory.
UT_WITHOUT_LEGISLATURE = frozenset({"04", "26", "31", "35", "38", "97"})

# Rule 46 endorsement for exports under LUT (export-only half of the prescribed wording).
EXPORT_NOTE = (
    "Supply meant for export under bond or letter of undertaking without payment of integrated tax"
)

Regime = Literal["intra", "intra_ut", "inter", "export"]

_FY_RE = re.compile(r"([0-9]{4})-([0-9]{2})")
_DOC_NO_RE = re.compile(r"[A-Za-z0-9/-]{1,16}")  # Rule 46(b), used with fullmatch
_MAX_WORDS_RUPEES = 10**10  # num2words' limit for en_IN (A.5)
_HUNDRED = Decimal(100)
_BP = Decimal(10_000)


# ------------------------------------------------------------------------- dates / FY


def financial_year(d: date) -> str:
    """The Indian financial year (April-March) of a calendar date, e.g. "2025-26"."""
    if isinstance(d, datetime) or not isinstance(d, date):
        raise TypeError("financial_year() takes a date; use financial_year_of() for a datetime")
    start = d.year if d.month >= 4 else d.year - 1
    return f"{start}-{(start + 1) % 100:02d}"


def ist_date(ts: datetime) -> date:
    """The calendar date in India (Asia/Kolkata) of an aware datetime.

    :raises ValueError: for a naive datetime, whose zone would be a guess.
    """
    if ts.tzinfo is None or ts.utcoffset() is None:
        raise ValueError("naive datetime: pass an aware (UTC) datetime")
    return ts.astimezone(IST).date()


def financial_year_of(ts: datetime) -> str:
    """The financial year of an aware timestamp, judged by its IST date.

    :raises ValueError: for a naive datetime.
    """
    return financial_year(ist_date(ts))


def _fy_start(fy: str) -> int:
    match = _FY_RE.fullmatch(fy or "")
    if not match or (int(match.group(1)) + 1) % 100 != int(match.group(2)):
        raise ValueError(f"financial year must look like '2025-26', got {fy!r}")
    return int(match.group(1))


def short_fy(fy: str) -> str:
    """ "2025-26" -> "25-26" (for document numbers).

    :raises ValueError: if ``fy`` is not a valid financial year label.
    """
    start = _fy_start(fy)
    return f"{start % 100:02d}-{(start + 1) % 100:02d}"


def _add_years(d: date, years: int) -> date:
    """``d`` plus whole years; 29 Feb moves to 1 Mar (the later date: safe for retention)."""
    try:
        return d.replace(year=d.year + years)
    except ValueError:
        return date(d.year + years, 3, 1)


def retain_until(fy: str, issued_on: date) -> date:
    """The last day a document of ``fy`` issued on ``issued_on`` must be kept (CGST s.36).

    72 months from the annual-return due date (31 Dec after the FY), and never earlier than
    seven years from issue; the later of the two. Appeals/investigations extend this further,
    which is the caller's concern.

    :raises ValueError: if ``fy`` is malformed or ``issued_on`` is not in ``fy``.
    """
    start = _fy_start(fy)
    if financial_year(issued_on) != fy:
        raise ValueError(f"{issued_on.isoformat()} is not in financial year {fy}")
    annual_return_due = date(start + 1, 12, 31)
    return max(_add_years(annual_return_due, 6), _add_years(issued_on, 7))


# ------------------------------------------------------------------- document numbers


def validate_document_number(number: str) -> str:
    """Return ``number`` if it is a valid Rule 46(b) serial number.

    :raises ValueError: over 16 characters, empty, or characters other than A-Z a-z 0-9 - /.
    """
    if not isinstance(number, str) or not number:
        raise ValueError(f"document number must be a non-empty string, got {number!r}")
    bad = sorted({ch for ch in number if not _DOC_NO_RE.fullmatch(ch)})
    if bad:
        raise ValueError(
            f"document number {number!r} may hold only letters, digits, '-' and '/', not {bad}"
        )
    if not _DOC_NO_RE.fullmatch(number):
        raise ValueError(
            f"document number {number!r} has {len(number)} characters; "
            "GST allows at most 16 (Rule 46(b))"
        )
    return number


def format_document_number(prefix: str, fy: str, seq: int) -> str:
    """ "INV", "2025-26", 1 -> "INV/25-26/000001"; longer seqs are allowed while they fit.

    :raises ValueError: seq < 1, a malformed FY, or a result that breaks Rule 46(b).
    """
    if isinstance(seq, bool) or not isinstance(seq, int) or seq < 1:
        raise ValueError(f"sequence number must be a positive integer, got {seq!r}")
    return validate_document_number(f"{prefix}/{short_fy(fy)}/{seq:06d}")


# ------------------------------------------------------------------------------- tax


@dataclass(frozen=True)
class TaxBreakdown:
    """Tax on one line: every head in paise, every rate in basis points (1800 = 18%)."""

    regime: Regime
    taxable: int
    rate_bp: int
    cgst: int = 0
    sgst: int = 0
    utgst: int = 0
    igst: int = 0
    cgst_rate_bp: int = 0
    sgst_rate_bp: int = 0
    utgst_rate_bp: int = 0
    igst_rate_bp: int = 0
    note: str = ""

    @property
    def tax_total(self) -> int:
        """All tax heads together, in paise."""
        return self.cgst + self.sgst + self.utgst + self.igst

    @property
    def total(self) -> int:
        """Taxable value plus tax, in paise."""
        return self.taxable + self.tax_total


@dataclass(frozen=True)
class TaxTotals:
    """Per-head sums over an invoice's lines, in paise."""

    regime: Regime | None
    taxable: int = 0
    cgst: int = 0
    sgst: int = 0
    utgst: int = 0
    igst: int = 0

    @property
    def tax_total(self) -> int:
        """All tax heads together, in paise."""
        return self.cgst + self.sgst + self.utgst + self.igst

    @property
    def total(self) -> int:
        """Taxable value plus tax, in paise (before any round-off)."""
        return self.taxable + self.tax_total


def _check_paise(value: int, what: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{what} must be an int number of paise, got {type(value).__name__}")
    if value < 0:
        raise ValueError(f"{what} must not be negative, got {value}")


def _head(taxable: int, rate_bp: int) -> int:
    """One tax head, rounded half-up to the paisa."""
    return int((Decimal(taxable) * Decimal(rate_bp) / _BP).quantize(Decimal(1), ROUND_HALF_UP))


def regime_for(supplier_state: str, place_of_supply: str) -> Regime:
    """Which taxes apply between a supplier's state code and a place-of-supply code.

    :raises ValueError: for an unknown supplier state or place of supply.
    """
    if supplier_state not in GST_STATES:
        raise ValueError(f"unknown supplier state code {supplier_state!r}")
    if place_of_supply not in POS_NAMES:
        raise ValueError(f"unknown place of supply {place_of_supply!r}")
    if place_of_supply == EXPORT_POS:
        return "export"
    if place_of_supply != supplier_state:
        return "inter"
    return "intra_ut" if supplier_state in UT_WITHOUT_LEGISLATURE else "intra"


def compute_tax(
    taxable_paise: int, rate_bp: int, supplier_state: str, place_of_supply: str
) -> TaxBreakdown:
    """Split GST on one line into CGST+SGST, CGST+UTGST, IGST, or zero-rated export.

    :raises ValueError: negative amounts, an odd or out-of-range rate, unknown state codes.
    """
    _check_paise(taxable_paise, "taxable value")
    if isinstance(rate_bp, bool) or not isinstance(rate_bp, int) or not 0 <= rate_bp <= 10_000:
        raise ValueError(f"rate must be 0-10000 basis points, got {rate_bp!r}")
    if rate_bp % 2:
        # CGST and SGST/UTGST are half the rate each; keep both halves whole basis points.
        raise ValueError(f"rate {rate_bp} bp cannot be halved into whole basis points")
    regime = regime_for(supplier_state, place_of_supply)
    if regime == "export":
        return TaxBreakdown("export", taxable_paise, 0, note=EXPORT_NOTE)
    if regime == "inter":
        igst = _head(taxable_paise, rate_bp)
        return TaxBreakdown("inter", taxable_paise, rate_bp, igst=igst, igst_rate_bp=rate_bp)
    half = rate_bp // 2
    cgst = _head(taxable_paise, half)
    if regime == "intra_ut":
        return TaxBreakdown(
            regime, taxable_paise, rate_bp, cgst=cgst, utgst=cgst,
            cgst_rate_bp=half, utgst_rate_bp=half,
        )  # fmt: skip
    return TaxBreakdown(
        regime, taxable_paise, rate_bp, cgst=cgst, sgst=cgst, cgst_rate_bp=half, sgst_rate_bp=half
    )


def compute_lines(
    lines: Sequence[tuple[int, int]], supplier_state: str, place_of_supply: str
) -> list[TaxBreakdown]:
    """Tax per line, for (taxable_paise, rate_bp) pairs sharing one supplier and POS."""
    return [compute_tax(t, r, supplier_state, place_of_supply) for t, r in lines]


def totals(breakdowns: Iterable[TaxBreakdown]) -> TaxTotals:
    """Sum each head over lines already rounded per line (never re-round the sum).

    :raises ValueError: if the lines mix regimes (they must share supplier and POS).
    """
    items = list(breakdowns)
    regimes = {b.regime for b in items}
    if len(regimes) > 1:
        raise ValueError(f"lines mix tax regimes: {sorted(regimes)}")
    return TaxTotals(
        regime=regimes.pop() if regimes else None,
        taxable=sum(b.taxable for b in items),
        cgst=sum(b.cgst for b in items),
        sgst=sum(b.sgst for b in items),
        utgst=sum(b.utgst for b in items),
        igst=sum(b.igst for b in items),
    )


def round_off(total_paise: int) -> tuple[int, int]:
    """(total rounded to whole rupees with 50 paise going up, round-off amount in paise).

    The round-off may be negative; rounded == total_paise + round-off. Negative totals round
    symmetrically (away from zero at exactly 50 paise).
    """
    if isinstance(total_paise, bool) or not isinstance(total_paise, int):
        raise TypeError("total must be an int number of paise")
    rupees = (Decimal(total_paise) / _HUNDRED).quantize(Decimal(1), ROUND_HALF_UP)
    rounded = int(rupees) * 100
    return rounded, rounded - total_paise


# ----------------------------------------------------------------------- presentation


def _title_words(number: int) -> str:
    """num2words en_IN without commas or inner "and", in title case."""
    from num2words import num2words  # here: it loads every language it has

    words = num2words(number, lang="en_IN").replace(",", " ").split()
    return " ".join(
        "-".join(part.capitalize() for part in word.split("-")) for word in words if word != "and"
    )


def amount_in_words(paise: int) -> str:
    """Indian-system words: "Rupees One Lakh Only", "Rupees Zero and Fifty Paise Only".

    Always starts "Rupees" and ends "Only"; " and N Paise" only when paise are non-zero.

    :raises ValueError: negative amounts or 10^10 rupees and above (num2words' limit).
    """
    _check_paise(paise, "amount")
    rupees, rest = divmod(paise, 100)
    if rupees >= _MAX_WORDS_RUPEES:
        raise ValueError(f"amount of {rupees} rupees is too large to write in words")
    text = f"Rupees {_title_words(rupees)}"
    if rest:
        text += f" and {_title_words(rest)} Paise"
    return f"{text} Only"


def format_inr(paise: int, symbol: bool = False) -> str:
    """Indian digit grouping, two decimals: 123456789 -> "12,34,567.89"; "Rs. " if symbol."""
    if isinstance(paise, bool) or not isinstance(paise, int):
        raise TypeError("amount must be an int number of paise")
    text = format_decimal(Decimal(abs(paise)).scaleb(-2), format="#,##,##0.00", locale="en_IN")
    sign = "-" if paise < 0 else ""
    return f"{sign}Rs. {text}" if symbol else f"{sign}{text}"


def place_of_supply_label(code: str) -> str:
    """ "29" -> "29-Karnataka", "96" -> "96-Other Country" (GSTR-1 style).

    :raises ValueError: for a code that is not a place of supply.
    """
    if code not in POS_NAMES:
        raise ValueError(f"unknown place of supply {code!r}")
    return f"{code}-{POS_NAMES[code]}"


# ----------------------------------------------------------------------- identifiers

_GSTIN_RE = re.compile(r"^[0-9]{2}[A-Z]{5}[0-9]{4}[A-Z][1-9A-Z]Z[0-9A-Z]$")  # A.4
_GSTIN_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def validate_gstin(gstin: str) -> str:
    """The normalised (upper-case, no spaces or hyphens) GSTIN of a normal taxpayer.

    Uses python-stdnum's PAN and check-character tests but our own state list: stdnum 2.2
    lacks 38 (Ladakh) and 97, and still accepts the retired 25 and 28.

    :raises ValueError: with a message saying what is wrong.
    """
    number = stdnum_gstin.compact(gstin or "")
    if not number:
        raise ValueError("GSTIN is empty")
    if len(number) != 15:
        raise ValueError(f"GSTIN must be 15 characters, got {len(number)}")
    if not _GSTIN_RE.fullmatch(number):
        raise ValueError(
            "GSTIN must be a 2-digit state code, a PAN, an entity number, 'Z' and a check "
            "character, like 27AAPFU0939F1ZV"
        )
    if number[:2] not in GST_STATES:
        raise ValueError(f"GSTIN starts with {number[:2]}, which is not a GST state code")
    try:
        stdnum_pan.validate(number[2:12])
    except ValidationError as exc:
        raise ValueError(f"GSTIN contains an invalid PAN {number[2:12]}") from exc
    try:
        luhn.validate(number, _GSTIN_ALPHABET)
    except ValidationError as exc:
        raise ValueError("GSTIN check character does not match: check for a typo") from exc
    return number


def gstin_state(gstin: str) -> str:
    """The state code (first two digits) of a valid GSTIN: the POS for a B2B buyer.

    :raises ValueError: if the GSTIN is invalid.
    """
    return validate_gstin(gstin)[:2]


def is_b2b(gstin: str | None) -> bool:
    """True when a valid GSTIN is given; blank or invalid means a B2C invoice.

    Validate at capture time with `validate_gstin`: this predicate never raises.
    """
    try:
        return bool(gstin) and bool(validate_gstin(gstin or ""))
    except ValueError:
        return False


def validate_pan(pan: str) -> str:
    """The normalised (upper-case) PAN.

    :raises ValueError: if it is not a valid PAN (AAAAA9999A with a known holder type).
    """
    try:
        return stdnum_pan.validate(pan or "")
    except ValidationError as exc:
        raise ValueError("PAN must look like AAAPL1234C (5 letters, 4 digits, 1 letter)") from exc
