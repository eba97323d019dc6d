"""Compliance registers (issue 7): sub-processors (P11), incidents (P16) and flagging a
minor's account (P23); `register_register_views` also adds the policy versions (P24,
`app.views.policy_versions`) and the policy notice (`app.views.policy_notice`).

* `SubProcessorView` (/sub-processors): everyone signed in reads it; Compliance edits.
* `IncidentView` (/incidents): the CERT-In 6-hour clock, "mark reported" and "notify
  affected tenants" (POST, CSRF; emails through the mail queue, once).
* `PrivacyAccountView` (/privacy-accounts): users with their age attestation; "flag as
  a minor's account" deactivates it and opens a deletion request.

Views parse, call a service, commit and redirect; the rules live in `app.services`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from flask import abort, current_app, flash, g, redirect, request, url_for
from flask_appbuilder import ModelView, expose
from flask_appbuilder.models.sqla.interface import SQLAInterface
from flask_appbuilder.security.decorators import has_access

from app.extensions import db
from app.jobs.registers import send_after_commit
from app.models.privacy import Incident, SubProcessor
from app.models.user import AppUser
from app.services import incidents, minors
from app.services.exceptions import WofficeError
from app.tenancy import TenantModelView
from app.views._format import USER_FORMATTERS, ist
from app.views._registers import (
    IST_FORMAT,
    ShowWithActions,
    checked_form,
    from_ist,
    ist_field,
    to_ist,
)
from app.views.policy_notice import install
from app.views.policy_versions import PolicyVersionView

# ------------------------------------------------------------------ sub-processors


class SubProcessorView(ModelView):
    """The sub-processors register: read by every signed-in role, edited by Compliance
    (the permission decides; FAB hides the buttons a role lacks)."""

    datamodel = SQLAInterface(SubProcessor)
    class_permission_name = "SubProcessors"
    route_base = "/sub-processors"
    list_title = "Sub-processors"
    show_title = "Sub-processor"
    add_title = "Add a sub-processor"
    edit_title = "Edit sub-processor"
    base_permissions = ["can_list", "can_show", "can_add", "can_edit", "can_delete"]
    base_order = ("name", "asc")
    list_columns = ["name", "purpose", "data_categories", "location", "dpa_date"]
    show_columns = [*list_columns, "updated_at"]
    add_columns = edit_columns = list_columns
    search_columns = ["name", "purpose", "data_categories", "location"]
    label_columns = {
        "data_categories": "Data processed",
        "dpa_date": "DPA signed",
        "updated_at": "Last changed",
    }
    formatters_columns = {"dpa_date": lambda v: v.strftime("%d %b %Y") if v else "—"}


# ----------------------------------------------------------------------- incidents


class IncidentView(ShowWithActions, ModelView):
    """Security incidents with their CERT-In reporting deadline (6 h from detection)."""

    datamodel = SQLAInterface(Incident)
    class_permission_name = "PrivacyIncidents"
    route_base = "/incidents"
    list_title = "Incident register"
    show_title = "Incident"
    add_title = "Record an incident"
    edit_title = "Edit incident"
    list_template = "woffice/incident_list.html"
    show_template = "woffice/incident_show.html"
    base_permissions = ["can_list", "can_show", "can_add", "can_edit", "can_report", "can_notify"]
    base_order = ("detected_at", "desc")
    list_columns = [
        "title",
        "severity",
        "detected_at",
        "reported_at",
        "report_reference",
        "tenants_notified_at",
    ]
    show_columns = [*list_columns, "description", "affected_tenants", "resolved_at"]
    add_columns = ["title", "description", "severity", "detected_local", "affected_tenants"]
    edit_columns = [*add_columns, "resolved_local"]
    search_columns = ["title", "severity", "detected_at", "reported_at", "affected_tenants"]
    label_columns = {
        "detected_at": "Detected",
        "reported_at": "Reported to CERT-In",
        "report_reference": "CERT-In reference",
        "tenants_notified_at": "Tenants notified",
        "affected_tenants": "Affected tenants",
        "resolved_at": "Resolved",
    }
    formatters_columns = {
        "detected_at": ist,
        "reported_at": lambda v: ist(v) if v else "Not yet",
        "tenants_notified_at": lambda v: ist(v) if v else "Not yet",
        "resolved_at": ist,
    }
    add_form_extra_fields = {
        "detected_local": ist_field("Detected (IST)", "CERT-In's 6 hours count from here."),
    }
    edit_form_extra_fields = {
        **add_form_extra_fields,
        "resolved_local": ist_field("Resolved (IST)", "Leave empty while open.", False),
    }
    extra_args = {"incident_clocks": incidents.unreported}

    def prefill_form(self, form: Any, pk: Any) -> None:
        row = self.datamodel.get(pk)
        if row is not None and request.method == "GET":
            form.detected_local.data = to_ist(row.detected_at)
            form.resolved_local.data = to_ist(row.resolved_at)

    def _stamp(self, item: Incident) -> None:
        if getattr(item, "detected_local", None) is not None:
            item.detected_at = from_ist(item.detected_local)
        if hasattr(item, "resolved_local"):
            item.resolved_at = from_ist(item.resolved_local)
        incidents.validate(item)

    def pre_add(self, item: Incident) -> None:
        self._stamp(item)
        item.created_by_id = g.user.id

    def pre_update(self, item: Incident) -> None:
        try:
            self._stamp(item)
        except WofficeError:
            db.session.rollback()
            raise

    def show_title_for(self, row: Any) -> str:
        return f"Incident: {row.title}"

    def show_context(self, row: Any) -> dict[str, Any]:
        return {
            "clock": incidents.clock(row),
            "admins": len(incidents.affected_admins(row)),
        }

    @expose("/report/<pk>", methods=["POST"])
    @has_access
    def report(self, pk: Any) -> Any:
        """Record the CERT-In report (time, reference); audited."""
        row = self.datamodel.get(pk) or abort(404)
        checked_form()
        when = request.form.get("reported_local", "").strip()
        try:
            local = datetime.strptime(when, IST_FORMAT) if when else None
        except ValueError:
            flash("Enter the report time as date and time (IST).", "danger")
            return redirect(url_for(".show", pk=row.id))
        try:
            incidents.mark_reported(row, request.form.get("reference", ""), g.user, from_ist(local))
        except WofficeError as exc:
            db.session.rollback()
            flash(str(exc), "danger")
            return redirect(url_for(".show", pk=row.id))
        db.session.commit()
        flash("The CERT-In report is recorded.", "success")
        return redirect(url_for(".show", pk=row.id))

    @expose("/notify/<pk>", methods=["POST"])
    @has_access
    def notify(self, pk: Any) -> Any:
        """Email every active Tenant Admin of the affected tenants, once."""
        row = self.datamodel.get(pk) or abort(404)
        checked_form()
        try:
            emails = incidents.notify_tenants(row, g.user)
        except WofficeError as exc:
            db.session.rollback()
            flash(str(exc), "warning")
            return redirect(url_for(".show", pk=row.id))
        sent = send_after_commit(emails)
        db.session.commit()
        flash(f"Notice sent to {sent} tenant admin(s).", "success")
        return redirect(url_for(".show", pk=row.id))


# ------------------------------------------------------------------------ accounts


class PrivacyAccountView(ShowWithActions, TenantModelView):
    """Every account with its age attestation; Compliance flags a minor's account."""

    datamodel = SQLAInterface(AppUser)
    class_permission_name = "PrivacyAccounts"
    route_base = "/privacy-accounts"
    list_title = "Accounts (age attestation)"
    show_title = "Account"
    show_template = "woffice/privacy_account_show.html"
    base_permissions = ["can_list", "can_show", "can_flag_minor"]
    base_order = ("id", "desc")
    list_columns = [
        "first_name",
        "last_name",
        "email",
        "tenant",
        "role_names",
        "active",
        "age_confirmed_at",
        "minor_flagged_at",
    ]
    show_columns = [*list_columns, "created_on"]
    search_columns = ["first_name", "last_name", "email", "tenant", "active", "minor_flagged_at"]
    label_columns = {
        "role_names": "Roles",
        "age_confirmed_at": "18+ confirmed",
        "minor_flagged_at": "Flagged as minor",
    }
    formatters_columns = {
        **USER_FORMATTERS,
        "age_confirmed_at": lambda v: ist(v) if v else "Not confirmed",
        "minor_flagged_at": ist,
    }

    def show_title_for(self, row: Any) -> str:
        return f"Account #{row.id}"

    @expose("/flag-minor/<pk>", methods=["POST"])
    @has_access
    def flag_minor(self, pk: Any) -> Any:
        """Deactivate a minor's account and open its deletion request."""
        row = self._get_or_404(pk)
        checked_form()
        try:
            opened = minors.flag_as_minor(row, g.user, request.form.get("reason", ""))
        except WofficeError as exc:
            db.session.rollback()
            flash(str(exc), "danger")
            return redirect(url_for(".show", pk=row.id))
        db.session.commit()
        flash(
            f"Account deactivated and flagged; deletion request {opened.reference} opened.",
            "success",
        )
        return redirect(url_for(".show", pk=row.id))


# -------------------------------------------------------------------- registration


def register_register_views(appbuilder: Any) -> None:
    """Add the registers' views, menus, the policy banner and the notice pages."""
    appbuilder.add_view(
        PolicyVersionView,
        "PrivacyPolicyVersions",
        label="Policy versions",
        icon="fa-file-text-o",
        category="Compliance",
        category_icon="fa-balance-scale",
    )
    appbuilder.add_view(
        IncidentView, "PrivacyIncidents", label="Incidents", icon="fa-fire", category="Compliance"
    )
    appbuilder.add_view(
        PrivacyAccountView,
        "PrivacyAccounts",
        label="Accounts (age)",
        icon="fa-id-card-o",
        category="Compliance",
    )
    appbuilder.add_view(
        SubProcessorView,
        "SubProcessors",
        label="Sub-processors",
        icon="fa-cubes",
        category="Privacy",
        category_icon="fa-user-secret",
    )
    appbuilder.add_link(
        "PrivacyPolicy",
        label="Privacy policy",
        href="/privacy-policy",
        icon="fa-file-text",
        category="Privacy",
    )
    install(current_app._get_current_object())  # called inside the factory's app context
