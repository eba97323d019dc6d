"""Shared columns. `TenantOwned` marks every row that belongs to one tenant."""

from __future__ import annotations

import enum
from datetime import UTC, datetime

from sqlalchemy import BigInteger, DateTime, Enum, ForeignKey, Integer
from sqlalchemy.orm import Mapped, declared_attr, mapped_column

# 64-bit ids for the tables that grow fastest (INTEGER on SQLite, where it is 64-bit).
BigId = BigInteger().with_variant(Integer, "sqlite")


def utcnow() -> datetime:
    """Naive UTC now: timestamps are stored in UTC and shown in Asia/Kolkata."""
    return datetime.now(UTC).replace(tzinfo=None)


def value_enum(cls: type[enum.Enum], name: str, length: int = 16) -> Enum:
    """A VARCHAR enum column type storing each member's value (not its name)."""
    return Enum(
        cls,
        name=name,
        native_enum=False,
        length=length,
        values_callable=lambda e: [m.value for m in e],
    )


def audit_name(cls: type) -> str:
    """The object type recorded in audit events: ``__audit_name__`` or the table name."""
    return getattr(cls, "__audit_name__", None) or cls.__tablename__


class Timestamped:
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, nullable=False)
    updated_at: Mapped[datetime] = mapped_column(
        DateTime, default=utcnow, onupdate=utcnow, nullable=False
    )


class TenantOwned:
    """A row of one tenant: non-null, indexed ``tenant_id``.

    `app.tenancy` filters every ORM statement on these models inside a tenant scope
    and refuses to flush one that belongs to another tenant.
    """

    # Field names holding personal data; the audit trail (issue 3) stores only hashes.
    __personal_fields__: tuple[str, ...] = ()

    @declared_attr
    def tenant_id(cls) -> Mapped[int]:  # noqa: N805 - declared_attr takes the class
        return mapped_column(
            Integer, ForeignKey("tenant.id", ondelete="CASCADE"), nullable=False, index=True
        )
