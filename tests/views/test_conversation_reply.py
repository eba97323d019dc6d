"""Replying from a conversation (reference 1, 6; P9, P14) against the fake Cloud API.

Demo data: tenant Acme's agent has the conversation with Neha Kulkarni; Arjun Nair's is
unassigned and Fatima Sheikh's belongs to the tenant admin.
"""

from __future__ import annotations

import json
import re
from datetime import timedelta

import pytest
from sqlalchemy import select

from app.extensions import db
from app.models.audit import AuditEvent
from app.models.campaign import MessageTemplate
from app.models.contact import ConsentAction, ConsentSource
from app.models.conversation import Conversation, Message, MessageDirection, MessageStatus
from app.models.mixins import utcnow
from app.services import inbound, whatsapp
from app.services.consent import record_consent
from app.tenancy import tenant_scope
from tests.fakes.cloud_parts import FakeNumber, Fault
from tests.fakes.whatsapp_cloud import FakeCloudAPI
from tests.jobs.campaign_world import SECRET, TOKEN, wire_tenant
from tests.views.test_agent_scoping import AGENT, OWNER, conversations

NUMBER = "100000000000701"
TEXT = "Your order leaves today <b>by noon</b>."


@pytest.fixture
def fake(app, monkeypatch):
    server = FakeCloudAPI([FakeNumber(NUMBER, SECRET, TOKEN, mps=None)], seed=7).start()
    monkeypatch.setitem(app.config, "WHATSAPP_API_BASE", server.base_url)
    try:
        yield server
    finally:
        server.stop()
        whatsapp.close_http_clients()


@pytest.fixture
def acme(tenant_a, fake) -> dict[str, Conversation]:
    """Acme wired to the fake; every demo contact last wrote an hour ago."""
    wire_tenant(tenant_a, NUMBER, 1000)
    convs = conversations(tenant_a.id)
    for conv in convs.values():
        conv.contact.last_inbound_at = utcnow() - timedelta(hours=1)
        fake.open_window(NUMBER, conv.contact.wa_id)
    db.session.commit()
    return convs


def close_window(conv: Conversation) -> None:
    conv.contact.last_inbound_at = utcnow() - timedelta(hours=25)
    db.session.commit()


def csrf(client, conv: Conversation, query: str = "") -> str:
    """The session's CSRF token, from the show page's reply form (else the edit form:
    the token is the session's, whichever form shows it)."""
    for url in (f"/conversations/show/{conv.id}{query}", f"/conversations/edit/{conv.id}"):
        html = client.get(url).get_data(as_text=True)
        match = re.search(r'name="csrf_token"[^>]*?value="([^"]+)"', html)
        if match:
            return match.group(1)
    raise AssertionError("no form with a CSRF token")


def reply(client, conv: Conversation, token: str | None = None, **form: str):
    data = {"csrf_token": token if token is not None else csrf(client, conv), **form}
    return client.post(f"/conversations/{conv.id}/reply", data=data, follow_redirects=True)


def outbound(conv: Conversation) -> list[Message]:
    db.session.expire_all()
    return list(
        db.session.scalars(
            select(Message)
            .where(
                Message.conversation_id == conv.id,
                Message.direction == MessageDirection.outbound,
            )
            .order_by(Message.id)
            .execution_options(skip_tenant_scope=True)
        )
    )


def sent_now(conv: Conversation, since_id: int) -> list[Message]:
    return [m for m in outbound(conv) if m.id > since_id]


def last_message_id() -> int:
    stmt = select(Message.id).order_by(Message.id.desc()).limit(1)
    return db.session.scalar(stmt.execution_options(skip_tenant_scope=True)) or 0


def audit_events(action: str) -> list[AuditEvent]:
    return list(
        db.session.scalars(
            select(AuditEvent)
            .where(AuditEvent.action == action)
            .order_by(AuditEvent.id)
            .execution_options(skip_tenant_scope=True)
        )
    )


def template_id(tenant_id: int, name: str) -> int:
    return db.session.scalars(
        select(MessageTemplate.id).where(
            MessageTemplate.tenant_id == tenant_id, MessageTemplate.name == name
        )
    ).one()


def test_in_window_text_is_sent_once_and_followed_by_status_webhooks(client, login, acme, fake):
    conv = acme["Neha Kulkarni"]
    wa_id = conv.contact.wa_id
    login(AGENT)
    page = client.get(f"/conversations/show/{conv.id}").get_data(as_text=True)
    assert 'id="reply-text-form"' in page and 'id="reply-template-form"' not in page
    before = last_message_id()

    response = reply(client, conv, kind="text", text=TEXT)
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert "Message sent to WhatsApp." in html
    assert "&lt;b&gt;by noon&lt;/b&gt;" in html and "<b>by noon</b>" not in html  # escaped

    assert fake.count(wa_id) == 1 and len(fake.accepted) == 1
    sent = fake.accepted[0]
    assert sent.type == "text" and sent.request["text"]["body"] == TEXT
    (msg,) = sent_now(conv, before)
    assert (msg.type, msg.body, msg.status) == ("text", TEXT, MessageStatus.accepted)
    assert msg.wa_message_id == sent.wamid and msg.tenant_id == conv.tenant_id

    # The status webhooks of that wamid move the message along.
    with tenant_scope(conv.tenant_id):
        inbound.apply_statuses(db.session, conv.tenant_id, [dict(s) for s in fake.status_log])
    db.session.commit()
    (msg,) = sent_now(conv, before)
    assert msg.status == MessageStatus.read and msg.delivered_at is not None

    (event,) = audit_events("conversation.reply_sent")
    assert event.object_id == str(conv.id) and event.details["kind"] == "text"
    assert event.details["message_id"] == msg.id
    assert "noon" not in json.dumps(event.details)  # the text is personal data


def test_text_outside_the_window_is_refused_without_a_call(client, login, acme, fake):
    conv = acme["Neha Kulkarni"]
    close_window(conv)
    login(AGENT)
    page = client.get(f"/conversations/show/{conv.id}").get_data(as_text=True)
    assert 'id="reply-text-form"' not in page and 'id="reply-template-choice"' in page
    before = last_message_id()

    # A hand-made POST (the page offers no text form): refused by the server.
    response = reply(client, conv, kind="text", text="hi")
    assert response.status_code == 200
    assert "24-hour window for free-form replies is closed" in response.get_data(as_text=True)
    assert fake.attempts == [] and fake.accepted == []
    assert sent_now(conv, before) == []
    (event,) = audit_events("conversation.reply_refused")
    assert event.details["reason"] == "window_closed"


def test_template_outside_the_window_is_sent(client, login, acme, fake, tenant_a):
    conv = acme["Neha Kulkarni"]
    close_window(conv)
    shipped = template_id(tenant_a.id, "order_shipped")
    login(AGENT)
    page = client.get(f"/conversations/show/{conv.id}?template={shipped}").get_data(as_text=True)
    assert 'name="var-body.1"' in page and 'name="var-body.2"' in page
    before = last_message_id()

    token = csrf(client, conv, f"?template={shipped}")
    values = {"var-body.1": "Neha", "var-body.2": "#42"}
    response = reply(client, conv, token, kind="template", template_id=str(shipped), **values)
    assert "Message sent to WhatsApp." in response.get_data(as_text=True)
    (sent,) = fake.accepted
    assert sent.type == "template" and sent.template == "order_shipped"
    params = sent.request["template"]["components"][0]["parameters"]
    assert [p["text"] for p in params] == ["Neha", "#42"]
    (msg,) = sent_now(conv, before)
    assert (msg.type, msg.body, msg.wa_message_id) == (
        "template",
        "Hi Neha, order #42 shipped.",
        sent.wamid,
    )

    # A missing value is refused before any call.
    response = reply(
        client, conv, token, kind="template", template_id=str(shipped), **{"var-body.1": "N"}
    )
    assert "Fill in {{2}} in the body." in response.get_data(as_text=True)
    assert len(fake.accepted) == 1


def test_marketing_needs_consent_but_service_replies_do_not(client, login, acme, fake, tenant_a):
    conv = acme["Neha Kulkarni"]
    with tenant_scope(tenant_a.id):
        record_consent(db.session, conv.contact, ConsentAction.opt_out, ConsentSource.stop_keyword)
    db.session.commit()
    login(AGENT)
    # In the window, an opted-out contact still gets a service reply.
    assert "Message sent to WhatsApp." in reply(client, conv, kind="text", text="Noted.").get_data(
        as_text=True
    )
    assert len(fake.accepted) == 1

    close_window(conv)
    welcome = template_id(tenant_a.id, "welcome")  # MARKETING
    token = csrf(client, conv, f"?template={welcome}")
    response = reply(
        client, conv, token, kind="template", template_id=str(welcome), **{"var-body.1": "Neha"}
    )
    assert "opted out of marketing messages" in response.get_data(as_text=True)
    assert len(fake.accepted) == 1  # no second call
    assert audit_events("conversation.reply_refused")[-1].details["reason"] == "opted_out"


def test_agent_cannot_reply_to_a_conversation_not_assigned_to_them(client, login, acme, fake):
    login(AGENT)
    token = csrf(client, acme["Neha Kulkarni"])
    for name in ("Arjun Nair", "Fatima Sheikh"):
        other = acme[name]
        assert client.get(f"/conversations/show/{other.id}").status_code == 404
        response = client.post(
            f"/conversations/{other.id}/reply",
            data={"csrf_token": token, "kind": "text", "text": "hi"},
        )
        assert response.status_code == 404
    assert fake.accepted == [] and fake.attempts == []


def test_another_tenants_conversation_is_404(client, login, acme, fake, tenant_b):
    theirs = next(iter(conversations(tenant_b.id).values()))
    login(OWNER)
    token = csrf(client, acme["Fatima Sheikh"])  # the admin sees every Acme conversation
    assert client.get(f"/conversations/show/{theirs.id}").status_code == 404
    response = client.post(
        f"/conversations/{theirs.id}/reply",
        data={"csrf_token": token, "kind": "text", "text": "hi"},
    )
    assert response.status_code == 404
    assert fake.accepted == []


def test_a_cloud_api_error_is_shown_and_marks_the_message_failed(client, login, acme, fake):
    conv = acme["Fatima Sheikh"]
    fake.inject(Fault(190))
    login(OWNER)
    before = last_message_id()
    response = reply(client, conv, kind="text", text="Price list attached.")
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert "WhatsApp refused the message" in html and "(error 190)" in html
    assert "access token is invalid or expired" in html
    (msg,) = sent_now(conv, before)
    assert msg.status == MessageStatus.failed and msg.error_code == 190
    assert msg.error_title and msg.wa_message_id is None and msg.failed_at is not None
    (event,) = audit_events("conversation.reply_failed")
    assert event.details["error_code"] == 190


def test_a_reply_without_the_csrf_token_is_refused(client, login, acme, fake):
    conv = acme["Neha Kulkarni"]
    login(AGENT)
    response = client.post(f"/conversations/{conv.id}/reply", data={"kind": "text", "text": "x"})
    assert response.status_code == 400
    assert fake.accepted == []


def test_platform_staff_read_but_never_reply(client, login, acme, fake):
    conv = acme["Neha Kulkarni"]
    login("admin@xigmapro.example")
    page = client.get(f"/conversations/show/{conv.id}")
    assert page.status_code == 200 and 'id="conversation-reply"' not in page.get_data(as_text=True)
    response = client.post(
        f"/conversations/{conv.id}/reply",
        data={"csrf_token": csrf(client, conv), "kind": "text", "text": "x"},
    )
    assert response.status_code == 403
    assert fake.accepted == []


def test_the_tenant_roles_hold_can_reply(app):
    sm = app.appbuilder.sm
    for role in ("Tenant Admin", "Agent"):
        perms = {(p.permission.name, p.view_menu.name) for p in sm.find_role(role).permissions}
        assert ("can_reply", "Conversations") in perms, role
