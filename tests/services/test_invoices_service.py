"""Issuing invoices: buyer and place of supply, tax mismatch, supplier settings (issue 6)."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from app.extensions import db
from app.models import Tenant
from app.models.billing import Payment
from app.models.mixins import utcnow
from app.services import invoices
from app.services.supplier import validate_supplier
from config import ConfigError, TestingConfig


def _tenant(slug: str, *, gstin: str | None, state: str) -> Tenant:
    tenant = Tenant(
        name=slug.title(),
        legal_name=f"{slug.title()} Traders",
        slug=slug,
        contact_email=f"accounts@{slug}.example",
        contact_phone="+919876500000",
        gstin=gstin,
        address_line1="1 Main Road",
        city="Somewhere",
        state_code=state,
        postal_code="110001",
    )
    db.session.add(tenant)
    db.session.flush()
    return tenant


def _payment(tenant: Tenant, total: int = 1_179_882, tax: int | None = 179_982) -> Payment:
    payment = Payment(
        tenant_id=tenant.id,
        dodo_payment_id=f"pay_{tenant.slug}_{total}_{tax}",
        status="succeeded",
        currency="INR",
        total_amount=total,
        tax_amount=tax,
        paid_at=utcnow(),
    )
    db.session.add(payment)
    db.session.flush()
    return payment


def test_b2c_place_of_supply_comes_from_the_billing_state_name(app):
    tenant = _tenant("b2c-delhi", gstin=None, state="29")
    invoice = invoices.issue_invoice(
        _payment(tenant), tenant, None, billing={"country": "IN", "state": "NCT of Delhi"}
    )
    # Delhi buyer, Delhi supplier: intra-state CGST 9 % + SGST 9 %.
    assert (invoice.place_of_supply, invoice.regime) == ("07", "intra")
    assert invoice.cgst_total == invoice.sgst_total == 89_991
    assert invoice.igst_total == 0
    assert invoice.buyer_gstin is None and not invoice.is_b2b


def test_b2c_without_a_billing_state_uses_the_tenant_address(app):
    tenant = _tenant("b2c-goa", gstin=None, state="30")
    invoice = invoices.issue_invoice(_payment(tenant), tenant, None, billing={"country": "IN"})
    assert (invoice.place_of_supply, invoice.regime) == ("30", "inter")


def test_b2b_place_of_supply_is_the_gstin_state_whatever_the_billing_state(app):
    tenant = _tenant("b2b-ka", gstin="29AABCA1234F1Z5", state="29")
    invoice = invoices.issue_invoice(
        _payment(tenant), tenant, None, billing={"country": "IN", "state": "Delhi"}
    )
    assert invoice.place_of_supply == "29" and invoice.igst_total == 179_982


def test_buyer_abroad_is_an_export_at_zero_rate(app):
    tenant = _tenant("abroad", gstin=None, state="07")
    invoice = invoices.issue_invoice(
        _payment(tenant, total=999_900, tax=0), tenant, None, billing={"country": "AE"}
    )
    assert (invoice.place_of_supply, invoice.regime) == ("96", "export")
    assert invoice.tax_total == 0 and invoice.grand_total == 999_900
    assert "export" in invoice.note.lower()


def test_dodo_tax_that_disagrees_with_ours_flags_the_invoice(app):
    tenant = _tenant("mismatch", gstin="29AABCA1234F1Z5", state="29")
    # 1,18,000 total with Dodo claiming 15,000 tax: taxable 1,03,000, our IGST 18,540.
    invoice = invoices.issue_invoice(
        _payment(tenant, total=11_800_000, tax=1_500_000), tenant, None
    )
    assert invoice.tax_mismatch
    assert invoice.dodo_tax_amount == 1_500_000 and invoice.igst_total == 1_854_000


def test_missing_dodo_tax_is_backed_out_of_the_total(app):
    tenant = _tenant("notax", gstin="29AABCA1234F1Z5", state="29")
    invoice = invoices.issue_invoice(_payment(tenant, total=1_180_000, tax=None), tenant, None)
    assert invoice.taxable_total == 1_000_000 and invoice.igst_total == 180_000
    assert not invoice.tax_mismatch


def test_invoice_is_issued_once_per_payment(app, tenant_a):
    payment = _payment(tenant_a)
    first = invoices.issue_invoice(payment, tenant_a, None)
    again = invoices.issue_invoice(payment, tenant_a, None)
    assert first.id == again.id
    assert db.session.scalars(select(Payment)).all()


def _supplier(**overrides):
    config = {key: getattr(TestingConfig, key) for key in dir(TestingConfig) if key.isupper()}
    config.update(overrides)
    return config


def test_demo_supplier_settings_are_valid():
    validate_supplier(_supplier())


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"SUPPLIER_GSTIN": "07AABCX1234K1ZE"}, "SUPPLIER_GSTIN"),
        ({"SUPPLIER_STATE_CODE": "27"}, "not the GSTIN's state"),
        ({"SUPPLIER_PAN": "AAAAA1111A"}, "SUPPLIER_PAN"),
        ({"SUPPLIER_SIGNATORY": ""}, "SUPPLIER_SIGNATORY is not set"),
        ({"INVOICE_SERIES_PREFIX": "INVOICES"}, "INVOICE_SERIES_PREFIX"),
    ],
)
def test_invalid_supplier_settings_refuse_to_start(overrides, message):
    with pytest.raises(ConfigError, match=message):
        validate_supplier(_supplier(**overrides))
