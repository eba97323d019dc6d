"""Business → Roles: a tenant admin composes the tenant's own roles (issue 8).

A plain FAB `BaseView` (the matrix is not a model form): every route is behind
``has_access`` on ``TenantRoles``, which only the built-in Tenant Admin role holds, and
every lookup goes through `app.services.tenant_roles` with the current tenant, so
another tenant's role id is a 404. Posted permissions are matrix cell keys
(``perm=contacts.list``), never permission ids.
"""

from __future__ import annotations

from typing import Any

from flask import abort, flash, g, redirect, request, url_for
from flask_appbuilder import BaseView, expose
from flask_appbuilder.security.decorators import has_access
from flask_wtf import FlaskForm
from sqlalchemy import select
from wtforms import StringField, TextAreaField
from wtforms.validators import Length

from app.extensions import db
from app.models.audit import AuditEvent
from app.models.tenant_role import LABEL_MAX
from app.models.user import Role
from app.services import role_matrix, tenant_roles
from app.services.exceptions import RoleNotFoundError, ValidationError, WofficeError
from app.tenancy import current_tenant_id
from app.views._format import ist

BUILTIN_SLUGS = {"tenant-admin": "Tenant Admin", "agent": "Agent"}
BUILTIN_HELP = {
    "Tenant Admin": "Everything of this business, including the team and its roles. "
    "Cannot be edited or deleted; a business always keeps one active Tenant Admin.",
    "Agent": "Answers the conversations assigned to them and reads contacts. "
    "Cannot be edited or deleted.",
}


class RoleForm(FlaskForm):
    label = StringField("Name", validators=[Length(max=LABEL_MAX)])
    description = TextAreaField("Description", validators=[Length(max=200)])


class DeleteForm(FlaskForm):
    """CSRF only."""


def _matrix_rows(available: set[str], granted: set[str]) -> list[dict[str, Any]]:
    """The matrix as the template draws it: rows with at least one available cell."""
    rows = []
    for resource in role_matrix.RESOURCES:
        cells = []
        for column, _ in role_matrix.COLUMNS:
            key = f"{resource.key}.{column}"
            cells.append({"key": key, "available": key in available, "on": key in granted})
        specials = [
            {"key": k, "label": s.label, "help": s.help, "on": k in granted}
            for s in resource.specials
            if (k := f"{resource.key}.{s.key}") in available
        ]
        if any(c["available"] for c in cells) or specials:
            rows.append(
                {"resource": resource, "cells": cells, "specials": specials, "help": resource.help}
            )
    return rows


class TenantRolesView(BaseView):
    route_base = "/team-roles"
    class_permission_name = "TenantRoles"
    default_view = "index"
    base_permissions = ["can_list", "can_show", "can_add", "can_edit", "can_delete"]
    method_permission_name = {
        "index": "list",
        "show": "show",
        "builtin": "show",
        "add": "add",
        "edit": "edit",
        "delete": "delete",
    }

    def _tenant_id(self) -> int:
        tenant_id = current_tenant_id()
        if tenant_id is None:
            abort(404)  # platform staff hold no tenant's roles
        return tenant_id

    def _role(self, role_id: int):
        try:
            return tenant_roles.get_custom_role(db.session, self._tenant_id(), role_id)
        except RoleNotFoundError:
            abort(404)

    @expose("/")
    @has_access
    def index(self) -> Any:
        tenant_id = self._tenant_id()
        builtins = [
            {
                "label": name,
                "slug": slug,
                "help": BUILTIN_HELP[name],
                "members": self._builtin_members(tenant_id, name),
            }
            for slug, name in BUILTIN_SLUGS.items()
        ]
        custom = [
            {
                "role": tr,
                "members": tenant_roles.member_count(db.session, tr.role_id),
                "cells": len(tenant_roles.role_cells(db.session, tr.role)),
            }
            for tr in tenant_roles.custom_roles(db.session, tenant_id)
        ]
        return self.render_template(
            "woffice/tenant_roles.html",
            title="Roles",
            builtins=builtins,
            custom=custom,
            delete_form=DeleteForm(),
        )

    @expose("/builtin/<slug>")
    @has_access
    def builtin(self, slug: str) -> Any:
        name = BUILTIN_SLUGS.get(slug) or abort(404)
        role = db.session.scalars(select(Role).where(Role.name == name)).first() or abort(404)
        granted = tenant_roles.role_cells(db.session, role)
        return self.render_template(
            "woffice/tenant_role_show.html",
            title=name,
            label=name,
            description=BUILTIN_HELP[name],
            rows=_matrix_rows(tenant_roles.available_cells(db.session), granted),
            columns=role_matrix.COLUMNS,
            members=tenant_roles.members(db.session, self._tenant_id(), role.id),
            history=[],
            tenant_role=None,
            ist=ist,
        )

    @expose("/<int:role_id>")
    @has_access
    def show(self, role_id: int) -> Any:
        tr = self._role(role_id)
        history = db.session.scalars(
            select(AuditEvent)
            .where(
                AuditEvent.tenant_id == tr.tenant_id,
                AuditEvent.object_type == "tenant_role",
                AuditEvent.object_id == str(tr.role_id),
                AuditEvent.action.like("role.%"),
            )
            .order_by(AuditEvent.id.desc())
            .limit(50)
        ).all()
        return self.render_template(
            "woffice/tenant_role_show.html",
            title=tr.label,
            label=tr.label,
            description=tr.description,
            rows=_matrix_rows(
                tenant_roles.available_cells(db.session),
                tenant_roles.role_cells(db.session, tr.role),
            ),
            columns=role_matrix.COLUMNS,
            members=tenant_roles.members(db.session, tr.tenant_id, tr.role_id),
            history=history,
            tenant_role=tr,
            delete_form=DeleteForm(),
            ist=ist,
        )

    @expose("/new", methods=["GET", "POST"])
    @has_access
    def add(self) -> Any:
        tenant_id = self._tenant_id()
        form = RoleForm()
        chosen = set(request.form.getlist("perm"))
        if form.validate_on_submit():
            try:
                tr = tenant_roles.create_role(
                    db.session,
                    g.user,
                    tenant_id,
                    label=form.label.data,
                    description=form.description.data,
                    cells=chosen,
                )
            except WofficeError as exc:
                db.session.rollback()
                self._form_error(form, exc)
            else:
                db.session.commit()
                flash(f"Role “{tr.label}” created. Assign it on the Team screen.", "success")
                return redirect(url_for(".show", role_id=tr.role_id))
        return self._render_form(form, chosen, None)

    @expose("/<int:role_id>/edit", methods=["GET", "POST"])
    @has_access
    def edit(self, role_id: int) -> Any:
        tr = self._role(role_id)
        form = RoleForm(obj=tr)
        if request.method == "POST":
            chosen = set(request.form.getlist("perm"))
        else:
            chosen = tenant_roles.role_cells(db.session, tr.role)
        if form.validate_on_submit():
            try:
                diff = tenant_roles.update_role(
                    db.session,
                    g.user,
                    tr.tenant_id,
                    role_id,
                    label=form.label.data,
                    description=form.description.data,
                    cells=chosen,
                )
            except WofficeError as exc:
                db.session.rollback()
                self._form_error(form, exc)
            else:
                db.session.commit()
                flash(
                    f"Role “{tr.label}” saved: {len(diff['added'])} permission(s) added, "
                    f"{len(diff['removed'])} removed. Members have the change on their next "
                    "click.",
                    "success",
                )
                return redirect(url_for(".show", role_id=role_id))
        return self._render_form(form, chosen, tr)

    @expose("/<int:role_id>/delete", methods=["POST"])
    @has_access
    def delete(self, role_id: int) -> Any:
        tr = self._role(role_id)
        if not DeleteForm().validate_on_submit():
            flash("The form expired: try again.", "warning")
            return redirect(url_for(".show", role_id=role_id))
        try:
            label = tenant_roles.delete_role(db.session, g.user, tr.tenant_id, role_id)
        except WofficeError as exc:
            db.session.rollback()
            flash(str(exc), "danger")
            return redirect(url_for(".show", role_id=role_id))
        db.session.commit()
        flash(f"Role “{label}” deleted.", "success")
        return redirect(url_for(".index"))

    # ------------------------------------------------------------------ helpers

    def _builtin_members(self, tenant_id: int, name: str) -> int:
        role = db.session.scalars(select(Role).where(Role.name == name)).first()
        return len(tenant_roles.members(db.session, tenant_id, role.id)) if role else 0

    @staticmethod
    def _form_error(form: RoleForm, exc: WofficeError) -> None:
        field = getattr(exc, "field", None) if isinstance(exc, ValidationError) else None
        if field in ("label", "description"):
            getattr(form, field).errors = [*getattr(form, field).errors, str(exc)]
        else:
            flash(str(exc), "danger")

    def _render_form(self, form: RoleForm, chosen: set[str], tr) -> Any:
        return self.render_template(
            "woffice/tenant_role_form.html",
            title=f"Edit role “{tr.label}”" if tr else "New role",
            form=form,
            tenant_role=tr,
            rows=_matrix_rows(tenant_roles.available_cells(db.session), chosen),
            columns=role_matrix.COLUMNS,
        )
