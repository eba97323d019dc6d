"""The one user table (``ab_user``), shared by Flask-AppBuilder and Flask-Security-Too.

`AppUser` extends FAB's `User` on the same table (FAB's documented way to extend the
user model) and mixes in FST's `UserMixin` *first*, so `get_id()` returns
`fs_uniquifier` (sessions survive no password change) and FST's `is_active` wins.
"""

from __future__ import annotations

import re
from datetime import datetime
from uuid import uuid4

from flask_appbuilder.security.sqla.models import Role, User, assoc_user_role
from flask_security import UserMixin
from flask_security.models.fsqla_v3 import AsaList
from sqlalchemy import DateTime, ForeignKey, Integer, String, Text
from sqlalchemy.ext.mutable import MutableList
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.models.tenant import Tenant


def _no_fst_permissions(self: Role) -> set[str]:
    """FST asks roles for permissions; authorization is FAB's job, so none here."""
    return set()


Role.get_permissions = _no_fst_permissions  # type: ignore[attr-defined]

_TENANT_PREFIX = re.compile(r"^t\d+/")


def role_label(name: str) -> str:
    """What people see for a role: a tenant role's own label (its FAB name is
    namespaced ``t<tenant id>/<label>``, see app.models.tenant_role), else the name."""
    return _TENANT_PREFIX.sub("", name or "")


def is_tenant_role_name(name: str | None) -> bool:
    """Whether ``name`` is in the tenants' namespace (``t<tenant id>/<label>``)."""
    return bool(_TENANT_PREFIX.match(name or ""))


# Dropdowns and lists print roles with str(): show the label. repr() keeps the full name.
Role.__str__ = lambda self: role_label(self.name)  # type: ignore[method-assign]
# Rows loaded through FAB's own relationships (e.g. Role.user) are plain `User` objects:
# declare their personal fields there too, for the audit trail.
User.__personal_fields__ = ("first_name", "last_name", "email", "username")  # type: ignore[attr-defined]


class AppUser(UserMixin, User):
    __tablename__ = "ab_user"
    __personal_fields__ = ("first_name", "last_name", "email", "username", "phone")

    fs_uniquifier: Mapped[str] = mapped_column(
        String(64), unique=True, nullable=False, default=lambda: uuid4().hex
    )
    confirmed_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    last_login_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    current_login_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    last_login_ip: Mapped[str | None] = mapped_column(String(64), nullable=True)
    current_login_ip: Mapped[str | None] = mapped_column(String(64), nullable=True)
    tf_primary_method: Mapped[str | None] = mapped_column(String(64), nullable=True)
    tf_totp_secret: Mapped[str | None] = mapped_column(String(255), nullable=True)
    tf_phone_number: Mapped[str | None] = mapped_column(String(128), nullable=True)
    mf_recovery_codes: Mapped[list[str] | None] = mapped_column(
        MutableList.as_mutable(AsaList()), nullable=True
    )
    us_totp_secrets: Mapped[str | None] = mapped_column(Text, nullable=True)
    password_changed_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    # P23: the user attested being 18 or older when they set up the account.
    age_confirmed_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    # P23: Compliance flagged the account as a minor's (a deletion request is opened).
    minor_flagged_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    # P20 objection: the user objects to usage analytics; they are left out of it.
    analytics_objection_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)

    tenant_id: Mapped[int | None] = mapped_column(
        Integer, ForeignKey("tenant.id", ondelete="CASCADE"), nullable=True, index=True
    )
    tenant: Mapped[Tenant | None] = relationship(Tenant, foreign_keys=[tenant_id])
    phone: Mapped[str | None] = mapped_column(String(20), nullable=True)

    @property
    def is_platform(self) -> bool:
        """Operator staff belong to no tenant."""
        return self.tenant_id is None

    @property
    def role_names(self) -> str:
        return ", ".join(sorted(role_label(role.name) for role in self.roles))

    @property
    def membership_status(self) -> str:
        """Invited (no password yet), Active or Deactivated."""
        if not self.active:
            return "Deactivated"
        return "Invited" if not self.password else "Active"

    @property
    def two_factor_enabled(self) -> bool:
        return bool(self.tf_primary_method)

    def __repr__(self) -> str:
        return f"{self.first_name} {self.last_name}".strip() or self.email


__all__ = ["AppUser", "Role", "assoc_user_role", "role_label"]
