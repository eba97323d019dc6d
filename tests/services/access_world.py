"""A small world for access-package tests: contacts with conversations in two tenants."""

from __future__ import annotations

import io
import json
import zipfile
from dataclasses import dataclass

from app.extensions import db
from app.models.campaign import (
    Campaign,
    CampaignRecipient,
    MessageTemplate,
    RecipientStatus,
    TemplateCategory,
    TemplateStatus,
)
from app.models.contact import ConsentAction, ConsentSource, Contact, Tag
from app.models.conversation import Conversation, Message, MessageDirection, MessageStatus
from app.models.privacy import PrivacyArtifact, RequestChannel, RequestType, SubjectKind
from app.services import privacy
from app.services.consent import record_consent


@dataclass
class World:
    subject: Contact  # tenant A, the subject of the request
    neighbour: Contact  # tenant A, another contact
    stranger: Contact  # tenant B


def _contact(tenant_id: int, phone: str, name: str, messages: int, tag: Tag | None) -> Contact:
    contact = Contact(
        tenant_id=tenant_id,
        phone=f"+91{phone}",
        wa_id=f"91{phone}",
        display_name=name,
        email=f"{name.lower().replace(' ', '.')}@mail.example",
    )
    if tag is not None:
        contact.tags = [tag]
    db.session.add(contact)
    db.session.flush()
    record_consent(
        db.session, contact, ConsentAction.opt_in, ConsentSource.web_form, f"form for {name}"
    )
    conversation = Conversation(tenant_id=tenant_id, contact_id=contact.id)
    db.session.add(conversation)
    db.session.flush()
    for i in range(messages):
        db.session.add(
            Message(
                tenant_id=tenant_id,
                conversation_id=conversation.id,
                direction=MessageDirection.inbound if i % 2 else MessageDirection.outbound,
                body=f"{name} says hello #{i}",
                status=MessageStatus.received if i % 2 else MessageStatus.delivered,
            )
        )
    db.session.flush()
    return contact


def _campaign(tenant_id: int, contacts: list[Contact]) -> Campaign:
    template = MessageTemplate(
        tenant_id=tenant_id,
        name="access_test_offer",
        language="en",
        category=TemplateCategory.marketing,
        status=TemplateStatus.approved,
        components=[],
    )
    db.session.add(template)
    db.session.flush()
    campaign = Campaign(tenant_id=tenant_id, name="Access test campaign", template_id=template.id)
    db.session.add(campaign)
    db.session.flush()
    for contact in contacts:
        db.session.add(
            CampaignRecipient(
                tenant_id=tenant_id,
                campaign_id=campaign.id,
                contact_id=contact.id,
                wa_id=contact.wa_id,
                parameters={"1": contact.display_name},
                status=RecipientStatus.delivered,
            )
        )
    db.session.flush()
    return campaign


def build_world(tenant_a, tenant_b) -> World:
    tag = Tag(tenant_id=tenant_a.id, name="access-vip")
    db.session.add(tag)
    subject = _contact(tenant_a.id, "9811100001", "Subject Person", 5, tag)
    neighbour = _contact(tenant_a.id, "9811100002", "Neighbour Person", 3, None)
    stranger = _contact(tenant_b.id, "9811100003", "Stranger Person", 2, None)
    record_consent(
        db.session, subject, ConsentAction.objection, ConsentSource.tenant_action, "asked"
    )
    _campaign(tenant_a.id, [subject, neighbour])
    return World(subject, neighbour, stranger)


def open_access_request(subject, kind: SubjectKind, created_by=None, email=None, rtype=None):
    return privacy.open_request(
        request_type=rtype or RequestType.access,
        subject_kind=kind,
        subject=subject,
        channel=RequestChannel.in_app if created_by else RequestChannel.email,
        requester_email=email or "requester@mail.example",
        created_by=created_by,
    )


def unzip(artifact: PrivacyArtifact) -> dict[str, bytes]:
    """Every file of a stored artifact, read back from the database."""
    db.session.expire(artifact)
    stored = db.session.get(PrivacyArtifact, artifact.id)
    with zipfile.ZipFile(io.BytesIO(bytes(stored.content))) as zf:
        return {name: zf.read(name) for name in zf.namelist()}


def rows(files: dict[str, bytes], name: str) -> list[dict]:
    return json.loads(files[f"{name}.json"])
