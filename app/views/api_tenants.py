"""Tenants over the REST API, read-only, for platform staff (issue 9).

Read-only on purpose: onboarding a tenant and entering its WhatsApp secrets happen on
the Tenants screen. The secrets (access token, app secret) are never in the JSON, not
even masked: the columns below are an allow-list.

Platform admins, Billing and Compliance hold ``TenantApi`` (config.WOFFICE_ROLES);
tenant users do not (and would see only their own row: the API is tenant-scoped).
"""

from __future__ import annotations

from flask_appbuilder.models.sqla.interface import SQLAInterface

from app.models.tenant import Tenant
from app.views.api_base import WofficeModelRestApi


class TenantApi(WofficeModelRestApi):
    """The operator's tenants: particulars and WhatsApp number ids (read-only)."""

    datamodel = SQLAInterface(Tenant)
    resource_name = "tenant"
    class_permission_name = "TenantApi"
    include_route_methods = {"get", "get_list", "info"}
    base_order = ("id", "asc")
    list_columns = [
        "id",
        "name",
        "slug",
        "status",
        "contact_email",
        "state_code",
        "wa_display_number",
        "created_at",
    ]
    show_columns = [
        *list_columns,
        "legal_name",
        "contact_phone",
        "billing_email",
        "gstin",
        "address_line1",
        "address_line2",
        "city",
        "postal_code",
        "wa_phone_number_id",
        "wa_business_account_id",
        "wa_messaging_limit_mps",
        "updated_at",
    ]
    search_columns = ["name", "legal_name", "slug", "status", "state_code", "gstin", "created_at"]
    order_columns = ["id", "name", "slug", "status", "created_at"]


API_CLASSES = (TenantApi,)
