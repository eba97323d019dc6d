"""Tenant-defined roles (issue 8): create, edit, delete, and the rules of granting.

Design (see docs/roles.md):

* **FAB stays the one authority.** A custom role is an ``ab_role`` row whose permissions
  are ordinary ``ab_permission_view_role`` rows, so `has_access` (menus, buttons, views,
  APIs) answers for it with no second mechanism. `TenantRole` links the row to its
  tenant; the stored FAB name is namespaced, ``t<tenant id>/<label>``, because FAB's role
  names are globally unique and two tenants may both want a "Campaign Manager".
* **A ceiling, not a filter.** Permissions are chosen as cells of `role_matrix`; a role's
  permission rows are computed from cells, never taken from the request, so a crafted
  post can name only cells, and an unknown cell refuses the whole change.
* **Only a Tenant Admin of the tenant manages its roles.** Other members may grant
  (on the Team screen) only roles whose permissions they hold themselves, so nobody
  climbs above their own role through a role.
* **Immediate effect.** Permissions are read from the database once per request
  (`AppSecurityManager._has_view_access`), so a change applies to the next request of
  every member, API calls included.
* **Audited.** Each change records who, which role, and the cells added and removed.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from flask import current_app
from flask_appbuilder.security.sqla.models import (
    Permission,
    PermissionView,
    ViewMenu,
    assoc_permissionview_role,
)
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.models.tenant_role import LABEL_MAX, TenantRole
from app.models.user import AppUser, Role, assoc_user_role, role_label
from app.services import audit, role_matrix
from app.services.exceptions import (
    RoleGrantError,
    RoleInUseError,
    RoleNotFoundError,
    RoleValidationError,
)

TENANT_ADMIN = "Tenant Admin"
_LABEL_OK = re.compile(r"^[\w][\w &()'.,+\-/]*$")


def fab_name(tenant_id: int, label: str) -> str:
    """The ``ab_role.name`` of a tenant's role (unique across tenants)."""
    return f"t{tenant_id}/{label}"


display_name = role_label  # what screens show for a role name


# ------------------------------------------------------------------------ permissions


def _pvms_by_pair(session: Session, pairs: Iterable[role_matrix.Pair]) -> dict[Any, Any]:
    wanted = set(pairs)
    views = {view for _, view in wanted}
    rows = session.execute(
        select(PermissionView, Permission.name, ViewMenu.name)
        .join(Permission, PermissionView.permission_id == Permission.id)
        .join(ViewMenu, PermissionView.view_menu_id == ViewMenu.id)
        .where(ViewMenu.name.in_(views))
    ).all()
    return {(perm, view): pvm for pvm, perm, view in rows if (perm, view) in wanted}


def available_cells(session: Session) -> set[str]:
    """The matrix cells this installation can grant: every pair of the cell exists
    (a row appears once its screens are registered, e.g. API keys)."""
    known = _pvms_by_pair(session, role_matrix.grantable_pairs())
    return {
        key
        for key, (_, pairs) in role_matrix.all_cells().items()
        if pairs and all(pair in known for pair in pairs)
    }


def role_pairs(session: Session, role_ids: Iterable[int]) -> set[role_matrix.Pair]:
    """The (permission, view) pairs held by the roles, read from the database."""
    ids = list(role_ids)
    if not ids:
        return set()
    link = assoc_permissionview_role
    rows = session.execute(
        select(Permission.name, ViewMenu.name)
        .select_from(PermissionView)
        .join(Permission, PermissionView.permission_id == Permission.id)
        .join(ViewMenu, PermissionView.view_menu_id == ViewMenu.id)
        .join(link, link.c.permission_view_id == PermissionView.id)
        .where(link.c.role_id.in_(ids))
    ).all()
    return {(perm, view) for perm, view in rows}


def role_cells(session: Session, role: Role) -> set[str]:
    """The matrix cells a stored role grants in full."""
    return role_matrix.cells_for(role_pairs(session, [role.id]))


def _resolve_cells(session: Session, cells: Iterable[str]) -> tuple[set[str], list[Any]]:
    """Normalised cells and their permission rows.

    :raises RoleValidationError: naming any cell outside the matrix (a platform
        permission, a typo, another product's screen): nothing is granted then.
    """
    chosen = {str(c).strip() for c in cells if str(c).strip()}
    unknown = sorted(chosen - available_cells(session))
    if unknown:
        raise RoleValidationError(
            f"Not a permission a tenant role can hold: {', '.join(unknown)}.", "permissions"
        )
    chosen = role_matrix.normalise(chosen)
    pairs = role_matrix.pairs_for(chosen)
    pvms = _pvms_by_pair(session, pairs)
    return chosen, [pvms[p] for p in sorted(pairs) if p in pvms]


# ------------------------------------------------------------------------------ roles


def builtin_role_names() -> tuple[str, ...]:
    return tuple(current_app.config["TENANT_ROLES"])


def custom_roles(session: Session, tenant_id: int) -> list[TenantRole]:
    return list(
        session.scalars(
            select(TenantRole)
            .where(TenantRole.tenant_id == tenant_id)
            .order_by(func.lower(TenantRole.label))
        )
    )


def custom_role_names(session: Session, tenant_id: int | None) -> list[str]:
    """FAB names of the tenant's own roles."""
    if tenant_id is None:
        return []
    return [tr.role.name for tr in custom_roles(session, tenant_id)]


def _custom_role_row(session: Session, role_id: int) -> Any:
    """(tenant_id, label) of a custom role, whatever the tenant; None for a built-in or
    platform role. Reads without flushing: callers may hold a role with unsaved edits."""
    with session.no_autoflush:
        return session.execute(
            select(TenantRole.tenant_id, TenantRole.label)
            .where(TenantRole.role_id == role_id)
            .execution_options(skip_tenant_scope=True)
        ).first()


def owning_tenant(session: Session, role_id: int) -> int | None:
    """The tenant a custom role belongs to (None: a built-in or platform role)."""
    row = _custom_role_row(session, role_id)
    return row.tenant_id if row is not None else None


def tenant_label(session: Session, role_id: int) -> str | None:
    """A custom role's label, whatever the tenant (None: a built-in or platform role)."""
    row = _custom_role_row(session, role_id)
    return row.label if row is not None else None


def get_custom_role(session: Session, tenant_id: int, role_id: int) -> TenantRole:
    """:raises RoleNotFoundError: unknown, built-in, or another tenant's role."""
    found = session.get(TenantRole, role_id)
    if found is None or found.tenant_id != tenant_id:
        raise RoleNotFoundError("No such role.")
    return found


def member_count(session: Session, role_id: int) -> int:
    stmt = (
        select(func.count())
        .select_from(assoc_user_role)
        .where(assoc_user_role.c.role_id == role_id)
    )
    return int(session.execute(stmt).scalar() or 0)


def members(session: Session, tenant_id: int, role_id: int) -> list[AppUser]:
    return list(
        session.scalars(
            select(AppUser)
            .join(assoc_user_role, assoc_user_role.c.user_id == AppUser.id)
            .where(assoc_user_role.c.role_id == role_id, AppUser.tenant_id == tenant_id)
            .order_by(AppUser.first_name, AppUser.last_name)
        )
    )


def _check_manager(session: Session, actor: AppUser, tenant_id: int) -> None:
    from app.services.users import stored_role_names

    if actor.tenant_id != tenant_id or TENANT_ADMIN not in stored_role_names(session, actor.id):
        raise RoleGrantError("Only a Tenant Admin of this business can manage its roles.")


def _clean_label(session: Session, tenant_id: int, label: str, exclude: int | None) -> str:
    label = " ".join((label or "").split())
    if not 2 <= len(label) <= LABEL_MAX:
        raise RoleValidationError(f"Give the role a name of 2 to {LABEL_MAX} characters.", "label")
    if not _LABEL_OK.match(label):
        raise RoleValidationError(
            "Use letters, digits, spaces and & ( ) ' . , + - / in a role name.", "label"
        )
    reserved = {n.lower() for n in (*builtin_role_names(), *current_app.config["PLATFORM_ROLES"])}
    if label.lower() in reserved or label.lower() in {"admin", "public"}:
        raise RoleValidationError(f"“{label}” is a built-in role's name.", "label")
    clash = session.execute(
        select(TenantRole.role_id).where(
            TenantRole.tenant_id == tenant_id,
            func.lower(TenantRole.label) == label.lower(),
            TenantRole.role_id != (exclude or 0),
        )
    ).first()
    if clash:
        raise RoleValidationError(f"This business already has a role named “{label}”.", "label")
    return label


def _clean_description(description: str | None) -> str | None:
    text = " ".join((description or "").split())
    if len(text) > 200:
        raise RoleValidationError("Keep the description under 200 characters.", "description")
    return text or None


def create_role(
    session: Session,
    actor: AppUser,
    tenant_id: int,
    *,
    label: str,
    cells: Iterable[str],
    description: str | None = None,
) -> TenantRole:
    """A new role of ``tenant_id`` granting ``cells``. The caller commits."""
    _check_manager(session, actor, tenant_id)
    label = _clean_label(session, tenant_id, label, None)
    chosen, pvms = _resolve_cells(session, cells)
    role = Role(name=fab_name(tenant_id, label))
    role.permissions = pvms
    tenant_role = TenantRole(
        tenant_id=tenant_id, role=role, label=label, description=_clean_description(description)
    )
    session.add(tenant_role)
    session.flush()
    audit.record(
        "role.created",
        tenant_role,
        session=session,
        role=label,
        permissions_added=sorted(chosen),
    )
    return tenant_role


def update_role(
    session: Session,
    actor: AppUser,
    tenant_id: int,
    role_id: int,
    *,
    label: str,
    cells: Iterable[str],
    description: str | None = None,
) -> dict[str, list[str]]:
    """Rename and re-grant a role; returns the cells added and removed. Caller commits."""
    _check_manager(session, actor, tenant_id)
    tenant_role = get_custom_role(session, tenant_id, role_id)
    new_label = _clean_label(session, tenant_id, label, role_id)
    chosen, pvms = _resolve_cells(session, cells)
    before = role_cells(session, tenant_role.role)
    diff = {"added": sorted(chosen - before), "removed": sorted(before - chosen)}
    old_label = tenant_role.label
    tenant_role.label = new_label
    tenant_role.description = _clean_description(description)
    tenant_role.role.name = fab_name(tenant_id, new_label)
    tenant_role.role.permissions = pvms
    session.flush()
    details: dict[str, Any] = {
        "role": new_label,
        "permissions_added": diff["added"],
        "permissions_removed": diff["removed"],
    }
    if old_label != new_label:
        details["renamed_from"] = old_label
    audit.record("role.updated", tenant_role, session=session, **details)
    return diff


def delete_role(session: Session, actor: AppUser, tenant_id: int, role_id: int) -> str:
    """Delete a role no member holds; returns its label. The caller commits.

    :raises RoleInUseError: while members hold it (say who to reassign first).
    """
    _check_manager(session, actor, tenant_id)
    tenant_role = get_custom_role(session, tenant_id, role_id)
    held_by = member_count(session, role_id)
    if held_by:
        raise RoleInUseError(
            f"{held_by} member(s) hold “{tenant_role.label}”: give them another role on "
            "the Team screen first."
        )
    label = tenant_role.label
    before = role_cells(session, tenant_role.role)
    audit.record(
        "role.deleted",
        tenant_role,
        session=session,
        role=label,
        permissions_removed=sorted(before),
    )
    session.delete(tenant_role.role)  # cascades: its tenant link and permission rows
    session.flush()
    return label


# -------------------------------------------------------------------- granting rules


def assignable_role_names(session: Session, tenant_id: int | None) -> list[str]:
    """Every role a member of ``tenant_id`` may hold: the built-ins and the tenant's own."""
    return [*builtin_role_names(), *custom_role_names(session, tenant_id)]


def manages_members(session: Session, actor: AppUser) -> bool:
    """Whether ``actor``'s roles let them invite or edit team members."""
    from app.services.users import stored_role_ids

    held = role_pairs(session, stored_role_ids(session, actor.id))
    return bool(held & {("can_add", "Team"), ("can_edit", "Team")})


def roles_beyond(session: Session, actor: AppUser, roles: Iterable[Role]) -> list[str]:
    """The names of ``roles`` carrying a permission ``actor`` does not hold."""
    from app.services.users import stored_role_ids

    held = role_pairs(session, stored_role_ids(session, actor.id))
    return sorted(role.name for role in roles if not role_pairs(session, [role.id]) <= held)


def holds(session: Session, user_id: int, pair: role_matrix.Pair) -> bool:
    """Whether ``user_id``'s stored roles grant ``pair`` now (read afresh, no cache)."""
    from app.services.users import stored_role_ids

    return pair in role_pairs(session, stored_role_ids(session, user_id))


class PermissionRevokedError(RoleGrantError):
    """The member lost the permission while the action was running."""


def permission_guard(user_id: int, pair: role_matrix.Pair):
    """A callable that raises `PermissionRevokedError` once ``user_id`` no longer holds
    ``pair``: long streams (exports) call it between batches, so removing the permission
    stops them at the next batch, not at the end."""
    from app.extensions import db

    def guard() -> None:
        if not holds(db.session, user_id, pair):
            raise PermissionRevokedError(f"permission {pair[0]} on {pair[1]} was removed")

    return guard
