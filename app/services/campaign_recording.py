"""Recording a chunk's send results (P3, P8): the ``sent`` rows with their wamids and
outbound messages, retries by error class, failures; split from `app.services.sending`
(claiming, templates, webhooks, sweeping), whose docstring tells the guarantees.

Retries follow the error classes of `app.services.whatsapp`: ``soon`` backs off
exponentially with jitter, up to ``CAMPAIGN_MAX_ATTEMPTS``; ``recipient_later`` (pair
limit) waits ``CAMPAIGN_PAIR_RETRY_S`` plus up to two thirds more; ``tomorrow`` (131049)
waits a day, up to ``CAMPAIGN_131049_RETRY_DAYS`` days; ``permanent`` fails with the code.

On PostgreSQL a chunk's accepted sends are recorded in ONE statement (`_SENT_CHUNK_PG`:
recipients marked sent, each contact's open conversation found or created, the
outbound messages inserted, the conversations' last message time set), fed by arrays:
at 1,000 sends/s the recording shares one Python process with the sending threads, and
per-row statement building was most of its cost (docs/benchmarks.md, issue 5). Other
databases (the SQLite of ``make run``) take the same steps one statement at a time.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, case, func, insert, literal, or_, select, text, update
from sqlalchemy.orm import Session

from app.models.campaign import Campaign, CampaignStatus
from app.models.conversation import (
    Conversation,
    ConversationStatus,
    Message,
    MessageDirection,
    MessageStatus,
    PendingStatus,
)
from app.services import inbound
from app.services.sending import (
    Claimed,
    Outcome,
    R,
    S,
    TemplateSpec,
    apply_recipient_status,
    campaign_status,
    rendered_body,
    setting,
    utcnow,
)
from app.services.whatsapp import RetryClass, WhatsAppError

MAX_BACKOFF_S = 300.0
# Errors about the account, the number or the template, not the recipient: every other
# recipient would fail the same way, so the campaign is paused instead (recipient kept
# pending with the error recorded) until someone fixes the cause and resumes it.
CAMPAIGN_WIDE_CODES = frozenset({0, 3, 10, 190, 368, 131031, 131042, 131048, 131064})


def halts_campaign(error: WhatsAppError | None) -> bool:
    """Whether ``error`` is about the account or template (pause), not the recipient."""
    code = error.code if error is not None else None
    if code is None:
        return False
    return code in CAMPAIGN_WIDE_CODES or 200 <= code < 300 or 132000 <= code < 133000


def retry_delay(error: WhatsAppError, attempts: int) -> float:
    """Seconds before retrying a ``soon`` error: exponential from its hint, jittered."""
    hint = error.retry_after or 1.0
    delay = min(MAX_BACKOFF_S, hint * 2 ** max(0, attempts - 1))
    return delay * random.uniform(0.5, 1.0) * float(setting("CAMPAIGN_RETRY_SCALE"))


def _failure_row(outcome: Outcome, now: datetime, cancelled: bool) -> dict[str, Any] | None:
    """The update for a claimed recipient that was not sent; None = leave in sending."""
    rec, error = outcome.recipient, outcome.error
    row = {
        "b_id": rec.id,
        "b_status": S.pending,
        "b_next": None,
        "b_code": None,
        "b_title": None,
        "b_days": rec.retry_days,
        "b_attempts": rec.attempts,
        "b_failed_at": None,
    }
    if not outcome.attempted:  # stopped before its turn: the claim did not count
        row.update(b_status=S.cancelled if cancelled else S.pending, b_attempts=rec.attempts - 1)
        return row
    if outcome.invalid is not None:
        row.update(b_status=S.failed, b_title=outcome.invalid[:200], b_failed_at=now)
        return row
    assert error is not None
    if error.ambiguous:
        return None  # may have reached Meta: the webhook or the sweeper decides
    row.update(b_code=error.code, b_title=(error.title or "")[:200])
    if halts_campaign(error):  # not this recipient's fault: it waits for the resume
        row.update(b_attempts=rec.attempts - 1)
        return row
    later = _later(error, rec, now)
    if later is None:
        row.update(b_status=S.failed, b_failed_at=now)
    else:
        row.update(b_next=later[0], b_days=later[1])
        if cancelled:
            row.update(b_status=S.cancelled)
    return row


def _later(error: WhatsAppError, rec: Claimed, now: datetime) -> tuple[datetime, int] | None:
    """(next attempt, retry days) for a retryable error; None when out of retries."""
    if error.retry is RetryClass.tomorrow:
        if rec.retry_days >= int(setting("CAMPAIGN_131049_RETRY_DAYS")):
            return None
        return now + timedelta(days=1), rec.retry_days + 1
    if error.retry is RetryClass.permanent or rec.attempts >= int(setting("CAMPAIGN_MAX_ATTEMPTS")):
        return None
    if error.retry is RetryClass.recipient_later:
        wait = float(setting("CAMPAIGN_PAIR_RETRY_S"))
        return now + timedelta(seconds=wait * random.uniform(1.0, 5 / 3)), rec.retry_days
    return now + timedelta(seconds=retry_delay(error, rec.attempts)), rec.retry_days


# executemany cannot expand IN lists: spelled out.
_IS_OPEN = or_(R.c.status == S.pending, R.c.status == S.sending)
_SENT = (
    update(R)
    .where(
        R.c.id == bindparam("b_id"),
        or_(R.c.wa_message_id.is_(None), R.c.wa_message_id == bindparam("b_wamid")),
    )
    .values(
        wa_message_id=bindparam("b_wamid"),
        status=case((_IS_OPEN, literal(S.sent.value)), else_=R.c.status),
        sent_at=func.coalesce(R.c.sent_at, bindparam("b_now")),
        claimed_at=None,
        next_attempt_at=None,
        error_code=case((_IS_OPEN, None), else_=R.c.error_code),
        error_title=case((_IS_OPEN, None), else_=R.c.error_title),
    )
)
_NOT_SENT = (
    update(R)
    .where(R.c.id == bindparam("b_id"), R.c.status == S.sending)
    .values(
        status=bindparam("b_status"),
        next_attempt_at=bindparam("b_next"),
        claimed_at=None,
        error_code=bindparam("b_code"),
        error_title=bindparam("b_title"),
        retry_days=bindparam("b_days"),
        attempts=bindparam("b_attempts"),
        failed_at=bindparam("b_failed_at"),
    )
)


def _mark_sent(session: Session, sent: list[Outcome], now: datetime) -> None:
    """Record the wamids of a chunk's accepted sends (in id order)."""
    params = [{"b_id": o.recipient.id, "b_wamid": o.wamid, "b_now": now} for o in sent]
    session.execute(_SENT, params)


# `_mark_sent` and `_store_messages` for a whole chunk in one statement (PostgreSQL),
# fed by arrays. Each part does what its step does: recipients as `_SENT`; each contact's
# newest open or pending conversation, else a new one (`_conversations`); a message for
# each wamid not stored yet; ``last_message_at`` (and ``updated_at``, as the ORM's
# onupdate) on the conversations that got one. A new conversation gets its time on
# insert: a statement does not see the rows its own sub-statements insert. Returns
# whether statuses were parked for these wamids (`_apply_parked`).
_SENT_CHUNK_PG = text(
    """
WITH v AS (
    SELECT * FROM unnest(CAST(:ids AS bigint[]), CAST(:wamids AS text[]),
                         CAST(:contacts AS bigint[]), CAST(:bodies AS text[]))
        AS v(id, wamid, contact_id, body)
), marked AS (
    UPDATE campaign_recipient AS r SET wa_message_id = v.wamid,
        status = CASE WHEN r.status IN ('pending', 'sending') THEN 'sent' ELSE r.status END,
        sent_at = coalesce(r.sent_at, :now), claimed_at = NULL, next_attempt_at = NULL,
        error_code = CASE WHEN r.status IN ('pending', 'sending') THEN NULL
                          ELSE r.error_code END,
        error_title = CASE WHEN r.status IN ('pending', 'sending') THEN NULL
                           ELSE r.error_title END
    FROM v WHERE r.id = v.id AND (r.wa_message_id IS NULL OR r.wa_message_id = v.wamid)
), fresh AS (
    SELECT v.* FROM v
    WHERE NOT EXISTS (SELECT 1 FROM message AS m WHERE m.wa_message_id = v.wamid)
), found AS (
    SELECT c.contact_id, max(c.id) AS id FROM conversation AS c
    WHERE c.tenant_id = :tenant AND c.contact_id IN (SELECT contact_id FROM v)
      AND c.status IN ('open', 'pending')
    GROUP BY c.contact_id
), created AS (
    INSERT INTO conversation
        (tenant_id, contact_id, status, last_message_at, created_at, updated_at)
    SELECT :tenant, n.contact_id, 'open',
        CASE WHEN n.contact_id IN (SELECT contact_id FROM fresh)
             THEN CAST(:now AS timestamp) END,
        :now, :now
    FROM (SELECT DISTINCT contact_id FROM v) AS n
    WHERE n.contact_id NOT IN (SELECT contact_id FROM found)
    ORDER BY n.contact_id
    RETURNING contact_id, id
), stored AS (
    INSERT INTO message (tenant_id, conversation_id, direction, type, body, wa_message_id,
                         status, campaign_id, created_at)
    SELECT :tenant, c.id, 'outbound', 'template', f.body, f.wamid, 'accepted', :campaign, :now
    FROM fresh AS f
    JOIN (SELECT contact_id, id FROM found UNION ALL SELECT contact_id, id FROM created) AS c
        ON c.contact_id = f.contact_id
    ORDER BY f.id
), touched AS (
    UPDATE conversation SET last_message_at = :now, updated_at = :now
    WHERE id IN (SELECT id FROM found WHERE contact_id IN (SELECT contact_id FROM fresh))
)
SELECT EXISTS (
    SELECT 1 FROM pending_status AS p
    WHERE p.tenant_id = :tenant AND p.wa_message_id IN (SELECT wamid FROM v)
)
"""
)


def _record_sent_pg(
    session: Session,
    campaign: Campaign,
    template: TemplateSpec,
    sent: list[Outcome],
    now: datetime,
) -> None:
    """A chunk's accepted sends in one statement (`_SENT_CHUNK_PG`), then any parked
    statuses."""
    tenant_id = campaign.tenant_id
    wamids = [o.wamid for o in sent]
    params = {
        "ids": [o.recipient.id for o in sent],
        "wamids": wamids,
        "contacts": [o.recipient.contact_id for o in sent],
        "bodies": [rendered_body(template, o.recipient.parameters) for o in sent],
        "tenant": tenant_id,
        "campaign": campaign.id,
        "now": now,
    }
    if session.execute(_SENT_CHUNK_PG, params).scalar():
        _apply_parked(session, tenant_id, wamids)


def record(
    session: Session,
    campaign: Campaign,
    outcomes: Iterable[Outcome],
    now: datetime | None = None,
    template: TemplateSpec | None = None,
) -> dict[str, int]:
    """Write a chunk's results (sorted by id, so concurrent writers lock in one order).
    ``template``: the campaign's, when the caller has it (saves loading it again)."""
    now = now or utcnow()
    cancelled = campaign_status(session, campaign.id) == CampaignStatus.cancelled
    sent, rest = [], []
    counts = {"sent": 0, "retry": 0, "failed": 0, "unsure": 0, "unsent": 0, "halted": 0}
    for outcome in sorted(outcomes, key=lambda o: o.recipient.id):
        if outcome.wamid:
            sent.append(outcome)
            counts["sent"] += 1
            continue
        row = _failure_row(outcome, now, cancelled)
        if row is None:
            counts["unsure"] += 1
        else:
            rest.append(row)
            kind = {S.failed: "failed", S.pending: "retry"}.get(row["b_status"], "unsent")
            if halts_campaign(outcome.error):
                kind = "halted"
            counts["unsent" if not outcome.attempted else kind] += 1
    if sent:
        template = template or TemplateSpec.of(campaign.template)
        if session.get_bind().dialect.name == "postgresql":
            _record_sent_pg(session, campaign, template, sent, now)
        else:
            _mark_sent(session, sent, now)
            _store_messages(session, campaign, template, sent, now)
    if rest:
        session.execute(_NOT_SENT, rest)
    return counts


def _conversations(session: Session, tenant_id: int, contact_ids: set[int]) -> dict[int, int]:
    """Each contact's open (or pending) conversation, created when it has none."""
    found: dict[int, int] = {}
    rows = session.execute(
        select(Conversation.contact_id, func.max(Conversation.id))
        .where(
            Conversation.tenant_id == tenant_id,
            Conversation.contact_id.in_(contact_ids),
            Conversation.status.in_([ConversationStatus.open, ConversationStatus.pending]),
        )
        .group_by(Conversation.contact_id)
    )
    found.update(dict(rows.all()))
    missing = sorted(contact_ids - set(found))
    if missing:
        new = session.execute(
            insert(Conversation.__table__).returning(
                Conversation.__table__.c.contact_id, Conversation.__table__.c.id
            ),
            [{"tenant_id": tenant_id, "contact_id": c} for c in missing],
        )
        found.update(dict(new.all()))
    return found


def _store_messages(
    session: Session, campaign: Campaign, template: TemplateSpec, sent: list[Outcome], now: datetime
) -> None:
    """The outbound messages of a chunk, then any statuses parked before they existed."""
    tenant_id = campaign.tenant_id
    conversations = _conversations(session, tenant_id, {o.recipient.contact_id for o in sent})
    wamids = [o.wamid for o in sent if o.wamid]
    known = set(
        session.scalars(select(Message.wa_message_id).where(Message.wa_message_id.in_(wamids)))
    )
    rows = [
        {
            "tenant_id": tenant_id,
            "conversation_id": conversations[o.recipient.contact_id],
            "direction": MessageDirection.outbound,
            "type": "template",
            "body": rendered_body(template, o.recipient.parameters),
            "wa_message_id": o.wamid,
            "status": MessageStatus.accepted,
            "campaign_id": campaign.id,
            "created_at": now,
        }
        for o in sent
        if o.wamid not in known
    ]
    if rows:
        session.execute(insert(Message.__table__), rows)
        session.execute(
            update(Conversation.__table__)
            .where(Conversation.__table__.c.id.in_({r["conversation_id"] for r in rows}))
            .values(last_message_at=now)
        )
    _apply_parked(session, tenant_id, wamids)


def _apply_parked(session: Session, tenant_id: int, wamids: list[str]) -> None:
    """Statuses that arrived before the message row existed: to recipients and messages."""
    parked = session.scalars(
        select(PendingStatus).where(
            PendingStatus.tenant_id == tenant_id, PendingStatus.wa_message_id.in_(wamids)
        )
    ).all()
    if not parked:
        return
    for item in parked:
        status_item = {
            "id": item.wa_message_id,
            "status": item.status.value,
            "timestamp": str(int(item.occurred_at.replace(tzinfo=UTC).timestamp())),
            "errors": [{"code": item.error_code, "title": item.error_title}],
        }
        apply_recipient_status(session, status_item, tenant_id)
    for message in session.scalars(
        select(Message).where(Message.wa_message_id.in_({p.wa_message_id for p in parked}))
    ):
        inbound.apply_pending_statuses(session, message)
