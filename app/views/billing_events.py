"""Billing staff: the Dodo webhook inbox and the accountant's month export (issue 6).

* `BillingEventModelView` (/billing-events): every stored delivery with its processing
  state; the show page pretty-prints the stored (allow-listed) payload, and "reprocess"
  clears the error and has `process_billing_event` run again (POST, CSRF, audited).
* `Gstr1ExportView` (/billing/gstr1): choose a month (IST issue dates), see its totals,
  download its invoices and credit notes as a GSTR-1 organised CSV (audited export).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from flask import Response, abort, current_app, flash, redirect, request, url_for
from flask_appbuilder import BaseView, expose
from flask_appbuilder.models.filters import BaseFilter
from flask_appbuilder.models.sqla.interface import SQLAInterface
from flask_appbuilder.security.decorators import has_access
from flask_wtf import FlaskForm
from sqlalchemy import false

from app.extensions import db
from app.jobs.billing import schedule_event
from app.models.billing import BillingEvent
from app.models.mixins import utcnow
from app.models.tenant import Tenant
from app.services import audit, dodo, gstr1
from app.services.exceptions import ValidationError
from app.tenancy import TenantModelView
from app.views._format import IST, UTC, ist
from app.views.billing import inr


class FilterEventState(BaseFilter):
    """Processing state: processed, pending or failed (pending with an error)."""

    name = "Is (processed, pending or failed)"

    def apply(self, query: Any, value: Any) -> Any:
        state = str(value).strip().lower()
        if state == "processed":
            return query.filter(BillingEvent.processed_at.is_not(None))
        unprocessed = query.filter(BillingEvent.processed_at.is_(None))
        if state == "pending":
            return unprocessed.filter(BillingEvent.error.is_(None))
        if state == "failed":
            return unprocessed.filter(BillingEvent.error.is_not(None))
        return query.filter(false())


class BillingEventModelView(TenantModelView):
    """Dodo deliveries as stored (no card or UPI details: the allow-list removed them)."""

    datamodel = SQLAInterface(BillingEvent)
    class_permission_name = "BillingEvents"
    route_base = "/billing-events"
    list_title = "Dodo webhook inbox"
    show_title = "Dodo webhook event"
    show_template = "woffice/billing_event_show.html"
    base_permissions = ["can_list", "can_show", "can_reprocess"]
    base_order = ("received_at", "desc")
    page_size = 50
    list_columns = [
        "received_at",
        "event_type",
        "state",
        "attempts",
        "error",
        "tenant_id",
        "webhook_id",
    ]
    search_columns = ["received_at", "event_type", "processed_at", "tenant_id", "webhook_id"]
    order_columns = ["received_at", "event_type", "attempts"]
    label_columns = {
        "received_at": "Received",
        "event_type": "Event",
        "state": "Status",
        "processed_at": "Status",
        "tenant_id": "Tenant id",
        "webhook_id": "Webhook id",
        "event_at": "Event time",
    }
    formatters_columns = {
        "received_at": ist,
        "error": lambda v: (v[:120] + "…") if v and len(v) > 120 else (v or ""),
    }

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        for table in (self._filters._search_filters, self._filters._all_filters):
            table["processed_at"] = [FilterEventState("processed_at", self.datamodel)]

    @expose("/show/<pk>", methods=["GET"])
    @has_access
    def show(self, pk: Any) -> Any:
        row = self._get_or_404(pk)
        tenant = db.session.get(Tenant, row.tenant_id) if row.tenant_id is not None else None
        return self.render_template(
            self.show_template,
            pk=row.id,
            title=f"Dodo event {row.event_type}",
            row=row,
            tenant=tenant,
            payload=dodo.payload_json(row),
            ist=ist,
            form=FlaskForm(),
        )

    @expose("/reprocess/<pk>", methods=["POST"])
    @has_access
    def reprocess(self, pk: Any) -> Any:
        """Clear the error and apply the event again (after commit); audited."""
        row = self._get_or_404(pk)
        if not FlaskForm().validate_on_submit():
            abort(400, description="The form expired; reload the page and try again.")
        if row.processed_at is not None:
            flash("This event was already processed; nothing to do.", "info")
            return redirect(url_for(".show", pk=row.id))
        previous_error = row.error
        row.error = None
        schedule_event(row.id)
        audit.record(
            "billing_event.reprocess",
            row,
            event_type=row.event_type,
            attempts=row.attempts,
            had_error=bool(previous_error),
        )
        db.session.commit()
        flash(f"Event {row.event_type} queued for processing again.", "success")
        return redirect(url_for(".show", pk=row.id))


# ------------------------------------------------------------------------- GSTR-1


def _previous_month() -> str:
    today = utcnow().replace(tzinfo=UTC).astimezone(IST).date()
    last = today.replace(day=1) - timedelta(days=1)
    return f"{last.year:04d}-{last.month:02d}"


class Gstr1ExportView(BaseView):
    """The month's invoices and credit notes as a GSTR-1 organised CSV."""

    route_base = "/billing/gstr1"
    class_permission_name = "GSTR1Export"
    default_view = "index"
    base_permissions = ["can_index", "can_export"]

    @expose("/")
    @has_access
    def index(self) -> Any:
        month = request.args.get("month") or _previous_month()
        report, error = None, None
        try:
            report = gstr1.collect(db.session, month)
        except ValidationError as exc:
            error = str(exc)
        return self.render_template(
            "woffice/billing_gstr1.html",
            title="GSTR-1 export",
            month=month,
            report=report,
            totals=report.totals() if report else {},
            error=error,
            inr=inr,
        )

    @expose("/export.csv")
    @has_access
    def export(self) -> Any:
        """The CSV download (audited as an export)."""
        month = request.args.get("month", "")
        try:
            report = gstr1.collect(db.session, month)
        except ValidationError as exc:
            flash(str(exc), "danger")
            return redirect(url_for(".index"))
        body = gstr1.write_csv(report, current_app.config.get("SUPPLIER_GSTIN"))
        totals = report.totals()
        audit.record(
            "billing.gstr1_exported",
            month=month,
            invoices=totals["All invoices"].count,
            credit_notes=totals["All credit notes"].count,
        )
        db.session.commit()
        filename = f"gstr1-{report.start:%Y-%m}.csv"
        return Response(
            body,
            mimetype="text/csv",
            headers={"Content-Disposition": f"attachment; filename={filename}"},
        )
