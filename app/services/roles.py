"""Declared roles -> FAB's role and permission tables (safe to rerun)."""

from __future__ import annotations

import re
from typing import Any

from flask_appbuilder import AppBuilder
from sqlalchemy import select

from app.extensions import db
from app.models.user import Role


def matching_permission_views(all_pvms: list[Any], rules: list[tuple[str, str]]) -> list[Any]:
    """The permission-views whose (permission, view menu) names fully match a rule."""
    compiled = [(re.compile(p), re.compile(v)) for p, v in rules]
    return [
        pvm
        for pvm in all_pvms
        if any(
            p.fullmatch(pvm.permission.name) and v.fullmatch(pvm.view_menu.name)
            for p, v in compiled
        )
    ]


def sync_roles(appbuilder: AppBuilder, roles_config: dict[str, dict]) -> dict[str, int]:
    """Register every view's permissions, then set each declared role's permissions exactly.

    Returns the permission count per role. The caller commits.
    """
    sm = appbuilder.sm
    roles: dict[str, Role] = {}
    # Roles first: FAB grants each new permission to the admin role as it registers it.
    for name in [*roles_config, sm.auth_role_public]:
        role = db.session.scalars(select(Role).where(Role.name == name)).first()
        if role is None:
            role = Role(name=name)
            db.session.add(role)
        roles[name] = role
    db.session.commit()
    appbuilder.add_permissions(update_perms=True)
    all_pvms = list(db.session.scalars(select(sm.permissionview_model)))
    report: dict[str, int] = {}
    for name, spec in roles_config.items():
        role = roles[name]
        role.permissions = matching_permission_views(all_pvms, spec["permissions"])
        report[name] = len(role.permissions)
    return report
