"""Tenants screen for platform staff: create, edit, suspend, search and filter."""

from __future__ import annotations

from functools import partial

from flask import flash, g, redirect
from flask_appbuilder import action
from flask_appbuilder.fieldwidgets import (
    BS3PasswordFieldWidget,
    BS3TextFieldWidget,
    Select2Widget,
)
from flask_appbuilder.models.sqla.interface import SQLAInterface
from wtforms import BooleanField, PasswordField, SelectField, StringField
from wtforms.validators import DataRequired
from wtforms.validators import ValidationError as WTFormsValidationError

from app.extensions import db
from app.models.tenant import DEFAULT_MESSAGING_LIMIT_MPS, Tenant, TenantStatus
from app.services import tenants
from app.services.exceptions import ValidationError
from app.services.gst_states import state_choices
from app.services.phones import normalize_phone
from app.tenancy import TenantModelView
from app.views._format import ist
from app.views._forms import ServiceValidator


def _gstin_for_form(value, form):
    return tenants.normalize_gstin(value, form.state_code.data)


def _unique_phone_number_id(form, field) -> None:
    """A business number belongs to one tenant: webhooks are routed by its id."""
    if field.data and tenants.phone_number_id_taken(
        db.session, field.data, exclude_id=getattr(form, "_id", None)
    ):
        raise WTFormsValidationError("Another tenant already uses this phone number id.")


# Form fields of each secret: a new value (password input, never pre-filled) and a
# "remove" box. They are not model attributes: `process_form` takes them off the form.
SECRET_FORM_FIELDS = {
    "wa_access_token": ("new_wa_access_token", "clear_wa_access_token"),
    "wa_app_secret": ("new_wa_app_secret", "clear_wa_app_secret"),
}
SECRET_LABELS = {"wa_access_token": "Access token", "wa_app_secret": "App secret"}
KEEP_HINT = "Leave empty to keep the current value."
NOT_KEPT = "Not kept after an error, for safety: enter it again."


def _secret_input(attr: str, description: str) -> PasswordField:
    return PasswordField(
        SECRET_LABELS[attr],
        description=description,
        validators=[ServiceValidator(partial(tenants.normalize_secret, attr), optional=True)],
        # new-password: browsers must not autofill the operator's own login password.
        widget=BS3PasswordFieldWidget(),
        render_kw={"autocomplete": "new-password", "spellcheck": "false"},
    )


def _secret_clear_box(attr: str) -> BooleanField:
    new_name = SECRET_FORM_FIELDS[attr][0]

    def check(value, form):
        return tenants.check_secret_change(attr, form[new_name].data, bool(value))

    return BooleanField(
        f"Remove the stored {SECRET_LABELS[attr].lower()}",
        validators=[ServiceValidator(check, with_form=True)],
    )


def _messaging_limit_input() -> StringField:
    return StringField(
        "Messaging limit (messages per second)",
        description="Throughput cap of the business number, 1 to 1000 (Meta's default: 80).",
        default=str(DEFAULT_MESSAGING_LIMIT_MPS),
        validators=[ServiceValidator(tenants.validate_messaging_limit)],
        widget=BS3TextFieldWidget(),
        render_kw={"inputmode": "numeric"},
    )


_COMMON_EXTRA_FIELDS = {
    "state_code": lambda: SelectField(
        "GST state",
        choices=state_choices(),
        validators=[DataRequired()],
        widget=Select2Widget(),
    ),
    "status": lambda: SelectField(
        "Status",
        widget=Select2Widget(),
        choices=[(s.value, s.value.title()) for s in TenantStatus],
        default=TenantStatus.trial.value,
    ),
    "wa_messaging_limit_mps": _messaging_limit_input,
}


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

    list_columns = [
        "name",
        "slug",
        "status",
        "state_label",
        "contact_email",
        "wa_display_number",
        "wa_access_token_mask",
        "created_at",
    ]
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
        ("Contact", {"fields": ["contact_email", "contact_phone", "billing_email"]}),
        (
            "Billing address",
            {"fields": ["address_line1", "address_line2", "city", "state_label", "postal_code"]},
        ),
        (
            "WhatsApp Cloud API",
            {
                "fields": [
                    "wa_phone_number_id",
                    "wa_business_account_id",
                    "wa_display_number",
                    "wa_messaging_limit_mps",
                    "wa_access_token_mask",
                    "wa_app_secret_mask",
                ]
            },
        ),
        ("Record", {"fields": ["created_at", "updated_at"], "expanded": False}),
    ]
    _form_fieldsets = [
        ("Business", ["name", "legal_name", "slug", "status", "gstin"]),
        ("Contact", ["contact_email", "contact_phone", "billing_email"]),
        (
            "Billing address",
            ["address_line1", "address_line2", "city", "state_code", "postal_code"],
        ),
    ]
    _wa_fields = [
        "wa_phone_number_id",
        "wa_business_account_id",
        "wa_display_number",
        "wa_messaging_limit_mps",
    ]
    add_fieldsets = [(title, {"fields": fields}) for title, fields in _form_fieldsets] + [
        (
            "WhatsApp Cloud API",
            {"fields": _wa_fields + ["new_wa_access_token", "new_wa_app_secret"]},
        )
    ]
    edit_fieldsets = [(title, {"fields": fields}) for title, fields in _form_fieldsets] + [
        (
            "WhatsApp Cloud API",
            {
                "fields": _wa_fields
                + [
                    "new_wa_access_token",
                    "clear_wa_access_token",
                    "new_wa_app_secret",
                    "clear_wa_app_secret",
                ]
            },
        )
    ]
    label_columns = {
        "name": "Business name",
        "legal_name": "Legal name",
        "slug": "Slug",
        "contact_email": "Contact email",
        "contact_phone": "Contact phone",
        "billing_email": "Billing email",
        "gstin": "GSTIN",
        "address_line1": "Address line 1",
        "address_line2": "Address line 2",
        "state_code": "GST state",
        "state_label": "GST state",
        "postal_code": "PIN code",
        "created_at": "Created",
        "updated_at": "Updated",
        "wa_phone_number_id": "Phone number id",
        "wa_business_account_id": "WhatsApp Business Account id",
        "wa_display_number": "WhatsApp number",
        "wa_messaging_limit_mps": "Messaging limit (messages per second)",
        "wa_access_token_mask": "Access token",
        "wa_app_secret_mask": "App secret",
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
        "billing_email": "Optional. Invoices and renewal reminders go here "
        "(to the contact email when empty).",
        "slug": "Lower-case letters, digits and hyphens; unique.",
        "wa_phone_number_id": "Graph id of the business number (WhatsApp Manager, API setup); "
        "not the number itself.",
        "wa_business_account_id": "Graph id of the WhatsApp Business Account (WABA).",
        "wa_display_number": "The business number as customers see it; stored as E.164.",
    }
    add_form_extra_fields = {
        **{name: make() for name, make in _COMMON_EXTRA_FIELDS.items()},
        "new_wa_access_token": _secret_input(
            "wa_access_token", "Optional. Stored encrypted; never shown again in full."
        ),
        "new_wa_app_secret": _secret_input(
            "wa_app_secret", "Optional. Verifies the signature of Meta's webhooks."
        ),
    }
    edit_form_extra_fields = {
        **{name: make() for name, make in _COMMON_EXTRA_FIELDS.items()},
        "new_wa_access_token": _secret_input("wa_access_token", KEEP_HINT),
        "clear_wa_access_token": _secret_clear_box("wa_access_token"),
        "new_wa_app_secret": _secret_input("wa_app_secret", KEEP_HINT),
        "clear_wa_app_secret": _secret_clear_box("wa_app_secret"),
    }
    validators_columns = {
        "slug": [ServiceValidator(tenants.normalize_slug)],
        "contact_email": [ServiceValidator(tenants.normalize_email)],
        "billing_email": [ServiceValidator(tenants.normalize_email, optional=True)],
        "contact_phone": [ServiceValidator(lambda v: normalize_phone(v, field="contact_phone"))],
        "gstin": [ServiceValidator(_gstin_for_form, optional=True, with_form=True)],
        "state_code": [ServiceValidator(tenants.validate_state_code)],
        "postal_code": [ServiceValidator(tenants.validate_postal_code)],
        "wa_phone_number_id": [
            ServiceValidator(partial(tenants.normalize_graph_id, field="wa_phone_number_id")),
            _unique_phone_number_id,
        ],
        "wa_business_account_id": [
            ServiceValidator(partial(tenants.normalize_graph_id, field="wa_business_account_id"))
        ],
        "wa_display_number": [ServiceValidator(tenants.normalize_wa_display_number)],
    }

    # ------------------------------------------------------------------ secrets

    def prefill_form(self, form, pk) -> None:
        # Say what is stored (masked) next to each empty secret input.
        item = self.datamodel.get(pk, self._base_filters)
        if item is None:
            return
        for attr, (new_name, _clear) in SECRET_FORM_FIELDS.items():
            form[new_name].description = f"Currently: {getattr(item, attr + '_mask')}. {KEEP_HINT}"

    def process_form(self, form, is_created: bool) -> None:
        # The secret inputs are not columns: take them off the form before FAB copies
        # the form onto the row, and apply them in pre_add/pre_update through the service.
        changes = {}
        for attr, (new_name, clear_name) in SECRET_FORM_FIELDS.items():
            new_value = form[new_name].data if new_name in form else None
            clear = bool(form[clear_name].data) if clear_name in form else False
            changes[attr] = (new_value, clear)
            for name in (new_name, clear_name):
                if name in form:
                    del form[name]
        g.tenant_secret_changes = changes

    def _apply_secret_changes(self, item: Tenant) -> None:
        for attr, (new_value, clear) in g.pop("tenant_secret_changes", {}).items():
            tenants.update_whatsapp_secret(item, attr, new_value, clear)

    def _get_add_widget(self, form, exclude_cols=None, widgets=None):
        self._ask_secrets_again(form)
        return super()._get_add_widget(form, exclude_cols=exclude_cols, widgets=widgets)

    def _get_edit_widget(self, form, exclude_cols=None, widgets=None):
        self._ask_secrets_again(form)
        return super()._get_edit_widget(form, exclude_cols=exclude_cols, widgets=widgets)

    @staticmethod
    def _ask_secrets_again(form) -> None:
        # A re-rendered form never sends a secret back to the browser: say so, or the
        # admin would save with the secret input empty and keep the old value unawares.
        if not form.errors:
            return
        for new_name, _clear in SECRET_FORM_FIELDS.values():
            if new_name in form and form[new_name].data and not form[new_name].errors:
                form[new_name].errors = [*form[new_name].errors, NOT_KEPT]

    # ---------------------------------------------------------------- lifecycle

    def pre_add(self, item: Tenant) -> None:
        super().pre_add(item)
        item.status = TenantStatus(item.status)
        self._apply_secret_changes(item)

    def pre_update(self, item: Tenant) -> None:
        # The form wrote the new status; put the stored one back and let the
        # lifecycle rule decide (raises with a message FAB flashes).
        new_status = TenantStatus(item.status)
        previous = db.inspect(item).attrs.status.history.deleted
        if previous:
            item.status = TenantStatus(previous[0])
        tenants.change_status(item, new_status)
        self._apply_secret_changes(item)

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
