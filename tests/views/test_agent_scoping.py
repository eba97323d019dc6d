"""Agents see only the conversations assigned to them (DESIGN.md, "Tenancy").

Demo data: each tenant has a conversation assigned to its agent (Neha Kulkarni), one
unassigned (Arjun Nair) and one assigned to its admin (Fatima Sheikh).
"""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from app.extensions import db
from app.models.conversation import Conversation, ConversationStatus, Message
from app.tenancy import assignee_scope, tenant_scope

AGENT, OWNER = "agent@acme.example", "owner@acme.example"


def conversations(tenant_id: int) -> dict[str, Conversation]:
    rows = db.session.scalars(
        select(Conversation)
        .where(Conversation.tenant_id == tenant_id)
        .execution_options(skip_tenant_scope=True)
    ).all()
    return {c.contact.profile_name: c for c in rows}


@pytest.fixture
def acme(tenant_a, user_by_email):
    convs = conversations(tenant_a.id)
    agent = user_by_email(AGENT)
    assert convs["Neha Kulkarni"].assignee_id == agent.id
    assert convs["Arjun Nair"].assignee_id is None
    assert convs["Fatima Sheikh"].assignee_id == user_by_email(OWNER).id
    return convs


def listed_ids(html: str, base: str) -> set[int]:
    return {int(pk) for pk in re.findall(rf'href="{base}/show/(\d+)', html)}


def test_agent_lists_only_assigned_conversations(client, login, acme):
    assert login(AGENT).status_code == 302
    html = client.get("/conversations/list/").get_data(as_text=True)
    assert listed_ids(html, "/conversations") == {acme["Neha Kulkarni"].id}
    assert "Neha Kulkarni" in html
    assert "Arjun Nair" not in html and "Fatima Sheikh" not in html


def test_agent_search_stays_within_assigned(client, login, acme):
    login(AGENT)
    html = client.get("/conversations/list/?_flt_0_status=open").get_data(as_text=True)
    assert listed_ids(html, "/conversations") == {acme["Neha Kulkarni"].id}


def test_agent_cannot_open_or_edit_another_conversation(client, login, acme, csrf_token):
    login(AGENT)
    own = acme["Neha Kulkarni"]
    page = client.get(f"/conversations/show/{own.id}")
    assert page.status_code == 200
    assert "Hi, is the order shipped?" in page.get_data(as_text=True)
    for name in ("Arjun Nair", "Fatima Sheikh"):
        other = acme[name]
        assert client.get(f"/conversations/show/{other.id}").status_code == 404
        assert client.get(f"/conversations/edit/{other.id}").status_code == 404
        token = csrf_token(f"/conversations/edit/{own.id}")
        response = client.post(
            f"/conversations/edit/{other.id}",
            data={"status": "resolved", "assignee": "", "csrf_token": token},
        )
        assert response.status_code == 404
        assert db.session.get(Conversation, other.id).status == ConversationStatus.open


def test_agent_lists_only_messages_of_assigned_conversations(client, login, acme):
    login(AGENT)
    html = client.get("/messages/list/?psize_MessageModelView=100").get_data(as_text=True)
    assert "Hi, is the order shipped?" in html
    assert "Do you deliver on Sundays?" not in html and "Please send the price list." not in html
    hidden = db.session.scalars(
        select(Message.id).where(Message.conversation_id == acme["Arjun Nair"].id)
    ).first()
    assert client.get(f"/messages/show/{hidden}").status_code == 404


def test_agent_changes_the_status_but_cannot_reassign(
    client, login, acme, csrf_token, user_by_email
):
    login(AGENT)
    own = acme["Neha Kulkarni"]
    agent = user_by_email(AGENT)
    token = csrf_token(f"/conversations/edit/{own.id}")
    client.post(
        f"/conversations/edit/{own.id}",
        data={"status": "resolved", "assignee": str(agent.id), "csrf_token": token},
    )
    assert db.session.get(Conversation, own.id).status == ConversationStatus.resolved
    owner = user_by_email(OWNER)
    response = client.post(
        f"/conversations/edit/{own.id}",
        data={"status": "open", "assignee": str(owner.id), "csrf_token": token},
        follow_redirects=True,
    )
    assert "Only a tenant admin can reassign" in response.get_data(as_text=True)
    conv = db.session.get(Conversation, own.id)
    assert conv.assignee_id == agent.id and conv.status == ConversationStatus.resolved


def test_tenant_admin_sees_all_and_reassigns(client, login, acme, csrf_token, user_by_email):
    login(OWNER)
    html = client.get("/conversations/list/").get_data(as_text=True)
    assert listed_ids(html, "/conversations") == {c.id for c in acme.values()}
    messages = client.get("/messages/list/?psize_MessageModelView=100").get_data(as_text=True)
    assert "Do you deliver on Sundays?" in messages and "Hi, is the order shipped?" in messages

    unassigned = acme["Arjun Nair"]
    edit = client.get(f"/conversations/edit/{unassigned.id}").get_data(as_text=True)
    agent = user_by_email(AGENT)
    # The assignee dropdown offers this tenant's team only.
    assert f'value="{agent.id}"' in edit
    bharat_agent = user_by_email("agent@bharatfoods.example")
    assert f'value="{bharat_agent.id}"' not in edit
    token = csrf_token(f"/conversations/edit/{unassigned.id}")
    client.post(
        f"/conversations/edit/{unassigned.id}",
        data={"status": "pending", "assignee": str(agent.id), "csrf_token": token},
    )
    conv = db.session.get(Conversation, unassigned.id)
    assert conv.assignee_id == agent.id and conv.status == ConversationStatus.pending

    login.logout()
    login(AGENT)
    html = client.get("/conversations/list/").get_data(as_text=True)
    assert listed_ids(html, "/conversations") == {acme["Neha Kulkarni"].id, unassigned.id}


def test_admin_cannot_assign_another_tenants_user(client, login, acme, csrf_token, user_by_email):
    login(OWNER)
    conv = acme["Arjun Nair"]
    bharat_agent = user_by_email("agent@bharatfoods.example")
    token = csrf_token(f"/conversations/edit/{conv.id}")
    client.post(
        f"/conversations/edit/{conv.id}",
        data={"status": "open", "assignee": str(bharat_agent.id), "csrf_token": token},
    )
    assert db.session.get(Conversation, conv.id).assignee_id is None


def test_other_tenants_conversations_are_invisible(client, login, tenant_b):
    theirs = conversations(tenant_b.id)
    assert theirs
    for email in (OWNER, AGENT):
        login(email)
        for conv in theirs.values():
            assert client.get(f"/conversations/show/{conv.id}").status_code == 404
        html = client.get("/conversations/list/").get_data(as_text=True)
        assert not listed_ids(html, "/conversations") & {c.id for c in theirs.values()}
        login.logout()


def test_guarantee_layer_hides_unassigned_rows_from_a_forgotten_filter(tenant_a, user_by_email):
    agent = user_by_email(AGENT)
    with tenant_scope(tenant_a.id), assignee_scope(agent.id):
        convs = db.session.scalars(select(Conversation)).all()
        msgs = db.session.scalars(select(Message)).all()
    assert convs and {c.assignee_id for c in convs} == {agent.id}
    assert msgs and {m.conversation.assignee_id for m in msgs} == {agent.id}
