"""Policy versions (P24): 7 days' notice for a material change, notice emails, banner."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from sqlalchemy import func, select

from app.extensions import db
from app.jobs.registers import send_after_commit
from app.models.mixins import utcnow
from app.models.privacy import PolicyAcknowledgement, PolicyVersion
from app.services import policy
from app.services.exceptions import ValidationError
from app.services.policy import PolicyNoticeError, PolicyPublishedError

NOW = datetime(2026, 11, 27, 12, 0)  # UTC; 17:30 IST
DEMO_TENANT_ADMINS = {"owner@acme.example", "owner@bharatfoods.example"}


def draft(label: str, material: bool, effective_at: datetime) -> PolicyVersion:
    version = PolicyVersion(
        version=label,
        summary="Adds a new sub-processor for email delivery.",
        full_text="Privacy Policy\n\nThe new text.",
        material=material,
        effective_at=effective_at,
    )
    db.session.add(version)
    db.session.flush()
    return version


def test_a_material_version_6_days_23_hours_after_notice_is_refused(app):
    version = draft("9.1", True, NOW + timedelta(days=6, hours=23))
    with pytest.raises(PolicyNoticeError) as refused:
        policy.validate(version, now=NOW)
    # The earliest allowed time, in IST: 7 days after 17:30 IST on 27 Nov.
    assert "04 Dec 2026, 17:30 IST" in str(refused.value)
    assert refused.value.field == "effective_at"


def test_a_material_version_7_days_after_notice_is_accepted(app):
    policy.validate(draft("9.2", True, NOW + timedelta(days=7)), now=NOW)


def test_the_earliest_time_shown_is_itself_allowed(app):
    notice = NOW + timedelta(seconds=20)
    earliest = policy.earliest_effective(notice)
    assert earliest == NOW + timedelta(days=7, minutes=1)
    policy.check_notice(True, earliest, notice)


@pytest.mark.parametrize("offset", [timedelta(days=-3), timedelta(0), timedelta(hours=1)])
def test_a_non_material_version_may_take_effect_any_time(app, offset):
    policy.validate(draft(f"9.3{offset.days}", False, NOW + offset), now=NOW)


def test_publishing_rechecks_the_notice_rule_at_publish_time(app, user_by_email):
    version = draft("9.4", True, NOW + timedelta(days=7))
    policy.validate(version, now=NOW)  # fine as a draft saved at NOW...
    with pytest.raises(PolicyNoticeError):  # ...but published an hour later it is short
        policy.publish(
            version, user_by_email("compliance@xigmapro.example"), "u", NOW + timedelta(hours=1)
        )
    assert version.published_at is None


def test_publish_emails_each_active_tenant_admin_once(app, mailbox, run_jobs, user_by_email):
    actor = user_by_email("compliance@xigmapro.example")
    resting = user_by_email("owner@bharatfoods.example")
    extra = user_by_email("agent@acme.example")
    extra.roles = [*extra.roles, *user_by_email("owner@acme.example").roles]
    version = draft("9.5", True, utcnow() + timedelta(days=8))

    emails = policy.publish(version, actor, "http://localhost/privacy-policy/versions/9.5")
    queued = send_after_commit(emails)
    db.session.commit()
    assert run_jobs("mail") >= 1

    recipients = sorted(str(m["To"]) for m in mailbox.messages)
    assert DEMO_TENANT_ADMINS | {"agent@acme.example"} <= set(recipients)
    assert len(recipients) == len(set(recipients)) == queued  # one each
    assert "compliance@xigmapro.example" not in recipients  # platform staff: no notice
    notice = mailbox.last_to("owner@acme.example")
    assert "9.5" in str(notice["Subject"])
    text = mailbox.text(notice)
    assert "material change" in text and "/privacy-policy/versions/9.5" in text
    assert version.published_at is not None

    with pytest.raises(PolicyPublishedError):
        policy.publish(version, actor, "u")

    # A deactivated admin gets no notice.
    resting.active = False
    db.session.flush()
    later = draft("9.6", False, utcnow())
    assert "owner@bharatfoods.example" not in {e["to"] for e in policy.publish(later, actor, "u")}


def test_a_published_version_is_immutable(app, user_by_email):
    version = draft("9.7", False, NOW)
    policy.publish(version, user_by_email("compliance@xigmapro.example"), "u")
    with pytest.raises(PolicyPublishedError):
        policy.check_editable(version)


def test_current_and_upcoming_policy(app, user_by_email):
    actor = user_by_email("compliance@xigmapro.example")
    now = utcnow()
    in_force = draft("9.8", False, now - timedelta(days=1))
    upcoming = draft("9.9", True, now + timedelta(days=10))
    unpublished = draft("9.10", False, now - timedelta(hours=1))
    policy.publish(in_force, actor, "u", now - timedelta(days=2))
    policy.publish(upcoming, actor, "u", now)
    assert policy.current_policy(now) == in_force
    assert policy.upcoming_policy(now) == upcoming
    assert policy.published_version("9.10") is None and unpublished.published_at is None


def test_banner_until_acknowledged_and_recorded_once(app, client, login, user_by_email, csrf_token):
    agent = user_by_email("agent@acme.example")
    version = draft("9.11", True, utcnow() + timedelta(days=8))
    policy.publish(version, user_by_email("compliance@xigmapro.example"), "u")
    db.session.commit()
    assert policy.needs_acknowledgement(agent) == version

    login("agent@acme.example")
    page = client.get("/conversations/list/").get_data(as_text=True)
    assert 'id="policy-banner"' in page and "Privacy policy 9.11" in page
    assert "/privacy-policy/versions/9.11" in page

    ack = {"csrf_token": csrf_token("/account/"), "version_id": version.id, "next": "/account/"}
    first = client.post("/policy/acknowledge", data=ack)
    assert first.status_code == 302 and first.headers["Location"] == "/account/"
    assert 'id="policy-banner"' not in client.get("/").get_data(as_text=True)
    assert client.post("/policy/acknowledge", data=ack).status_code == 302  # a double click

    rows = db.session.scalar(
        select(func.count(PolicyAcknowledgement.id)).where(
            PolicyAcknowledgement.user_id == agent.id,
            PolicyAcknowledgement.policy_version_id == version.id,
        )
    )
    assert rows == 1
    assert policy.needs_acknowledgement(agent) is None
    assert policy.acknowledge(agent, version) is False
    # Another user still sees it.
    assert policy.needs_acknowledgement(user_by_email("owner@acme.example")) == version


def test_only_a_published_version_can_be_acknowledged(app, user_by_email):
    with pytest.raises(ValidationError):
        policy.acknowledge(user_by_email("agent@acme.example"), draft("9.12", False, NOW))


def test_the_acknowledge_post_needs_csrf_and_a_local_next(
    app, client, login, user_by_email, csrf_token
):
    version = draft("9.13", False, utcnow())
    policy.publish(version, user_by_email("compliance@xigmapro.example"), "u")
    db.session.commit()
    login("agent@acme.example")
    assert client.post("/policy/acknowledge", data={"version_id": version.id}).status_code == 400
    response = client.post(
        "/policy/acknowledge",
        data={
            "csrf_token": csrf_token("/account/"),
            "version_id": version.id,
            "next": "//evil.example/",
        },
    )
    assert response.headers["Location"] == "/"
