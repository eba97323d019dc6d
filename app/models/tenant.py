"""The tenant: one business using Woffice."""

from __future__ import annotations

import enum

from sqlalchemy import Enum, String
from sqlalchemy.orm import Mapped, mapped_column

from app.extensions import db
from app.models.mixins import Timestamped
from app.services.gst_states import state_name


class TenantStatus(enum.StrEnum):
    """Lifecycle (P17): trial -> active -> suspended -> closing -> deleted."""

    trial = "trial"
    active = "active"
    suspended = "suspended"
    closing = "closing"
    deleted = "deleted"


class Tenant(Timestamped, db.Model):
    __tablename__ = "tenant"
    __personal_fields__ = ("contact_email", "contact_phone")

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), nullable=False)
    legal_name: Mapped[str] = mapped_column(String(200), nullable=False)
    slug: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)
    status: Mapped[TenantStatus] = mapped_column(
        Enum(
            TenantStatus,
            name="tenant_status",
            values_callable=lambda e: [m.value for m in e],
            native_enum=False,
            length=16,
        ),
        nullable=False,
        default=TenantStatus.trial,
        index=True,
    )
    contact_email: Mapped[str] = mapped_column(String(320), nullable=False)
    contact_phone: Mapped[str] = mapped_column(String(20), nullable=False)
    gstin: Mapped[str | None] = mapped_column(String(15), nullable=True)
    address_line1: Mapped[str] = mapped_column(String(200), nullable=False)
    address_line2: Mapped[str | None] = mapped_column(String(200), nullable=True)
    city: Mapped[str] = mapped_column(String(100), nullable=False)
    state_code: Mapped[str] = mapped_column(String(2), nullable=False)
    postal_code: Mapped[str] = mapped_column(String(6), nullable=False)

    @property
    def state_label(self) -> str:
        return f"{self.state_code} - {state_name(self.state_code)}"

    def __repr__(self) -> str:
        return self.name
