"""Platform > Queues: counts, failed jobs without their arguments, audited requeue,
and Platform Admin only. Real Redis (the suite's db), a real SimpleWorker."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from app.extensions import db
from app.jobs import get_queue
from app.models.audit import AuditEvent
from tests.ops._jobs import fail_on_purpose

ADMIN = "admin@xigmapro.example"
PHONE = "+919812345678"  # the failed job's argument: personal data, never on the page


@pytest.fixture
def failed(app, run_jobs) -> list[str]:
    """Two jobs of the default queue that failed (no retry)."""
    queue = get_queue("default")
    ids = [queue.enqueue(fail_on_purpose, PHONE).id for _ in range(2)]
    run_jobs("default")
    assert queue.failed_job_registry.count == 2
    return ids


def _requeue_events() -> list[AuditEvent]:
    return list(
        db.session.scalars(select(AuditEvent).where(AuditEvent.action == "queue.job_requeued"))
    )


def test_the_dashboard_lists_counts_and_failed_jobs_without_arguments(client, login, failed):
    login(ADMIN)
    response = client.get("/queues/")
    page = response.get_data(as_text=True)
    assert response.status_code == 200
    assert 'id="queue-default"' in page and 'id="queue-whatsapp"' in page
    assert '<td class="text-right text-danger" data-state="failed">2</td>' in page
    for job_id in failed:
        assert f'id="failed-{job_id}"' in page
    assert "tests.ops._jobs.fail_on_purpose" in page
    assert "RuntimeError: the job failed on purpose" in page
    assert PHONE not in page


def test_one_failed_job_is_requeued_and_audited(client, login, csrf_token, failed):
    login(ADMIN)
    token = csrf_token("/queues/")
    response = client.post(f"/queues/default/requeue/{failed[0]}", data={"csrf_token": token})
    assert response.status_code == 302
    queue = get_queue("default")
    assert queue.job_ids == [failed[0]]
    assert queue.failed_job_registry.get_job_ids() == [failed[1]]
    [event] = _requeue_events()
    assert event.details == {"queue": "default", "job_id": failed[0]}
    assert event.actor_id is not None and event.tenant_id is None


def test_all_failed_jobs_of_a_queue_are_requeued(client, login, csrf_token, failed):
    login(ADMIN)
    token = csrf_token("/queues/")
    response = client.post("/queues/default/requeue-all", data={"csrf_token": token})
    assert response.status_code == 302
    queue = get_queue("default")
    assert sorted(queue.job_ids) == sorted(failed)
    assert queue.failed_job_registry.count == 0
    assert sorted(e.details["job_id"] for e in _requeue_events()) == sorted(failed)


def test_a_requeue_without_the_csrf_token_is_refused(client, login, failed):
    login(ADMIN)
    response = client.post(f"/queues/default/requeue/{failed[0]}")
    assert response.status_code == 400
    assert get_queue("default").failed_job_registry.count == 2
    assert _requeue_events() == []


def test_an_unknown_queue_is_not_found(client, login, csrf_token):
    login(ADMIN)
    token = csrf_token("/queues/")
    assert client.post("/queues/nope/requeue-all", data={"csrf_token": token}).status_code == 404


@pytest.mark.parametrize(
    "email",
    [
        "billing@xigmapro.example",
        "compliance@xigmapro.example",
        "owner@acme.example",
        "agent@acme.example",
    ],
)
def test_only_platform_admins_open_or_use_it(client, login, csrf_token, failed, email):
    login(email)
    assert client.get("/queues/").status_code == 403
    token = csrf_token("/account/")
    assert (
        client.post(f"/queues/default/requeue/{failed[0]}", data={"csrf_token": token}).status_code
        == 403
    )
    assert client.post("/queues/default/requeue-all", data={"csrf_token": token}).status_code == 403
    assert get_queue("default").failed_job_registry.count == 2
    assert 'href="/queues/"' not in client.get("/", follow_redirects=True).get_data(as_text=True)


def test_platform_admins_find_it_in_the_platform_menu(client, login):
    login(ADMIN)
    assert 'href="/queues/"' in client.get("/").get_data(as_text=True)


def test_anonymous_visitors_are_sent_to_login(client):
    response = client.get("/queues/")
    assert response.status_code == 302
    assert "/login" in response.headers["Location"]
