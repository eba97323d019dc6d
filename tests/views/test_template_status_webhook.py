"""Template status webhooks at the intake (reference 4): addressed to a WABA, not a number.

``message_template_status_update`` changes carry no ``metadata.phone_number_id``; their
entry id is the WhatsApp Business Account. Several tenants may share a WABA (each with
its own app secret): a delivery is stored once for every tenant whose secret signs it.
"""

from __future__ import annotations

import hashlib
import json

import pytest
from sqlalchemy import select

from app.extensions import db
from app.models.audit import AuditEvent
from app.models.campaign import MessageTemplate, TemplateStatus
from app.models.conversation import Message, WebhookInbox
from app.views.webhooks import clear_tenant_cache
from tests.views.test_whatsapp_webhook import (
    NUMBER_A,
    NUMBER_B,
    SECRET_A,
    SECRET_B,
    count,
    messages_with_id,
    post,
    rejections,
    sign,
    text_message,
)

WABA_A, WABA_B = "200000000000901", "200000000000902"


@pytest.fixture(autouse=True)
def _fresh_tenant_cache():
    clear_tenant_cache()
    yield
    clear_tenant_cache()


@pytest.fixture
def accounts(tenant_a, tenant_b):
    """Each demo tenant with its own number, WABA and app secret."""
    tenant_a.wa_phone_number_id, tenant_a.wa_app_secret = NUMBER_A, SECRET_A
    tenant_b.wa_phone_number_id, tenant_b.wa_app_secret = NUMBER_B, SECRET_B
    tenant_a.wa_business_account_id, tenant_b.wa_business_account_id = WABA_A, WABA_B
    db.session.commit()
    return tenant_a, tenant_b


@pytest.fixture
def shared(accounts):
    """Tenant B's number lives in tenant A's WABA (B keeps its own app secret)."""
    tenant_a, tenant_b = accounts
    tenant_b.wa_business_account_id = WABA_A
    db.session.commit()
    return tenant_a, tenant_b


def template_update(
    waba: str = WABA_A,
    event: str = "REJECTED",
    name: str = "welcome",
    language: str = "en_US",
    template_id: int | str = 1234567890,
    reason: str | None = "INCORRECT_CATEGORY",
) -> dict:
    """A ``message_template_status_update`` notification as Meta sends it."""
    value = {
        "event": event,
        "message_template_id": template_id,
        "message_template_name": name,
        "message_template_language": language,
        "reason": reason,
    }
    change = {"field": "message_template_status_update", "value": value}
    return {
        "object": "whatsapp_business_account",
        "entry": [{"id": waba, "time": 1767225600, "changes": [change]}],
    }


def inbox() -> list[WebhookInbox]:
    db.session.expire_all()
    return list(db.session.scalars(select(WebhookInbox).order_by(WebhookInbox.id)))


def template(tenant_id: int, name: str = "welcome") -> MessageTemplate:
    db.session.expire_all()
    return db.session.scalars(
        select(MessageTemplate)
        .where(MessageTemplate.tenant_id == tenant_id, MessageTemplate.name == name)
        .execution_options(skip_tenant_scope=True)
    ).one()


def status_events(tenant_id: int) -> list[AuditEvent]:
    return list(
        db.session.scalars(
            select(AuditEvent)
            .where(
                AuditEvent.action == "template.status_changed", AuditEvent.tenant_id == tenant_id
            )
            .order_by(AuditEvent.id)
            .execution_options(skip_tenant_scope=True)
        )
    )


def test_signed_template_update_is_stored_for_the_waba_and_applied(client, run_jobs, accounts):
    tenant_a, tenant_b = accounts
    payload = template_update()
    response = post(client, payload)  # signed with A's app secret
    assert response.status_code == 200, response.get_data(as_text=True)
    (row,) = inbox()
    assert row.tenant_id == tenant_a.id and row.processed_at is None
    assert template(tenant_a.id).status == TemplateStatus.approved  # the job applies it

    run_jobs("default")
    welcome = template(tenant_a.id)
    assert (welcome.status, welcome.rejected_reason) == (
        TemplateStatus.rejected,
        "INCORRECT_CATEGORY",
    )
    assert template(tenant_b.id).status == TemplateStatus.approved
    assert inbox()[0].processed_at is not None


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("wrong_secret", "bad_signature"),
        ("other_tenants_secret", "bad_signature"),
        ("tampered_body", "bad_signature"),
        ("missing_header", "missing_signature"),
        ("unknown_waba", "unknown_business_account"),
        ("two_wabas", "several_business_accounts"),
    ],
)
def test_refused_template_updates_are_audited_and_not_stored(
    client, run_jobs, accounts, case, reason
):
    tenant_a, _ = accounts
    payload = template_update()
    raw = json.dumps(payload).encode()
    if case == "wrong_secret":
        response = post(client, payload, secret="not-the-secret")
    elif case == "other_tenants_secret":
        response = post(client, payload, secret=SECRET_B)  # B is not in WABA A
    elif case == "tampered_body":
        response = post(client, raw.replace(b"REJECTED", b"APPROVED"), signature=sign(raw))
    elif case == "missing_header":
        response = post(client, payload, secret=None)
    elif case == "unknown_waba":
        response = post(client, template_update(waba="999999"))
    else:
        both = template_update()
        both["entry"] += template_update(waba=WABA_B)["entry"]
        response = post(client, both)
    assert response.status_code == 403
    assert count(WebhookInbox) == 0
    assert run_jobs("default") == 0
    assert template(tenant_a.id).status == TemplateStatus.approved
    events = rejections()
    assert len(events) == 1
    assert events[0].details["reason"] == reason and events[0].details["source"] == "whatsapp"


def test_a_shared_waba_goes_to_each_tenant_whose_secret_signs_it(client, run_jobs, shared):
    tenant_a, tenant_b = shared
    # Signed by B's app: stored for B only, applied to B's copy only.
    b_update = template_update(event="PAUSED", reason=None)
    assert post(client, b_update, secret=SECRET_B).status_code == 200
    assert [r.tenant_id for r in inbox()] == [tenant_b.id]
    run_jobs("default")
    assert template(tenant_b.id).status == TemplateStatus.paused
    assert template(tenant_a.id).status == TemplateStatus.approved

    # Both tenants on one app (one secret): one row per tenant, each applied once.
    tenant_b.wa_app_secret = SECRET_A
    db.session.commit()
    clear_tenant_cache()
    update = template_update(event="DISABLED", name="festive_offer", reason=None)
    assert post(client, update).status_code == 200
    rows = [r for r in inbox() if "festive_offer" in r.payload]
    assert sorted(r.tenant_id for r in rows) == sorted([tenant_a.id, tenant_b.id])
    assert len({r.content_hash for r in rows}) == 2
    run_jobs("default")
    for tenant in (tenant_a, tenant_b):
        assert template(tenant.id, "festive_offer").status == TemplateStatus.disabled
    assert len(status_events(tenant_a.id)) == 1  # festive_offer
    assert len(status_events(tenant_b.id)) == 2  # welcome, then festive_offer


def test_a_payload_with_a_number_and_a_template_update(client, run_jobs, shared):
    """The number's changes stay with the number's owner; the template update goes to
    every tenant of the WABA that signed it."""
    tenant_a, tenant_b = shared
    mixed = text_message("wamid.MIX1", "hello")  # NUMBER_A, tenant A's
    mixed["entry"][0]["id"] = WABA_A
    mixed["entry"][0]["changes"] += template_update(event="PAUSED")["entry"][0]["changes"]
    raw = json.dumps(mixed).encode()

    # Signed by A: A owns the number; stored once, under the plain content hash.
    assert post(client, mixed).status_code == 200
    (row,) = inbox()
    assert row.tenant_id == tenant_a.id
    assert row.content_hash == hashlib.sha256(raw).hexdigest()
    run_jobs("default")
    assert [m.tenant_id for m in messages_with_id("wamid.MIX1")] == [tenant_a.id]
    assert template(tenant_a.id).status == TemplateStatus.paused
    assert template(tenant_b.id).status == TemplateStatus.approved

    # The same payload signed by B's app: B gets the template update, never A's message.
    assert post(client, mixed, secret=SECRET_B).status_code == 200
    assert [r.tenant_id for r in inbox()] == [tenant_a.id, tenant_b.id]
    run_jobs("default")
    assert template(tenant_b.id).status == TemplateStatus.paused
    stored = db.session.scalars(
        select(Message)
        .where(Message.wa_message_id == "wamid.MIX1")
        .execution_options(skip_tenant_scope=True)
    ).all()
    assert [m.tenant_id for m in stored] == [tenant_a.id]


def test_a_redelivered_template_update_is_stored_and_applied_once(client, run_jobs, accounts):
    tenant_a, _ = accounts
    payload = template_update(event="PAUSED", reason=None)
    assert post(client, payload).get_data(as_text=True) == "ok"
    assert post(client, payload).get_data(as_text=True) == "duplicate"
    run_jobs("default")
    assert post(client, payload).get_data(as_text=True) == "duplicate"
    assert run_jobs("default") == 0
    assert count(WebhookInbox) == 1
    # Meta's retries are not always byte-identical: a second row, but no second change.
    payload["entry"][0]["time"] = 1767225700
    assert post(client, payload).get_data(as_text=True) == "ok"
    run_jobs("default")
    assert template(tenant_a.id).status == TemplateStatus.paused
    assert len(status_events(tenant_a.id)) == 1
