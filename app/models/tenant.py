"""The tenant: one business using Woffice."""

from __future__ import annotations

import enum

from sqlalchemy import CheckConstraint, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.extensions import db
from app.models.mixins import Timestamped, value_enum
from app.models.types import UNREADABLE, EncryptedText, mask_secret
from app.services.exceptions import SecretDecryptionError
from app.services.gst_states import state_name

# Cloud API throughput per business number: 80 mps by default, up to 1,000 (reference 3).
DEFAULT_MESSAGING_LIMIT_MPS = 80
MAX_MESSAGING_LIMIT_MPS = 1000


class TenantStatus(enum.StrEnum):
    """Lifecycle (P17): trial -> active -> suspended -> closing -> deleted."""

    trial = "trial"
    active = "active"
    suspended = "suspended"
    closing = "closing"
    deleted = "deleted"


class Tenant(Timestamped, db.Model):
    __tablename__ = "tenant"
    # Names, contact details, GSTIN and street address can identify a person (sole
    # proprietors): the audit trail keeps only keyed hashes of them.
    __personal_fields__ = (
        "name",
        "legal_name",
        "contact_email",
        "billing_email",
        "contact_phone",
        "gstin",
        "address_line1",
        "address_line2",
        "postal_code",
    )
    # Encrypted at rest, never shown back in full, never copied into the audit trail.
    __secret_fields__ = ("wa_access_token", "wa_app_secret")
    __table_args__ = (
        CheckConstraint(
            f"wa_messaging_limit_mps BETWEEN 1 AND {MAX_MESSAGING_LIMIT_MPS}",
            name="ck_tenant_wa_messaging_limit_mps",
        ),
        UniqueConstraint("wa_phone_number_id", name="uq_tenant_wa_phone_number_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), nullable=False)
    legal_name: Mapped[str] = mapped_column(String(200), nullable=False)
    slug: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)
    status: Mapped[TenantStatus] = mapped_column(
        value_enum(TenantStatus, "tenant_status"),
        nullable=False,
        default=TenantStatus.trial,
        index=True,
    )
    contact_email: Mapped[str] = mapped_column(String(320), nullable=False)
    contact_phone: Mapped[str] = mapped_column(String(20), nullable=False)
    # Where invoices and renewal reminders go (contact_email when empty).
    billing_email: Mapped[str | None] = mapped_column(String(320), nullable=True)
    gstin: Mapped[str | None] = mapped_column(String(15), nullable=True)
    address_line1: Mapped[str] = mapped_column(String(200), nullable=False)
    address_line2: Mapped[str | None] = mapped_column(String(200), nullable=True)
    city: Mapped[str] = mapped_column(String(100), nullable=False)
    state_code: Mapped[str] = mapped_column(String(2), nullable=False)
    postal_code: Mapped[str] = mapped_column(String(6), nullable=False)

    # WhatsApp Cloud API: the business number's Graph id (routes webhooks to the tenant),
    # its WhatsApp Business Account, the number as customers see it (E.164), the
    # throughput cap, and two secrets (the API access token; the app secret that signs
    # webhooks). Secrets are deferred: loading a tenant does not decrypt them.
    wa_phone_number_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    wa_business_account_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    wa_display_number: Mapped[str | None] = mapped_column(String(20), nullable=True)
    wa_messaging_limit_mps: Mapped[int] = mapped_column(
        Integer,
        nullable=False,
        default=DEFAULT_MESSAGING_LIMIT_MPS,
        server_default=str(DEFAULT_MESSAGING_LIMIT_MPS),
    )
    wa_access_token: Mapped[str | None] = mapped_column(
        EncryptedText, nullable=True, deferred=True, deferred_group="wa_secrets"
    )
    wa_app_secret: Mapped[str | None] = mapped_column(
        EncryptedText, nullable=True, deferred=True, deferred_group="wa_secrets"
    )

    @property
    def state_label(self) -> str:
        return f"{self.state_code} - {state_name(self.state_code)}"

    @property
    def wa_access_token_mask(self) -> str:
        return self._mask("wa_access_token")

    @property
    def wa_app_secret_mask(self) -> str:
        return self._mask("wa_app_secret")

    def _mask(self, attr: str) -> str:
        # A value no key opens is reported, not raised: the screens stay usable and the
        # platform admin can enter the secret again.
        try:
            return mask_secret(getattr(self, attr))
        except SecretDecryptionError:
            return UNREADABLE

    def __repr__(self) -> str:
        return self.name
