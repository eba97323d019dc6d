"""Tenant API keys (issue 9), on FAB's own ``ab_api_key`` model.

* **Who.** A key is created by a member whose role grants "API keys → add" (Tenant
  Admins; any custom role given it), for their tenant. It acts as its creator, so FAB's
  permissions answer for it like for the person (and issue 8's roles apply); a
  deactivated or deleted creator's keys stop working.
* **Scope.** ``read`` keys may only read (GET/HEAD/OPTIONS); ``read-write`` keys may also
  write where the creator may. Every key expires (1-365 days, default 90) and can be
  revoked at once.
* **Secret.** The key is shown once. We store FAB's two hashes: a keyed lookup hash
  (indexed, so a key is found in one query) and a salted hash verified after the
  lookup. Keys carry 256 random bits, so the verifying hash needs no slow work factor
  (that protects guessable passwords, not random keys): a few hundred PBKDF2 rounds keep
  an API call's cost under a millisecond.
* **Audited.** Creation, revocation, every use (``api_key.used``: key, method,
  endpoint, status) and every refused key.
"""

from __future__ import annotations

import secrets
from datetime import timedelta
from typing import Any

from flask import current_app
from flask_appbuilder.security.sqla.models import ApiKey
from sqlalchemy import select
from sqlalchemy.orm import Session
from werkzeug.security import check_password_hash, generate_password_hash

from app.models.mixins import utcnow
from app.models.user import AppUser
from app.services import audit
from app.services.exceptions import ValidationError, WofficeError

PREFIX = "wof_"
SCOPES = {"read": "Read only", "read-write": "Read and write"}
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
DEFAULT_DAYS, MAX_DAYS = 90, 365
HASH_METHOD = "pbkdf2:sha256:600"


class ApiKeyError(WofficeError):
    """A key that cannot be created or revoked."""


def _lookup_hash(raw: str) -> str:
    # FAB's keyed lookup hash (scrypt with minimal work, keyed by SECRET_KEY).
    return current_app.appbuilder.sm._compute_lookup_hash(raw)


def create_key(
    session: Session,
    actor: AppUser,
    *,
    name: str,
    scope: str,
    expires_in_days: int | None = DEFAULT_DAYS,
) -> tuple[ApiKey, str]:
    """A new key for ``actor``'s tenant; returns it with the raw secret (shown once).

    :raises ValidationError: naming the bad field.
    """
    if actor.tenant_id is None:
        raise ApiKeyError("API keys belong to a business: platform staff have none.")
    name = " ".join((name or "").split())
    if not 2 <= len(name) <= 100:
        raise ValidationError("Name the key (2 to 100 characters), e.g. “CRM sync”.", "name")
    if scope not in SCOPES:
        raise ValidationError("Choose read only or read and write.", "scope")
    days = DEFAULT_DAYS if expires_in_days is None else int(expires_in_days)
    if not 1 <= days <= MAX_DAYS:
        raise ValidationError(f"A key lives 1 to {MAX_DAYS} days.", "expires_in_days")
    raw = PREFIX + secrets.token_urlsafe(32)
    key = ApiKey(
        name=name,
        key_hash=generate_password_hash(raw, method=HASH_METHOD),
        lookup_hash=_lookup_hash(raw),
        key_prefix=raw[: len(PREFIX) + 6],
        user_id=actor.id,
        scopes=scope,
        active=True,
        created_on=utcnow(),
        expires_on=utcnow() + timedelta(days=days),
    )
    session.add(key)
    session.flush()
    audit.record(
        "api_key.created",
        key,
        session=session,
        tenant_id=actor.tenant_id,
        key=key.uuid,
        scope=scope,
        expires_on=key.expires_on.isoformat(),
    )
    return key, raw


def tenant_keys(session: Session, tenant_id: int) -> list[tuple[ApiKey, AppUser]]:
    """Every key of the tenant's members, newest first, with its creator."""
    rows = session.execute(
        select(ApiKey, AppUser)
        .join(AppUser, AppUser.id == ApiKey.user_id)
        .where(AppUser.tenant_id == tenant_id)
        .order_by(ApiKey.id.desc())
    ).all()
    return [(key, user) for key, user in rows]


def get_tenant_key(session: Session, tenant_id: int, key_id: int) -> ApiKey:
    """:raises ApiKeyError: unknown or another tenant's key (the same answer)."""
    found = session.execute(
        select(ApiKey)
        .join(AppUser, AppUser.id == ApiKey.user_id)
        .where(ApiKey.id == key_id, AppUser.tenant_id == tenant_id)
    ).scalar()
    if found is None:
        raise ApiKeyError("No such API key.")
    return found


def revoke(session: Session, actor: AppUser, key_id: int) -> ApiKey:
    """Revoke at once (idempotent). The caller commits."""
    if actor.tenant_id is None:
        raise ApiKeyError("No such API key.")
    key = get_tenant_key(session, actor.tenant_id, key_id)
    if key.revoked_on is None:
        key.revoked_on = utcnow()
        key.active = False
        audit.record(
            "api_key.revoked", key, session=session, tenant_id=actor.tenant_id, key=key.uuid
        )
    return key


def status(key: ApiKey) -> str:
    if key.revoked_on is not None or not key.active:
        return "Revoked"
    if key.expires_on is not None and key.expires_on <= utcnow():
        return "Expired"
    return "Active"


def authenticate(session: Session, raw: str) -> tuple[ApiKey, AppUser] | None:
    """The active key and its active, tenant-bound creator for ``raw``; None otherwise.

    Lookup by the keyed hash (one indexed query), then the salted hash (defence in
    depth), then expiry, revocation and the creator's state.
    """
    if not raw.startswith(PREFIX) or len(raw) > 200:
        return None
    key = session.execute(
        select(ApiKey)
        .where(ApiKey.lookup_hash == _lookup_hash(raw))
        .execution_options(skip_tenant_scope=True)
    ).scalar()
    if key is None or not check_password_hash(key.key_hash, raw) or status(key) != "Active":
        return None
    user = session.get(AppUser, key.user_id)
    if user is None or not user.active or user.tenant_id is None:
        return None
    key.last_used_on = utcnow()
    return key, user


def allows(key: ApiKey, method: str) -> bool:
    """Whether the key's scope allows an HTTP ``method``."""
    return key.scopes == "read-write" or method.upper() in READ_METHODS


def describe(key: ApiKey) -> dict[str, Any]:
    return {"key": key.uuid, "prefix": key.key_prefix, "scope": key.scopes}
