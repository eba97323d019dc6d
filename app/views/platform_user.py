"""Platform admins' user screen (FAB's "List Users"), hashing through FST.

FAB's own user form hashes with werkzeug, which FST cannot verify; this view hashes
with FST and enforces the role-grant policy (platform roles for platform users, tenant
roles for tenant users). It also carries the tenant layer, since users are tenant-bound.
"""

from __future__ import annotations

from typing import Any

from flask import flash, g
from flask_appbuilder.actions import action
from flask_appbuilder.fieldwidgets import BS3TextFieldWidget
from flask_appbuilder.security.views import RoleModelView, UserDBModelView
from flask_appbuilder.security.views import UserStatsChartView as FabUserStatsChartView
from flask_babel import lazy_gettext
from flask_security import hash_password
from wtforms import BooleanField, StringField
from wtforms.validators import DataRequired
from wtforms.validators import ValidationError as WTFormsValidationError

from app.extensions import db
from app.models.mixins import audit_name, utcnow
from app.models.user import AppUser, Role, is_tenant_role_name
from app.services import tenant_roles, users
from app.services.exceptions import RoleGrantError
from app.services.phones import normalize_phone
from app.tenancy import TenantModelView, TenantScopedMixin
from app.views._format import USER_FORMATTERS
from app.views._forms import ServiceValidator


def _roles_fit_tenant(form, field) -> None:
    tenant = form.tenant.data if hasattr(form, "tenant") else None
    try:
        users.check_roles_grantable(g.user, tenant.id if tenant else None, field.data or [])
    except RoleGrantError as exc:
        raise WTFormsValidationError(
            f"{exc} Platform users take platform roles; users of a tenant take tenant roles."
        ) from exc


class PlatformUserModelView(TenantModelView, UserDBModelView):
    route_base = "/users"
    list_columns = [
        "first_name",
        "last_name",
        "email",
        "tenant",
        "role_names",
        "active",
        "two_factor_enabled",
        "current_login_at",
    ]
    show_columns = [
        "first_name",
        "last_name",
        "email",
        "phone",
        "tenant",
        "role_names",
        "active",
        "two_factor_enabled",
        "current_login_at",
        "current_login_ip",
        "last_login_at",
        "last_login_ip",
        "login_count",
        "created_on",
        "changed_on",
    ]
    add_columns = [
        "first_name",
        "last_name",
        "email",
        "phone",
        "tenant",
        "active",
        "roles",
        "password",
        "conf_password",
        "age_confirm",
    ]
    edit_columns = ["first_name", "last_name", "email", "phone", "tenant", "active", "roles"]
    search_columns = [
        "first_name",
        "last_name",
        "email",
        "tenant",
        "active",
        "roles",
        "created_on",
        "current_login_at",
    ]
    formatters_columns = USER_FORMATTERS
    label_columns = {
        "role_names": "Roles",
        "two_factor_enabled": "2FA",
        "current_login_at": "Last sign-in",
        "current_login_ip": "Last sign-in IP",
    }
    description_columns = {"tenant": "Leave empty for operator staff (platform roles)."}
    add_form_extra_fields = {
        **UserDBModelView.add_form_extra_fields,
        "phone": StringField("Phone", widget=BS3TextFieldWidget()),
        # P23: whoever sets up an account with a password attests the holder's age.
        "age_confirm": BooleanField(
            "I confirm this person is 18 years of age or older.",
            validators=[DataRequired(message="Woffice accounts are for adults (18+) only.")],
        ),
    }
    edit_form_extra_fields = {"phone": StringField("Phone", widget=BS3TextFieldWidget())}
    validators_columns = {
        "roles": [_roles_fit_tenant],
        "email": [ServiceValidator(lambda v: users.validate_person(v, "x", "x", None)["email"])],
        "phone": [ServiceValidator(lambda v: normalize_phone(v), optional=True)],
    }

    def pre_add(self, item: AppUser) -> None:
        item.username = item.email
        item.password = hash_password(item.password)
        item.password_changed_at = utcnow()
        item.age_confirmed_at = utcnow()  # the form required the attestation

    def pre_update(self, item: AppUser) -> None:
        item.username = item.email
        super().pre_update(item)


class UserStatsChartView(TenantScopedMixin, FabUserStatsChartView):
    """FAB's "User's Statistics" (same name, route and permission), tenant-scoped like
    every view over users."""

    def __init__(self, **kwargs: Any) -> None:
        self.base_filters = list(self.base_filters or [])
        self._scope_tenant()
        super().__init__(**kwargs)


class RoleHistoryModelView(RoleModelView):
    """FAB's role screen with the role's audit history (permission and user changes).

    Platform roles only are managed here. A tenant's own role (issue 8) is shown but
    never edited, copied or deleted on this screen: its permissions come from the role
    matrix, its changes are audited with their cells, and only that tenant's admins
    manage it (Business → Roles). Nor can a platform role take a name in the tenants'
    namespace (``t<tenant id>/…``).
    """

    show_template = "woffice/show.html"
    extra_args = {"history_type": audit_name(Role)}

    @staticmethod
    def _refuse_tenant_role(item: Role, doing: str) -> None:
        label = tenant_roles.tenant_label(db.session, item.id) if item.id is not None else None
        if label is not None:  # (the stored label: FAB has already put the form on item)
            raise RoleGrantError(
                f"{label} is a tenant's own role: it cannot be {doing} here. "
                "The tenant's admins manage it under Business > Roles."
            )

    @staticmethod
    def _refuse_tenant_name(item: Role) -> None:
        if is_tenant_role_name(item.name):
            raise RoleGrantError(
                "Names starting with t<number>/ are reserved for tenants' own roles."
            )

    def pre_add(self, item: Role) -> None:
        self._refuse_tenant_name(item)
        super().pre_add(item)

    def pre_update(self, item: Role) -> None:
        self._refuse_tenant_role(item, "edited")
        self._refuse_tenant_name(item)
        super().pre_update(item)

    def pre_delete(self, item: Role) -> None:
        self._refuse_tenant_role(item, "deleted")
        super().pre_delete(item)

    @action(
        "copyrole",
        lazy_gettext("Copy Role"),
        lazy_gettext("Copy the selected roles?"),
        icon="fa-copy",
        single=False,
    )
    def copy_role(self, items):
        """FAB's copy, for platform roles only (a copy of a tenant's role would be a
        platform role in the tenant's namespace)."""
        platform = []
        for item in items:
            try:
                self._refuse_tenant_role(item, "copied")
            except RoleGrantError as exc:
                flash(str(exc), "warning")
            else:
                platform.append(item)
        return super().copy_role(platform)
