"""Resolving correction and objection requests (issue 7, P20).

* A correction records what was corrected where: the object, the field names and the
  audit events of the edit (picked from the subject's history), then completes.
* An objection sets the flag that stops the objected processing, then completes: a
  contact's consent log gets an "objection" event (campaign audiences skip it as
  objecting); a user gets ``analytics_objection_at`` (left out of usage analytics).

Audit details hold ids and field names only, never the values (DESIGN, "Secrets and
personal data"). Services never commit; the request does.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import or_, select

from app.extensions import db
from app.models.audit import AuditEvent
from app.models.contact import ConsentAction, ConsentSource, Contact
from app.models.mixins import audit_name, utcnow
from app.models.privacy import PrivacyRequest, RequestStatus, RequestType, SubjectKind
from app.models.tenant import Tenant
from app.models.user import AppUser
from app.services import audit, consent, privacy
from app.services.exceptions import ValidationError
from app.services.privacy import PrivacyWorkflowError

CORRECTED_ACTION = "privacy_request.corrected"
OBJECTION_ACTION = "privacy_request.objection_applied"
MAX_EVENTS = 100


def subject_object(request: PrivacyRequest) -> tuple[str, str | None]:
    """(audit object type, object id) of the request's subject."""
    if request.subject_kind == SubjectKind.contact:
        return audit_name(Contact), _str(request.subject_contact_id)
    if request.subject_kind == SubjectKind.user:
        return audit_name(AppUser), _str(request.subject_user_id)
    return audit_name(Tenant), _str(request.tenant_id)


def _str(value: Any) -> str | None:
    return None if value is None else str(value)


def subject_events(request: PrivacyRequest, limit: int = MAX_EVENTS) -> list[AuditEvent]:
    """Audit events the correction can be linked to, newest first: the subject's own
    events, and for a whole tenant every change in that tenant since the receipt."""
    kind, ident = subject_object(request)
    if ident is None:
        return []
    on_subject = (AuditEvent.object_type == kind) & (AuditEvent.object_id == ident)
    condition = on_subject
    if request.subject_kind == SubjectKind.tenant:
        condition = or_(
            on_subject,
            (AuditEvent.tenant_id == request.tenant_id)
            & (AuditEvent.occurred_at >= request.received_at)
            & AuditEvent.fields.is_not(None),
        )
    return list(
        db.session.scalars(
            select(AuditEvent)
            .where(condition)
            .order_by(AuditEvent.id.desc())
            .limit(limit)
            .execution_options(skip_tenant_scope=True)
        )
    )


def _require(request: PrivacyRequest, kind: RequestType) -> None:
    if request.request_type != kind:
        raise PrivacyWorkflowError(f"This is not a {kind} request.")
    if request.status != RequestStatus.in_progress:
        raise PrivacyWorkflowError("Start the request (in progress) before resolving it.")


def record_correction(
    request: PrivacyRequest,
    actor: AppUser,
    *,
    where: str,
    fields: list[str],
    event_ids: list[int],
    note: str = "",
) -> None:
    """Record what was corrected where, linked to the edit's audit events; completes.

    :raises PrivacyWorkflowError: when the request is not a correction in progress.
    :raises ValidationError: when the object, the fields or the events are missing or
        the events are not the subject's.
    """
    _require(request, RequestType.correction)
    where = (where or "").strip()
    fields = [f.strip() for f in fields if f and f.strip()]
    if not where:
        raise ValidationError("Name the object that was corrected.", "where")
    if not fields:
        raise ValidationError("Name the corrected field(s).", "fields")
    ids = sorted({int(i) for i in event_ids})
    if not ids:
        raise ValidationError("Pick the audit event(s) of the edit.", "event_ids")
    allowed = {e.id for e in subject_events(request, limit=1000)}
    unknown = [i for i in ids if i not in allowed]
    if unknown:
        raise ValidationError(
            f"Audit event(s) {', '.join(f'#{i}' for i in unknown)} are not about the subject.",
            "event_ids",
        )
    links = ", ".join(f"#{i}" for i in ids)
    text = f"Corrected {', '.join(fields)} on {where} (audit events {links})."
    if (note or "").strip():
        text += f"\n{note.strip()}"
    audit.record(
        CORRECTED_ACTION,
        request,
        tenant_id=request.tenant_id,
        fields_corrected=fields,
        audit_event_ids=ids,
        actor_id=actor.id,
    )
    privacy.complete(request, actor, resolution=text)


def correction_links(request: PrivacyRequest) -> list[int]:
    """The audit event ids a completed correction was linked to."""
    event = db.session.scalars(
        select(AuditEvent)
        .where(
            AuditEvent.action == CORRECTED_ACTION,
            AuditEvent.object_type == audit_name(PrivacyRequest),
            AuditEvent.object_id == str(request.id),
        )
        .order_by(AuditEvent.id.desc())
        .limit(1)
        .execution_options(skip_tenant_scope=True)
    ).first()
    return list((event.details or {}).get("audit_event_ids", [])) if event else []


def apply_objection(request: PrivacyRequest, actor: AppUser) -> str:
    """Set the objection flag on the subject and complete the request; returns what
    stopped.

    :raises PrivacyWorkflowError: when the request is not an objection in progress or
        its subject is gone or a whole tenant.
    """
    _require(request, RequestType.objection)
    if request.subject_kind == SubjectKind.contact and request.subject_contact_id:
        contact = db.session.get(Contact, request.subject_contact_id)
        if contact is None:
            raise PrivacyWorkflowError("The contact no longer exists.")
        if not contact.marketing_objection:
            consent.record_consent(
                db.session,
                contact,
                ConsentAction.objection,
                ConsentSource.tenant_action,
                evidence=f"Privacy request {request.reference}",
                actor_id=actor.id,
            )
        stopped = f"Marketing campaigns stopped for contact #{contact.id} (objection recorded)."
    elif request.subject_kind == SubjectKind.user and request.subject_user_id:
        user = db.session.get(AppUser, request.subject_user_id)
        if user is None:
            raise PrivacyWorkflowError("The user no longer exists.")
        if user.analytics_objection_at is None:
            user.analytics_objection_at = utcnow()
        stopped = f"Usage analytics stopped for user #{user.id}."
    else:
        raise PrivacyWorkflowError("Identify the user or contact who objects first.")
    audit.record(
        OBJECTION_ACTION,
        request,
        tenant_id=request.tenant_id,
        subject_kind=str(request.subject_kind),
        actor_id=actor.id,
    )
    privacy.complete(request, actor, resolution=stopped)
    return stopped


def subject_flags(request: PrivacyRequest) -> dict[str, Any]:
    """The subject's objection flags, for the request page."""
    if request.subject_kind == SubjectKind.contact and request.subject_contact_id:
        contact = db.session.get(Contact, request.subject_contact_id)
        if contact is not None:
            return {"marketing_objection": bool(contact.marketing_objection)}
    if request.subject_kind == SubjectKind.user and request.subject_user_id:
        user = db.session.get(AppUser, request.subject_user_id)
        if user is not None:
            return {"analytics_objection_at": user.analytics_objection_at}
    return {}
