"""Template status webhooks in the drain job: the tenant's copy, the audit trail, the
sync for unknown templates and the campaigns of a template that stops being sendable."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from app.extensions import db
from app.jobs import get_queue
from app.jobs.templates import sync_tenant_templates
from app.jobs.webhooks import drain_inbox
from app.models.audit import AuditEvent
from app.models.campaign import Campaign, CampaignStatus, MessageTemplate, TemplateStatus
from tests.jobs.campaign_world import add_contacts, launched, new_campaign
from tests.views.test_template_status_webhook import (
    _fresh_tenant_cache,  # noqa: F401 - autouse
    accounts,  # noqa: F401 - fixture
    status_events,
    template,
    template_update,
)
from tests.views.test_whatsapp_webhook import post


def events(action: str, tenant_id: int) -> list[AuditEvent]:
    return list(
        db.session.scalars(
            select(AuditEvent)
            .where(AuditEvent.action == action, AuditEvent.tenant_id == tenant_id)
            .order_by(AuditEvent.id)
            .execution_options(skip_tenant_scope=True)
        )
    )


def queued_functions() -> list[str]:
    return [job.func_name for job in get_queue("default").jobs]


def deliver(client, payload: dict, tenant_id: int) -> dict:
    """Post a signed delivery, then drain it in this process (no other queued job runs)."""
    response = post(client, payload)
    assert response.status_code == 200, response.get_data(as_text=True)
    return drain_inbox(tenant_id=tenant_id)


@pytest.mark.usefixtures("accounts")
def test_status_change_is_applied_and_audited_with_its_reason(client, tenant_a):
    welcome = template(tenant_a.id)
    welcome.wa_template_id = "777001"
    db.session.commit()
    counts = deliver(client, template_update(template_id=777001, name="renamed"), tenant_a.id)
    assert counts["templates"] == 1 and counts["templates_unknown"] == 0
    welcome = template(tenant_a.id)  # found by its WhatsApp id, whatever the name says
    assert welcome.status == TemplateStatus.rejected
    assert welcome.rejected_reason == "INCORRECT_CATEGORY"
    (event,) = status_events(tenant_a.id)
    assert (event.object_type, event.object_id) == ("message_template", str(welcome.id))
    assert event.details["event"] == "REJECTED"
    assert (event.details["old_status"], event.details["new_status"]) == ("APPROVED", "REJECTED")
    assert event.details["reason"] == "INCORRECT_CATEGORY"

    # By name and language (Meta may write "en-US"); a reinstatement clears the reason.
    update = template_update(event="REINSTATED", template_id=1, language="en-US", reason="NONE")
    deliver(client, update, tenant_a.id)
    welcome = template(tenant_a.id)
    assert (welcome.status, welcome.rejected_reason) == (TemplateStatus.approved, None)
    assert [e.details["new_status"] for e in status_events(tenant_a.id)] == [
        "REJECTED",
        "APPROVED",
    ]


@pytest.mark.usefixtures("accounts")
def test_an_event_that_is_not_a_review_state_changes_nothing(client, tenant_a):
    counts = deliver(client, template_update(event="FLAGGED"), tenant_a.id)
    assert counts["templates"] == 1
    assert template(tenant_a.id).status == TemplateStatus.approved
    assert status_events(tenant_a.id) == []


@pytest.mark.usefixtures("accounts")
def test_unknown_template_enqueues_a_sync_and_creates_nothing(client, tenant_a):

    def rows() -> int:
        return len(
            db.session.scalars(
                select(MessageTemplate.id).where(MessageTemplate.tenant_id == tenant_a.id)
            ).all()
        )

    before = rows()
    post(client, template_update(event="APPROVED", name="brand_new", template_id=555))
    db.session.commit()
    get_queue("default").empty()  # the drain the intake queued: run it here instead
    counts = drain_inbox(tenant_id=tenant_a.id)
    assert counts["templates_unknown"] == 1
    db.session.commit()  # the job's commit: the sync is enqueued after it
    sync = f"{sync_tenant_templates.__module__}.{sync_tenant_templates.__qualname__}"
    assert queued_functions() == [sync]
    (job,) = get_queue("default").jobs
    assert job.kwargs == {"tenant_id": tenant_a.id}
    assert rows() == before
    assert status_events(tenant_a.id) == []

    # A second unknown update while that sync waits: still one sync queued (coalesced).
    deliver(client, template_update(event="REJECTED", name="brand_new"), tenant_a.id)
    db.session.commit()
    assert queued_functions().count(sync) == 1


@pytest.mark.usefixtures("accounts")
def test_a_paused_template_pauses_its_sending_campaigns(client, tenant_a):
    tag, _wa_ids = add_contacts(db.session, tenant_a.id, "9182000", 3)
    sending = launched(db.session, tenant_a.id, [tag])
    draft = new_campaign(db.session, tenant_a.id, [tag])
    assert sending.status == CampaignStatus.sending
    db.session.commit()

    deliver(client, template_update(event="PAUSED", reason=None), tenant_a.id)
    db.session.expire_all()
    assert db.session.get(Campaign, sending.id).status == CampaignStatus.paused
    assert db.session.get(Campaign, draft.id).status == CampaignStatus.draft
    (paused,) = events("campaign.paused", tenant_a.id)
    assert paused.object_id == str(sending.id)
    assert paused.details["reason"] == "template_not_approved"
    assert paused.details["template_status"] == "PAUSED"
