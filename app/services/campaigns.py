"""Campaigns: template variables, parameter mapping, audience, preview and launch.

The audience is a set of contacts chosen by tags (any or all of some tags, minus
excluded tags). Who among them may be messaged is decided by their consent (P9): only
contacts opted in, not opted out and not objecting to marketing; the others are
recorded at launch as skipped, with the reason. `preview` counts the same thing without
writing anything, so the numbers shown before launch are the numbers launched.

`launch` snapshots the audience in one INSERT ... SELECT (one recipient per contact,
with its rendered template parameters frozen as they are now) inside the transaction
that moves the campaign to ``sending``; the sending jobs are enqueued after the commit.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import (
    String,
    and_,
    case,
    exists,
    func,
    insert,
    literal,
    not_,
    or_,
    select,
    update,
)
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from app.models.campaign import (
    Campaign,
    CampaignRecipient,
    CampaignStatus,
    MessageTemplate,
    RecipientStatus,
    SkipReason,
)
from app.models.contact import ConsentState, Contact, contact_tag
from app.models.mixins import utcnow
from app.services import audit
from app.services.exceptions import ValidationError

VARIABLE = re.compile(r"\{\{\s*([A-Za-z0-9_]+)\s*\}\}")
# Contact fields a template variable can take its value from.
CONTACT_FIELDS = {
    "name": "Name (display name, else WhatsApp profile name)",
    "display_name": "Display name",
    "profile_name": "WhatsApp profile name",
    "phone": "Phone number",
    "email": "Email",
}
MAX_PARAMETER = 1024  # characters in one body parameter (Cloud API limit)
SKIP_LABELS = {
    SkipReason.opted_out: "opted out",
    SkipReason.objecting: "objects to marketing",
    SkipReason.not_opted_in: "not opted in",
    SkipReason.invalid_number: "no valid phone number",
    SkipReason.missing_parameter: "a template value is empty for this contact",
}
LAUNCHABLE = (CampaignStatus.draft, CampaignStatus.scheduled)


# ---------------------------------------------------------------- template variables


def template_variables(template: MessageTemplate) -> list[tuple[str, str]]:
    """The template's variables as (component, name), in order: header then body.

    Positional variables are named "1", "2"...; named ones by their name.
    """
    found: list[tuple[str, str]] = []
    for component in template.components or []:
        kind = str(component.get("type", "")).upper()
        if kind not in ("HEADER", "BODY") or component.get("format", "TEXT") != "TEXT":
            continue
        for name in VARIABLE.findall(component.get("text") or ""):
            if (kind.lower(), name) not in found:
                found.append((kind.lower(), name))
    return found


def mapping_key(component: str, name: str) -> str:
    return f"{component}.{name}"


def validate_mapping(template: MessageTemplate, mapping: dict[str, Any]) -> dict[str, dict]:
    """Every variable of ``template`` mapped to a contact field or a fixed text.

    ``mapping`` maps "body.1" (component.variable) to {"source": "field"|"text",
    "value": ..., "fallback": optional text used when the field is empty}.
    :raises ValidationError: naming the first variable that is not properly mapped.
    """
    clean: dict[str, dict] = {}
    for component, name in template_variables(template):
        key = mapping_key(component, name)
        item = mapping.get(key) or {}
        source = item.get("source")
        value = str(item.get("value") or "").strip()
        fallback = str(item.get("fallback") or "").strip()
        label = f"{{{{{name}}}}} in the {component}"
        if source == "field":
            if value not in CONTACT_FIELDS:
                raise ValidationError(f"Choose a contact field for {label}.", "parameter_mapping")
        elif source == "text":
            if not value:
                raise ValidationError(f"Enter the text for {label}.", "parameter_mapping")
        else:
            raise ValidationError(
                f"Map {label} to a contact field or a fixed text.", "parameter_mapping"
            )
        for text in (value, fallback):
            if len(text) > MAX_PARAMETER:
                raise ValidationError(
                    f"The text for {label} is longer than {MAX_PARAMETER} characters.",
                    "parameter_mapping",
                )
        clean[key] = {"source": source, "value": value}
        if fallback and source == "field":
            clean[key]["fallback"] = fallback
    return clean


def _field(name: str) -> ColumnElement:
    if name == "name":
        return func.coalesce(Contact.display_name, Contact.profile_name)
    return getattr(Contact, name)


def _parameter(item: dict[str, str]) -> tuple[ColumnElement, bool]:
    """(SQL expression of the value, whether it can be empty for some contact)."""
    if item["source"] == "text":
        return literal(item["value"], String), False
    expr = func.nullif(func.trim(_field(item["value"])), "")
    if item.get("fallback"):
        return func.coalesce(expr, literal(item["fallback"], String)), False
    return expr, True


# ---------------------------------------------------------------- audience


def audience(campaign: Campaign) -> ColumnElement[bool]:
    """WHERE clause over `Contact` selecting the campaign's audience (tags only)."""
    conditions: list[ColumnElement[bool]] = [Contact.tenant_id == campaign.tenant_id]

    def tagged(tag_ids: list[int]) -> ColumnElement[bool]:
        return exists().where(
            contact_tag.c.contact_id == Contact.id, contact_tag.c.tag_id.in_(tag_ids)
        )

    include = [int(t) for t in campaign.include_tag_ids or []]
    exclude = [int(t) for t in campaign.exclude_tag_ids or []]
    if include and campaign.include_mode == "all":
        conditions.append(
            select(func.count(contact_tag.c.tag_id))
            .where(contact_tag.c.contact_id == Contact.id, contact_tag.c.tag_id.in_(include))
            .scalar_subquery()
            == len(set(include))
        )
    elif include:
        conditions.append(tagged(include))
    if exclude:
        conditions.append(not_(tagged(exclude)))
    return and_(*conditions)


def _skip_reason(parameters: list[tuple[ColumnElement, bool]]) -> ColumnElement:
    """SQL CASE giving each contact's skip reason (NULL = will be sent), most
    important reason first."""
    missing = [expr.is_(None) for expr, can_be_empty in parameters if can_be_empty]
    whens = [
        (Contact.consent_state == ConsentState.opted_out, SkipReason.opted_out.value),
        (Contact.marketing_objection.is_(True), SkipReason.objecting.value),
        (Contact.consent_state != ConsentState.opted_in, SkipReason.not_opted_in.value),
        (Contact.phone.is_(None), SkipReason.invalid_number.value),
    ]
    if missing:
        whens.append((or_(*missing), SkipReason.missing_parameter.value))
    return case(*whens, else_=None)


def _parameter_columns(campaign: Campaign) -> list[tuple[str, ColumnElement, bool]]:
    mapping = campaign.parameter_mapping or {}
    return [(key, *_parameter(item)) for key, item in sorted(mapping.items())]


@dataclass
class Preview:
    audience: int = 0
    will_send: int = 0
    skipped: dict[SkipReason, int] = field(default_factory=dict)

    @property
    def skipped_total(self) -> int:
        return sum(self.skipped.values())


def preview(session: Session, campaign: Campaign) -> Preview:
    """How many contacts the campaign reaches and how many it skips, by reason."""
    params = _parameter_columns(campaign)
    reason = _skip_reason([(expr, empty) for _key, expr, empty in params]).label("reason")
    rows = session.execute(
        select(reason, func.count()).where(audience(campaign)).group_by(reason)
    ).all()
    result = Preview()
    for skip, count in rows:
        result.audience += count
        if skip is None:
            result.will_send += count
        else:
            result.skipped[SkipReason(skip)] = count
    return result


# ---------------------------------------------------------------- launch


def _json_object(session: Session, pairs: list[tuple[str, ColumnElement]]) -> ColumnElement:
    if not pairs:
        return literal(None)
    name = "json_build_object" if session.get_bind().dialect.name == "postgresql" else "json_object"
    args: list[Any] = []
    for key, expr in pairs:
        args += [literal(key, String), expr]
    return getattr(func, name)(*args)


def launch(session: Session, campaign: Campaign, actor_id: int | None = None) -> Preview:
    """Snapshot the recipients and move the campaign to ``sending``; the caller commits
    (and enqueues the sending jobs after the commit: `app.jobs.campaigns`).

    :raises ValidationError: when the campaign is not a draft or scheduled, or its
        template cannot be sent.
    """
    locked = session.scalars(
        select(Campaign).where(Campaign.id == campaign.id).with_for_update()
    ).one()
    if locked.status not in LAUNCHABLE:
        raise ValidationError(f"This campaign is {locked.status.value}: it cannot be launched.")
    template = locked.template
    if not template.usable:
        raise ValidationError(
            f"The template {template.name} is {template.status.value}: only approved "
            "templates can be sent.",
            "template",
        )
    locked.parameter_mapping = validate_mapping(template, locked.parameter_mapping or {})
    params = _parameter_columns(locked)
    reason = _skip_reason([(expr, empty) for _key, expr, empty in params])
    now = utcnow()
    source = select(
        literal(locked.tenant_id),
        literal(locked.id),
        Contact.id,
        Contact.wa_id,
        case(
            (reason.is_(None), RecipientStatus.pending.value), else_=RecipientStatus.skipped.value
        ),
        reason,
        _json_object(session, [(key, expr) for key, expr, _ in params]),
        literal(0),
        literal(0),
        literal(now),
    ).where(audience(locked))
    session.execute(
        insert(CampaignRecipient.__table__).from_select(
            [
                "tenant_id",
                "campaign_id",
                "contact_id",
                "wa_id",
                "status",
                "skip_reason",
                "parameters",
                "attempts",
                "retry_days",
                "created_at",
            ],
            source,
        )
    )
    # What was written, counted in one pass (skip_reason is NULL for those to send).
    result = Preview()
    for skip, count in session.execute(
        select(CampaignRecipient.skip_reason, func.count())
        .where(CampaignRecipient.campaign_id == locked.id)
        .group_by(CampaignRecipient.skip_reason)
    ):
        if skip is None:
            result.will_send = count
        else:
            result.skipped[skip] = count
    result.audience = result.will_send + result.skipped_total
    locked.recipient_count = result.audience
    locked.skipped_count = result.skipped_total
    locked.status = CampaignStatus.sending if result.will_send else CampaignStatus.completed
    locked.launched_at = now
    if not result.will_send:
        locked.completed_at = now
    audit.record(
        "campaign.launched",
        locked,
        session=session,
        recipients=result.audience,
        to_send=result.will_send,
        skipped=result.skipped_total,
        **{f"skipped_{reason.value}": n for reason, n in result.skipped.items()},
        actor_id=actor_id,
    )
    return result


def set_status(session: Session, campaign: Campaign, status: CampaignStatus) -> None:
    """Pause, resume or cancel; cancelling marks every recipient still pending."""
    allowed = {
        CampaignStatus.paused: (CampaignStatus.sending,),
        CampaignStatus.sending: (CampaignStatus.paused,),
        CampaignStatus.cancelled: (
            CampaignStatus.draft,
            CampaignStatus.scheduled,
            CampaignStatus.sending,
            CampaignStatus.paused,
        ),
    }
    locked = session.scalars(
        select(Campaign).where(Campaign.id == campaign.id).with_for_update()
    ).one()
    if locked.status not in allowed.get(status, ()):
        raise ValidationError(f"A {locked.status.value} campaign cannot be set to {status.value}.")
    locked.status = status
    if status == CampaignStatus.cancelled:
        session.execute(
            update(CampaignRecipient)
            .where(
                CampaignRecipient.campaign_id == locked.id,
                CampaignRecipient.status == RecipientStatus.pending,
            )
            .values(status=RecipientStatus.cancelled)
        )
        locked.completed_at = utcnow()


def scheduled_due(session: Session, now: datetime | None = None) -> list[Campaign]:
    """Scheduled campaigns whose time has come (for the cron job)."""
    return list(
        session.scalars(
            select(Campaign).where(
                Campaign.status == CampaignStatus.scheduled,
                Campaign.scheduled_at <= (now or utcnow()),
            )
        )
    )


# ---------------------------------------------------------------- funnel

_SENT = (RecipientStatus.sent, RecipientStatus.delivered, RecipientStatus.read)
# Funnel stage -> condition on CampaignRecipient, in display order.
STAGES: dict[str, ColumnElement[bool]] = {
    "attempted": CampaignRecipient.attempts > 0,
    "sent": CampaignRecipient.status.in_(_SENT),
    "delivered": CampaignRecipient.status.in_(_SENT[1:]),
    "read": CampaignRecipient.status == RecipientStatus.read,
    "replied": CampaignRecipient.replied_at.is_not(None),
    "failed": CampaignRecipient.status == RecipientStatus.failed,
    "skipped": CampaignRecipient.status == RecipientStatus.skipped,
    "pending": CampaignRecipient.status.in_((RecipientStatus.pending, RecipientStatus.sending)),
    "cancelled": CampaignRecipient.status == RecipientStatus.cancelled,
}
STAGE_LABELS = {
    "attempted": "Attempted",
    "sent": "Sent",
    "delivered": "Delivered",
    "read": "Read",
    "replied": "Replied",
    "failed": "Failed",
    "skipped": "Skipped",
    "pending": "Waiting",
    "cancelled": "Cancelled",
}


def funnel(session: Session, campaign: Campaign) -> dict[str, int]:
    """Recipients per funnel stage (a delivered message also counts as sent...)."""
    columns = [func.count().filter(condition).label(name) for name, condition in STAGES.items()]
    row = session.execute(
        select(*columns).where(CampaignRecipient.campaign_id == campaign.id)
    ).one()
    return {name: int(getattr(row, name) or 0) for name in STAGES}


def progress_percent(counts: dict[str, int], to_send: int) -> int:
    """Share of the recipients to send that reached an outcome (sent or failed)."""
    if to_send <= 0:
        return 100
    done = counts["sent"] + counts["failed"] + counts["cancelled"]
    return min(100, done * 100 // to_send)
