"""The guarantee layer of tenancy: ORM hooks, no HTTP (DESIGN.md, "Tenancy")."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from app.extensions import db
from app.models import AppUser, Tenant
from app.models.user import Role
from app.tenancy import TenantIsolationError, current_tenant_id, tenant_scope


def _emails() -> set[str]:
    return set(db.session.scalars(select(AppUser.email)))


def test_a_scope_sees_only_its_own_users(tenant_a, tenant_b):
    with tenant_scope(tenant_a.id):
        users = db.session.scalars(select(AppUser)).all()
    assert {u.email for u in users} == {"owner@acme.example", "agent@acme.example"}
    assert {u.tenant_id for u in users} == {tenant_a.id}


def test_a_scope_filters_column_queries_and_joins(tenant_a):
    with tenant_scope(tenant_a.id):
        emails = _emails()
        joined = set(
            db.session.scalars(
                select(AppUser.email).join(AppUser.roles).where(Role.name == "Tenant Admin")
            )
        )
    assert emails == {"owner@acme.example", "agent@acme.example"}
    assert joined == {"owner@acme.example"}


def test_get_by_primary_key_of_another_tenant_or_platform_returns_none(tenant_a, user_by_email):
    b_user_id = user_by_email("owner@bharatfoods.example").id
    platform_id = user_by_email("admin@xigmapro.example").id
    own_id = user_by_email("agent@acme.example").id
    db.session.expunge_all()  # session.get would answer from the identity map
    with tenant_scope(tenant_a.id):
        assert db.session.get(AppUser, b_user_id) is None
        assert db.session.get(AppUser, platform_id) is None
        assert db.session.get(AppUser, own_id).email == "agent@acme.example"


def test_a_scope_sees_only_its_own_tenant(tenant_a, tenant_b):
    a_id, b_id = tenant_a.id, tenant_b.id
    db.session.expunge_all()
    with tenant_scope(a_id):
        tenants = db.session.scalars(select(Tenant)).all()
        assert [t.id for t in tenants] == [a_id]
        assert db.session.get(Tenant, b_id) is None


def test_writing_another_tenants_user_inside_a_scope_is_refused(tenant_a, user_by_email):
    b_user = user_by_email("agent@bharatfoods.example")  # loaded outside any scope
    with tenant_scope(tenant_a.id):
        b_user.first_name = "Hijacked"
        with pytest.raises(TenantIsolationError):
            db.session.flush()
    db.session.rollback()
    assert user_by_email("agent@bharatfoods.example").first_name == "Anil"


def test_writing_a_platform_user_inside_a_scope_is_refused(tenant_a, user_by_email):
    admin = user_by_email("admin@xigmapro.example")
    with tenant_scope(tenant_a.id):
        admin.active = False
        with pytest.raises(TenantIsolationError):
            db.session.flush()
    db.session.rollback()
    assert user_by_email("admin@xigmapro.example").active is True


def test_a_new_user_inside_a_scope_is_stamped_with_the_tenant(tenant_a):
    agent = db.session.scalars(select(Role).where(Role.name == "Agent")).one()
    with tenant_scope(tenant_a.id):
        user = AppUser(
            email="new.agent@acme.example",
            username="new.agent@acme.example",
            first_name="New",
            last_name="Agent",
            active=True,
        )
        user.roles = [agent]
        db.session.add(user)
        db.session.flush()
    assert user.tenant_id == tenant_a.id


def test_a_new_user_cannot_be_stamped_into_another_tenant(tenant_a, tenant_b):
    with tenant_scope(tenant_a.id):
        db.session.add(
            AppUser(
                email="spy@acme.example",
                username="spy@acme.example",
                first_name="Spy",
                last_name="Agent",
                active=True,
                tenant_id=tenant_b.id,
            )
        )
        with pytest.raises(TenantIsolationError):
            db.session.flush()
    db.session.rollback()


@pytest.mark.parametrize("role_name", ["Platform Admin", "Billing", "Compliance"])
def test_granting_a_platform_role_inside_a_scope_is_refused(tenant_a, user_by_email, role_name):
    role = db.session.scalars(select(Role).where(Role.name == role_name)).one()
    agent = user_by_email("agent@acme.example")
    with tenant_scope(tenant_a.id):
        agent.roles = [*agent.roles, role]
        with pytest.raises(TenantIsolationError, match=role_name):
            db.session.flush()
    db.session.rollback()
    assert [r.name for r in user_by_email("agent@acme.example").roles] == ["Agent"]


def test_granting_a_tenant_role_inside_the_scope_works(tenant_a, user_by_email):
    admin_role = db.session.scalars(select(Role).where(Role.name == "Tenant Admin")).one()
    agent = user_by_email("agent@acme.example")
    with tenant_scope(tenant_a.id):
        agent.roles = [admin_role]
        db.session.flush()
    db.session.expire_all()
    assert [r.name for r in user_by_email("agent@acme.example").roles] == ["Tenant Admin"]


def test_outside_any_scope_everything_is_visible(tenant_a, tenant_b, user_by_email):
    assert current_tenant_id() is None
    emails = _emails()
    assert {
        "admin@xigmapro.example",
        "billing@xigmapro.example",
        "compliance@xigmapro.example",
        "owner@acme.example",
        "agent@acme.example",
        "owner@bharatfoods.example",
        "agent@bharatfoods.example",
    } <= emails
    assert {tenant_a.id, tenant_b.id} <= set(db.session.scalars(select(Tenant.id)))
    b_id = user_by_email("owner@bharatfoods.example").id
    db.session.expunge_all()
    assert db.session.get(AppUser, b_id).email == "owner@bharatfoods.example"


def test_the_scope_is_restored_after_the_block(tenant_a, tenant_b):
    with tenant_scope(tenant_a.id):
        with tenant_scope(tenant_b.id):
            assert current_tenant_id() == tenant_b.id
            assert _emails() == {"owner@bharatfoods.example", "agent@bharatfoods.example"}
        assert current_tenant_id() == tenant_a.id
    assert current_tenant_id() is None


def test_users_joined_under_an_alias_are_scoped_too(tenant_a, user_by_email):
    """FAB joins users under an alias for dotted list columns (assignee.first_name)."""
    from sqlalchemy.orm import aliased

    from app.models import Contact, Conversation

    b_owner = user_by_email("owner@bharatfoods.example")
    with tenant_scope(tenant_a.id):
        contact = Contact(tenant_id=tenant_a.id, phone="+919900120001", wa_id="919900120001")
        db.session.add(contact)
        db.session.flush()
        # A row pointing at another tenant's user (as a corrupted row would).
        conversation = Conversation(tenant_id=tenant_a.id, contact_id=contact.id)
        db.session.add(conversation)
        db.session.flush()
    db.session.execute(
        Conversation.__table__.update()
        .where(Conversation.__table__.c.id == conversation.id)
        .values(assignee_id=b_owner.id)
    )
    assignee = aliased(AppUser)
    with tenant_scope(tenant_a.id):
        rows = db.session.execute(
            select(Conversation.id, assignee.email)
            .outerjoin(assignee, Conversation.assignee)
            .where(Conversation.id == conversation.id)
        ).all()
    assert rows == [(conversation.id, None)]  # the other tenant's user is not joined
