"""Campaigns (issue 5): create -> template values -> preview -> launch or schedule ->
progress and funnel, each stage clickable to its recipients (and their CSV)."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

from flask import Response, abort, flash, g, redirect, request, stream_with_context, url_for
from flask_appbuilder import expose
from flask_appbuilder.models.sqla.interface import SQLAInterface
from flask_appbuilder.security.decorators import has_access
from flask_wtf import FlaskForm
from sqlalchemy import select
from wtforms import DateTimeLocalField, RadioField, SelectField, SelectMultipleField, StringField
from wtforms.validators import DataRequired, Length, Optional

from app.extensions import db
from app.models.campaign import (
    Campaign,
    CampaignRecipient,
    CampaignStatus,
    MessageTemplate,
    TemplateStatus,
)
from app.models.contact import Contact, Tag
from app.models.mixins import utcnow
from app.services import audit
from app.services import campaigns as svc
from app.services.contact_import import csv_safe
from app.services.exceptions import ValidationError
from app.tenancy import TenantModelView, current_tenant_id
from app.views._format import IST, UTC, ist

STATUS_LABELS = {
    CampaignStatus.draft: "Draft",
    CampaignStatus.scheduled: "Scheduled",
    CampaignStatus.sending: "Sending",
    CampaignStatus.paused: "Paused",
    CampaignStatus.completed: "Completed",
    CampaignStatus.cancelled: "Cancelled",
}
RECIPIENTS_PAGE = 100
# What a funnel number counts, where its list shows more than its name says.
STAGE_HINTS = {
    "attempted": "Every recipient a send was tried for, whatever happened next.",
    "sent": "Accepted by WhatsApp, including messages since delivered or read.",
    "delivered": "Delivered to the phone, including messages since read.",
    "pending": "Not sent yet: waiting for their turn or for a retry.",
}
# The campaign page reloads itself every SENDING_REFRESH_S while sending, then every
# REPORTS_REFRESH_S for up to REPORTS_WINDOW after completion while delivery reports
# (webhooks) are still outstanding, so the funnel an operator watches is never stale.
SENDING_REFRESH_S = 2
REPORTS_REFRESH_S = 5
REPORTS_WINDOW = timedelta(minutes=10)


def _status_label(value: Any) -> str:
    return STATUS_LABELS.get(value, str(value or ""))


def _to_utc(local: datetime | None) -> datetime | None:
    """A naive IST time typed in the form -> naive UTC for storage."""
    if local is None:
        return None
    return local.replace(tzinfo=IST).astimezone(UTC).replace(tzinfo=None)


def _refresh_seconds(campaign: Campaign, counts: dict[str, int]) -> int | None:
    """How often the campaign page should reload itself, or None (it is settled)."""
    if campaign.status == CampaignStatus.sending:
        return SENDING_REFRESH_S
    awaiting_reports = counts["sent"] > counts["delivered"]
    if (
        campaign.status == CampaignStatus.completed
        and awaiting_reports
        and campaign.completed_at is not None
        and utcnow() - campaign.completed_at < REPORTS_WINDOW
    ):
        return REPORTS_REFRESH_S
    return None


def _tag_names(tag_ids: list[int] | None) -> list[str]:
    """The names of the tenant's tags ``tag_ids`` (a deleted tag is left out)."""
    if not tag_ids:
        return []
    return list(
        db.session.scalars(
            select(Tag.name)
            .where(Tag.tenant_id == current_tenant_id(), Tag.id.in_(tag_ids))
            .order_by(Tag.name)
        )
    )


def _to_ist(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC).astimezone(IST).replace(tzinfo=None)


def _campaign_form(campaign: Campaign | None = None) -> FlaskForm:
    tenant_id = current_tenant_id()
    templates = db.session.scalars(
        select(MessageTemplate)
        .where(
            MessageTemplate.tenant_id == tenant_id,
            MessageTemplate.status == TemplateStatus.approved,
        )
        .order_by(MessageTemplate.name, MessageTemplate.language)
    ).all()
    tags = db.session.scalars(
        select(Tag).where(Tag.tenant_id == tenant_id).order_by(Tag.name)
    ).all()
    tag_choices = [(t.id, t.name) for t in tags]

    class CampaignForm(FlaskForm):
        name = StringField("Name", validators=[DataRequired("Name the campaign."), Length(max=120)])
        template_id = SelectField(
            "Template",
            coerce=int,
            choices=[
                (t.id, f"{t.name} ({t.language}, {t.category.value.lower()})") for t in templates
            ],
            validators=[DataRequired("Choose an approved template.")],
            description="Only templates approved by WhatsApp are listed (Templates screen).",
        )
        include_tag_ids = SelectMultipleField(
            "Send to contacts tagged",
            coerce=int,
            choices=tag_choices,
            validators=[Optional()],
            description="No tag chosen = every contact. Only opted-in contacts receive it.",
        )
        include_mode = RadioField(
            "Match",
            choices=[("any", "any of these tags"), ("all", "all of these tags")],
            default="any",
        )
        exclude_tag_ids = SelectMultipleField(
            "Except contacts tagged", coerce=int, choices=tag_choices, validators=[Optional()]
        )
        scheduled_at = DateTimeLocalField(
            "Send at (IST)",
            format="%Y-%m-%dT%H:%M",
            validators=[Optional()],
            description="Leave empty to send when you launch it.",
        )

    form = CampaignForm(obj=campaign) if campaign is not None else CampaignForm()
    if campaign is not None and request.method == "GET":
        form.scheduled_at.data = _to_ist(campaign.scheduled_at)
    return form


class CampaignModelView(TenantModelView):
    """A tenant's campaigns: audience by tags, consent-aware preview, funnel."""

    datamodel = SQLAInterface(Campaign)
    class_permission_name = "Campaigns"
    route_base = "/campaigns"
    list_title = "Campaigns"
    show_title = "Campaign"
    base_permissions = [
        "can_list",
        "can_show",
        "can_add",
        "can_edit",
        "can_launch",
        "can_control",
        "can_recipients",
    ]
    # The CSV needs what the recipients page needs; the values form is part of editing.
    method_permission_name = {
        "recipients_csv": "recipients",
        "parameters": "edit",
    }
    base_order = ("created_at", "desc")
    list_columns = [
        "name",
        "template",
        "status",
        "scheduled_at",
        "launched_at",
        "recipient_count",
        "skipped_count",
    ]
    search_columns = ["name", "status", "created_at"]
    order_columns = ["name", "status", "scheduled_at", "launched_at", "created_at"]
    label_columns = {
        "scheduled_at": "Scheduled for",
        "launched_at": "Launched",
        "recipient_count": "Audience",
        "skipped_count": "Skipped",
        "created_by": "Created by",
        "created_at": "Created",
        "completed_at": "Completed",
    }
    # The page's own panel shows the template, audience, values and funnel; FAB's
    # details table only adds who created it and when (raw ids and JSON stay hidden).
    show_columns = ["created_by", "created_at", "scheduled_at", "launched_at", "completed_at"]
    formatters_columns = {
        "status": _status_label,
        "scheduled_at": lambda v: ist(v) if v else "",
        "launched_at": lambda v: ist(v) if v else "",
        "completed_at": lambda v: ist(v) if v else "",
        "created_at": lambda v: ist(v) if v else "",
    }
    show_template = "woffice/campaign_show.html"

    # ----------------------------------------------------------------- add / edit

    @expose("/add", methods=["GET", "POST"])
    @has_access
    def add(self):
        """Step 1: name, template, audience and (optional) schedule."""
        form = _campaign_form()
        if form.validate_on_submit():
            campaign = Campaign(tenant_id=current_tenant_id(), created_by_id=g.user.id)
            if self._save(form, campaign):
                db.session.add(campaign)
                db.session.commit()
                flash("Campaign saved as a draft. Choose the template's values.", "success")
                return redirect(url_for(".show", pk=campaign.id))
        return self.render_template(
            "woffice/campaign_form.html", title="New campaign", form=form, campaign=None
        )

    @expose("/edit/<pk>", methods=["GET", "POST"])
    @has_access
    def edit(self, pk):
        campaign = self._get_or_404(pk)
        if campaign.status not in svc.LAUNCHABLE:
            flash("Only draft and scheduled campaigns can be changed.", "warning")
            return redirect(url_for(".show", pk=campaign.id))
        form = _campaign_form(campaign)
        if form.validate_on_submit() and self._save(form, campaign):
            db.session.commit()
            flash("Campaign saved.", "success")
            return redirect(url_for(".show", pk=campaign.id))
        return self.render_template(
            "woffice/campaign_form.html", title="Edit campaign", form=form, campaign=campaign
        )

    def _save(self, form: FlaskForm, campaign: Campaign) -> bool:
        tenant_id = current_tenant_id()
        template = db.session.get(MessageTemplate, form.template_id.data)
        if template is None or template.tenant_id != tenant_id or not template.usable:
            form.template_id.errors = ["Choose an approved template."]
            return False
        scheduled = _to_utc(form.scheduled_at.data)
        if scheduled is not None and scheduled <= utcnow():
            form.scheduled_at.errors = ["Choose a time in the future (IST)."]
            return False
        include = sorted(set(form.include_tag_ids.data or []))
        exclude = sorted(set(form.exclude_tag_ids.data or []))
        if set(include) & set(exclude):
            form.exclude_tag_ids.errors = ["A tag cannot be both included and excluded."]
            return False
        if campaign.template_id != template.id:
            campaign.parameter_mapping = {}
        campaign.name = form.name.data.strip()
        campaign.template_id = template.id
        campaign.include_tag_ids = include
        campaign.include_mode = form.include_mode.data if include else "any"
        campaign.exclude_tag_ids = exclude
        campaign.scheduled_at = scheduled
        return True

    # ----------------------------------------------------------------------- show

    @expose("/show/<pk>", methods=["GET"])
    @has_access
    def show(self, pk):
        campaign = self._get_or_404(pk)
        widgets = self._show(campaign.id)
        template = campaign.template
        variables = svc.template_variables(template)
        mapping_error = None
        preview = None
        if campaign.status in svc.LAUNCHABLE:
            try:
                svc.validate_mapping(template, campaign.parameter_mapping or {})
            except ValidationError as exc:
                mapping_error = str(exc)
            preview = svc.preview(db.session, campaign) if not mapping_error else None
        counts = svc.funnel(db.session, campaign)
        to_send = campaign.recipient_count - campaign.skipped_count
        refresh = _refresh_seconds(campaign, counts)
        return self.render_template(
            self.show_template,
            pk=campaign.id,
            title="Details",
            widgets=widgets,
            related_views=[],
            campaign=campaign,
            wa_template=template,
            variables=variables,
            mapping=campaign.parameter_mapping or {},
            fields=svc.CONTACT_FIELDS,
            mapping_error=mapping_error,
            preview=preview,
            skip_labels=svc.SKIP_LABELS,
            counts=counts,
            stages=svc.STAGE_LABELS,
            to_send=to_send,
            percent=svc.progress_percent(counts, to_send),
            status_label=_status_label(campaign.status),
            refresh=refresh,
            include_tags=_tag_names(campaign.include_tag_ids),
            exclude_tags=_tag_names(campaign.exclude_tag_ids),
            scheduled_ist=ist(campaign.scheduled_at) if campaign.scheduled_at else "",
            form=FlaskForm(),
        )

    # ---------------------------------------------------------- template values

    @expose("/<int:pk>/parameters", methods=["POST"])
    @has_access
    def parameters(self, pk: int):
        """Step 2: each template variable from a contact field or a fixed text."""
        campaign = self._get_or_404(pk)
        form = FlaskForm()
        if not form.validate_on_submit():
            abort(400, description="The form expired; reload the page and try again.")
        if campaign.status not in svc.LAUNCHABLE:
            abort(409, description="This campaign can no longer be changed.")
        chosen: dict[str, dict[str, str]] = {}
        for component, name in svc.template_variables(campaign.template):
            key = svc.mapping_key(component, name)
            chosen[key] = {
                "source": request.form.get(f"source-{key}", ""),
                "value": request.form.get(
                    f"field-{key}"
                    if request.form.get(f"source-{key}") == "field"
                    else f"text-{key}",
                    "",
                ),
                "fallback": request.form.get(f"fallback-{key}", ""),
            }
        try:
            campaign.parameter_mapping = svc.validate_mapping(campaign.template, chosen)
        except ValidationError as exc:
            flash(str(exc), "danger")
            return redirect(url_for(".show", pk=campaign.id))
        db.session.commit()
        flash("Template values saved. Check the preview, then launch.", "success")
        return redirect(url_for(".show", pk=campaign.id))

    # --------------------------------------------------------------------- launch

    @expose("/<int:pk>/launch", methods=["POST"])
    @has_access
    def launch(self, pk: int):
        """Launch now, or confirm the schedule (the cron job launches it at its time)."""
        campaign = self._get_or_404(pk)
        if not FlaskForm().validate_on_submit():
            abort(400, description="The form expired; reload the page and try again.")
        try:
            svc.validate_mapping(campaign.template, campaign.parameter_mapping or {})
            if campaign.scheduled_at is not None and campaign.scheduled_at > utcnow():
                if campaign.status != CampaignStatus.draft:
                    raise ValidationError("This campaign is already scheduled.")
                campaign.status = CampaignStatus.scheduled
                audit.record("campaign.scheduled", campaign, at=campaign.scheduled_at)
                db.session.commit()
                flash(f"Scheduled for {ist(campaign.scheduled_at)}.", "success")
                return redirect(url_for(".show", pk=campaign.id))
            result = svc.launch(db.session, campaign, actor_id=g.user.id)
        except ValidationError as exc:
            db.session.rollback()
            flash(str(exc), "danger")
            return redirect(url_for(".show", pk=campaign.id))
        if result.will_send:
            _enqueue_sending(campaign)
        db.session.commit()
        flash(f"Launched: {result.will_send} to send, {result.skipped_total} skipped.", "success")
        return redirect(url_for(".show", pk=campaign.id))

    @expose("/<int:pk>/control", methods=["POST"])
    @has_access
    def control(self, pk: int):
        """Pause, resume or cancel."""
        campaign = self._get_or_404(pk)
        if not FlaskForm().validate_on_submit():
            abort(400, description="The form expired; reload the page and try again.")
        wanted = {
            "pause": CampaignStatus.paused,
            "resume": CampaignStatus.sending,
            "cancel": CampaignStatus.cancelled,
        }.get(request.form.get("action", ""))
        if wanted is None:
            abort(400, description="Unknown action.")
        try:
            svc.set_status(db.session, campaign, wanted)
        except ValidationError as exc:
            db.session.rollback()
            flash(str(exc), "danger")
            return redirect(url_for(".show", pk=campaign.id))
        audit.record(f"campaign.{request.form['action']}", campaign)
        if wanted == CampaignStatus.sending:
            _enqueue_sending(campaign)
        db.session.commit()
        flash(f"Campaign {_status_label(wanted).lower()}.", "success")
        return redirect(url_for(".show", pk=campaign.id))

    # ----------------------------------------------------------------- recipients

    @expose("/<int:pk>/recipients")
    @has_access
    def recipients(self, pk: int):
        """The recipients behind one funnel number (paged), or all of them."""
        campaign = self._get_or_404(pk)
        stage = self._stage()
        page = max(0, request.args.get("page", 0, type=int) or 0)
        stmt = self._recipients_stmt(campaign, stage)
        rows = db.session.execute(
            stmt.offset(page * RECIPIENTS_PAGE).limit(RECIPIENTS_PAGE + 1)
        ).all()
        counts = svc.funnel(db.session, campaign)
        return self.render_template(
            "woffice/campaign_recipients.html",
            title=f"{campaign.name}: {svc.STAGE_LABELS.get(stage, 'All recipients')}",
            campaign=campaign,
            stage=stage,
            stages=svc.STAGE_LABELS,
            counts=counts,
            total=campaign.recipient_count,
            hint=STAGE_HINTS.get(stage or ""),
            rows=rows[:RECIPIENTS_PAGE],
            page=page,
            has_next=len(rows) > RECIPIENTS_PAGE,
            skip_labels=svc.SKIP_LABELS,
        )

    @expose("/<int:pk>/recipients.csv")
    @has_access
    def recipients_csv(self, pk: int):
        """The same list as CSV, streamed (audited: it holds phone numbers)."""
        campaign = self._get_or_404(pk)
        stage = self._stage()
        stmt = self._recipients_stmt(campaign, stage).execution_options(yield_per=2000)
        audit.record("campaign.recipients_exported", campaign, stage=stage or "all")
        db.session.commit()

        def lines() -> Iterator[str]:
            buffer = io.StringIO()
            writer = csv.writer(buffer)
            writer.writerow(
                [
                    "contact",
                    "phone",
                    "status",
                    "skip_reason",
                    "sent_at",
                    "delivered_at",
                    "read_at",
                    "replied_at",
                    "error_code",
                    "error_title",
                ]
            )
            for r, contact in db.session.execute(stmt):
                writer.writerow(
                    [
                        csv_safe(contact.display_name or contact.profile_name or ""),
                        # E.164 or a WhatsApp id: validated digits, never a formula.
                        contact.phone or r.wa_id,
                        r.status.value,
                        r.skip_reason.value if r.skip_reason else "",
                        ist(r.sent_at),
                        ist(r.delivered_at),
                        ist(r.read_at),
                        ist(r.replied_at),
                        r.error_code or "",
                        csv_safe(r.error_title or ""),
                    ]
                )
                if buffer.tell() > 64_000:
                    yield buffer.getvalue()
                    buffer.seek(0)
                    buffer.truncate()
            yield buffer.getvalue()

        safe = "".join(c if c.isalnum() else "-" for c in campaign.name)[:60] or "campaign"
        return Response(
            stream_with_context(lines()),
            mimetype="text/csv",
            headers={"Content-Disposition": f"attachment; filename={safe}-{stage or 'all'}.csv"},
        )

    # -------------------------------------------------------------------- helpers

    @staticmethod
    def _stage() -> str | None:
        stage = request.args.get("stage") or None
        if stage is not None and stage not in svc.STAGES:
            abort(404)
        return stage

    @staticmethod
    def _recipients_stmt(campaign: Campaign, stage: str | None):
        stmt = (
            select(CampaignRecipient, Contact)
            .join(Contact, Contact.id == CampaignRecipient.contact_id)
            .where(CampaignRecipient.campaign_id == campaign.id)
            .order_by(CampaignRecipient.id)
        )
        if stage is not None:
            stmt = stmt.where(svc.STAGES[stage])
        return stmt


def _enqueue_sending(campaign: Campaign) -> None:
    from app.jobs.campaigns import schedule_sending

    schedule_sending(campaign.id, campaign.tenant_id)
