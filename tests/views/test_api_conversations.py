"""REST APIs over conversations and messages: agent isolation and assignment (issue 4).

Demo data (see test_agent_scoping): Acme's agent is assigned Neha Kulkarni's
conversation; Arjun Nair's is unassigned; Fatima Sheikh's is assigned to the owner.
"""

from __future__ import annotations

from urllib.parse import quote

import pytest
from sqlalchemy import select

from app.extensions import db
from app.models.conversation import Conversation, ConversationStatus, Message
from tests.views.test_agent_scoping import conversations

OWNER, AGENT = "owner@acme.example", "agent@acme.example"


def rison(q: str) -> str:
    return "?q=" + quote(q, safe="(),:!'")


def message_ids(conversation: Conversation) -> set[int]:
    return set(
        db.session.scalars(
            select(Message.id)
            .where(Message.conversation_id == conversation.id)
            .execution_options(skip_tenant_scope=True)
        )
    )


@pytest.fixture
def acme(tenant_a, user_by_email):
    convs = conversations(tenant_a.id)
    assert convs["Neha Kulkarni"].assignee_id == user_by_email(AGENT).id
    assert convs["Arjun Nair"].assignee_id is None
    return convs


@pytest.fixture
def api(client, login, csrf_token):
    def as_user(email: str) -> dict[str, str]:
        assert login(email).status_code == 302
        return {"X-CSRFToken": csrf_token("/account/")}

    return as_user


def listed(client, url: str) -> set[int]:
    response = client.get(url)
    assert response.status_code == 200, (url, response.get_data(as_text=True))
    return set(response.get_json()["ids"])


# --------------------------------------------------------------------------- agents


def test_agent_lists_and_gets_only_assigned_conversations(client, api, acme):
    api(AGENT)
    own = acme["Neha Kulkarni"]
    assert listed(client, "/api/v1/conversation/") == {own.id}
    response = client.get(f"/api/v1/conversation/{own.id}")
    assert response.status_code == 200
    result = response.get_json()["result"]
    assert result["contact"]["id"] == own.contact_id
    assert result["assignee"]["id"] == own.assignee_id
    assert set(result["assignee"]) == {"id", "first_name", "last_name"}  # no email, no secrets
    for name in ("Arjun Nair", "Fatima Sheikh"):
        assert client.get(f"/api/v1/conversation/{acme[name].id}").status_code == 404


def test_agent_lists_and_gets_only_messages_of_assigned_conversations(client, api, acme):
    api(AGENT)
    own = acme["Neha Kulkarni"]
    assert listed(client, "/api/v1/message/?q=(page_size:100)") == message_ids(own)
    bodies = {r["body"] for r in client.get("/api/v1/message/").get_json()["result"]}
    assert "Hi, is the order shipped?" in bodies
    assert "Do you deliver on Sundays?" not in bodies
    for name in ("Arjun Nair", "Fatima Sheikh"):
        for pk in message_ids(acme[name]):
            assert client.get(f"/api/v1/message/{pk}").status_code == 404


def test_agent_filters_and_search_cannot_reveal_other_conversations(
    client, api, acme, user_by_email
):
    api(AGENT)
    owner, agent = user_by_email(OWNER), user_by_email(AGENT)
    other = acme["Arjun Nair"]
    for q in (
        f"(filters:!((col:assignee,opr:rel_o_m,value:{owner.id})))",
        f"(filters:!((col:assignee,opr:nrel_o_m,value:{agent.id})))",
        f"(filters:!((col:contact,opr:rel_o_m,value:{other.contact_id})))",
        "(filters:!((col:status,opr:eq,value:open)))",
        "(filters:!((col:status,opr:neq,value:open)))",
    ):
        assert listed(client, "/api/v1/conversation/" + rison(q)) <= {acme["Neha Kulkarni"].id}
    for q in (
        f"(filters:!((col:conversation,opr:rel_o_m,value:{other.id})))",
        f"(filters:!((col:conversation,opr:nrel_o_m,value:{acme['Neha Kulkarni'].id})))",
        "(filters:!((col:body,opr:ct,value:Sundays)))",
        "(filters:!((col:body,opr:ct,value:price)))",
    ):
        assert listed(client, "/api/v1/message/" + rison(q)) == set(), q


def test_agent_cannot_update_conversations_over_the_api(client, api, acme, user_by_email):
    headers = api(AGENT)
    own = acme["Neha Kulkarni"]
    for conv in (own, acme["Arjun Nair"]):
        response = client.put(
            f"/api/v1/conversation/{conv.id}",
            json={"status": "resolved", "assignee_id": user_by_email(AGENT).id},
            headers=headers,
        )
        assert response.status_code == 403
    db.session.expire_all()
    assert db.session.get(Conversation, own.id).status == ConversationStatus.open
    assert db.session.get(Conversation, acme["Arjun Nair"].id).assignee_id is None


def test_agent_info_lists_no_teammates(client, api, acme):
    api(AGENT)
    info = client.get("/api/v1/conversation/_info").get_json()
    assert set(info["permissions"]) == {"can_get", "can_info"}
    assert "values" not in str(info["edit_columns"])


# --------------------------------------------------------------------- tenant admin


def test_admin_sees_all_and_reassigns(client, api, acme, user_by_email):
    headers = api(OWNER)
    assert listed(client, "/api/v1/conversation/") == {c.id for c in acme.values()}
    all_messages = set().union(*(message_ids(c) for c in acme.values()))
    assert listed(client, "/api/v1/message/?q=(page_size:100)") == all_messages

    conv = acme["Arjun Nair"]
    agent = user_by_email(AGENT)
    response = client.put(
        f"/api/v1/conversation/{conv.id}",
        json={"status": "pending", "assignee_id": agent.id},
        headers=headers,
    )
    assert response.status_code == 200, response.get_json()
    db.session.expire_all()
    saved = db.session.get(Conversation, conv.id)
    assert saved.status == ConversationStatus.pending and saved.assignee_id == agent.id

    unassign = client.put(
        f"/api/v1/conversation/{conv.id}", json={"assignee_id": None}, headers=headers
    )
    assert unassign.status_code == 200
    db.session.expire_all()
    saved = db.session.get(Conversation, conv.id)
    assert saved.assignee_id is None and saved.status == ConversationStatus.pending


@pytest.mark.parametrize(
    "assignee",
    ["agent@bharatfoods.example", "owner@bharatfoods.example", "admin@xigmapro.example"],
)
def test_admin_cannot_assign_someone_outside_the_tenant(client, api, acme, user_by_email, assignee):
    headers = api(OWNER)
    conv = acme["Arjun Nair"]
    response = client.put(
        f"/api/v1/conversation/{conv.id}",
        json={"assignee_id": user_by_email(assignee).id},
        headers=headers,
    )
    assert response.status_code == 422
    assert "assignee_id" in response.get_json()["message"]
    db.session.expire_all()
    assert db.session.get(Conversation, conv.id).assignee_id is None


@pytest.mark.parametrize(
    "body",
    [
        {"status": "closed"},
        {"status": 1},
        {"assignee_id": "x"},
        {"assignee_id": 10**12},
        {"tenant_id": 2},
        {"contact_id": 1},
    ],
)
def test_invalid_conversation_updates_are_422(client, api, acme, body):
    headers = api(OWNER)
    conv = acme["Arjun Nair"]
    response = client.put(f"/api/v1/conversation/{conv.id}", json=body, headers=headers)
    assert response.status_code == 422, response.get_json()
    db.session.expire_all()
    saved = db.session.get(Conversation, conv.id)
    assert saved.status == ConversationStatus.open and saved.assignee_id is None


def test_messages_are_read_only(client, api, acme):
    headers = api(OWNER)
    pk = min(message_ids(acme["Arjun Nair"]))
    for method in ("PUT", "DELETE"):
        response = client.open(
            f"/api/v1/message/{pk}", method=method, json={"body": "x"}, headers=headers
        )
        assert response.status_code == 405
    assert client.post("/api/v1/message/", json={"body": "x"}, headers=headers).status_code == 405
    assert client.delete(f"/api/v1/conversation/{acme['Arjun Nair'].id}").status_code == 405


# -------------------------------------------------------------------- other tenants


def test_other_tenants_conversations_and_messages_are_404(client, api, tenant_b, login):
    theirs = conversations(tenant_b.id)
    their_messages = set().union(*(message_ids(c) for c in theirs.values()))
    assert theirs and their_messages
    for email in (OWNER, AGENT):
        headers = api(email)
        for conv in theirs.values():
            assert client.get(f"/api/v1/conversation/{conv.id}").status_code == 404
            put = client.put(
                f"/api/v1/conversation/{conv.id}", json={"status": "resolved"}, headers=headers
            )
            assert put.status_code in (403, 404)
        for pk in their_messages:
            assert client.get(f"/api/v1/message/{pk}").status_code == 404
        assert not listed(client, "/api/v1/conversation/") & {c.id for c in theirs.values()}
        assert not listed(client, "/api/v1/message/?q=(page_size:100)") & their_messages
        login.logout()
    db.session.expire_all()
    assert {c.status for c in conversations(tenant_b.id).values()} == {ConversationStatus.open}
