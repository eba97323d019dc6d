"""Tenant admins define their own roles (issue 8), proven from outside: screens, crafted
posts, the Team screen's grants, immediate effect, the last-admin rule, the audit trail."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from app.extensions import db
from app.models import AppUser, Role
from app.models.audit import AuditEvent
from app.models.campaign import CampaignStatus
from app.models.tenant_role import TenantRole
from app.services import tenant_roles
from app.tenancy import tenant_scope
from tests.conftest import form_csrf_token
from tests.services.test_campaigns_service import make_campaign, make_contacts, make_template

OWNER, AGENT = "owner@acme.example", "agent@acme.example"
OTHER_OWNER = "owner@bharatfoods.example"
CAMPAIGN_MANAGER = {
    "contacts.list",
    "contacts.add",
    "contacts.edit",
    "tags.list",
    "templates.list",
    "campaigns.list",
    "campaigns.add",
    "campaigns.edit",
    "campaigns.launch",
    "campaigns.control",
}


def new_role(client, label: str, cells, description: str = ""):
    token = form_csrf_token(client, "/team-roles/new")
    return client.post(
        "/team-roles/new",
        data={"csrf_token": token, "label": label, "description": description, "perm": list(cells)},
    )


def edit_role(client, role_id: int, label: str, cells):
    token = form_csrf_token(client, f"/team-roles/{role_id}/edit")
    return client.post(
        f"/team-roles/{role_id}/edit",
        data={"csrf_token": token, "label": label, "description": "", "perm": list(cells)},
    )


def custom(label: str) -> TenantRole:
    db.session.expire_all()
    return db.session.scalars(
        select(TenantRole)
        .where(TenantRole.label == label)
        .execution_options(skip_tenant_scope=True)
    ).one()


def assign(client, user: AppUser, *role_ids: int, follow: bool = False):
    """The Team screen's edit form, as a tenant admin submits it."""
    token = form_csrf_token(client, f"/team/edit/{user.id}")
    return client.post(
        f"/team/edit/{user.id}",
        data={
            "first_name": user.first_name,
            "last_name": user.last_name,
            "phone": user.phone or "",
            "roles": [str(i) for i in role_ids],
            "csrf_token": token,
        },
        follow_redirects=follow,
    )


def role_names_of(email: str) -> set[str]:
    db.session.expire_all()
    user = db.session.scalars(
        select(AppUser).where(AppUser.email == email).execution_options(skip_tenant_scope=True)
    ).one()
    return {r.name for r in user.roles}


@pytest.fixture
def owner(client, login):
    assert login(OWNER).status_code == 302
    return client


@pytest.fixture
def manager(owner, login, user_by_email, tenant_a):
    """The demo agent turned Campaign Manager by the owner, then signed in."""
    assert new_role(owner, "Campaign Manager", CAMPAIGN_MANAGER).status_code == 302
    role = custom("Campaign Manager")
    agent = user_by_email(AGENT)
    assert assign(owner, agent, role.role_id).status_code == 302
    assert role_names_of(AGENT) == {f"t{tenant_a.id}/Campaign Manager"}
    login.logout()
    assert login(AGENT).status_code == 302
    return owner  # the same client, now signed in as the manager


# ------------------------------------------------------------------- build and show


def test_the_owner_builds_a_role_and_sees_it_with_its_matrix(owner, tenant_a):
    page = owner.get("/team-roles/new").get_data(as_text=True)
    assert 'value="contacts.export"' in page and 'value="conversations.view_all"' in page
    assert "Tenants" not in page and "Plans" not in page  # platform rows are never offered
    response = new_role(owner, "Read-only Auditor", {"audit.list", "contacts.list"}, "Looks only")
    assert response.status_code == 302
    role = custom("Read-only Auditor")
    assert role.tenant_id == tenant_a.id and role.role.name == f"t{tenant_a.id}/Read-only Auditor"
    listing = owner.get("/team-roles/").get_data(as_text=True)
    assert "Read-only Auditor" in listing and "Tenant Admin" in listing and "built-in" in listing
    shown = owner.get(f"/team-roles/{role.role_id}").get_data(as_text=True)
    assert "Looks only" in shown and 'id="matrix-audit"' in shown
    assert owner.get("/team-roles/builtin/agent").status_code == 200


def test_a_bad_name_or_an_unknown_permission_is_explained_and_nothing_is_saved(owner):
    before = db.session.scalar(select(db.func.count()).select_from(TenantRole))
    page = new_role(owner, "Tenant Admin", {"contacts.list"}).get_data(as_text=True)
    assert "built-in role" in page
    page = new_role(owner, "x", {"contacts.list"}).get_data(as_text=True)
    assert "2 to 48 characters" in page
    new_role(owner, "Sneaky", {"contacts.list"})
    page = new_role(owner, "sneaky", {"contacts.list"}).get_data(as_text=True)
    assert "already has a role named" in page
    assert db.session.scalar(select(db.func.count()).select_from(TenantRole)) == before + 1


# --------------------------------------------------------------- Campaign Manager


def test_a_campaign_manager_launches_but_cannot_open_the_team(manager, tenant_a):
    with tenant_scope(tenant_a.id):
        people = make_contacts(tenant_a.id)
        template = make_template(tenant_a.id)
        campaign = make_campaign(tenant_a.id, template, include=[people["tags"][0].id])
        db.session.commit()
    token = form_csrf_token(manager, f"/campaigns/show/{campaign.id}")
    assert (
        manager.post(f"/campaigns/{campaign.id}/launch", data={"csrf_token": token}).status_code
        == 302
    )
    db.session.refresh(campaign)
    assert campaign.status == CampaignStatus.sending
    assert manager.get("/team/list/").status_code == 403
    assert manager.get("/team-roles/").status_code == 403
    assert manager.get("/api/v1/team/").status_code == 403
    assert manager.get("/my-invoices/list/").status_code == 403
    assert manager.get("/api/v1/contact/").status_code == 200
    menu = manager.get("/contacts/list/").get_data(as_text=True)
    assert "/campaigns/list/" in menu and "/team/list/" not in menu


# --------------------------------------------------------------- crafted posts


def test_crafted_posts_cannot_grant_platform_permissions_or_touch_other_tenants(
    owner, login, tenant_a, tenant_b
):
    # A platform permission posted as a cell, and a raw permission-view id: refused whole.
    pvm_ids = (
        db.session.scalars(select(Role).where(Role.name == "Platform Admin")).one().permissions
    )
    response = new_role(owner, "Escalator", {"contacts.list", "tenants.list", str(pvm_ids[0].id)})
    assert "Not a permission a tenant role can hold" in response.get_data(as_text=True)
    assert (
        db.session.scalars(select(TenantRole).where(TenantRole.label == "Escalator")).first()
        is None
    )
    # Bharat Foods' role, seen from Acme: invisible, not editable, not deletable, not assignable.
    login.logout()
    assert login(OTHER_OWNER).status_code == 302
    assert new_role(owner, "Bharat Packers", {"contacts.list"}).status_code == 302
    theirs = custom("Bharat Packers")
    login.logout()
    assert login(OWNER).status_code == 302
    assert "Bharat Packers" not in owner.get("/team-roles/").get_data(as_text=True)
    assert owner.get(f"/team-roles/{theirs.role_id}").status_code == 404
    token = form_csrf_token(owner, "/team-roles/new")
    data = {"csrf_token": token, "label": "Hijacked", "perm": ["team.list"]}
    assert owner.post(f"/team-roles/{theirs.role_id}/edit", data=data).status_code == 404
    assert (
        owner.post(f"/team-roles/{theirs.role_id}/delete", data={"csrf_token": token}).status_code
        == 404
    )
    agent = db.session.scalars(select(AppUser).where(AppUser.email == AGENT)).one()
    page = assign(owner, agent, theirs.role_id).get_data(as_text=True)
    assert "Not a valid choice" in page
    assert role_names_of(AGENT) == {"Agent"}
    db.session.expire_all()
    assert custom("Bharat Packers").role.name == f"t{tenant_b.id}/Bharat Packers"
    assert tenant_roles.role_cells(db.session, custom("Bharat Packers").role) == {"contacts.list"}
    # FAB's own role screens stay platform-only.
    assert owner.get("/roles/list/").status_code == 403
    crafted = {"name": "Platform Admin 2", "csrf_token": token}
    assert owner.post("/roles/add", data=crafted).status_code == 403
    assert db.session.scalars(select(Role).where(Role.name == "Platform Admin 2")).first() is None


def test_a_custom_role_cannot_be_granted_in_another_tenant_even_by_the_orm(
    owner, tenant_a, tenant_b, user_by_email
):
    assert new_role(owner, "Packer", {"contacts.list"}).status_code == 302
    role = custom("Packer").role
    other = user_by_email(OTHER_OWNER)
    from app.tenancy import TenantIsolationError

    with tenant_scope(tenant_b.id), pytest.raises(TenantIsolationError):
        other.roles = [*other.roles, role]
        db.session.flush()
    db.session.rollback()


# ---------------------------------------------------------- immediate effect


def test_removing_export_contacts_stops_a_member_at_once(owner, login, user_by_email, tenant_a):
    assert new_role(owner, "Exporter", {"contacts.list", "contacts.export"}).status_code == 302
    role = custom("Exporter")
    assert assign(owner, user_by_email(AGENT), role.role_id).status_code == 302
    member = owner.application.test_client()
    from tests.conftest import LoginHelper

    assert LoginHelper(member)(AGENT).status_code == 302
    assert member.get("/contacts/export.csv").status_code == 200
    # The owner removes "export contacts"; the member, still signed in, is refused next.
    assert edit_role(owner, role.role_id, "Exporter", {"contacts.list"}).status_code == 302
    assert member.get("/contacts/export.csv").status_code == 403
    assert member.get("/contacts/list/").status_code == 200


def test_an_export_in_flight_stops_when_the_permission_goes(owner, user_by_email, tenant_a):
    from app.models.contact import Contact
    from app.services import contact_export
    from app.services.tenant_roles import PermissionRevokedError, permission_guard

    assert new_role(owner, "Exporter", {"contacts.list", "contacts.export"}).status_code == 302
    role = custom("Exporter")
    agent = user_by_email(AGENT)
    agent.roles = [role.role]
    db.session.commit()
    with tenant_scope(tenant_a.id):
        for n in range(contact_export.EXPORT_BATCH + 5):
            db.session.add(
                Contact(tenant_id=tenant_a.id, phone=f"+9199000{n:05d}", wa_id=f"9199000{n:05d}")
            )
        db.session.commit()
        stream = contact_export.export_csv(
            select(Contact).order_by(Contact.id),
            permission_guard(agent.id, ("can_export", "Contacts")),
        )
        next(stream)  # the header and first batch go out
        role.role.permissions = [
            p for p in role.role.permissions if p.permission.name != "can_export"
        ]
        db.session.commit()
        with pytest.raises(PermissionRevokedError):
            for _ in stream:
                pass


# ---------------------------------------------------------- team and last admin


def test_the_last_active_tenant_admin_cannot_be_demoted_or_deactivated(owner, user_by_email):
    assert new_role(owner, "Helper", {"contacts.list"}).status_code == 302
    me = user_by_email(OWNER)
    page = assign(owner, me, custom("Helper").role_id, follow=True).get_data(as_text=True)
    assert "last active Tenant Admin" in page
    assert "Tenant Admin" in role_names_of(OWNER)
    token = form_csrf_token(owner, "/team/list/")
    owner.post(
        "/team/action_post",
        data={"action": "deactivate", "rowid": [str(me.id)], "csrf_token": token},
    )
    db.session.refresh(me)
    assert me.active


def test_a_member_with_team_access_grants_only_what_they_hold(owner, login, user_by_email):
    assert (
        new_role(owner, "Team Lead", {"team.list", "team.edit", "contacts.list"}).status_code == 302
    )
    assert new_role(owner, "Exporter", {"contacts.list", "contacts.export"}).status_code == 302
    lead_role, exporter = custom("Team Lead"), custom("Exporter")
    agent = user_by_email(AGENT)
    assert assign(owner, agent, lead_role.role_id).status_code == 302
    login.logout()
    assert login(AGENT).status_code == 302
    owner_user = user_by_email(OWNER)
    # Exporter holds a permission the lead lacks; Tenant Admin too: both refused.
    page = assign(owner, owner_user, exporter.role_id, follow=True).get_data(as_text=True)
    assert "You cannot grant" in page
    assert "Tenant Admin" in role_names_of(OWNER)
    token = form_csrf_token(owner, "/team/list/")
    owner.post(
        "/team/action_post",
        data={"action": "deactivate", "rowid": [str(owner_user.id)], "csrf_token": token},
    )
    db.session.refresh(owner_user)
    assert owner_user.active


# -------------------------------------------------------------- delete and audit


def test_role_changes_are_audited_with_what_was_added_and_removed(owner, tenant_a):
    new_role(owner, "Support", {"conversations.list"})
    role = custom("Support")
    role_id = role.role_id
    edit_role(owner, role.role_id, "Senior Agent", {"conversations.list", "conversations.view_all"})
    token = form_csrf_token(owner, f"/team-roles/{role.role_id}")
    assert (
        owner.post(f"/team-roles/{role.role_id}/delete", data={"csrf_token": token}).status_code
        == 302
    )
    events = db.session.scalars(
        select(AuditEvent)
        .where(AuditEvent.object_type == "tenant_role", AuditEvent.action.like("role.%"))
        .where(AuditEvent.tenant_id == tenant_a.id, AuditEvent.object_id == str(role_id))
        .order_by(AuditEvent.id)
    ).all()
    assert [e.action for e in events] == ["role.created", "role.updated", "role.deleted"]
    created, updated, deleted = (e.details for e in events)
    assert created["permissions_added"] == ["conversations.list"]
    assert updated["permissions_added"] == ["conversations.view_all"]
    assert updated["renamed_from"] == "Support" and updated["role"] == "Senior Agent"
    assert deleted["permissions_removed"] == ["conversations.list", "conversations.view_all"]
    assert all(e.actor_id is not None for e in events)
    assert db.session.get(Role, role_id) is None


def test_a_role_in_use_cannot_be_deleted(owner, user_by_email):
    new_role(owner, "Busy", {"contacts.list"})
    role = custom("Busy")
    assign(owner, user_by_email(AGENT), role.role_id)
    token = form_csrf_token(owner, f"/team-roles/{role.role_id}")
    page = owner.post(
        f"/team-roles/{role.role_id}/delete", data={"csrf_token": token}, follow_redirects=True
    ).get_data(as_text=True)
    assert "1 member(s) hold" in page
    assert custom("Busy") is not None


def test_a_senior_agent_sees_every_conversation(owner, login, user_by_email, tenant_a):
    from app.models.conversation import Conversation

    new_role(owner, "Senior Agent", {"conversations.list", "conversations.view_all"})
    assign(owner, user_by_email(AGENT), custom("Senior Agent").role_id)
    login.logout()
    assert login(AGENT).status_code == 302
    with tenant_scope(tenant_a.id):
        total = db.session.scalar(select(db.func.count()).select_from(Conversation))
    body = owner.get("/api/v1/conversation/?q=(page_size:100)").get_json()
    assert body["count"] == total > 0


# ------------------------------------------------------------- FAB's platform screen

ADMIN = "admin@xigmapro.example"


def test_platform_admins_cannot_edit_copy_or_delete_a_tenants_role_on_fab_screens(
    owner, login, csrf_token, tenant_a
):
    """FAB's List Roles shows a tenant's role to platform admins, but its permissions
    come from the role matrix and only the tenant's admins change it: edit, copy and
    delete there are refused with a reason, and a platform role cannot take a name in
    the tenants' namespace."""
    new_role(owner, "Support desk", {"contacts.list"})
    role = custom("Support desk")
    name, cells = role.role.name, tenant_roles.role_cells(db.session, role.role)
    login.logout()
    assert login(ADMIN).status_code == 302
    client = owner

    token = form_csrf_token(client, f"/roles/edit/{role.role_id}")
    page = client.post(
        f"/roles/edit/{role.role_id}",
        data={"csrf_token": token, "name": "Renamed", "permissions": []},
        follow_redirects=True,
    )
    assert page.status_code == 200
    assert "Support desk is a tenant" in page.get_data(as_text=True)

    token = csrf_token("/roles/list/")
    page = client.post(
        f"/roles/delete/{role.role_id}", data={"csrf_token": token}, follow_redirects=True
    )
    assert "cannot be deleted here" in page.get_data(as_text=True)

    page = client.post(
        "/roles/action_post",
        data={"action": "copyrole", "rowid": [str(role.role_id)], "csrf_token": token},
        follow_redirects=True,
    )
    assert "cannot be copied here" in page.get_data(as_text=True)

    token = form_csrf_token(client, "/roles/add")
    page = client.post(
        "/roles/add",
        data={"csrf_token": token, "name": f"t{tenant_a.id}/Fake", "permissions": []},
        follow_redirects=True,
    )
    assert "reserved for tenants" in page.get_data(as_text=True)

    db.session.expire_all()
    kept = custom("Support desk")
    assert kept.role.name == name and tenant_roles.role_cells(db.session, kept.role) == cells
    names = set(db.session.scalars(select(Role.name)))
    assert f"{name} copy" not in names and f"t{tenant_a.id}/Fake" not in names
