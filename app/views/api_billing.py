"""Plans, invoices, credit notes and payments over the REST API, read-only (issue 9).

Read-only on purpose: plans are edited on the Plans screen, invoices and credit notes
are issued only from Dodo payments and refunds (app/services/invoices.py), and a GST
document once issued is never edited. The PDFs stay on the screens (their download
links are audited); the JSON carries the document's particulars and ``pdf_sha256``.

Who sees what (config.WOFFICE_ROLES):

* Billing staff and platform admins (unscoped): every tenant's documents, through
  `PlanApi`, `InvoiceApi`, `CreditNoteApi` and `PaymentApi`.
* Tenant admins: their own tenant's invoices and credit notes through
  `TenantInvoiceApi` (tenant-scoped like every API; another tenant's answers 404).
"""

from __future__ import annotations

from typing import Any

from flask_appbuilder.models.filters import BaseFilter
from flask_appbuilder.models.sqla.interface import SQLAInterface
from sqlalchemy import false

from app.models.billing import DocumentType, Invoice, Payment, Plan
from app.tenancy import FilterTenantScope, current_tenant_id
from app.views.api_base import WofficeModelRestApi

READ_ONLY = {"get", "get_list", "info"}


class FilterDocType(BaseFilter):
    """Base filter: one document type (the value is a `DocumentType`)."""

    name = "Document type"
    arg_name = "doc_type_is"

    def apply(self, query: Any, value: Any) -> Any:
        return query.filter(Invoice.doc_type == DocumentType(value))


class FilterPlatformOnly(BaseFilter):
    """Base filter for operator-owned rows (plans): none for a tenant-scoped caller."""

    name = "Platform only"
    arg_name = "platform_only"

    def apply(self, query: Any, value: Any) -> Any:
        return query if current_tenant_id() is None else query.filter(false())


class PlanApi(WofficeModelRestApi):
    """The operator's plans (prices in paise, GST rate in basis points); read-only."""

    datamodel = SQLAInterface(Plan)
    resource_name = "plan"
    class_permission_name = "PlanApi"
    include_route_methods = READ_ONLY
    base_order = ("name", "asc")
    list_columns = [
        "id",
        "name",
        "price_paise",
        "billing_period",
        "sac_code",
        "gst_rate_bp",
        "dodo_product_id",
        "active",
    ]
    show_columns = [*list_columns, "description", "created_at", "updated_at"]
    search_columns = ["name", "billing_period", "sac_code", "active"]
    order_columns = ["id", "name", "price_paise", "active"]

    def _scope_tenant(self) -> None:
        # Plans have no tenant: the tenant filter would have no column to compare, so
        # a tenant-scoped caller (who never holds PlanApi) gets no rows instead.
        super()._scope_tenant()
        self.base_filters = [f for f in self.base_filters if f[1] is not FilterTenantScope] + [
            ["id", FilterPlatformOnly, None]
        ]


# Every Rule 46 / Rule 53 particular the screens show; never the PDF bytes.
DOCUMENT_LIST_COLUMNS = [
    "id",
    "doc_type",
    "number",
    "fy",
    "issue_date",
    "buyer_gstin",
    "place_of_supply",
    "regime",
    "taxable_total",
    "cgst_total",
    "sgst_total",
    "utgst_total",
    "igst_total",
    "round_off",
    "grand_total",
    "pdf_status",
]
DOCUMENT_SHOW_COLUMNS = [
    *DOCUMENT_LIST_COLUMNS,
    "issued_at",
    "original_invoice.id",
    "original_invoice.number",
    "supplier",
    "buyer",
    "reverse_charge",
    "lines",
    "amount_in_words",
    "note",
    "pdf_sha256",
    "emailed_at",
]
DOCUMENT_SEARCH_COLUMNS = ["number", "fy", "issue_date", "buyer_gstin", "place_of_supply"]
DOCUMENT_ORDER_COLUMNS = ["id", "number", "issue_date", "grand_total"]


class InvoiceApi(WofficeModelRestApi):
    """GST tax invoices of every tenant, for billing staff (read-only)."""

    datamodel = SQLAInterface(Invoice)
    resource_name = "invoice"
    class_permission_name = "InvoiceApi"
    include_route_methods = READ_ONLY
    base_filters = [["doc_type", FilterDocType, DocumentType.invoice.value]]
    base_order = ("id", "desc")
    list_columns = [*DOCUMENT_LIST_COLUMNS, "tenant.id", "tax_mismatch"]
    show_columns = [
        *DOCUMENT_SHOW_COLUMNS,
        "tenant.id",
        "tax_mismatch",
        "dodo_tax_amount",
        "payment.id",
        "retain_until",
    ]
    search_columns = [*DOCUMENT_SEARCH_COLUMNS, "tenant", "tax_mismatch"]
    order_columns = DOCUMENT_ORDER_COLUMNS


class CreditNoteApi(InvoiceApi):
    """GST credit notes (refunds) of every tenant, for billing staff (read-only)."""

    resource_name = "credit_note"
    class_permission_name = "CreditNoteApi"
    base_filters = [["doc_type", FilterDocType, DocumentType.credit_note.value]]


class TenantInvoiceApi(WofficeModelRestApi):
    """A tenant admin's own invoices and credit notes (read-only; tenant-scoped)."""

    datamodel = SQLAInterface(Invoice)
    resource_name = "my_invoice"
    class_permission_name = "TenantInvoiceApi"
    include_route_methods = READ_ONLY
    base_order = ("id", "desc")
    list_columns = DOCUMENT_LIST_COLUMNS
    show_columns = DOCUMENT_SHOW_COLUMNS
    search_columns = ["doc_type", *DOCUMENT_SEARCH_COLUMNS]
    order_columns = DOCUMENT_ORDER_COLUMNS


class PaymentApi(WofficeModelRestApi):
    """Dodo payments (the allow-listed fields the Payments screen shows); read-only."""

    datamodel = SQLAInterface(Payment)
    resource_name = "payment"
    class_permission_name = "PaymentApi"
    include_route_methods = READ_ONLY
    base_order = ("id", "desc")
    list_columns = [
        "id",
        "tenant.id",
        "paid_at",
        "dodo_payment_id",
        "status",
        "currency",
        "total_amount",
        "tax_amount",
        "refunded_amount",
        "payment_method_type",
    ]
    show_columns = [
        *list_columns,
        "settlement_amount",
        "settlement_currency",
        "dodo_subscription_id",
        "dodo_customer_id",
        "customer_email",
        "billing_state",
        "billing_country",
        "received_at",
        "retain_until",
    ]
    search_columns = ["tenant", "status", "paid_at", "dodo_payment_id", "dodo_subscription_id"]
    order_columns = ["id", "paid_at", "status", "total_amount"]


API_CLASSES = (PlanApi, InvoiceApi, CreditNoteApi, TenantInvoiceApi, PaymentApi)
