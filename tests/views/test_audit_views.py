"""Audit screens: scoped stream, CSV export (itself audited), history, login activity."""

from __future__ import annotations

import csv
import io

from sqlalchemy import select

from app.extensions import db
from app.models import AuditEvent, Role
from app.services import audit


def _seed_events(tenant_a, tenant_b):
    audit.record("test.marker", tenant_a, marker="A-marker")
    audit.record("test.marker", tenant_b, marker="B-marker")
    audit.record("test.marker", marker="platform-marker")
    db.session.commit()


def test_tenant_admin_sees_only_their_tenants_events(client, login, tenant_a, tenant_b):
    _seed_events(tenant_a, tenant_b)
    login("owner@acme.example")
    page = client.get("/audit/list/?psize_AuditEventView=100").get_data(as_text=True)
    assert "test.marker" in page
    ids = {
        e.id
        for e in db.session.scalars(select(AuditEvent).where(AuditEvent.action == "test.marker"))
    }
    b_event = db.session.scalars(
        select(AuditEvent).where(
            AuditEvent.action == "test.marker", AuditEvent.tenant_id == tenant_b.id
        )
    ).one()
    assert b_event.id in ids
    assert client.get(f"/audit/show/{b_event.id}").status_code == 404

    export = client.get("/audit/export.csv")
    assert export.status_code == 200
    rows = list(csv.DictReader(io.StringIO(export.get_data(as_text=True))))
    assert rows and {r["tenant_id"] for r in rows} == {str(tenant_a.id)}


def test_platform_and_compliance_see_every_tenant(client, login, tenant_a, tenant_b):
    _seed_events(tenant_a, tenant_b)
    for email in ("admin@xigmapro.example", "compliance@xigmapro.example"):
        login(email)
        rows = list(
            csv.DictReader(
                io.StringIO(
                    client.get("/audit/export.csv?_flt_0_action=test.marker").get_data(as_text=True)
                )
            )
        )
        assert {r["tenant_id"] for r in rows} == {str(tenant_a.id), str(tenant_b.id), ""}
        client.get("/logout")


def test_export_follows_filters_and_is_itself_audited(client, login, tenant_a, tenant_b):
    _seed_events(tenant_a, tenant_b)
    login("compliance@xigmapro.example")
    response = client.get("/audit/export.csv?_flt_0_action=test.marker")
    assert response.headers["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))
    assert len(rows) == 3 and {r["action"] for r in rows} == {"test.marker"}
    exported = db.session.scalars(
        select(AuditEvent).where(AuditEvent.action == "audit.exported")
    ).one()
    assert exported.details["rows"] == 3
    assert exported.details["filters"] == ["_flt_0_action"]


def test_no_role_can_edit_or_delete_events(client, login, tenant_a, tenant_b):
    _seed_events(tenant_a, tenant_b)
    event = db.session.scalars(select(AuditEvent).order_by(AuditEvent.id.desc())).first()
    login("admin@xigmapro.example")
    for url in (f"/audit/edit/{event.id}", f"/audit/delete/{event.id}", "/audit/add"):
        assert client.get(url).status_code in (403, 404, 405), url
        assert client.post(url, data={}).status_code in (400, 403, 404, 405), url
    db.session.expire_all()
    assert db.session.get(AuditEvent, event.id).action == "test.marker"


def test_show_pages_carry_the_objects_history(client, login, tenant_a, user_by_email):
    login("admin@xigmapro.example")
    page = client.get(f"/tenants/show/{tenant_a.id}").get_data(as_text=True)
    assert 'id="audit-history"' in page
    client.get("/logout")
    agent = user_by_email("agent@acme.example")
    login("owner@acme.example")
    client.get(f"/team/show/{agent.id}")
    audit.record("test.history", agent)
    db.session.commit()
    page = client.get(f"/team/show/{agent.id}").get_data(as_text=True)
    assert "test.history" in page


def test_login_activity_is_scoped_to_the_tenants_users(client, login, user_by_email):
    login("agent@bharatfoods.example", "wrong-password-1")
    login("agent@acme.example", "wrong-password-1")
    login("owner@acme.example")
    page = client.get("/login-activity/list/").get_data(as_text=True)
    b_agent = user_by_email("agent@bharatfoods.example")
    a_agent = user_by_email("agent@acme.example")
    assert f">{a_agent.id}<" in page.replace(" ", "").replace("\n", "")
    assert f">{b_agent.id}<" not in page.replace(" ", "").replace("\n", "")
    client.get("/logout")
    login("compliance@xigmapro.example")
    page = client.get("/login-activity/list/").get_data(as_text=True)
    assert "bad_password" in page


def test_the_audit_api_is_scoped_and_read_only(client, login, tenant_a, tenant_b):
    _seed_events(tenant_a, tenant_b)
    login("owner@acme.example")
    listing = client.get("/api/v1/audit/?q=(page_size:100)")
    assert listing.status_code == 200
    result = listing.get_json()["result"]
    assert result and {row["tenant_id"] for row in result} == {tenant_a.id}
    b_event = db.session.scalars(
        select(AuditEvent).where(
            AuditEvent.action == "test.marker", AuditEvent.tenant_id == tenant_b.id
        )
    ).one()
    assert client.get(f"/api/v1/audit/{b_event.id}").status_code == 404
    for method in ("post", "put", "delete"):
        url = "/api/v1/audit/" if method == "post" else f"/api/v1/audit/{b_event.id}"
        response = getattr(client, method)(url, json={"action": "forged"})
        assert response.status_code in (404, 405), (method, response.status_code)
    db.session.expire_all()
    assert db.session.get(AuditEvent, b_event.id).action == "test.marker"


def test_the_audit_api_needs_a_session_or_key(client):
    assert client.get("/api/v1/audit/").status_code == 401


def test_role_pages_show_their_history(client, login):
    role = db.session.scalars(select(Role).where(Role.name == "Agent")).one()
    audit.record("test.role-history", role)
    db.session.commit()
    login("admin@xigmapro.example")
    page = client.get(f"/roles/show/{role.id}").get_data(as_text=True)
    assert 'id="audit-history"' in page and "test.role-history" in page
