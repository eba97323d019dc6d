"""GST invoices and credit notes: billing staff's lists and the tenant's own (issue 6).

Three views over `Invoice`, all tenant-scoped through `TenantModelView` (billing staff
run unscoped and see every tenant; a tenant admin sees only their tenant's documents,
and another tenant's invoice or PDF answers 404):

* `InvoiceModelView` (/invoices) and `CreditNoteModelView` (/credit-notes): lists with
  the accountant's filters (financial year, month, buyer state, tenant, B2B/B2C, tax
  mismatch), a show page with every Rule 46 / Rule 53 particular, the PDF inline and as
  a download, and "render again" for a PDF that is pending or failed.
* `TenantInvoiceModelView` (/my-invoices): a tenant admin's invoices and credit notes.
"""

from __future__ import annotations

from typing import Any

from flask import Response, abort, flash, redirect, request, url_for
from flask_appbuilder import expose
from flask_appbuilder.models.filters import BaseFilter
from flask_appbuilder.models.sqla.filters import FilterGreater, FilterSmaller
from flask_appbuilder.models.sqla.interface import SQLAInterface
from flask_appbuilder.security.decorators import has_access
from flask_wtf import FlaskForm
from sqlalchemy import false, select

from app.extensions import db
from app.jobs.billing import schedule_pdf
from app.models.billing import DocumentType, Invoice, PdfStatus
from app.services import audit, gst
from app.services.exceptions import ValidationError
from app.services.gstr1 import month_bounds
from app.tenancy import TenantModelView
from app.views._format import ist, yes_no
from app.views.billing import inr, percent

DOC_LABELS = {DocumentType.invoice: "Tax invoice", DocumentType.credit_note: "Credit note"}
_TRUE = {"y", "yes", "1", "true", "on"}


# ----------------------------------------------------------------------------- filters


class FilterDocType(BaseFilter):
    """Base filter: one document type (the value is a `DocumentType`)."""

    name = "Document type"

    def apply(self, query: Any, value: Any) -> Any:
        return query.filter(Invoice.doc_type == DocumentType(value))


class FilterIssueMonth(BaseFilter):
    """Issued in a month, typed YYYY-MM (issue dates are IST dates)."""

    name = "In month (YYYY-MM)"

    def apply(self, query: Any, value: Any) -> Any:
        try:
            start, end = month_bounds(str(value).strip())
        except ValidationError:
            return query.filter(false())
        return query.filter(Invoice.issue_date >= start, Invoice.issue_date < end)


class FilterFinancialYear(BaseFilter):
    """A financial year typed "2026-27" or "26-27"."""

    name = "Is (e.g. 2026-27)"

    def apply(self, query: Any, value: Any) -> Any:
        text = str(value).strip()
        if len(text) == 5 and text[2] == "-":  # "26-27"
            text = f"20{text}"
        return query.filter(Invoice.fy == text)


class FilterBuyerState(BaseFilter):
    """Place of supply by state name, abbreviation or GST code ("Karnataka", "29")."""

    name = "Is (name or code)"

    def apply(self, query: Any, value: Any) -> Any:
        text = str(value).strip()
        code = "96" if text in {"96", "96-Other Country"} else gst.state_code_for(text)
        return query.filter(Invoice.place_of_supply == code) if code else query.filter(false())


class FilterBuyerKind(BaseFilter):
    """B2B (the buyer has a GSTIN) or B2C (unregistered)."""

    name = "Buyer is (B2B or B2C)"

    def apply(self, query: Any, value: Any) -> Any:
        kind = str(value).strip().lower()
        if kind == "b2b":
            return query.filter(Invoice.buyer_gstin.is_not(None))
        if kind == "b2c":
            return query.filter(Invoice.buyer_gstin.is_(None))
        return query.filter(false())


class FilterYesNo(BaseFilter):
    """A yes/no column (the search form's checkbox sends "y")."""

    name = "Is"

    def apply(self, query: Any, value: Any) -> Any:
        column = getattr(self.model, self.column_name)
        return query.filter(column.is_(str(value).strip().lower() in _TRUE))


# Replace FAB's generic filters on these columns (the URL names a filter by its index in
# the column's list: ``_flt_0_issue_date=2026-04`` is "in month").
CUSTOM_FILTERS: dict[str, list[type[BaseFilter]]] = {
    "fy": [FilterFinancialYear],
    "issue_date": [FilterIssueMonth, FilterGreater, FilterSmaller],
    "place_of_supply": [FilterBuyerState],
    "buyer_gstin": [FilterBuyerKind],
    "tax_mismatch": [FilterYesNo],
}


def _buyer_name(buyer: Any) -> str:
    return str((buyer or {}).get("legal_name") or "")


def _pos_label(code: Any) -> str:
    try:
        return gst.place_of_supply_label(str(code))
    except ValueError:
        return str(code or "")


def _pdf_status(value: Any) -> str:
    return {"pending": "Pending", "rendered": "Ready", "failed": "Failed"}.get(
        str(getattr(value, "value", value)), str(value or "")
    )


# ------------------------------------------------------------------------------- views


class _DocumentView(TenantModelView):
    """Shared by the three invoice views: filters, columns, show page, PDF."""

    datamodel = SQLAInterface(Invoice)
    doc_type: DocumentType | None = None
    base_permissions = ["can_list", "can_show"]
    method_permission_name = {"pdf": "show"}
    base_order = ("issued_at", "desc")
    page_size = 50
    list_columns = [
        "number",
        "issue_date",
        "tenant",
        "buyer",
        "buyer_gstin",
        "place_of_supply",
        "taxable_total",
        "tax_total",
        "grand_total",
        "pdf_status",
        "tax_mismatch",
    ]
    search_columns = [
        "number",
        "fy",
        "issue_date",
        "place_of_supply",
        "tenant",
        "buyer_gstin",
        "tax_mismatch",
    ]
    order_columns = ["number", "issue_date", "grand_total", "taxable_total"]
    label_columns = {
        "number": "Number",
        "issue_date": "Date",
        "fy": "Financial year",
        "buyer": "Buyer",
        "buyer_gstin": "Buyer GSTIN",
        "place_of_supply": "Buyer state (place of supply)",
        "taxable_total": "Taxable",
        "tax_total": "GST",
        "grand_total": "Total",
        "pdf_status": "PDF",
        "tax_mismatch": "Tax mismatch",
        "original_invoice": "Against invoice",
    }
    formatters_columns = {
        "issue_date": lambda d: d.strftime("%d %b %Y") if d else "",
        "buyer": _buyer_name,
        "place_of_supply": _pos_label,
        "taxable_total": inr,
        "tax_total": inr,
        "grand_total": inr,
        "pdf_status": _pdf_status,
        "tax_mismatch": lambda v: "MISMATCH" if v else "",
    }
    show_template = "woffice/billing_invoice_show.html"
    # Endpoints the show page links to (the tenant's own view overrides them).
    invoice_endpoint = "InvoiceModelView.show"
    credit_note_endpoint = "CreditNoteModelView.show"
    staff = True  # show Dodo's tax, the mismatch flag and "render again"

    def __init__(self, **kwargs: Any) -> None:
        if self.doc_type is not None:
            self.base_filters = [["doc_type", FilterDocType, self.doc_type.value]]
        super().__init__(**kwargs)
        self._replace_filters()

    def _replace_filters(self) -> None:
        """Our filters instead of FAB's generic ones, in the list and in the URL args."""
        for column, classes in CUSTOM_FILTERS.items():
            if column not in self.search_columns:
                continue
            for table in (self._filters._search_filters, self._filters._all_filters):
                table[column] = [cls(column, self.datamodel) for cls in classes]

    # ------------------------------------------------------------------- show

    @expose("/show/<pk>", methods=["GET"])
    @has_access
    def show(self, pk: Any) -> Any:
        document = self._get_or_404(pk)
        credit_notes = db.session.scalars(
            select(Invoice)
            .where(Invoice.original_invoice_id == document.id)
            .order_by(Invoice.issued_at)
        ).all()
        return self.render_template(
            self.show_template,
            pk=document.id,
            title=f"{DOC_LABELS[document.doc_type]} {document.number}",
            doc=document,
            doc_label=DOC_LABELS[document.doc_type],
            credit_notes=credit_notes,
            pos_label=_pos_label(document.place_of_supply),
            inr=inr,
            percent=percent,
            ist=ist,
            yes_no=yes_no,
            staff=self.staff,
            endpoint=self.__class__.__name__,
            perm_name=self.class_permission_name,
            invoice_endpoint=self.invoice_endpoint,
            credit_note_endpoint=self.credit_note_endpoint,
            form=FlaskForm(),
        )

    # -------------------------------------------------------------------- PDF

    @expose("/pdf/<pk>", methods=["GET"])
    @has_access
    def pdf(self, pk: Any) -> Response:
        """The stored PDF: inline (the show page's preview) or ``?download=1``."""
        document = self._get_or_404(pk)
        if document.pdf_status != PdfStatus.rendered or not document.pdf:
            abort(
                404,
                description=(
                    f"The PDF of {document.number} is not ready "
                    f"({_pdf_status(document.pdf_status).lower()}). "
                    "Open the document's page to see why or to render it again."
                ),
            )
        filename = f"{document.number.replace('/', '-')}.pdf"
        download = request.args.get("download") == "1"
        disposition = "attachment" if download else "inline"
        response = Response(document.pdf, mimetype="application/pdf")
        response.headers["Content-Disposition"] = f"{disposition}; filename={filename}"
        response.headers["Cache-Control"] = "private, no-store"
        # The show page frames the inline PDF: same origin only (the app's default
        # headers forbid any framing).
        response.headers["X-Frame-Options"] = "SAMEORIGIN"
        response.headers["Content-Security-Policy"] = (
            "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; "
            "object-src 'self'; frame-ancestors 'self'"
        )
        return response


class InvoiceModelView(_DocumentView):
    """Billing staff: every tenant's tax invoices."""

    doc_type = DocumentType.invoice
    class_permission_name = "Invoices"
    route_base = "/invoices"
    list_title = "Tax invoices"
    show_title = "Tax invoice"
    base_permissions = ["can_list", "can_show", "can_render"]

    @expose("/render/<pk>", methods=["POST"])
    @has_access
    def render(self, pk: Any) -> Any:
        """Render the PDF again (a pending or failed one): POST with CSRF, audited."""
        document = self._get_or_404(pk)
        if not FlaskForm().validate_on_submit():
            abort(400, description="The form expired; reload the page and try again.")
        if document.pdf_status == PdfStatus.rendered:
            flash(f"The PDF of {document.number} is already rendered.", "info")
        else:
            document.pdf_status = PdfStatus.pending
            document.pdf_error = None
            schedule_pdf(document.id)
            audit.record("invoice.pdf_requested", document, number=document.number)
            db.session.commit()
            flash(f"The PDF of {document.number} is being rendered; reload in a moment.", "info")
        return redirect(url_for(f"{self.__class__.__name__}.show", pk=document.id))


class CreditNoteModelView(InvoiceModelView):
    """Billing staff: every tenant's credit notes, each against its invoice."""

    doc_type = DocumentType.credit_note
    class_permission_name = "CreditNotes"
    route_base = "/credit-notes"
    list_title = "Credit notes"
    show_title = "Credit note"
    list_columns = [
        "number",
        "issue_date",
        "original_invoice",
        "tenant",
        "buyer",
        "buyer_gstin",
        "place_of_supply",
        "taxable_total",
        "tax_total",
        "grand_total",
        "pdf_status",
    ]


class TenantInvoiceModelView(_DocumentView):
    """A tenant admin's own invoices and credit notes (another tenant's: 404)."""

    class_permission_name = "TenantInvoices"
    route_base = "/my-invoices"
    list_title = "Invoices"
    show_title = "Invoice"
    list_columns = [
        "number",
        "doc_type",
        "issue_date",
        "taxable_total",
        "tax_total",
        "grand_total",
        "pdf_status",
    ]
    search_columns = ["number", "fy", "issue_date", "doc_type"]
    label_columns = {**_DocumentView.label_columns, "doc_type": "Document"}
    formatters_columns = {
        **_DocumentView.formatters_columns,
        "doc_type": lambda v: DOC_LABELS.get(v, str(v or "")),
    }
    invoice_endpoint = "TenantInvoiceModelView.show"
    credit_note_endpoint = "TenantInvoiceModelView.show"
    staff = False
