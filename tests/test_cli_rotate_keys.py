"""`flask woffice rotate-keys`: re-encrypt every secret under the newest key (P13)."""

from __future__ import annotations

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import text

from app.extensions import db
from app.services.secrets import rotate_secrets

TOKEN = "EAAGtestAccessToken0123456789abcdefXYZ1a2B"
APP_SECRET = "0123456789abcdef0123456789abcdef"
KEY2 = Fernet.generate_key().decode()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


@pytest.fixture
def secrets_under_key1(tenant_a, tenant_b) -> list[int]:
    """Both demo tenants hold two secrets encrypted with the testing key."""
    for tenant in (tenant_a, tenant_b):
        tenant.wa_access_token = TOKEN
        tenant.wa_app_secret = APP_SECRET
    db.session.commit()
    return sorted([tenant_a.id, tenant_b.id])


def raw_tokens() -> dict[int, tuple[str, str]]:
    rows = db.session.execute(
        text(
            "SELECT id, wa_access_token, wa_app_secret FROM tenant "
            "WHERE wa_access_token IS NOT NULL"
        )
    ).all()
    return {r.id: (r.wa_access_token, r.wa_app_secret) for r in rows}


def add_new_key(app, monkeypatch) -> None:
    old = app.config["FIELD_ENCRYPTION_KEYS"]
    monkeypatch.setitem(app.config, "FIELD_ENCRYPTION_KEYS", [KEY2, *old])


def test_rotate_keys_re_encrypts_everything_and_prints_counts(
    app, runner, monkeypatch, secrets_under_key1
):
    before = raw_tokens()
    add_new_key(app, monkeypatch)
    result = runner.invoke(args=["woffice", "rotate-keys", "--batch-size", "1"])
    assert result.exit_code == 0, result.output
    assert "tenant.wa_access_token, tenant.wa_app_secret" in result.output
    assert "done: 2 rows, 4 values re-encrypted, 0 already current, 0 unreadable" in result.output
    assert result.output.count("2 re-encrypted") == 2  # one line per batch of one row
    assert TOKEN not in result.output

    db.session.expire_all()
    after = raw_tokens()
    for tenant_id in secrets_under_key1:
        assert after[tenant_id] != before[tenant_id]
        token, app_secret = after[tenant_id]
        assert Fernet(KEY2).decrypt(token.encode()).decode() == TOKEN
        assert Fernet(KEY2).decrypt(app_secret.encode()).decode() == APP_SECRET


def test_rotate_keys_resumes_after_an_interruption(app, runner, monkeypatch, secrets_under_key1):
    add_new_key(app, monkeypatch)
    # A first run dies after its first committed batch of one row.
    run = rotate_secrets(db.session, batch_size=1)
    first = next(run)
    db.session.commit()
    run.close()
    assert first.rotated == 2 and first.first_pk == secrets_under_key1[0]

    result = runner.invoke(args=["woffice", "rotate-keys"])
    assert result.exit_code == 0, result.output
    assert "done: 2 rows, 2 values re-encrypted, 2 already current, 0 unreadable" in result.output

    again = runner.invoke(args=["woffice", "rotate-keys"])
    assert again.exit_code == 0, again.output
    assert "0 values re-encrypted, 4 already current" in again.output

    # Every secret now opens with the new key alone: the old one can be retired.
    monkeypatch.setitem(app.config, "FIELD_ENCRYPTION_KEYS", [KEY2])
    db.session.expire_all()
    from app.models import Tenant

    for tenant_id in secrets_under_key1:
        tenant = db.session.get(Tenant, tenant_id)
        assert (tenant.wa_access_token, tenant.wa_app_secret) == (TOKEN, APP_SECRET)


def test_rotate_keys_reports_unreadable_values_and_exits_1(
    app, runner, monkeypatch, secrets_under_key1
):
    lost = Fernet(Fernet.generate_key()).encrypt(b"lost").decode()
    victim = secrets_under_key1[1]
    db.session.execute(
        text("UPDATE tenant SET wa_access_token = :v WHERE id = :id"), {"v": lost, "id": victim}
    )
    db.session.commit()
    add_new_key(app, monkeypatch)
    result = runner.invoke(args=["woffice", "rotate-keys"])
    assert result.exit_code == 1
    assert "3 values re-encrypted, 0 already current, 1 unreadable" in result.stdout
    assert f"cannot decrypt tenant.wa_access_token of id {victim} with any key" in result.stderr
    assert lost not in result.output


def test_rotate_keys_with_malformed_keys_explains_and_changes_nothing(
    app, runner, monkeypatch, secrets_under_key1
):
    before = raw_tokens()
    monkeypatch.setitem(app.config, "FIELD_ENCRYPTION_KEYS", ["not-a-fernet-key"])
    result = runner.invoke(args=["woffice", "rotate-keys"])
    assert result.exit_code == 1
    assert "FIELD_ENCRYPTION_KEYS entry 1 is not a Fernet key" in result.output
    assert "not-a-fernet-key" not in result.output
    db.session.expire_all()
    assert raw_tokens() == before


def test_rotate_keys_refuses_a_zero_batch_size(runner):
    result = runner.invoke(args=["woffice", "rotate-keys", "--batch-size", "0"])
    assert result.exit_code == 2
    assert "--batch-size" in result.output
