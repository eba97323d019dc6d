"""API-key sign-in for ``/api/`` requests, and the CSRF rule that goes with it (issue 9).

A request to ``/api/`` carrying ``Authorization: Bearer wof_...`` is signed in as the
key's creator for that request only (no session, no cookie): Flask-Login's
``current_user`` is set, so the tenant scope, FAB's ``has_access`` and the audit trail
work exactly as for the person. A bad, expired or revoked key is a 401; a read-only key
asking to write is a 403; each use is audited after the response is known.

CSRF protects cookie sessions; a request authenticated by a key carries no cookie a
third-party site could ride on, so it is exempt. Flask-WTF's default hook is therefore
off (``WTF_CSRF_CHECK_DEFAULT = False``) and `check_csrf` calls its ``protect`` for
every other request, with the same exemptions (webhooks, health).

The hooks run first (`install` is called before Flask-Security and FAB add theirs), so
nothing reads ``current_user`` before the key is checked.
"""

from __future__ import annotations

from typing import Any

from flask import Flask, current_app, g, jsonify, request

from app.extensions import csrf, db
from app.services import api_keys, audit

API_PREFIX = "/api/"


def _bearer() -> str | None:
    header = request.headers.get("Authorization", "")
    if not header.lower().startswith("bearer "):
        return None
    token = header[7:].strip()
    return token or None


def sign_in_api_key():
    """before_request: authenticate a bearer API key on API routes."""
    if not request.path.startswith(API_PREFIX):
        return None
    raw = _bearer()
    if raw is None:
        return None
    found = api_keys.authenticate(db.session, raw)
    if found is None:
        audit.record("api_key.refused", prefix=raw[:10], path=request.path[:200])
        db.session.commit()
        return jsonify(message="Invalid, expired or revoked API key."), 401
    key, user = found
    if not api_keys.allows(key, request.method):
        audit.record(
            "api_key.refused",
            key,
            tenant_id=user.tenant_id,
            reason="read-only",
            method=request.method,
        )
        db.session.commit()
        return jsonify(message="This API key is read-only: create a read-write key to write."), 403
    current_app.login_manager._update_request_context_with_user(user)
    g.api_key, g.api_key_tenant = key, user.tenant_id
    return None


def check_csrf():
    """before_request: Flask-WTF's CSRF check, except for API-key requests."""
    if getattr(g, "api_key", None) is not None:
        return None
    if current_app.config.get("WTF_CSRF_ENABLED", True):
        csrf.protect(apply_exemptions=True)
    return None


def audit_api_key_use(response: Any) -> Any:
    """after_request: one audit event per API-key request (committed on its own)."""
    key = getattr(g, "api_key", None)
    if key is None:
        return response
    try:
        audit.record(
            "api_key.used",
            key,
            tenant_id=g.get("api_key_tenant"),
            method=request.method,
            endpoint=request.endpoint,
            status=response.status_code,
        )
        db.session.commit()
    except Exception:  # noqa: BLE001 - never turn an answered request into a 500
        db.session.rollback()
        current_app.logger.exception("could not audit an API key use")
    return response


def install(app: Flask) -> None:
    """Register the hooks; call before Flask-Security and FAB register theirs."""
    app.config["WTF_CSRF_CHECK_DEFAULT"] = False
    app.before_request(sign_in_api_key)
    app.before_request(check_csrf)
    app.after_request(audit_api_key_use)
