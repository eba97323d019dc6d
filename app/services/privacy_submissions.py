"""The public privacy request form: a request exists only once its email is proven (P21).

`submit` validates what the requester typed, applies the rate limits and stores a
`PrivacySubmission` holding a 6-digit code as a keyed hash (never the code itself); the
caller sends the returned email through the mail queue after committing. `confirm`
checks the code in constant time (5 attempts, 30 minutes) and only then opens the
`PrivacyRequest`, whose clock starts at confirmation.

Rate limits are counted from `privacy_submission` rows, so every web node sees the
same counts and they work without Redis: per email and per (hashed) client address.
Audit events carry hashed identifiers only, never the email or the details.

Services never commit. A refused code still counts an attempt: the caller commits
after `SubmissionCodeError` too (and after `SubmissionRateLimitedError`, for its audit).
"""

from __future__ import annotations

import hmac
import math
import re
import secrets
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

from flask import current_app
from sqlalchemy import delete, func, or_, select

from app.extensions import db
from app.models.contact import Contact
from app.models.mixins import utcnow
from app.models.privacy import (
    PrivacyRequest,
    PrivacySubmission,
    RequestChannel,
    RequestType,
    SubjectKind,
)
from app.models.tenant import Tenant
from app.models.user import AppUser
from app.services import audit, privacy
from app.services.business_days import IST
from app.services.exceptions import ValidationError, WofficeError
from app.services.identity import hash_identifier
from app.services.mail import message_payload
from app.services.phones import normalize_phone
from app.services.tenants import normalize_email
from app.services.users import TENANT_ADMIN

CODE_TTL = timedelta(minutes=30)
MAX_ATTEMPTS = 5
RATE_WINDOW = timedelta(hours=1)
MAX_PER_EMAIL = 3  # submissions per email per window (PRIVACY_FORM_MAX_PER_EMAIL)
MAX_PER_IP = 10  # submissions per client address per window (PRIVACY_FORM_MAX_PER_IP)
MAX_DETAILS = 5000
MAX_SHORT = 200
KEEP_SUBMISSIONS = timedelta(days=1)  # past the code's life and the rate window

# Who the requester is: the form's choice -> the kind of subject it names.
WHO: dict[str, tuple[SubjectKind, str]] = {
    "user": (SubjectKind.user, "a user of Woffice"),
    "contact": (
        SubjectKind.contact,
        "a customer of a business that uses Woffice (its contact)",
    ),
    "closure": (SubjectKind.tenant, "a business closing its Woffice account"),
}
REQUEST_TYPES: dict[str, str] = {
    "access": "Access: a copy of my personal data",
    "correction": "Correction of my personal data",
    "deletion": "Deletion of my personal data",
    "portability": "Portability: my data in a machine-readable file",
    "objection": "Objection to a processing of my data",
}
_CODE_RE = re.compile(r"\d{6}")


class SubmissionInvalidError(ValidationError):
    """The form has errors; ``errors`` maps each field to its message."""

    def __init__(self, errors: dict[str, str]):
        super().__init__("Please correct the highlighted fields.")
        self.errors = errors


class SubmissionRateLimitedError(WofficeError):
    """Too many submissions from this email or address; ``retry_after`` in seconds."""

    def __init__(self, message: str, retry_after: int):
        super().__init__(message)
        self.retry_after = retry_after


class SubmissionNotFoundError(WofficeError):
    """No submission has this token."""


class SubmissionClosedError(WofficeError):
    """The submission can no longer be confirmed (used, expired or out of attempts)."""


class SubmissionCodeError(WofficeError):
    """The code is wrong (the attempt was counted) or malformed (not counted)."""


class Submitted(NamedTuple):
    submission: PrivacySubmission
    email: dict[str, Any]  # the code email, for the mail queue once committed


# ----------------------------------------------------------------------- submit


def validate(data: Mapping[str, Any]) -> dict[str, Any]:
    """The cleaned form: every field checked, all errors at once.

    :raises SubmissionInvalidError: naming each offending field.
    """
    errors: dict[str, str] = {}

    def text(name: str) -> str:
        return str(data.get(name) or "").strip()

    cleaned: dict[str, Any] = {"request_type": text("request_type"), "who": text("who")}
    if cleaned["request_type"] not in REQUEST_TYPES:
        errors["request_type"] = "Choose what you are asking for."
    if cleaned["who"] not in WHO:
        errors["who"] = "Tell us who you are."
    for name in ("name", "business"):
        cleaned[name] = text(name)
        if len(cleaned[name]) > MAX_SHORT:
            errors[name] = f"At most {MAX_SHORT} characters."
    if not cleaned["business"] and cleaned["who"] in ("contact", "closure"):
        errors["business"] = "Name the business (its name or its Woffice address)."
    try:
        cleaned["email"] = normalize_email(text("email"))
    except ValidationError as exc:
        errors["email"] = "Enter your email address." if not text("email") else str(exc)
    cleaned["phone"] = None
    if text("phone"):
        try:
            cleaned["phone"] = normalize_phone(text("phone"))
        except ValidationError as exc:
            errors["phone"] = str(exc)
    cleaned["details"] = text("details")
    if not cleaned["details"]:
        errors["details"] = "Describe your request."
    elif len(cleaned["details"]) > MAX_DETAILS:
        errors["details"] = (
            f"At most {MAX_DETAILS} characters (you wrote {len(cleaned['details'])})."
        )
    if errors:
        raise SubmissionInvalidError(errors)
    return cleaned


def submit(
    data: Mapping[str, Any],
    client_ip: str | None,
    *,
    confirm_url: Callable[[str], str],
    now: datetime | None = None,
) -> Submitted:
    """Store a submission waiting for its emailed code; return it and the code email.

    ``confirm_url(token)`` is the page where the code is entered. No request exists yet.

    :raises SubmissionInvalidError: when the form has errors.
    :raises SubmissionRateLimitedError: past the per-email or per-address limit (audited;
        the caller commits the audit event).
    """
    now = now or utcnow()
    cleaned = validate(data)
    email = cleaned.pop("email")
    ip_hash = hash_identifier(client_ip) if client_ip else None
    _check_rate_limits(email, ip_hash, now)
    code = f"{secrets.randbelow(10**6):06d}"
    token = secrets.token_urlsafe(32)
    submission = PrivacySubmission(
        token=token,
        email=email,
        payload=cleaned,
        code_hash=_code_hash(token, code),
        attempts=0,
        created_at=now,
        expires_at=now + CODE_TTL,
        client_ip_hash=ip_hash,
    )
    db.session.add(submission)
    db.session.flush()
    audit.record(
        "privacy_submission.submitted",
        submission,
        email_hash=hash_identifier(email),
        request_type=cleaned["request_type"],
        who=cleaned["who"],
    )
    return Submitted(submission, code_email(submission, code, confirm_url(token)))


def code_email(submission: PrivacySubmission, code: str, url: str) -> dict[str, Any]:
    """The email carrying the confirmation code (JSON-safe payload for the mail job)."""
    expires = _ist(submission.expires_at)
    body = (
        "Hello,\n\n"
        "Someone (we hope you) asked Woffice to handle a privacy request for this email "
        "address. To confirm it, enter this code:\n\n"
        f"    {code}\n\n"
        f"on this page: {url}\n\n"
        f"The code works until {expires} and for {MAX_ATTEMPTS} attempts. Your request "
        "is registered, and our 7-business-day deadline starts, once you confirm it.\n\n"
        "If you did not ask for this, ignore this email: nothing will happen.\n\n"
        "Woffice Privacy Team\n"
    )
    return message_payload(
        to=submission.email, subject="Confirm your Woffice privacy request", body=body
    )


def _check_rate_limits(email: str, ip_hash: str | None, now: datetime) -> None:
    config = current_app.config
    since = now - RATE_WINDOW
    checks = [
        (
            func.lower(PrivacySubmission.email) == email.lower(),
            int(config.get("PRIVACY_FORM_MAX_PER_EMAIL", MAX_PER_EMAIL)),
            "this email address",
        )
    ]
    if ip_hash:
        checks.append(
            (
                PrivacySubmission.client_ip_hash == ip_hash,
                int(config.get("PRIVACY_FORM_MAX_PER_IP", MAX_PER_IP)),
                "your network address",
            )
        )
    for condition, limit, what in checks:
        count, oldest = db.session.execute(
            select(func.count(PrivacySubmission.id), func.min(PrivacySubmission.created_at)).where(
                condition, PrivacySubmission.created_at >= since
            )
        ).one()
        if count >= limit and oldest is not None:
            retry = max(60, math.ceil((oldest + RATE_WINDOW - now).total_seconds()))
            audit.record(
                "privacy_submission.rate_limited",
                email_hash=hash_identifier(email),
                limit=what,
            )
            minutes = math.ceil(retry / 60)
            raise SubmissionRateLimitedError(
                f"Too many privacy requests were sent from {what} in the last hour "
                f"(at most {limit}). Please try again in {minutes} minute"
                f"{'s' if minutes != 1 else ''}, or write to us by email with the subject "
                '"Privacy Request".',
                retry,
            )


# ---------------------------------------------------------------------- confirm


def find(token: str) -> PrivacySubmission:
    """The submission behind ``token``.

    :raises SubmissionNotFoundError: when there is none.
    """
    submission = db.session.scalars(
        select(PrivacySubmission).where(PrivacySubmission.token == (token or "")[:64])
    ).one_or_none()
    if submission is None:
        raise SubmissionNotFoundError(
            "This confirmation page is unknown or has been removed. Please submit the form again."
        )
    return submission


def confirmed_request(submission: PrivacySubmission) -> PrivacyRequest | None:
    """The request a confirmed submission opened (None while unconfirmed)."""
    request_id = (submission.payload or {}).get("request_id")
    return db.session.get(PrivacyRequest, request_id) if request_id else None


def confirm(token: str, code: str, *, now: datetime | None = None) -> PrivacyRequest:
    """Open the request once the emailed code is right; the clock starts now.

    :raises SubmissionNotFoundError: for an unknown token.
    :raises SubmissionClosedError: when already confirmed, expired or out of attempts.
    :raises SubmissionCodeError: for a wrong code (the attempt is counted: commit).
    """
    now = now or utcnow()
    submission = db.session.scalars(
        select(PrivacySubmission)
        .where(PrivacySubmission.token == (token or "")[:64])
        # Two tabs confirming at once: one request, every attempt counted. Refresh what
        # the session may already hold (the view loaded it without the lock).
        .with_for_update()
        .execution_options(populate_existing=True)
    ).one_or_none()
    if submission is None:
        raise SubmissionNotFoundError("This confirmation page is unknown. Submit the form again.")
    _check_open(submission, now)
    entered = re.sub(r"[\s-]", "", code or "")
    if not _CODE_RE.fullmatch(entered):
        raise SubmissionCodeError("Enter the 6-digit code from the email.")
    if not hmac.compare_digest(_code_hash(submission.token, entered), submission.code_hash):
        submission.attempts += 1
        left = MAX_ATTEMPTS - submission.attempts
        audit.record(
            "privacy_submission.code_failed",
            submission,
            email_hash=hash_identifier(submission.email),
            attempts=submission.attempts,
        )
        if left <= 0:
            raise SubmissionClosedError(
                "That code is wrong, and it was the last attempt: this submission is "
                "closed. Please submit the form again to get a new code."
            )
        raise SubmissionCodeError(
            f"That code is wrong. {left} attempt{'s' if left != 1 else ''} left."
        )
    request = _open(submission, now)
    submission.confirmed_at = now
    # The request now holds what was typed; keep only the link to it (minimisation).
    submission.payload = {"request_id": request.id}
    audit.record(
        "privacy_submission.confirmed",
        submission,
        tenant_id=request.tenant_id,
        email_hash=hash_identifier(submission.email),
        request_id=request.id,
    )
    return request


def _check_open(submission: PrivacySubmission, now: datetime) -> None:
    if submission.confirmed_at is not None:
        done = confirmed_request(submission)
        ref = f" (reference {done.reference})" if done is not None else ""
        raise SubmissionClosedError(
            f"This request was already confirmed{ref}. There is nothing more to do: "
            "we will reply by email."
        )
    if now > submission.expires_at:
        raise SubmissionClosedError(
            f"This code expired at {_ist(submission.expires_at)} (codes last "
            f"{int(CODE_TTL.total_seconds() // 60)} minutes). Please submit the form again."
        )
    if submission.attempts >= MAX_ATTEMPTS:
        raise SubmissionClosedError(
            "Too many wrong codes were entered: this submission is closed. Please submit "
            "the form again to get a new code."
        )


def _open(submission: PrivacySubmission, now: datetime) -> PrivacyRequest:
    data = submission.payload
    kind, who_label = WHO[data["who"]]
    tenant = _find_tenant(data.get("business") or "")
    subject = _match_subject(data["who"], submission.email, data.get("phone"), tenant)
    facts = [f"Submitted through the public form as {who_label}."]
    if data.get("business"):
        facts.append(f"Business named: {data['business']}")
    if data.get("phone"):
        facts.append(f"Phone: {data['phone']}")
    return privacy.open_request(
        request_type=RequestType(data["request_type"]),
        subject_kind=kind,
        subject=subject,
        tenant=tenant if subject is None else None,
        channel=RequestChannel.public_form,
        requester_email=submission.email,
        requester_name=data.get("name") or None,
        details="\n".join(facts) + "\n\n" + data["details"],
        received_at=now,
        identity_verified=True,
    )


def _find_tenant(named: str) -> Tenant | None:
    """The one tenant whose slug or name is ``named`` (case-insensitive), if any."""
    named = named.strip().lower()
    if not named:
        return None
    rows = db.session.scalars(
        select(Tenant)
        .where(
            or_(
                func.lower(Tenant.slug) == named,
                func.lower(Tenant.name) == named,
                func.lower(Tenant.legal_name) == named,
            )
        )
        .execution_options(skip_tenant_scope=True)
    ).all()
    return rows[0] if len(rows) == 1 else None


def _match_subject(
    who: str, email: str, phone: str | None, tenant: Tenant | None
) -> AppUser | Tenant | Contact | None:
    """The subject, only when the match is unambiguous; else Compliance identifies it."""
    if who == "user":
        users = _users_with_email(email)
        return users[0] if len(users) == 1 else None
    if tenant is None:
        return None
    if who == "contact":
        if not phone:
            return None
        contacts = db.session.scalars(
            select(Contact)
            .where(Contact.tenant_id == tenant.id, Contact.phone == phone)
            .execution_options(skip_tenant_scope=True)
        ).all()
        return contacts[0] if len(contacts) == 1 else None
    # An account closure names the tenant only when the email speaks for it.
    if (tenant.contact_email or "").lower() == email.lower():
        return tenant
    admins = [
        u
        for u in _users_with_email(email)
        if u.tenant_id == tenant.id and any(r.name == TENANT_ADMIN for r in u.roles)
    ]
    return tenant if admins else None


def _users_with_email(email: str) -> list[AppUser]:
    return list(
        db.session.scalars(
            select(AppUser)
            .where(func.lower(AppUser.email) == email.lower())
            .execution_options(skip_tenant_scope=True)
        )
    )


def receipt_email(request: PrivacyRequest) -> dict[str, Any]:
    """The acknowledgement sent once a public request is confirmed."""
    body = (
        "Hello,\n\n"
        f"We have registered your privacy request. Its reference is {request.reference}.\n"
        f"We will respond by {_ist(request.due_at)} (7 business days).\n\n"
        "Quote the reference if you write to us about it.\n\n"
        "Woffice Privacy Team\n"
    )
    return message_payload(
        to=request.requester_email,
        subject=f"Privacy request {request.reference} received",
        body=body,
    )


def purge_submissions(*, now: datetime | None = None) -> int:
    """Delete submissions older than a day (confirmed, expired or abandoned)."""
    cutoff = (now or utcnow()) - KEEP_SUBMISSIONS
    result = db.session.execute(
        delete(PrivacySubmission).where(PrivacySubmission.created_at < cutoff)
    )
    return int(result.rowcount or 0)


def _code_hash(token: str, code: str) -> str:
    # Keyed with the identity key and bound to the token: a stolen row reveals nothing.
    return hash_identifier(f"privacy-code:{token}:{code}")


def _ist(value: datetime) -> str:
    return value.replace(tzinfo=UTC).astimezone(IST).strftime("%d %b %Y, %H:%M IST")
