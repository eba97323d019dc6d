"""Keyed hashes of personal identifiers: comparable, never reversible."""

from __future__ import annotations

import hashlib
import hmac

from flask import current_app


def hash_identifier(value: str) -> str:
    """HMAC-SHA256 of a normalised identifier (e.g. an email typed at login)."""
    key = current_app.config.get("IDENTITY_HASH_KEY") or current_app.config["SECRET_KEY"]
    normalised = (value or "").strip().lower().encode()
    return hmac.new(key.encode(), normalised, hashlib.sha256).hexdigest()
