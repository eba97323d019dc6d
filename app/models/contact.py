"""Contacts of a tenant, their tags and their consent log (P2, P9, P20)."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import (
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.extensions import db
from app.models.mixins import TenantOwned, Timestamped, utcnow, value_enum

contact_tag = Table(
    "contact_tag",
    db.Model.metadata,
    Column("contact_id", Integer, ForeignKey("contact.id", ondelete="CASCADE"), primary_key=True),
    Column("tag_id", Integer, ForeignKey("tag.id", ondelete="CASCADE"), primary_key=True),
)


class Tag(TenantOwned, db.Model):
    __tablename__ = "tag"
    __table_args__ = (UniqueConstraint("tenant_id", "name", name="uq_tag_tenant_name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(60), nullable=False)

    def __repr__(self) -> str:
        return self.name


class ConsentState(enum.StrEnum):
    """Derived from the consent log; only ``opted_in`` may receive campaigns."""

    unknown = "unknown"
    opted_in = "opted_in"
    opted_out = "opted_out"


class Contact(TenantOwned, Timestamped, db.Model):
    __tablename__ = "contact"
    __personal_fields__ = ("phone", "wa_id", "display_name", "profile_name", "email", "notes")
    __table_args__ = (
        UniqueConstraint("tenant_id", "wa_id", name="uq_contact_tenant_wa_id"),
        Index("ix_contact_tenant_last_inbound", "tenant_id", "last_inbound_at"),
        Index("ix_contact_tenant_name", "tenant_id", "display_name"),
        # PostgreSQL also has ix_contact_tenant_wa_id_reverse on (tenant_id, reverse(wa_id)
        # text_pattern_ops) for phone-suffix search: migration 0006, not declared here
        # because SQLite has no reverse().
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    # TenantOwned's column without its own index: uq_contact_tenant_wa_id starts with
    # tenant_id and serves those lookups; one index less to maintain on every import
    # (migration 0008).
    tenant_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("tenant.id", ondelete="CASCADE"), nullable=False, index=False
    )
    # E.164 ("+919876543210"); NULL only for business-scoped user ids without a number.
    phone: Mapped[str | None] = mapped_column(String(20), nullable=True)
    # WhatsApp id: the digits of the number, or a business-scoped user id (BSUID).
    wa_id: Mapped[str] = mapped_column(String(64), nullable=False)
    display_name: Mapped[str | None] = mapped_column(String(120), nullable=True)
    profile_name: Mapped[str | None] = mapped_column(String(120), nullable=True)
    email: Mapped[str | None] = mapped_column(String(320), nullable=True)
    notes: Mapped[str | None] = mapped_column(Text, nullable=True)
    last_inbound_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    # Denormalised from the consent log (which stays the source of truth) for filters.
    consent_state: Mapped[ConsentState] = mapped_column(
        value_enum(ConsentState, "consent_state"),
        nullable=False,
        default=ConsentState.unknown,
        index=True,
    )
    marketing_objection: Mapped[bool] = mapped_column(default=False, nullable=False)

    tags: Mapped[list[Tag]] = relationship(Tag, secondary=contact_tag, order_by=Tag.name)
    consent_events: Mapped[list[ConsentEvent]] = relationship(
        "ConsentEvent", order_by="ConsentEvent.id.desc()", viewonly=True
    )

    @property
    def name(self) -> str:
        return self.display_name or self.profile_name or self.phone or self.wa_id

    @property
    def messageable(self) -> bool:
        """Campaigns may message this contact (P9)."""
        return self.consent_state == ConsentState.opted_in and not self.marketing_objection

    def __repr__(self) -> str:
        return self.name


class ConsentAction(enum.StrEnum):
    opt_in = "opt_in"
    opt_out = "opt_out"
    resume = "resume"  # START / user_preferences resume: back to opted in
    objection = "objection"  # P20: object to marketing
    objection_withdrawn = "objection_withdrawn"


class ConsentSource(enum.StrEnum):
    web_form = "web_form"
    qr = "qr"
    in_person = "in_person"
    whatsapp = "whatsapp"
    import_ = "import"
    api = "api"
    stop_keyword = "stop_keyword"
    user_preferences = "user_preferences"
    tenant_action = "tenant_action"


class ConsentEvent(TenantOwned, db.Model):
    """Append-only consent log; the contact's state is derived from it."""

    __tablename__ = "consent_event"
    __personal_fields__ = ("evidence",)

    id: Mapped[int] = mapped_column(primary_key=True)
    contact_id: Mapped[int] = mapped_column(
        ForeignKey("contact.id", ondelete="CASCADE"), nullable=False, index=True
    )
    action: Mapped[ConsentAction] = mapped_column(
        value_enum(ConsentAction, "consent_action", 24),
        nullable=False,
    )
    source: Mapped[ConsentSource] = mapped_column(
        value_enum(ConsentSource, "consent_source", 24),
        nullable=False,
    )
    evidence: Mapped[str | None] = mapped_column(Text, nullable=True)
    occurred_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, nullable=False)
    recorded_by_id: Mapped[int | None] = mapped_column(
        ForeignKey("ab_user.id", ondelete="SET NULL"), nullable=True
    )

    contact: Mapped[Contact] = relationship(Contact)
