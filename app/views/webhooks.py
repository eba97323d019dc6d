"""WhatsApp Cloud API webhooks: verification handshake and signed event deliveries.

The POST handler does the least it safely can (reference 4): read the raw body, match it
to a tenant by ``metadata.phone_number_id``, check ``X-Hub-Signature-256`` (HMAC-SHA256
of the raw bytes with that tenant's app secret), store the payload in ``webhook_inbox``
(unique by content hash, so a redelivery is acknowledged without a second row), enqueue
`process_inbox` after the commit and answer 200. Everything else runs in the job.
A refused delivery is audited and stores nothing.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

from flask import Blueprint, Response, current_app, request
from sqlalchemy import select

from app.extensions import db
from app.jobs import enqueue_after_commit
from app.jobs.webhooks import process_inbox
from app.models.conversation import WebhookInbox
from app.models.mixins import utcnow
from app.models.tenant import Tenant
from app.services import audit
from app.services.exceptions import SecretDecryptionError

whatsapp_webhooks = Blueprint("whatsapp_webhooks", __name__, url_prefix="/webhooks")

SIGNATURE_HEADER = "X-Hub-Signature-256"


@whatsapp_webhooks.get("/whatsapp")
def verify() -> Response:
    """Meta's subscription handshake: echo the challenge when the token matches."""
    mode = request.args.get("hub.mode", "")
    token = request.args.get("hub.verify_token", "")
    challenge = request.args.get("hub.challenge", "")
    expected = current_app.config.get("WHATSAPP_VERIFY_TOKEN") or ""
    if mode == "subscribe" and expected and hmac.compare_digest(token, expected):
        return Response(challenge, status=200, mimetype="text/plain")
    return Response("Forbidden", status=403, mimetype="text/plain")


@whatsapp_webhooks.post("/whatsapp")
def receive() -> Response:
    raw = request.get_data(cache=False)
    tenant, reason = _verified_tenant(raw, request.headers.get(SIGNATURE_HEADER, ""))
    if tenant is None:
        db.session.rollback()
        audit.record("webhook.rejected", reason=reason, source="whatsapp", size=len(raw))
        db.session.commit()
        return Response("Forbidden", status=403, mimetype="text/plain")
    inbox_id, duplicate = _store(raw, tenant.id)
    if inbox_id is not None:
        enqueue_after_commit("default", process_inbox, inbox_id, tenant_id=tenant.id)
    db.session.commit()
    return Response("duplicate" if duplicate else "ok", status=200, mimetype="text/plain")


def _phone_number_ids(payload: Any) -> set[str]:
    """Every ``metadata.phone_number_id`` the payload names (raises on a wrong shape)."""
    if not isinstance(payload, dict) or not isinstance(payload.get("entry"), list):
        raise ValueError("no entry list")
    found: set[str] = set()
    for entry in payload["entry"]:
        for change in entry.get("changes") or []:
            metadata = (change.get("value") or {}).get("metadata") or {}
            number_id = metadata.get("phone_number_id")
            if number_id is not None:
                found.add(str(number_id))
    return found


def _verified_tenant(raw: bytes, header: str) -> tuple[Tenant | None, str]:
    """(tenant, "") for a well-formed delivery signed by its tenant; else (None, reason)."""
    try:
        numbers = _phone_number_ids(json.loads(raw))
    except (ValueError, TypeError, AttributeError):
        return None, "malformed_payload"
    if not numbers:
        return None, "no_phone_number_id"
    if len(numbers) > 1:
        return None, "several_phone_number_ids"
    tenant = db.session.scalars(
        select(Tenant).where(Tenant.wa_phone_number_id == numbers.pop())
    ).first()
    if tenant is None:
        return None, "unknown_phone_number_id"
    if not header.startswith("sha256="):
        return None, "missing_signature"
    try:
        secret = tenant.wa_app_secret
    except SecretDecryptionError:
        return None, "app_secret_unreadable"
    if not secret:
        return None, "no_app_secret"
    expected = hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(header.removeprefix("sha256=").strip().lower(), expected):
        return None, "bad_signature"
    return tenant, ""


def _store(raw: bytes, tenant_id: int) -> tuple[int | None, bool]:
    """Insert the payload once; returns (inbox id to process or None, duplicate?)."""
    content_hash = hashlib.sha256(raw).hexdigest()
    table = WebhookInbox.__table__
    conn = db.session.connection()
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as dialect_insert
    else:
        from sqlalchemy.dialects.sqlite import insert as dialect_insert
    stmt = (
        dialect_insert(table)
        .values(
            source="whatsapp",
            content_hash=content_hash,
            tenant_id=tenant_id,
            payload=raw.decode("utf-8", errors="replace"),
            received_at=utcnow(),
            attempts=0,
        )
        .on_conflict_do_nothing(index_elements=["content_hash"])
        .returning(table.c.id)
    )
    inbox_id = conn.execute(stmt).scalar()
    if inbox_id is not None:
        return inbox_id, False
    # A redelivery: acknowledge it; process again only if the first run has not finished.
    row = conn.execute(
        select(table.c.id, table.c.processed_at).where(table.c.content_hash == content_hash)
    ).one()
    return (None if row.processed_at else row.id), True
