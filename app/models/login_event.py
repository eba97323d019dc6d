"""One row per login attempt: feeds throttling and "recent logins" (P3, P5)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, DateTime, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from app.extensions import db
from app.models.mixins import utcnow


class LoginEvent(db.Model):
    __tablename__ = "login_event"
    __audit__ = False  # logins are audited as auth events, not as row inserts
    __table_args__ = (
        Index("ix_login_event_identity_at", "identity_hash", "occurred_at"),
        Index("ix_login_event_ip_at", "ip", "occurred_at"),
        Index("ix_login_event_user_at", "user_id", "occurred_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    occurred_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, nullable=False)
    user_id: Mapped[int | None] = mapped_column(
        Integer, ForeignKey("ab_user.id", ondelete="SET NULL"), nullable=True
    )
    # HMAC of the normalised identity typed in: never the email itself.
    identity_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    ip: Mapped[str | None] = mapped_column(String(64), nullable=True)
    user_agent: Mapped[str | None] = mapped_column(String(300), nullable=True)
    success: Mapped[bool] = mapped_column(Boolean, nullable=False)
    # "ok", "bad_password", "unknown_user", "inactive", "throttled", "logout"
    outcome: Mapped[str] = mapped_column(String(20), nullable=False)
