"""GST arithmetic and identifiers (app/services/gst.py): pure, no app or database needed.

Expected values follow shared/reference/gst-and-dodo.md A.1-A.6.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, date, datetime, timedelta, timezone

import pytest
from stdnum.in_ import gstin as stdnum_gstin

from app.services import gst
from app.services.gst import (
    EXPORT_NOTE,
    EXPORT_POS,
    UT_WITHOUT_LEGISLATURE,
    TaxBreakdown,
    amount_in_words,
    compute_lines,
    compute_tax,
    financial_year,
    financial_year_of,
    format_document_number,
    format_inr,
    gstin_state,
    is_b2b,
    ist_date,
    place_of_supply_label,
    retain_until,
    round_off,
    short_fy,
    state_code_for,
    totals,
    validate_document_number,
    validate_gstin,
    validate_pan,
)
from app.services.gst_states import GST_STATES, STATE_ALIASES, state_choices, state_name

ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def gstin_check_char(first14: str) -> str:
    """The reference's check-character algorithm (A.4), independent of the code under test."""
    total = 0
    for i, ch in enumerate(first14.upper()):
        p = ALPHABET.index(ch) * (1 if i % 2 == 0 else 2)
        total += p // 36 + p % 36
    return ALPHABET[(36 - total % 36) % 36]


def make_gstin(state: str, body: str = "AAPFU0939F1Z") -> str:
    return f"{state}{body}{gstin_check_char(state + body)}"


# ------------------------------------------------------------------------ constants


def test_constants():
    assert UT_WITHOUT_LEGISLATURE == frozenset({"04", "26", "31", "35", "38", "97"})
    assert EXPORT_POS == "96"


def test_state_choices_unchanged_for_indian_addresses():
    choices = state_choices()
    assert len(choices) == 37
    assert choices[0] == ("01", "01 - Jammu and Kashmir")
    assert "96" not in dict(choices)
    assert state_name("96") == ""
    assert state_name("29") == "Karnataka"


# -------------------------------------------------------------------------- tax split


@pytest.mark.parametrize(
    ("supplier", "pos", "regime", "cgst", "sgst", "utgst", "igst"),
    [
        ("29", "29", "intra", 89991, 89991, 0, 0),  # Karnataka to Karnataka
        ("27", "29", "inter", 0, 0, 0, 179982),  # Maharashtra to Karnataka
        ("04", "04", "intra_ut", 89991, 0, 89991, 0),  # Chandigarh: UT without legislature
        ("26", "26", "intra_ut", 89991, 0, 89991, 0),
        ("31", "31", "intra_ut", 89991, 0, 89991, 0),
        ("35", "35", "intra_ut", 89991, 0, 89991, 0),
        ("38", "38", "intra_ut", 89991, 0, 89991, 0),
        ("97", "97", "intra_ut", 89991, 0, 89991, 0),
        ("07", "07", "intra", 89991, 89991, 0, 0),  # Delhi has a legislature: SGST
        ("34", "34", "intra", 89991, 89991, 0, 0),  # Puducherry too
        ("01", "01", "intra", 89991, 89991, 0, 0),  # and J&K
        ("04", "07", "inter", 0, 0, 0, 179982),  # UT to another state: IGST
        ("07", "04", "inter", 0, 0, 0, 179982),
        ("29", "96", "export", 0, 0, 0, 0),
        ("04", "96", "export", 0, 0, 0, 0),
    ],
)
def test_compute_tax_regimes(supplier, pos, regime, cgst, sgst, utgst, igst):
    b = compute_tax(999900, 1800, supplier, pos)
    assert (b.regime, b.cgst, b.sgst, b.utgst, b.igst) == (regime, cgst, sgst, utgst, igst)
    assert b.taxable == 999900
    assert b.tax_total == cgst + sgst + utgst + igst
    assert b.total == 999900 + b.tax_total


def test_intra_state_rates_and_reference_example():
    b = compute_tax(999900, 1800, "29", "29")
    assert (b.rate_bp, b.cgst_rate_bp, b.sgst_rate_bp, b.utgst_rate_bp, b.igst_rate_bp) == (
        1800, 900, 900, 0, 0,
    )  # fmt: skip
    assert b.total == 1179882  # 11,798.82
    assert b.note == ""


def test_intra_ut_rates():
    b = compute_tax(10000, 1800, "04", "04")
    assert (b.cgst_rate_bp, b.sgst_rate_bp, b.utgst_rate_bp, b.igst_rate_bp) == (900, 0, 900, 0)
    assert (b.cgst, b.utgst) == (900, 900)


def test_inter_state_rates():
    b = compute_tax(10000, 1800, "27", "29")
    assert (b.cgst_rate_bp, b.sgst_rate_bp, b.utgst_rate_bp, b.igst_rate_bp) == (0, 0, 0, 1800)
    assert b.igst == 1800


def test_export_is_zero_rated_with_lut_note():
    b = compute_tax(999900, 1800, "29", "96")
    assert b.regime == "export"
    assert b.rate_bp == 0 and b.igst_rate_bp == 0
    assert b.tax_total == 0 and b.total == 999900
    assert b.note == EXPORT_NOTE
    assert "export" in b.note and "without payment of integrated tax" in b.note


def test_every_state_pair_has_the_right_regime():
    for supplier in GST_STATES:
        for pos in [*GST_STATES, "96"]:
            regime = compute_tax(100, 1800, supplier, pos).regime
            if pos == "96":
                assert regime == "export"
            elif pos != supplier:
                assert regime == "inter", (supplier, pos)
            elif supplier in UT_WITHOUT_LEGISLATURE:
                assert regime == "intra_ut", supplier
            else:
                assert regime == "intra", supplier


@pytest.mark.parametrize(
    ("taxable", "cgst_each", "igst"),
    [
        # 9% lands on exactly half a paisa: each half rounds up, so CGST+SGST = IGST + 1.
        (50, 5, 9),  # 4.5 -> 5 (banker's rounding would give 4)
        (250, 23, 45),  # 22.5 -> 23 (banker's: 22)
        (999950, 89996, 179991),  # 9,999.50: 89,995.5 -> 899.96 x 2 = 1,799.92 vs 1,799.91
        # 9% below half, 18% at/above half: CGST+SGST = IGST - 1.
        (3, 0, 1),  # 0.27 -> 0; 0.54 -> 1
        (1000003, 90000, 180001),  # 10,000.03: 900.00 x 2 = 1,800.00 vs 1,800.01
    ],
)
def test_per_head_rounding_can_differ_from_igst_by_one_paisa(taxable, cgst_each, igst):
    intra = compute_tax(taxable, 1800, "29", "29")
    inter = compute_tax(taxable, 1800, "27", "29")
    assert intra.cgst == intra.sgst == cgst_each
    assert inter.igst == igst
    assert abs(intra.tax_total - inter.tax_total) == 1


def test_split_never_differs_from_igst_by_more_than_one_paisa():
    for taxable in range(0, 5000):
        intra = compute_tax(taxable, 1800, "29", "29")
        inter = compute_tax(taxable, 1800, "27", "29")
        assert abs(intra.tax_total - inter.tax_total) <= 1


@pytest.mark.parametrize(
    ("taxable", "rate_bp", "each"),
    [(10000, 500, 250), (10000, 1200, 600), (10000, 2800, 1400), (10000, 0, 0), (0, 1800, 0)],
)
def test_other_rates_halve(taxable, rate_bp, each):
    b = compute_tax(taxable, rate_bp, "29", "29")
    assert (b.cgst, b.sgst, b.cgst_rate_bp) == (each, each, rate_bp // 2)


@pytest.mark.parametrize(
    ("args", "error"),
    [
        ((-1, 1800, "29", "29"), ValueError),
        ((1.5, 1800, "29", "29"), TypeError),
        ((True, 1800, "29", "29"), TypeError),
        ((100, 1801, "29", "29"), ValueError),  # odd rate cannot be halved
        ((100, -2, "29", "29"), ValueError),
        ((100, 10002, "29", "29"), ValueError),
        ((100, 1800, "96", "29"), ValueError),  # 96 is not a supplier state
        ((100, 1800, "99", "29"), ValueError),
        ((100, 1800, "29", "99"), ValueError),  # 99 is not a place of supply
        ((100, 1800, "29", "25"), ValueError),  # retired code
        ((100, 1800, "29", "Karnataka"), ValueError),  # map names first
        ((100, 1800, "29", ""), ValueError),
    ],
)
def test_compute_tax_rejects_bad_input(args, error):
    with pytest.raises(error):
        compute_tax(*args)


def test_tax_breakdown_is_frozen():
    b = compute_tax(100, 1800, "29", "29")
    with pytest.raises(dataclasses.FrozenInstanceError):
        b.cgst = 0  # type: ignore[misc]


# ------------------------------------------------------------ B2B and B2C place of supply


def test_b2b_pos_is_the_buyer_gstin_state():
    pos = gstin_state("29AAGCG6253J1Z8")
    assert pos == "29"
    assert compute_tax(999900, 1800, "27", pos).regime == "inter"
    assert compute_tax(999900, 1800, "29", pos).regime == "intra"


@pytest.mark.parametrize(
    ("billing_state", "supplier", "regime"),
    [
        ("Karnataka", "29", "intra"),
        ("  karnataka ", "29", "intra"),
        ("Tamil Nadu", "29", "inter"),
        ("Chandigarh", "04", "intra_ut"),
        ("IN-MH", "27", "intra"),
    ],
)
def test_b2c_pos_from_state_name_only(billing_state, supplier, regime):
    pos = state_code_for(billing_state)
    assert pos is not None
    assert compute_tax(999900, 1800, supplier, pos).regime == regime


# ------------------------------------------------------------------ lines and totals


def test_compute_lines_and_totals_sum_rounded_lines():
    lines = compute_lines([(50, 1800), (50, 1800), (50, 1800), (999900, 1800)], "29", "29")
    assert [b.cgst for b in lines] == [5, 5, 5, 89991]
    t = totals(lines)
    # Per line: 3 x 5 + 89,991 = 90,006; 9% of the summed base would round to 90,005.
    assert (t.regime, t.taxable, t.cgst, t.sgst, t.utgst, t.igst) == (
        "intra", 1000050, 90006, 90006, 0, 0,
    )  # fmt: skip
    assert t.tax_total == 180012
    assert t.total == 1180062


def test_totals_inter_and_ut_and_export():
    assert totals(compute_lines([(999900, 1800), (1003, 1800)], "27", "29")).igst == 179982 + 181
    ut = totals(compute_lines([(999900, 1800), (1003, 1800)], "04", "04"))
    assert (ut.cgst, ut.utgst, ut.sgst) == (90081, 90081, 0)
    export = totals(compute_lines([(999900, 1800), (100, 1800)], "29", "96"))
    assert (export.regime, export.tax_total, export.total) == ("export", 0, 1000000)


def test_totals_of_nothing_is_zero():
    t = totals([])
    assert (t.regime, t.taxable, t.tax_total, t.total) == (None, 0, 0, 0)


def test_totals_rejects_mixed_regimes():
    with pytest.raises(ValueError, match="mix"):
        totals([compute_tax(100, 1800, "29", "29"), compute_tax(100, 1800, "27", "29")])


# ------------------------------------------------------------------------- round-off


@pytest.mark.parametrize(
    ("total", "rounded", "adjustment"),
    [
        (1179882, 1179900, 18),  # the reference: 11,798.82 -> 11,799.00, +0.18
        (1179850, 1179900, 50),  # exactly 50 paise rounds up
        (1179849, 1179800, -49),
        (1179801, 1179800, -1),
        (1179800, 1179800, 0),  # exact rupees
        (0, 0, 0),
        (49, 0, -49),
        (50, 100, 50),
        (99, 100, 1),
        (-150, -200, -50),  # symmetric for negatives
        (-149, -100, 49),
    ],
)
def test_round_off(total, rounded, adjustment):
    assert round_off(total) == (rounded, adjustment)
    assert total + adjustment == rounded


def test_round_off_rejects_floats():
    with pytest.raises(TypeError):
        round_off(11798.82)  # type: ignore[arg-type]


# --------------------------------------------------------------------- amount in words


@pytest.mark.parametrize(
    ("paise", "words"),
    [
        (50, "Rupees Zero and Fifty Paise Only"),
        (10000000, "Rupees One Lakh Only"),
        (
            123456789,
            "Rupees Twelve Lakh Thirty-Four Thousand Five Hundred Sixty-Seven "
            "and Eighty-Nine Paise Only",
        ),
        (
            9999999999,
            "Rupees Nine Crore Ninety-Nine Lakh Ninety-Nine Thousand Nine Hundred "
            "Ninety-Nine and Ninety-Nine Paise Only",
        ),
        (0, "Rupees Zero Only"),
        (1, "Rupees Zero and One Paise Only"),
        (100, "Rupees One Only"),
        (118050, "Rupees One Thousand One Hundred Eighty and Fifty Paise Only"),
        (1179900, "Rupees Eleven Thousand Seven Hundred Ninety-Nine Only"),
        (100100, "Rupees One Thousand One Only"),
        (1000000000, "Rupees One Crore Only"),
        (10000000005, "Rupees Ten Crore and Five Paise Only"),
        (
            10**12 - 1,
            "Rupees Nine Hundred Ninety-Nine Crore Ninety-Nine Lakh Ninety-Nine Thousand "
            "Nine Hundred Ninety-Nine and Ninety-Nine Paise Only",
        ),
    ],
)
def test_amount_in_words(paise, words):
    assert amount_in_words(paise) == words


def test_amount_in_words_shape():
    for paise in [*range(0, 30000, 7), *range(10**9, 10**9 + 3000, 13)]:
        words = amount_in_words(paise)
        assert words.startswith("Rupees ") and words.endswith(" Only")
        assert "," not in words
        assert words.split().count("and") == (1 if paise % 100 else 0), words
        assert all(w[0].isupper() for w in words.replace("-", " ").split() if w != "and")


@pytest.mark.parametrize(("paise", "error"), [(10**12, ValueError), (-1, ValueError)])
def test_amount_in_words_limits(paise, error):
    with pytest.raises(error):
        amount_in_words(paise)


def test_amount_in_words_rejects_floats():
    with pytest.raises(TypeError):
        amount_in_words(0.5)  # type: ignore[arg-type]


# ----------------------------------------------------------------------- money format


@pytest.mark.parametrize(
    ("paise", "symbol", "text"),
    [
        (123456789, False, "12,34,567.89"),
        (-123450, False, "-1,234.50"),
        (0, False, "0.00"),
        (5, False, "0.05"),
        (100, False, "1.00"),
        (99999, False, "999.99"),
        (100000, False, "1,000.00"),
        (10000000, False, "1,00,000.00"),
        (1234567890123, False, "12,34,56,78,901.23"),
        (-18, False, "-0.18"),
        (123450, True, "Rs. 1,234.50"),
        (-18, True, "-Rs. 0.18"),
        (1179900, True, "Rs. 11,799.00"),
    ],
)
def test_format_inr(paise, symbol, text):
    assert format_inr(paise, symbol=symbol) == text


def test_format_inr_rejects_floats():
    with pytest.raises(TypeError):
        format_inr(12.5)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("code", "label"),
    [
        ("29", "29-Karnataka"),
        ("04", "04-Chandigarh"),
        ("26", "26-Dadra and Nagar Haveli and Daman and Diu"),
        ("96", "96-Other Country"),
        ("97", "97-Other Territory"),
    ],
)
def test_place_of_supply_label(code, label):
    assert place_of_supply_label(code) == label


@pytest.mark.parametrize("code", ["99", "25", "28", "9", "", "Karnataka"])
def test_place_of_supply_label_rejects_unknown(code):
    with pytest.raises(ValueError):
        place_of_supply_label(code)


# --------------------------------------------------------------------- financial year


@pytest.mark.parametrize(
    ("d", "fy"),
    [
        (date(2025, 4, 1), "2025-26"),
        (date(2026, 3, 31), "2025-26"),
        (date(2026, 4, 1), "2026-27"),
        (date(2026, 1, 15), "2025-26"),
        (date(1999, 12, 31), "1999-00"),
        (date(2099, 4, 1), "2099-00"),
    ],
)
def test_financial_year(d, fy):
    assert financial_year(d) == fy


IST_OFFSET = timezone(timedelta(hours=5, minutes=30))


@pytest.mark.parametrize(
    ("ts", "fy"),
    [
        (datetime(2026, 3, 31, 18, 30, tzinfo=UTC), "2026-27"),  # 1 Apr 00:00 IST
        (datetime(2026, 3, 31, 18, 29, 59, tzinfo=UTC), "2025-26"),  # 31 Mar 23:59:59 IST
        (datetime(2026, 3, 31, 18, 29, 59, 999999, tzinfo=UTC), "2025-26"),
        (datetime(2026, 3, 31, 20, 0, tzinfo=UTC), "2026-27"),  # the reference's example
        (datetime(2025, 4, 1, 0, 0, tzinfo=IST_OFFSET), "2025-26"),
        (datetime(2025, 3, 31, 23, 59, tzinfo=IST_OFFSET), "2024-25"),
        (datetime(2026, 4, 1, 1, 0, tzinfo=timezone(timedelta(hours=5))), "2026-27"),
    ],
)
def test_financial_year_of_uses_the_ist_date(ts, fy):
    assert financial_year_of(ts) == fy


def test_ist_date():
    assert ist_date(datetime(2025, 6, 1, 18, 29, tzinfo=UTC)) == date(2025, 6, 1)
    assert ist_date(datetime(2025, 6, 1, 18, 30, tzinfo=UTC)) == date(2025, 6, 2)


def test_naive_datetimes_are_rejected():
    with pytest.raises(ValueError, match="naive"):
        financial_year_of(datetime(2026, 3, 31, 18, 30))
    with pytest.raises(ValueError, match="naive"):
        ist_date(datetime(2026, 3, 31, 18, 30))


def test_financial_year_rejects_datetimes():
    with pytest.raises(TypeError):
        financial_year(datetime(2026, 3, 31, 18, 30, tzinfo=UTC))


@pytest.mark.parametrize(("fy", "short"), [("2025-26", "25-26"), ("1999-00", "99-00")])
def test_short_fy(fy, short):
    assert short_fy(fy) == short


@pytest.mark.parametrize("fy", ["2025-27", "25-26", "2025/26", "", "2025-26\n", "２０２５-26"])
def test_short_fy_rejects_malformed(fy):
    with pytest.raises(ValueError):
        short_fy(fy)


# ------------------------------------------------------------------- document numbers


@pytest.mark.parametrize(
    ("prefix", "fy", "seq", "number"),
    [
        ("INV", "2025-26", 1, "INV/25-26/000001"),  # exactly 16 characters
        ("CN", "2025-26", 42, "CN/25-26/000042"),
        ("INV", "2025-26", 999999, "INV/25-26/999999"),
        ("CN", "2025-26", 1234567, "CN/25-26/1234567"),  # longer seq while it fits
        ("INV", "2099-00", 7, "INV/99-00/000007"),
        ("W-I", "2026-27", 3, "W-I/26-27/000003"),
    ],
)
def test_format_document_number(prefix, fy, seq, number):
    assert format_document_number(prefix, fy, seq) == number
    assert validate_document_number(number) == number


@pytest.mark.parametrize(
    ("prefix", "fy", "seq", "match"),
    [
        ("INV", "2025-26", 1000000, "16"),  # 17 characters
        ("INVOICE", "2025-26", 1, "16"),
        ("W-INV", "2026-27", 3, "18 characters"),
        ("IN V", "2025-26", 1, "only letters, digits"),
        ("INV_A", "2025-26", 1, "only letters, digits"),
        ("INV", "2025-26", 0, "positive"),
        ("INV", "2025-26", -1, "positive"),
        ("INV", "2025-26", True, "positive"),
        ("INV", "2025-26", 1.0, "positive"),
        ("INV", "2025-27", 1, "financial year"),
    ],
)
def test_format_document_number_rejects(prefix, fy, seq, match):
    with pytest.raises(ValueError, match=match):
        format_document_number(prefix, fy, seq)


@pytest.mark.parametrize("number", ["INV/2025-26/0001", "A", "CN/25-26/000001", "0123456789ABCDEF"])
def test_validate_document_number_accepts(number):
    assert validate_document_number(number) == number


@pytest.mark.parametrize(
    "number",
    ["", "INV/2025-26/00001", "INV/25-26/1\n", "INV#1", "ÍNV1", "INV 1", "INV\\1", None],
)
def test_validate_document_number_rejects(number):
    with pytest.raises(ValueError):
        validate_document_number(number)


# ---------------------------------------------------------------------- state lookup


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("Karnataka", "29"),
        ("KARNATAKA", "29"),
        ("  karnataka  ", "29"),
        ("Karnataka, India", "29"),
        ("Karnataka.", "29"),
        ("KA", "29"),
        ("ka", "29"),
        ("IN-KA", "29"),
        ("in-ka", "29"),
        ("29", "29"),
        ("29-Karnataka", "29"),
        ("29 - Karnataka", "29"),
        ("9", "09"),
        ("Tamil Nadu", "33"),
        ("Tamilnadu", "33"),
        ("TN", "33"),
        ("MH", "27"),
        ("Maharashtra", "27"),
        ("DL", "07"),
        ("Delhi", "07"),
        ("New Delhi", "07"),
        ("NCT of Delhi", "07"),
        ("National Capital Territory of Delhi", "07"),
        ("Orissa", "21"),
        ("Odisha", "21"),
        ("IN-OR", "21"),
        ("IN-OD", "21"),
        ("Pondicherry", "34"),
        ("Puducherry", "34"),
        ("J&K", "01"),
        ("J & K", "01"),
        ("Jammu & Kashmir", "01"),
        ("Jammu and Kashmir", "01"),
        ("Andaman & Nicobar", "35"),
        ("Andaman and Nicobar Islands", "35"),
        ("Dadra and Nagar Haveli", "26"),
        ("Daman and Diu", "26"),
        ("Daman & Diu", "26"),
        ("Dadra and Nagar Haveli and Daman and Diu", "26"),
        ("25", "26"),  # retired Daman and Diu code
        ("Uttaranchal", "05"),
        ("Uttarakhand", "05"),
        ("IN-UT", "05"),
        ("UK", "05"),
        ("Chattisgarh", "22"),
        ("IN-CG", "22"),
        ("Telangana", "36"),
        ("TS", "36"),
        ("IN-TG", "36"),
        ("Andhra Pradesh", "37"),
        ("AP", "37"),
        ("Ladakh", "38"),
        ("Lakshadweep", "31"),
        ("Chandigarh", "04"),
        ("West Bengal", "19"),
        ("Other Territory", "97"),
    ],
)
def test_state_code_for(text, code):
    assert state_code_for(text) == code


@pytest.mark.parametrize(
    "text",
    [None, "", "   ", "Delhi NCR", "Bangalore", "California", "India", "28", "96", "99",
     "123", "XX", "IN-XX", "Karnatak"],
)  # fmt: skip
def test_state_code_for_unknown_or_ambiguous(text):
    assert state_code_for(text) is None


def test_every_state_name_maps_to_its_code():
    for code, name in GST_STATES.items():
        assert state_code_for(name) == code
        assert state_code_for(name.upper()) == code
        assert state_code_for(code) == code
        assert state_code_for(place_of_supply_label(code)) == code


def test_aliases_point_at_current_codes():
    assert set(STATE_ALIASES.values()) <= set(GST_STATES)


# ------------------------------------------------------------------------- GSTIN, PAN


@pytest.mark.parametrize(
    ("raw", "normalised"),
    [
        ("27AAPFU0939F1ZV", "27AAPFU0939F1ZV"),
        ("29AAGCG6253J1Z8", "29AAGCG6253J1Z8"),
        ("29AADCS8134M1ZT", "29AADCS8134M1ZT"),
        ("29AABCA1234F1Z5", "29AABCA1234F1Z5"),
        (" 27aapfu0939f1zv ", "27AAPFU0939F1ZV"),
        ("27 AAPFU0939F 1ZV", "27AAPFU0939F1ZV"),
    ],
)
def test_validate_gstin_accepts(raw, normalised):
    assert validate_gstin(raw) == normalised
    assert is_b2b(raw) is True


@pytest.mark.parametrize(
    ("raw", "match"),
    [
        ("27AAPFU0939F1ZW", "check character"),  # wrong check character
        ("72AAPFU0939F1ZV", "state code"),  # transposed state
        ("", "empty"),
        ("27AAPFU0939F1Z", "15 characters"),
        ("27AAPFU0939F1ZVX", "15 characters"),
        ("27AAPFU0939F0ZV", "like 27AAPFU0939F1ZV"),  # entity number 0
        ("27AAPFU0939F1YV", "like 27AAPFU0939F1ZV"),  # 14th character not Z
        ("2AAAPFU0939F1ZV", "like 27AAPFU0939F1ZV"),
        (make_gstin("99"), "state code"),  # Centre Jurisdiction is not a state
        (make_gstin("25"), "state code"),  # retired Daman and Diu code
        (make_gstin("96"), "state code"),
        (make_gstin("27", "AAPXU0939F1Z"), "PAN"),  # unknown PAN holder type X
    ],
)
def test_validate_gstin_rejects(raw, match):
    with pytest.raises(ValueError, match=match):
        validate_gstin(raw)
    assert is_b2b(raw) is False


@pytest.mark.parametrize("code", ["38", "97", "26", "04"])
def test_validate_gstin_accepts_codes_stdnum_may_lack(code):
    number = make_gstin(code)
    assert validate_gstin(number) == number
    assert gstin_state(number) == code


def test_validate_gstin_agrees_with_stdnum_on_shared_codes():
    shared = [c for c in GST_STATES if c not in {"38", "97"}]
    for code in shared:
        for body in ("AAPFU0939F1Z", "AABCA1234F2Z", "AADCS8134MAZ"):
            good = make_gstin(code, body)
            bad = good[:-1] + ALPHABET[(ALPHABET.index(good[-1]) + 1) % 36]
            assert stdnum_gstin.is_valid(good) and validate_gstin(good) == good
            assert not stdnum_gstin.is_valid(bad) and not is_b2b(bad)


@pytest.mark.parametrize(
    ("raw", "code"),
    [("27AAPFU0939F1ZV", "27"), ("29AAGCG6253J1Z8", "29"), ("29aadcs8134m1zt", "29")],
)
def test_gstin_state(raw, code):
    assert gstin_state(raw) == code


def test_gstin_state_rejects_invalid():
    with pytest.raises(ValueError):
        gstin_state("27AAPFU0939F1ZW")


@pytest.mark.parametrize("value", [None, "", "   "])
def test_is_b2b_blank_is_b2c(value):
    assert is_b2b(value) is False


@pytest.mark.parametrize(
    ("raw", "pan"), [("AAPFU0939F", "AAPFU0939F"), ("aapfu0939f", "AAPFU0939F")]
)
def test_validate_pan(raw, pan):
    assert validate_pan(raw) == pan


@pytest.mark.parametrize("raw", ["", "AAPFU0939", "AAPF10939F", "AAPXU0939F", "AAPFU0939FF", None])
def test_validate_pan_rejects(raw):
    with pytest.raises(ValueError, match="PAN"):
        validate_pan(raw)


# -------------------------------------------------------------------------- retention


@pytest.mark.parametrize(
    ("fy", "issued_on", "until"),
    [
        ("2025-26", date(2025, 4, 1), date(2032, 12, 31)),  # 72 months from 31 Dec 2026
        ("2025-26", date(2025, 12, 31), date(2032, 12, 31)),  # both rules agree
        ("2025-26", date(2026, 1, 1), date(2033, 1, 1)),  # seven years from issue is later
        ("2025-26", date(2026, 3, 31), date(2033, 3, 31)),
        ("2027-28", date(2028, 2, 29), date(2035, 3, 1)),  # leap day: kept to 1 March
        ("2023-24", date(2024, 2, 29), date(2031, 3, 1)),
        ("2023-24", date(2023, 7, 15), date(2030, 12, 31)),
    ],
)
def test_retain_until(fy, issued_on, until):
    assert retain_until(fy, issued_on) == until


@pytest.mark.parametrize(
    ("fy", "issued_on"),
    [("2025-26", date(2026, 4, 1)), ("2025-26", date(2025, 3, 31)), ("2025", date(2025, 5, 1))],
)
def test_retain_until_rejects_mismatch(fy, issued_on):
    with pytest.raises(ValueError):
        retain_until(fy, issued_on)


def test_module_is_pure():
    source = open(gst.__file__, encoding="utf-8").read()
    for forbidden in ("flask", "sqlalchemy", "app.extensions", "app.models"):
        assert f"import {forbidden}" not in source and f"from {forbidden}" not in source
    assert TaxBreakdown.__dataclass_params__.frozen  # type: ignore[attr-defined]
