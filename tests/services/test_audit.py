"""The audit trail: automatic events, auth events, no personal data, a verifiable chain
(P3, P5, P10)."""

from __future__ import annotations

import json
import threading

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError

from app.extensions import db
from app.models import AuditEvent, Tenant
from app.services import audit
from app.services.identity import hash_identifier
from app.tenancy import tenant_scope
from tests.conftest import form_csrf_token, tenant_form_data


def events(action: str | None = None, **where) -> list[AuditEvent]:
    stmt = select(AuditEvent).order_by(AuditEvent.id)
    if action:
        stmt = stmt.where(AuditEvent.action == action)
    for key, value in where.items():
        stmt = stmt.where(getattr(AuditEvent, key) == value)
    return list(db.session.scalars(stmt))


def edit_tenant(client, tenant, **changes):
    url = f"/tenants/edit/{tenant.id}"
    data = tenant_form_data(tenant)
    data.update(changes)
    data["csrf_token"] = form_csrf_token(client, url)
    return client.post(url, data=data)


def test_editing_a_tenant_records_fields_and_only_non_personal_values(client, login, tenant_a):
    login("admin@xigmapro.example")
    response = edit_tenant(client, tenant_a, city="Pune", contact_email="billing@acme.example")
    assert response.status_code == 302
    [event] = events("update", object_type="tenant", object_id=str(tenant_a.id))
    assert set(event.fields) == {"city", "contact_email"}
    assert event.changes["city"] == {"old": "Mumbai", "new": "Pune"}
    assert event.changes["contact_email"] == {
        "changed": True,
        "hmac": hash_identifier("billing@acme.example"),
    }
    assert event.tenant_id == tenant_a.id
    assert event.actor_label == f"Platform Admin #{event.actor_id}"
    assert event.ip == "127.0.0.1"
    assert event.request_id and len(event.request_id) >= 8
    assert "accounts@acme.example" not in json.dumps(event.changes)


def test_auth_events_carry_actor_ip_and_a_hashed_identity(client, login, user_by_email):
    login("owner@acme.example", "wrong-password-1")
    login("owner@acme.example")
    client.get("/logout")
    owner = user_by_email("owner@acme.example")
    [failed] = events("auth.login_failed")
    assert failed.details["identity_hash"] == hash_identifier("owner@acme.example")
    assert failed.details["outcome"] == "bad_password"
    assert failed.tenant_id == owner.tenant_id
    [ok] = events("auth.login")
    assert ok.object_id == str(owner.id) and ok.ip == "127.0.0.1"
    [out] = events("auth.logout")
    assert out.object_id == str(owner.id)
    login("nobody@nowhere.example", "whatever-pass")
    unknown = events("auth.login_failed")[-1]
    assert unknown.object_id is None and unknown.tenant_id is None
    assert unknown.details["outcome"] == "unknown_user"


def test_role_changes_invitations_and_deactivation_are_recorded(client, login, user_by_email):
    agent = user_by_email("agent@acme.example")
    login("owner@acme.example")
    token = form_csrf_token(client, "/team/list/")
    client.post(
        "/team/action_post",
        data={"action": "deactivate", "rowid": [str(agent.id)], "csrf_token": token},
    )
    assert events("user.deactivated", object_id=str(agent.id))
    client.post(
        "/team/action_post",
        data={"action": "reactivate", "rowid": [str(agent.id)], "csrf_token": token},
    )
    assert events("user.reactivated", object_id=str(agent.id))

    roles = dict(db.session.execute(text("SELECT name, id FROM ab_role")).all())
    url = f"/team/edit/{agent.id}"
    client.post(
        url,
        data={
            "first_name": "Priya",
            "last_name": "Patil",
            "phone": "",
            "roles": [str(roles["Tenant Admin"])],
            "csrf_token": form_csrf_token(client, url),
        },
    )
    # (the seed's own "Agent" grant is history from before this test)
    granted = [e for e in events("role.granted", object_id=str(agent.id)) if e.request_id]
    revoked = [e for e in events("role.revoked", object_id=str(agent.id)) if e.request_id]
    assert [e.details["role"] for e in granted] == ["Tenant Admin"]
    assert [e.details["role"] for e in revoked] == ["Agent"]

    client.post(
        "/team/add",
        data={
            "first_name": "Neha",
            "last_name": "K",
            "email": "neha@acme.example",
            "phone": "",
            "roles": [str(roles["Agent"])],
            "csrf_token": form_csrf_token(client, "/team/add"),
        },
    )
    [invited] = events("user.invited")
    assert invited.tenant_id == agent.tenant_id


def test_permission_denied_is_recorded(client, login):
    login("agent@acme.example")
    assert client.get("/team/list/").status_code == 403
    [denied] = events("permission.denied")
    assert denied.details["path"] == "/team/list/"
    assert denied.actor_label.startswith("Agent #")


def test_jobs_record_their_runs_with_the_job_id(client, login, run_jobs):
    client.post(
        "/reset",
        data={"email": "owner@acme.example", "csrf_token": form_csrf_token(client, "/reset")},
    )
    assert events("auth.password_reset_requested")
    run_jobs("mail")
    started, finished = events("job.started"), events("job.finished")
    assert started and finished
    assert finished[-1].details["job"] == "mail.send_email"
    assert finished[-1].details["messages"] == 1
    assert finished[-1].job_id and finished[-1].job_id == started[-1].job_id


def test_no_personal_data_value_reaches_the_audit_table(client, login, tenant_a):
    """A scripted run touching names, emails, phones and GSTINs leaves no value behind."""
    login("admin@xigmapro.example")
    edit_tenant(
        client,
        tenant_a,
        contact_email="secret.person@acme.example",
        contact_phone="+91 98200 11111",
        legal_name="Acme Secret Legal Name Pvt Ltd",
    )
    client.get("/logout")
    login("owner@acme.example")
    roles = dict(db.session.execute(text("SELECT name, id FROM ab_role")).all())
    client.post(
        "/team/add",
        data={
            "first_name": "Zebediah",
            "last_name": "Quintessa",
            "email": "zebediah.q@acme.example",
            "phone": "09876012345",
            "roles": [str(roles["Agent"])],
            "csrf_token": form_csrf_token(client, "/team/add"),
        },
    )
    url = "/account/"
    client.post(
        url,
        data={
            "first_name": "Rohanx",
            "last_name": "Mehtax",
            "phone": "09811122233",
            "csrf_token": form_csrf_token(client, url),
        },
    )
    client.get("/logout")
    login("owner@acme.example", "wrong-password-1")
    dump = json.dumps(
        [{c: str(getattr(e, c)) for c in AuditEvent.__table__.columns.keys()} for e in events()]
    ).lower()
    for value in (
        "secret.person@acme.example",
        "9820011111",
        "acme secret legal name",
        "zebediah",
        "quintessa",
        "9876012345",
        "rohanx",
        "mehtax",
        "9811122233",
        "owner@acme.example",
        "demo-pass-2026",
        "wrong-password-1",
        "$argon2",
    ):
        assert value not in dump, value
    assert "contact_email" in dump and "first_name" in dump  # the field names are there


def test_chain_verifies_and_tampering_is_detected(client, login, tenant_a):
    login("admin@xigmapro.example")
    edit_tenant(client, tenant_a, city="Thane")
    checked, problems = audit.verify_chains(db.session)
    assert checked > 0 and problems == []

    victim = events("update", object_type="tenant")[-1]
    # An attacker with DDL rights: disable the append-only trigger and edit a row.
    db.session.execute(text("ALTER TABLE audit_event DISABLE TRIGGER audit_event_append_only"))
    db.session.execute(
        text("UPDATE audit_event SET actor_label = 'nobody' WHERE id = :id"), {"id": victim.id}
    )
    _checked, problems = audit.verify_chains(db.session)
    assert len(problems) == 1
    assert problems[0].event_id == victim.id
    assert "content does not match" in problems[0].reason


def test_deleting_an_event_breaks_the_chain(client, login, tenant_a):
    login("admin@xigmapro.example")
    edit_tenant(client, tenant_a, city="Thane")
    edit_tenant(client, tenant_a, city="Nashik")
    first = events("update", object_type="tenant")[-2]
    db.session.execute(text("ALTER TABLE audit_event DISABLE TRIGGER audit_event_append_only"))
    db.session.execute(text("DELETE FROM audit_event WHERE id = :id"), {"id": first.id})
    _checked, problems = audit.verify_chains(db.session)
    assert problems and problems[0].chain == first.chain


def test_the_table_refuses_updates_and_deletes(tenant_a):
    audit.record("test.event", tenant_a)
    db.session.flush()
    event = events("test.event")[0]
    for sql in (
        "UPDATE audit_event SET action = 'x' WHERE id = :id",
        "DELETE FROM audit_event WHERE id = :id",
    ):
        with pytest.raises(DBAPIError, match="append-only"):
            with db.session.begin_nested():
                db.session.execute(text(sql), {"id": event.id})


def test_audit_verify_cli(app, tenant_a):
    audit.record("test.event", tenant_a)
    db.session.commit()
    result = app.test_cli_runner().invoke(args=["woffice", "audit-verify"])
    assert result.exit_code == 0, result.output
    assert "audit trail intact" in result.output


def test_chain_stays_valid_under_20_concurrent_writers(app, tenant_a, tenant_b):
    """Twenty threads, each its own connection and transaction, append to two tenant
    chains and the platform chain at once; every chain verifies afterwards."""
    factory = db.session.session_factory
    tenants = [tenant_a.id, tenant_b.id, None]
    errors: list[BaseException] = []
    barrier = threading.Barrier(20)

    def writer(n: int) -> None:
        try:
            with app.app_context():
                session = factory.class_(db=db, bind=db.engine)
                scope = tenants[n % 3]
                with tenant_scope(scope):
                    barrier.wait(timeout=30)
                    for i in range(5):
                        target = session.get(Tenant, scope or tenant_a.id)
                        audit.record("test.concurrent", target, session=session, n=n, i=i)
                        session.commit()
                session.close()
        except BaseException as exc:  # noqa: BLE001 - reported to the main thread
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(20)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        assert errors == []
        with app.app_context():
            session = factory.class_(db=db, bind=db.engine)
            written = session.execute(
                text("SELECT count(*) FROM audit_event WHERE action = 'test.concurrent'")
            ).scalar()
            checked, problems = audit.verify_chains(session)
            session.close()
        assert written == 100
        assert problems == [] and checked >= 100
    finally:
        with db.engine.begin() as conn:  # these rows were committed for real: remove them
            conn.execute(text("TRUNCATE audit_event, audit_chain_head"))


def test_created_rows_are_recorded_with_their_new_id(client, login, user_by_email):
    login("owner@acme.example")
    roles = dict(db.session.execute(text("SELECT name, id FROM ab_role")).all())
    client.post(
        "/team/add",
        data={
            "first_name": "Neha",
            "last_name": "K",
            "email": "neha2@acme.example",
            "phone": "",
            "roles": [str(roles["Agent"])],
            "csrf_token": form_csrf_token(client, "/team/add"),
        },
    )
    new_user = user_by_email("neha2@acme.example")
    [created] = events("create", object_type="ab_user", object_id=str(new_user.id))
    assert "email" in created.fields
    assert created.changes["email"]["changed"] is True
    assert created.changes["roles"] == {"added": ["Agent"], "removed": []}
