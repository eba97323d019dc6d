"""Webhook jobs (queue ``default``): process stored webhook payloads.

`drain_inbox` is what the webhook view enqueues: one run takes a batch of a tenant's
unprocessed ``webhook_inbox`` rows, locked with ``FOR UPDATE SKIP LOCKED`` so concurrent
runs share the backlog without touching the same row twice, applies them and commits
once. Runs are coalesced (`app.jobs.enqueue_coalesced`): a burst of deliveries costs one
job per batch, not one (and two audit events) per delivery. `process_inbox` applies one
given row (re-processing by hand).

A row is applied as far as it concerns its tenant (`inbound.Route`: the changes of its
business number and of its WhatsApp Business Account), since a payload for a shared
WABA is stored once per tenant. A template status update for a template the tenant does
not have yet has the tenant's templates synced (one coalesced sync job per tenant).
"""

from __future__ import annotations

import json
import logging
from typing import Any

from sqlalchemy import select, update

from app.extensions import db
from app.jobs import enqueue_after_commit, release_coalesced
from app.jobs._runtime import job
from app.jobs.templates import sync_coalesce_key, sync_tenant_templates
from app.models.conversation import WebhookInbox
from app.models.mixins import utcnow
from app.models.tenant import Tenant
from app.services import inbound

log = logging.getLogger(__name__)

DRAIN_BATCH = 500  # inbox rows per run (a POST carries one to a few dozen statuses)
MAX_ATTEMPTS = 5  # a row failing this often is left for a person (its error is kept)


def drain_key(tenant_id: int) -> str:
    """The coalescing key of a tenant's drain runs."""
    return f"whatsapp-inbox:{tenant_id}"


def schedule_drain(tenant_id: int) -> None:
    """Have a `drain_inbox` run for ``tenant_id`` after this transaction commits."""
    enqueue_after_commit("default", drain_inbox, tenant_id=tenant_id, coalesce=drain_key(tenant_id))


@job
def drain_inbox(tenant_id: int, batch_size: int = DRAIN_BATCH) -> dict[str, int]:
    """Apply a batch of the tenant's unprocessed inbox rows; a full batch schedules more.

    A row whose messages cannot be stored is rolled back on its own (savepoint), keeps
    its error and attempt count and is retried by later runs, up to ``MAX_ATTEMPTS``:
    one bad payload must not hold up every later delivery of the tenant.
    """
    release_coalesced(drain_key(tenant_id))  # rows committed from now on: a new run
    rows = db.session.execute(
        select(WebhookInbox.id, WebhookInbox.payload)
        .where(
            WebhookInbox.tenant_id == tenant_id,
            WebhookInbox.processed_at.is_(None),
            WebhookInbox.attempts < MAX_ATTEMPTS,
        )
        .order_by(WebhookInbox.id)
        .limit(batch_size)
        .with_for_update(skip_locked=True)
    ).all()
    counts = inbound.new_counts() | {"rows": len(rows), "malformed": 0, "failed": 0}
    route = tenant_route(tenant_id)
    done: list[int] = []
    statuses: list[dict[str, Any]] = []
    for row_id, raw in rows:
        try:
            payload = json.loads(raw)
        except ValueError:
            _finish([row_id], error="malformed payload")
            counts["malformed"] += 1
            continue
        found = _apply_row(row_id, payload, counts, tenant_id, route)
        if found is not None:
            statuses += found
            done.append(row_id)
    applied, pending = inbound.apply_statuses(db.session, tenant_id, statuses)
    counts["statuses"] += applied
    counts["pending"] += pending
    _finish(done)
    if counts["templates_unknown"]:
        schedule_template_sync(tenant_id)
    if len(rows) == batch_size:
        schedule_drain(tenant_id)
    return counts


def tenant_route(tenant_id: int) -> inbound.Route | None:
    """The tenant's business number and WABA (None for an unknown tenant: apply all)."""
    row = db.session.execute(
        select(Tenant.wa_phone_number_id, Tenant.wa_business_account_id).where(
            Tenant.id == tenant_id
        )
    ).first()
    return inbound.Route(row[0], row[1]) if row is not None else None


def schedule_template_sync(tenant_id: int) -> None:
    """Have the tenant's templates synced after this transaction commits (coalesced)."""
    enqueue_after_commit(
        "default", sync_tenant_templates, tenant_id=tenant_id, coalesce=sync_coalesce_key(tenant_id)
    )


def _apply_row(
    row_id: int,
    payload: Any,
    counts: dict[str, int],
    tenant_id: int,
    route: inbound.Route | None,
) -> list[dict] | None:
    """Store one payload's messages in a savepoint; its statuses, or None if it failed."""
    row_counts = inbound.new_counts()
    kwargs = {"tenant_id": tenant_id, "route": route}
    try:
        if _writes_rows(payload):
            with db.session.begin_nested():
                statuses = inbound.apply_messages(db.session, payload, row_counts, **kwargs)
        else:  # statuses only (most deliveries): nothing to roll back, no savepoint
            statuses = inbound.apply_messages(db.session, payload, row_counts, **kwargs)
    except Exception as exc:  # recorded on the row and retried, see drain_inbox
        log.exception("webhook_inbox %s failed", row_id)
        db.session.execute(
            update(WebhookInbox)
            .where(WebhookInbox.id == row_id)
            .values(attempts=WebhookInbox.attempts + 1, error=type(exc).__name__[:300])
        )
        counts["failed"] += 1
        return None
    for key, value in row_counts.items():
        counts[key] += value
    return statuses


def _writes_rows(payload: Any) -> bool:
    """Does the payload carry messages, preferences or template updates (stored here,
    not in bulk)?"""
    return any(
        change.get("field") == inbound.TEMPLATE_STATUS_FIELD
        or any((change.get("value") or {}).get(key) for key in ("messages", "user_preferences"))
        for entry in payload.get("entry") or []
        for change in entry.get("changes") or []
    )


def _finish(row_ids: list[int], error: str | None = None) -> None:
    if row_ids:
        db.session.execute(
            update(WebhookInbox)
            .where(WebhookInbox.id.in_(row_ids))
            .values(processed_at=utcnow(), attempts=WebhookInbox.attempts + 1, error=error)
        )


@job
def process_inbox(inbox_id: int, tenant_id: int | None = None) -> dict[str, int]:
    """Apply one ``webhook_inbox`` row in its tenant's scope; a processed row is skipped.

    The row is locked while it is processed, so two runs of the same row are ordered and
    the second sees ``processed_at`` and does nothing.
    """
    row = db.session.scalars(
        select(WebhookInbox).where(WebhookInbox.id == inbox_id).with_for_update()
    ).first()
    if row is None or row.processed_at is not None:
        return {"skipped": 1}
    if row.tenant_id != tenant_id or tenant_id is None:
        raise ValueError(f"webhook_inbox {inbox_id} belongs to another tenant")
    row.attempts += 1
    try:
        payload = json.loads(row.payload)
    except ValueError:
        row.error = "malformed payload"
        row.processed_at = utcnow()
        return {"malformed": 1}
    counts = inbound.process_payload(db.session, payload, tenant_id, tenant_route(tenant_id))
    row.processed_at = utcnow()
    row.error = None
    if counts["templates_unknown"]:
        schedule_template_sync(tenant_id)
    return counts
