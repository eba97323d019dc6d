"""CSV imports of contacts (issue 4): the uploaded file, its mapping, progress, errors."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, DateTime, ForeignKey, Integer, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.extensions import db
from app.models.mixins import TenantOwned, utcnow, value_enum


class ImportStatus(enum.StrEnum):
    uploaded = "uploaded"
    queued = "queued"
    running = "running"
    done = "done"
    failed = "failed"


class ContactImport(TenantOwned, db.Model):
    """One uploaded CSV file; stored in the database (no node's disk is relied on)."""

    __tablename__ = "contact_import"
    __personal_fields__ = ("content", "errors_csv")

    id: Mapped[int] = mapped_column(primary_key=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, nullable=False)
    created_by_id: Mapped[int | None] = mapped_column(
        ForeignKey("ab_user.id", ondelete="SET NULL"), nullable=True
    )
    filename: Mapped[str] = mapped_column(String(255), nullable=False)
    # Deferred (like errors_csv): loaded only when read, not with every progress refresh.
    content: Mapped[bytes] = mapped_column(LargeBinary, nullable=False, deferred=True)
    # CSV header -> phone, display_name, email, tags, notes, consent or ignore.
    mapping: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    status: Mapped[ImportStatus] = mapped_column(
        value_enum(ImportStatus, "contact_import_status"),
        nullable=False,
        default=ImportStatus.uploaded,
    )
    total_rows: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    processed_rows: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    created_count: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    updated_count: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    unchanged_count: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    error_count: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    errors_csv: Mapped[str | None] = mapped_column(Text, nullable=True, deferred=True)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)

    @property
    def progress_percent(self) -> int:
        if not self.total_rows:
            return 100 if self.status == ImportStatus.done else 0
        return min(100, int(self.processed_rows * 100 / self.total_rows))

    def __repr__(self) -> str:
        return self.filename
