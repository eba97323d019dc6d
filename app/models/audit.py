"""The audit trail: one append-only, hash-chained table (P3, P5, P10).

Events never hold personal-data values: personal fields are recorded as "changed" with
a keyed hash (see `app.services.audit`). Rows have no foreign keys, so a tenant's or a
user's deletion leaves its history intact.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, DateTime, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.extensions import db
from app.models.mixins import BigId, utcnow

# SQLite only auto-increments an INTEGER PRIMARY KEY.


class AuditEvent(db.Model):
    __tablename__ = "audit_event"
    __audit__ = False  # the trail does not audit itself
    __table_args__ = (
        UniqueConstraint("chain", "seq", name="uq_audit_event_chain_seq"),
        Index("ix_audit_event_object", "object_type", "object_id"),
        Index("ix_audit_event_tenant_at", "tenant_id", "occurred_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    chain: Mapped[str] = mapped_column(String(40), nullable=False)
    seq: Mapped[int] = mapped_column(Integer, nullable=False)
    occurred_at: Mapped[datetime] = mapped_column(
        DateTime, default=utcnow, nullable=False, index=True
    )
    actor_id: Mapped[int | None] = mapped_column(Integer, nullable=True, index=True)
    actor_label: Mapped[str] = mapped_column(String(120), nullable=False, default="system")
    tenant_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    action: Mapped[str] = mapped_column(String(60), nullable=False, index=True)
    object_type: Mapped[str | None] = mapped_column(String(60), nullable=True)
    object_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    fields: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)
    changes: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    details: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    ip: Mapped[str | None] = mapped_column(String(64), nullable=True)
    user_agent: Mapped[str | None] = mapped_column(String(300), nullable=True)
    request_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    job_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    prev_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    hash: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)

    @property
    def fields_label(self) -> str:
        return ", ".join(self.fields or [])

    def __repr__(self) -> str:
        return f"{self.action} {self.object_type or ''}#{self.object_id or ''}".strip()


class AuditChainHead(db.Model):
    """The last link of each chain; its row lock orders appends within one chain."""

    __tablename__ = "audit_chain_head"
    __audit__ = False

    chain: Mapped[str] = mapped_column(String(40), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    last_hash: Mapped[str] = mapped_column(String(64), nullable=False)
