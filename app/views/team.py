"""Team screen: a tenant admin's own users (invite, roles, deactivate, reactivate)."""

from __future__ import annotations

from flask import current_app, flash, g, redirect, url_for
from flask_appbuilder import action
from flask_appbuilder.fieldwidgets import BS3TextFieldWidget
from flask_appbuilder.models.sqla.filters import FilterInFunction
from flask_appbuilder.models.sqla.interface import SQLAInterface
from wtforms import StringField
from wtforms.validators import ValidationError as WTFormsValidationError

from app.extensions import db
from app.jobs import enqueue
from app.jobs.mail import send_email
from app.models.user import AppUser
from app.services import audit, users
from app.services.exceptions import WofficeError
from app.services.phones import normalize_phone
from app.tenancy import TenantModelView
from app.views._format import USER_FORMATTERS
from app.views._forms import ServiceValidator


def _unique_email(form, field) -> None:
    if field.data and users.email_taken(db.session, field.data):
        raise WTFormsValidationError("A user with this email already exists.")


def _roles_chosen(form, field) -> None:
    # FAB's QuerySelectMultipleField silently drops ids outside its query (e.g. a crafted
    # platform role id): refuse the whole submission instead. (Not DataRequired: it
    # clears the errors raised before it.)
    chosen = field.data  # resolving the data is what flags unknown ids
    if getattr(field, "_invalid_formdata", False):
        raise WTFormsValidationError("Not a valid choice.")
    if not chosen:
        raise WTFormsValidationError("Choose at least one role.")


def _normalise_email(value: str) -> str:
    return users.validate_person(value, "x", "x", None)["email"]


def send_invitation(user: AppUser, inviter: AppUser) -> None:
    """Email ``user`` a link to set their password (through the mail job)."""
    token = users.invitation_token(user)
    url = url_for("invitation.accept", token=token, _external=True)
    enqueue("mail", send_email, users.invitation_email(user, inviter, url))


class TeamModelView(TenantModelView):
    """Users of the current tenant. Platform users and other tenants never appear."""

    datamodel = SQLAInterface(AppUser)
    class_permission_name = "Team"
    route_base = "/team"
    list_title = "Team"
    show_title = "Team member"
    add_title = "Invite a team member"
    edit_title = "Edit team member"
    base_permissions = ["can_list", "can_show", "can_add", "can_edit"]
    add_row_message = "Team member added."
    edit_row_message = "Team member saved."
    base_order = ("first_name", "asc")

    list_columns = [
        "first_name",
        "last_name",
        "email",
        "role_names",
        "membership_status",
        "two_factor_enabled",
        "current_login_at",
    ]
    search_columns = ["first_name", "last_name", "email", "active", "roles"]
    show_columns = [
        "first_name",
        "last_name",
        "email",
        "phone",
        "role_names",
        "active",
        "two_factor_enabled",
        "current_login_at",
        "current_login_ip",
        "last_login_at",
        "last_login_ip",
        "login_count",
        "created_on",
        "analytics_objection_at",
    ]
    add_columns = ["first_name", "last_name", "email", "phone", "roles"]
    edit_columns = ["first_name", "last_name", "phone", "roles"]
    formatters_columns = USER_FORMATTERS
    label_columns = {
        "role_names": "Roles",
        "analytics_objection_at": "Objects to usage analytics since",
        "membership_status": "Status",
        "two_factor_enabled": "2FA",
        "current_login_at": "Last sign-in",
        "current_login_ip": "Last sign-in IP",
        "last_login_at": "Previous sign-in",
        "last_login_ip": "Previous sign-in IP",
        "created_on": "Created",
    }
    description_columns = {
        "email": "They receive an email with a link to set their password.",
        "roles": "Tenant Admin manages the team, roles and settings; Agent answers assigned "
        "conversations; your own roles (Business → Roles) grant what you chose.",
    }
    add_form_extra_fields = {"phone": StringField("Phone", widget=BS3TextFieldWidget())}
    edit_form_extra_fields = {"phone": StringField("Phone", widget=BS3TextFieldWidget())}
    validators_columns = {
        "email": [ServiceValidator(_normalise_email), _unique_email],
        "phone": [ServiceValidator(lambda v: normalize_phone(v), optional=True)],
        "roles": [_roles_chosen],
    }
    add_form_query_rel_fields = edit_form_query_rel_fields = {
        "roles": [["name", FilterInFunction, users.assignable_here]],
    }
    search_form_query_rel_fields = {
        "roles": [["name", FilterInFunction, users.assignable_here]],
    }

    def pre_add(self, item: AppUser) -> None:
        super().pre_add(item)
        users.check_roles_grantable(g.user, item.tenant_id, item.roles)
        if not item.roles:
            raise WofficeError("Choose at least one role.")
        item.username = item.email
        item.password = None
        item.active = True
        item.created_by_fk = item.changed_by_fk = g.user.id

    def post_add(self, item: AppUser) -> None:
        audit.record("user.invited", item)
        db.session.commit()
        try:
            send_invitation(item, g.user)
            flash(f"Invitation sent to {item.email}.", "info")
        except Exception:  # noqa: BLE001 - the member exists; say how to retry
            current_app.logger.exception("invitation email for user %s failed", item.id)
            flash(
                f"{item.email} was added, but the invitation email could not be sent. "
                "Select them and use Actions → Resend invitation.",
                "warning",
            )

    def pre_update(self, item: AppUser) -> None:
        # The form already wrote the new roles; the service decides on what is stored.
        try:
            users.set_roles(db.session, g.user, item, [r.name for r in item.roles])
        except WofficeError:
            db.session.rollback()  # FAB only flashes: drop the form's other changes too
            raise

    @action(
        "deactivate",
        "Deactivate",
        "Deactivate the selected members? They can no longer sign in.",
        "fa-user-times",
    )
    def deactivate(self, items):
        return self._set_active(items, False)

    @action("reactivate", "Reactivate", "Reactivate the selected members?", "fa-user-plus")
    def reactivate(self, items):
        return self._set_active(items, True)

    @action("resend", "Resend invitation", "", "fa-envelope", multiple=False)
    def resend(self, item):
        if item.password:
            flash(f"{item.email} has already accepted the invitation.", "warning")
        else:
            send_invitation(item, g.user)
            flash(f"Invitation sent again to {item.email}.", "info")
        return redirect(self.get_redirect())

    def _set_active(self, items, active: bool):
        items = items if isinstance(items, list) else [items]
        for item in items:
            try:
                users.set_active(db.session, g.user, item, active)
            except WofficeError as exc:
                db.session.rollback()
                flash(f"{item.email}: {exc}", "danger")
                return redirect(self.get_redirect())
        db.session.commit()
        flash(f"{len(items)} member(s) {'reactivated' if active else 'deactivated'}.", "success")
        return redirect(self.get_redirect())
