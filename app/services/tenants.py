"""Tenants: validation of their particulars and lifecycle changes."""

from __future__ import annotations

import re

from email_validator import EmailNotValidError, validate_email
from sqlalchemy import select
from sqlalchemy.orm import Session
from stdnum.exceptions import ValidationError as StdnumError
from stdnum.in_ import gstin as stdnum_gstin

from app.models.tenant import Tenant, TenantStatus
from app.services.exceptions import TenantValidationError
from app.services.gst_states import GST_STATES

SLUG_RE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$")
PIN_RE = re.compile(r"^[1-9][0-9]{5}$")

# Allowed lifecycle moves (P17); "deleted" is reached only through the deletion job.
TRANSITIONS: dict[TenantStatus, set[TenantStatus]] = {
    TenantStatus.trial: {TenantStatus.active, TenantStatus.suspended, TenantStatus.closing},
    TenantStatus.active: {TenantStatus.suspended, TenantStatus.closing},
    TenantStatus.suspended: {TenantStatus.active, TenantStatus.closing},
    TenantStatus.closing: {TenantStatus.active},
    TenantStatus.deleted: set(),
}


def normalize_email(value: str, field: str = "email") -> str:
    """Validate an email address's syntax and return it normalised (lower-case domain).

    :raises TenantValidationError: when it is not a valid address.
    """
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
