"""Tenants: validation of their particulars and lifecycle changes."""

from __future__ import annotations

import functools
import re

from email_validator import EmailNotValidError, validate_email
from sqlalchemy import select
from sqlalchemy.orm import Session
from stdnum.exceptions import ValidationError as StdnumError
from stdnum.in_ import gstin as stdnum_gstin

from app.models.tenant import MAX_MESSAGING_LIMIT_MPS, Tenant, TenantStatus
from app.models.types import key_ring
from app.services.exceptions import TenantValidationError, ValidationError
from app.services.gst_states import GST_STATES
from app.services.phones import normalize_phone

SLUG_RE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$")
PIN_RE = re.compile(r"^[1-9][0-9]{5}$")
GRAPH_ID_RE = re.compile(r"^[0-9]{5,32}$")
# Secrets as Meta issues them: printable, no spaces (a paste with a line break is a mistake).
SECRET_RE = re.compile(r"^[\x21-\x7e]+$")
SECRET_LENGTHS = {"wa_access_token": (20, 4096), "wa_app_secret": (16, 256)}
SECRET_LABELS = {"wa_access_token": "access token", "wa_app_secret": "app secret"}

# Allowed lifecycle moves (P17); "deleted" is reached only through the deletion job.
TRANSITIONS: dict[TenantStatus, set[TenantStatus]] = {
    TenantStatus.trial: {TenantStatus.active, TenantStatus.suspended, TenantStatus.closing},
    TenantStatus.active: {TenantStatus.suspended, TenantStatus.closing},
    TenantStatus.suspended: {TenantStatus.active, TenantStatus.closing},
    TenantStatus.closing: {TenantStatus.active},
    TenantStatus.deleted: set(),
}


# An ASCII dot-atom local part (RFC 5322 atext): email_validator accepts it as written.
_PLAIN_LOCAL = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*")


@functools.lru_cache(maxsize=4096)
def _email_domain(domain: str) -> str | None:
    """The normalised domain, or None when email_validator refuses it (cached: a file of
    contacts repeats a few domains, and the domain checks are most of the cost)."""
    try:
        return validate_email("x@" + domain, check_deliverability=False).domain
    except EmailNotValidError:
        return None


def normalize_email(value: str, field: str = "email") -> str:
    """Validate an email address's syntax and return it normalised (lower-case domain).

    :raises TenantValidationError: when it is not a valid address.
    """
    local, at, domain = (value or "").strip().rpartition("@")
    if at and len(local) <= 64 and len(local) + len(domain) < 254 and _PLAIN_LOCAL.fullmatch(local):
        normalized = _email_domain(domain)
        if normalized is not None:
            return f"{local}@{normalized}"
    # Anything else gets email_validator's full check (and its explanation).
    try:
        return validate_email((value or "").strip(), check_deliverability=False).normalized
    except EmailNotValidError as exc:
        raise TenantValidationError(f"Invalid email address: {exc}", field) from exc


def normalize_slug(value: str) -> str:
    """Lower-case, hyphenated slug.

    :raises TenantValidationError: when it has characters other than a-z, 0-9 and '-'.
    """
    slug = (value or "").strip().lower()
    if not SLUG_RE.match(slug):
        raise TenantValidationError(
            "Use 1-64 lower-case letters, digits and hyphens (not at the ends).", "slug"
        )
    return slug


def validate_state_code(code: str) -> str:
    """:raises TenantValidationError: for a code not in the GST state table."""
    code = (code or "").strip()
    if code not in GST_STATES:
        raise TenantValidationError("Choose the GST state of the billing address.", "state_code")
    return code


def validate_postal_code(value: str) -> str:
    """:raises TenantValidationError: unless a 6-digit Indian PIN code."""
    pin = (value or "").strip()
    if not PIN_RE.match(pin):
        raise TenantValidationError("Enter the 6-digit PIN code.", "postal_code")
    return pin


def normalize_gstin(value: str | None, state_code: str | None) -> str | None:
    """Validate a GSTIN (optional) and check it belongs to the billing state.

    :raises TenantValidationError: on a bad format or check character, or when its
        first two digits differ from ``state_code``.
    """
    raw = (value or "").strip().upper().replace(" ", "")
    if not raw:
        return None
    try:
        gstin = stdnum_gstin.validate(raw)
    except StdnumError as exc:
        raise TenantValidationError(
            f"{raw} is not a valid GSTIN ({exc.message}).", "gstin"
        ) from exc
    if state_code and gstin[:2] != state_code:
        raise TenantValidationError(
            f"GSTIN {gstin} is registered in state {gstin[:2]} "
            f"({GST_STATES.get(gstin[:2], 'unknown')}), but the billing state is "
            f"{state_code} ({GST_STATES.get(state_code, 'unknown')}).",
            "gstin",
        )
    return gstin


def slug_taken(session: Session, slug: str, exclude_id: int | None = None) -> bool:
    """True when another tenant already uses ``slug``."""
    stmt = select(Tenant.id).where(Tenant.slug == slug)
    if exclude_id is not None:
        stmt = stmt.where(Tenant.id != exclude_id)
    return session.execute(stmt).first() is not None


def phone_number_id_taken(session: Session, value: str, exclude_id: int | None = None) -> bool:
    """True when another tenant already has this WhatsApp phone number id."""
    stmt = select(Tenant.id).where(Tenant.wa_phone_number_id == value)
    if exclude_id is not None:
        stmt = stmt.where(Tenant.id != exclude_id)
    return session.execute(stmt).first() is not None


def change_status(tenant: Tenant, new_status: TenantStatus) -> None:
    """Move a tenant along its lifecycle.

    :raises TenantValidationError: for a move the lifecycle does not allow.
    """
    if new_status == tenant.status:
        return
    if new_status not in TRANSITIONS[tenant.status]:
        raise TenantValidationError(
            f"A {tenant.status.value} tenant cannot become {new_status.value}.", "status"
        )
    tenant.status = new_status


# ------------------------------------------------------------ WhatsApp Cloud API


def normalize_graph_id(value: str | None, field: str) -> str | None:
    """A Graph API id (phone number id, WhatsApp Business Account id): digits, optional.

    :raises TenantValidationError: when it is not 5-32 digits.
    """
    raw = (value or "").strip()
    if not raw:
        return None
    if not GRAPH_ID_RE.match(raw):
        raise TenantValidationError(
            "Enter the numeric id shown in Meta's WhatsApp Manager (5-32 digits), "
            "not the phone number itself.",
            field,
        )
    return raw


def normalize_wa_display_number(value: str | None) -> str | None:
    """The business number as customers see it, in E.164; optional.

    :raises TenantValidationError: when it is not a valid phone number.
    """
    if not (value or "").strip():
        return None
    try:
        return normalize_phone(value or "", field="wa_display_number")
    except ValidationError as exc:
        raise TenantValidationError(str(exc), "wa_display_number") from exc


def validate_messaging_limit(value: int | str | None) -> int:
    """The throughput cap in messages per second: 1 to 1,000.

    :raises TenantValidationError: when missing, not a whole number or out of range.
    """
    try:
        mps = int(str(value).strip())
    except (TypeError, ValueError) as exc:
        raise TenantValidationError(
            "Enter the messaging limit as a whole number of messages per second.",
            "wa_messaging_limit_mps",
        ) from exc
    if not 1 <= mps <= MAX_MESSAGING_LIMIT_MPS:
        raise TenantValidationError(
            f"The messaging limit must be between 1 and {MAX_MESSAGING_LIMIT_MPS} messages "
            f"per second (Meta's default is 80); {mps} is out of range.",
            "wa_messaging_limit_mps",
        )
    return mps


def normalize_secret(field: str, value: str | None) -> str | None:
    """A secret typed into a form: stripped, None when empty.

    :raises TenantValidationError: for spaces inside it or an implausible length.
    """
    secret = (value or "").strip()
    if not secret:
        return None
    label = SECRET_LABELS[field]
    low, high = SECRET_LENGTHS[field]
    if not SECRET_RE.match(secret):
        raise TenantValidationError(
            f"The {label} cannot contain spaces or line breaks; paste it again.", field
        )
    if not low <= len(secret) <= high:
        raise TenantValidationError(
            f"The {label} must be {low} to {high} characters long; this one has {len(secret)}.",
            field,
        )
    return secret


def check_secret_change(field: str, new_value: str | None, clear: bool) -> bool:
    """A new value and "remove" together are contradictory; returns ``clear``.

    :raises TenantValidationError: when both are given.
    """
    if clear and (new_value or "").strip():
        raise TenantValidationError(
            f"Either enter a new {SECRET_LABELS[field]} or tick remove, not both.", field
        )
    return clear


def update_whatsapp_secret(
    tenant: Tenant, field: str, new_value: str | None, clear: bool = False
) -> bool:
    """Replace (a non-empty value), remove (``clear``) or keep (neither) a tenant secret.

    Returns True when the stored secret changed.

    :raises TenantValidationError: for an unknown field, a malformed value, or both a
        value and ``clear``.
    :raises EncryptionKeyError: when FIELD_ENCRYPTION_KEYS is empty or malformed.
    """
    if field not in Tenant.__secret_fields__:
        raise TenantValidationError(f"{field} is not a tenant secret.", field)
    check_secret_change(field, new_value, clear)
    secret = normalize_secret(field, new_value)
    # Fail on missing or malformed keys here, not at flush time, where SQLAlchemy's
    # error would quote the plaintext among the statement's parameters.
    key_ring()
    if clear:
        setattr(tenant, field, None)
        return True
    if secret is None:
        return False
    setattr(tenant, field, secret)
    return True
