"""An agent's reply from a conversation (reference 1, 2, 6; P8, P9, P14).

**What may be sent.** Free-form text only inside the 24-hour customer-service window:
24 hours since the contact's last inbound message (``Contact.last_inbound_at``; the
business's own messages do not refresh it). Outside it, only an approved template. A
contact who stopped marketing still gets in-window service replies and utility or
authentication templates (as on WhatsApp), but a MARKETING template needs a contact who
is opted in and does not object to marketing, as campaigns do (P9). The page shows only
what may be sent; these rules are checked again here, on every send.

**How it is sent**, in three steps so that no database transaction stays open across
the HTTP call (the caller commits between them):

1. `prepare_text_reply` / `prepare_template_reply` check the rules and add the outbound
   `Message` (status ``accepted``, no WhatsApp id yet); the caller commits.
2. `deliver` makes the Cloud API call; it touches no database row.
3. `record_delivery` stores the ``wamid`` (status webhooks then move the message along,
   `app.services.inbound.apply_statuses`) or marks the message ``failed`` with the error
   code and title, and audits the send; the caller commits.

A process killed during the call leaves the message ``accepted`` without a WhatsApp id:
never resent automatically (it may have reached Meta). Audit events name the message,
the kind and the template, never the text (message bodies are personal data).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.models.campaign import MessageTemplate, TemplateCategory, TemplateStatus
from app.models.contact import ConsentState, Contact
from app.models.conversation import Conversation, Message, MessageDirection, MessageStatus
from app.models.mixins import utcnow
from app.models.tenant import Tenant
from app.services import audit
from app.services.campaigns import MAX_PARAMETER, mapping_key, template_variables
from app.services.exceptions import SecretDecryptionError, WofficeError
from app.services.inbound import apply_pending_statuses
from app.services.sending import rendered_body, template_arguments
from app.services.whatsapp import (
    TEXT_MAX,
    WhatsAppClient,
    WhatsAppError,
    WhatsAppNotConfiguredError,
    client_for_tenant,
    normalize_to,
)

WINDOW = timedelta(hours=24)
RESEND_GUARD = timedelta(seconds=10)  # the same text again this soon is a double click


class ReplyRefusedError(WofficeError):
    """The reply may not be sent (window, consent, template, settings); nothing was sent.

    ``reason`` is a short code for the audit trail.
    """

    def __init__(self, message: str, reason: str):
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class PreparedReply:
    """A reply recorded as a pending message, ready for its one Cloud API call."""

    message_id: int
    conversation_id: int
    tenant_id: int
    to: str
    kind: str  # "text" or "template"
    client: WhatsAppClient
    text: str | None = None
    template_name: str | None = None
    language: str | None = None
    category: str | None = None
    body: list[str] | dict[str, str] | None = None
    components: tuple[dict[str, Any], ...] = ()


@dataclass(frozen=True)
class Delivery:
    """What the Cloud API said: a ``wamid``, or an error."""

    wamid: str | None = None
    error: WhatsAppError | None = None
    invalid: str | None = None  # refused before any request left


# ------------------------------------------------------------------------ the window


def window_closes_at(contact: Contact) -> datetime | None:
    """When the contact's customer-service window closes (None: never opened)."""
    return contact.last_inbound_at + WINDOW if contact.last_inbound_at else None


def window_open(contact: Contact, now: datetime | None = None) -> bool:
    """Whether free-form messages may be sent to the contact now."""
    closes = window_closes_at(contact)
    return closes is not None and (now or utcnow()) < closes


def sendable_templates(session: Session, tenant_id: int) -> list[MessageTemplate]:
    """The tenant's approved templates an agent can fill in (text headers only)."""
    rows = session.scalars(
        select(MessageTemplate)
        .where(
            MessageTemplate.tenant_id == tenant_id,
            MessageTemplate.status == TemplateStatus.approved,
        )
        .order_by(MessageTemplate.name, MessageTemplate.language)
    ).all()
    return [t for t in rows if _fillable(t)]


def _fillable(template: MessageTemplate) -> bool:
    """No media header and no button variable: what an agent can fill in here."""
    for comp in template.components or []:
        kind = str(comp.get("type", "")).upper()
        if kind == "HEADER" and str(comp.get("format") or "TEXT").upper() != "TEXT":
            return False
        for button in comp.get("buttons") or []:
            if "{{" in str(button.get("url") or ""):
                return False
    return True


# ----------------------------------------------------------------------- preparing


def prepare_text_reply(
    session: Session, conversation: Conversation, text: str, now: datetime | None = None
) -> PreparedReply:
    """Check a free-form reply and record it as a pending outbound message.

    :raises ReplyRefusedError: empty or too long, the window is closed, the contact has
        no number, WhatsApp is not set up, or the same text was sent seconds ago.
    """
    text = (text or "").strip()
    if not text:
        raise ReplyRefusedError("Write a message first.", "empty")
    if len(text) > TEXT_MAX:
        raise ReplyRefusedError(f"A message can be at most {TEXT_MAX} characters.", "too_long")
    contact = conversation.contact
    if not window_open(contact, now):
        raise ReplyRefusedError(
            "The 24-hour window for free-form replies is closed: the contact last wrote more "
            "than 24 hours ago (or never). Send an approved template instead.",
            "window_closed",
        )
    to, client = _recipient(session, conversation)
    if _just_sent(session, conversation.id, text, now):
        raise ReplyRefusedError("This message was just sent.", "repeated")
    message = _pending_message(session, conversation, "text", text, now)
    return PreparedReply(
        message.id, conversation.id, conversation.tenant_id, to, "text", client, text=text
    )


def prepare_template_reply(
    session: Session,
    conversation: Conversation,
    template_id: int,
    values: Mapping[str, str],
    now: datetime | None = None,
) -> PreparedReply:
    """Check a template reply (any time) and record it as a pending outbound message.

    ``values`` maps each variable key (``body.1``, ``header.name``) to its text.
    :raises ReplyRefusedError: the template is not an approved one of the tenant, a
        value is missing or too long, a marketing template to a contact without
        marketing consent, no number, or WhatsApp is not set up.
    """
    template = session.scalars(
        select(MessageTemplate).where(
            MessageTemplate.id == template_id,
            MessageTemplate.tenant_id == conversation.tenant_id,
        )
    ).first()
    if template is None or not template.usable or not _fillable(template):
        raise ReplyRefusedError("Choose one of the approved templates.", "template_not_approved")
    parameters = _parameters(template, values)
    if template.category == TemplateCategory.marketing:
        _check_marketing_consent(conversation.contact)
    to, client = _recipient(session, conversation)
    body_text = rendered_body(template, parameters) or f"[template {template.name}]"
    message = _pending_message(session, conversation, "template", body_text, now)
    body, components = template_arguments(template, parameters)
    return PreparedReply(
        message.id,
        conversation.id,
        conversation.tenant_id,
        to,
        "template",
        client,
        template_name=template.name,
        language=template.language,
        category=template.category.value,
        body=body,
        components=tuple(components),
    )


def _parameters(template: MessageTemplate, values: Mapping[str, str]) -> dict[str, str]:
    parameters: dict[str, str] = {}
    for component, name in template_variables(template):
        key = mapping_key(component, name)
        value = str(values.get(key) or "").strip()
        label = f"{{{{{name}}}}} in the {component}"
        if not value:
            raise ReplyRefusedError(f"Fill in {label}.", "missing_parameter")
        if len(value) > MAX_PARAMETER:
            raise ReplyRefusedError(
                f"The value of {label} is longer than {MAX_PARAMETER} characters.",
                "parameter_too_long",
            )
        parameters[key] = value
    return parameters


def _check_marketing_consent(contact: Contact) -> None:
    if contact.consent_state == ConsentState.opted_out:
        raise ReplyRefusedError(
            "This contact opted out of marketing messages: send a utility template, or "
            "reply in the 24-hour window.",
            "opted_out",
        )
    if contact.marketing_objection:
        raise ReplyRefusedError(
            "This contact objects to marketing: send a utility template instead.", "objecting"
        )
    if contact.consent_state != ConsentState.opted_in:
        raise ReplyRefusedError(
            "This contact has not opted in to marketing messages: record their opt-in "
            "first, or send a utility template.",
            "not_opted_in",
        )


def _recipient(session: Session, conversation: Conversation) -> tuple[str, WhatsAppClient]:
    """The contact's WhatsApp number and the tenant's Cloud API client."""
    contact = conversation.contact
    try:
        to = normalize_to(contact.phone or contact.wa_id)
    except ValueError:
        raise ReplyRefusedError(
            "This contact has no phone number WhatsApp can send to.", "no_number"
        ) from None
    tenant = session.get(Tenant, conversation.tenant_id)
    try:
        return to, client_for_tenant(tenant)
    except (WhatsAppNotConfiguredError, SecretDecryptionError):
        raise ReplyRefusedError(
            "WhatsApp is not set up for this business: a tenant admin enters the phone "
            "number id and access token in the WhatsApp settings.",
            "not_configured",
        ) from None


def _just_sent(session: Session, conversation_id: int, text: str, now: datetime | None) -> bool:
    since = (now or utcnow()) - RESEND_GUARD
    return (
        session.scalars(
            select(Message.id).where(
                Message.conversation_id == conversation_id,
                Message.direction == MessageDirection.outbound,
                Message.body == text,
                Message.status != MessageStatus.failed,
                Message.created_at >= since,
            )
        ).first()
        is not None
    )


def _pending_message(
    session: Session, conversation: Conversation, kind: str, body: str, now: datetime | None
) -> Message:
    when = now or utcnow()
    message = Message(
        tenant_id=conversation.tenant_id,
        conversation=conversation,
        direction=MessageDirection.outbound,
        type=kind,
        body=body,
        status=MessageStatus.accepted,
        created_at=when,
    )
    session.add(message)
    conversation.last_message_at = when
    session.flush()
    return message


# ------------------------------------------------------------------- the HTTP call


def deliver(reply: PreparedReply) -> Delivery:
    """The one Cloud API call of a prepared reply (no database access)."""
    callback = f"reply:{reply.message_id}"
    try:
        if reply.kind == "text":
            result = reply.client.send_text(reply.to, reply.text or "", callback_data=callback)
        else:
            result = reply.client.send_template(
                reply.to,
                reply.template_name or "",
                reply.language or "",
                body=reply.body,
                components=reply.components,
                callback_data=callback,
            )
    except WhatsAppError as exc:
        return Delivery(error=exc)
    except ValueError as exc:
        return Delivery(invalid=str(exc))
    return Delivery(wamid=result.wamid)


# ---------------------------------------------------------------------- recording


def record_delivery(
    session: Session, reply: PreparedReply, delivery: Delivery, now: datetime | None = None
) -> Message:
    """Store the outcome on the message and audit the send (never its text)."""
    message = session.scalars(
        select(Message).where(Message.id == reply.message_id, Message.tenant_id == reply.tenant_id)
    ).one()
    if delivery.wamid:
        message.wa_message_id = delivery.wamid
        session.flush()
        apply_pending_statuses(session, message)  # statuses that beat us to it
    else:
        error = delivery.error
        message.status = MessageStatus.failed
        message.failed_at = now or utcnow()
        message.error_code = error.code if error else None
        message.error_title = (error.title if error else delivery.invalid or "Not sent")[:200]
    audit.record(
        "conversation.reply_sent" if delivery.wamid else "conversation.reply_failed",
        message.conversation,
        session=session,
        message_id=message.id,
        kind=reply.kind,
        template=reply.template_name,
        category=reply.category,
        error_code=message.error_code,
    )
    return message


def failure_message(delivery: Delivery) -> str:
    """What a failed send means for the agent, and what to do about it."""
    error = delivery.error
    if error is None:
        return f"The message was not sent: {delivery.invalid or 'unknown problem'}."
    code = f" (error {error.code})" if error.code is not None else ""
    if error.ambiguous:
        hint = (
            "WhatsApp did not confirm the send: it may still arrive. Check the conversation "
            "before sending it again."
        )
    elif error.code == 131047:
        hint = "The 24-hour window has closed: send an approved template instead."
    elif error.code == 131050:
        hint = "The contact stopped marketing messages from this business."
    elif error.code in (0, 190):
        hint = "The WhatsApp access token is invalid or expired: a tenant admin enters a new one."
    elif error.code is not None and 132000 <= error.code < 133000:
        hint = "The template cannot be sent as it is: sync the templates and check its status."
    elif error.retryable:
        hint = "WhatsApp is busy or did not answer properly: try again in a minute."
    else:
        hint = "Nothing was delivered."
    return f"WhatsApp refused the message: {error.title}{code}. {hint}"
