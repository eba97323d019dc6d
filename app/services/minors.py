"""Age attestation and minors' accounts (P23).

Every account is set up with an "I am 18 or older" attestation (``age_confirmed_at``).
When Compliance learns that an account belongs to a minor, `flag_as_minor` stamps
``minor_flagged_at``, deactivates the account at once and opens a deletion request for
it, which then follows the usual four-eyes deletion workflow ("delete it promptly").

Services never commit; the request does.
"""

from __future__ import annotations

from datetime import datetime

from app.models.mixins import utcnow
from app.models.privacy import PrivacyRequest, RequestChannel, RequestType, SubjectKind
from app.models.user import AppUser
from app.services import audit, privacy
from app.services.exceptions import ValidationError, WofficeError


class MinorFlagError(WofficeError):
    """The account cannot be flagged (already flagged, or the actor's own)."""


def confirm_age(user: AppUser, now: datetime | None = None) -> None:
    """Record the user's own "I am 18 or older" attestation (first time only)."""
    if user.age_confirmed_at is None:
        user.age_confirmed_at = now or utcnow()
        audit.record("user.age_confirmed", user)


def flag_as_minor(
    user: AppUser, actor: AppUser, reason: str, now: datetime | None = None
) -> PrivacyRequest:
    """Flag ``user`` as a minor's account: deactivate it and open its deletion request.

    The request is filed inside the app by the Compliance user (channel ``in_app``; it
    did not arrive by email), who is the requester of record.

    :raises MinorFlagError: already flagged, or the actor flags their own account.
    :raises ValidationError: no reason given.
    """
    if user.minor_flagged_at is not None:
        raise MinorFlagError("This account is already flagged as a minor's.")
    if user.id == actor.id:
        raise MinorFlagError("You cannot flag your own account.")
    reason = (reason or "").strip()
    if not reason:
        raise ValidationError("Say how you learned the account holder is under 18.", "reason")
    now = now or utcnow()
    user.minor_flagged_at = now
    user.active = False
    request = privacy.open_request(
        request_type=RequestType.deletion,
        subject_kind=SubjectKind.user,
        subject=user,
        channel=RequestChannel.in_app,
        requester_email=actor.email,
        requester_name=f"{actor.first_name} {actor.last_name}".strip() or None,
        details=f"Account flagged as belonging to a minor (P23). {reason}",
        received_at=now,
        created_by=actor,
    )
    audit.record(
        "user.flagged_minor",
        user,
        actor_id=actor.id,
        privacy_request_id=request.id,
    )
    return request
