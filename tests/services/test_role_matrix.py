"""The permission matrix's ceiling (issue 8): a tenant can never grant more than the
built-in Tenant Admin holds, and what a role shows is what it grants."""

from __future__ import annotations

from sqlalchemy import select

from app.extensions import db
from app.models.user import Role
from app.services import role_matrix, tenant_roles


def _pairs_of(name: str) -> set[tuple[str, str]]:
    role = db.session.scalars(select(Role).where(Role.name == name)).one()
    return tenant_roles.role_pairs(db.session, [role.id])


def test_every_grantable_permission_is_a_tenant_admin_permission(app):
    existing = set(tenant_roles._pvms_by_pair(db.session, role_matrix.grantable_pairs()))
    beyond = existing - _pairs_of("Tenant Admin")
    assert beyond == set(), f"the matrix offers permissions Tenant Admin lacks: {beyond}"
    platform_only = (_pairs_of("Billing") | _pairs_of("Compliance")) - _pairs_of("Tenant Admin")
    assert platform_only and not (existing & platform_only)
    assert {"Tenants", "Plans", "Invoices", "PrivacyRequests", "TenantRoles"}.isdisjoint(
        view for _, view in existing
    )


def test_each_cell_round_trips_and_implies_reading_its_resource(app):
    available = tenant_roles.available_cells(db.session)
    assert {
        "contacts.export",
        "campaigns.launch",
        "conversations.view_all",
        "team.list",
    } <= available
    for cell in available:
        granted = role_matrix.cells_for(role_matrix.pairs_for({cell}))
        assert role_matrix.normalise({cell}) <= granted, cell
    assert role_matrix.normalise({"campaigns.launch"}) == {"campaigns.launch", "campaigns.list"}


def test_rows_whose_screens_do_not_exist_are_not_offered(app):
    available = tenant_roles.available_cells(db.session)
    for key, (_, pairs) in role_matrix.all_cells().items():
        present = set(tenant_roles._pvms_by_pair(db.session, pairs))
        assert (key in available) == (present == set(pairs)), key


def test_the_builtin_roles_read_as_the_matrix_says(app):
    admin = db.session.scalars(select(Role).where(Role.name == "Tenant Admin")).one()
    agent = db.session.scalars(select(Role).where(Role.name == "Agent")).one()
    available = tenant_roles.available_cells(db.session)
    assert tenant_roles.role_cells(db.session, admin) == available
    agent_cells = tenant_roles.role_cells(db.session, agent)
    assert {"conversations.list", "conversations.reply", "contacts.list"} <= agent_cells
    assert "conversations.view_all" not in agent_cells and "contacts.export" not in agent_cells
