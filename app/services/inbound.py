"""Processing stored WhatsApp webhook payloads (reference 4, 6): messages, statuses,
user preferences. Idempotent and order-independent; callers commit.

* **Messages** find or create the contact (by WhatsApp id: the number's digits, or a
  business-scoped user id when no number is given), its open or pending conversation
  (or a new one), and store the message once (unique ``wa_message_id``). A text equal to
  a STOP keyword records an opt-out, a START keyword a resume.
* **Statuses** move a message forward only. Precedence, lowest to highest:
  received < accepted < sent < failed < delivered < read. So ``failed`` replaces
  sent/accepted, but never a delivered or read message (it demonstrably arrived), and a
  later delivered/read replaces failed. Every status still records its own timestamp
  (``sent_at``, ``delivered_at``, ``read_at``, ``failed_at``) when first seen, so a
  ``delivered`` arriving after ``read`` keeps status read and fills ``delivered_at``.
  ``played`` (voice) counts as read. A status for a message not stored yet is kept as a
  `PendingStatus` and applied by `apply_pending_statuses` when the message appears.
  `apply_statuses` applies a whole batch (many payloads) in one UPDATE whose SQL keeps
  these rules, so concurrent jobs cannot move a status backwards either. Being Core SQL,
  these updates make no per-message audit events: the signed raw payload stays in
  ``webhook_inbox`` and the job's ``job.finished`` event carries the counts.
* **user_preferences** ``marketing_messages`` stop/resume record an opt-out/resume.
* **Template status updates** (``message_template_status_update``, addressed to a WABA,
  not a number) go to `app.services.templates.apply_template_update`; one for a template
  the tenant does not have yet is counted in ``templates_unknown`` (the caller has the
  templates synced rather than storing a partial row).

**Routing.** A payload can be stored for several tenants (tenants sharing a WhatsApp
Business Account each get its template updates). Given the tenant's `Route`, only the
changes addressed to it are applied: a change naming a phone number id when it is the
tenant's number, a change without one (WABA-level) when its entry is the tenant's WABA.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from flask import current_app, has_app_context
from sqlalchemy import select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.models.contact import ConsentAction, ConsentSource, ConsentState, Contact
from app.models.conversation import (
    Conversation,
    ConversationStatus,
    Message,
    MessageDirection,
    MessageStatus,
    PendingStatus,
)
from app.models.mixins import utcnow
from app.services.consent import record_consent
from app.services.templates import apply_template_update

TEMPLATE_STATUS_FIELD = "message_template_status_update"

# Status precedence (see the module docstring): failed ranks below delivered.
PRECEDENCE = {
    MessageStatus.received: 0,
    MessageStatus.accepted: 1,
    MessageStatus.sent: 2,
    MessageStatus.failed: 3,
    MessageStatus.delivered: 4,
    MessageStatus.read: 5,
}
STATUS_VALUES = {
    "sent": MessageStatus.sent,
    "delivered": MessageStatus.delivered,
    "read": MessageStatus.read,
    "played": MessageStatus.read,
    "failed": MessageStatus.failed,
}
TIMESTAMP_FIELD = {
    MessageStatus.sent: "sent_at",
    MessageStatus.delivered: "delivered_at",
    MessageStatus.read: "read_at",
    MessageStatus.failed: "failed_at",
}
_PHONE_DIGITS = re.compile(r"\d{7,15}")


@dataclass(frozen=True)
class Route:
    """Where a tenant receives webhooks: its business number and its WABA."""

    phone_number_id: str | None
    business_account_id: str | None

    def accepts(self, entry: dict[str, Any], change: dict[str, Any]) -> bool:
        """Is ``change`` (of ``entry``) addressed to this tenant?"""
        number = ((change.get("value") or {}).get("metadata") or {}).get("phone_number_id")
        if number is not None:
            return str(number) == (self.phone_number_id or "")
        return str(entry.get("id") or "") == (self.business_account_id or "")


def process_payload(
    session: Session, payload: dict[str, Any], tenant_id: int, route: Route | None = None
) -> dict[str, int]:
    """Apply one webhook payload of ``tenant_id`` (the current tenant scope); returns counts."""
    counts = new_counts()
    items = apply_messages(session, payload, counts, tenant_id=tenant_id, route=route)
    applied, pending = apply_statuses(session, tenant_id, items)
    counts["statuses"] += applied
    counts["pending"] += pending
    return counts


def new_counts() -> dict[str, int]:
    """The counters `process_payload` and `apply_messages` fill."""
    return {
        "messages": 0,
        "duplicates": 0,
        "statuses": 0,
        "pending": 0,
        "preferences": 0,
        "templates": 0,
        "templates_unknown": 0,
    }


def tenant_changes(
    payload: dict[str, Any], route: Route | None = None
) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """The (entry, change) pairs of ``payload`` addressed to ``route`` (None: all)."""
    return [
        (entry, change)
        for entry in payload.get("entry") or []
        for change in entry.get("changes") or []
        if route is None or route.accepts(entry, change)
    ]


def apply_messages(
    session: Session,
    payload: dict[str, Any],
    counts: dict[str, int],
    *,
    tenant_id: int | None = None,
    route: Route | None = None,
) -> list[dict[str, Any]]:
    """Store a payload's messages, user preferences and template status updates; returns
    its statuses, unapplied.

    Statuses are left to `apply_statuses` so a job can apply those of many payloads in
    one statement. Template updates need ``tenant_id``; without it they are skipped.
    """
    statuses: list[dict[str, Any]] = []
    for _entry, change in tenant_changes(payload, route):
        value = change.get("value") or {}
        if change.get("field") == TEMPLATE_STATUS_FIELD:
            if tenant_id is not None and isinstance(value, dict):
                outcome = apply_template_update(session, tenant_id, value).outcome
                counts["templates_unknown" if outcome == "unknown" else "templates"] += 1
            continue
        names = _profile_names(value.get("contacts") or [])
        for msg in value.get("messages") or []:
            counts["messages" if _inbound_message(session, msg, names) else "duplicates"] += 1
        statuses += [s for s in value.get("statuses") or [] if isinstance(s, dict)]
        for pref in value.get("user_preferences") or []:
            counts["preferences"] += _preference(session, pref, names)
    return statuses


# ------------------------------------------------------------------------- helpers


def _when(timestamp: Any) -> datetime:
    """Naive UTC from Meta's epoch-seconds string (now when missing or garbled)."""
    try:
        return datetime.fromtimestamp(int(timestamp), UTC).replace(tzinfo=None)
    except (TypeError, ValueError, OverflowError, OSError):
        return utcnow()


def _profile_names(contacts: list[dict[str, Any]]) -> dict[str, str]:
    names: dict[str, str] = {}
    for item in contacts:
        name = ((item.get("profile") or {}).get("name") or "").strip()[:120]
        if not name:
            continue
        for key in ("wa_id", "user_id"):
            if item.get(key):
                names[str(item[key])] = name
    return names


def _sender_id(item: dict[str, Any]) -> str | None:
    """The WhatsApp id: the number's digits, else the business-scoped user id."""
    for key in ("from", "wa_id", "user_id", "from_user_id"):
        if item.get(key):
            return str(item[key]).strip()[:64]
    return None


def find_or_create_contact(session: Session, wa_id: str, profile_name: str | None) -> Contact:
    """The contact with this WhatsApp id (created if new); refreshes the profile name."""
    stmt = select(Contact).where(Contact.wa_id == wa_id)
    contact = session.scalars(stmt).first()
    if contact is None:
        phone = f"+{wa_id}" if _PHONE_DIGITS.fullmatch(wa_id) else None
        contact = Contact(wa_id=wa_id, phone=phone, profile_name=profile_name)
        try:
            with session.begin_nested():  # another job may create it at the same time
                session.add(contact)
                session.flush()
        except IntegrityError:
            contact = session.scalars(stmt).one()
    if profile_name and contact.profile_name != profile_name:
        contact.profile_name = profile_name
    return contact


def _open_conversation(session: Session, contact: Contact) -> Conversation:
    conversation = session.scalars(
        select(Conversation)
        .where(
            Conversation.contact_id == contact.id,
            Conversation.status.in_([ConversationStatus.open, ConversationStatus.pending]),
        )
        .order_by(Conversation.id.desc())
    ).first()
    if conversation is None:
        conversation = Conversation(contact=contact, status=ConversationStatus.open)
        session.add(conversation)
        session.flush()
    return conversation


def _body(msg: dict[str, Any]) -> str | None:
    kind = msg.get("type") or "text"
    part = msg.get(kind) if isinstance(msg.get(kind), dict) else {}
    if kind == "text":
        return part.get("body")
    if kind == "interactive":
        reply = part.get("button_reply") or part.get("list_reply") or {}
        return reply.get("title")
    if kind == "button":
        return part.get("text")
    if kind == "reaction":
        return part.get("emoji")
    if kind == "location":
        return part.get("name") or part.get("address")
    return part.get("caption")


def _later(current: datetime | None, new: datetime) -> datetime:
    return new if current is None or new > current else current


def _keywords(name: str, default: list[str]) -> set[str]:
    words = current_app.config.get(name, default) if has_app_context() else default
    return {w.strip().upper() for w in words if w.strip()}


# ------------------------------------------------------------------------ messages


def _inbound_message(session: Session, msg: dict[str, Any], names: dict[str, str]) -> bool:
    """Store one inbound message; False when it was already stored (or unusable)."""
    wa_message_id = str(msg.get("id") or "")[:128]
    sender = _sender_id(msg)
    if not wa_message_id or not sender:
        return False
    if session.scalars(select(Message.id).where(Message.wa_message_id == wa_message_id)).first():
        return False
    name = names.get(sender) or (next(iter(names.values())) if len(names) == 1 else None)
    contact = find_or_create_contact(session, sender, name)
    conversation = _open_conversation(session, contact)
    when = _when(msg.get("timestamp"))
    body = _body(msg)
    message = Message(
        conversation=conversation,
        direction=MessageDirection.inbound,
        type=str(msg.get("type") or "text")[:20],
        body=body,
        wa_message_id=wa_message_id,
        status=MessageStatus.received,
        created_at=when,
    )
    try:
        with session.begin_nested():  # unique wa_message_id: a concurrent run won
            session.add(message)
            session.flush()
    except IntegrityError:
        return False
    contact.last_inbound_at = _later(contact.last_inbound_at, when)
    conversation.last_message_at = _later(conversation.last_message_at, when)
    apply_pending_statuses(session, message)
    from app.services import sending  # campaigns build on this module

    sending.mark_replied(session, contact.id, when)
    if msg.get("type", "text") == "text" and body:
        word = body.strip().upper()
        if word in _keywords("WHATSAPP_STOP_KEYWORDS", ["STOP", "UNSUBSCRIBE"]):
            _consent(session, contact, ConsentAction.opt_out, ConsentSource.stop_keyword, msg)
        elif word in _keywords("WHATSAPP_START_KEYWORDS", ["START"]):
            _consent(session, contact, ConsentAction.resume, ConsentSource.stop_keyword, msg)
    return True


def _consent(
    session: Session,
    contact: Contact,
    action: ConsentAction,
    source: ConsentSource,
    item: dict[str, Any],
) -> bool:
    """Record an opt-out/resume unless the contact is already in that state."""
    target = ConsentState.opted_out if action == ConsentAction.opt_out else ConsentState.opted_in
    if contact.consent_state == target:
        return False
    ref = item.get("id") or item.get("timestamp") or ""
    record_consent(session, contact, action, source, evidence=f"WhatsApp webhook {ref}".strip())
    return True


# ------------------------------------------------------------------------ statuses


def _apply_status(
    message: Message,
    status: MessageStatus,
    when: datetime,
    error_code: int | None = None,
    error_title: str | None = None,
) -> None:
    field = TIMESTAMP_FIELD.get(status)
    if field and getattr(message, field) is None:
        setattr(message, field, when)
    if status == MessageStatus.failed and message.error_code is None:
        message.error_code = error_code
        message.error_title = error_title
    if PRECEDENCE[status] > PRECEDENCE[MessageStatus(message.status)]:
        message.status = status


@dataclass
class _Merged:
    """The statuses of one message within a batch, folded into what they change."""

    rank: int = -1
    status: MessageStatus | None = None
    times: dict[str, datetime] = field(default_factory=dict)
    error_code: int | None = None
    error_title: str | None = None
    seen: dict[MessageStatus, dict[str, Any]] = field(default_factory=dict)

    def add(self, status: MessageStatus, item: dict[str, Any]) -> None:
        when, field_name = item["occurred_at"], TIMESTAMP_FIELD[status]
        if field_name not in self.times or when < self.times[field_name]:
            self.times[field_name] = when
        if status == MessageStatus.failed and self.error_code is None:
            self.error_code, self.error_title = item["error_code"], item["error_title"]
        if PRECEDENCE[status] > self.rank:
            self.rank, self.status = PRECEDENCE[status], status
        self.seen.setdefault(status, item)


def _parse_status(item: dict[str, Any]) -> tuple[str, MessageStatus, dict[str, Any]] | None:
    wa_message_id = str(item.get("id") or "")[:128]
    status = STATUS_VALUES.get(str(item.get("status") or "").lower())
    if not wa_message_id or status is None:
        return None
    errors = item.get("errors") or [{}]
    first = errors[0] if isinstance(errors, list) and isinstance(errors[0], dict) else {}
    code = first.get("code")
    title = first.get("title") or first.get("message") or None
    fields = {
        "occurred_at": _when(item.get("timestamp")),
        "error_code": code if isinstance(code, int) else None,
        "error_title": str(title)[:200] if title else None,
    }
    return wa_message_id, status, fields


# Monotone in SQL, so concurrent jobs cannot move a status backwards: PostgreSQL
# re-evaluates an UPDATE on the newest row version, and SQLite has one writer.
_RANK_SQL = "CASE m.status " + " ".join(f"WHEN '{s.value}' THEN {r}" for s, r in PRECEDENCE.items())
_SET_SQL = (  # message.status is a VARCHAR enum (value_enum)
    "status = CASE WHEN ({rank} END) < {v}rank THEN {status} ELSE m.status END, "
    "sent_at = COALESCE(m.sent_at, {v}sent_at), "
    "delivered_at = COALESCE(m.delivered_at, {v}delivered_at), "
    "read_at = COALESCE(m.read_at, {v}read_at), "
    "failed_at = COALESCE(m.failed_at, {v}failed_at), "
    "error_code = CASE WHEN m.error_code IS NULL AND {v}failed_at IS NOT NULL "
    "THEN {v}error_code ELSE m.error_code END, "
    "error_title = CASE WHEN m.error_code IS NULL AND {v}failed_at IS NOT NULL "
    "THEN {v}error_title ELSE m.error_title END"
)
# Built once from constants (enum values, column names); every value is a bind parameter.
_UPDATE_PG = text(
    "UPDATE message AS m SET "  # noqa: S608
    + _SET_SQL.format(rank=_RANK_SQL, v="v.", status="v.status")
    + " FROM unnest(CAST(:wamids AS text[]), CAST(:ranks AS int[]), CAST(:statuses AS text[]),"
    " CAST(:sent_at AS timestamp[]), CAST(:delivered_at AS timestamp[]),"
    " CAST(:read_at AS timestamp[]), CAST(:failed_at AS timestamp[]),"
    " CAST(:error_code AS int[]), CAST(:error_title AS text[]))"
    " AS v(wamid, rank, status, sent_at, delivered_at, read_at, failed_at, error_code,"
    " error_title)"
    " WHERE m.tenant_id = :tenant_id AND m.wa_message_id = v.wamid RETURNING m.wa_message_id"
)
_UPDATE_ONE = text(
    "UPDATE message AS m SET "  # noqa: S608
    + _SET_SQL.format(rank=_RANK_SQL, v=":", status=":status")
    + " WHERE m.tenant_id = :tenant_id AND m.wa_message_id = :wamid"
)


def apply_statuses(
    session: Session, tenant_id: int, items: list[dict[str, Any]]
) -> tuple[int, int]:
    """Apply status webhooks of ``tenant_id``; returns (applied, parked as pending).

    The statuses of a message are folded first, then every known message is updated in
    one statement (Core SQL, so ``tenant_id`` is explicit); statuses of unknown message
    ids are kept as `PendingStatus` rows. Unusable items count as applied (ignored).
    """
    from app.services import sending  # campaigns build on this module

    merged: dict[str, _Merged] = {}
    ignored = 0
    for item in items:
        # A campaign send (tagged with its recipient): its recipient follows too, and a
        # send whose worker died before recording it is recognised here.
        if str(item.get("biz_opaque_callback_data") or "").startswith("campaign:"):
            sending.apply_recipient_status(session, item, tenant_id)
        parsed = _parse_status(item)
        if parsed is None:
            ignored += 1
            continue
        wa_message_id, status, fields = parsed
        merged.setdefault(wa_message_id, _Merged()).add(status, fields)
    if not merged:
        return ignored, 0
    session.flush()  # messages stored by this job must be visible to the UPDATE
    found = _update_messages(session, tenant_id, merged)
    pending = 0
    for wa_message_id, folded in merged.items():
        if wa_message_id in found:
            continue
        for status, fields in folded.seen.items():
            _park(session, wa_message_id, status, fields)
            pending += 1
    return len(items) - pending, pending


def _update_messages(session: Session, tenant_id: int, merged: dict[str, _Merged]) -> set[str]:
    rows = [
        {
            "wamid": wa_message_id,
            "rank": m.rank,
            "status": m.status.value if m.status else None,
            **{name: m.times.get(name) for name in TIMESTAMP_FIELD.values()},
            "error_code": m.error_code,
            "error_title": m.error_title,
        }
        for wa_message_id, m in merged.items()
    ]
    if session.get_bind().dialect.name == "postgresql":
        columns = {key: [row[key] for row in rows] for key in rows[0]}
        params = {
            "wamids": columns.pop("wamid"),
            "ranks": columns.pop("rank"),
            "statuses": columns.pop("status"),
            **columns,
            "tenant_id": tenant_id,
        }
        return set(session.execute(_UPDATE_PG, params).scalars())
    known = set(
        session.scalars(
            select(Message.wa_message_id).where(
                Message.tenant_id == tenant_id, Message.wa_message_id.in_(list(merged))
            )
        )
    )
    for row in rows:
        if row["wamid"] in known:
            session.execute(_UPDATE_ONE, {**row, "tenant_id": tenant_id})
    return known


def _park(session: Session, wa_message_id: str, status: MessageStatus, fields: dict) -> None:
    """Keep a status for a message not stored yet (once per message id and status)."""
    pending = PendingStatus(wa_message_id=wa_message_id, status=status, **fields)
    try:
        with session.begin_nested():  # unique (wa_message_id, status): a duplicate
            session.add(pending)
            session.flush()
    except IntegrityError:
        pass


def apply_pending_statuses(session: Session, message: Message) -> int:
    """Apply (and remove) statuses that arrived before ``message``; returns how many.

    Called for every new inbound message and by the sending pipeline once a sent
    message has its ``wa_message_id``.
    """
    if not message.wa_message_id:
        return 0
    pending = session.scalars(
        select(PendingStatus)
        .where(PendingStatus.wa_message_id == message.wa_message_id)
        .order_by(PendingStatus.occurred_at, PendingStatus.id)
    ).all()
    for item in pending:
        _apply_status(message, item.status, item.occurred_at, item.error_code, item.error_title)
        session.delete(item)
    return len(pending)


# ---------------------------------------------------------------- user preferences


def _preference(session: Session, item: dict[str, Any], names: dict[str, str]) -> int:
    if (item.get("category") or "marketing_messages") != "marketing_messages":
        return 0
    value = str(item.get("value") or "").lower()
    action = {"stop": ConsentAction.opt_out, "resume": ConsentAction.resume}.get(value)
    sender = _sender_id(item)
    if action is None or not sender:
        return 0
    contact = find_or_create_contact(session, sender, names.get(sender))
    return int(_consent(session, contact, action, ConsentSource.user_preferences, item))
