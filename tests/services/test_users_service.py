"""Role-grant policy and the last-admin rule, at the service level."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from app.extensions import db
from app.models import AppUser, Role
from app.models.user import role_label
from app.services import users
from app.services.exceptions import LastTenantAdminError, RoleGrantError


def _role(name: str) -> Role:
    return db.session.scalars(select(Role).where(Role.name == name)).one()


def _admin(tenant, email: str, *, accepted: bool) -> AppUser:
    user = AppUser(
        email=email,
        username=email,
        first_name="Second",
        last_name="Admin",
        active=True,
        tenant_id=tenant.id,
        password="x" if accepted else None,
    )
    user.roles = [_role("Tenant Admin")]
    db.session.add(user)
    db.session.commit()
    return user


def test_an_invited_admin_does_not_keep_the_tenant_administered(tenant_a, user_by_email):
    owner = user_by_email("owner@acme.example")
    _admin(tenant_a, "invited-admin@acme.example", accepted=False)
    with pytest.raises(LastTenantAdminError):
        users.set_roles(db.session, owner, owner, ["Agent"])


def test_an_admin_may_step_down_once_another_signed_up_admin_exists(tenant_a, user_by_email):
    owner = user_by_email("owner@acme.example")
    _admin(tenant_a, "second-admin@acme.example", accepted=True)
    owner.roles = [_role("Agent")]  # as a FAB form would, before the service runs
    users.set_roles(db.session, owner, owner, ["Agent"])
    db.session.commit()
    assert [r.name for r in user_by_email("owner@acme.example").roles] == ["Agent"]


def test_stored_roles_decide_what_an_actor_may_grant(user_by_email):
    agent = user_by_email("agent@acme.example")
    agent.roles = [_role("Tenant Admin")]  # unsaved self-promotion must not count
    with pytest.raises(RoleGrantError):
        users.set_roles(db.session, agent, agent, ["Tenant Admin"])


@pytest.mark.parametrize(
    ("actor", "tenant_slug", "expected"),
    [
        ("admin@xigmapro.example", None, ("Platform Admin", "Billing", "Compliance")),
        # Acme's own demo role (issue 8) is grantable in Acme only.
        ("admin@xigmapro.example", "acme", ("Tenant Admin", "Agent", "Marketing")),
        ("owner@acme.example", "acme", ("Tenant Admin", "Agent", "Marketing")),
        ("owner@bharatfoods.example", "bharatfoods", ("Tenant Admin", "Agent")),
        ("owner@acme.example", "bharatfoods", ()),
        ("owner@acme.example", None, ()),
        ("agent@acme.example", "acme", ()),
        ("billing@xigmapro.example", None, ()),
    ],
)
def test_grantable_roles(actor, tenant_slug, expected, user_by_email, tenant_a, tenant_b):
    tenant_id = {"acme": tenant_a.id, "bharatfoods": tenant_b.id, None: None}[tenant_slug]
    granted = users.grantable_role_names(user_by_email(actor), tenant_id)
    assert tuple(role_label(name) for name in granted) == expected
    assert all(name.startswith(f"t{tenant_id}/") for name in granted if "/" in name)
