"""Conversations with contacts and their messages (P2, P8, P14)."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import DateTime, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.extensions import db
from app.models.contact import Contact
from app.models.mixins import TenantOwned, Timestamped, utcnow, value_enum
from app.models.user import AppUser


class ConversationStatus(enum.StrEnum):
    open = "open"
    pending = "pending"
    resolved = "resolved"


class Conversation(TenantOwned, Timestamped, db.Model):
    __tablename__ = "conversation"
    __table_args__ = (
        Index("ix_conversation_tenant_assignee", "tenant_id", "assignee_id"),
        Index("ix_conversation_tenant_last_message", "tenant_id", "last_message_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    contact_id: Mapped[int] = mapped_column(
        ForeignKey("contact.id", ondelete="CASCADE"), nullable=False, index=True
    )
    status: Mapped[ConversationStatus] = mapped_column(
        value_enum(ConversationStatus, "conversation_status"),
        nullable=False,
        default=ConversationStatus.open,
    )
    assignee_id: Mapped[int | None] = mapped_column(
        ForeignKey("ab_user.id", ondelete="SET NULL"), nullable=True
    )
    last_message_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)

    contact: Mapped[Contact] = relationship(Contact)
    assignee: Mapped[AppUser | None] = relationship(AppUser, foreign_keys=[assignee_id])

    def __repr__(self) -> str:
        return f"Conversation #{self.id}"


class MessageDirection(enum.StrEnum):
    inbound = "inbound"
    outbound = "outbound"


class MessageStatus(enum.StrEnum):
    """Ordered: a status never moves backwards (read stays read)."""

    received = "received"  # inbound
    accepted = "accepted"
    sent = "sent"
    delivered = "delivered"
    read = "read"
    failed = "failed"


STATUS_RANK = {
    MessageStatus.received: 0,
    MessageStatus.accepted: 1,
    MessageStatus.sent: 2,
    MessageStatus.delivered: 3,
    MessageStatus.read: 4,
    MessageStatus.failed: 5,
}


class Message(TenantOwned, db.Model):
    __tablename__ = "message"
    __personal_fields__ = ("body",)
    __table_args__ = (
        UniqueConstraint("wa_message_id", name="uq_message_wa_message_id"),
        Index("ix_message_tenant_conversation", "tenant_id", "conversation_id", "id"),
        Index("ix_message_tenant_created", "tenant_id", "created_at"),
        # Deleting a conversation looks up its messages (FK ON DELETE CASCADE) by this
        # column alone: without it a tenant deletion took days at 1M conversations.
        Index("ix_message_conversation_id", "conversation_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    conversation_id: Mapped[int] = mapped_column(
        ForeignKey("conversation.id", ondelete="CASCADE"), nullable=False
    )
    direction: Mapped[MessageDirection] = mapped_column(
        value_enum(MessageDirection, "message_direction"), nullable=False
    )
    type: Mapped[str] = mapped_column(String(20), nullable=False, default="text")
    body: Mapped[str | None] = mapped_column(Text, nullable=True)
    wa_message_id: Mapped[str | None] = mapped_column(String(128), nullable=True)
    status: Mapped[MessageStatus] = mapped_column(
        value_enum(MessageStatus, "message_status"), nullable=False
    )
    sent_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    read_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    failed_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    error_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    error_title: Mapped[str | None] = mapped_column(String(200), nullable=True)
    campaign_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, nullable=False)

    conversation: Mapped[Conversation] = relationship(Conversation)


class WebhookInbox(db.Model):
    """Raw webhook payloads, stored before processing (unique by content hash).

    Not tenant-owned on purpose: a payload is matched to a tenant while being verified,
    and it is kept exactly as received. ``tenant_id`` records that match.
    """

    __tablename__ = "webhook_inbox"
    __audit__ = False

    id: Mapped[int] = mapped_column(primary_key=True)
    source: Mapped[str] = mapped_column(String(20), nullable=False)  # "whatsapp", "dodo"
    content_hash: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)
    tenant_id: Mapped[int | None] = mapped_column(Integer, nullable=True, index=True)
    payload: Mapped[str] = mapped_column(Text, nullable=False)
    # Indexed for the retention purge (raw payloads are kept 30 days).
    received_at: Mapped[datetime] = mapped_column(
        DateTime, default=utcnow, nullable=False, index=True
    )
    processed_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True, index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    error: Mapped[str | None] = mapped_column(String(300), nullable=True)


class PendingStatus(TenantOwned, db.Model):
    """A status webhook for a message id we do not know yet: applied when it appears."""

    __tablename__ = "pending_status"
    __audit__ = False
    __table_args__ = (
        UniqueConstraint("wa_message_id", "status", name="uq_pending_status_message_status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    wa_message_id: Mapped[str] = mapped_column(String(128), nullable=False)
    status: Mapped[MessageStatus] = mapped_column(
        value_enum(MessageStatus, "pending_message_status"), nullable=False
    )
    occurred_at: Mapped[datetime] = mapped_column(DateTime, nullable=False)
    error_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    error_title: Mapped[str | None] = mapped_column(String(200), nullable=True)
