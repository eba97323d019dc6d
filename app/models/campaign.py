"""Message templates (synced from the tenant's WABA), campaigns and their recipients.

A campaign's audience is snapshotted at launch into `CampaignRecipient` rows, one per
contact (unique per campaign), each with its rendered template parameters or the reason
it was skipped. A recipient is the unit of sending: claimed before its HTTP call, marked
with the WhatsApp message id after it, and moved along by status webhooks (P3, P8, P9).
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.extensions import db
from app.models.contact import Contact
from app.models.mixins import BigId, TenantOwned, Timestamped, utcnow, value_enum
from app.models.user import AppUser


class TemplateStatus(enum.StrEnum):
    """Meta's template review states (only ``APPROVED`` templates can be sent)."""

    approved = "APPROVED"
    pending = "PENDING"
    rejected = "REJECTED"
    paused = "PAUSED"
    disabled = "DISABLED"
    in_appeal = "IN_APPEAL"
    pending_deletion = "PENDING_DELETION"
    deleted = "DELETED"
    limit_exceeded = "LIMIT_EXCEEDED"
    archived = "ARCHIVED"


class TemplateCategory(enum.StrEnum):
    marketing = "MARKETING"
    utility = "UTILITY"
    authentication = "AUTHENTICATION"


class MessageTemplate(TenantOwned, Timestamped, db.Model):
    __tablename__ = "message_template"
    __table_args__ = (
        UniqueConstraint("tenant_id", "name", "language", name="uq_template_tenant_name_lang"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    wa_template_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    name: Mapped[str] = mapped_column(String(512), nullable=False)
    language: Mapped[str] = mapped_column(String(16), nullable=False)
    category: Mapped[TemplateCategory] = mapped_column(
        value_enum(TemplateCategory, "template_category"), nullable=False
    )
    status: Mapped[TemplateStatus] = mapped_column(
        value_enum(TemplateStatus, "template_status", 20), nullable=False
    )
    # "POSITIONAL" ({{1}}, {{2}}) or "NAMED" ({{first_name}}).
    parameter_format: Mapped[str] = mapped_column(String(16), nullable=False, default="POSITIONAL")
    components: Mapped[list[dict[str, Any]]] = mapped_column(JSON, nullable=False, default=list)
    rejected_reason: Mapped[str | None] = mapped_column(String(200), nullable=True)
    synced_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)

    @property
    def usable(self) -> bool:
        return self.status == TemplateStatus.approved

    def __repr__(self) -> str:
        return f"{self.name} ({self.language})"


class CampaignStatus(enum.StrEnum):
    draft = "draft"
    scheduled = "scheduled"
    sending = "sending"
    paused = "paused"
    completed = "completed"
    cancelled = "cancelled"


class Campaign(TenantOwned, Timestamped, db.Model):
    __tablename__ = "campaign"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(120), nullable=False)
    template_id: Mapped[int] = mapped_column(
        ForeignKey("message_template.id", ondelete="RESTRICT"), nullable=False, index=True
    )
    # Template variable -> {"source": "field", "value": "display_name"} or
    # {"source": "text", "value": "Diwali"}; variables are "1", "2"... or names.
    parameter_mapping: Mapped[dict[str, dict[str, str]]] = mapped_column(
        JSON, nullable=False, default=dict
    )
    # Audience: contacts with any (or all) of include_tag_ids, minus exclude_tag_ids;
    # no include tags = every contact of the tenant.
    include_tag_ids: Mapped[list[int]] = mapped_column(JSON, nullable=False, default=list)
    include_mode: Mapped[str] = mapped_column(String(3), nullable=False, default="any")
    exclude_tag_ids: Mapped[list[int]] = mapped_column(JSON, nullable=False, default=list)
    status: Mapped[CampaignStatus] = mapped_column(
        value_enum(CampaignStatus, "campaign_status"),
        nullable=False,
        default=CampaignStatus.draft,
        index=True,
    )
    scheduled_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)  # UTC
    launched_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    completed_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    created_by_id: Mapped[int | None] = mapped_column(
        ForeignKey("ab_user.id", ondelete="SET NULL"), nullable=True
    )
    recipient_count: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    skipped_count: Mapped[int] = mapped_column(Integer, nullable=False, default=0)

    template: Mapped[MessageTemplate] = relationship(MessageTemplate)
    created_by: Mapped[AppUser | None] = relationship(AppUser)

    def __repr__(self) -> str:
        return self.name


class RecipientStatus(enum.StrEnum):
    """Funnel order; ``skipped`` recipients are never sent."""

    pending = "pending"
    sending = "sending"  # claimed by a worker; its HTTP call may be in flight
    sent = "sent"
    delivered = "delivered"
    read = "read"
    failed = "failed"
    skipped = "skipped"  # never sent: see skip_reason
    cancelled = "cancelled"  # still pending when the campaign was cancelled


class SkipReason(enum.StrEnum):
    not_opted_in = "not_opted_in"
    opted_out = "opted_out"
    objecting = "objecting"
    invalid_number = "invalid_number"
    missing_parameter = "missing_parameter"  # a mapped field is empty, no fallback


class CampaignRecipient(TenantOwned, db.Model):
    __tablename__ = "campaign_recipient"
    __personal_fields__ = ("wa_id", "parameters")
    __table_args__ = (
        UniqueConstraint("campaign_id", "contact_id", name="uq_recipient_campaign_contact"),
        Index("ix_recipient_campaign_status", "campaign_id", "status"),
        Index("ix_recipient_status_next_attempt", "status", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    campaign_id: Mapped[int] = mapped_column(
        ForeignKey("campaign.id", ondelete="CASCADE"), nullable=False
    )
    contact_id: Mapped[int] = mapped_column(
        ForeignKey("contact.id", ondelete="CASCADE"), nullable=False, index=True
    )
    status: Mapped[RecipientStatus] = mapped_column(
        value_enum(RecipientStatus, "recipient_status"),
        nullable=False,
        default=RecipientStatus.pending,
    )
    skip_reason: Mapped[SkipReason | None] = mapped_column(
        value_enum(SkipReason, "skip_reason", 20), nullable=True
    )
    # The recipient's WhatsApp id and rendered parameters, frozen at launch.
    wa_id: Mapped[str] = mapped_column(String(64), nullable=False)
    parameters: Mapped[dict[str, str] | None] = mapped_column(JSON, nullable=True)
    wa_message_id: Mapped[str | None] = mapped_column(String(128), nullable=True, unique=True)
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    # 131049 (per-user marketing cap): the day-by-day retries made so far.
    retry_days: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    claimed_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    sent_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    read_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    failed_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    replied_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    error_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    error_title: Mapped[str | None] = mapped_column(String(200), nullable=True)
    # Earlier message ids of this recipient (a next-day retry after 131049 is a new
    # message, linked to the original through this list).
    previous_message_ids: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, nullable=False)

    campaign: Mapped[Campaign] = relationship(Campaign)
    contact: Mapped[Contact] = relationship(Contact)

    def __repr__(self) -> str:
        return f"Recipient #{self.id}"
