"""Tenant particulars: GSTIN, phone, slug, lifecycle rules."""

from __future__ import annotations

import pytest

from app.models import Tenant, TenantStatus
from app.services import tenants
from app.services.exceptions import TenantValidationError, ValidationError
from app.services.phones import normalize_phone, whatsapp_id


@pytest.mark.parametrize("raw", ["+91 98765 43210", "09876543210", "919876543210", "98765-43210"])
def test_indian_numbers_in_any_format_normalise_to_e164(raw):
    assert normalize_phone(raw) == "+919876543210"
    assert whatsapp_id(normalize_phone(raw)) == "919876543210"


@pytest.mark.parametrize("raw", ["", "12345", "+91 00000 00000", "phone"])
def test_invalid_numbers_are_refused(raw):
    with pytest.raises(ValidationError):
        normalize_phone(raw)


@pytest.mark.parametrize(
    ("gstin", "state"),
    [("27AAPFU0939F1ZV", "27"), ("29AAGCG6253J1Z8", "29"), (" 29aadcs8134m1zt ", "29")],
)
def test_valid_gstins_from_the_reference(gstin, state):
    assert tenants.normalize_gstin(gstin, state) == gstin.strip().upper()


@pytest.mark.parametrize(
    ("gstin", "message"),
    [
        ("27AAPFU0939F1ZW", "not a valid GSTIN"),  # wrong check character
        ("72AAPFU0939F1ZV", "not a valid GSTIN"),  # transposed state
        ("27AAPFU0939F1Z", "not a valid GSTIN"),  # too short
    ],
)
def test_invalid_gstins_are_refused(gstin, message):
    with pytest.raises(TenantValidationError, match=message):
        tenants.normalize_gstin(gstin, "27")


def test_gstin_must_match_the_billing_state():
    with pytest.raises(TenantValidationError, match="billing state is 29"):
        tenants.normalize_gstin("27AAPFU0939F1ZV", "29")


def test_empty_gstin_is_optional():
    assert tenants.normalize_gstin("  ", "27") is None


def test_lifecycle_moves():
    tenant = Tenant(status=TenantStatus.trial)
    tenants.change_status(tenant, TenantStatus.active)
    tenants.change_status(tenant, TenantStatus.suspended)
    tenants.change_status(tenant, TenantStatus.active)
    tenants.change_status(tenant, TenantStatus.closing)
    with pytest.raises(TenantValidationError, match="cannot become suspended"):
        tenants.change_status(tenant, TenantStatus.suspended)
    with pytest.raises(TenantValidationError, match="cannot become trial"):
        tenants.change_status(tenant, TenantStatus.trial)
