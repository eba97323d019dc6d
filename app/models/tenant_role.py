"""A tenant's own role (issue 8): FAB's ``ab_role`` row plus the tenant that owns it.

Custom roles live in FAB's own tables, so `has_access` stays the one authority: the
role is an ``ab_role`` row, its permissions are ``ab_permission_view_role`` rows. This
table adds what FAB has no column for: the owning tenant (so the tenancy guard filters
and refuses rows of other tenants), the label the tenant chose, and a description.
FAB's role names are globally unique, so the stored name is namespaced
(``t<tenant id>/<label>``, see `app.services.tenant_roles.fab_name`); screens show the
label. Deleting the ``ab_role`` row deletes this row, its grants and its permissions
(all ``ON DELETE CASCADE``).
"""

from __future__ import annotations

from sqlalchemy import ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.extensions import db
from app.models.mixins import TenantOwned, Timestamped
from app.models.user import Role

LABEL_MAX = 48


class TenantRole(TenantOwned, Timestamped, db.Model):
    __tablename__ = "tenant_role"
    __table_args__ = (UniqueConstraint("tenant_id", "label", name="uq_tenant_role_label"),)

    role_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("ab_role.id", ondelete="CASCADE"), primary_key=True
    )
    label: Mapped[str] = mapped_column(String(LABEL_MAX), nullable=False)
    description: Mapped[str | None] = mapped_column(String(200), nullable=True)

    role: Mapped[Role] = relationship(Role, lazy="joined")

    @property
    def id(self) -> int:
        return self.role_id

    def __repr__(self) -> str:
        return self.label
