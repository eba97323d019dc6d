"""Demo data for issue 8: one role of Acme's own, so Business → Roles is not empty.

"Marketing" (contacts with export, tags, templates, campaigns with launch and control;
no team, conversations, billing or audit) is created through the same service as the
screen, by Acme's demo owner, so it is audited like any role. Nobody holds it: give it
to ``agent@acme.example`` on Business → Team to see the menu change.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.models.tenant import Tenant
from app.models.tenant_role import TenantRole
from app.models.user import AppUser
from app.services import tenant_roles

DEMO_ROLES = {
    "acme": (
        "owner@acme.example",
        "Marketing",
        "Contacts, tags, templates and campaigns; no team, conversations or billing.",
        {
            "contacts.list",
            "contacts.export",
            "tags.list",
            "tags.add",
            "templates.list",
            "campaigns.list",
            "campaigns.add",
            "campaigns.edit",
            "campaigns.launch",
            "campaigns.control",
        },
    ),
}


def seed_demo_roles(session: Session) -> int:
    """Create the demo roles that do not exist yet; returns how many."""
    created = 0
    for slug, (owner_email, label, description, cells) in DEMO_ROLES.items():
        tenant = session.scalars(select(Tenant).where(Tenant.slug == slug)).first()
        owner = session.scalars(select(AppUser).where(AppUser.email == owner_email)).first()
        if tenant is None or owner is None:
            continue
        exists = session.scalars(
            select(TenantRole).where(TenantRole.tenant_id == tenant.id, TenantRole.label == label)
        ).first()
        if exists is None:
            tenant_roles.create_role(
                session, owner, tenant.id, label=label, description=description, cells=cells
            )
            created += 1
    return created
