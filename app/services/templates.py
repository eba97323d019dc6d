"""Message templates: sync from the tenant's WABA, status webhooks, readable previews.

Templates are created and reviewed in Meta's WhatsApp Manager; Woffice keeps a copy per
tenant, keyed by (name, language) as Meta is (reference 5):

* `sync_templates` lists every template of the tenant's WABA (all cursor pages first,
  so a failure half-way writes nothing) and upserts them. Templates no longer listed
  are marked ``DELETED``, never removed: campaigns reference them.
* `update_template_status` applies one ``message_template_status_update`` webhook value;
  `apply_template_update` (what the webhook drain calls, through
  `app.services.inbound`) also audits the change and pauses the sending campaigns of a
  template that can no longer be sent.
* `describe_components` / `render_template_text` / `template_variables` show a template
  with its ``{{1}}`` / ``{{name}}`` placeholders, for screens and campaign mapping.
* `last_sync` reads the latest sync request or outcome from the audit trail, which the
  job writes (``templates.synced`` / ``templates.sync_failed``).

Every query here names the tenant explicitly: these functions run in jobs and webhook
intake as well as in requests.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.models.audit import AuditEvent
from app.models.campaign import (
    Campaign,
    CampaignStatus,
    MessageTemplate,
    TemplateCategory,
    TemplateStatus,
)
from app.models.mixins import utcnow
from app.models.tenant import Tenant
from app.services import audit
from app.services.campaigns import set_status as set_campaign_status
from app.services.exceptions import ValidationError
from app.services.whatsapp import (
    TEMPLATE_FIELDS,
    WhatsAppClient,
    WhatsAppError,
    client_for_tenant,
)

log = logging.getLogger(__name__)

# Meta lists rejected_reason on request; the fake and older WABAs may omit it.
SYNC_FIELDS = f"{TEMPLATE_FIELDS},rejected_reason"
PAGE_SIZE = 100
_VARIABLE = re.compile(r"\{\{\s*([A-Za-z0-9_]+)\s*\}\}")
_NAME_MAX, _LANGUAGE_MAX, _ID_MAX, _REASON_MAX = 512, 16, 64, 200

# Audit actions of a sync: the view records the request, the job the outcome.
SYNC_REQUESTED = "templates.sync_requested"
SYNC_DONE = "templates.synced"
SYNC_FAILED = "templates.sync_failed"

# Webhook events that are not review states (reference 5): what each one means here.
# FLAGGED (quality dropping), LOCKED and UNARCHIVED leave the status alone; the next
# sync reads the real one.
_EVENT_STATUS = {s.value: s for s in TemplateStatus} | {"REINSTATED": TemplateStatus.approved}


# ---------------------------------------------------------------------------- sync


def sync_templates(
    session: Session,
    tenant: Tenant,
    *,
    client: WhatsAppClient | None = None,
    page_size: int = PAGE_SIZE,
) -> dict[str, int]:
    """Upsert every template of the tenant's WABA; mark those gone as ``DELETED``.

    Returns counts: fetched, created, updated, unchanged, deleted, skipped (malformed).

    :raises WhatsAppNotConfiguredError: no phone number id, access token or WABA id.
    :raises WhatsAppError: the listing failed (nothing is written then).
    :raises SecretDecryptionError: the stored access token opens with no key.
    """
    client = client or client_for_tenant(tenant)
    remote = list(client.iter_templates(fields=SYNC_FIELDS, limit=page_size))
    now = utcnow()
    existing = {
        (t.name, t.language): t
        for t in session.scalars(
            select(MessageTemplate).where(MessageTemplate.tenant_id == tenant.id)
        )
    }
    counts = dict.fromkeys(("created", "updated", "unchanged", "deleted", "skipped"), 0)
    counts["fetched"] = len(remote)
    seen: set[tuple[str, str]] = set()
    for item in remote:
        key = _key(item)
        if key is not None:
            seen.add(key)  # even when skipped below: a listed template is not deleted
        values = _template_values(item)
        if key is None or values is None:
            counts["skipped"] += 1
            log.warning("tenant %s: skipped a malformed template %r", tenant.id, key)
            continue
        template = existing.get(key)
        if template is None:
            template = MessageTemplate(tenant_id=tenant.id, name=key[0], language=key[1])
            _update(template, values)
            session.add(template)
            existing[key] = template
            counts["created"] += 1
        else:
            counts["updated" if _update(template, values) else "unchanged"] += 1
        template.synced_at = now
    for key, template in existing.items():
        if key not in seen and template.status != TemplateStatus.deleted:
            template.status = TemplateStatus.deleted
            template.synced_at = now
            counts["deleted"] += 1
    session.flush()
    return counts


def _key(item: Mapping[str, Any]) -> tuple[str, str] | None:
    name, language = str(item.get("name") or ""), str(item.get("language") or "")
    if not name or not language or len(name) > _NAME_MAX or len(language) > _LANGUAGE_MAX:
        return None
    return name, language


def _template_values(item: Mapping[str, Any]) -> dict[str, Any] | None:
    """The columns a listed template sets; None when its status or category is unknown."""
    status = _enum(TemplateStatus, item.get("status"))
    category = _enum(TemplateCategory, item.get("category"))
    if status is None or category is None:
        return None
    components = item.get("components")
    components = [dict(c) for c in components if isinstance(c, Mapping)] if components else []
    fmt = str(item.get("parameter_format") or "").upper()
    if fmt not in ("POSITIONAL", "NAMED"):
        fmt = _guess_format(components)
    values: dict[str, Any] = {
        "status": status,
        "category": category,
        "components": components,
        "parameter_format": fmt,
        "wa_template_id": str(item["id"])[:_ID_MAX] if item.get("id") else None,
    }
    reason = _reason(item.get("rejected_reason"))
    if status == TemplateStatus.approved:
        values["rejected_reason"] = None
    elif reason is not None:
        values["rejected_reason"] = reason
    return values


def _update(template: MessageTemplate, values: Mapping[str, Any]) -> bool:
    """Set the changed columns; True when any changed."""
    changed = False
    for name, value in values.items():
        if getattr(template, name) != value:
            setattr(template, name, value)
            changed = True
    return changed


def _enum(cls: type, value: Any) -> Any:
    try:
        return cls(str(value or "").strip().upper())
    except ValueError:
        return None


def _reason(value: Any) -> str | None:
    text = str(value or "").strip()
    return text[:_REASON_MAX] if text and text.upper() != "NONE" else None


def _guess_format(components: list[dict[str, Any]]) -> str:
    names = template_variables(components)
    return "NAMED" if any(not n.isdigit() for n in names) else "POSITIONAL"


# ------------------------------------------------------------------- status webhook


@dataclass(frozen=True)
class TemplateStatusUpdate:
    """What one ``message_template_status_update`` did to the tenant's copy.

    ``outcome`` is ``changed``, ``unchanged`` (a replay), ``unknown`` (no such template:
    a sync adds it) or ``ignored`` (an event that is not a review state).
    """

    outcome: str
    event: str
    template: MessageTemplate | None = None
    old_status: TemplateStatus | None = None
    new_status: TemplateStatus | None = None
    reason: str | None = None

    @property
    def changed(self) -> bool:
        return self.outcome == "changed"


def update_template_status(
    session: Session, tenant_id: int, value: Mapping[str, Any]
) -> TemplateStatusUpdate:
    """Apply a ``message_template_status_update`` webhook value to the tenant's template.

    Finds the template by ``message_template_id``, else by name and language. Replays
    are harmless: applying the same value twice changes nothing the second time. Never
    creates a template.
    """
    event = str(value.get("event") or "").strip().upper()
    template = _find_template(session, tenant_id, value)
    if template is None:
        log.info("tenant %s: status update for an unknown template", tenant_id)
        return TemplateStatusUpdate("unknown", event)
    status = _EVENT_STATUS.get(event)
    if status is None:
        log.info("tenant %s: template event %s leaves the status alone", tenant_id, event)
        return TemplateStatusUpdate("ignored", event, template, template.status, template.status)
    old_status, old_reason = template.status, template.rejected_reason
    template.status = status
    reason = None
    if status == TemplateStatus.approved:
        template.rejected_reason = None
    else:
        other = value.get("other_info")
        detail = (
            (other.get("description") or other.get("title")) if isinstance(other, Mapping) else None
        )
        reason = _reason(value.get("reason")) or _reason(detail)
        if reason is not None:
            template.rejected_reason = reason
    session.flush()
    changed = (old_status, old_reason) != (template.status, template.rejected_reason)
    return TemplateStatusUpdate(
        "changed" if changed else "unchanged", event, template, old_status, status, reason
    )


def apply_template_update(
    session: Session, tenant_id: int, value: Mapping[str, Any]
) -> TemplateStatusUpdate:
    """A status webhook, applied and audited: `update_template_status`, then a
    ``template.status_changed`` event (with Meta's reason) for a real change, and every
    sending campaign of a template that can no longer be sent paused and audited.

    The sending job re-reads its campaign's status between requests, so it stops within
    a moment; the campaign is resumed by a person once the template is approved again.
    """
    update = update_template_status(session, tenant_id, value)
    template = update.template
    if not update.changed or template is None:
        return update
    audit.record(
        "template.status_changed",
        template,
        session=session,
        event=update.event,
        old_status=update.old_status.value if update.old_status else None,
        new_status=template.status.value,
        reason=update.reason,
        template_name=template.name,
        language=template.language,
    )
    if not template.usable:
        _pause_campaigns(session, template)
    return update


def _pause_campaigns(session: Session, template: MessageTemplate) -> int:
    """Pause the template's sending campaigns (audited); returns how many."""
    sending = session.scalars(
        select(Campaign).where(
            Campaign.tenant_id == template.tenant_id,
            Campaign.template_id == template.id,
            Campaign.status == CampaignStatus.sending,
        )
    ).all()
    paused = 0
    for campaign in sending:
        try:
            set_campaign_status(session, campaign, CampaignStatus.paused)
        except ValidationError:
            continue  # paused, cancelled or finished meanwhile
        audit.record(
            "campaign.paused",
            campaign,
            session=session,
            reason="template_not_approved",
            template_status=template.status.value,
        )
        paused += 1
    return paused


def apply_template_status(
    session: Session, tenant_id: int, value: Mapping[str, Any]
) -> MessageTemplate | None:
    """`update_template_status`, returning the template (None: unknown or not a review
    state, e.g. FLAGGED, LOCKED, UNARCHIVED: the next sync reads the real status)."""
    update = update_template_status(session, tenant_id, value)
    return update.template if update.outcome in ("changed", "unchanged") else None


def _find_template(
    session: Session, tenant_id: int, value: Mapping[str, Any]
) -> MessageTemplate | None:
    base = select(MessageTemplate).where(MessageTemplate.tenant_id == tenant_id)
    wa_id = str(value.get("message_template_id") or "").strip()
    if wa_id:
        found = session.scalars(base.where(MessageTemplate.wa_template_id == wa_id)).first()
        if found is not None:
            return found
    name = str(value.get("message_template_name") or "").strip()
    language = str(value.get("message_template_language") or "").strip()
    if not name or not language:
        return None
    # Meta's webhook examples write languages as "en-US"; listings as "en_US".
    languages = {language, language.replace("-", "_")}
    stmt = base.where(MessageTemplate.name == name, MessageTemplate.language.in_(languages))
    return session.scalars(stmt).first()


# ------------------------------------------------------------------ readable form


@dataclass
class ComponentView:
    """One component, ready for a screen: its kind, a label, its text, its buttons."""

    kind: str  # header, body, footer, buttons, other
    label: str
    text: str = ""
    buttons: list[str] = field(default_factory=list)


def template_variables(components: Iterable[Mapping[str, Any]] | None) -> list[str]:
    """The variables (``1``, ``2``... or names) of header, body and buttons, in order."""
    found: list[str] = []
    for text in _texts(components or ()):
        found.extend(_VARIABLE.findall(text))
    return list(dict.fromkeys(found))


def variable_examples(components: Iterable[Mapping[str, Any]] | None) -> dict[str, str]:
    """Meta's sample value of each body/header variable, where the template gives one."""
    examples: dict[str, str] = {}
    for comp in components or ():
        example = comp.get("example") if isinstance(comp, Mapping) else None
        if not isinstance(example, Mapping):
            continue
        text = str(comp.get("text") or "")
        names = list(dict.fromkeys(_VARIABLE.findall(text)))
        for key in ("body_text", "header_text"):
            rows = example.get(key)
            row = rows[0] if rows and isinstance(rows[0], list) else rows
            for name, sample in zip(names, row or [], strict=False):
                examples.setdefault(name, str(sample))
        for key in ("body_text_named_params", "header_text_named_params"):
            for item in example.get(key) or []:
                if isinstance(item, Mapping) and item.get("param_name"):
                    examples.setdefault(str(item["param_name"]), str(item.get("example", "")))
    return examples


def describe_components(components: Iterable[Mapping[str, Any]] | None) -> list[ComponentView]:
    """Header, body, footer and buttons as labelled text (placeholders kept as written)."""
    views: list[ComponentView] = []
    for comp in components or ():
        if not isinstance(comp, Mapping):
            continue
        kind = str(comp.get("type") or "").upper()
        if kind == "HEADER":
            fmt = str(comp.get("format") or "TEXT").upper()
            text = str(comp.get("text") or "") if fmt == "TEXT" else f"[{fmt.lower()}]"
            views.append(ComponentView("header", "Header", text))
        elif kind == "BODY":
            views.append(ComponentView("body", "Body", _body_text(comp)))
        elif kind == "FOOTER":
            views.append(ComponentView("footer", "Footer", str(comp.get("text") or "")))
        elif kind == "BUTTONS":
            buttons = [_button(b) for b in comp.get("buttons") or [] if isinstance(b, Mapping)]
            views.append(ComponentView("buttons", "Buttons", buttons=buttons))
        else:
            views.append(ComponentView("other", kind.replace("_", " ").capitalize() or "Other"))
    return views


def render_template_text(components: Iterable[Mapping[str, Any]] | None) -> str:
    """The template as plain text: header, body, footer, then one line per button."""
    lines: list[str] = []
    for view in describe_components(components):
        if view.kind == "buttons":
            lines.extend(f"[{b}]" for b in view.buttons)
        elif view.kind == "other":
            lines.append(f"({view.label})")
        elif view.text:
            lines.append(f"*{view.text}*" if view.kind == "header" else view.text)
    return "\n".join(lines)


def _body_text(comp: Mapping[str, Any]) -> str:
    text = str(comp.get("text") or "")
    if not text and comp.get("add_security_recommendation") is not None:
        return "{{1}} is your verification code."  # authentication bodies are Meta's
    return text


def _button(button: Mapping[str, Any]) -> str:
    kind = str(button.get("type") or "").upper()
    text = str(button.get("text") or kind.replace("_", " ").capitalize())
    if kind == "URL" and button.get("url"):
        return f"{text} → {button['url']}"
    if kind == "PHONE_NUMBER" and button.get("phone_number"):
        return f"{text} → {button['phone_number']}"
    if kind == "QUICK_REPLY":
        return f"{text} (quick reply)"
    return text


def _texts(components: Iterable[Mapping[str, Any]]) -> Iterable[str]:
    for comp in components:
        if not isinstance(comp, Mapping):
            continue
        if comp.get("text"):
            yield str(comp["text"])
        for button in comp.get("buttons") or []:
            if isinstance(button, Mapping) and button.get("url"):
                yield str(button["url"])


# ------------------------------------------------------------------ sync outcomes


@dataclass(frozen=True)
class SyncOutcome:
    """The latest sync of a tenant: requested (waiting for a worker), done or failed."""

    state: str  # "requested", "synced", "failed"
    at: datetime
    message: str

    @property
    def ok(self) -> bool:
        return self.state == "synced"


def sync_summary(counts: Mapping[str, Any]) -> str:
    """ "5 templates from WhatsApp: 1 new, 2 updated, 1 marked deleted"."""
    parts = [f"{counts.get('created', 0)} new", f"{counts.get('updated', 0)} updated"]
    if counts.get("deleted"):
        parts.append(f"{counts['deleted']} marked deleted")
    if counts.get("skipped"):
        parts.append(f"{counts['skipped']} unreadable, skipped")
    fetched = counts.get("fetched", 0)
    noun = "template" if fetched == 1 else "templates"
    return f"Synced {fetched} {noun} from WhatsApp: " + ", ".join(parts) + "."


def failure_message(exc: Exception) -> str:
    """What a sync failure means for the tenant, and what to do about it."""
    if not isinstance(exc, WhatsAppError):
        return f"WhatsApp is not set up for this business: {exc}"
    code = f" (error {exc.code})" if exc.code is not None else ""
    if exc.code in (0, 190):
        hint = "The access token is invalid or expired: enter a new one in the WhatsApp settings."
    elif exc.code == 100 or exc.code in range(200, 300) or exc.code == 10:
        hint = "Check the WhatsApp Business Account id and the token's permissions."
    elif exc.retryable:
        hint = "WhatsApp did not answer properly; try again in a few minutes."
    else:
        hint = "Nothing was changed."
    return f"Sync failed: {exc.title}{code}. {hint}"


def last_sync(session: Session, tenant_id: int) -> SyncOutcome | None:
    """The tenant's latest sync request or outcome, from the audit trail."""
    event = session.scalars(
        select(AuditEvent)
        .where(
            AuditEvent.tenant_id == tenant_id,
            AuditEvent.action.in_((SYNC_REQUESTED, SYNC_DONE, SYNC_FAILED)),
        )
        .order_by(AuditEvent.id.desc())
        .limit(1)
    ).first()
    if event is None:
        return None
    details = event.details or {}
    if event.action == SYNC_DONE:
        return SyncOutcome("synced", event.occurred_at, sync_summary(details))
    if event.action == SYNC_FAILED:
        return SyncOutcome("failed", event.occurred_at, str(details.get("message") or "failed"))
    return SyncOutcome("requested", event.occurred_at, "Sync requested; waiting for a worker.")
