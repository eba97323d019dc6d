"""Building blocks of the campaign sending tests: a fake Cloud API number, a tenant wired
to it, an audience of contacts, an approved template and a launched campaign.

Everything takes a session, so the same helpers serve the in-process tests (the test's
rolled-back session) and the worker-process tests (a session that really commits).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from app.models.campaign import (
    Campaign,
    CampaignRecipient,
    MessageTemplate,
    RecipientStatus,
    TemplateCategory,
    TemplateStatus,
)
from app.models.contact import ConsentState, Contact, Tag, contact_tag
from app.models.tenant import Tenant
from app.services import campaigns

TOKEN = "EAAGcampaignTestToken0123456789abcdef"
SECRET = "campaign-test-app-secret"
WELCOME = [{"type": "BODY", "text": "Welcome to our store, {{1}}!"}]


def wire_tenant(tenant: Tenant, number: str, mps: int) -> None:
    """Point the tenant at a fake business number."""
    tenant.wa_phone_number_id = number
    tenant.wa_business_account_id = "2" + number[1:]
    tenant.wa_access_token = TOKEN
    tenant.wa_app_secret = SECRET
    tenant.wa_messaging_limit_mps = mps


def add_contacts(
    session: Session,
    tenant_id: int,
    prefix: str,
    count: int,
    consent: ConsentState = ConsentState.opted_in,
    objecting: bool = False,
) -> tuple[int, list[str]]:
    """``count`` contacts tagged with a new tag; (tag id, their WhatsApp ids)."""
    tag = Tag(tenant_id=tenant_id, name=f"t{prefix}")
    session.add(tag)
    session.flush()
    wa_ids = [f"{prefix}{i:05d}" for i in range(count)]
    rows = [
        {
            "tenant_id": tenant_id,
            "wa_id": wa_id,
            "phone": f"+{wa_id}",
            "display_name": f"Customer {i}",
            "consent_state": consent,
            "marketing_objection": objecting,
        }
        for i, wa_id in enumerate(wa_ids)
    ]
    ids = session.scalars(insert(Contact.__table__).returning(Contact.__table__.c.id), rows).all()
    session.execute(insert(contact_tag), [{"contact_id": c, "tag_id": tag.id} for c in ids])
    return tag.id, wa_ids


def welcome_template(session: Session, tenant_id: int) -> MessageTemplate:
    """The fake's approved "welcome" template ({{1}} = the contact's name)."""
    found = session.scalars(
        select(MessageTemplate).where(
            MessageTemplate.tenant_id == tenant_id, MessageTemplate.name == "welcome"
        )
    ).first()
    if found is not None:
        return found
    template = MessageTemplate(
        tenant_id=tenant_id,
        name="welcome",
        language="en_US",
        category=TemplateCategory.marketing,
        status=TemplateStatus.approved,
        components=WELCOME,
    )
    session.add(template)
    session.flush()
    return template


def new_campaign(session: Session, tenant_id: int, tag_ids: list[int], **extra: Any) -> Campaign:
    """A draft campaign of the welcome template to contacts with any of ``tag_ids``."""
    campaign = Campaign(
        tenant_id=tenant_id,
        name="Test campaign",
        template_id=welcome_template(session, tenant_id).id,
        parameter_mapping={"body.1": {"source": "field", "value": "name", "fallback": "friend"}},
        include_tag_ids=tag_ids,
        **extra,
    )
    session.add(campaign)
    session.flush()
    return campaign


def launched(session: Session, tenant_id: int, tag_ids: list[int]) -> Campaign:
    """A campaign launched (recipients snapshotted, status sending); not committed."""
    campaign = new_campaign(session, tenant_id, tag_ids)
    campaigns.launch(session, campaign)
    return campaign


def recipients(session: Session, campaign_id: int) -> list[CampaignRecipient]:
    session.expire_all()
    return list(
        session.scalars(
            select(CampaignRecipient)
            .where(CampaignRecipient.campaign_id == campaign_id)
            .order_by(CampaignRecipient.id)
        )
    )


def by_status(session: Session, campaign_id: int) -> dict[RecipientStatus, int]:
    counts: dict[RecipientStatus, int] = {}
    for rec in recipients(session, campaign_id):
        counts[rec.status] = counts.get(rec.status, 0) + 1
    return counts
