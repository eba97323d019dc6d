"""WhatsApp webhooks (reference 4, 6): handshake, signatures, inbox, processing."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select

from app.extensions import db
from app.models.audit import AuditEvent
from app.models.contact import ConsentEvent, ConsentState, Contact
from app.models.conversation import (
    Conversation,
    Message,
    MessageDirection,
    MessageStatus,
    PendingStatus,
    WebhookInbox,
)
from app.services.inbound import apply_pending_statuses
from app.tenancy import tenant_scope
from app.views.webhooks import clear_tenant_cache

URL = "/webhooks/whatsapp"
NUMBER_A, NUMBER_B = "555000111", "555000222"
SECRET_A, SECRET_B = "app-secret-acme", "app-secret-bharat"
XSS = "<img src=x onerror=alert(1)>"


@pytest.fixture(autouse=True)
def _fresh_tenant_cache():
    """Each test sets its own numbers and secrets: forget what the view cached."""
    clear_tenant_cache()
    yield
    clear_tenant_cache()


@pytest.fixture
def numbers(tenant_a, tenant_b):
    tenant_a.wa_phone_number_id, tenant_a.wa_app_secret = NUMBER_A, SECRET_A
    tenant_b.wa_phone_number_id, tenant_b.wa_app_secret = NUMBER_B, SECRET_B
    db.session.commit()
    return tenant_a, tenant_b


def with_number(payload: dict, number: str) -> dict:
    """``payload`` addressed to another business number."""
    payload = json.loads(json.dumps(payload))
    for entry in payload["entry"]:
        for change in entry["changes"]:
            change["value"]["metadata"]["phone_number_id"] = number
    return payload


def sign(raw: bytes, secret: str = SECRET_A) -> str:
    return "sha256=" + hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest()


def envelope(value: dict, number: str = NUMBER_A, field: str = "messages") -> dict:
    value = {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550001111", "phone_number_id": number},
        **value,
    }
    return {
        "object": "whatsapp_business_account",
        "entry": [{"id": "WABA", "changes": [{"field": field, "value": value}]}],
    }


def text_message(
    wamid: str, body: str, wa_id: str = "447700900123", name: str = "Ana", ts: int = 1767225600
) -> dict:
    return envelope(
        {
            "contacts": [{"profile": {"name": name}, "wa_id": wa_id}],
            "messages": [
                {
                    "from": wa_id,
                    "id": wamid,
                    "timestamp": str(ts),
                    "type": "text",
                    "text": {"body": body},
                }
            ],
        }
    )


def statuses(*items: tuple[str, str, int], errors: list | None = None) -> dict:
    out = []
    for wamid, status, ts in items:
        item = {"id": wamid, "status": status, "timestamp": str(ts), "recipient_id": "9198"}
        if errors and status == "failed":
            item["errors"] = errors
        out.append(item)
    return envelope({"statuses": out})


def post(client, payload: dict | bytes, secret: str | None = SECRET_A, signature=None):
    raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    headers = {}
    if signature is not None:
        headers["X-Hub-Signature-256"] = signature
    elif secret is not None:
        headers["X-Hub-Signature-256"] = sign(raw, secret)
    return client.post(URL, data=raw, headers=headers, content_type="application/json")


def deliver(client, run_jobs, payload: dict, secret: str = SECRET_A) -> None:
    response = post(client, payload, secret)
    assert response.status_code == 200, response.get_data(as_text=True)
    run_jobs("default")


def count(model, tenant_id: int | None = None) -> int:
    stmt = select(func.count()).select_from(model)
    if tenant_id is not None:
        stmt = stmt.where(model.tenant_id == tenant_id)
    return db.session.scalar(stmt.execution_options(skip_tenant_scope=True))


def message(wamid: str) -> Message:
    return db.session.scalars(select(Message).where(Message.wa_message_id == wamid)).one()


def messages_with_id(wamid: str) -> list[Message]:
    return list(db.session.scalars(select(Message).where(Message.wa_message_id == wamid)))


def contact(wa_id: str) -> Contact:
    return db.session.scalars(select(Contact).where(Contact.wa_id == wa_id)).one()


def epoch(ts: int) -> datetime:
    return datetime.fromtimestamp(ts, UTC).replace(tzinfo=None)


def rejections() -> list[AuditEvent]:
    return list(
        db.session.scalars(
            select(AuditEvent)
            .where(AuditEvent.action == "webhook.rejected")
            .order_by(AuditEvent.id)
        )
    )


# --------------------------------------------------------------------- handshake


def test_handshake_echoes_the_challenge(client):
    response = client.get(
        URL,
        query_string={
            "hub.mode": "subscribe",
            "hub.verify_token": "woffice-demo-verify",
            "hub.challenge": "1158201444",
        },
    )
    assert response.status_code == 200
    assert response.get_data(as_text=True) == "1158201444"
    assert response.mimetype == "text/plain"


@pytest.mark.parametrize(
    "args",
    [
        {"hub.mode": "subscribe", "hub.verify_token": "wrong", "hub.challenge": "1"},
        {
            "hub.mode": "unsubscribe",
            "hub.verify_token": "woffice-demo-verify",
            "hub.challenge": "1",
        },
        {"hub.challenge": "1"},
    ],
)
def test_handshake_refused(client, args):
    response = client.get(URL, query_string=args)
    assert response.status_code == 403
    assert "1" not in response.get_data(as_text=True)


# ---------------------------------------------------------------- verification


def test_signed_message_is_stored_and_processed(client, run_jobs, numbers):
    tenant_a, _ = numbers
    payload = text_message("wamid.A1", "Hello there", name="Ana Lima")
    response = post(client, payload)
    assert response.status_code == 200
    inbox = db.session.scalars(select(WebhookInbox)).all()
    assert len(inbox) == 1
    row = inbox[0]
    raw = json.dumps(payload).encode()
    assert row.source == "whatsapp" and row.tenant_id == tenant_a.id
    assert row.content_hash == hashlib.sha256(raw).hexdigest()
    assert row.processed_at is None
    assert messages_with_id("wamid.A1") == []  # processed by the job, not the request

    assert run_jobs("default") >= 1
    db.session.expire_all()
    assert db.session.get(WebhookInbox, row.id).processed_at is not None
    person = contact("447700900123")
    assert person.tenant_id == tenant_a.id
    assert person.phone == "+447700900123" and person.profile_name == "Ana Lima"
    assert person.last_inbound_at == epoch(1767225600)
    msg = message("wamid.A1")
    assert msg.tenant_id == tenant_a.id
    assert msg.direction == MessageDirection.inbound and msg.status == MessageStatus.received
    assert msg.body == "Hello there" and msg.type == "text"
    conv = msg.conversation
    assert conv.contact_id == person.id and conv.status.value == "open"
    assert conv.last_message_at == epoch(1767225600)

    # A second message from the same person joins the open conversation.
    deliver(client, run_jobs, text_message("wamid.A2", "Still there?", ts=1767225700))
    assert message("wamid.A2").conversation_id == conv.id
    assert contact("447700900123").last_inbound_at == epoch(1767225700)


@pytest.mark.parametrize(
    "case",
    [
        "tampered_body",
        "wrong_secret",
        "missing_header",
        "unknown_number",
        "malformed",
        "two_tenants",
    ],
)
def test_refused_deliveries_are_audited_and_not_stored(client, run_jobs, numbers, case):
    payload = text_message("wamid.R1", "hi")
    raw = json.dumps(payload).encode()
    if case == "tampered_body":
        response = post(client, raw.replace(b"hi", b"ho"), signature=sign(raw))
    elif case == "wrong_secret":
        response = post(client, payload, secret="not-the-secret")
    elif case == "missing_header":
        response = post(client, payload, secret=None)
    elif case == "unknown_number":
        response = post(client, with_number(payload, "999999"))
    elif case == "malformed":
        response = post(client, b"{not json", signature=sign(b"{not json"))
    else:
        both = text_message("wamid.R1", "hi")
        both["entry"] += with_number(text_message("wamid.R2", "hi"), NUMBER_B)["entry"]
        response = post(client, both)
    assert response.status_code == 403
    assert count(WebhookInbox) == 0
    assert run_jobs("default") == 0
    assert (
        db.session.scalars(select(Message).where(Message.wa_message_id == "wamid.R1")).all() == []
    )
    events = rejections()
    assert len(events) == 1
    assert events[0].details["source"] == "whatsapp" and events[0].details["reason"]


def test_the_other_tenants_secret_does_not_open_a_tenants_number(client, numbers):
    assert post(client, text_message("wamid.X", "hi"), secret=SECRET_B).status_code == 403
    assert rejections()[-1].details["reason"] == "bad_signature"


def test_duplicate_delivery_is_acknowledged_once(client, run_jobs, numbers):
    payload = text_message("wamid.D1", "once")
    assert post(client, payload).status_code == 200
    assert post(client, payload).status_code == 200
    assert count(WebhookInbox) == 1
    run_jobs("default")
    assert post(client, payload).status_code == 200  # after processing too
    run_jobs("default")
    assert count(WebhookInbox) == 1
    assert len(messages_with_id("wamid.D1")) == 1


def test_same_message_in_a_different_payload_is_stored_once(client, run_jobs, numbers):
    deliver(client, run_jobs, text_message("wamid.D2", "again"))
    # Meta retries are not always byte-identical: dedupe by message id too.
    deliver(client, run_jobs, text_message("wamid.D2", "again", name="Ana B."))
    assert len(messages_with_id("wamid.D2")) == 1


# -------------------------------------------------------------------- statuses


def outbound(tenant_id: int, wamid: str) -> Message:
    with tenant_scope(tenant_id):
        person = Contact(wa_id="919800011122", phone="+919800011122")
        conv = Conversation(contact=person)
        msg = Message(
            conversation=conv,
            direction=MessageDirection.outbound,
            body="Your order shipped",
            wa_message_id=wamid,
            status=MessageStatus.accepted,
        )
        db.session.add(msg)
        db.session.commit()
    return msg


def test_statuses_out_of_order_end_at_read_with_every_timestamp(client, run_jobs, numbers):
    tenant_a, _ = numbers
    outbound(tenant_a.id, "wamid.S1")
    deliver(client, run_jobs, statuses(("wamid.S1", "read", 1767225700)))
    deliver(client, run_jobs, statuses(("wamid.S1", "delivered", 1767225650)))
    deliver(client, run_jobs, statuses(("wamid.S1", "sent", 1767225600)))
    deliver(
        client,
        run_jobs,
        statuses(("wamid.S1", "delivered", 1767225650), ("wamid.S1", "read", 1767225700)),
    )
    msg = message("wamid.S1")
    assert msg.status == MessageStatus.read
    assert msg.read_at == epoch(1767225700)
    assert msg.delivered_at == epoch(1767225650)
    assert msg.sent_at == epoch(1767225600)


def test_failed_is_recorded_but_never_undoes_delivered(client, run_jobs, numbers):
    tenant_a, _ = numbers
    outbound(tenant_a.id, "wamid.F1")
    error = [{"code": 131047, "title": "Re-engagement message"}]
    deliver(client, run_jobs, statuses(("wamid.F1", "failed", 1767225700), errors=error))
    msg = message("wamid.F1")
    assert msg.status == MessageStatus.failed
    assert (msg.error_code, msg.error_title) == (131047, "Re-engagement message")
    assert msg.failed_at == epoch(1767225700)
    deliver(client, run_jobs, statuses(("wamid.F1", "delivered", 1767225800)))
    assert message("wamid.F1").status == MessageStatus.delivered
    deliver(client, run_jobs, statuses(("wamid.F1", "sent", 1767225600)))
    assert message("wamid.F1").status == MessageStatus.delivered


def test_status_before_its_message_is_applied_when_the_message_appears(client, run_jobs, numbers):
    tenant_a, _ = numbers
    deliver(client, run_jobs, statuses(("wamid.P1", "delivered", 1767225650)))
    deliver(
        client,
        run_jobs,
        statuses(("wamid.P1", "delivered", 1767225650), ("wamid.P1", "read", 1767225700)),
    )
    pending = db.session.scalars(select(PendingStatus)).all()
    assert sorted(p.status.value for p in pending) == ["delivered", "read"]
    assert {p.tenant_id for p in pending} == {tenant_a.id}

    # The sending pipeline stores the message, then applies what was waiting.
    msg = outbound(tenant_a.id, "wamid.P1")
    with tenant_scope(tenant_a.id):
        assert apply_pending_statuses(db.session, msg) == 2
        db.session.commit()
    msg = message("wamid.P1")
    assert msg.status == MessageStatus.read
    assert msg.delivered_at == epoch(1767225650) and msg.read_at == epoch(1767225700)
    assert count(PendingStatus) == 0


def test_status_before_an_inbound_message_is_applied_by_processing(client, run_jobs, numbers):
    deliver(client, run_jobs, statuses(("wamid.P2", "read", 1767225700)))
    assert count(PendingStatus) == 1
    deliver(client, run_jobs, text_message("wamid.P2", "hello"))
    assert message("wamid.P2").read_at == epoch(1767225700)
    assert count(PendingStatus) == 0


# ---------------------------------------------------------------------- consent


def consent_events(person: Contact) -> list[tuple[str, str]]:
    rows = db.session.scalars(
        select(ConsentEvent).where(ConsentEvent.contact_id == person.id).order_by(ConsentEvent.id)
    )
    return [(e.action.value, e.source.value) for e in rows]


@pytest.mark.parametrize("word", ["STOP", "  stop ", "Unsubscribe"])
def test_stop_keyword_opts_out_and_start_resumes(client, run_jobs, numbers, word):
    deliver(client, run_jobs, text_message("wamid.K1", word))
    person = contact("447700900123")
    assert person.consent_state == ConsentState.opted_out
    assert consent_events(person) == [("opt_out", "stop_keyword")]
    deliver(client, run_jobs, text_message("wamid.K2", "start", ts=1767225900))
    person = contact("447700900123")
    assert person.consent_state == ConsentState.opted_in
    assert consent_events(person) == [("opt_out", "stop_keyword"), ("resume", "stop_keyword")]


def test_a_sentence_containing_stop_is_not_an_opt_out(client, run_jobs, numbers):
    deliver(client, run_jobs, text_message("wamid.K3", "please don't stop the offers"))
    person = contact("447700900123")
    assert person.consent_state == ConsentState.unknown and consent_events(person) == []


def preference(value: str, wa_id: str = "447700900123") -> dict:
    return envelope(
        {
            "contacts": [{"profile": {"name": "Ana"}, "wa_id": wa_id}],
            "user_preferences": [
                {
                    "wa_id": wa_id,
                    "detail": "User requested to stop marketing messages",
                    "category": "marketing_messages",
                    "value": value,
                    "timestamp": "1767225600",
                }
            ],
        },
        field="user_preferences",
    )


def test_user_preferences_stop_and_resume(client, run_jobs, numbers):
    deliver(client, run_jobs, preference("stop"))
    person = contact("447700900123")
    assert person.consent_state == ConsentState.opted_out
    assert consent_events(person) == [("opt_out", "user_preferences")]
    deliver(client, run_jobs, preference("resume"))
    assert contact("447700900123").consent_state == ConsentState.opted_in
    assert consent_events(person)[-1] == ("resume", "user_preferences")


# -------------------------------------------------------------- BSUID and XSS


def test_business_scoped_user_without_a_phone_number(client, run_jobs, numbers):
    payload = envelope(
        {
            "contacts": [{"profile": {"name": "Username user"}, "user_id": "US.1234567890"}],
            "messages": [
                {
                    "user_id": "US.1234567890",
                    "id": "wamid.B1",
                    "timestamp": "1767225600",
                    "type": "text",
                    "text": {"body": "hi from a username"},
                }
            ],
        }
    )
    deliver(client, run_jobs, payload)
    person = contact("US.1234567890")
    assert person.phone is None and person.profile_name == "Username user"
    assert message("wamid.B1").conversation.contact_id == person.id


def test_untrusted_text_is_stored_verbatim_and_shown_escaped(client, login, run_jobs, numbers):
    deliver(client, run_jobs, text_message("wamid.X1", XSS, name=XSS))
    msg = message("wamid.X1")
    assert msg.body == XSS and msg.conversation.contact.profile_name == XSS
    assert login("owner@acme.example").status_code == 302
    page = client.get(f"/conversations/show/{msg.conversation_id}")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert XSS not in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html
    listing = client.get("/conversations/list/").get_data(as_text=True)
    assert XSS not in listing
    # Filtered on the body: the demo history fills the first pages.
    messages = client.get("/messages/list/?_flt_2_body=onerror").get_data(as_text=True)
    assert XSS not in messages and "&lt;img src=x onerror=alert(1)&gt;" in messages


def test_each_tenant_gets_only_its_own_deliveries(client, run_jobs, numbers):
    tenant_a, tenant_b = numbers
    deliver(client, run_jobs, text_message("wamid.T1", "to acme"))
    deliver(
        client, run_jobs, with_number(text_message("wamid.T2", "to bharat"), NUMBER_B), SECRET_B
    )
    assert message("wamid.T1").tenant_id == tenant_a.id
    assert message("wamid.T2").tenant_id == tenant_b.id
    # Same person writing to both businesses: one contact per tenant.
    assert count(Contact, tenant_a.id) >= 1 and count(Contact, tenant_b.id) >= 1
    assert (
        message("wamid.T1").conversation.contact_id != message("wamid.T2").conversation.contact_id
    )
