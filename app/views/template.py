"""Message templates of a tenant (issue 5): a read-only mirror of its WABA, and a sync.

Templates are created, edited and reviewed in Meta's WhatsApp Manager, so this screen
has no add, edit or delete: it lists and shows them, and "Sync from WhatsApp" refreshes
the copy (a job on the ``default`` queue; inline in ``make run``, where the result is
shown at once). Tenant admins use it; agents do not (their role has no Templates
permission).
"""

from __future__ import annotations

from typing import Any

from flask import abort, flash, g, has_request_context, redirect, request, url_for
from flask_appbuilder import expose
from flask_appbuilder.fieldwidgets import Select2Widget
from flask_appbuilder.models.filters import BaseFilter
from flask_appbuilder.models.sqla.interface import SQLAInterface
from flask_appbuilder.security.decorators import has_access
from flask_wtf import FlaskForm
from markupsafe import Markup, escape
from wtforms import SelectField

from app.extensions import db
from app.jobs import enqueue_after_commit, redis_connection
from app.jobs.templates import sync_coalesce_key, sync_tenant_templates
from app.models.campaign import MessageTemplate, TemplateCategory, TemplateStatus
from app.services import audit
from app.services.templates import (
    SYNC_REQUESTED,
    describe_components,
    last_sync,
    template_variables,
    variable_examples,
)
from app.tenancy import TenantModelView, current_tenant_id
from app.views._format import ist

STATUS_STYLES = {
    TemplateStatus.approved: "success",
    TemplateStatus.pending: "info",
    TemplateStatus.in_appeal: "info",
    TemplateStatus.rejected: "danger",
    TemplateStatus.disabled: "danger",
    TemplateStatus.paused: "warning",
    TemplateStatus.limit_exceeded: "warning",
}
MANAGED_IN_META = (
    "Templates are created, edited and submitted for review in Meta's WhatsApp Manager; "
    "this list mirrors your WhatsApp Business Account. Only approved templates can be sent."
)


def status_label(value: Any) -> Markup:
    """A coloured Bootstrap label for a template status."""
    if not value:
        return Markup("")
    status = TemplateStatus(value)
    style = STATUS_STYLES.get(status, "default")
    text = status.value.replace("_", " ").capitalize()
    return Markup('<span class="label label-{} template-status">{}</span>').format(
        style, escape(text)
    )


def _category_label(value: Any) -> str:
    return TemplateCategory(value).value.capitalize() if value else ""


def _enum_filter_field(label: str, cls: type) -> SelectField:
    """A search field offering the stored values (FAB's own looks members up by name,
    which differ from Meta's upper-case values here)."""
    choices = [(m.value, m.value.replace("_", " ").capitalize()) for m in cls]
    return SelectField(label, choices=choices, widget=Select2Widget())


def _synced(value: Any) -> str:
    return ist(value) if value else "Not synced yet"


class FilterTemplateName(BaseFilter):
    """Base filter: the list's search box (``?q=``), part of a template name."""

    name = "Search"
    arg_name = "template_q"

    def apply(self, query: Any, value: Any) -> Any:
        text = (request.args.get("q") or "").strip() if has_request_context() else ""
        if not text:
            return query
        escaped = text.replace("\\", "\\\\").replace("%", r"\%").replace("_", r"\_")
        return query.filter(self.model.name.ilike(f"%{escaped}%", escape="\\"))


class TemplateModelView(TenantModelView):
    """A tenant's WhatsApp message templates: list, show, sync (no add/edit/delete)."""

    datamodel = SQLAInterface(MessageTemplate)
    class_permission_name = "Templates"
    route_base = "/templates"
    list_title = "Message templates"
    show_title = "Message template"
    base_permissions = ["can_list", "can_show", "can_sync"]
    exclude_route_methods = {"add", "edit", "delete", "download"}
    base_filters = [["id", FilterTemplateName, None]]
    base_order = ("name", "asc")
    list_template = "woffice/template_list.html"
    show_template = "woffice/template_show.html"

    list_columns = ["name", "language", "category", "status", "synced_at"]
    order_columns = ["name", "language", "category", "status", "synced_at"]
    search_columns = ["name", "language", "category", "status", "synced_at"]
    search_form_extra_fields = {
        "status": _enum_filter_field("Status", TemplateStatus),
        "category": _enum_filter_field("Category", TemplateCategory),
    }
    show_fieldsets = [
        ("Template", {"fields": ["name", "language", "category", "status", "rejected_reason"]}),
        (
            "WhatsApp",
            {"fields": ["wa_template_id", "parameter_format", "synced_at", "created_at"]},
        ),
    ]
    label_columns = {
        "name": "Name",
        "language": "Language",
        "category": "Category",
        "status": "Status",
        "rejected_reason": "Reason (rejection, pause)",
        "wa_template_id": "WhatsApp template id",
        "parameter_format": "Variables",
        "synced_at": "Last synced",
        "created_at": "First seen",
    }
    formatters_columns = {
        "status": status_label,
        "category": _category_label,
        "parameter_format": lambda v: "Named ({{name}})" if v == "NAMED" else "Numbered ({{1}})",
        "synced_at": _synced,
        "created_at": ist,
    }

    def __init__(self, **kwargs: Any) -> None:
        self.extra_args = {
            **(self.extra_args or {}),
            "managed_in_meta": MANAGED_IN_META,
            "template_sync_status": self._sync_status,
        }
        super().__init__(**kwargs)

    @staticmethod
    def _sync_status() -> Any:
        tenant_id = current_tenant_id()
        return None if tenant_id is None else last_sync(db.session, tenant_id)

    # ------------------------------------------------------------------- show page

    @expose("/show/<pk>", methods=["GET"])
    @has_access
    def show(self, pk):
        pk = self._deserialize_pk_if_composite(pk)
        widgets = self._show(pk)  # 404 outside the tenant
        template = self.datamodel.get(pk, self._base_filters)
        if template is None:
            abort(404)
        return self.render_template(
            self.show_template,
            pk=pk,
            title=self.show_title,
            widgets=widgets,
            related_views=self._related_views,
            message_template=template,
            parts=describe_components(template.components),
            variables=template_variables(template.components),
            examples=variable_examples(template.components),
        )

    # ------------------------------------------------------------------------ sync

    @expose("/sync", methods=["POST"])
    @has_access
    def sync(self):
        """Queue a sync of this tenant's templates (inline: run it and show the result)."""
        form = FlaskForm()  # CSRF: a refused token never reaches the job
        if not form.validate_on_submit():
            abort(400)
        tenant_id = current_tenant_id()
        if tenant_id is None:
            flash("Templates are synced per business: sign in as its tenant admin.", "warning")
            return redirect(url_for(".list"))
        audit.record(SYNC_REQUESTED, tenant_id=tenant_id)
        enqueue_after_commit(
            "default",
            sync_tenant_templates,
            tenant_id=tenant_id,
            actor_id=g.user.id,
            coalesce=sync_coalesce_key(tenant_id),
        )
        db.session.commit()  # inline mode: the sync has run when this returns
        if redis_connection() is None:
            outcome = last_sync(db.session, tenant_id)
            if outcome is not None and outcome.state != "requested":
                flash(outcome.message, "success" if outcome.ok else "danger")
                return redirect(url_for(".list"))
        flash(
            "Sync from WhatsApp started: the list updates in a few seconds (reload the page).",
            "info",
        )
        return redirect(url_for(".list"))
