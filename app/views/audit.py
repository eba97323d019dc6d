"""Audit screens: the event stream, CSV export, object history, login activity."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from typing import Any

from flask import Flask, Response, request, stream_with_context
from flask_appbuilder import expose
from flask_appbuilder.models.sqla.interface import SQLAInterface
from flask_appbuilder.security.decorators import has_access
from flask_appbuilder.urltools import get_filter_args
from flask_login import current_user
from sqlalchemy import func, select

from app.extensions import db
from app.models.audit import AuditEvent
from app.models.login_event import LoginEvent
from app.models.user import AppUser
from app.services import audit
from app.tenancy import (
    FilterTenantScope,
    TenantModelView,
    current_tenant_id,
)
from app.views._format import ist
from app.views.api_base import WofficeModelRestApi

CSV_COLUMNS = (
    "id",
    "occurred_at",
    "tenant_id",
    "actor_id",
    "actor_label",
    "action",
    "object_type",
    "object_id",
    "fields",
    "ip",
    "request_id",
    "job_id",
    "chain",
    "seq",
    "hash",
)


class AuditEventView(TenantModelView):
    """Read-only: no add, edit or delete for any role (the table is append-only too)."""

    datamodel = SQLAInterface(AuditEvent)
    class_permission_name = "Audit"
    route_base = "/audit"
    list_title = "Audit trail"
    show_title = "Audit event"
    base_permissions = ["can_list", "can_show", "can_export"]
    base_order = ("id", "desc")
    page_size = 50
    list_columns = [
        "occurred_at",
        "actor_label",
        "action",
        "object_type",
        "object_id",
        "fields_label",
        "tenant_id",
        "ip",
    ]
    show_columns = [*audit.HASHED_FIELDS, "hash", "user_agent"]
    search_columns = [
        "occurred_at",
        "actor_id",
        "actor_label",
        "action",
        "object_type",
        "object_id",
        "tenant_id",
        "ip",
        "request_id",
    ]
    order_columns = ["occurred_at", "action", "object_type", "actor_label"]
    label_columns = {
        "occurred_at": "When",
        "actor_label": "Actor",
        "fields_label": "Fields",
        "object_type": "Object",
        "object_id": "Id",
        "tenant_id": "Tenant",
        "actor_id": "Actor id",
        "ip": "IP",
    }
    formatters_columns = {"occurred_at": ist}
    list_template = "woffice/audit_list.html"

    @expose("/export.csv")
    @has_access
    def export(self):
        """CSV of the filtered list, streamed; the export itself is audited."""
        get_filter_args(self._filters, disallow_if_not_in_search=False)
        stmt = _export_statement(self)
        rows = db.session.execute(
            select(func.count()).select_from(stmt.order_by(None).subquery())
        ).scalar()
        audit.record("audit.exported", rows=rows, filters=_filter_summary())
        db.session.commit()
        return Response(
            stream_with_context(_csv_rows(stmt)),
            mimetype="text/csv",
            headers={"Content-Disposition": "attachment; filename=audit-events.csv"},
        )


def _filter_summary() -> list[str]:
    return sorted(k for k in request.args if k.startswith("_flt_"))


def _export_statement(view: AuditEventView):
    """The list's filters (tenant scope included) applied to a plain SELECT."""
    query = db.session.query(AuditEvent)
    query = view._filters.get_joined_filters(view._base_filters).apply_all(query)
    return query.order_by(AuditEvent.id.desc()).statement


def _csv_rows(stmt) -> Iterator[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(CSV_COLUMNS)
    for event in db.session.scalars(stmt.execution_options(yield_per=500)):
        writer.writerow([_csv_value(getattr(event, c)) for c in CSV_COLUMNS])
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
    yield buffer.getvalue()


def _csv_value(value: Any) -> Any:
    if isinstance(value, list):
        return ";".join(str(v) for v in value)
    return "" if value is None else value


class FilterUserTenant(FilterTenantScope):
    """Login events of the current tenant's users (platform staff: all)."""

    def apply(self, query: Any, value: Any) -> Any:
        tenant_id = current_tenant_id()
        if tenant_id is None:
            return query
        users = select(AppUser.id).where(AppUser.tenant_id == tenant_id)
        return query.filter(LoginEvent.user_id.in_(users))


class LoginActivityView(TenantModelView):
    """Recent sign-ins and failures by user and IP (P5)."""

    datamodel = SQLAInterface(LoginEvent)
    class_permission_name = "LoginActivity"
    route_base = "/login-activity"
    list_title = "Login activity"
    base_permissions = ["can_list"]
    base_order = ("occurred_at", "desc")
    page_size = 50
    list_columns = ["occurred_at", "user_id", "outcome", "success", "ip", "user_agent"]
    search_columns = ["occurred_at", "user_id", "outcome", "success", "ip"]
    label_columns = {
        "occurred_at": "When",
        "user_id": "User id",
        "user_agent": "Browser",
        "ip": "IP",
    }
    formatters_columns = {"occurred_at": ist}

    def _scope_tenant(self) -> None:
        super()._scope_tenant()
        self.base_filters = [
            ["user_id", FilterUserTenant, None],
            *[f for f in self.base_filters if f[1] is not FilterTenantScope],
        ]


def history(object_type: str, object_id: Any, limit: int = 50) -> list[AuditEvent]:
    """The object's events, newest first (already scoped to the viewer's tenant)."""
    return list(
        db.session.scalars(
            select(AuditEvent)
            .where(AuditEvent.object_type == object_type, AuditEvent.object_id == str(object_id))
            .order_by(AuditEvent.id.desc())
            .limit(limit)
        )
    )


def register_audit_hooks(app: Flask) -> None:
    """Request ids on every response; refused screens and APIs become audit events."""

    @app.after_request
    def audit_denials(response):
        request_id = audit.request_id()
        if request_id:
            response.headers.setdefault("X-Request-ID", request_id)
        if response.status_code == 403 and current_user and current_user.is_authenticated:
            try:
                db.session.rollback()
                audit.record(
                    "permission.denied",
                    path=request.path,
                    method=request.method,
                    endpoint=request.endpoint or "",
                )
                db.session.commit()
            except Exception:  # noqa: BLE001 - never turn a 403 into a 500
                db.session.rollback()
                app.logger.exception("could not audit a permission denial")
        return response

    @app.context_processor
    def audit_helpers():
        return {"audit_history": history, "audit_object_type": audit.object_type}


class AuditEventApi(WofficeModelRestApi):
    """Read-only REST access to the audit trail (tenant-scoped like the screen)."""

    datamodel = SQLAInterface(AuditEvent)
    resource_name = "audit"
    class_permission_name = "Audit"
    allow_browser_login = True
    include_route_methods = {"get", "get_list", "info"}
    base_order = ("id", "desc")
    max_page_size = 100
    list_columns = [
        "id",
        "occurred_at",
        "actor_id",
        "actor_label",
        "tenant_id",
        "action",
        "object_type",
        "object_id",
        "fields",
        "ip",
        "request_id",
        "job_id",
    ]
    show_columns = [*audit.HASHED_FIELDS, "hash", "user_agent"]
    search_columns = ["action", "object_type", "object_id", "actor_id", "tenant_id", "occurred_at"]
