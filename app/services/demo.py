"""Demo data for `make run` and `flask woffice seed-demo` (idempotent)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from flask import current_app
from flask_security import hash_password
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.models.mixins import utcnow
from app.models.tenant import Tenant, TenantStatus
from app.models.user import AppUser, Role
from app.services.demo_billing import seed_demo_billing
from app.services.demo_contacts import apply_demo_whatsapp, seed_demo_contacts
from app.services.demo_privacy import seed_demo_privacy
from app.services.demo_registers import seed_demo_registers
from app.services.demo_roles import seed_demo_roles
from app.services.demo_templates import seed_demo_templates

if TYPE_CHECKING:
    from app.models.conversation import Conversation

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
        "slug": "bharatfoods",
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
    ("owner@bharatfoods.example", "Kiran", "Gowda", "Tenant Admin", "bharatfoods"),
    ("agent@bharatfoods.example", "Anil", "Kumar", "Agent", "bharatfoods"),
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
        apply_demo_whatsapp(tenant)  # before the insert: part of the tenant's creation
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
    session.flush()
    for tenant in tenants.values():
        created += seed_demo_contacts(session, tenant)
        created += seed_demo_templates(session, tenant)
    for tenant in tenants.values():
        created += seed_demo_conversations(session, tenant)
    created += seed_demo_billing(current_app.config)
    created += seed_demo_privacy()
    created += seed_demo_registers()
    created += seed_demo_roles(session)
    return created


# (profile name, [(direction, body)...], assigned to: True the agent, False nobody,
# None the tenant admin). Contacts get numbers +91 98000 0TTNN (TT tenant, NN row).
DEMO_CONVERSATIONS = [
    (
        "Neha Kulkarni",
        [
            ("inbound", "Hi, is the order shipped?"),
            ("outbound", "Yes, it leaves today."),
            ("inbound", "Thanks!"),
        ],
        True,
    ),
    ("Arjun Nair", [("inbound", "Do you deliver on Sundays?")], False),
    (
        "Fatima Sheikh",
        [("inbound", "Please send the price list."), ("outbound", "Sent it by email.")],
        None,
    ),
]


def seed_demo_conversations(session: Session, tenant: Tenant) -> int:
    """2-3 conversations with a few messages for ``tenant`` (skipped if it has any): one
    assigned to its agent, one unassigned, one assigned to its admin."""
    from datetime import timedelta

    from app.models.contact import Contact
    from app.models.conversation import (
        Conversation,
        Message,
        MessageDirection,
        MessageStatus,
    )
    from app.tenancy import tenant_scope

    with tenant_scope(tenant.id):
        if session.scalars(select(Conversation.id)).first() is not None:
            return 0
        team = session.scalars(select(AppUser).order_by(AppUser.id)).all()
        agent = next((u for u in team if any(r.name == "Agent" for r in u.roles)), None)
        admin = next((u for u in team if any(r.name == "Tenant Admin" for r in u.roles)), None)
        created = 0
        start = utcnow() - timedelta(hours=6)
        for n, (name, lines, to_agent) in enumerate(DEMO_CONVERSATIONS):
            wa_id = f"91980000{tenant.id % 100:02d}{n + 1:02d}"
            contact = session.scalars(select(Contact).where(Contact.wa_id == wa_id)).first()
            if contact is None:
                contact = Contact(wa_id=wa_id, phone=f"+{wa_id}", profile_name=name)
                session.add(contact)
                created += 1
            owner = agent if to_agent else (None if to_agent is False else admin)
            conversation = Conversation(contact=contact, assignee=owner)
            session.add(conversation)
            created += 1
            when = start + timedelta(hours=n)
            for i, (direction, body) in enumerate(lines):
                when = when + timedelta(minutes=5 * i)
                inbound = direction == "inbound"
                session.add(
                    Message(
                        conversation=conversation,
                        direction=MessageDirection(direction),
                        body=body,
                        status=MessageStatus.received if inbound else MessageStatus.read,
                        sent_at=None if inbound else when,
                        read_at=None if inbound else when,
                        created_at=when,
                    )
                )
                created += 1
                if inbound:
                    contact.last_inbound_at = when
            conversation.last_message_at = when
            created += _seed_demo_history(session, conversation, n)
        session.flush()
    return created


# Two weeks of earlier traffic, so the Analytics charts have something to show:
# (outbound statuses, inbound count) per day, cycling; day 1 is yesterday.
DEMO_HISTORY_DAYS = 13
_HISTORY_PATTERN = [
    (("read", "read", "delivered"), 1),
    (("read", "sent"), 0),
    (("read", "delivered", "failed"), 2),
    (("delivered",), 1),
]


def _seed_demo_history(session: Session, conversation: Conversation, offset: int) -> int:
    """Older messages on ``conversation``: the days of the last two weeks that fall to
    it (each day goes to one of the demo conversations; ~40 messages per tenant)."""
    from datetime import timedelta

    from app.models.conversation import Message, MessageDirection, MessageStatus

    created = 0
    now = utcnow()
    for day in range(1, DEMO_HISTORY_DAYS + 1):
        if day % len(DEMO_CONVERSATIONS) != offset:
            continue
        statuses, inbound = _HISTORY_PATTERN[(day + offset) % len(_HISTORY_PATTERN)]
        when = now - timedelta(days=day, hours=2 + offset)
        lines = [(MessageDirection.outbound, MessageStatus(s)) for s in statuses]
        lines += [(MessageDirection.inbound, MessageStatus.received)] * inbound
        for i, (direction, status) in enumerate(lines):
            at = when + timedelta(minutes=7 * i)
            outbound = direction == MessageDirection.outbound
            session.add(
                Message(
                    conversation=conversation,
                    direction=direction,
                    body="Your order update is ready." if outbound else "Thank you!",
                    status=status,
                    sent_at=at if outbound and status != MessageStatus.failed else None,
                    delivered_at=at
                    if status in (MessageStatus.delivered, MessageStatus.read)
                    else None,
                    read_at=at if status == MessageStatus.read else None,
                    failed_at=at if status == MessageStatus.failed else None,
                    created_at=at,
                )
            )
            created += 1
    return created
