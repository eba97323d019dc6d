"""Campaign service: template variables, mapping validation, audience by tags, consent-
aware preview (skip reasons) and the launch snapshot (P9: never to the wrong people)."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from app.extensions import db
from app.models.audit import AuditEvent
from app.models.campaign import (
    Campaign,
    CampaignRecipient,
    CampaignStatus,
    MessageTemplate,
    RecipientStatus,
    SkipReason,
    TemplateCategory,
    TemplateStatus,
)
from app.models.contact import ConsentState, Contact, Tag
from app.services import campaigns as svc
from app.services.exceptions import ValidationError
from app.tenancy import tenant_scope

BODY = "Hello {{1}}, your {{2}} is ready. {{1}}, reply STOP to opt out."


def make_template(tenant_id: int, **kw) -> MessageTemplate:
    template = MessageTemplate(
        tenant_id=tenant_id,
        name=kw.get("name", "order_ready"),
        language=kw.get("language", "en"),
        category=kw.get("category", TemplateCategory.marketing),
        status=kw.get("status", TemplateStatus.approved),
        components=kw.get(
            "components",
            [
                {"type": "HEADER", "format": "TEXT", "text": "Order update"},
                {"type": "BODY", "text": BODY},
                {"type": "FOOTER", "text": "Acme Traders"},
            ],
        ),
    )
    db.session.add(template)
    db.session.flush()
    return template


def make_contacts(tenant_id: int) -> dict[str, Contact]:
    """Six contacts covering every consent case, tagged vip / wholesale."""
    vip = Tag(tenant_id=tenant_id, name="camp-vip")
    wholesale = Tag(tenant_id=tenant_id, name="camp-wholesale")
    spec = {
        "in_vip": ("9900140001", ConsentState.opted_in, False, [vip], "Asha"),
        "in_both": ("9900140002", ConsentState.opted_in, False, [vip, wholesale], None),
        "in_wholesale": ("9900140003", ConsentState.opted_in, False, [wholesale], "Chitra"),
        "out_vip": ("9900140004", ConsentState.opted_out, False, [vip], "Dev"),
        "unknown_vip": ("9900140005", ConsentState.unknown, False, [vip], "Esha"),
        "objecting_vip": ("9900140006", ConsentState.opted_in, True, [vip], "Farid"),
    }
    found = {}
    for key, (number, state, objection, tags, name) in spec.items():
        contact = Contact(
            tenant_id=tenant_id,
            phone="+91" + number,
            wa_id="91" + number,
            display_name=name,
            consent_state=state,
            marketing_objection=objection,
            tags=tags,
        )
        db.session.add(contact)
        found[key] = contact
    db.session.flush()
    found["tags"] = (vip, wholesale)  # type: ignore[assignment]
    return found


def make_campaign(tenant_id: int, template: MessageTemplate, **kw) -> Campaign:
    campaign = Campaign(
        tenant_id=tenant_id,
        name=kw.get("name", "Diwali offers"),
        template_id=template.id,
        parameter_mapping=kw.get(
            "mapping",
            {
                "body.1": {"source": "field", "value": "name", "fallback": "Customer"},
                "body.2": {"source": "text", "value": "order"},
            },
        ),
        include_tag_ids=kw.get("include", []),
        include_mode=kw.get("mode", "any"),
        exclude_tag_ids=kw.get("exclude", []),
    )
    db.session.add(campaign)
    db.session.flush()
    return campaign


def test_template_variables_are_found_once_in_order(tenant_a):
    with tenant_scope(tenant_a.id):
        template = make_template(tenant_a.id)
        assert svc.template_variables(template) == [("body", "1"), ("body", "2")]
        named = make_template(
            tenant_a.id,
            name="named",
            components=[
                {"type": "HEADER", "format": "TEXT", "text": "Hi {{first_name}}"},
                {"type": "BODY", "text": "Order {{ order_id }} for {{first_name}}"},
                {"type": "HEADER", "format": "IMAGE"},
            ],
        )
        assert svc.template_variables(named) == [
            ("header", "first_name"),
            ("body", "order_id"),
            ("body", "first_name"),
        ]


@pytest.mark.parametrize(
    ("mapping", "message"),
    [
        ({}, "Map {{1}} in the body"),
        ({"body.1": {"source": "field", "value": "salary"}}, "Choose a contact field for {{1}}"),
        (
            {"body.1": {"source": "field", "value": "name"}, "body.2": {"source": "text"}},
            "Enter the text for {{2}}",
        ),
        (
            {
                "body.1": {"source": "field", "value": "name"},
                "body.2": {"source": "text", "value": "x" * 1025},
            },
            "longer than 1024",
        ),
    ],
)
def test_bad_mappings_are_explained(tenant_a, mapping, message):
    with tenant_scope(tenant_a.id):
        template = make_template(tenant_a.id)
        with pytest.raises(ValidationError, match=message.replace("{", r"\{").replace("}", r"\}")):
            svc.validate_mapping(template, mapping)


def test_preview_counts_the_audience_and_every_skip_reason(tenant_a):
    with tenant_scope(tenant_a.id):
        people = make_contacts(tenant_a.id)
        vip, wholesale = people["tags"]
        template = make_template(tenant_a.id)
        campaign = make_campaign(tenant_a.id, template, include=[vip.id])
        result = svc.preview(db.session, campaign)
        assert result.audience == 5  # every vip
        assert result.will_send == 2  # in_vip, in_both
        assert result.skipped == {
            SkipReason.opted_out: 1,
            SkipReason.not_opted_in: 1,
            SkipReason.objecting: 1,
        }


@pytest.mark.parametrize(
    ("include", "mode", "exclude", "expected"),
    [
        (["vip", "wholesale"], "any", [], {"in_vip", "in_both", "in_wholesale"}),
        (["vip", "wholesale"], "all", [], {"in_both"}),
        (["vip"], "any", ["wholesale"], {"in_vip"}),
        ([], "any", ["vip"], {"in_wholesale"}),
    ],
)
def test_audience_by_any_all_and_excluded_tags(tenant_a, include, mode, exclude, expected):
    with tenant_scope(tenant_a.id):
        people = make_contacts(tenant_a.id)
        tags = dict(zip(("vip", "wholesale"), people["tags"], strict=True))
        template = make_template(tenant_a.id)
        campaign = make_campaign(
            tenant_a.id,
            template,
            include=[tags[t].id for t in include],
            mode=mode,
            exclude=[tags[t].id for t in exclude],
        )
        svc.launch(db.session, campaign)
        sent_to = set(
            db.session.scalars(
                select(CampaignRecipient.contact_id).where(
                    CampaignRecipient.campaign_id == campaign.id,
                    CampaignRecipient.status == RecipientStatus.pending,
                )
            )
        )
        # Demo contacts of Acme may be opted in too; only ours are compared.
        ours = {people[k].id: k for k in people if k != "tags"}
        assert {ours[i] for i in sent_to if i in ours} == expected


def test_launch_snapshots_recipients_with_rendered_parameters(tenant_a):
    with tenant_scope(tenant_a.id):
        people = make_contacts(tenant_a.id)
        vip, _wholesale = people["tags"]
        template = make_template(tenant_a.id)
        campaign = make_campaign(tenant_a.id, template, include=[vip.id])
        result = svc.launch(db.session, campaign, actor_id=None)
        assert (result.will_send, result.skipped_total) == (2, 3)
        assert campaign.status == CampaignStatus.sending and campaign.launched_at
        assert (campaign.recipient_count, campaign.skipped_count) == (5, 3)
        rows = {
            r.contact_id: r
            for r in db.session.scalars(
                select(CampaignRecipient).where(CampaignRecipient.campaign_id == campaign.id)
            )
        }
        asha = rows[people["in_vip"].id]
        assert asha.status == RecipientStatus.pending and asha.wa_id == "919900140001"
        assert asha.parameters == {"body.1": "Asha", "body.2": "order"}
        # No name: the fallback is frozen into the snapshot.
        assert rows[people["in_both"].id].parameters["body.1"] == "Customer"
        assert rows[people["out_vip"].id].skip_reason == SkipReason.opted_out
        assert rows[people["out_vip"].id].status == RecipientStatus.skipped
        # Changing the contact later does not change what was snapshotted.
        people["in_vip"].display_name = "Asha Verma"
        db.session.flush()
        db.session.refresh(asha)
        assert asha.parameters["body.1"] == "Asha"
        event = db.session.scalars(
            select(AuditEvent).where(
                AuditEvent.action == "campaign.launched",
                AuditEvent.object_id == str(campaign.id),
            )
        ).one()
        assert event.details["to_send"] == 2 and event.details["skipped_opted_out"] == 1


def test_an_empty_field_without_fallback_skips_the_contact(tenant_a):
    with tenant_scope(tenant_a.id):
        people = make_contacts(tenant_a.id)
        vip, _ = people["tags"]
        template = make_template(tenant_a.id)
        campaign = make_campaign(
            tenant_a.id,
            template,
            include=[vip.id],
            mapping={
                "body.1": {"source": "field", "value": "email"},
                "body.2": {"source": "text", "value": "order"},
            },
        )
        people["in_vip"].email = "asha@example.com"
        db.session.flush()
        result = svc.launch(db.session, campaign)
        assert result.will_send == 1
        assert result.skipped[SkipReason.missing_parameter] == 1


def test_launch_twice_or_with_an_unapproved_template_is_refused(tenant_a):
    with tenant_scope(tenant_a.id):
        people = make_contacts(tenant_a.id)
        template = make_template(tenant_a.id)
        campaign = make_campaign(tenant_a.id, template, include=[people["tags"][0].id])
        svc.launch(db.session, campaign)
        count = db.session.scalar(select(func.count(CampaignRecipient.id)))
        with pytest.raises(ValidationError, match="cannot be launched"):
            svc.launch(db.session, campaign)
        assert db.session.scalar(select(func.count(CampaignRecipient.id))) == count
        paused = make_template(tenant_a.id, name="paused_one", status=TemplateStatus.paused)
        other = make_campaign(tenant_a.id, paused)
        with pytest.raises(ValidationError, match="only approved"):
            svc.launch(db.session, other)


def test_cancel_marks_pending_recipients_and_funnel_counts(tenant_a):
    with tenant_scope(tenant_a.id):
        people = make_contacts(tenant_a.id)
        template = make_template(tenant_a.id)
        campaign = make_campaign(tenant_a.id, template, include=[people["tags"][0].id])
        svc.launch(db.session, campaign)
        counts = svc.funnel(db.session, campaign)
        assert counts["pending"] == 2 and counts["skipped"] == 3 and counts["sent"] == 0
        svc.set_status(db.session, campaign, CampaignStatus.paused)
        svc.set_status(db.session, campaign, CampaignStatus.cancelled)
        counts = svc.funnel(db.session, campaign)
        assert counts["pending"] == 0 and counts["cancelled"] == 2
        assert svc.progress_percent(counts, 2) == 100
        with pytest.raises(ValidationError):
            svc.set_status(db.session, campaign, CampaignStatus.sending)


def test_audience_never_includes_another_tenants_contacts(tenant_a, tenant_b):
    with tenant_scope(tenant_b.id):
        make_contacts(tenant_b.id)
    with tenant_scope(tenant_a.id):
        template = make_template(tenant_a.id)
        campaign = make_campaign(tenant_a.id, template)
        svc.launch(db.session, campaign)
        tenants = set(
            db.session.scalars(
                select(Contact.tenant_id)
                .join(CampaignRecipient, CampaignRecipient.contact_id == Contact.id)
                .where(CampaignRecipient.campaign_id == campaign.id)
                .execution_options(skip_tenant_scope=True)
            )
        )
        assert tenants == {tenant_a.id}
