"""The webhook drain job: batches, coalescing, SKIP LOCKED claims, bad rows, the tenant cache."""

from __future__ import annotations

import hashlib
import json

import pytest
from sqlalchemy import create_engine, delete, func, insert, select

from app.extensions import db
from app.jobs import enqueue_coalesced, get_queue, release_coalesced
from app.jobs.webhooks import MAX_ATTEMPTS, drain_inbox, drain_key
from app.models.conversation import (
    Message,
    MessageDirection,
    MessageStatus,
    PendingStatus,
    WebhookInbox,
)
from app.models.mixins import utcnow
from app.services import inbound
from app.views.webhooks import clear_tenant_cache
from tests.views.test_whatsapp_webhook import (
    NUMBER_A,
    NUMBER_B,
    SECRET_A,
    SECRET_B,
    count,
    epoch,
    message,
    outbound,
    post,
    statuses,
    text_message,
)


@pytest.fixture(autouse=True)
def _fresh_tenant_cache():
    clear_tenant_cache()
    yield
    clear_tenant_cache()


@pytest.fixture
def numbers(tenant_a, tenant_b):
    tenant_a.wa_phone_number_id, tenant_a.wa_app_secret = NUMBER_A, SECRET_A
    tenant_b.wa_phone_number_id, tenant_b.wa_app_secret = NUMBER_B, SECRET_B
    db.session.commit()
    return tenant_a, tenant_b


def queued() -> int:
    return get_queue("default").count


def inbox_rows() -> list[WebhookInbox]:
    db.session.expire_all()
    return list(db.session.scalars(select(WebhookInbox).order_by(WebhookInbox.id)))


def test_a_burst_of_deliveries_is_one_job_that_applies_them_all(client, run_jobs, numbers):
    tenant_a, _ = numbers
    outbound(tenant_a.id, "wamid.B1")
    second = message("wamid.B1")
    db.session.add(
        Message(
            tenant_id=tenant_a.id,
            conversation_id=second.conversation_id,
            direction=MessageDirection.outbound,
            wa_message_id="wamid.B2",
            status=MessageStatus.accepted,
        )
    )
    db.session.commit()
    payloads = [
        statuses(("wamid.B1", "read", 1767225700), ("wamid.B2", "sent", 1767225600)),
        statuses(("wamid.B1", "sent", 1767225600), ("wamid.B1", "delivered", 1767225650)),
        statuses(("wamid.B2", "delivered", 1767225650), ("wamid.B9", "read", 1767225700)),
        text_message("wamid.B3", "hello"),
        statuses(("wamid.B3", "read", 1767225800)),  # for the message two rows above
    ]
    for payload in payloads:
        assert post(client, payload).status_code == 200
    assert queued() == 1  # coalesced: one drain serves the burst

    assert run_jobs("default") == 1
    assert [row.processed_at is not None for row in inbox_rows()] == [True] * 5
    first = message("wamid.B1")
    assert first.status == MessageStatus.read
    assert (first.sent_at, first.delivered_at, first.read_at) == (
        epoch(1767225600),
        epoch(1767225650),
        epoch(1767225700),
    )
    assert message("wamid.B2").status == MessageStatus.delivered
    assert message("wamid.B3").read_at == epoch(1767225800)
    pending = db.session.scalars(select(PendingStatus)).all()
    assert [(p.wa_message_id, p.status) for p in pending] == [("wamid.B9", MessageStatus.read)]

    # Redelivered later, in another batch: nothing moves backwards, nothing doubles.
    assert post(client, statuses(("wamid.B1", "delivered", 1767225650))).status_code == 200
    run_jobs("default")
    assert message("wamid.B1").status == MessageStatus.read
    assert count(PendingStatus) == 1


def test_a_full_batch_schedules_the_next_run(client, run_jobs, numbers, monkeypatch):
    tenant_a, _ = numbers
    outbound(tenant_a.id, "wamid.N1")
    for ts, status in ((1767225600, "sent"), (1767225650, "delivered"), (1767225700, "read")):
        assert post(client, statuses(("wamid.N1", status, ts))).status_code == 200
    assert queued() == 1
    counts = drain_inbox(tenant_id=tenant_a.id, batch_size=2)
    assert counts["rows"] == 2
    assert queued() == 2  # a full batch: the rest is left to a new run
    run_jobs("default")
    assert all(row.processed_at for row in inbox_rows())
    assert message("wamid.N1").status == MessageStatus.read
    assert drain_inbox(tenant_id=tenant_a.id)["rows"] == 0  # nothing processed twice


def test_a_failed_failed_status_keeps_the_error_of_the_first_failure(client, run_jobs, numbers):
    tenant_a, _ = numbers
    outbound(tenant_a.id, "wamid.E1")
    first = [{"code": 131047, "title": "Re-engagement message"}]
    item = statuses(("wamid.E1", "failed", 1767225700), errors=first)
    # A later failure with another error, redelivered together with the first one.
    later = statuses(("wamid.E1", "failed", 1767225800), errors=[{"code": 1, "title": "x"}])
    first_item = item["entry"][0]["changes"][0]["value"]["statuses"]
    later["entry"][0]["changes"][0]["value"]["statuses"] += first_item
    assert post(client, item).status_code == 200
    run_jobs("default")
    assert post(client, later).status_code == 200
    run_jobs("default")
    msg = message("wamid.E1")
    assert msg.status == MessageStatus.failed and msg.failed_at == epoch(1767225700)
    assert (msg.error_code, msg.error_title) == (131047, "Re-engagement message")


def test_a_row_that_fails_is_kept_with_its_error_and_others_go_on(
    client, run_jobs, numbers, monkeypatch
):
    tenant_a, _ = numbers
    real = inbound._inbound_message

    def fragile(session, msg, names):
        if msg["id"] == "wamid.BAD":
            raise RuntimeError("cannot store this one")
        return real(session, msg, names)

    monkeypatch.setattr(inbound, "_inbound_message", fragile)
    assert post(client, text_message("wamid.BAD", "boom")).status_code == 200
    assert post(client, text_message("wamid.OK", "fine", ts=1767225700)).status_code == 200
    run_jobs("default")
    bad, good = inbox_rows()
    assert good.processed_at is not None and message("wamid.OK").body == "fine"
    assert bad.processed_at is None and bad.attempts == 1 and bad.error == "RuntimeError"
    for _ in range(MAX_ATTEMPTS + 1):
        drain_inbox(tenant_id=tenant_a.id)
    assert inbox_rows()[0].attempts == MAX_ATTEMPTS  # then left alone, error kept


@pytest.fixture(scope="module")
def real_engine(app):
    """An engine outside the test's transaction; what it commits is deleted at the end
    of the module, after each test's own transaction (and its row locks) is gone."""
    engine = create_engine(app.config["SQLALCHEMY_DATABASE_URI"])
    created: list[int] = []
    yield engine, created
    with engine.begin() as conn:
        conn.execute(delete(WebhookInbox).where(WebhookInbox.id.in_(created)))
    engine.dispose()


@pytest.fixture
def committed_inbox(real_engine, numbers):
    """Three statuses-only inbox rows committed for real (other connections see them)."""
    tenant_a, _ = numbers
    engine, created = real_engine
    ids = []
    with engine.begin() as conn:
        for n in range(3):
            raw = json.dumps(statuses((f"wamid.L{n}", "read", 1767225700)))
            ids.append(
                conn.execute(
                    insert(WebhookInbox)
                    .values(
                        source="whatsapp",
                        content_hash=hashlib.sha256(f"{raw}{n}-drain-test".encode()).hexdigest(),
                        tenant_id=tenant_a.id,
                        payload=raw,
                        received_at=utcnow(),
                        attempts=0,
                    )
                    .returning(WebhookInbox.id)
                ).scalar_one()
            )
    created += ids
    return tenant_a, engine, ids


def test_concurrent_drains_never_take_the_same_row(committed_inbox):
    tenant_a, engine, ids = committed_inbox
    with engine.connect() as other:
        with other.begin():
            # Another drain is in the middle of its batch: it holds the first row.
            claimed = other.execute(
                select(WebhookInbox.id)
                .where(WebhookInbox.id == ids[0])
                .with_for_update(skip_locked=True)
            ).scalar_one()
            counts = drain_inbox(tenant_id=tenant_a.id)
            assert counts["rows"] == 2 and counts["pending"] == 2
            taken = set(
                db.session.scalars(
                    select(WebhookInbox.id).where(
                        WebhookInbox.id.in_(ids), WebhookInbox.processed_at.is_not(None)
                    )
                )
            )
            assert claimed not in taken and taken == set(ids[1:])
    assert drain_inbox(tenant_id=tenant_a.id)["rows"] == 1  # the released row, once


def test_coalesced_enqueue_queues_one_job_until_it_starts(app):
    key = drain_key(12345)
    assert enqueue_coalesced("default", key, drain_inbox, tenant_id=12345) is not None
    assert enqueue_coalesced("default", key, drain_inbox, tenant_id=12345) is None
    assert queued() == 1
    release_coalesced(key)  # what the job does first
    assert enqueue_coalesced("default", key, drain_inbox, tenant_id=12345) is not None
    assert queued() == 2


def test_the_cached_secret_is_refreshed_after_its_time(client, numbers, app, monkeypatch):
    tenant_a, _ = numbers
    assert post(client, statuses(("wamid.C1", "sent", 1767225600))).status_code == 200
    tenant_a.wa_app_secret = "rotated-secret"
    db.session.commit()
    # Within the cache time the old secret still opens the number (documented) ...
    assert post(client, statuses(("wamid.C2", "sent", 1767225600))).status_code == 200
    # ... and once it has passed only the new one does.
    monkeypatch.setitem(app.config, "WHATSAPP_TENANT_CACHE_SECONDS", 0)
    assert post(client, statuses(("wamid.C3", "sent", 1767225600))).status_code == 403
    ok = post(client, statuses(("wamid.C4", "sent", 1767225600)), secret="rotated-secret")
    assert ok.status_code == 200
    assert SECRET_A != "rotated-secret"
    stored = select(func.count()).where(WebhookInbox.payload.contains('"wamid.C'))
    assert db.session.scalar(stored) == 3  # C1, C2 and C4; the refused C3 stored nothing


def test_a_stored_payload_of_the_wrong_shape_fails_alone(client, numbers):
    tenant_a, _ = numbers
    outbound(tenant_a.id, "wamid.W1")
    odd = {"entry": [{"changes": [{"value": {"statuses": []}}, 5]}]}  # 5 is no change object
    db.session.add(
        WebhookInbox(
            source="whatsapp",
            content_hash="0" * 64,
            tenant_id=tenant_a.id,
            payload=json.dumps(odd),
            attempts=0,
        )
    )
    db.session.commit()
    assert post(client, statuses(("wamid.W1", "read", 1767225700))).status_code == 200
    counts = drain_inbox(tenant_id=tenant_a.id)
    assert counts["failed"] == 1 and counts["statuses"] == 1
    odd_row, good = [r for r in inbox_rows() if "wamid.L" not in r.payload]  # not committed ones
    assert odd_row.processed_at is None and odd_row.error == "AttributeError"
    assert good.processed_at is not None
    assert message("wamid.W1").status == MessageStatus.read


def test_without_redis_the_delivery_is_applied_in_the_request(client, numbers, app, monkeypatch):
    """`make run`'s mode: no Redis, the drain runs inline after the commit."""
    tenant_a, _ = numbers
    outbound(tenant_a.id, "wamid.I1")
    monkeypatch.setitem(app.extensions["woffice_jobs"], "redis", None)
    assert post(client, statuses(("wamid.I1", "delivered", 1767225650))).status_code == 200
    db.session.expire_all()
    assert message("wamid.I1").status == MessageStatus.delivered
    assert all(row.processed_at for row in inbox_rows() if "wamid.I1" in row.payload)
