"""Tenants screen for platform staff: create, edit, suspend, search and filter."""

from __future__ import annotations

from flask import flash, redirect
from flask_appbuilder import action
from flask_appbuilder.fieldwidgets import Select2Widget
from flask_appbuilder.models.sqla.interface import SQLAInterface
from wtforms import SelectField
from wtforms.validators import DataRequired

from app.extensions import db
from app.models.tenant import Tenant, TenantStatus
from app.services import tenants
from app.services.exceptions import ValidationError
from app.services.gst_states import state_choices
from app.services.phones import normalize_phone
from app.tenancy import TenantModelView
from app.views._format import ist
from app.views._forms import ServiceValidator


def _gstin_for_form(value, form):
    return tenants.normalize_gstin(value, form.state_code.data)


class TenantsView(TenantModelView):
    """Platform view over `Tenant` (a tenant user never has this permission).

    Tenant-scoped all the same (a tenant would see only its own row): the tenancy test
    requires it of every view over a tenant-bound model.
    """

    datamodel = SQLAInterface(Tenant)
    class_permission_name = "Tenants"
    route_base = "/tenants"
    list_title = "Tenants"
    show_title = "Tenant"
    add_title = "New tenant"
    edit_title = "Edit tenant"

    list_columns = ["name", "slug", "status", "state_label", "contact_email", "created_at"]
    search_columns = [
        "name",
        "legal_name",
        "slug",
        "status",
        "state_code",
        "contact_email",
        "gstin",
        "city",
        "created_at",
    ]
    order_columns = ["name", "slug", "status", "created_at"]
    base_order = ("name", "asc")
    show_fieldsets = [
        ("Business", {"fields": ["name", "legal_name", "slug", "status", "gstin"]}),
        ("Contact", {"fields": ["contact_email", "contact_phone"]}),
        (
            "Billing address",
            {"fields": ["address_line1", "address_line2", "city", "state_label", "postal_code"]},
        ),
        ("Record", {"fields": ["created_at", "updated_at"], "expanded": False}),
    ]
    _form_columns = [
        "name",
        "legal_name",
        "slug",
        "status",
        "contact_email",
        "contact_phone",
        "gstin",
        "address_line1",
        "address_line2",
        "city",
        "state_code",
        "postal_code",
    ]
    add_columns = _form_columns
    edit_columns = _form_columns
    label_columns = {
        "name": "Business name",
        "legal_name": "Legal name",
        "slug": "Slug",
        "contact_email": "Contact email",
        "contact_phone": "Contact phone",
        "gstin": "GSTIN",
        "address_line1": "Address line 1",
        "address_line2": "Address line 2",
        "state_code": "GST state",
        "state_label": "GST state",
        "postal_code": "PIN code",
        "created_at": "Created",
        "updated_at": "Updated",
    }
    formatters_columns = {
        "created_at": ist,
        "updated_at": ist,
        "status": lambda status: str(status).title() if status else "",
    }
    # No hard delete: a tenant leaves through "closing" and the deletion job.
    base_permissions = ["can_list", "can_show", "can_add", "can_edit"]
    add_row_message = "Tenant created."
    edit_row_message = "Tenant saved."
    description_columns = {
        "gstin": "Optional. Its first two digits must match the GST state.",
        "contact_phone": "Any format; stored as +91XXXXXXXXXX.",
        "slug": "Lower-case letters, digits and hyphens; unique.",
    }
    add_form_extra_fields = edit_form_extra_fields = {
        "state_code": SelectField(
            "GST state",
            choices=state_choices(),
            validators=[DataRequired()],
            widget=Select2Widget(),
        ),
        "status": SelectField(
            "Status",
            widget=Select2Widget(),
            choices=[(s.value, s.value.title()) for s in TenantStatus],
            default=TenantStatus.trial.value,
        ),
    }
    validators_columns = {
        "slug": [ServiceValidator(tenants.normalize_slug)],
        "contact_email": [ServiceValidator(tenants.normalize_email)],
        "contact_phone": [ServiceValidator(lambda v: normalize_phone(v, field="contact_phone"))],
        "gstin": [ServiceValidator(_gstin_for_form, optional=True, with_form=True)],
        "state_code": [ServiceValidator(tenants.validate_state_code)],
        "postal_code": [ServiceValidator(tenants.validate_postal_code)],
    }

    def pre_add(self, item: Tenant) -> None:
        item.status = TenantStatus(item.status)

    def pre_update(self, item: Tenant) -> None:
        # The form wrote the new status; put the stored one back and let the
        # lifecycle rule decide (raises with a message FAB flashes).
        new_status = TenantStatus(item.status)
        previous = db.inspect(item).attrs.status.history.deleted
        if previous:
            item.status = TenantStatus(previous[0])
        tenants.change_status(item, new_status)

    @action("suspend", "Suspend", "Suspend the selected tenants?", "fa-pause")
    def suspend(self, items):
        return self._move(items, TenantStatus.suspended)

    @action("activate", "Activate", "Activate the selected tenants?", "fa-play")
    def activate(self, items):
        return self._move(items, TenantStatus.active)

    def _move(self, items, status: TenantStatus):
        items = items if isinstance(items, list) else [items]
        done, refused = 0, []
        for item in items:
            try:
                tenants.change_status(item, status)
                done += 1
            except ValidationError as exc:
                refused.append(f"{item.name}: {exc}")
        db.session.commit()
        if done:
            flash(f"{done} tenant(s) now {status.value}.", "success")
        for message in refused:
            flash(message, "warning")
        self.update_redirect()
        return redirect(self.get_redirect())
