"""Tenant API keys (issue 9): shown once, stored hashed, tenant- and scope-bound,
expiring, revocable, every use audited; the API answers them as it answers the person."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from flask_appbuilder.security.sqla.models import ApiKey
from sqlalchemy import func, select

from app.extensions import db
from app.models import Contact
from app.models.audit import AuditEvent
from app.models.mixins import utcnow
from app.tenancy import tenant_scope
from tests.conftest import form_csrf_token

OWNER, AGENT, OTHER_OWNER = "owner@acme.example", "agent@acme.example", "owner@bharatfoods.example"


def create_key(client, name: str = "CRM sync", scope: str = "read-write", days: int = 30) -> str:
    token = form_csrf_token(client, "/api-keys/")
    page = client.post(
        "/api-keys/new",
        data={"csrf_token": token, "name": name, "scope": scope, "expires_in_days": str(days)},
    ).get_data(as_text=True)
    match = re.search(r'id="api-key-secret">(wof_[A-Za-z0-9_\-]+)<', page)
    assert match, page[-2000:]
    return match.group(1)


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def key_named(name: str) -> ApiKey:
    db.session.expire_all()
    return db.session.scalars(select(ApiKey).where(ApiKey.name == name)).one()


@pytest.fixture
def owner(client, login):
    assert login(OWNER).status_code == 302
    return client


@pytest.fixture
def anonymous(app):
    return app.test_client()


def test_a_key_is_shown_once_and_stored_only_as_hashes(owner):
    secret = create_key(owner)
    key = key_named("CRM sync")
    assert secret not in (key.key_hash, key.lookup_hash) and key.key_prefix == secret[:10]
    listing = owner.get("/api-keys/").get_data(as_text=True)
    assert "CRM sync" in listing and key.key_prefix in listing and secret not in listing
    stored = db.session.execute(select(AuditEvent.details, AuditEvent.changes)).all()
    assert all(secret not in str(row) for row in stored)


def test_a_key_reads_its_tenant_only_and_sets_no_session(owner, anonymous, tenant_a, tenant_b):
    secret = create_key(owner, scope="read")
    response = anonymous.get("/api/v1/contact/?q=(page_size:100)", headers=bearer(secret))
    assert response.status_code == 200
    # The key signs in this request only: the same client without it is anonymous.
    assert anonymous.get("/api/v1/contact/").status_code == 401
    with tenant_scope(tenant_a.id):
        mine = db.session.scalar(select(func.count()).select_from(Contact))
    assert response.get_json()["count"] == mine
    with tenant_scope(tenant_b.id):
        theirs = db.session.scalars(select(Contact.id)).first()
    assert anonymous.get(f"/api/v1/contact/{theirs}", headers=bearer(secret)).status_code == 404
    # The key does not open the screens: it is for /api/ only.
    assert anonymous.get("/contacts/list/", headers=bearer(secret)).status_code == 302


def test_scope_read_only_cannot_write_and_read_write_can_without_csrf(owner, anonymous):
    reader = create_key(owner, name="Reader", scope="read")
    writer = create_key(owner, name="Writer", scope="read-write")
    body = {"name": "from-the-api"}
    refused = anonymous.post("/api/v1/tag/", json=body, headers=bearer(reader))
    assert refused.status_code == 403 and "read-only" in refused.get_json()["message"]
    created = anonymous.post("/api/v1/tag/", json=body, headers=bearer(writer))
    assert created.status_code == 201, created.get_data(as_text=True)
    # A cookie session still needs its CSRF token for the same write.
    assert owner.post("/api/v1/tag/", json={"name": "no-token"}).status_code == 400


def test_revoked_expired_and_orphaned_keys_are_refused(owner, anonymous, user_by_email):
    revoked, expired = create_key(owner, name="Old"), create_key(owner, name="Expired")
    token = form_csrf_token(owner, "/api-keys/")
    response = owner.post(f"/api-keys/{key_named('Old').id}/revoke", data={"csrf_token": token})
    assert response.status_code == 302
    key = key_named("Expired")
    key.expires_on = utcnow() - timedelta(minutes=1)
    db.session.commit()
    for secret in (revoked, expired, "wof_" + "x" * 43, "wof_"):
        answer = anonymous.get("/api/v1/contact/", headers=bearer(secret))
        assert answer.status_code == 401 and answer.get_json()["message"]
    listing = owner.get("/api-keys/").get_data(as_text=True)
    assert "Revoked" in listing and "Expired" in listing


def test_a_deactivated_creators_keys_stop(app, client, login, anonymous, user_by_email):
    # A second Tenant Admin creates a key, then the owner deactivates them.
    second = user_by_email(AGENT)
    from app.models import Role

    second.roles = [db.session.scalars(select(Role).where(Role.name == "Tenant Admin")).one()]
    db.session.commit()
    assert login(AGENT).status_code == 302
    secret = create_key(client, name="Leaver")
    assert anonymous.get("/api/v1/contact/", headers=bearer(secret)).status_code == 200
    second.active = False
    db.session.commit()
    assert anonymous.get("/api/v1/contact/", headers=bearer(secret)).status_code == 401


def test_every_use_and_every_refusal_is_audited(owner, anonymous, tenant_a):
    secret = create_key(owner, name="Audited", scope="read")
    anonymous.get("/api/v1/contact/", headers=bearer(secret))
    anonymous.post("/api/v1/tag/", json={"name": "x"}, headers=bearer(secret))
    anonymous.get("/api/v1/contact/", headers=bearer("wof_not-a-key"))
    events = db.session.scalars(
        select(AuditEvent).where(AuditEvent.action.like("api_key.%")).order_by(AuditEvent.id)
    ).all()
    actions = [e.action for e in events]
    assert actions[:1] == ["api_key.created"] and "api_key.used" in actions
    used = next(e for e in events if e.action == "api_key.used")
    assert used.tenant_id == tenant_a.id and used.details["status"] == 200
    assert used.details["method"] == "GET" and used.actor_id is not None
    assert actions.count("api_key.refused") == 2
    assert all(secret not in str(e.details) for e in events)


def test_other_tenants_and_members_without_the_permission_are_kept_out(owner, login, client):
    create_key(owner, name="Acme key")
    acme_key = key_named("Acme key")
    login.logout()
    assert login(OTHER_OWNER).status_code == 302
    assert "Acme key" not in client.get("/api-keys/").get_data(as_text=True)
    token = form_csrf_token(client, "/api-keys/")
    assert (
        client.post(f"/api-keys/{acme_key.id}/revoke", data={"csrf_token": token}).status_code
        == 404
    )
    assert key_named("Acme key").revoked_on is None
    login.logout()
    assert login(AGENT).status_code == 302
    assert client.get("/api-keys/").status_code == 403


def test_a_bad_form_is_explained_and_creates_nothing(owner):
    token = form_csrf_token(owner, "/api-keys/")
    page = owner.post(
        "/api-keys/new",
        data={"csrf_token": token, "name": "x", "scope": "read", "expires_in_days": "900"},
    ).get_data(as_text=True)
    assert "2 to 100 characters" in page
    assert db.session.scalar(select(func.count()).select_from(ApiKey)) == 0
    page = owner.post(
        "/api-keys/new",
        data={"csrf_token": token, "name": "Long lived", "scope": "read", "expires_in_days": "900"},
    ).get_data(as_text=True)
    assert "1 to 365 days" in page


def test_there_is_no_password_login_over_the_api(anonymous):
    response = anonymous.post(
        "/api/v1/security/login",
        json={"username": OWNER, "password": "demo-pass-2026", "provider": "db"},
    )
    assert response.status_code == 404
