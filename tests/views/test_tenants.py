"""Platform staff manage tenants: create, validate, edit, suspend (P1, P17)."""

from __future__ import annotations

from sqlalchemy import select

from app.extensions import db
from app.models import Tenant, TenantStatus
from tests.conftest import form_csrf_token

VALID = {
    "name": "Chennai Silks",
    "legal_name": "Chennai Silks Private Limited",
    "slug": "chennai-silks",
    "status": "trial",
    "contact_email": "Owner@ChennaiSilks.example",
    "contact_phone": "044 2345 6789",
    "gstin": "",
    "address_line1": "1 Anna Salai",
    "address_line2": "",
    "city": "Chennai",
    "state_code": "33",
    "postal_code": "600002",
}


def _post_tenant(client, url: str, **overrides):
    data = {**VALID, **overrides, "csrf_token": form_csrf_token(client, url)}
    return client.post(url, data=data, follow_redirects=False)


def test_platform_admin_creates_a_tenant_with_normalised_fields(client, login):
    login("admin@xigmapro.example")
    response = _post_tenant(client, "/tenants/add", gstin="29aabca1234f1z5", state_code="29")
    assert response.status_code == 302
    tenant = db.session.scalars(select(Tenant).where(Tenant.slug == "chennai-silks")).one()
    assert tenant.contact_phone == "+914423456789"
    assert tenant.contact_email == "Owner@chennaisilks.example"
    assert tenant.gstin == "29AABCA1234F1Z5"
    assert tenant.status is TenantStatus.trial
    listing = client.get("/tenants/list/").get_data(as_text=True)
    assert "Chennai Silks" in listing


def test_gstin_of_another_state_is_refused_and_nothing_typed_is_lost(client, login):
    login("admin@xigmapro.example")
    response = _post_tenant(client, "/tenants/add", gstin="29AABCA1234F1Z5")  # state 33
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert "registered in state 29 (Karnataka)" in page
    assert "billing state is 33 (Tamil Nadu)" in page
    assert 'value="Chennai Silks Private Limited"' in page
    assert 'value="1 Anna Salai"' in page
    assert db.session.scalars(select(Tenant).where(Tenant.slug == "chennai-silks")).first() is None


def test_invalid_particulars_are_explained(client, login):
    login("admin@xigmapro.example")
    page = _post_tenant(
        client,
        "/tenants/add",
        gstin="29AABCA1234F1Z6",
        contact_phone="12345",
        contact_email="not-an-email",
        slug="Bad Slug!",
        postal_code="12",
    ).get_data(as_text=True)
    assert "not a valid GSTIN" in page
    assert "not a valid phone number" in page
    assert "Invalid email address" in page
    assert "lower-case letters, digits and hyphens" in page
    assert "6-digit PIN code" in page


def test_duplicate_slug_is_refused(client, login):
    login("admin@xigmapro.example")
    page = _post_tenant(client, "/tenants/add", slug="acme").get_data(as_text=True)
    assert "Already exists" in page or "already exists" in page
    assert db.session.scalars(select(Tenant).where(Tenant.slug == "acme")).one().name == (
        "Acme Traders"
    )


def test_suspend_and_reactivate_through_actions(client, login, tenant_a):
    login("admin@xigmapro.example")
    token = form_csrf_token(client, "/tenants/list/")
    response = client.post(
        "/tenants/action_post",
        data={"action": "suspend", "rowid": [str(tenant_a.id)], "csrf_token": token},
    )
    assert response.status_code == 302
    db.session.refresh(tenant_a)
    assert tenant_a.status is TenantStatus.suspended
    client.post(
        "/tenants/action_post",
        data={"action": "activate", "rowid": [str(tenant_a.id)], "csrf_token": token},
    )
    db.session.refresh(tenant_a)
    assert tenant_a.status is TenantStatus.active


def test_lifecycle_refuses_going_back_to_trial(client, login, tenant_a):
    login("admin@xigmapro.example")
    url = f"/tenants/edit/{tenant_a.id}"
    response = _post_tenant(
        client,
        url,
        **{k: getattr(tenant_a, k) or "" for k in VALID if k not in ("status", "state_code")},
        state_code=tenant_a.state_code,
        status="trial",
    )
    assert response.status_code == 302
    page = client.get("/tenants/list/").get_data(as_text=True)
    assert "cannot become trial" in page
    db.session.refresh(tenant_a)
    assert tenant_a.status is TenantStatus.active


def test_search_finds_tenants_by_name(client, login):
    login("admin@xigmapro.example")
    page = client.get("/tenants/list/?_flt_2_name=Bharat").get_data(as_text=True)
    assert "Bharat Foods" in page
    assert "Acme Traders" not in page
