"""Secrets encrypted at rest with rotating keys (P13)."""

from __future__ import annotations

import pytest
from cryptography.fernet import Fernet, InvalidToken
from sqlalchemy import select, text
from sqlalchemy.exc import StatementError

from app.extensions import db
from app.models import Tenant
from app.models.types import (
    EXTENSION_KEY,
    UNREADABLE,
    EncryptedText,
    KeyRing,
    key_ring,
    mask_secret,
)
from app.services.exceptions import EncryptionKeyError, SecretDecryptionError
from app.services.secrets import rotate_secrets, secret_tables

TOKEN = "EAAGtestAccessToken0123456789abcdefXYZ1a2B"
APP_SECRET = "0123456789abcdef0123456789abcdef"
KEY2 = Fernet.generate_key().decode()


@pytest.fixture
def key1(app) -> str:
    return app.config["FIELD_ENCRYPTION_KEYS"][0]


def raw_secrets(tenant_id: int) -> tuple[str | None, str | None]:
    """The two secret columns exactly as the database holds them."""
    row = db.session.execute(
        text("SELECT wa_access_token, wa_app_secret FROM tenant WHERE id=:id"), {"id": tenant_id}
    ).one()
    return row.wa_access_token, row.wa_app_secret


def store_secrets(tenant: Tenant, token: str = TOKEN, app_secret: str = APP_SECRET) -> None:
    tenant.wa_access_token = token
    tenant.wa_app_secret = app_secret
    db.session.flush()


def reread(tenant: Tenant) -> Tenant:
    """The tenant as the ORM loads it afresh from the database."""
    db.session.expire_all()
    return db.session.get(Tenant, tenant.id)


# ------------------------------------------------------------------ at rest


def test_the_database_holds_a_fernet_token_and_the_orm_reads_plaintext(tenant_a, key1):
    store_secrets(tenant_a)
    raw_token, raw_app_secret = raw_secrets(tenant_a.id)
    assert TOKEN not in raw_token and APP_SECRET not in raw_app_secret
    assert raw_token.startswith("gAAAAA")  # Fernet version byte 0x80, base64
    assert Fernet(key1).decrypt(raw_token.encode()).decode() == TOKEN
    assert Fernet(key1).decrypt(raw_app_secret.encode()).decode() == APP_SECRET

    tenant = reread(tenant_a)
    assert tenant.wa_access_token == TOKEN
    assert tenant.wa_app_secret == APP_SECRET


def test_equal_secrets_give_different_tokens(tenant_a, tenant_b):
    store_secrets(tenant_a)
    store_secrets(tenant_b)
    assert raw_secrets(tenant_a.id)[0] != raw_secrets(tenant_b.id)[0]


def test_none_stays_null(tenant_a):
    store_secrets(tenant_a)
    tenant_a.wa_access_token = None
    db.session.flush()
    assert raw_secrets(tenant_a.id)[0] is None
    assert reread(tenant_a).wa_access_token is None


def test_loading_a_tenant_does_not_decrypt_its_secrets(tenant_a, app, monkeypatch):
    """Deferred: a tenant whose secret no key opens still loads; the secret fails alone."""
    store_secrets(tenant_a)
    monkeypatch.setitem(app.config, "FIELD_ENCRYPTION_KEYS", [KEY2])
    db.session.expire_all()
    tenant = db.session.scalars(select(Tenant).where(Tenant.id == tenant_a.id)).one()
    assert tenant.name == "Acme Traders"
    with pytest.raises(SecretDecryptionError):
        _ = tenant.wa_access_token


def test_only_str_is_stored(tenant_a):
    tenant_a.wa_access_token = b"bytes"
    with pytest.raises(StatementError, match="stores str, not bytes"):
        db.session.flush()
    db.session.rollback()


def test_secret_columns_are_found_by_type():
    found = {(t.name, c.name) for t in secret_tables() for c in t.columns}
    assert {("tenant", "wa_access_token"), ("tenant", "wa_app_secret")} <= found
    assert all(isinstance(c.type, EncryptedText) for t in secret_tables() for c in t.columns)


# --------------------------------------------------------------------- keys


def test_key_ring_is_built_once_and_rebuilt_when_the_keys_change(app, key1, monkeypatch):
    ring = key_ring()
    assert key_ring() is ring
    assert app.extensions[EXTENSION_KEY] is ring
    monkeypatch.setitem(app.config, "FIELD_ENCRYPTION_KEYS", [KEY2, key1])
    rebuilt = key_ring()
    assert rebuilt is not ring
    assert rebuilt.keys == (KEY2, key1)
    assert Fernet(KEY2).decrypt(rebuilt.encrypt("x").encode()) == b"x"


def test_the_configured_development_and_testing_keys_are_fernet_keys():
    from config import DevelopmentConfig, TestingConfig

    for config in (DevelopmentConfig, TestingConfig):
        KeyRing.build(tuple(config.FIELD_ENCRYPTION_KEYS))


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        ([], "FIELD_ENCRYPTION_KEYS is empty"),
        (["not-a-key-at-all"], "entry 1 is not a Fernet key"),
        ([KEY2, "b3RoZXI="], "entry 2 is not a Fernet key"),
    ],
)
def test_missing_or_malformed_keys_are_named_without_echoing_them(app, monkeypatch, keys, message):
    monkeypatch.setitem(app.config, "FIELD_ENCRYPTION_KEYS", keys)
    with pytest.raises(EncryptionKeyError, match=message) as caught:
        key_ring()
    assert "Fernet.generate_key()" in str(caught.value)
    for key in keys:
        assert key not in str(caught.value)


def test_a_value_no_key_opens_raises_a_domain_error_without_the_ciphertext(
    app, tenant_a, monkeypatch
):
    store_secrets(tenant_a)
    raw_token = raw_secrets(tenant_a.id)[0]
    monkeypatch.setitem(app.config, "FIELD_ENCRYPTION_KEYS", [KEY2])  # the old key is gone
    tenant = reread(tenant_a)
    with pytest.raises(SecretDecryptionError) as caught:
        _ = tenant.wa_access_token
    message = str(caught.value)
    assert "cannot be decrypted with any key in FIELD_ENCRYPTION_KEYS" in message
    assert raw_token not in message and TOKEN not in message
    assert tenant.wa_access_token_mask == UNREADABLE


def test_an_altered_value_raises_the_domain_error(tenant_a):
    store_secrets(tenant_a)
    db.session.execute(
        text("UPDATE tenant SET wa_access_token = :v WHERE id = :id"),
        {"v": "gAAAAAnot-really-a-token", "id": tenant_a.id},
    )
    with pytest.raises(SecretDecryptionError):
        _ = reread(tenant_a).wa_access_token


# ----------------------------------------------------------------- rotation


def test_rotation_re_encrypts_with_the_newest_key(app, tenant_a, key1, monkeypatch):
    store_secrets(tenant_a)
    before = raw_secrets(tenant_a.id)

    monkeypatch.setitem(app.config, "FIELD_ENCRYPTION_KEYS", [KEY2, key1])
    batches = list(rotate_secrets(db.session))
    after = raw_secrets(tenant_a.id)
    assert after[0] != before[0] and after[1] != before[1]
    assert Fernet(KEY2).decrypt(after[0].encode()).decode() == TOKEN
    with pytest.raises(InvalidToken):
        Fernet(key1).decrypt(after[0].encode())
    assert sum(b.rotated for b in batches) >= 2
    assert not any(b.unreadable for b in batches)
    assert reread(tenant_a).wa_access_token == TOKEN

    # The old key can now be retired.
    monkeypatch.setitem(app.config, "FIELD_ENCRYPTION_KEYS", [KEY2])
    tenant = reread(tenant_a)
    assert tenant.wa_access_token == TOKEN
    assert tenant.wa_app_secret == APP_SECRET


def test_rotation_leaves_current_tokens_alone_and_does_not_touch_updated_at(
    app, tenant_a, key1, monkeypatch
):
    store_secrets(tenant_a)
    updated_at = tenant_a.updated_at
    monkeypatch.setitem(app.config, "FIELD_ENCRYPTION_KEYS", [KEY2, key1])
    list(rotate_secrets(db.session))
    rotated = raw_secrets(tenant_a.id)

    again = list(rotate_secrets(db.session))
    assert raw_secrets(tenant_a.id) == rotated
    assert sum(b.rotated for b in again) == 0
    assert sum(b.current for b in again) >= 2
    assert reread(tenant_a).updated_at == updated_at


def test_rotation_goes_in_batches_in_primary_key_order(app, tenant_a, tenant_b, key1, monkeypatch):
    store_secrets(tenant_a)
    store_secrets(tenant_b)
    monkeypatch.setitem(app.config, "FIELD_ENCRYPTION_KEYS", [KEY2, key1])
    batches = list(rotate_secrets(db.session, batch_size=1))
    assert [b.rows for b in batches] == [1] * len(batches)
    ids = [b.first_pk for b in batches]
    assert ids == sorted(ids)
    assert {tenant_a.id, tenant_b.id} <= set(ids)


def test_rotation_reports_values_no_key_opens_and_carries_on(
    app, tenant_a, tenant_b, key1, monkeypatch
):
    store_secrets(tenant_a)
    store_secrets(tenant_b)
    monkeypatch.setitem(app.config, "FIELD_ENCRYPTION_KEYS", [KEY2, key1])
    lost = Fernet(Fernet.generate_key()).encrypt(b"lost").decode()
    db.session.execute(
        text("UPDATE tenant SET wa_app_secret = :v WHERE id = :id"), {"v": lost, "id": tenant_a.id}
    )
    batches = list(rotate_secrets(db.session))
    unreadable = [u for b in batches for u in b.unreadable]
    assert unreadable == [("tenant", "wa_app_secret", tenant_a.id)]
    assert raw_secrets(tenant_a.id)[1] == lost  # left as it was
    assert Fernet(KEY2).decrypt(raw_secrets(tenant_a.id)[0].encode()).decode() == TOKEN
    assert Fernet(KEY2).decrypt(raw_secrets(tenant_b.id)[1].encode()).decode() == APP_SECRET


def test_rotation_refuses_a_batch_size_below_one():
    with pytest.raises(ValueError, match="at least 1"):
        next(rotate_secrets(db.session, batch_size=0))


# --------------------------------------------------------------------- mask


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (None, "not set"),
        ("", "not set"),
        ("short-secret", "••••"),
        ("EAAGtestAccessToken0123456789abcdef1a2B", "•••• 1a2B"),
    ],
)
def test_masks_show_at_most_the_last_four_characters(value, shown):
    assert mask_secret(value) == shown
