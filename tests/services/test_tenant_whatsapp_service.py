"""A tenant's WhatsApp Cloud API settings: validation and secret updates."""

from __future__ import annotations

import pytest

from app.extensions import db
from app.services import tenants
from app.services.exceptions import TenantValidationError

TOKEN = "EAAGtestAccessToken0123456789abcdefXYZ1a2B"


@pytest.mark.parametrize(("raw", "mps"), [("1", 1), (" 80 ", 80), (1000, 1000), ("250", 250)])
def test_messaging_limit_within_range(raw, mps):
    assert tenants.validate_messaging_limit(raw) == mps


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("0", "between 1 and 1000"),
        ("1001", "between 1 and 1000"),
        ("-5", "between 1 and 1000"),
        ("", "whole number"),
        (None, "whole number"),
        ("80.5", "whole number"),
        ("fast", "whole number"),
    ],
)
def test_messaging_limit_out_of_range_or_not_a_number(raw, message):
    with pytest.raises(TenantValidationError, match=message) as caught:
        tenants.validate_messaging_limit(raw)
    assert caught.value.field == "wa_messaging_limit_mps"


def test_graph_ids_are_digits_and_optional():
    assert tenants.normalize_graph_id(" 106540352242922 ", "wa_phone_number_id") == (
        "106540352242922"
    )
    assert tenants.normalize_graph_id("", "wa_phone_number_id") is None
    assert tenants.normalize_graph_id(None, "wa_business_account_id") is None
    for bad in ("+91 98765 43210", "abc123456", "1234"):
        with pytest.raises(TenantValidationError, match="numeric id"):
            tenants.normalize_graph_id(bad, "wa_phone_number_id")


def test_display_number_is_stored_in_e164():
    assert tenants.normalize_wa_display_number("098765 43210") == "+919876543210"
    assert tenants.normalize_wa_display_number("  ") is None
    with pytest.raises(TenantValidationError, match="not a valid phone number") as caught:
        tenants.normalize_wa_display_number("12345")
    assert caught.value.field == "wa_display_number"


def test_secrets_are_stripped_and_checked():
    assert tenants.normalize_secret("wa_access_token", f"  {TOKEN}\n") == TOKEN
    assert tenants.normalize_secret("wa_access_token", "   ") is None
    with pytest.raises(TenantValidationError, match="spaces or line breaks"):
        tenants.normalize_secret("wa_access_token", "EAAG token with spaces 0123456789")
    with pytest.raises(TenantValidationError, match="16 to 256 characters"):
        tenants.normalize_secret("wa_app_secret", "short")


def test_update_secret_replaces_keeps_and_clears(tenant_a):
    assert tenants.update_whatsapp_secret(tenant_a, "wa_access_token", TOKEN) is True
    db.session.flush()
    assert tenant_a.wa_access_token == TOKEN

    assert tenants.update_whatsapp_secret(tenant_a, "wa_access_token", "") is False
    assert tenants.update_whatsapp_secret(tenant_a, "wa_access_token", None) is False
    assert tenant_a.wa_access_token == TOKEN

    assert tenants.update_whatsapp_secret(tenant_a, "wa_access_token", "", clear=True) is True
    db.session.flush()
    assert tenant_a.wa_access_token is None


def test_a_new_value_and_clear_together_are_refused(tenant_a):
    with pytest.raises(TenantValidationError, match="not both"):
        tenants.update_whatsapp_secret(tenant_a, "wa_app_secret", "x" * 32, clear=True)


def test_only_declared_secrets_can_be_updated(tenant_a):
    with pytest.raises(TenantValidationError, match="not a tenant secret"):
        tenants.update_whatsapp_secret(tenant_a, "name", "Renamed")


def test_phone_number_id_belongs_to_one_tenant(tenant_a, tenant_b):
    tenant_a.wa_phone_number_id = "106540352242922"
    db.session.flush()
    assert tenants.phone_number_id_taken(db.session, "106540352242922")
    assert tenants.phone_number_id_taken(db.session, "106540352242922", exclude_id=tenant_b.id)
    assert not tenants.phone_number_id_taken(db.session, "106540352242922", exclude_id=tenant_a.id)


def test_new_tenants_default_to_80_messages_per_second(tenant_a):
    assert tenant_a.wa_messaging_limit_mps == 80
