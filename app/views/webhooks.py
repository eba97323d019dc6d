"""WhatsApp Cloud API webhooks: verification handshake and signed event deliveries.

The POST handler does the least it safely can (reference 4): read the raw body, find
the tenants it may be for, check ``X-Hub-Signature-256`` (HMAC-SHA256 of the raw bytes
with the tenant's app secret), store the payload in ``webhook_inbox`` (unique by content
hash, so a redelivery is acknowledged without a second row), have a `drain_inbox` run
after the commit (coalesced: one queued run serves a burst of deliveries) and answer
200. Everything else runs in the job. A refused delivery is audited and stores nothing.

Who a delivery is for:

* a change with ``metadata.phone_number_id`` (messages, statuses, preferences): the
  tenant owning that number (unique). One payload naming several numbers is refused.
* a change without one (``message_template_status_update`` and other account-level
  fields): the tenants whose ``wa_business_account_id`` is the entry id. Several tenants
  may share a WABA, each with its own app: the delivery is accepted for every candidate
  whose app secret verifies the signature, and stored once per such tenant (the drain
  applies only the changes addressed to each). One payload naming several WABAs for
  such changes is refused.

A delivery no candidate's secret verifies is refused. The number's owner keeps the
plain content hash (``sha256(body)``); a tenant reached only through its WABA gets one
salted with its id, so each tenant's row is unique and a redelivery still dedupes.

Each worker process caches the candidates of a phone number id or WABA id, with their
app secrets, for ``WHATSAPP_TENANT_CACHE_SECONDS`` (30 s by default; 0 turns it off): at
Meta's delivery rates that lookup and the secrets' decryption were a large part of a
request. A changed app secret, number or WABA therefore takes effect within that time.
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


class _Targets(NamedTuple):
    """Whom a payload addresses: phone number ids, and WABA ids of number-less changes."""

    numbers: set[str]
    accounts: set[str]


PHONE, WABA = "phone", "waba"
# (PHONE or WABA, id) -> (monotonic expiry, the tenants behind it; empty when unknown)
_owners: dict[tuple[str, str], tuple[float, tuple[_Owner, ...]]] = {}


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
    """A signed delivery: verify, store raw once per tenant, acknowledge; the job does
    the rest."""
    raw = request.get_data(cache=False)
    accepted, reason = _verified_tenants(raw, request.headers.get(SIGNATURE_HEADER, ""))
    if not accepted:
        db.session.rollback()
        audit.record("webhook.rejected", reason=reason, source="whatsapp", size=len(raw))
        db.session.commit()
        return Response("Forbidden", status=403, mimetype="text/plain")
    duplicates = 0
    for tenant_id, content_hash in accepted:
        pending, duplicate = _store(raw, tenant_id, content_hash)
        duplicates += duplicate
        if pending:
            schedule_drain(tenant_id)
    db.session.commit()
    body = "duplicate" if duplicates == len(accepted) else "ok"
    return Response(body, status=200, mimetype="text/plain")


def _targets(payload: Any) -> _Targets:
    """The phone number ids and WABA ids the payload addresses (raises on a wrong shape)."""
    if not isinstance(payload, dict) or not isinstance(payload.get("entry"), list):
        raise ValueError("no entry list")
    found = _Targets(set(), set())
    for entry in payload["entry"]:
        for change in entry.get("changes") or []:
            metadata = (change.get("value") or {}).get("metadata") or {}
            number_id = metadata.get("phone_number_id")
            if number_id is not None:
                found.numbers.add(str(number_id))
            elif entry.get("id") is not None:
                found.accounts.add(str(entry["id"]))
    return found


def _verified_tenants(raw: bytes, header: str) -> tuple[list[tuple[int, str]], str]:
    """([(tenant id, content hash)...], "") for the tenants a well-formed delivery is
    for and signed by; else ([], reason)."""
    try:
        targets = _targets(json.loads(raw))
    except (ValueError, TypeError, AttributeError):
        return [], "malformed_payload"
    if not targets.numbers and not targets.accounts:
        return [], "no_phone_number_id"
    if len(targets.numbers) > 1:
        return [], "several_phone_number_ids"
    if len(targets.accounts) > 1:
        return [], "several_business_accounts"
    number_owner: _Owner | None = None
    if targets.numbers:
        found = _lookup(PHONE, next(iter(targets.numbers)))
        if not found:
            return [], "unknown_phone_number_id"
        number_owner = found[0]
    candidates = [number_owner] if number_owner else []
    for owner in _lookup(WABA, next(iter(targets.accounts))) if targets.accounts else ():
        if all(owner.tenant_id != c.tenant_id for c in candidates):
            candidates.append(owner)
    if not candidates:
        return [], "unknown_business_account"
    if not header.startswith("sha256="):
        return [], "missing_signature"
    given = header.removeprefix("sha256=").strip().lower()
    plain = hashlib.sha256(raw).hexdigest()
    accepted = [
        (c.tenant_id, plain if c is number_owner else _salted_hash(raw, c.tenant_id))
        for c in candidates
        if c.app_secret is not None and _signed_by(raw, given, c.app_secret)
    ]
    if accepted:
        return accepted, ""
    readable = [c for c in candidates if c.app_secret is not None]
    return [], "bad_signature" if readable else candidates[0].problem


def _signed_by(raw: bytes, signature: str, secret: str) -> bool:
    expected = hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest()
    return hmac.compare_digest(signature, expected)


def _salted_hash(raw: bytes, tenant_id: int) -> str:
    """The content hash of a payload stored for a tenant reached through its WABA."""
    return hashlib.sha256(f"tenant:{tenant_id}\n".encode() + raw).hexdigest()


def _lookup(kind: str, key: str) -> tuple[_Owner, ...]:
    """The tenants owning a phone number id or sharing a WABA, with their app secrets
    (cached briefly; empty when none)."""
    ttl = float(current_app.config.get("WHATSAPP_TENANT_CACHE_SECONDS", 30))
    now = time.monotonic()
    cached = _owners.get((kind, key))
    if ttl > 0 and cached is not None and cached[0] > now:
        return cached[1]
    column = Tenant.wa_phone_number_id if kind == PHONE else Tenant.wa_business_account_id
    tenants = db.session.scalars(select(Tenant).where(column == key).order_by(Tenant.id)).all()
    owners = tuple(_owner(tenant) for tenant in tenants)
    if ttl > 0:
        if len(_owners) > 10_000:  # random unknown ids must not grow it without bound
            _owners.clear()
        _owners[(kind, key)] = (now + ttl, owners)
    return owners


def _owner(tenant: Tenant) -> _Owner:
    try:
        secret, problem = tenant.wa_app_secret or None, "no_app_secret"
    except SecretDecryptionError:
        secret, problem = None, "app_secret_unreadable"
    return _Owner(tenant.id, secret, "" if secret else problem)


def clear_tenant_cache() -> None:
    """Forget cached number and WABA owners (tests; after changing a tenant's settings)."""
    _owners.clear()


def _store(raw: bytes, tenant_id: int, content_hash: str) -> tuple[bool, bool]:
    """Insert the payload once; returns (left to process?, duplicate?)."""
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
