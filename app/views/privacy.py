"""Compliance > Privacy requests (issue 7, P18-P21): the worklist, logging a request
received by email, and the request page whose buttons move it through its workflow.

Every button is a POST with a CSRF token that calls one service function; a refused
move (`WofficeError`: workflow, validation, four eyes) is shown as a flash message.
Jobs (deletion, access package) are scheduled by their modules' ``schedule_*``
helpers, which enqueue once this request's transaction commits.
"""

from __future__ import annotations

from typing import Any

from flask import abort, flash, g, redirect, request, url_for
from flask_appbuilder import BaseView, expose
from flask_appbuilder.security.decorators import has_access
from flask_wtf import FlaskForm
from sqlalchemy import select

from app.extensions import db
from app.models.audit import AuditEvent
from app.models.mixins import audit_name, utcnow
from app.models.privacy import (
    OPEN_STATUSES,
    PrivacyRequest,
    RequestChannel,
    RequestStatus,
    RequestType,
)
from app.models.user import AppUser
from app.services import business_days, privacy, privacy_intake, privacy_resolutions
from app.services.exceptions import WofficeError
from app.views._format import ist
from app.views.privacy_actions import ACTIONS, artifact_url
from app.views.privacy_forms import (
    SUBJECT_LABELS,
    TYPE_LABELS,
    CorrectionForm,
    ExtendForm,
    LogRequestForm,
    ReasonForm,
    tenant_choices,
)

SHOWS = {
    "open": "All open",
    "mine": "Mine",
    "due_soon": "Due soon",
    "overdue": "Overdue",
    "closed": "Closed",
}
URGENCY_CLASS = {"overdue": "danger", "due_soon": "warning", "on_track": "success"}
CLOSED_LIMIT = 200


def urgency_text(urgency: str, left: int) -> str:
    """'3 business days left', 'due today' or 'overdue by 2 business days'."""
    if urgency == "overdue":
        n = -left
        return f"overdue by {n} business day{'s' if n != 1 else ''}"
    if left == 0:
        return "due today"
    return f"{left} business day{'s' if left != 1 else ''} left"


def status_label(value: Any) -> str:
    return str(value or "").replace("_", " ")


class PrivacyRequestsView(BaseView):
    """Compliance's main screen (Compliance and Platform Admin only)."""

    route_base = "/privacy-requests"
    class_permission_name = "PrivacyRequests"
    default_view = "list"
    base_permissions = ["can_list", "can_show", "can_add", "can_edit"]
    method_permission_name = {"list": "list", "show": "show", "log": "add", "act": "edit"}

    # ------------------------------------------------------------------ worklist

    @expose("/list/")
    @has_access
    def list(self):
        show = request.args.get("show", "open")
        if show not in SHOWS:
            show = "open"
        kind = request.args.get("type", "")
        status = request.args.get("status", "")
        rows = self._rows(show, kind, status)
        return self.render_template(
            "woffice/privacy_list.html",
            title="Privacy requests",
            rows=rows,
            show=show,
            shows=SHOWS,
            kind=kind,
            status=status,
            types=TYPE_LABELS,
            statuses=[s.value for s in RequestStatus],
            urgency_class=URGENCY_CLASS,
            urgency_text=urgency_text,
            status_label=status_label,
        )

    def _rows(self, show: str, kind: str, status: str) -> list[tuple[PrivacyRequest, str, int]]:
        if show == "closed":
            stmt = (
                select(PrivacyRequest)
                .where(PrivacyRequest.status.not_in(list(OPEN_STATUSES)))
                .order_by(PrivacyRequest.completed_at.desc().nulls_last())
                .limit(CLOSED_LIMIT)
            )
            rows = [(r, "closed", 0) for r in db.session.scalars(stmt)]
        else:
            rows = privacy.worklist(assignee_id=g.user.id if show == "mine" else None)
            if show in ("due_soon", "overdue"):
                rows = [row for row in rows if row[1] == show]
        if kind:
            rows = [row for row in rows if row[0].request_type == kind]
        if status:
            rows = [row for row in rows if row[0].status == status]
        return rows

    # ---------------------------------------------------------------- log (email)

    @expose("/log", methods=["GET", "POST"])
    @has_access
    def log(self):
        """Log a request received by email with the subject "Privacy Request" (P21)."""
        form = LogRequestForm()
        form.tenant.choices = tenant_choices()
        if form.validate_on_submit():
            try:
                found = self._log(form)
            except WofficeError as exc:
                db.session.rollback()
                field = getattr(form, getattr(exc, "field", "") or "", None)
                if field is not None:
                    field.errors = [*field.errors, str(exc)]
                flash(str(exc), "danger")
            else:
                db.session.commit()
                flash(f"{found.reference} logged; due {ist(found.due_at)}.", "success")
                return redirect(url_for(".show", pk=found.id))
        return self.render_template(
            "woffice/privacy_log.html", title="Log a privacy request", form=form
        )

    def _log(self, form: LogRequestForm) -> PrivacyRequest:
        kind = form.subject_kind.data
        privacy_intake.check_type_for_subject(form.request_type.data, kind)
        tenant = privacy_intake.find_tenant(form.tenant.data) if form.tenant.data else None
        subject = privacy_intake.find_subject(
            kind, tenant, email=form.subject_email.data or "", phone=form.subject_phone.data or ""
        )
        return privacy.open_request(
            request_type=RequestType(form.request_type.data),
            subject_kind=kind,
            subject=subject,
            channel=RequestChannel.email,
            requester_email=form.requester_email.data,
            requester_name=form.requester_name.data,
            details=form.details.data,
            received_at=privacy_intake.ist_to_utc(form.received_at.data),
            created_by=g.user,
            identity_verified=bool(form.identity_verified.data),
        )

    # ----------------------------------------------------------------------- show

    @expose("/show/<int:pk>")
    @has_access
    def show(self, pk: int):
        found = self._get_or_404(pk)
        extra = privacy.compliance_holidays()
        now = utcnow()
        urgency = business_days.urgency(now, found.due_at, extra) if found.is_open else "closed"
        left = business_days.business_days_left(now, found.due_at, extra)
        links = privacy_resolutions.correction_links(found)
        history = self._history(found)
        return self.render_template(
            "woffice/privacy_show.html",
            title=f"Privacy request {found.reference}",
            req=found,
            urgency=urgency,
            urgency_label=urgency_text(urgency, left) if found.is_open else "",
            urgency_class=URGENCY_CLASS,
            status_label=status_label,
            types=TYPE_LABELS,
            subjects=SUBJECT_LABELS,
            users=self._names(found, {e.actor_id for e in history}),
            assignees=privacy_intake.compliance_users(),
            flags=privacy_resolutions.subject_flags(found),
            history=history,
            correction_events=(
                privacy_resolutions.subject_events(found)
                if found.request_type == RequestType.correction and found.is_open
                else []
            ),
            correction_links=links,
            form=FlaskForm(),
            extend_form=ExtendForm(formdata=None),
            reason_form=ReasonForm(formdata=None),
            correction_form=CorrectionForm(formdata=None),
            artifact_url=artifact_url,
            ist=ist,
        )

    @staticmethod
    def _names(found: PrivacyRequest, actors: set[int | None]) -> dict[int, str]:
        """Names of the staff on the request and in its history (shown to Compliance)."""
        ids = {
            found.assignee_id,
            found.created_by_id,
            found.prepared_by_id,
            found.approved_by_id,
            found.extended_by_id,
            *actors,
        } - {None}
        users = db.session.scalars(
            select(AppUser).where(AppUser.id.in_(ids)).execution_options(skip_tenant_scope=True)
        )
        return {u.id: f"{u.first_name} {u.last_name} ({u.email})".strip() for u in users}

    @staticmethod
    def _history(found: PrivacyRequest) -> list[AuditEvent]:
        return list(
            db.session.scalars(
                select(AuditEvent)
                .where(
                    AuditEvent.object_type == audit_name(PrivacyRequest),
                    AuditEvent.object_id == str(found.id),
                )
                .order_by(AuditEvent.id.desc())
                .limit(100)
            )
        )

    @staticmethod
    def _get_or_404(pk: Any) -> PrivacyRequest:
        found = db.session.get(PrivacyRequest, pk)
        if found is None:
            abort(404)
        return found

    # -------------------------------------------------------------------- actions

    @expose("/<int:pk>/act", methods=["POST"])
    @has_access
    def act(self, pk: int):
        """Run one workflow action on the request (each one a service call)."""
        found = self._get_or_404(pk)
        if not FlaskForm().validate_on_submit():
            abort(400, description="The form expired; reload the page and try again.")
        name = request.form.get("action", "")
        handler = ACTIONS.get(name)
        if handler is None:
            abort(400, description="Unknown action.")
        try:
            message = handler(found, g.user, request.form)
        except WofficeError as exc:
            db.session.rollback()
            flash(str(exc), "danger")
            return redirect(url_for(".show", pk=pk))
        db.session.commit()  # the scheduled jobs are enqueued by this commit
        flash(message, "success")
        return redirect(url_for(".show", pk=pk))
