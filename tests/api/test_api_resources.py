"""The read-only APIs of issue 9: who reads what, tenant scoping, and no secrets.

Templates, campaigns and recipients are the tenant admin's; invoices are the tenant's
own (``my_invoice``) or every tenant's for Billing (``invoice``, ``credit_note``);
tenants, plans and payments are platform staff's; privacy requests are Compliance's.
"""

from __future__ import annotations

import pytest
from sqlalchemy import select

from app.extensions import db
from app.models.billing import Invoice
from app.models.campaign import MessageTemplate

OWNER, AGENT = "owner@acme.example", "agent@acme.example"
ADMIN = "admin@xigmapro.example"
BILLING, COMPLIANCE = "billing@xigmapro.example", "compliance@xigmapro.example"
ALL = "?q=(page_size:100)"


def unscoped(stmt):
    return db.session.scalars(stmt.execution_options(skip_tenant_scope=True)).all()


@pytest.fixture
def as_user(client, login):
    def sign_in(email: str) -> None:
        assert login(email).status_code == 302

    return sign_in


@pytest.mark.parametrize(
    ("email", "allowed", "refused"),
    [
        (OWNER, ["template", "campaign", "campaign_recipient", "my_invoice"],
         ["tenant", "plan", "invoice", "credit_note", "payment", "privacy_request"]),
        (AGENT, [], ["template", "campaign", "campaign_recipient", "my_invoice", "tenant",
                     "invoice", "privacy_request"]),
        (BILLING, ["tenant", "plan", "invoice", "credit_note", "payment"],
         ["privacy_request", "template", "campaign"]),
        (COMPLIANCE, ["tenant", "privacy_request"],
         ["plan", "invoice", "payment", "template"]),
        (ADMIN, ["tenant", "plan", "invoice", "credit_note", "payment", "privacy_request",
                 "template", "campaign"], []),
    ],
)  # fmt: skip
def test_each_role_reads_its_apis_only(client, as_user, email, allowed, refused):
    as_user(email)
    for resource in allowed:
        response = client.get(f"/api/v1/{resource}/")
        assert response.status_code == 200, (email, resource)
    for resource in refused:
        response = client.get(f"/api/v1/{resource}/")
        assert response.status_code == 403, (email, resource)
        assert response.get_json()["message"]


def test_read_only_apis_have_no_write_routes(client, as_user):
    as_user(ADMIN)
    for resource in ("template", "campaign", "tenant", "plan", "invoice", "privacy_request"):
        assert client.post(f"/api/v1/{resource}/", json={}).status_code == 405
        assert client.delete(f"/api/v1/{resource}/1").status_code == 405
        info = client.get(f"/api/v1/{resource}/_info").get_json()
        assert "add_columns" not in info and "edit_columns" not in info


def test_tenant_admins_read_their_own_invoices_only(client, as_user, tenant_a, tenant_b):
    ours = {i.id for i in unscoped(select(Invoice).where(Invoice.tenant_id == tenant_a.id))}
    theirs = unscoped(select(Invoice).where(Invoice.tenant_id == tenant_b.id))
    assert ours and theirs, "the demo data has invoices for both tenants"
    as_user(OWNER)
    body = client.get("/api/v1/my_invoice/" + ALL).get_json()
    assert set(body["ids"]) == ours
    assert client.get(f"/api/v1/my_invoice/{theirs[0].id}").status_code == 404
    shown = client.get(f"/api/v1/my_invoice/{min(ours)}").get_json()["result"]
    assert "pdf" not in shown and "tax_mismatch" not in shown
    assert shown["number"]


def test_billing_staff_read_every_tenants_invoices(client, as_user):
    every = {i.id for i in unscoped(select(Invoice).where(Invoice.doc_type == "invoice"))}
    as_user(BILLING)
    body = client.get("/api/v1/invoice/" + ALL).get_json()
    assert set(body["ids"]) == every
    assert {row["doc_type"] for row in body["result"]} == {"invoice"}
    assert "pdf" not in client.get(f"/api/v1/invoice/{min(every)}").get_json()["result"]


def test_the_tenant_api_never_shows_whatsapp_secrets(client, as_user, tenant_a):
    as_user(ADMIN)
    listed = client.get("/api/v1/tenant/" + ALL).get_json()["result"]
    shown = client.get(f"/api/v1/tenant/{tenant_a.id}").get_json()["result"]
    assert shown["wa_phone_number_id"] == tenant_a.wa_phone_number_id
    for row in [*listed, shown]:
        assert not {k for k in row if "token" in k or "secret" in k}, row
    text = client.get(f"/api/v1/tenant/{tenant_a.id}").get_data(as_text=True)
    assert "acme-demo-access-token" not in text and "acme-demo-app-secret" not in text


def test_templates_and_campaigns_are_the_callers_tenants(client, as_user, tenant_a, tenant_b):
    theirs = unscoped(select(MessageTemplate).where(MessageTemplate.tenant_id == tenant_b.id))
    as_user(OWNER)
    body = client.get("/api/v1/template/" + ALL).get_json()
    ours = unscoped(select(MessageTemplate.id).where(MessageTemplate.tenant_id == tenant_a.id))
    assert set(body["ids"]) == set(ours)
    if theirs:
        assert client.get(f"/api/v1/template/{theirs[0].id}").status_code == 404
    assert client.get("/api/v1/campaign/").status_code == 200


def test_datetimes_carry_their_utc_offset(client, as_user, tenant_a):
    as_user(ADMIN)
    shown = client.get(f"/api/v1/tenant/{tenant_a.id}").get_json()["result"]
    assert shown["created_at"].endswith("+00:00")
