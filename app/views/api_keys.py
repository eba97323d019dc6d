"""Business → API keys: create (shown once), list and revoke the tenant's keys (issue 9).

Every route is behind FAB's ``has_access`` on ``ApiKeys`` (Tenant Admins; custom roles
given the "API keys" row of the matrix); lookups are by the current tenant, so another
tenant's key id is a 404. The secret is rendered once, in the response to the POST that
created it, and never stored in the clear.
"""

from __future__ import annotations

from typing import Any

from flask import abort, flash, g, redirect, url_for
from flask_appbuilder import BaseView, expose
from flask_appbuilder.security.decorators import has_access
from flask_wtf import FlaskForm
from wtforms import IntegerField, SelectField, StringField
from wtforms.validators import Optional

from app.extensions import db
from app.services import api_keys
from app.services.exceptions import ValidationError, WofficeError
from app.tenancy import current_tenant_id
from app.views._format import ist


class ApiKeyForm(FlaskForm):
    name = StringField("Name")
    scope = SelectField("Access", choices=list(api_keys.SCOPES.items()), default="read")
    expires_in_days = IntegerField(
        "Expires after (days)", default=api_keys.DEFAULT_DAYS, validators=[Optional()]
    )


class RevokeForm(FlaskForm):
    """CSRF only."""


class ApiKeysView(BaseView):
    route_base = "/api-keys"
    class_permission_name = "ApiKeys"
    default_view = "index"
    base_permissions = ["can_list", "can_add", "can_revoke"]
    method_permission_name = {"index": "list", "create": "add", "revoke": "revoke"}

    def _tenant_id(self) -> int:
        tenant_id = current_tenant_id()
        if tenant_id is None:
            abort(404)
        return tenant_id

    def _render(self, form: ApiKeyForm, created: Any = None, secret: str | None = None) -> Any:
        return self.render_template(
            "woffice/api_keys.html",
            title="API keys",
            form=form,
            revoke_form=RevokeForm(),
            keys=api_keys.tenant_keys(db.session, self._tenant_id()),
            status=api_keys.status,
            scopes=api_keys.SCOPES,
            created=created,
            secret=secret,
            can_add=self.appbuilder.sm.has_access("can_add", "ApiKeys"),
            ist=ist,
        )

    @expose("/")
    @has_access
    def index(self) -> Any:
        return self._render(ApiKeyForm())

    @expose("/new", methods=["POST"])
    @has_access
    def create(self) -> Any:
        self._tenant_id()
        form = ApiKeyForm()
        if form.validate_on_submit():
            try:
                key, secret = api_keys.create_key(
                    db.session,
                    g.user,
                    name=form.name.data,
                    scope=form.scope.data,
                    expires_in_days=form.expires_in_days.data,
                )
            except ValidationError as exc:
                db.session.rollback()
                field = getattr(form, exc.field or "", None)
                if field is not None:
                    field.errors = [*field.errors, str(exc)]
                else:
                    flash(str(exc), "danger")
            except WofficeError as exc:
                db.session.rollback()
                flash(str(exc), "danger")
            else:
                db.session.commit()
                return self._render(ApiKeyForm(formdata=None), created=key, secret=secret)
        return self._render(form)

    @expose("/<int:key_id>/revoke", methods=["POST"])
    @has_access
    def revoke(self, key_id: int) -> Any:
        self._tenant_id()
        if not RevokeForm().validate_on_submit():
            flash("The form expired: try again.", "warning")
            return redirect(url_for(".index"))
        try:
            key = api_keys.revoke(db.session, g.user, key_id)
        except WofficeError:
            db.session.rollback()
            abort(404)
        db.session.commit()
        flash(f"API key “{key.name}” revoked: it stops working now.", "success")
        return redirect(url_for(".index"))
