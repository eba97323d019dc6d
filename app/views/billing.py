"""Billing screens for platform staff (issue 6): plans, subscriptions, payments.

Invoices and credit notes are in `app.views.billing_invoices`; the Dodo webhook inbox
and the accountant's GSTR-1 export in `app.views.billing_events`. Money is stored in
paise and shown Indian style ("Rs. 11,798.82", `gst.format_inr`); a plan's price is
typed in rupees.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Any

from flask import current_app, g
from flask_appbuilder import ModelView, expose
from flask_appbuilder.fieldwidgets import BS3TextFieldWidget, Select2Widget
from flask_appbuilder.models.sqla.interface import SQLAInterface
from flask_appbuilder.security.decorators import has_access
from sqlalchemy import func, select
from wtforms import SelectField, StringField

from app.extensions import db
from app.models.billing import BillingPeriod, Invoice, Payment, Plan, Subscription
from app.services import gst
from app.services.exceptions import ValidationError
from app.tenancy import TenantModelView
from app.views._format import ist, yes_no
from app.views._forms import ServiceValidator

_SAC_RE = re.compile(r"[0-9]{4,8}")
MAX_PRICE_PAISE = 10**12  # Rs. 1,000 crore: far above any plan, below BigInteger


def inr(value: int | None) -> str:
    """Paise as "Rs. 11,798.82" (blank for None)."""
    return "" if value is None else gst.format_inr(int(value), symbol=True)


def percent(rate_bp: int | None) -> str:
    """Basis points as "18%" / "2.5%"."""
    if rate_bp is None:
        return ""
    return f"{Decimal(rate_bp).scaleb(-2).normalize():f}%"


def _decimal(text: Any, what: str, field: str) -> Decimal:
    raw = str(text or "").strip().replace(",", "")
    if raw.lower().startswith("rs."):
        raw = raw[3:].strip()
    try:
        value = Decimal(raw)
    except InvalidOperation as exc:
        raise ValidationError(f"Enter the {what} as a number, e.g. 9999.00.", field) from exc
    if not value.is_finite():
        raise ValidationError(f"Enter the {what} as a number, e.g. 9999.00.", field)
    if value < 0:
        raise ValidationError(f"The {what} cannot be negative.", field)
    if value != value.quantize(Decimal("0.01")):
        raise ValidationError(f"The {what} can have at most 2 decimals (paise).", field)
    return value


def parse_price(text: Any) -> int:
    """A price typed in rupees ("9,999.50") -> paise.

    :raises ValidationError: not a number, negative, more than 2 decimals, too large.
    """
    paise = int(_decimal(text, "price", "price") * 100)
    if paise >= MAX_PRICE_PAISE:
        raise ValidationError("The price is too large.", "price")
    return paise


def parse_gst_rate(text: Any) -> int:
    """A GST rate typed in percent ("18") -> basis points (1800).

    :raises ValidationError: not a number, negative, over 28%, more than 2 decimals.
    """
    bp = int(_decimal(text, "GST rate", "gst_rate") * 100)
    if bp > 2800:
        raise ValidationError("The GST rate is at most 28 percent.", "gst_rate")
    return bp


def validate_sac(text: Any) -> str:
    """A SAC code: 4 to 8 digits (Notif. 78/2020-CT: 4 or 6 in practice).

    :raises ValidationError: otherwise.
    """
    value = str(text or "").strip()
    if not _SAC_RE.fullmatch(value):
        raise ValidationError("The SAC code is 4 to 8 digits, e.g. 998315.", "sac_code")
    return value


def _normalise_product_id(text: Any) -> str:
    value = str(text or "").strip()
    if len(value) > 64 or not re.fullmatch(r"[A-Za-z0-9_\-]+", value):
        raise ValidationError(
            "A Dodo product id is letters, digits, '_' and '-' (e.g. pdt_growth).",
            "dodo_product_id",
        )
    return value


class _Checked:
    """Validate with a service function but keep what was typed (converted on save)."""

    def __init__(self, check: Any) -> None:
        self.check = ServiceValidator(check)

    def __call__(self, form: Any, field: Any) -> None:
        typed = field.data
        self.check(form, field)
        field.data = typed


def _plan_fields() -> dict[str, Any]:
    return {
        "price": StringField(
            "Price (Rs., before GST)",
            description="In rupees, at most 2 decimals, e.g. 9999.00. Stored in paise.",
            validators=[_Checked(parse_price)],
            widget=BS3TextFieldWidget(),
            render_kw={"inputmode": "decimal"},
        ),
        "billing_period": SelectField(
            "Billing period",
            choices=[(p.value, p.value.title() + "ly") for p in BillingPeriod],
            default=BillingPeriod.month.value,
            widget=Select2Widget(),
        ),
        "sac_code": StringField(
            "SAC code",
            description="4 to 8 digits. 998315 (hosting and IT infrastructure) suits SaaS.",
            default=lambda: current_app.config["DEFAULT_SAC_CODE"],
            validators=[ServiceValidator(validate_sac)],
            widget=BS3TextFieldWidget(),
            render_kw={"inputmode": "numeric"},
        ),
        "gst_rate": StringField(
            "GST rate (%)",
            description="18 for IT services.",
            default=lambda: percent(int(current_app.config["DEFAULT_GST_RATE_BP"])).rstrip("%"),
            validators=[_Checked(parse_gst_rate)],
            widget=BS3TextFieldWidget(),
            render_kw={"inputmode": "decimal"},
        ),
    }


class PlanModelView(ModelView):  # plans belong to the operator, not to a tenant
    """Plans: price in rupees on screen, paise in the database."""

    datamodel = SQLAInterface(Plan)
    class_permission_name = "Plans"
    route_base = "/plans"
    list_title = "Plans"
    show_title = "Plan"
    add_title = "New plan"
    edit_title = "Edit plan"
    base_permissions = ["can_list", "can_show", "can_add", "can_edit", "can_delete"]
    base_order = ("name", "asc")
    list_columns = [
        "name",
        "price_paise",
        "billing_period",
        "sac_code",
        "gst_rate_bp",
        "dodo_product_id",
        "active",
    ]
    show_columns = [*list_columns, "description", "created_at", "updated_at"]
    add_columns = [
        "name",
        "description",
        "price",
        "billing_period",
        "sac_code",
        "gst_rate",
        "dodo_product_id",
        "active",
    ]
    edit_columns = add_columns
    search_columns = ["name", "billing_period", "sac_code", "dodo_product_id", "active"]
    label_columns = {
        "price_paise": "Price (before GST)",
        "gst_rate_bp": "GST rate",
        "sac_code": "SAC code",
        "dodo_product_id": "Dodo product id",
        "billing_period": "Billing period",
    }
    description_columns = {
        "dodo_product_id": "Dodo's product id: payments for it are billed on this plan.",
        "active": "Inactive plans stay on existing subscriptions and their invoices.",
    }
    formatters_columns = {
        "price_paise": inr,
        "gst_rate_bp": percent,
        "active": yes_no,
        "created_at": ist,
        "updated_at": ist,
    }
    add_form_extra_fields = _plan_fields()
    edit_form_extra_fields = _plan_fields()
    validators_columns = {
        "dodo_product_id": [ServiceValidator(_normalise_product_id, optional=True)],
    }

    def prefill_form(self, form: Any, pk: Any) -> None:
        item = self.datamodel.get(pk)
        if item is None:
            return
        form.price.data = f"{Decimal(item.price_paise).scaleb(-2):.2f}"
        form.gst_rate.data = percent(item.gst_rate_bp).rstrip("%")
        form.billing_period.data = BillingPeriod(item.billing_period).value

    def process_form(self, form: Any, is_created: bool) -> None:
        # Rupees and percent are form fields, not columns: convert them here and let
        # pre_add/pre_update write paise and basis points.
        g.plan_money = (parse_price(form.price.data), parse_gst_rate(form.gst_rate.data))
        for name in ("price", "gst_rate"):
            del form[name]

    def _apply(self, item: Plan) -> None:
        item.price_paise, item.gst_rate_bp = g.pop("plan_money")
        item.billing_period = BillingPeriod(item.billing_period)
        item.dodo_product_id = item.dodo_product_id or None

    def pre_add(self, item: Plan) -> None:
        self._apply(item)

    def pre_update(self, item: Plan) -> None:
        self._apply(item)

    def pre_delete(self, item: Plan) -> None:
        used = db.session.scalar(
            select(func.count()).select_from(Subscription).where(Subscription.plan_id == item.id)
        )
        if used:
            raise ValidationError(
                f"Plan {item.name} cannot be deleted: {used} subscription(s) use it. "
                "Untick Active instead, so no new subscription is billed on it."
            )


class SubscriptionModelView(TenantModelView):
    """Tenants' Dodo subscriptions, as the webhooks left them (read-only)."""

    datamodel = SQLAInterface(Subscription)
    class_permission_name = "Subscriptions"
    route_base = "/subscriptions"
    list_title = "Subscriptions"
    show_title = "Subscription"
    base_permissions = ["can_list", "can_show"]
    base_order = ("id", "desc")
    list_columns = [
        "tenant",
        "plan",
        "status",
        "current_period_start",
        "next_billing_date",
        "cancel_at_period_end",
    ]
    show_columns = [
        *list_columns,
        "dodo_subscription_id",
        "dodo_customer_id",
        "tax_id",
        "customer_business_name",
        "on_hold_since",
        "source_event_at",
        "created_at",
        "updated_at",
    ]
    search_columns = ["tenant", "plan", "status", "next_billing_date", "cancel_at_period_end"]
    label_columns = {
        "current_period_start": "Period from",
        "next_billing_date": "Next billing",
        "cancel_at_period_end": "Cancels at period end",
        "dodo_subscription_id": "Dodo subscription id",
        "dodo_customer_id": "Dodo customer id",
        "tax_id": "Buyer tax id (Dodo)",
        "source_event_at": "Last Dodo event",
    }
    formatters_columns = {
        "status": lambda v: str(getattr(v, "value", v) or "").replace("_", " "),
        "current_period_start": ist,
        "next_billing_date": ist,
        "on_hold_since": ist,
        "source_event_at": ist,
        "created_at": ist,
        "updated_at": ist,
        "cancel_at_period_end": yes_no,
    }


class PaymentModelView(TenantModelView):
    """Dodo payments (allow-listed fields only), each linked to its invoice."""

    datamodel = SQLAInterface(Payment)
    class_permission_name = "Payments"
    route_base = "/payments"
    list_title = "Payments"
    show_title = "Payment"
    show_template = "woffice/billing_payment_show.html"
    base_permissions = ["can_list", "can_show"]
    base_order = ("paid_at", "desc")
    list_columns = [
        "paid_at",
        "tenant",
        "dodo_payment_id",
        "status",
        "total_amount",
        "tax_amount",
        "refunded_amount",
        "payment_method_type",
    ]
    show_columns = [
        *list_columns,
        "currency",
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
    label_columns = {
        "paid_at": "Paid (IST)",
        "dodo_payment_id": "Dodo payment id",
        "total_amount": "Total",
        "tax_amount": "Tax (Dodo)",
        "refunded_amount": "Refunded",
        "payment_method_type": "Method",
        "dodo_subscription_id": "Dodo subscription id",
        "dodo_customer_id": "Dodo customer id",
        "received_at": "Received",
    }
    formatters_columns = {
        "paid_at": ist,
        "received_at": ist,
        "total_amount": inr,
        "tax_amount": inr,
        "refunded_amount": inr,
        "settlement_amount": inr,
    }

    @expose("/show/<pk>", methods=["GET"])
    @has_access
    def show(self, pk: Any) -> Any:
        payment = self._get_or_404(pk)
        invoice = db.session.scalar(select(Invoice).where(Invoice.payment_id == payment.id))
        return self.render_template(
            self.show_template,
            pk=payment.id,
            title=self.show_title,
            widgets=self._show(payment.id),
            related_views=[],
            invoice=invoice,
            inr=inr,
        )
