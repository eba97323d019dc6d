"""The template sync job: runs through RQ, audits its outcome, never crash-loops."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from app.extensions import db
from app.jobs import enqueue, enqueue_coalesced, get_queue
from app.jobs.templates import sync_coalesce_key, sync_tenant_templates
from app.models.audit import AuditEvent
from app.models.campaign import TemplateStatus
from app.services.templates import SYNC_DONE, SYNC_FAILED, last_sync
from tests.fakes.cloud_parts import FakeTemplate
from tests.services.test_templates_service import demo_cloud, templates_of, waba


@pytest.fixture
def fake(app, monkeypatch):
    """The fake Cloud API serving both demo WABAs."""
    with demo_cloud(app, monkeypatch) as server:
        yield server


def events(tenant, *actions: str) -> list[AuditEvent]:
    db.session.expire_all()
    return list(
        db.session.scalars(
            select(AuditEvent)
            .where(AuditEvent.tenant_id == tenant.id, AuditEvent.action.in_(actions))
            .order_by(AuditEvent.id)
        )
    )


def test_the_job_syncs_through_rq_and_records_the_counts(fake, run_jobs, tenant_a, user_by_email):
    fake.templates[waba(tenant_a)].append(FakeTemplate("new_one", body="Hi"))
    owner = user_by_email("owner@acme.example")
    job_id = enqueue("default", sync_tenant_templates, tenant_id=tenant_a.id, actor_id=owner.id)
    assert run_jobs("default") == 1
    assert get_queue("default").fetch_job(job_id).get_status() == "finished"
    assert templates_of(tenant_a)[("new_one", "en_US")].status == TemplateStatus.approved
    (done,) = events(tenant_a, SYNC_DONE)
    assert done.details["created"] == 1 and done.details["fetched"] == 6
    assert (done.actor_id, done.job_id) == (owner.id, job_id)
    finished = events(tenant_a, "job.finished")[-1]
    assert finished.details["outcome"] == "synced"
    outcome = last_sync(db.session, tenant_a.id)
    assert outcome.ok and "Synced 6 templates from WhatsApp: 1 new" in outcome.message


def test_a_refused_token_ends_as_a_recorded_failure_not_a_retry(fake, run_jobs, tenant_a):
    tenant_a.wa_access_token = "revoked-token-0123456789abcdef"
    db.session.commit()
    before = {k: t.status for k, t in templates_of(tenant_a).items()}
    job_id = enqueue("default", sync_tenant_templates, tenant_id=tenant_a.id)
    assert run_jobs("default") == 1
    job = get_queue("default").fetch_job(job_id)
    assert job.get_status() == "finished"  # nothing for RQ to retry
    (failed,) = events(tenant_a, SYNC_FAILED)
    assert failed.details["code"] == 190
    assert "access token is invalid or expired" in failed.details["message"]
    assert "revoked-token" not in str(failed.details)
    assert {k: t.status for k, t in templates_of(tenant_a).items()} == before
    outcome = last_sync(db.session, tenant_a.id)
    assert outcome.state == "failed" and "(error 190)" in outcome.message


def test_missing_settings_end_as_not_configured(fake, tenant_a):
    tenant_a.wa_business_account_id = None
    db.session.commit()
    result = sync_tenant_templates(tenant_id=tenant_a.id)
    assert result == {"outcome": "not_configured", "code": None}
    (failed,) = events(tenant_a, SYNC_FAILED)
    assert "WhatsApp is not set up" in failed.details["message"]


def test_a_transient_failure_retries_under_rq_then_is_recorded(
    fake, run_jobs, tenant_a, monkeypatch
):
    monkeypatch.setattr(fake, "_list_templates", lambda *a: (503, {"error": {"code": 2}}))
    job_id = enqueue("default", sync_tenant_templates, tenant_id=tenant_a.id)
    run_jobs("default")
    job = get_queue("default").fetch_job(job_id)
    assert job.get_status() == "scheduled" and job.retries_left == 2  # RQ backs off
    assert events(tenant_a, "job.failed")[-1].details["error"] == "WhatsAppError"
    assert events(tenant_a, SYNC_FAILED) == []
    # The last attempt (or an inline run, which has no RQ retries) records the outcome.
    result = sync_tenant_templates(tenant_id=tenant_a.id)
    assert result == {"outcome": "failed", "code": 2}
    (failed,) = events(tenant_a, SYNC_FAILED)
    assert "try again in a few minutes" in failed.details["message"]


def test_syncs_are_coalesced_per_tenant(fake, run_jobs, tenant_a, tenant_b):
    key = sync_coalesce_key(tenant_a.id)
    assert enqueue_coalesced("default", key, sync_tenant_templates, tenant_id=tenant_a.id)
    assert enqueue_coalesced("default", key, sync_tenant_templates, tenant_id=tenant_a.id) is None
    other = sync_coalesce_key(tenant_b.id)
    assert enqueue_coalesced("default", other, sync_tenant_templates, tenant_id=tenant_b.id)
    assert get_queue("default").count == 2
    run_jobs("default")
    # The job released the key as it started: the next click queues a new run.
    assert enqueue_coalesced("default", key, sync_tenant_templates, tenant_id=tenant_a.id)
    assert len(events(tenant_a, SYNC_DONE)) == 1 and len(events(tenant_b, SYNC_DONE)) == 1
