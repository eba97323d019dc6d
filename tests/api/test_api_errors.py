"""Error bodies and pagination of the REST API (issue 9).

Every 4xx the API answers is JSON with a ``message``, never an HTML page and never a
500 for bad input. ``page_size`` above the maximum (100) is capped, not refused: a
client asking for "everything" gets the largest page and the total ``count``.
"""

from __future__ import annotations

from urllib.parse import quote

import pytest

from app.extensions import db
from app.models.contact import Tag

OWNER = "owner@acme.example"


def rison(q: str) -> str:
    return "?q=" + quote(q, safe="(),:!'")


@pytest.fixture
def owner(client, login, csrf_token):
    assert login(OWNER).status_code == 302
    return {"X-CSRFToken": csrf_token("/account/")}


@pytest.mark.parametrize(
    ("method", "url", "status"),
    [
        ("GET", "/api/v1/contact/999999999", 404),
        # No route takes a pk that is not a number, whatever the method: 404.
        ("GET", "/api/v1/contact/not-a-number", 404),
        ("PUT", "/api/v1/contact/not-a-number", 404),
        ("DELETE", "/api/v1/tag/1.5", 404),
        ("GET", "/api/v1/no_such_api/", 404),
        ("GET", "/api/v1/campaign/999999999", 404),
        ("PATCH", "/api/v1/contact/1", 405),
        ("POST", "/api/v1/campaign/", 405),
        ("DELETE", "/api/v1/template/1", 405),
        ("GET", "/api/v1/contact/" + rison("(("), 400),
        ("GET", "/api/v1/campaign/" + rison("(page_size:'x')"), 400),
        ("GET", "/api/v1/campaign/" + rison("(page_size:-1)"), 400),
        ("GET", "/api/v1/campaign/" + rison("(page_size:0)"), 400),
        ("GET", "/api/v1/campaign/" + rison("(page:-1)"), 400),
        ("GET", "/api/v1/template/" + rison("(filters:!((col:nope,opr:eq,value:1)))"), 400),
        ("GET", "/api/v1/template/" + rison("(filters:!((col:name,opr:nope,value:1)))"), 400),
        ("GET", "/api/v1/template/" + rison("(order_column:nope)"), 400),
        ("GET", "/api/v1/my_invoice/" + rison("(filters:!((col:number,opr:nope,value:x)))"), 400),
        ("GET", "/api/v1/tenant/", 403),
        ("GET", "/api/v1/privacy_request/", 403),
    ],
)
def test_every_api_error_is_json_with_a_message(client, owner, method, url, status):
    response = client.open(url, method=method, headers=owner)
    assert response.status_code == status, response.get_data(as_text=True)[:300]
    assert response.is_json, response.get_data(as_text=True)[:300]
    assert response.get_json()["message"]


@pytest.mark.parametrize(
    ("data", "content_type", "status"),
    [
        ("{not json", "application/json", 400),
        ("name=x", "application/x-www-form-urlencoded", 400),
        ("[]", "application/json", 400),
        ('{"name": "x", "tenant_id": 2}', "application/json", 422),
        ('{"name": ""}', "application/json", 422),
    ],
)
def test_bad_bodies_answer_4xx_with_a_message(client, owner, data, content_type, status):
    response = client.post("/api/v1/tag/", data=data, content_type=content_type, headers=owner)
    assert response.status_code == status, response.get_data(as_text=True)[:300]
    assert response.get_json()["message"]


def test_page_size_above_the_maximum_is_capped(client, owner, tenant_a):
    db.session.add_all(Tag(tenant_id=tenant_a.id, name=f"bulk-{n}") for n in range(120))
    db.session.commit()
    response = client.get("/api/v1/tag/" + rison("(page_size:1000)"))
    assert response.status_code == 200
    body = response.get_json()
    assert body["count"] >= 120
    assert len(body["result"]) == 100
    default = client.get("/api/v1/tag/").get_json()
    assert len(default["result"]) == 25


def test_unauthenticated_api_calls_answer_401_json(client):
    response = client.get("/api/v1/template/")
    assert response.status_code == 401
    assert response.get_json()["message"]
