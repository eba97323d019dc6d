"""Sending a campaign: claim, send, record, reconcile (P3, P8; DESIGN "Jobs").

**Exactly once.** A recipient is *claimed* before its HTTP call: one statement moves a
chunk of due ``pending`` recipients to ``sending`` (``FOR UPDATE SKIP LOCKED``, so
concurrent workers take disjoint chunks) and the caller commits that before any call.
After the calls, each result is recorded (`app.services.campaign_recording`): the
``wamid`` (status ``sent``, plus an outbound `Message` in the contact's conversation), a
retry (back to ``pending`` with a ``next_attempt_at``), or a failure. Nothing ever
moves a ``sending`` recipient back to ``pending`` while its request may have reached
Meta, except `release_stale_claims`:

* a worker killed after its call leaves the recipient in ``sending``; the status webhook
  of that message carries ``biz_opaque_callback_data`` naming the recipient, and
  `apply_recipient_status` then records the wamid and marks it sent;
* a recipient still in ``sending`` after ``CAMPAIGN_CLAIM_TIMEOUT_S`` with no webhook is
  taken as never sent and goes back to ``pending``. The trade-off: if Meta accepted the
  request but its webhook is later than the timeout (our intake down for minutes), that
  recipient gets a second message. Waiting forever instead would silently drop
  recipients whose request never left; Meta's webhooks arrive within seconds, so the
  timeout (default 120 s) makes a duplicate far less likely than a loss would be.

Ambiguous failures (a read timeout: the request may have arrived) are left in
``sending`` for the same reconciliation: they are never blindly resent.

Retries follow the error classes of `app.services.whatsapp` (see the recording module);
a 131049 reported by webhook schedules the next day's attempt here
(`apply_recipient_status`).

Recipient statuses only move forward: pending/sending < sent < failed < delivered <
read (as messages in `app.services.inbound`: a ``failed`` never overrides proof of
delivery). Bulk writes are Core statements with explicit ``tenant_id`` (no per-row ORM
audit events: the job audits its counts).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from flask import current_app, has_app_context
from sqlalchemy import (
    and_,
    case,
    exists,
    func,
    literal,
    or_,
    select,
    update,
)
from sqlalchemy.orm import Session

from app.models.campaign import (
    Campaign,
    CampaignRecipient,
    CampaignStatus,
    MessageTemplate,
    RecipientStatus,
)
from app.services.whatsapp import WhatsAppError, parse_campaign_callback_data

R = CampaignRecipient.__table__
S = RecipientStatus
OPEN = (S.pending, S.sending)
RANK = {S.pending: 0, S.sending: 0, S.sent: 1, S.failed: 2, S.delivered: 3, S.read: 4}
WEBHOOK_STATUS = {"sent": S.sent, "delivered": S.delivered, "read": S.read, "played": S.read}
TIMESTAMP = {S.sent: "sent_at", S.delivered: "delivered_at", S.read: "read_at"}
DEFAULTS: dict[str, Any] = {
    "CAMPAIGN_CLAIM_TIMEOUT_S": 120,
    "CAMPAIGN_131049_RETRY_DAYS": 3,
    "CAMPAIGN_REPLY_WINDOW_DAYS": 3,
    "CAMPAIGN_MAX_ATTEMPTS": 8,
    "CAMPAIGN_PAIR_RETRY_S": 6.0,
    "CAMPAIGN_RETRY_SCALE": 1.0,
}


def setting(name: str) -> Any:
    """A campaign setting from the app config (its default outside an app)."""
    if has_app_context():
        return current_app.config.get(name, DEFAULTS[name])
    return DEFAULTS[name]


# ---------------------------------------------------------------------- claiming


@dataclass(frozen=True)
class Claimed:
    """A recipient claimed for one send attempt."""

    id: int
    contact_id: int
    wa_id: str
    parameters: dict[str, str] | None
    attempts: int
    retry_days: int


@dataclass
class Outcome:
    """What one send attempt gave: a wamid, an error, or nothing (not attempted)."""

    recipient: Claimed
    wamid: str | None = None
    error: WhatsAppError | None = None
    invalid: str | None = None  # the request could not be built (e.g. a bad number)

    @property
    def attempted(self) -> bool:
        return bool(self.wamid or self.error or self.invalid)


def campaign_status(session: Session, campaign_id: int) -> CampaignStatus | None:
    """The campaign's committed status (read fresh, not from the identity map)."""
    return session.execute(select(Campaign.status).where(Campaign.id == campaign_id)).scalar()


def claim(
    session: Session, campaign: Campaign, limit: int, now: datetime | None = None
) -> list[Claimed]:
    """Move up to ``limit`` due pending recipients to ``sending``; the caller commits
    before sending. Recipients locked by another worker are skipped, not waited for."""
    now = now or utcnow()
    # A materialised CTE: PostgreSQL may re-run an ``IN (SELECT ... LIMIT ... SKIP
    # LOCKED)`` subquery and so claim far more rows than ``limit``.
    due = (
        select(R.c.id)
        .where(
            R.c.campaign_id == campaign.id,
            R.c.tenant_id == campaign.tenant_id,
            R.c.status == S.pending,
            or_(R.c.next_attempt_at.is_(None), R.c.next_attempt_at <= now),
            exists().where(Campaign.id == campaign.id, Campaign.status == CampaignStatus.sending),
        )
        .limit(limit)
        .with_for_update(skip_locked=True, of=R)
        .cte("due")
        .prefix_with("MATERIALIZED", dialect="postgresql")
    )
    stmt = (
        update(R)
        .where(R.c.id == due.c.id, R.c.status == S.pending)
        .values(status=S.sending, claimed_at=now, attempts=R.c.attempts + 1)
        .returning(R.c.id, R.c.contact_id, R.c.wa_id, R.c.parameters, R.c.attempts, R.c.retry_days)
    )
    rows = session.execute(stmt).all()
    return sorted((Claimed(*row) for row in rows), key=lambda c: c.id)


def next_due(session: Session, campaign: Campaign) -> datetime | None:
    """When the next pending recipient is due (a past time: now); None if none pend."""
    row = session.execute(
        select(func.count(), func.min(func.coalesce(R.c.next_attempt_at, literal(EPOCH)))).where(
            R.c.campaign_id == campaign.id,
            R.c.tenant_id == campaign.tenant_id,
            R.c.status == S.pending,
        )
    ).one()
    return row[1] if row[0] else None


EPOCH = datetime(1970, 1, 1)


def utcnow() -> datetime:
    """Naive UTC now (the schema stores naive UTC)."""
    return datetime.now(UTC).replace(tzinfo=None)


# ---------------------------------------------------------------------- template


@dataclass(frozen=True)
class TemplateSpec:
    """What a send needs of a template, detached from the session (for threads)."""

    name: str
    language: str
    parameter_format: str
    components: tuple[dict[str, Any], ...]

    @classmethod
    def of(cls, template: MessageTemplate) -> TemplateSpec:
        return cls(
            template.name,
            template.language,
            template.parameter_format or "POSITIONAL",
            tuple(template.components or ()),
        )


def template_arguments(
    template: TemplateSpec | MessageTemplate, parameters: Mapping[str, str] | None
) -> tuple[list[str] | dict[str, str] | None, list[dict[str, Any]]]:
    """(body parameters, extra components) for `WhatsAppClient.send_template` from a
    recipient's frozen ``{"body.1": "Asha", "header.1": ...}`` parameters."""
    named = template.parameter_format.upper() == "NAMED"
    parts: dict[str, dict[str, str]] = {}
    for key, value in (parameters or {}).items():
        component, _, name = key.partition(".")
        parts.setdefault(component, {})[name] = "" if value is None else str(value)

    def ordered(values: dict[str, str]) -> list[tuple[str, str]]:
        return sorted(values.items(), key=lambda kv: (not kv[0].isdigit(), _num(kv[0]), kv[0]))

    body_values = parts.get("body") or {}
    body: list[str] | dict[str, str] | None = None
    if body_values:
        body = dict(ordered(body_values)) if named else [v for _k, v in ordered(body_values)]
    components = []
    if parts.get("header"):
        params = [
            {"type": "text", "text": v, **({"parameter_name": k} if named else {})}
            for k, v in ordered(parts["header"])
        ]
        components.append({"type": "header", "parameters": params})
    return body, components


def _num(name: str) -> int:
    return int(name) if name.isdigit() else 0


def rendered_body(
    template: TemplateSpec | MessageTemplate, parameters: Mapping[str, str] | None
) -> str | None:
    """The template's body text with the recipient's values filled in (for the inbox)."""
    text = next(
        (
            c.get("text")
            for c in template.components or []
            if str(c.get("type", "")).upper() == "BODY"
        ),
        None,
    )
    if not text:
        return None
    values = {
        k.partition(".")[2]: v for k, v in (parameters or {}).items() if k.startswith("body.")
    }
    for name, value in values.items():
        text = text.replace("{{" + name + "}}", str(value))
    return text


# ---------------------------------------------------------------------- webhooks


def _when(item: Mapping[str, Any]) -> datetime:
    try:
        return datetime.fromtimestamp(int(item.get("timestamp")), UTC).replace(tzinfo=None)
    except (TypeError, ValueError, OverflowError, OSError):
        return utcnow()


def _error(item: Mapping[str, Any]) -> tuple[int | None, str | None]:
    errors = item.get("errors")
    first = errors[0] if isinstance(errors, list) and errors and isinstance(errors[0], dict) else {}
    code = first.get("code")
    title = first.get("title") or first.get("message")
    return (code if isinstance(code, int) else None), (str(title)[:200] if title else None)


def _find_recipient(session: Session, item: Mapping[str, Any], tenant_id: int) -> Any:
    """The recipient of a status item (locked): by wamid, else by its callback data."""
    wamid = str(item.get("id") or "")[:128]
    columns = (
        R.c.id,
        R.c.campaign_id,
        R.c.status,
        R.c.wa_message_id,
        R.c.retry_days,
        R.c.previous_message_ids,
    )
    row = session.execute(
        select(*columns)
        .where(R.c.tenant_id == tenant_id, R.c.wa_message_id == wamid)
        .with_for_update()
    ).first()
    if row is not None:
        return row
    parsed = parse_campaign_callback_data(item.get("biz_opaque_callback_data"))
    if parsed is None:
        return None
    # The send's result was never recorded (worker killed after the call, or not yet):
    # this webhook proves Meta accepted it.
    return session.execute(
        select(*columns)
        .where(
            R.c.id == parsed[1],
            R.c.campaign_id == parsed[0],
            R.c.tenant_id == tenant_id,
            R.c.wa_message_id.is_(None),
            R.c.status.in_(OPEN),
        )
        .with_for_update()
    ).first()


def apply_recipient_status(session: Session, status_item: dict, tenant_id: int) -> bool:
    """Apply one ``statuses[]`` webhook item to its campaign recipient, if it has one.

    Never moves a recipient backwards; a ``failed`` 131049 schedules the next day's
    retry (the message id moves to ``previous_message_ids``); other failures record
    their code. Returns True when a recipient was found.
    """
    kind = str(status_item.get("status") or "").lower()
    if kind != "failed" and kind not in WEBHOOK_STATUS:
        return False
    row = _find_recipient(session, status_item, tenant_id)
    if row is None:
        return False
    wamid = str(status_item.get("id"))[:128]
    when, current = _when(status_item), S(row.status)
    values: dict[str, Any] = {"wa_message_id": wamid, "claimed_at": None}
    if current in OPEN:
        values["sent_at"] = func.coalesce(R.c.sent_at, when)
        values["status"] = S.sent
        current = S.sent
    if kind == "failed":
        code, title = _error(status_item)
        if RANK[current] < RANK[S.failed]:
            values.update(_async_failure(row, wamid, code, title, when))
    else:
        new = WEBHOOK_STATUS[kind]
        values[TIMESTAMP[new]] = func.coalesce(getattr(R.c, TIMESTAMP[new]), when)
        if new is S.read:
            values["delivered_at"] = func.coalesce(R.c.delivered_at, when)
        if RANK[new] > RANK[current]:
            values["status"] = new
    session.execute(update(R).where(R.c.id == row.id).values(**values))
    if values.get("status") is S.pending:  # a 131049 retry: the campaign has work again
        session.execute(
            update(Campaign.__table__)
            .where(
                Campaign.__table__.c.id == row.campaign_id,
                Campaign.__table__.c.status == CampaignStatus.completed,
            )
            .values(status=CampaignStatus.sending, completed_at=None)
        )
    return True


def _async_failure(
    row: Any, wamid: str, code: int | None, title: str | None, when: datetime
) -> dict[str, Any]:
    values: dict[str, Any] = {"error_code": code, "error_title": title}
    if code == 131049 and row.retry_days < int(setting("CAMPAIGN_131049_RETRY_DAYS")):
        # The next day's attempt is a new message: keep this one's id as its origin.
        previous = list(row.previous_message_ids or []) + [wamid]
        return values | {
            "status": S.pending,
            "wa_message_id": None,
            "previous_message_ids": previous,
            "retry_days": row.retry_days + 1,
            "next_attempt_at": when + timedelta(days=1),
        }
    return values | {"status": S.failed, "failed_at": func.coalesce(R.c.failed_at, when)}


def mark_replied(session: Session, contact_id: int, at: datetime) -> int:
    """Count an inbound message of ``contact_id`` at ``at`` as a reply to the campaigns
    that reached it within ``CAMPAIGN_REPLY_WINDOW_DAYS`` before; returns how many."""
    since = at - timedelta(days=int(setting("CAMPAIGN_REPLY_WINDOW_DAYS")))
    result = session.execute(
        update(R)
        .where(
            R.c.contact_id == contact_id,
            R.c.replied_at.is_(None),
            R.c.status.in_([S.sent, S.delivered, S.read]),
            R.c.sent_at.between(since, at),
        )
        .values(replied_at=at)
    )
    return result.rowcount or 0


# ---------------------------------------------------------------------- sweeping


def release_stale_claims(session: Session, now: datetime | None = None) -> int:
    """Recipients claimed longer than ``CAMPAIGN_CLAIM_TIMEOUT_S`` ago with no result
    and no webhook go back to pending (cancelled if their campaign was); see the module
    docstring for the trade-off."""
    now = now or utcnow()
    cutoff = now - timedelta(seconds=float(setting("CAMPAIGN_CLAIM_TIMEOUT_S")))
    cancelled = exists().where(
        Campaign.id == R.c.campaign_id, Campaign.status == CampaignStatus.cancelled
    )
    result = session.execute(
        update(R)
        .where(R.c.status == S.sending, R.c.wa_message_id.is_(None), R.c.claimed_at < cutoff)
        .values(
            status=case((cancelled, literal(S.cancelled.value)), else_=literal(S.pending.value)),
            claimed_at=None,
            next_attempt_at=None,
        )
    )
    return result.rowcount or 0


def campaigns_with_due_work(session: Session, now: datetime | None = None) -> list[tuple[int, int]]:
    """(campaign id, tenant id) of sending campaigns with recipients due now."""
    now = now or utcnow()
    due = exists().where(
        R.c.campaign_id == Campaign.id,
        R.c.status == S.pending,
        or_(R.c.next_attempt_at.is_(None), R.c.next_attempt_at <= now),
    )
    rows = session.execute(
        select(Campaign.id, Campaign.tenant_id).where(
            Campaign.status == CampaignStatus.sending, due
        )
    )
    return [(int(c), int(t)) for c, t in rows.all()]


def complete_finished(session: Session, campaign_id: int | None = None) -> int:
    """Mark sending campaigns with no pending or claimed recipient left completed."""
    open_left = exists().where(R.c.campaign_id == Campaign.id, R.c.status.in_(OPEN))
    conditions = [Campaign.status == CampaignStatus.sending, ~open_left]
    if campaign_id is not None:
        conditions.append(Campaign.id == campaign_id)
    result = session.execute(
        update(Campaign)
        .where(and_(*conditions))
        .values(status=CampaignStatus.completed, completed_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    return result.rowcount or 0
