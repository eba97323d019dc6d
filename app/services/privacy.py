"""Privacy requests: opening, deadlines, the status workflow and four eyes (issue 7).

Statuses move only along `TRANSITIONS`; every move is audited with who and when (the
ORM capture records the old and new status; `audit.record` names the action). A
deletion goes received → in progress → awaiting approval (prepared by one person) →
approved by ANOTHER Compliance user, after which the deletion job runs and completes
the request. A rejection needs a written reason; an extension needs a reason and keeps
the original deadline visible.

Services never commit; the request or job does.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import select

from app.extensions import db
from app.models.contact import Contact
from app.models.mixins import utcnow
from app.models.privacy import (
    OPEN_STATUSES,
    ComplianceHoliday,
    PrivacyRequest,
    RequestChannel,
    RequestStatus,
    RequestType,
    SubjectKind,
)
from app.models.tenant import Tenant
from app.models.user import AppUser
from app.services import audit, business_days
from app.services.exceptions import ValidationError, WofficeError

S = RequestStatus
TRANSITIONS: dict[RequestStatus, frozenset[RequestStatus]] = {
    S.identity_pending: frozenset({S.received, S.rejected}),
    S.received: frozenset({S.in_progress, S.rejected}),
    S.in_progress: frozenset({S.awaiting_approval, S.completed, S.rejected}),
    S.awaiting_approval: frozenset({S.in_progress, S.completed, S.rejected}),
    S.completed: frozenset(),
    S.rejected: frozenset(),
}
MAX_EXTENSION_DAYS = 30


class PrivacyWorkflowError(WofficeError):
    """A move the workflow does not allow (shown to the user as is)."""


def compliance_holidays() -> frozenset[date]:
    """The extra holidays Compliance added (on top of Sundays and national holidays)."""
    return frozenset(db.session.scalars(select(ComplianceHoliday.day)))


def subject_label(kind: SubjectKind, subject: Any) -> str:
    """A label without personal data, kept when the subject is deleted."""
    if kind == SubjectKind.tenant:
        return f"Tenant #{subject.id} ({subject.slug})"
    if kind == SubjectKind.contact:
        tenant = db.session.get(Tenant, subject.tenant_id)
        return f"Contact #{subject.id} of {tenant.slug if tenant else subject.tenant_id}"
    tenant = getattr(subject, "tenant", None)
    where = f" of {tenant.slug}" if tenant is not None else " (platform staff)"
    return f"User #{subject.id}{where}"


def open_request(
    *,
    request_type: RequestType,
    subject_kind: SubjectKind,
    subject: AppUser | Tenant | Contact | None,
    channel: RequestChannel,
    requester_email: str,
    requester_name: str | None = None,
    details: str | None = None,
    received_at: datetime | None = None,
    created_by: AppUser | None = None,
    identity_verified: bool = True,
    tenant: Tenant | None = None,
) -> PrivacyRequest:
    """Log a request; its deadline is 7 business days from ``received_at`` (IST).

    ``subject`` may be None when the requester could not be matched yet (e.g. the public
    form): ``tenant`` then names the business concerned, if known, and Compliance
    identifies the subject from the request's details.
    """
    received_at = received_at or utcnow()
    if received_at > utcnow():
        raise ValidationError("The received time cannot be in the future.", "received_at")
    if not (requester_email or "").strip():
        raise ValidationError("The requester's email is required.", "requester_email")
    if subject is None:
        tenant_id = tenant.id if tenant is not None else None
        where = f" of {tenant.slug}" if tenant is not None else ""
        label = f"Unidentified {SubjectKind(subject_kind)}{where}"
    else:
        tenant_id = subject.id if subject_kind == SubjectKind.tenant else subject.tenant_id
        label = subject_label(SubjectKind(subject_kind), subject)
    due = business_days.deadline(received_at, extra=compliance_holidays())
    request = PrivacyRequest(
        request_type=RequestType(request_type),
        subject_kind=SubjectKind(subject_kind),
        tenant_id=tenant_id,
        subject_user_id=subject.id if subject and subject_kind == SubjectKind.user else None,
        subject_contact_id=(
            subject.id if subject and subject_kind == SubjectKind.contact else None
        ),
        subject_label=label,
        channel=RequestChannel(channel),
        requester_email=requester_email.strip(),
        requester_name=(requester_name or "").strip() or None,
        details=(details or "").strip() or None,
        status=S.received if identity_verified else S.identity_pending,
        received_at=received_at,
        original_due_at=due,
        due_at=due,
        created_by_id=created_by.id if created_by else None,
    )
    db.session.add(request)
    db.session.flush()
    audit.record(
        "privacy_request.opened",
        request,
        tenant_id=tenant_id,
        request_type=str(request.request_type),
        subject_kind=str(request.subject_kind),
        channel=str(request.channel),
    )
    return request


def move(request: PrivacyRequest, to: RequestStatus, actor: AppUser | None, **details: Any) -> None:
    """Change the status along `TRANSITIONS` (audited)."""
    before = request.status
    if to not in TRANSITIONS[before]:
        raise PrivacyWorkflowError(
            f"A request that is {before.replace('_', ' ')} cannot become {to.replace('_', ' ')}."
        )
    request.status = to
    if to in (S.completed, S.rejected):
        request.completed_at = utcnow()
    audit.record(
        "privacy_request.status",
        request,
        tenant_id=request.tenant_id,
        before=str(before),
        after=str(to),
        actor_id=actor.id if actor else None,
        **details,
    )


def confirm_identity(request: PrivacyRequest, actor: AppUser) -> None:
    move(request, S.received, actor)


def assign(request: PrivacyRequest, assignee: AppUser | None, actor: AppUser) -> None:
    request.assignee_id = assignee.id if assignee else None
    audit.record(
        "privacy_request.assigned",
        request,
        tenant_id=request.tenant_id,
        assignee_id=request.assignee_id,
        actor_id=actor.id,
    )


def start(request: PrivacyRequest, actor: AppUser) -> None:
    move(request, S.in_progress, actor)
    if request.assignee_id is None:
        request.assignee_id = actor.id


def extend(request: PrivacyRequest, days: int, reason: str, actor: AppUser) -> None:
    """Move the deadline ``days`` business days later; the reason is required."""
    if not request.is_open:
        raise PrivacyWorkflowError("Only an open request can be extended.")
    reason = (reason or "").strip()
    if not reason:
        raise ValidationError("An extension needs a reason.", "reason")
    if not 1 <= int(days) <= MAX_EXTENSION_DAYS:
        raise ValidationError(f"Extend by 1 to {MAX_EXTENSION_DAYS} business days.", "days")
    before = request.due_at
    request.due_at = business_days.extend(request.due_at, int(days), compliance_holidays())
    request.extension_reason = reason
    request.extended_at = utcnow()
    request.extended_by_id = actor.id
    audit.record(
        "privacy_request.extended",
        request,
        tenant_id=request.tenant_id,
        days=int(days),
        before=before.isoformat(),
        after=request.due_at.isoformat(),
        actor_id=actor.id,
    )


def reject(request: PrivacyRequest, reason: str, actor: AppUser) -> None:
    reason = (reason or "").strip()
    if not reason:
        raise ValidationError("A rejection needs a written reason.", "reason")
    request.rejection_reason = reason
    move(request, S.rejected, actor)


def submit_for_approval(request: PrivacyRequest, actor: AppUser, plan: dict[str, Any]) -> None:
    """A deletion, prepared by ``actor`` with its plan, waits for a second person."""
    if request.request_type != RequestType.deletion:
        raise PrivacyWorkflowError("Only deletions need an approval.")
    request.deletion_plan = plan
    request.prepared_by_id = actor.id
    move(request, S.awaiting_approval, actor)


def approve(request: PrivacyRequest, actor: AppUser) -> None:
    """Four eyes: the approver is not the person who prepared the deletion."""
    if request.status != S.awaiting_approval:
        raise PrivacyWorkflowError("Only a request awaiting approval can be approved.")
    if actor.id == request.prepared_by_id:
        raise PrivacyWorkflowError(
            "Four eyes: a deletion must be approved by someone other than who prepared it."
        )
    request.approved_by_id = actor.id
    request.approved_at = utcnow()
    audit.record(
        "privacy_request.approved",
        request,
        tenant_id=request.tenant_id,
        actor_id=actor.id,
        prepared_by_id=request.prepared_by_id,
    )


def complete(request: PrivacyRequest, actor: AppUser | None, resolution: str | None = None) -> None:
    if request.request_type == RequestType.deletion and request.approved_by_id is None:
        raise PrivacyWorkflowError("A deletion completes only after its approval.")
    if resolution:
        request.resolution = resolution.strip()
    move(request, S.completed, actor)


def worklist(
    *, assignee_id: int | None = None, now: datetime | None = None
) -> list[tuple[PrivacyRequest, str, int]]:
    """Open requests by deadline, each with its urgency and business days left."""
    now = now or utcnow()
    extra = compliance_holidays()
    query = select(PrivacyRequest).where(PrivacyRequest.status.in_(list(OPEN_STATUSES)))
    if assignee_id is not None:
        query = query.where(PrivacyRequest.assignee_id == assignee_id)
    rows = db.session.scalars(query.order_by(PrivacyRequest.due_at)).all()
    return [
        (
            row,
            business_days.urgency(now, row.due_at, extra),
            business_days.business_days_left(now, row.due_at, extra),
        )
        for row in rows
    ]
