"""Contacts of a tenant: phone normalisation, create/update, search by any phone format."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from sqlalchemy import false, func, or_, select
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from app.models.contact import Contact, Tag
from app.services.exceptions import ValidationError
from app.services.phones import normalize_phone, whatsapp_id
from app.services.tenants import normalize_email

DUPLICATE_PHONE = "A contact with this phone number already exists."
# Fewer digits than this are not searched as a phone suffix (too many false hits).
MIN_SUFFIX_DIGITS = 4
# From this many digits a search is a whole number: an exact WhatsApp id match.
PHONE_EXACT_DIGITS = 10
# A search made only of these characters is a phone search.
PHONE_TEXT = re.compile(r"[\d\s()+\-./]+")


def normalize_contact_phone(value: str) -> tuple[str, str]:
    """(E.164, WhatsApp id) of a number typed in any format (Indian numbers by default).

    :raises ValidationError: when it is not a valid phone number.
    """
    e164 = normalize_phone(value, field="phone")
    return e164, whatsapp_id(e164)


def phone_taken(
    session: Session, tenant_id: int, wa_id: str, exclude_id: Any | None = None
) -> bool:
    """True when another contact of ``tenant_id`` has this WhatsApp id."""
    stmt = select(Contact.id).where(Contact.tenant_id == tenant_id, Contact.wa_id == wa_id)
    if exclude_id not in (None, ""):
        stmt = stmt.where(Contact.id != int(exclude_id))
    return session.execute(stmt.limit(1)).first() is not None


def _clean(value: str | None) -> str | None:
    value = (value or "").strip()
    return value or None


def _fields(phone: str, display_name: str | None, email: str | None, notes: str | None) -> dict:
    e164, wa_id = normalize_contact_phone(phone)
    email = _clean(email)
    return {
        "phone": e164,
        "wa_id": wa_id,
        "display_name": _clean(display_name),
        "email": normalize_email(email) if email else None,
        "notes": _clean(notes),
    }


def create_contact(
    session: Session,
    tenant_id: int,
    phone: str,
    display_name: str | None = None,
    email: str | None = None,
    notes: str | None = None,
    tags: Iterable[Tag] = (),
) -> Contact:
    """Add a contact to ``tenant_id``; its consent starts ``unknown``.

    :raises ValidationError: invalid phone or email, or the number is already a contact.
    """
    values = _fields(phone, display_name, email, notes)
    if phone_taken(session, tenant_id, values["wa_id"]):
        raise ValidationError(DUPLICATE_PHONE, "phone")
    contact = Contact(tenant_id=tenant_id, **values)
    contact.tags = list(tags)
    session.add(contact)
    session.flush()
    return contact


def update_contact(
    session: Session,
    contact: Contact,
    phone: str,
    display_name: str | None = None,
    email: str | None = None,
    notes: str | None = None,
    tags: Iterable[Tag] | None = None,
) -> Contact:
    """Change a contact's particulars (consent changes only through the consent log)."""
    values = _fields(phone, display_name, email, notes)
    if phone_taken(session, contact.tenant_id, values["wa_id"], exclude_id=contact.id):
        raise ValidationError(DUPLICATE_PHONE, "phone")
    for key, value in values.items():
        setattr(contact, key, value)
    if tags is not None:
        contact.tags = list(tags)
    session.flush()
    return contact


def _phone_candidates(text: str) -> tuple[str | None, str]:
    """(WhatsApp id when ``text`` parses as a number, its digits without leading zeros)."""
    try:
        _e164, wa_id = normalize_contact_phone(text)
    except ValidationError:
        wa_id = None
    digits = re.sub(r"\D", "", text).lstrip("0")
    return wa_id, digits


def search_condition(query_text: str | None) -> ColumnElement[bool] | None:
    """A condition matching contacts by name, email or phone typed in any format.

    "+91 98765 43210", "09876543210", "919876543210" and "98765 43210" all find
    +919876543210. None when there is nothing to search for.

    Text made only of digits and phone punctuation is a phone search, served by indexes
    (issue 4): a number (``PHONE_EXACT_DIGITS`` digits or more) is an exact match on the
    WhatsApp id (the unique ``(tenant_id, wa_id)`` index); fewer digits (at least
    ``MIN_SUFFIX_DIGITS``) match the end of the WhatsApp id, written as a prefix match on
    ``reverse(wa_id)`` so an expression index ``(tenant_id, reverse(wa_id)
    text_pattern_ops)`` can serve it. Other text matches names and email (substring).
    """
    text = (query_text or "").strip()
    if not text:
        return None
    if PHONE_TEXT.fullmatch(text) and re.search(r"\d", text):
        return _phone_condition(text)
    pattern = f"%{_escape_like(text)}%"
    return or_(
        Contact.display_name.ilike(pattern, escape="\\"),
        Contact.profile_name.ilike(pattern, escape="\\"),
        Contact.email.ilike(pattern, escape="\\"),
    )


def _phone_condition(text: str) -> ColumnElement[bool]:
    wa_id, digits = _phone_candidates(text)
    if len(digits) >= PHONE_EXACT_DIGITS:
        ids = {i for i in (wa_id, digits) if i}
        return Contact.wa_id.in_(sorted(ids))
    tail = re.sub(r"\D", "", text)  # the end of a number: its zeros count
    if len(tail) >= MIN_SUFFIX_DIGITS:
        return func.reverse(Contact.wa_id).like(tail[::-1] + "%")
    return false()


def _escape_like(value: str) -> str:
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
