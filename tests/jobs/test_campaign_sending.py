"""The sending pipeline in this process: the job, the fake Cloud API over real HTTP,
real Redis and PostgreSQL (the test's transaction). Worker processes: see
test_campaign_workers.py."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select

from app.extensions import db
from app.jobs import get_queue
from app.jobs.campaigns import schedule_sending, sweep_campaigns
from app.models.audit import AuditEvent
from app.models.campaign import CampaignStatus, RecipientStatus, SkipReason
from app.models.contact import ConsentState
from app.models.conversation import Message, MessageDirection
from app.services import campaigns, sending, whatsapp
from app.services.whatsapp import campaign_callback_data
from tests.fakes.cloud_parts import FakeNumber, Fault
from tests.fakes.whatsapp_cloud import FakeCloudAPI
from tests.jobs.campaign_world import (
    SECRET,
    TOKEN,
    add_contacts,
    by_status,
    launched,
    new_campaign,
    recipients,
    wire_tenant,
)

NUMBER = "100000000000501"
S = RecipientStatus


@pytest.fixture
def fake(app, monkeypatch):
    server = FakeCloudAPI([FakeNumber(NUMBER, SECRET, TOKEN, mps=None)], seed=5).start()
    monkeypatch.setitem(app.config, "WHATSAPP_API_BASE", server.base_url)
    monkeypatch.setitem(app.config, "CAMPAIGN_RETRY_SCALE", 0.02)
    monkeypatch.setitem(app.config, "CAMPAIGN_PAIR_RETRY_S", 0.2)
    try:
        yield server
    finally:
        server.stop()
        whatsapp.close_http_clients()


@pytest.fixture
def tenant(tenant_a, fake):
    wire_tenant(tenant_a, NUMBER, 1000)
    db.session.commit()
    return tenant_a


def start(campaign) -> None:
    schedule_sending(campaign.id, campaign.tenant_id)
    db.session.commit()


def apply_webhooks(fake: FakeCloudAPI, tenant_id: int) -> int:
    """What the webhook intake does with the fake's status webhooks (lead: inbound.py)."""
    applied = sum(
        sending.apply_recipient_status(db.session, dict(s), tenant_id) for s in fake.status_log
    )
    db.session.commit()
    return applied


def test_consent_skipped_contacts_are_never_sent(tenant, fake, run_jobs):
    ok_tag, ok = add_contacts(db.session, tenant.id, "9181000", 40)
    out_tag, out = add_contacts(db.session, tenant.id, "9181001", 5, ConsentState.opted_out)
    new_tag, unknown = add_contacts(db.session, tenant.id, "9181002", 5, ConsentState.unknown)
    obj_tag, objecting = add_contacts(db.session, tenant.id, "9181003", 5, objecting=True)
    campaign = launched(db.session, tenant.id, [ok_tag, out_tag, new_tag, obj_tag])
    start(campaign)

    assert run_jobs("whatsapp") >= 1
    rows = recipients(db.session, campaign.id)
    skipped = {r.wa_id: r.skip_reason for r in rows if r.status == S.skipped}
    assert skipped == (
        dict.fromkeys(out, SkipReason.opted_out)
        | dict.fromkeys(unknown, SkipReason.not_opted_in)
        | dict.fromkeys(objecting, SkipReason.objecting)
    )
    assert all(fake.count(w, campaign.id) == 0 for w in out + unknown + objecting)
    assert all(fake.count(w, campaign.id) == 1 for w in ok)
    assert {r.status for r in rows if r.wa_id in ok} == {S.sent}
    db.session.refresh(campaign)
    assert (campaign.status, campaign.skipped_count) == (CampaignStatus.completed, 15)
    # Each sent recipient has an outbound message in a conversation, tagged with the campaign.
    messages = db.session.scalars(select(Message).where(Message.campaign_id == campaign.id)).all()
    assert len(messages) == 40
    assert {m.direction for m in messages} == {MessageDirection.outbound}
    assert {m.wa_message_id for m in messages} == {r.wa_message_id for r in rows if r.wa_id in ok}
    assert messages[0].body.startswith("Welcome to our store, Customer ")
    assert fake.accepted[0].callback_data.startswith(f"campaign:{campaign.id}:recipient:")


def test_faults_end_sent_or_failed_with_the_code_and_none_twice(tenant, fake, run_jobs):
    tag, wa_ids = add_contacts(db.session, tenant.id, "9182000", 300)
    doomed = wa_ids[:3]
    fake.inject(Fault(None, rate=0.10, http_status=503))
    fake.inject(Fault(130429, rate=0.05))
    fake.inject(Fault(131056, rate=0.03))
    for wa_id in doomed:
        fake.inject(Fault(131026, to=wa_id))  # permanent for this recipient
    campaign = launched(db.session, tenant.id, [tag])
    start(campaign)

    run_jobs("whatsapp")
    rows = recipients(db.session, campaign.id)
    assert {r.status for r in rows} <= {S.sent, S.failed}
    failed = {r.wa_id: r.error_code for r in rows if r.status == S.failed}
    assert failed == dict.fromkeys(doomed, 131026)
    assert fake.duplicates() == {}
    assert all(fake.count(w, campaign.id) == 1 for w in wa_ids[3:])
    assert fake.outcomes["None"] > 0 and fake.outcomes["130429"] > 0 and fake.outcomes["131056"] > 0
    assert max(r.attempts for r in rows) > 1
    db.session.refresh(campaign)
    assert campaign.status == CampaignStatus.completed


def test_async_failures_by_webhook_mark_recipients_failed(tenant, fake, run_jobs):
    tag, wa_ids = add_contacts(db.session, tenant.id, "9183000", 20)
    fake.undeliverable.add(wa_ids[0])  # 131026 comes only by webhook
    fake.inject(Fault(131047, to=wa_ids[1], asynchronous=True))
    campaign = launched(db.session, tenant.id, [tag])
    start(campaign)
    run_jobs("whatsapp")
    assert by_status(db.session, campaign.id) == {S.sent: 20}, fake.outcomes

    assert apply_webhooks(fake, tenant.id) == len(fake.status_log)
    rows = {r.wa_id: r for r in recipients(db.session, campaign.id)}
    assert (rows[wa_ids[0]].status, rows[wa_ids[0]].error_code) == (S.failed, 131026)
    assert (rows[wa_ids[1]].status, rows[wa_ids[1]].error_code) == (S.failed, 131047)
    assert rows[wa_ids[1]].failed_at is not None
    states = {w: (rows[w].status, rows[w].error_code) for w in wa_ids[2:]}
    assert {rows[w].status for w in wa_ids[2:]} == {S.read}, (states, fake.status_log)
    assert all(rows[w].delivered_at and rows[w].read_at for w in wa_ids[2:])
    # Never backwards: a late duplicate "sent" leaves read recipients read.
    apply_webhooks(fake, tenant.id)
    again = recipients(db.session, campaign.id)
    assert {r.status for r in again if r.wa_id in wa_ids[2:]} == {S.read}


def test_a_claim_left_by_a_killed_worker_is_reconciled_by_webhook_or_timeout(
    tenant, fake, run_jobs, app, monkeypatch
):
    tag, wa_ids = add_contacts(db.session, tenant.id, "9184000", 3)
    campaign = launched(db.session, tenant.id, [tag])
    db.session.commit()
    claimed = sending.claim(db.session, campaign, 2)  # a worker claims two, then dies...
    db.session.commit()
    first = claimed[0]
    # ...after its first request reached Meta: the status webhook names the recipient.
    item = {
        "id": "wamid.KILLED1",
        "status": "delivered",
        "timestamp": "1767225600",
        "recipient_id": first.wa_id,
        "biz_opaque_callback_data": campaign_callback_data(campaign.id, first.id),
    }
    assert sending.apply_recipient_status(db.session, item, tenant.id)
    db.session.commit()
    monkeypatch.setitem(app.config, "CAMPAIGN_CLAIM_TIMEOUT_S", 0)
    sweep_campaigns()  # the other claim times out and goes back to pending
    run_jobs("whatsapp")

    rows = {r.id: r for r in recipients(db.session, campaign.id)}
    assert (rows[first.id].status, rows[first.id].wa_message_id) == (S.delivered, "wamid.KILLED1")
    assert fake.count(first.wa_id, campaign.id) == 0  # never re-sent
    assert all(fake.count(w, campaign.id) == 1 for w in wa_ids if w != first.wa_id)
    assert {r.status for r in rows.values()} == {S.sent, S.delivered}


def test_131049_retries_the_next_day_linked_to_the_first_message(tenant, fake, run_jobs, app):
    tag, wa_ids = add_contacts(db.session, tenant.id, "9185000", 2)
    fake.inject(Fault(131049, to=wa_ids[0], asynchronous=True))
    campaign = launched(db.session, tenant.id, [tag])
    start(campaign)
    run_jobs("whatsapp")
    apply_webhooks(fake, tenant.id)
    rec = next(r for r in recipients(db.session, campaign.id) if r.wa_id == wa_ids[0])
    first = fake.accepted[[a.to for a in fake.accepted].index(wa_ids[0])].wamid
    assert (rec.status, rec.retry_days, rec.previous_message_ids) == (S.pending, 1, [first])
    assert rec.wa_message_id is None and rec.next_attempt_at is not None
    db.session.refresh(campaign)
    assert campaign.status == CampaignStatus.sending  # the retry is still to come


def test_an_expired_token_pauses_the_campaign_instead_of_failing_everyone(tenant, fake, run_jobs):
    tag, wa_ids = add_contacts(db.session, tenant.id, "9186500", 50)
    fake.inject(Fault(None, rate=1.0, http_status=503, times=5))  # transient first
    fake.inject(Fault(190, times=1))  # then the token is refused once
    campaign = launched(db.session, tenant.id, [tag])
    start(campaign)
    run_jobs("whatsapp")
    db.session.refresh(campaign)
    assert campaign.status == CampaignStatus.paused
    rows = recipients(db.session, campaign.id)
    assert S.failed not in {r.status for r in rows}
    assert [r.error_code for r in rows if r.error_code == 190] == [190]
    # Fixed and resumed: the rest is sent, each recipient once.
    campaigns.set_status(db.session, campaign, CampaignStatus.sending)
    start(campaign)
    run_jobs("whatsapp")
    assert by_status(db.session, campaign.id) == {S.sent: 50}
    assert fake.duplicates() == {}


def test_cancelled_and_paused_campaigns_send_nothing(tenant, fake, run_jobs):
    tag, wa_ids = add_contacts(db.session, tenant.id, "9186000", 10)
    campaign = launched(db.session, tenant.id, [tag])
    campaigns.set_status(db.session, campaign, CampaignStatus.paused)
    start(campaign)
    run_jobs("whatsapp")
    assert by_status(db.session, campaign.id) == {S.pending: 10}
    campaigns.set_status(db.session, campaign, CampaignStatus.cancelled)
    start(campaign)
    run_jobs("whatsapp")
    assert by_status(db.session, campaign.id) == {S.cancelled: 10}
    assert fake.accepted == []


def test_a_scheduled_campaign_starts_once(tenant, fake, run_jobs):
    tag, wa_ids = add_contacts(db.session, tenant.id, "9187000", 5)
    now = sending.utcnow()
    due = new_campaign(
        db.session, tenant.id, [tag], status=CampaignStatus.scheduled, scheduled_at=now
    )
    later = new_campaign(
        db.session,
        tenant.id,
        [tag],
        status=CampaignStatus.scheduled,
        scheduled_at=now + timedelta(hours=1),
    )
    db.session.commit()
    assert sweep_campaigns()["started"] == 1
    assert sweep_campaigns()["started"] == 0  # a second sweep finds it sending already
    assert get_queue("whatsapp").count == 1  # coalesced: one send job
    run_jobs("whatsapp")
    assert all(fake.count(w, due.id) == 1 for w in wa_ids)
    db.session.refresh(later)
    assert later.status == CampaignStatus.scheduled
    launches = db.session.scalar(
        select(func.count()).where(
            AuditEvent.action == "campaign.launched", AuditEvent.object_id == str(due.id)
        )
    )
    assert launches == 1


def test_the_sweeper_resumes_a_campaign_whose_jobs_were_lost(tenant, fake, run_jobs):
    tag, wa_ids = add_contacts(db.session, tenant.id, "9188000", 30)
    campaign = launched(db.session, tenant.id, [tag])
    start(campaign)
    get_queue("whatsapp").connection.flushdb()  # Redis lost before any job ran
    assert sweep_campaigns()["enqueued"] == 1
    run_jobs("whatsapp")
    assert by_status(db.session, campaign.id) == {S.sent: 30}
    assert fake.duplicates() == {}


def test_a_reply_within_the_window_counts(tenant, fake, run_jobs):
    tag, _ = add_contacts(db.session, tenant.id, "9189000", 1)
    campaign = launched(db.session, tenant.id, [tag])
    start(campaign)
    run_jobs("whatsapp")
    rec = recipients(db.session, campaign.id)[0]
    late = rec.sent_at + timedelta(days=4)
    assert sending.mark_replied(db.session, rec.contact_id, late) == 0
    assert sending.mark_replied(db.session, rec.contact_id, rec.sent_at + timedelta(hours=2)) == 1
    assert recipients(db.session, campaign.id)[0].replied_at is not None


def test_the_redis_bucket_spaces_reservations_after_its_burst(app):
    """A burst of 10 due at once, then one slot every 10 ms. Booked in one call the
    waits are exact; booked one call at a time, each wait is shortened by the time that
    passed since the first call, whatever the machine's load (the due times, call time
    + wait, stay 10 ms apart within how long one call took)."""
    import time

    from app.jobs import redis_connection
    from app.services.rate_limit import TokenBucket

    redis = redis_connection()
    bucket = TokenBucket(redis, "woffice:wa-rate:test", rate=100, burst=10)
    redis.delete(bucket.key)
    waits = bucket.reserve_many(30)
    assert waits[:10] == [0.0] * 10  # the burst
    assert waits[10:] == pytest.approx([0.01 * i for i in range(1, 21)], abs=1e-6)

    redis.delete(bucket.key)
    calls = []  # (called at, wait, call took)
    for _ in range(30):
        before = time.monotonic()
        wait = bucket.reserve()
        calls.append((before, wait, time.monotonic() - before))
    slack = max(took for _at, _wait, took in calls) + 0.001
    assert [wait for _at, wait, _took in calls[:10]] == [0.0] * 10
    due = [at + wait for at, wait, _took in calls]
    for earlier, later in zip(due[10:], due[11:], strict=False):
        assert later - earlier == pytest.approx(0.01, abs=slack)
    assert due[29] - calls[0][0] == pytest.approx(0.20, abs=slack)
