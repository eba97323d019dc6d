"""Phone numbers: parsed with phonenumbers, stored E.164; WhatsApp id = digits."""

from __future__ import annotations

import phonenumbers

from app.services.exceptions import ValidationError

DEFAULT_REGION = "IN"


def normalize_phone(value: str, region: str = DEFAULT_REGION, field: str = "phone") -> str:
    """Return ``value`` in E.164 ("+919876543210").

    :raises ValidationError: when it is not a valid phone number.
    """
    raw = (value or "").strip()
    if not raw:
        raise ValidationError("Enter a phone number.", field)
    try:
        parsed = phonenumbers.parse(raw, region)
    except phonenumbers.NumberParseException as exc:
        raise ValidationError(f"{raw!r} is not a phone number.", field) from exc
    if not phonenumbers.is_valid_number(parsed):
        raise ValidationError(f"{raw!r} is not a valid phone number.", field)
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def whatsapp_id(e164: str) -> str:
    """The WhatsApp id of an E.164 number: its digits without '+'."""
    return e164.lstrip("+")
