"""The incident register (P16): CERT-In's 6-hour clock and notifying affected tenants.

CERT-In must be told within `CERT_IN_HOURS` of detection. The register shows each
incident's deadline and the time left (or how long it is overdue), computed here so the
page is right without JavaScript. Notifying the affected tenants emails every active
Tenant Admin of each affected tenant once: ``tenants_notified_at`` makes it idempotent.

Services never commit; the request or job does.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select

from app.extensions import db
from app.models.mixins import utcnow
from app.models.privacy import Incident
from app.models.tenant import Tenant, TenantStatus
from app.models.user import AppUser, Role
from app.services import audit
from app.services.exceptions import ValidationError, WofficeError
from app.services.mail import message_payload
from app.services.policy import TENANT_ADMIN, ist

CERT_IN_HOURS = 6


class IncidentStateError(WofficeError):
    """The incident is not in a state that allows this (already reported, ...)."""


@dataclass(frozen=True)
class Clock:
    """Where an incident stands against the CERT-In deadline."""

    deadline: datetime
    seconds_left: int  # negative once overdue; frozen at the report time once reported
    reported: bool

    @property
    def overdue(self) -> bool:
        return self.seconds_left < 0

    @property
    def label(self) -> str:
        """ "4 h 12 min left", "overdue by 1 h", "reported 2 h 5 min before the deadline"."""
        span = _span(abs(self.seconds_left))
        if self.reported:
            return f"reported {span} late" if self.overdue else f"reported with {span} to spare"
        return f"overdue by {span}" if self.overdue else f"{span} left"


def _span(seconds: int) -> str:
    minutes = seconds // 60
    hours, minutes = divmod(minutes, 60)
    if hours and minutes:
        return f"{hours} h {minutes} min"
    if hours:
        return f"{hours} h"
    return f"{minutes} min"


def deadline(incident: Incident) -> datetime:
    """When CERT-In must have been told: 6 hours after detection."""
    return incident.detected_at + timedelta(hours=CERT_IN_HOURS)


def clock(incident: Incident, now: datetime | None = None) -> Clock:
    """The deadline and the time left at ``now`` (or at the report time, once reported)."""
    due = deadline(incident)
    at = incident.reported_at or now or utcnow()
    return Clock(due, int((due - at).total_seconds()), incident.reported_at is not None)


def unreported(now: datetime | None = None) -> list[tuple[Incident, Clock]]:
    """Incidents not yet reported to CERT-In with their clocks, most urgent first."""
    now = now or utcnow()
    rows = db.session.scalars(
        select(Incident).where(Incident.reported_at.is_(None)).order_by(Incident.detected_at)
    ).all()
    return [(row, clock(row, now)) for row in rows]


def validate(incident: Incident, now: datetime | None = None) -> None:
    """:raises ValidationError: the detection time is missing or in the future."""
    if incident.detected_at is None:
        raise ValidationError("Enter when the incident was detected.", "detected_at")
    if incident.detected_at > (now or utcnow()) + timedelta(minutes=1):
        raise ValidationError("The detection time cannot be in the future.", "detected_at")


def mark_reported(
    incident: Incident,
    reference: str,
    actor: AppUser,
    reported_at: datetime | None = None,
    now: datetime | None = None,
) -> None:
    """Record that CERT-In was told (time and their reference).

    :raises IncidentStateError: it was reported already.
    :raises ValidationError: no reference, or a time before detection or in the future.
    """
    if incident.reported_at is not None:
        raise IncidentStateError(f"This incident was reported on {ist(incident.reported_at)}.")
    reference = (reference or "").strip()
    if not reference:
        raise ValidationError("Enter the CERT-In acknowledgement reference.", "reference")
    now = now or utcnow()
    reported_at = reported_at or now
    if reported_at > now + timedelta(minutes=1) or reported_at < incident.detected_at:
        raise ValidationError("The report time must be between detection and now.", "reported_at")
    incident.reported_at = reported_at
    incident.report_reference = reference[:100]
    audit.record(
        "incident.reported",
        incident,
        late=clock(incident).overdue,
        actor_id=actor.id,
    )


def affected_admins(incident: Incident) -> list[AppUser]:
    """Active Tenant Admins of the affected tenants (deleted tenants have none to tell)."""
    tenant_ids = [tenant.id for tenant in incident.affected_tenants]
    if not tenant_ids:
        return []
    return list(
        db.session.scalars(
            select(AppUser)
            .join(AppUser.roles)
            .join(Tenant, Tenant.id == AppUser.tenant_id)
            .where(
                Role.name == TENANT_ADMIN,
                AppUser.active.is_(True),
                AppUser.tenant_id.in_(tenant_ids),
                Tenant.status != TenantStatus.deleted,
            )
            .order_by(AppUser.id)
        ).unique()
    )


def notice_email(incident: Incident, user: AppUser) -> dict[str, Any]:
    """The breach notice to one Tenant Admin (JSON-safe mail payload)."""
    body = (
        f"Hello {user.first_name},\n\n"
        "We are writing to tell you about a security incident that affects your business's "
        "data on BizSenti Woffice.\n\n"
        f"What happened: {incident.title}\n"
        f"Detected: {ist(incident.detected_at)}\n"
        f"Severity: {incident.severity}\n\n"
        f"{incident.description}\n\n"
        "We have reported the incident to CERT-In as Indian law requires and will keep you "
        "informed. For questions, write to sales@xigmapro.com.\n\n"
        "Xigmapro Software Pvt. Ltd.\n"
    )
    return message_payload(
        to=user.email, subject=f"Security incident notice: {incident.title}", body=body
    )


def notify_tenants(
    incident: Incident, actor: AppUser, now: datetime | None = None
) -> list[dict[str, Any]]:
    """Stamp ``tenants_notified_at`` and return one email per affected Tenant Admin.

    The caller enqueues the emails after its commit.

    :raises IncidentStateError: the tenants were notified already, or none is affected.
    """
    if incident.tenants_notified_at is not None:
        raise IncidentStateError(
            f"The affected tenants were notified on {ist(incident.tenants_notified_at)}."
        )
    if not incident.affected_tenants:
        raise IncidentStateError("No affected tenant is recorded on this incident.")
    emails = [notice_email(incident, admin) for admin in affected_admins(incident)]
    incident.tenants_notified_at = now or utcnow()
    audit.record(
        "incident.tenants_notified",
        incident,
        tenants=len(incident.affected_tenants),
        recipients=len(emails),
        actor_id=actor.id,
    )
    return emails
