"""The OpenAPI spec and Swagger UI (issue 9): who may read them, what they list, and
that the Swagger page loads nothing from another origin."""

from __future__ import annotations

import re

import pytest

from app.extensions import appbuilder
from app.views.api_base import WofficeModelRestApi

OWNER = "owner@acme.example"
ADMIN = "admin@xigmapro.example"
PLATFORM_ONLY = {"tenant", "plan", "invoice", "credit_note", "payment", "privacy_request"}
RESOURCES = {
    "audit",
    "campaign",
    "campaign_recipient",
    "contact",
    "conversation",
    "credit_note",
    "invoice",
    "message",
    "my_invoice",
    "payment",
    "plan",
    "privacy_request",
    "tag",
    "team",
    "template",
    "tenant",
}


def listed(client) -> set[str]:
    """The resources the signed-in caller's spec describes."""
    response = client.get("/api/v1/_openapi")
    assert response.status_code == 200
    return {path.split("/")[3] for path in response.get_json()["paths"]} - {"_openapi", "menu"}


def test_every_product_api_is_registered_and_in_the_spec(app, client, login):
    assert login(ADMIN).status_code == 302  # a platform admin holds every API
    response = client.get("/api/v1/_openapi")
    assert response.status_code == 200
    spec = response.get_json()
    assert spec["openapi"].startswith("3.")
    listed = {path.split("/")[3] for path in spec["paths"] if path.startswith("/api/v1/")}
    assert RESOURCES <= listed, RESOURCES - listed
    # Every registered model API is in the spec, not only the ones named above.
    registered = {
        view.resource_name for view in appbuilder.baseviews if isinstance(view, WofficeModelRestApi)
    }
    assert registered <= listed, registered - listed
    # Every list operation documents its 400 (bad rison, bad page) and 401.
    for resource in registered:
        responses = spec["paths"][f"/api/v1/{resource}/"]["get"]["responses"]
        assert {"400", "401"} <= set(responses), resource


@pytest.mark.parametrize(
    "email, apis",
    [
        (OWNER, RESOURCES - PLATFORM_ONLY),
        ("billing@xigmapro.example", {"tenant", "plan", "invoice", "credit_note", "payment"}),
        ("compliance@xigmapro.example", {"tenant", "privacy_request", "audit"}),
    ],
)
def test_each_caller_reads_only_the_apis_they_may_call(client, login, email, apis):
    """The spec describes the APIs the caller holds a permission on, no others: a
    tenant admin's lists none of the platform's, each of which refuses them."""
    assert login(email).status_code == 302
    assert listed(client) == apis
    for resource in RESOURCES - apis:
        assert client.get(f"/api/v1/{resource}/").status_code == 403, resource


def test_the_spec_is_a_valid_openapi_document(app, client, login):
    import schemathesis

    assert login(ADMIN).status_code == 302
    spec = client.get("/api/v1/_openapi").get_json()
    schema = schemathesis.openapi.from_dict(spec)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 3 * len(RESOURCES)


@pytest.mark.parametrize(
    "email",
    ["owner@acme.example", "admin@xigmapro.example", "billing@xigmapro.example"],
)
def test_admins_read_the_spec_and_the_swagger_page(client, login, email):
    assert login(email).status_code == 302
    assert client.get("/api/v1/_openapi").status_code == 200
    page = client.get("/swagger/v1")
    assert page.status_code == 200
    assert "swagger-ui-bundle.js" in page.get_data(as_text=True)


def test_agents_and_anonymous_callers_do_not_read_the_spec(client, login):
    assert client.get("/api/v1/_openapi").status_code == 401
    assert login("agent@acme.example").status_code == 302
    assert client.get("/api/v1/_openapi").status_code == 403


def test_the_swagger_page_loads_only_local_assets(client, login):
    assert login(OWNER).status_code == 302
    response = client.get("/swagger/v1")
    html = response.get_data(as_text=True)
    # No src/href/url() to another origin, and the validator badge is switched off.
    remote = re.findall(r"""(?:src|href)\s*=\s*["']((?:https?:)?//[^"']+)""", html)
    assert remote == []
    assert "validatorUrl: null" in html
    csp = response.headers["Content-Security-Policy"]
    assert "script-src 'self' 'nonce-" in csp
    for script in re.findall(r"<script[^>]*>", html):
        assert "nonce=" in script, script
