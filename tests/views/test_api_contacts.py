"""REST APIs over contacts and tags (issue 4): service rules, roles, CSRF, bad input.

The APIs use FAB's browser login (session cookie); a cookie-authenticated write must
carry the CSRF token in the ``X-CSRFToken`` header.
"""

from __future__ import annotations

from urllib.parse import quote

import pytest
from sqlalchemy import func, select

from app.extensions import db
from app.models.contact import ConsentEvent, ConsentSource, ConsentState, Contact, Tag

OWNER, AGENT = "owner@acme.example", "agent@acme.example"
RAVI = "+919876543210"  # Acme's demo contact Ravi Kumar


def contact_id(tenant_id: int, phone: str) -> int:
    return db.session.scalars(
        select(Contact.id)
        .where(Contact.tenant_id == tenant_id, Contact.phone == phone)
        .execution_options(skip_tenant_scope=True)
    ).one()


def tag_ids(tenant_id: int) -> dict[str, int]:
    rows = db.session.execute(
        select(Tag.name, Tag.id)
        .where(Tag.tenant_id == tenant_id)
        .execution_options(skip_tenant_scope=True)
    )
    return dict(rows.all())


def count_contacts(tenant_id: int) -> int:
    return db.session.scalar(
        select(func.count(Contact.id))
        .where(Contact.tenant_id == tenant_id)
        .execution_options(skip_tenant_scope=True)
    )


def rison(q: str) -> str:
    return "?q=" + quote(q, safe="(),:!'")


@pytest.fixture
def api(client, login, csrf_token):
    """Log in as someone; returns (client, headers with that session's CSRF token)."""

    def as_user(email: str) -> dict[str, str]:
        assert login(email).status_code == 302
        return {"X-CSRFToken": csrf_token("/account/")}

    return as_user


# ------------------------------------------------------------------------- reading


def test_agent_and_admin_list_the_tenants_contacts_only(client, api, tenant_a, tenant_b):
    for email in (OWNER, AGENT):
        api(email)
        response = client.get("/api/v1/contact/?q=(page_size:100)")
        assert response.status_code == 200
        body = response.get_json()
        phones = {row["phone"] for row in body["result"]}
        assert RAVI in phones
        assert body["count"] == count_contacts(tenant_a.id)
        assert "+919448011111" not in phones  # Bharat Foods' Suresh Gowda
        # No tenant id, no internal columns: exactly the declared ones.
        assert set(body["result"][0]) == {
            "id",
            "phone",
            "wa_id",
            "display_name",
            "profile_name",
            "email",
            "tags",
            "consent_state",
            "marketing_objection",
            "last_inbound_at",
        }
        client.get("/logout")


@pytest.mark.parametrize("typed", ["+91 98765 43210", "09876543210", "919876543210", "43210"])
def test_search_finds_a_contact_by_any_phone_format(client, api, typed):
    api(AGENT)
    q = f"(filters:!((col:phone,opr:contact_search,value:'{typed}')))"
    response = client.get("/api/v1/contact/" + rison(q))
    assert response.status_code == 200
    assert [row["phone"] for row in response.get_json()["result"]] == [RAVI]


def test_another_tenants_contacts_and_tags_are_404(client, api, tenant_b):
    headers = api(OWNER)
    theirs = contact_id(tenant_b.id, "+919448011111")
    their_tag = tag_ids(tenant_b.id)["vip"]
    assert client.get(f"/api/v1/contact/{theirs}").status_code == 404
    assert client.get(f"/api/v1/tag/{their_tag}").status_code == 404
    put = client.put(f"/api/v1/contact/{theirs}", json={"display_name": "X"}, headers=headers)
    assert put.status_code == 404
    consent = client.post(
        f"/api/v1/contact/{theirs}/consent", json={"action": "opt_out"}, headers=headers
    )
    assert consent.status_code == 404
    assert client.delete(f"/api/v1/tag/{their_tag}", headers=headers).status_code == 404
    assert db.session.get(Tag, their_tag) is not None
    # Searching for their number finds nothing either.
    q = "(filters:!((col:phone,opr:contact_search,value:'9448011111')))"
    assert client.get("/api/v1/contact/" + rison(q)).get_json()["count"] == 0


# ------------------------------------------------------------------------- writing


def test_admin_creates_a_contact_through_the_service_rules(client, api, tenant_a):
    headers = api(OWNER)
    vip = tag_ids(tenant_a.id)["vip"]
    response = client.post(
        "/api/v1/contact/",
        json={"phone": "098765 00011", "display_name": " Asha ", "tags": [vip]},
        headers=headers,
    )
    assert response.status_code == 201, response.get_json()
    result = response.get_json()["result"]
    assert result["phone"] == "+919876500011" and result["wa_id"] == "919876500011"
    assert result["display_name"] == "Asha"
    assert result["consent_state"] == "unknown"
    assert result["tags"] == [{"id": vip, "name": "vip"}]
    created = db.session.get(Contact, response.get_json()["id"])
    assert created.tenant_id == tenant_a.id  # stamped from the scope


@pytest.mark.parametrize(
    ("body", "field", "text"),
    [
        ({"phone": "+91 98765 43210"}, "phone", "already exists"),
        ({"phone": "919876543210"}, "phone", "already exists"),
        ({"phone": "12345"}, "phone", "not a valid phone number"),
        ({"phone": "hello"}, "phone", "not a phone number"),
        ({"phone": "9876500012", "email": "not-an-email"}, "email", ""),
        ({"phone": 9876500012}, "phone", "Not a valid string"),
        ({"phone": "9876500012", "tags": ["vip"]}, "tags", "Not a valid integer"),
        ({"phone": "9876500012", "display_name": "x" * 121}, "display_name", "Longer"),
        ({"phone": "9876500012", "notes": "a\x00b"}, "notes", "NUL"),
        ({"display_name": "No phone"}, "phone", "Missing data"),
        ({"phone": "9876500012", "tenant_id": 2}, "tenant_id", "Unknown field"),
        ({"phone": "9876500012", "consent_state": "opted_in"}, "consent_state", "Unknown field"),
        ({"phone": "9876500012", "wa_id": "1"}, "wa_id", "Unknown field"),
    ],
)
def test_invalid_contacts_are_refused_with_a_reason(client, api, tenant_a, body, field, text):
    headers = api(OWNER)
    before = count_contacts(tenant_a.id)
    response = client.post("/api/v1/contact/", json=body, headers=headers)
    assert response.status_code == 422, response.get_json()
    message = response.get_json()["message"]
    assert field in message, message
    assert text.lower() in str(message[field]).lower()
    assert count_contacts(tenant_a.id) == before


def test_another_tenants_tag_cannot_be_attached(client, api, tenant_a, tenant_b):
    headers = api(OWNER)
    theirs = tag_ids(tenant_b.id)["vip"]
    response = client.post(
        "/api/v1/contact/", json={"phone": "9876500013", "tags": [theirs]}, headers=headers
    )
    assert response.status_code == 422
    assert response.get_json()["message"] == {"tags": ["Unknown tag id."]}
    ravi = contact_id(tenant_a.id, RAVI)
    update = client.put(f"/api/v1/contact/{ravi}", json={"tags": [theirs]}, headers=headers)
    assert update.status_code == 422
    assert [t.name for t in db.session.get(Contact, ravi).tags] == ["vip"]


def test_update_is_partial_and_keeps_the_rules(client, api, tenant_a):
    headers = api(OWNER)
    ravi = contact_id(tenant_a.id, RAVI)
    response = client.put(
        f"/api/v1/contact/{ravi}",
        json={"display_name": "Ravi K.", "email": " Ravi@Example.COM "},
        headers=headers,
    )
    assert response.status_code == 200, response.get_json()
    contact = db.session.get(Contact, ravi)
    assert contact.display_name == "Ravi K." and contact.phone == RAVI
    assert contact.email == "Ravi@example.com"
    assert contact.consent_state == ConsentState.opted_in  # untouched
    assert [t.name for t in contact.tags] == ["vip"]  # no "tags" key: unchanged

    sunita = "+919812345678"
    taken = client.put(f"/api/v1/contact/{ravi}", json={"phone": sunita}, headers=headers)
    assert taken.status_code == 422
    assert "already exists" in taken.get_json()["message"]["phone"][0]
    refused = client.put(
        f"/api/v1/contact/{ravi}", json={"consent_state": "opted_out"}, headers=headers
    )
    assert refused.status_code == 422
    assert db.session.get(Contact, ravi).consent_state == ConsentState.opted_in


def test_consent_changes_go_through_the_log_with_source_api(client, api, tenant_a, user_by_email):
    headers = api(OWNER)
    farah = contact_id(tenant_a.id, "+919930012345")  # consent unknown
    url = f"/api/v1/contact/{farah}/consent"
    no_evidence = client.post(url, json={"action": "opt_in"}, headers=headers)
    assert no_evidence.status_code == 422
    assert "evidence" in no_evidence.get_json()["message"]
    assert client.post(url, json={"action": "maybe"}, headers=headers).status_code == 422
    response = client.post(
        url, json={"action": "opt_in", "evidence": "Signed slip 42"}, headers=headers
    )
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["result"]["consent_state"] == "opted_in"
    events = db.session.scalars(select(ConsentEvent).where(ConsentEvent.contact_id == farah)).all()
    assert [(e.action, e.source) for e in events] == [("opt_in", ConsentSource.api)]
    assert events[0].recorded_by_id == user_by_email(OWNER).id


def test_agents_read_but_do_not_write(client, api, tenant_a):
    headers = api(AGENT)
    ravi = contact_id(tenant_a.id, RAVI)
    vip = tag_ids(tenant_a.id)["vip"]
    assert client.get(f"/api/v1/contact/{ravi}").status_code == 200
    assert client.get("/api/v1/tag/").status_code == 200
    assert client.get("/api/v1/contact/_info").status_code == 200
    before = count_contacts(tenant_a.id)
    refused = [
        client.post("/api/v1/contact/", json={"phone": "9876500014"}, headers=headers),
        client.put(f"/api/v1/contact/{ravi}", json={"display_name": "X"}, headers=headers),
        client.post(f"/api/v1/contact/{ravi}/consent", json={"action": "opt_out"}, headers=headers),
        client.post("/api/v1/tag/", json={"name": "agents"}, headers=headers),
        client.put(f"/api/v1/tag/{vip}", json={"name": "VIP"}, headers=headers),
        client.delete(f"/api/v1/tag/{vip}", headers=headers),
    ]
    assert [r.status_code for r in refused] == [403] * len(refused)
    assert count_contacts(tenant_a.id) == before
    contact = db.session.get(Contact, ravi)
    assert contact.display_name == "Ravi Kumar" and contact.consent_state == "opted_in"
    assert db.session.get(Tag, vip).name == "vip"


def test_tags_are_unique_per_tenant_in_any_case(client, api, tenant_a):
    headers = api(OWNER)
    created = client.post("/api/v1/tag/", json={"name": " festive "}, headers=headers)
    assert created.status_code == 201
    tag_id = created.get_json()["id"]
    assert db.session.get(Tag, tag_id).name == "festive"
    assert db.session.get(Tag, tag_id).tenant_id == tenant_a.id
    for name, reason in (("VIP", "already exists"), ("  ", "Give the tag a name")):
        response = client.post("/api/v1/tag/", json={"name": name}, headers=headers)
        assert response.status_code == 422
        assert reason in response.get_json()["message"]["name"][0]
    rename = client.put(f"/api/v1/tag/{tag_id}", json={"name": "Festive"}, headers=headers)
    assert rename.status_code == 200 and db.session.get(Tag, tag_id).name == "Festive"
    assert client.delete(f"/api/v1/tag/{tag_id}", headers=headers).status_code == 200
    assert db.session.get(Tag, tag_id) is None


# ----------------------------------------------------------------- authentication


def test_session_writes_need_the_csrf_header(client, api, tenant_a):
    api(OWNER)
    vip = tag_ids(tenant_a.id)["vip"]
    before = count_contacts(tenant_a.id)
    missing = client.post("/api/v1/contact/", json={"phone": "9876500015"})
    wrong = client.post(
        "/api/v1/contact/", json={"phone": "9876500015"}, headers={"X-CSRFToken": "forged"}
    )
    delete = client.delete(f"/api/v1/tag/{vip}")
    for response in (missing, wrong, delete):
        assert response.status_code == 400
        assert "CSRF" in response.get_json()["message"]
    assert count_contacts(tenant_a.id) == before
    assert db.session.get(Tag, vip) is not None
    # Reads need no token.
    assert client.get("/api/v1/tag/").status_code == 200


def test_anonymous_requests_are_refused(client, tenant_a):
    before = count_contacts(tenant_a.id)
    assert client.get("/api/v1/contact/").status_code == 401
    assert client.get("/api/v1/tag/_info").status_code == 401
    response = client.post("/api/v1/contact/", json={"phone": "9876500016"})
    assert response.status_code == 401
    assert count_contacts(tenant_a.id) == before


def test_no_password_login_endpoint_exists(client):
    response = client.post(
        "/api/v1/security/login",
        json={"username": OWNER, "password": "x", "provider": "db"},
    )
    assert response.status_code == 404


@pytest.mark.parametrize(
    ("email", "status"),
    [("billing@xigmapro.example", 403), ("compliance@xigmapro.example", 403)],
)
def test_platform_staff_without_business_access_are_refused(client, api, email, status):
    headers = api(email)
    for url in ("/api/v1/contact/", "/api/v1/tag/", "/api/v1/contact/_info"):
        assert client.get(url).status_code == status
    post = client.post("/api/v1/tag/", json={"name": "x"}, headers=headers)
    assert post.status_code == status


def test_platform_admin_cannot_create_a_row_without_a_tenant(client, api):
    headers = api("admin@xigmapro.example")
    response = client.post("/api/v1/contact/", json={"phone": "9876500017"}, headers=headers)
    assert response.status_code == 400
    assert "tenant" in response.get_json()["message"]


# ------------------------------------------------------------------- bad requests


@pytest.mark.parametrize(
    "query",
    [
        "((",
        "(a:",
        "!(",
        "(page:-1)",
        "(page:99999999999)",
        "(page:'x')",
        "(order_column:tenant_id)",
        "(filters:!((col:tenant_id,opr:eq,value:2)))",
        "(filters:!((col:tags,opr:rel_m_m,value:abc)))",
        "(filters:!((col:marketing_objection,opr:eq,value:abc)))",
        "(filters:!((col:display_name,opr:ct,value:(a:1))))",
        "(filters:!((col:display_name,opr:ct,value:!(a,b))))",
        "(filters:!((col:display_name,opr:eq,value:!n)))",
        "(filters:!((col:display_name,opr:nope,value:x)))",
        "(filters:!(x))",
        "(filters:!((col:phone,opr:rel_m_m,value:x)))",
    ],
)
def test_bad_list_arguments_answer_400(client, api, query):
    api(OWNER)
    response = client.get("/api/v1/contact/" + rison(query))
    assert response.status_code == 400, (query, response.get_data(as_text=True))
    assert response.get_json()["message"]


@pytest.mark.parametrize(
    "query",
    [
        "(filters:!((col:display_name,opr:ct,value:5)))",
        "(filters:!((col:last_inbound_at,opr:gt,value:abc)))",
        "(filters:!((col:consent_state,opr:eq,value:bogus)))",
        "(filters:!((col:phone,opr:contact_search,value:'')))",
        "(page_size:100000)",
    ],
)
def test_odd_but_valid_list_arguments_answer_200(client, api, query):
    api(OWNER)
    response = client.get("/api/v1/contact/" + rison(query))
    assert response.status_code == 200, (query, response.get_data(as_text=True))
    assert len(response.get_json()["result"]) <= 100


@pytest.mark.parametrize(
    ("data", "content_type", "status"),
    [
        ("{not json", "application/json", 400),
        ('["+919876500018"]', "application/json", 400),
        ('"text"', "application/json", 400),
        ("phone=9876500018", "application/x-www-form-urlencoded", 400),
        ('{"phone": null}', "application/json", 422),
        ('{"phone": {"a": 1}}', "application/json", 422),
        ('{"phone": "9876500018", "tags": 5}', "application/json", 422),
    ],
)
def test_malformed_bodies_never_500(client, api, tenant_a, data, content_type, status):
    headers = api(OWNER)
    before = count_contacts(tenant_a.id)
    ravi = contact_id(tenant_a.id, RAVI)
    for method, url in (("POST", "/api/v1/contact/"), ("PUT", f"/api/v1/contact/{ravi}")):
        response = client.open(
            url, method=method, data=data, content_type=content_type, headers=headers
        )
        expected = 422 if method == "PUT" and data == '{"phone": null}' else status
        assert response.status_code == expected, (method, data, response.get_data(as_text=True))
        assert response.get_json()["message"]
    assert count_contacts(tenant_a.id) == before
    assert db.session.get(Contact, ravi).phone == RAVI
