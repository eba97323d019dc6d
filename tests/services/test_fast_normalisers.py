"""The fast paths of phone and email normalisation give exactly what the libraries give.

`normalize_phone` short-cuts Indian mobile numbers and `normalize_email` caches domain
checks (imports normalise one of each per row); these tests compare both, over many
generated inputs, with phonenumbers' and email_validator's own answers.
"""

from __future__ import annotations

import random

import phonenumbers
import pytest
from email_validator import EmailNotValidError, validate_email

from app.services.exceptions import ValidationError
from app.services.phones import normalize_phone
from app.services.tenants import normalize_email


def _library_phone(raw: str) -> str | None:
    try:
        parsed = phonenumbers.parse(raw, "IN")
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(parsed):
        return None
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def _ours_phone(raw: str) -> str | None:
    try:
        return normalize_phone(raw)
    except ValidationError:
        return None


def _phone_inputs() -> list[str]:
    rng = random.Random(2026)
    layouts = [
        "{n}",
        "0{n}",
        "91{n}",
        "+91{n}",
        "+91 {a} {b}",
        "0{a}-{b}",
        "({a}) {b}",
        "+91-{a}.{b}",
        "091{n}",
        "+9109{n}",
        "00 91 {n}",
    ]
    found = []
    # Every 3-digit prefix from 600 to 999, twice, so each leading range is covered.
    for prefix in range(600, 1000):
        for _ in range(2):
            n = f"{prefix}{rng.randrange(10**7):07d}"
            found.append(rng.choice(layouts).format(n=n, a=n[:5], b=n[5:]))
    found += ["98765432100", "9876543", "5876543210", "+1 415 555 2671", "+44 7911 123456"]
    return found


def test_phone_fast_path_agrees_with_phonenumbers():
    inputs = _phone_inputs()
    disagree = [(raw, _ours_phone(raw), _library_phone(raw)) for raw in inputs]
    disagree = [d for d in disagree if d[1] != d[2]]
    assert disagree == []
    # The sample holds both valid and invalid numbers, so both branches ran.
    results = [_ours_phone(raw) for raw in inputs]
    assert any(r is None for r in results) and sum(r is not None for r in results) > 400


EMAILS = [
    "asha@example.com",
    "Asha.Verma+crm@Example.CO.IN",
    "o'brien@example.org",
    "a..b@example.com",
    ".a@example.com",
    "a.@example.com",
    "a@b",
    "a@-example.com",
    "a@example..com",
    "a@localhost",
    "a@example.local",
    "x" * 64 + "@example.com",
    "x" * 65 + "@example.com",
    "a@" + "d" * 63 + "." + "e" * 63 + "." + "f" * 63 + "." + "g" * 57 + ".com",
    "जानकी@उदाहरण.भारत",
    "asha@उदाहरण.भारत",
    '"quoted"@example.com',
    "a b@example.com",
    "a@@example.com",
    "@example.com",
    "asha@",
    "  padded@example.com  ",
    "asha@xn--p1ai",
    "asha@123.com",
]


@pytest.mark.parametrize("raw", EMAILS)
def test_email_fast_path_agrees_with_email_validator(raw):
    try:
        expected = validate_email(raw.strip(), check_deliverability=False).normalized
    except EmailNotValidError:
        expected = None
    try:
        ours = normalize_email(raw)
    except ValidationError:
        ours = None
    assert ours == expected
