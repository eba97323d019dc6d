"""Campaign screens: create (validated), template values, consent-aware preview, launch
(snapshot + sending job on the whatsapp queue), schedule, pause/cancel, funnel pages and
CSV; agents and other tenants are kept out."""

from __future__ import annotations

import csv
import io
from datetime import timedelta

import pytest
from rq import Queue
from rq.serializers import JSONSerializer
from sqlalchemy import select

from app.extensions import db
from app.jobs import redis_connection
from app.models.audit import AuditEvent
from app.models.campaign import Campaign, CampaignRecipient, CampaignStatus, RecipientStatus
from app.models.mixins import utcnow
from app.tenancy import tenant_scope
from tests.conftest import form_csrf_token
from tests.services.test_campaigns_service import make_campaign, make_contacts, make_template

OWNER = "owner@acme.example"


@pytest.fixture
def owner(client, login):
    assert login(OWNER).status_code == 302
    return client


@pytest.fixture
def setup(tenant_a):
    with tenant_scope(tenant_a.id):
        people = make_contacts(tenant_a.id)
        template = make_template(tenant_a.id)
        db.session.commit()
    return people, template


def _campaign(name: str) -> Campaign:
    return db.session.scalars(select(Campaign).where(Campaign.name == name)).one()


def test_create_a_campaign_then_map_values_and_see_the_preview(owner, setup, tenant_a):
    people, template = setup
    vip = people["tags"][0]
    token = form_csrf_token(owner, "/campaigns/add")
    response = owner.post(
        "/campaigns/add",
        data={
            "csrf_token": token,
            "name": "VIP launch",
            "template_id": template.id,
            "include_tag_ids": [vip.id],
            "include_mode": "any",
        },
    )
    assert response.status_code == 302
    campaign = _campaign("VIP launch")
    assert campaign.status == CampaignStatus.draft and campaign.include_tag_ids == [vip.id]
    page = owner.get(f"/campaigns/show/{campaign.id}").get_data(as_text=True)
    assert "Map {{1}} in the body" in page  # values not chosen yet: no launch button
    assert 'id="campaign-launch"' not in page

    token = form_csrf_token(owner, f"/campaigns/show/{campaign.id}")
    response = owner.post(
        f"/campaigns/{campaign.id}/parameters",
        data={
            "csrf_token": token,
            "source-body.1": "field",
            "field-body.1": "name",
            "fallback-body.1": "Customer",
            "source-body.2": "text",
            "text-body.2": "order",
        },
    )
    assert response.status_code == 302
    page = owner.get(f"/campaigns/show/{campaign.id}").get_data(as_text=True)
    assert 'id="preview-audience">5<' in page and 'id="preview-will-send">2<' in page
    assert 'id="skip-opted_out">1<' in page and 'id="skip-objecting">1<' in page
    assert "Launch now to 2 contact(s)" in page


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"name": ""}, "Name the campaign."),
        ({"template_id": "999999"}, "Not a valid choice"),
        ({"scheduled_at": "2020-01-01T10:00"}, "Choose a time in the future"),
        ({"exclude_tag_ids": "same"}, "both included and excluded"),
    ],
)
def test_the_form_explains_what_is_wrong(owner, setup, change, message):
    people, template = setup
    vip = people["tags"][0]
    data = {
        "csrf_token": form_csrf_token(owner, "/campaigns/add"),
        "name": "Bad",
        "template_id": template.id,
        "include_tag_ids": [vip.id],
        "include_mode": "any",
    }
    if change.get("exclude_tag_ids") == "same":
        change = {"exclude_tag_ids": [vip.id]}
    data.update(change)
    response = owner.post("/campaigns/add", data=data)
    assert response.status_code == 200
    assert message in response.get_data(as_text=True)
    assert db.session.scalars(select(Campaign).where(Campaign.name == "Bad")).first() is None


def test_launch_snapshots_and_enqueues_sending(owner, setup, tenant_a, app):
    people, template = setup
    with tenant_scope(tenant_a.id):
        campaign = make_campaign(tenant_a.id, template, include=[people["tags"][0].id])
        db.session.commit()
    token = form_csrf_token(owner, f"/campaigns/show/{campaign.id}")
    response = owner.post(f"/campaigns/{campaign.id}/launch", data={"csrf_token": token})
    assert response.status_code == 302
    db.session.refresh(campaign)
    assert campaign.status == CampaignStatus.sending
    assert campaign.recipient_count == 5 and campaign.skipped_count == 3
    queue = Queue("whatsapp", connection=redis_connection(), serializer=JSONSerializer)
    assert [j.func_name for j in queue.get_jobs()] == ["app.jobs.campaigns.send_campaign"]
    page = owner.get(f"/campaigns/show/{campaign.id}").get_data(as_text=True)
    assert 'id="funnel-skipped"' in page and 'http-equiv="refresh"' in page
    # A second launch (double click) changes nothing.
    owner.post(f"/campaigns/{campaign.id}/launch", data={"csrf_token": token})
    assert len(queue.get_jobs()) == 1
    total = db.session.scalar(
        select(db.func.count(CampaignRecipient.id)).where(
            CampaignRecipient.campaign_id == campaign.id
        )
    )
    assert total == 5


def test_a_future_schedule_is_confirmed_not_launched(owner, setup, tenant_a):
    people, template = setup
    with tenant_scope(tenant_a.id):
        campaign = make_campaign(tenant_a.id, template)
        campaign.scheduled_at = utcnow() + timedelta(hours=2)
        db.session.commit()
    token = form_csrf_token(owner, f"/campaigns/show/{campaign.id}")
    owner.post(f"/campaigns/{campaign.id}/launch", data={"csrf_token": token})
    db.session.refresh(campaign)
    assert campaign.status == CampaignStatus.scheduled and campaign.launched_at is None
    assert "scheduled for" in owner.get(f"/campaigns/show/{campaign.id}").get_data(as_text=True)


def test_funnel_pages_and_csv_list_the_recipients_behind_a_number(owner, setup, tenant_a):
    people, template = setup
    with tenant_scope(tenant_a.id):
        from app.services import campaigns as svc

        campaign = make_campaign(tenant_a.id, template, include=[people["tags"][0].id])
        svc.launch(db.session, campaign)
        db.session.commit()
    page = owner.get(f"/campaigns/{campaign.id}/recipients?stage=skipped").get_data(as_text=True)
    assert "Dev" in page and "opted out" in page and "Asha" not in page
    response = owner.get(f"/campaigns/{campaign.id}/recipients.csv?stage=pending")
    rows = list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))
    assert {(r["contact"], r["phone"]) for r in rows} == {
        ("Asha", "+919900140001"),
        ("", "+919900140002"),
    }
    assert {r["status"] for r in rows} == {RecipientStatus.pending.value}
    exported = db.session.scalars(
        select(AuditEvent).where(
            AuditEvent.action == "campaign.recipients_exported",
            AuditEvent.object_id == str(campaign.id),
        )
    ).one()
    assert exported.details == {"stage": "pending"}  # phone numbers left: audited (P3)
    assert owner.get(f"/campaigns/{campaign.id}/recipients?stage=nonsense").status_code == 404


def test_cancel_from_the_screen(owner, setup, tenant_a):
    people, template = setup
    with tenant_scope(tenant_a.id):
        from app.services import campaigns as svc

        campaign = make_campaign(tenant_a.id, template, include=[people["tags"][0].id])
        svc.launch(db.session, campaign)
        db.session.commit()
    token = form_csrf_token(owner, f"/campaigns/show/{campaign.id}")
    owner.post(f"/campaigns/{campaign.id}/control", data={"csrf_token": token, "action": "cancel"})
    db.session.refresh(campaign)
    assert campaign.status == CampaignStatus.cancelled
    response = owner.post(f"/campaigns/{campaign.id}/control", data={"action": "resume"})
    assert response.status_code == 400  # no CSRF token


def test_agents_and_other_tenants_are_kept_out(client, login, setup, tenant_a):
    people, template = setup
    with tenant_scope(tenant_a.id):
        campaign = make_campaign(tenant_a.id, template)
        db.session.commit()
    assert login("agent@acme.example").status_code == 302
    assert client.get("/campaigns/list/").status_code in (302, 403)
    assert client.get(f"/campaigns/show/{campaign.id}").status_code in (302, 403)
    login.logout()
    assert login("owner@bharatfoods.example").status_code == 302
    assert client.get(f"/campaigns/show/{campaign.id}").status_code == 404
    assert client.get(f"/campaigns/{campaign.id}/recipients").status_code == 404
    assert client.get(f"/campaigns/{campaign.id}/recipients.csv").status_code == 404


def _finish(campaign: Campaign, status: RecipientStatus, completed_ago: timedelta) -> None:
    """Every recipient still to send reached ``status``; the campaign completed."""
    db.session.execute(
        db.update(CampaignRecipient)
        .where(
            CampaignRecipient.campaign_id == campaign.id,
            CampaignRecipient.status == RecipientStatus.pending,
        )
        .values(status=status, attempts=1, sent_at=utcnow())
    )
    campaign.status = CampaignStatus.completed
    campaign.completed_at = utcnow() - completed_ago
    db.session.commit()


@pytest.mark.parametrize(
    ("status", "completed_ago", "refreshes"),
    [
        (RecipientStatus.sent, timedelta(seconds=5), True),  # delivery reports still due
        (RecipientStatus.delivered, timedelta(seconds=5), False),  # all reported
        (RecipientStatus.sent, timedelta(hours=1), False),  # gave up waiting
    ],
)
def test_a_completed_campaign_page_refreshes_while_delivery_reports_are_due(
    owner, setup, tenant_a, status, completed_ago, refreshes
):
    """Sending ends before WhatsApp's delivery webhooks arrive: the page used to stop
    refreshing at "completed" and showed Delivered 0 until reloaded by hand."""
    people, template = setup
    with tenant_scope(tenant_a.id):
        from app.services import campaigns as svc

        campaign = make_campaign(tenant_a.id, template, include=[people["tags"][0].id])
        svc.launch(db.session, campaign)
        _finish(campaign, status, completed_ago)
    page = owner.get(f"/campaigns/show/{campaign.id}").get_data(as_text=True)
    assert ('http-equiv="refresh" content="5"' in page) is refreshes
    assert ("Waiting for delivery reports" in page) is refreshes


def test_the_campaign_page_names_the_audience_and_hides_raw_fields(owner, setup, tenant_a):
    """Tag names and the template's text, not tag ids and the mapping's JSON."""
    people, template = setup
    vip, wholesale = people["tags"]
    with tenant_scope(tenant_a.id):
        campaign = make_campaign(tenant_a.id, template, include=[vip.id], exclude=[wholesale.id])
        db.session.commit()
    page = owner.get(f"/campaigns/show/{campaign.id}").get_data(as_text=True)
    assert "contacts tagged camp-vip, except those tagged camp-wholesale" in page
    assert "Hello {{1}}, your {{2}} is ready." in page  # the template's body text
    assert "Parameter Mapping" not in page and "Include Tag Ids" not in page
    assert "'source': 'field'" not in page and "{&#39;source&#39;" not in page


def test_the_recipients_page_marks_its_stage_and_counts_each(owner, setup, tenant_a):
    people, template = setup
    with tenant_scope(tenant_a.id):
        from app.services import campaigns as svc

        campaign = make_campaign(tenant_a.id, template, include=[people["tags"][0].id])
        svc.launch(db.session, campaign)
        db.session.commit()
    page = owner.get(f"/campaigns/{campaign.id}/recipients?stage=skipped").get_data(as_text=True)
    active = page.split('<li class="active">', 1)[1].split("</li>", 1)[0]
    assert "Skipped" in active and '<span class="badge">3</span>' in active
    page = owner.get(f"/campaigns/{campaign.id}/recipients?stage=delivered").get_data(as_text=True)
    assert "including messages since read" in page
    assert 'Waiting <span class="badge">2</span>' in page
    assert 'All <span class="badge">5</span>' in page
