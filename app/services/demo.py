"""Demo data for `make run` and `flask woffice seed-demo` (idempotent)."""

from __future__ import annotations

from flask_security import hash_password
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.models.mixins import utcnow
from app.models.tenant import Tenant, TenantStatus
from app.models.user import AppUser, Role

DEMO_PASSWORD = "demo-pass-2026"  # noqa: S105 - documented demo credential

DEMO_TENANTS = [
    {
        "slug": "acme",
        "name": "Acme Traders",
        "legal_name": "Acme Traders Private Limited",
        "status": TenantStatus.active,
        "contact_email": "accounts@acme.example",
        "contact_phone": "+912226543210",
        "gstin": "27AAPFU0939F1ZV",
        "address_line1": "14 Marine Lines",
        "city": "Mumbai",
        "state_code": "27",
        "postal_code": "400002",
    },
    {
        "slug": "bharat-foods",
        "name": "Bharat Foods",
        "legal_name": "Bharat Foods LLP",
        "status": TenantStatus.active,
        "contact_email": "hello@bharatfoods.example",
        "contact_phone": "+918041234567",
        "gstin": "29AABCA1234F1Z5",
        "address_line1": "12 MG Road",
        "city": "Bengaluru",
        "state_code": "29",
        "postal_code": "560001",
    },
]

DEMO_USERS = [
    ("admin@xigmapro.example", "Asha", "Rao", "Platform Admin", None),
    ("billing@xigmapro.example", "Vikram", "Shah", "Billing", None),
    ("compliance@xigmapro.example", "Meera", "Iyer", "Compliance", None),
    ("owner@acme.example", "Rohan", "Mehta", "Tenant Admin", "acme"),
    ("agent@acme.example", "Priya", "Patil", "Agent", "acme"),
    ("owner@bharatfoods.example", "Kiran", "Gowda", "Tenant Admin", "bharat-foods"),
    ("agent@bharatfoods.example", "Anil", "Kumar", "Agent", "bharat-foods"),
]


def seed_demo(session: Session) -> int:
    """Create the demo tenants and users that do not exist yet; returns how many."""
    created = 0
    tenants: dict[str, Tenant] = {}
    for spec in DEMO_TENANTS:
        tenant = session.scalars(select(Tenant).where(Tenant.slug == spec["slug"])).first()
        if tenant is None:
            tenant = Tenant(**spec)
            session.add(tenant)
            created += 1
        tenants[spec["slug"]] = tenant
    session.flush()
    for email, first, last, role_name, tenant_slug in DEMO_USERS:
        if session.scalars(select(AppUser).where(AppUser.email == email)).first():
            continue
        role = session.scalars(select(Role).where(Role.name == role_name)).one()
        user = AppUser(
            email=email,
            username=email,
            first_name=first,
            last_name=last,
            active=True,
            password=hash_password(DEMO_PASSWORD),
            confirmed_at=utcnow(),
            age_confirmed_at=utcnow(),
            tenant_id=tenants[tenant_slug].id if tenant_slug else None,
        )
        user.roles = [role]
        session.add(user)
        created += 1
    return created
