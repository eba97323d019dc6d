"""WhatsApp Cloud API webhooks: verification handshake and signed event deliveries.

The POST handler does the least it safely can (reference 4): read the raw body, match it
to a tenant by ``metadata.phone_number_id``, check ``X-Hub-Signature-256`` (HMAC-SHA256
of the raw bytes with that tenant's app secret), store the payload in ``webhook_inbox``
(unique by content hash, so a redelivery is acknowledged without a second row), have a
`drain_inbox` run after the commit (coalesced: one queued run serves a burst of
deliveries) and answer 200. Everything else runs in the job. A refused delivery is
audited and stores nothing.

Each worker process caches which tenant owns a phone number id, with its app secret,
for ``WHATSAPP_TENANT_CACHE_SECONDS`` (30 s by default; 0 turns it off): at Meta's
delivery rates that lookup and the secret's decryption were a large part of a request.
A changed app secret or number therefore takes effect within that time.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from typing import Any, NamedTuple

from flask import Blueprint, Response, current_app, request
from sqlalchemy import select

from app.extensions import db
from app.jobs.webhooks import schedule_drain
from app.models.conversation import WebhookInbox
from app.models.mixins import utcnow
from app.models.tenant import Tenant
from app.services import audit
from app.services.exceptions import SecretDecryptionError

whatsapp_webhooks = Blueprint("whatsapp_webhooks", __name__, url_prefix="/webhooks")

SIGNATURE_HEADER = "X-Hub-Signature-256"


class _Owner(NamedTuple):
    tenant_id: int
    app_secret: str | None  # None: not set or unreadable (refused with that reason)
    problem: str


# phone number id -> (monotonic expiry, owner or None for an unknown number)
_owners: dict[str, tuple[float, _Owner | None]] = {}


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
    """A signed delivery: verify, store raw once, acknowledge; the job does the rest."""
    tenant_id, reason = _verified_tenant(raw, request.headers.get(SIGNATURE_HEADER, ""))
    if tenant_id is None:
        db.session.rollback()
        audit.record("webhook.rejected", reason=reason, source="whatsapp", size=len(raw))
        db.session.commit()
        return Response("Forbidden", status=403, mimetype="text/plain")
    pending, duplicate = _store(raw, tenant_id)
    if pending:
        schedule_drain(tenant_id)
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


def _verified_tenant(raw: bytes, header: str) -> tuple[int | None, str]:
    """(tenant id, "") for a well-formed delivery signed by its tenant; else (None, reason)."""
    try:
        numbers = _phone_number_ids(json.loads(raw))
    except (ValueError, TypeError, AttributeError):
        return None, "malformed_payload"
    if not numbers:
        return None, "no_phone_number_id"
    if len(numbers) > 1:
        return None, "several_phone_number_ids"
    owner = _owner(numbers.pop())
    if owner is None:
        return None, "unknown_phone_number_id"
    if not header.startswith("sha256="):
        return None, "missing_signature"
    if owner.app_secret is None:
        return None, owner.problem
    expected = hmac.new(owner.app_secret.encode(), raw, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(header.removeprefix("sha256=").strip().lower(), expected):
        return None, "bad_signature"
    return owner.tenant_id, ""


def _owner(phone_number_id: str) -> _Owner | None:
    """The tenant owning ``phone_number_id`` with its app secret (cached briefly)."""
    ttl = float(current_app.config.get("WHATSAPP_TENANT_CACHE_SECONDS", 30))
    now = time.monotonic()
    cached = _owners.get(phone_number_id)
    if ttl > 0 and cached is not None and cached[0] > now:
        return cached[1]
    tenant = db.session.scalars(
        select(Tenant).where(Tenant.wa_phone_number_id == phone_number_id)
    ).first()
    owner = None
    if tenant is not None:
        try:
            secret, problem = tenant.wa_app_secret or None, "no_app_secret"
        except SecretDecryptionError:
            secret, problem = None, "app_secret_unreadable"
        owner = _Owner(tenant.id, secret, "" if secret else problem)
    if ttl > 0:
        if len(_owners) > 10_000:  # random unknown ids must not grow it without bound
            _owners.clear()
        _owners[phone_number_id] = (now + ttl, owner)
    return owner


def clear_tenant_cache() -> None:
    """Forget cached phone number owners (tests; after changing a tenant's settings)."""
    _owners.clear()


def _store(raw: bytes, tenant_id: int) -> tuple[bool, bool]:
    """Insert the payload once; returns (left to process?, duplicate?)."""
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
    if conn.execute(stmt).scalar() is not None:
        return True, False
    # A redelivery: acknowledge it; have it drained if the first run has not finished.
    processed_at = conn.execute(
        select(table.c.processed_at).where(table.c.content_hash == content_hash)
    ).scalar_one()
    return processed_at is None, True
