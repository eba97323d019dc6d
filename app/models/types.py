"""Column types. `EncryptedText`: secrets encrypted at rest (P13).

Values are Fernet tokens in the database; the ORM reads and writes plaintext. Keys come
from ``FIELD_ENCRYPTION_KEYS`` (newest first): the first key encrypts, every key
decrypts, so a key can be rotated in without downtime and retired after
``flask woffice rotate-keys`` has re-encrypted every value with the newest one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from flask import Flask, current_app
from sqlalchemy import Text
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator

from app.services.exceptions import EncryptionKeyError, SecretDecryptionError

EXTENSION_KEY = "woffice_field_encryption"
GENERATE_HINT = (
    'generate one with: python -c "from cryptography.fernet import Fernet; '
    'print(Fernet.generate_key().decode())"'
)
MASK = "••••"
NOT_SET = "not set"
UNREADABLE = "cannot be decrypted (check FIELD_ENCRYPTION_KEYS)"
# A secret shorter than this is masked without its last characters.
MASK_SUFFIX_MIN_LENGTH = 16


@dataclass(frozen=True)
class KeyRing:
    """The Fernet keys of one app: ``primary`` encrypts, ``multi`` decrypts with any."""

    keys: tuple[str, ...]
    primary: Fernet
    multi: MultiFernet

    @classmethod
    def build(cls, keys: tuple[str, ...]) -> KeyRing:
        """:raises EncryptionKeyError: for no keys or a value that is not a Fernet key."""
        if not keys:
            raise EncryptionKeyError(
                "FIELD_ENCRYPTION_KEYS is empty: secrets can be neither stored nor read; "
                + GENERATE_HINT
                + "."
            )
        fernets = []
        for position, key in enumerate(keys, start=1):
            try:
                fernets.append(Fernet(key))
            except (ValueError, TypeError) as exc:
                # Never echo the key itself.
                raise EncryptionKeyError(
                    f"FIELD_ENCRYPTION_KEYS entry {position} is not a Fernet key "
                    f"(32 url-safe base64-encoded bytes); {GENERATE_HINT}."
                ) from exc
        return cls(keys=keys, primary=fernets[0], multi=MultiFernet(fernets))

    def encrypt(self, plaintext: str) -> str:
        """A Fernet token of ``plaintext`` under the newest key."""
        return self.primary.encrypt(plaintext.encode("utf-8")).decode("ascii")

    def decrypt(self, token: str) -> str:
        """:raises SecretDecryptionError: when no configured key opens ``token``."""
        try:
            return self.multi.decrypt(token.encode("ascii")).decode("utf-8")
        except (InvalidToken, UnicodeError) as exc:
            raise SecretDecryptionError(_UNREADABLE_MESSAGE) from exc

    def rotate(self, token: str) -> str | None:
        """``token`` re-encrypted under the newest key; None when it already is.

        :raises SecretDecryptionError: when no configured key opens ``token``.
        """
        raw = token.encode("ascii")
        try:
            self.primary.decrypt(raw)
            return None
        except InvalidToken:
            pass
        try:
            return self.multi.rotate(raw).decode("ascii")
        except InvalidToken as exc:
            raise SecretDecryptionError(_UNREADABLE_MESSAGE) from exc


_UNREADABLE_MESSAGE = (
    "A stored secret cannot be decrypted with any key in FIELD_ENCRYPTION_KEYS: the key "
    "that encrypted it was removed, or the stored value was altered. Put the old key back "
    "(after the newest one), or enter the secret again."
)


def key_ring(app: Flask | None = None) -> KeyRing:
    """The app's key ring, built once and rebuilt when FIELD_ENCRYPTION_KEYS changes.

    :raises EncryptionKeyError: when the configured keys are missing or malformed.
    """
    app = app or current_app._get_current_object()  # type: ignore[attr-defined]
    keys = tuple(
        k.decode("ascii") if isinstance(k, bytes) else str(k)
        for k in app.config.get("FIELD_ENCRYPTION_KEYS") or ()
    )
    ring = app.extensions.get(EXTENSION_KEY)
    if ring is None or ring.keys != keys:
        ring = KeyRing.build(keys)
        app.extensions[EXTENSION_KEY] = ring
    return ring


class EncryptedText(TypeDecorator):
    """Text stored as a Fernet token; the ORM sees plaintext.

    Not searchable or comparable in SQL (every encryption differs). Map it with
    ``deferred=True`` so loading a row does not decrypt its secrets until they are read,
    and a value no key can open fails only where it is used.
    """

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> str | None:
        if value is None:
            return None
        if not isinstance(value, str):
            raise TypeError(f"EncryptedText stores str, not {type(value).__name__}")
        return key_ring().encrypt(value)

    def process_result_value(self, value: Any, dialect: Dialect) -> str | None:
        if value is None:
            return None
        return key_ring().decrypt(value)


def mask_secret(value: str | None) -> str:
    """ "•••• 1a2B" (the last 4 characters of a long secret), "••••" or "not set"."""
    if not value:
        return NOT_SET
    if len(value) < MASK_SUFFIX_MIN_LENGTH:
        return MASK
    return f"{MASK} {value[-4:]}"
