"""Privacy requests and the compliance registers (issue 7; P11, P16, P18-P21, P23, P24).

A `PrivacyRequest` names its subject (an account user, a whole tenant, or a contact of
a tenant) by id, with a non-personal label kept for when the subject is gone. Its
deadline is counted in business days (`app.services.business_days`); an extension keeps
the original. Files it produces (access packages, portability exports, deletion
certificates) are `PrivacyArtifact` rows, removed by the retention purge once expired.

A public request starts as a `PrivacySubmission`: nothing is a request until its
emailed code is confirmed (P21).
"""

from __future__ import annotations

import enum
from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.extensions import db
from app.models.mixins import BigId, Timestamped, utcnow, value_enum
from app.models.tenant import Tenant
from app.models.user import AppUser


class RequestType(enum.StrEnum):
    access = "access"
    correction = "correction"
    deletion = "deletion"
    portability = "portability"
    objection = "objection"


class SubjectKind(enum.StrEnum):
    user = "user"
    tenant = "tenant"
    contact = "contact"


class RequestChannel(enum.StrEnum):
    email = "email"  # an email with subject "Privacy Request", logged by Compliance
    in_app = "in_app"  # filed by a signed-in user from their account page
    public_form = "public_form"  # /privacy-request, after the emailed code is confirmed


class RequestStatus(enum.StrEnum):
    identity_pending = "identity_pending"
    received = "received"
    in_progress = "in_progress"
    awaiting_approval = "awaiting_approval"
    completed = "completed"
    rejected = "rejected"


OPEN_STATUSES = (
    RequestStatus.identity_pending,
    RequestStatus.received,
    RequestStatus.in_progress,
    RequestStatus.awaiting_approval,
)


class PrivacyRequest(Timestamped, db.Model):
    __tablename__ = "privacy_request"
    __personal_fields__ = ("requester_name", "requester_email", "details", "resolution")
    __table_args__ = (Index("ix_privacy_request_open_due", "status", "due_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    request_type: Mapped[RequestType] = mapped_column(
        value_enum(RequestType, "privacy_request_type"), nullable=False
    )
    subject_kind: Mapped[SubjectKind] = mapped_column(
        value_enum(SubjectKind, "privacy_subject_kind", 8), nullable=False
    )
    # The tenant the subject belongs to (the tenant itself for an account closure).
    tenant_id: Mapped[int | None] = mapped_column(
        ForeignKey("tenant.id", ondelete="SET NULL"), nullable=True, index=True
    )
    subject_user_id: Mapped[int | None] = mapped_column(
        ForeignKey("ab_user.id", ondelete="SET NULL"), nullable=True
    )
    subject_contact_id: Mapped[int | None] = mapped_column(
        ForeignKey("contact.id", ondelete="SET NULL"), nullable=True
    )
    # "Contact #42 of acme": no personal data, survives the subject's deletion.
    subject_label: Mapped[str] = mapped_column(String(200), nullable=False)
    channel: Mapped[RequestChannel] = mapped_column(
        value_enum(RequestChannel, "privacy_request_channel", 12), nullable=False
    )
    requester_name: Mapped[str | None] = mapped_column(String(200), nullable=True)
    requester_email: Mapped[str] = mapped_column(String(320), nullable=False)
    details: Mapped[str | None] = mapped_column(Text, nullable=True)
    status: Mapped[RequestStatus] = mapped_column(
        value_enum(RequestStatus, "privacy_request_status", 20),
        nullable=False,
        default=RequestStatus.received,
    )
    received_at: Mapped[datetime] = mapped_column(DateTime, nullable=False)
    # The deadline: 7 business days from receipt; an extension moves ``due_at`` and
    # keeps ``original_due_at``.
    original_due_at: Mapped[datetime] = mapped_column(DateTime, nullable=False)
    due_at: Mapped[datetime] = mapped_column(DateTime, nullable=False)
    extension_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    extended_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    extended_by_id: Mapped[int | None] = mapped_column(
        ForeignKey("ab_user.id", ondelete="SET NULL"), nullable=True
    )
    assignee_id: Mapped[int | None] = mapped_column(
        ForeignKey("ab_user.id", ondelete="SET NULL"), nullable=True, index=True
    )
    created_by_id: Mapped[int | None] = mapped_column(
        ForeignKey("ab_user.id", ondelete="SET NULL"), nullable=True
    )
    # Four eyes (deletion): who prepared it for approval, who approved it.
    prepared_by_id: Mapped[int | None] = mapped_column(
        ForeignKey("ab_user.id", ondelete="SET NULL"), nullable=True
    )
    approved_by_id: Mapped[int | None] = mapped_column(
        ForeignKey("ab_user.id", ondelete="SET NULL"), nullable=True
    )
    approved_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    completed_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    rejection_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    # What was done (correction: what was corrected where; objection: what stopped).
    resolution: Mapped[str | None] = mapped_column(Text, nullable=True)
    # Deletion: the plan shown before approval and the job's progress (resumable).
    deletion_plan: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    deletion_progress: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)

    tenant: Mapped[Tenant | None] = relationship(foreign_keys=[tenant_id])
    assignee: Mapped[AppUser | None] = relationship(foreign_keys=[assignee_id])
    approved_by: Mapped[AppUser | None] = relationship(foreign_keys=[approved_by_id])
    prepared_by: Mapped[AppUser | None] = relationship(foreign_keys=[prepared_by_id])
    artifacts: Mapped[list[PrivacyArtifact]] = relationship(
        back_populates="request", cascade="all, delete-orphan", lazy="select"
    )

    @property
    def reference(self) -> str:
        return f"PR-{self.id:06d}" if self.id else "PR-new"

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_STATUSES

    def __repr__(self) -> str:
        return self.reference


class ArtifactKind(enum.StrEnum):
    access_package = "access_package"
    portability_export = "portability_export"
    deletion_certificate = "deletion_certificate"


class PrivacyArtifact(db.Model):
    """A file a request produced; downloads are audited, expired ones are purged."""

    __tablename__ = "privacy_artifact"
    __audit__ = False

    id: Mapped[int] = mapped_column(primary_key=True)
    request_id: Mapped[int] = mapped_column(
        ForeignKey("privacy_request.id", ondelete="CASCADE"), nullable=False, index=True
    )
    kind: Mapped[ArtifactKind] = mapped_column(
        value_enum(ArtifactKind, "privacy_artifact_kind", 24), nullable=False
    )
    filename: Mapped[str] = mapped_column(String(200), nullable=False)
    content_type: Mapped[str] = mapped_column(String(100), nullable=False)
    content: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True, deferred=True)
    size: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    sha256: Mapped[str] = mapped_column(String(64), nullable=False)
    created_at: Mapped[datetime] = mapped_column(DateTime, nullable=False, default=utcnow)
    # None: kept (a deletion certificate); else removed by the purge after this time.
    expires_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    downloads: Mapped[int] = mapped_column(Integer, nullable=False, default=0)

    request: Mapped[PrivacyRequest] = relationship(back_populates="artifacts")


class PrivacySubmission(db.Model):
    """A public-form request waiting for its emailed code (not a request yet)."""

    __tablename__ = "privacy_submission"
    __audit__ = False

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    token: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)
    email: Mapped[str] = mapped_column(String(320), nullable=False, index=True)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False)
    code_hash: Mapped[str] = mapped_column(String(128), nullable=False)
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime, nullable=False, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(DateTime, nullable=False)
    confirmed_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    client_ip_hash: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)


class ComplianceHoliday(db.Model):
    """A day Compliance does not work besides Sundays and national holidays."""

    __tablename__ = "compliance_holiday"

    id: Mapped[int] = mapped_column(primary_key=True)
    day: Mapped[date] = mapped_column(Date, nullable=False, unique=True)
    name: Mapped[str] = mapped_column(String(100), nullable=False)

    def __repr__(self) -> str:
        return f"{self.day:%d %b %Y} ({self.name})"


class PolicyVersion(Timestamped, db.Model):
    """A version of the published privacy policy (P24)."""

    __tablename__ = "policy_version"

    id: Mapped[int] = mapped_column(primary_key=True)
    version: Mapped[str] = mapped_column(String(20), nullable=False, unique=True)
    summary: Mapped[str] = mapped_column(String(500), nullable=False)
    full_text: Mapped[str] = mapped_column(Text, nullable=False)
    material: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    # Notice is given when it is published; a material change takes effect >= 7 days later.
    published_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    effective_at: Mapped[datetime] = mapped_column(DateTime, nullable=False)
    created_by_id: Mapped[int | None] = mapped_column(
        ForeignKey("ab_user.id", ondelete="SET NULL"), nullable=True
    )

    def __repr__(self) -> str:
        return f"Privacy policy {self.version}"


class PolicyAcknowledgement(db.Model):
    __tablename__ = "policy_acknowledgement"
    __audit__ = False
    __table_args__ = (
        UniqueConstraint("policy_version_id", "user_id", name="uq_policy_ack_version_user"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    policy_version_id: Mapped[int] = mapped_column(
        ForeignKey("policy_version.id", ondelete="CASCADE"), nullable=False
    )
    user_id: Mapped[int] = mapped_column(
        ForeignKey("ab_user.id", ondelete="CASCADE"), nullable=False, index=True
    )
    acknowledged_at: Mapped[datetime] = mapped_column(DateTime, nullable=False, default=utcnow)


class SubProcessor(Timestamped, db.Model):
    """The register of sub-processors (P11)."""

    __tablename__ = "sub_processor"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), nullable=False, unique=True)
    purpose: Mapped[str] = mapped_column(String(500), nullable=False)
    data_categories: Mapped[str] = mapped_column(String(500), nullable=False)
    location: Mapped[str] = mapped_column(String(200), nullable=False)
    dpa_date: Mapped[date | None] = mapped_column(Date, nullable=True)

    def __repr__(self) -> str:
        return self.name


incident_tenant = Table(
    "incident_tenant",
    db.Model.metadata,
    Column("incident_id", ForeignKey("incident.id", ondelete="CASCADE"), primary_key=True),
    Column("tenant_id", ForeignKey("tenant.id", ondelete="CASCADE"), primary_key=True),
)


class IncidentSeverity(enum.StrEnum):
    low = "low"
    medium = "medium"
    high = "high"
    critical = "critical"


class Incident(Timestamped, db.Model):
    """The incident register (P16): CERT-In must be told within 6 hours of detection."""

    __tablename__ = "incident"

    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(String(200), nullable=False)
    description: Mapped[str] = mapped_column(Text, nullable=False)
    severity: Mapped[IncidentSeverity] = mapped_column(
        value_enum(IncidentSeverity, "incident_severity", 10), nullable=False
    )
    detected_at: Mapped[datetime] = mapped_column(DateTime, nullable=False)
    reported_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    report_reference: Mapped[str | None] = mapped_column(String(100), nullable=True)
    tenants_notified_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    resolved_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    created_by_id: Mapped[int | None] = mapped_column(
        ForeignKey("ab_user.id", ondelete="SET NULL"), nullable=True
    )

    affected_tenants: Mapped[list[Tenant]] = relationship(secondary=incident_tenant)

    def __repr__(self) -> str:
        return self.title
