"""FAB views, one module per domain; `register_views` adds them all to AppBuilder."""

from __future__ import annotations

from flask_appbuilder import AppBuilder


def register_views(appbuilder: AppBuilder) -> None:
    """Add every Woffice view and menu entry (called once by the factory)."""
    from app.views.account import MyAccountView
    from app.views.analytics import AnalyticsView, UsageView
    from app.views.api import API_CLASSES
    from app.views.api_keys import ApiKeysView
    from app.views.api_team import TeamApi
    from app.views.audit import AuditEventApi, AuditEventView, LoginActivityView
    from app.views.billing import PaymentModelView, PlanModelView, SubscriptionModelView
    from app.views.billing_events import BillingEventModelView, Gstr1ExportView
    from app.views.billing_invoices import (
        CreditNoteModelView,
        InvoiceModelView,
        TenantInvoiceModelView,
    )
    from app.views.campaign import CampaignModelView
    from app.views.contact import ContactModelView, TagModelView
    from app.views.contact_import import ContactImportView
    from app.views.conversation import ConversationModelView, MessageModelView
    from app.views.queues import QueuesView
    from app.views.team import TeamModelView
    from app.views.template import TemplateModelView
    from app.views.tenant import TenantsView
    from app.views.tenant_roles import TenantRolesView

    appbuilder.add_view(
        TenantsView,
        "Tenants",
        icon="fa-building",
        category="Platform",
        category_icon="fa-server",
    )
    appbuilder.add_view(UsageView, "Usage", icon="fa-bar-chart", category="Platform")
    appbuilder.add_view(QueuesView, "Queues", icon="fa-tasks", category="Platform")
    appbuilder.add_view(
        TeamModelView,
        "Team",
        icon="fa-users",
        category="Business",
        category_icon="fa-briefcase",
    )
    appbuilder.add_view(
        TenantRolesView, "TenantRoles", label="Roles", icon="fa-id-badge", category="Business"
    )
    appbuilder.add_view(
        ApiKeysView, "ApiKeys", label="API keys", icon="fa-key", category="Business"
    )
    appbuilder.add_view(
        ConversationModelView, "Conversations", icon="fa-comments", category="Business"
    )
    appbuilder.add_view(MessageModelView, "Messages", icon="fa-envelope", category="Business")
    appbuilder.add_view(ContactModelView, "Contacts", icon="fa-address-book", category="Business")
    appbuilder.add_view(TagModelView, "Tags", icon="fa-tags", category="Business")
    appbuilder.add_view(ContactImportView, "Imports", icon="fa-upload", category="Business")
    appbuilder.add_view(TemplateModelView, "Templates", icon="fa-file-text-o", category="Business")
    appbuilder.add_view(CampaignModelView, "Campaigns", icon="fa-bullhorn", category="Business")
    appbuilder.add_view(AnalyticsView, "Analytics", icon="fa-bar-chart", category="Business")
    appbuilder.add_view(
        TenantInvoiceModelView,
        "TenantInvoices",
        label="Invoices",
        icon="fa-file-text",
        category="Business",
    )
    # Billing staff (issue 6). Menu names are the permission names; labels are shown.
    appbuilder.add_view(
        InvoiceModelView,
        "Invoices",
        icon="fa-file-text",
        category="Billing",
        category_icon="fa-inr",
    )
    appbuilder.add_view(
        CreditNoteModelView, "CreditNotes", label="Credit notes", icon="fa-undo", category="Billing"
    )
    appbuilder.add_view(PaymentModelView, "Payments", icon="fa-credit-card", category="Billing")
    appbuilder.add_view(
        SubscriptionModelView, "Subscriptions", icon="fa-refresh", category="Billing"
    )
    appbuilder.add_view(PlanModelView, "Plans", icon="fa-tags", category="Billing")
    appbuilder.add_view(
        BillingEventModelView,
        "BillingEvents",
        label="Webhook inbox",
        icon="fa-inbox",
        category="Billing",
    )
    appbuilder.add_view(
        Gstr1ExportView,
        "GSTR1Export",
        label="GSTR-1 export",
        icon="fa-download",
        category="Billing",
    )
    appbuilder.add_view(
        AuditEventView,
        "Audit trail",
        icon="fa-list-alt",
        category="Audit",
        category_icon="fa-shield",
    )
    appbuilder.add_view(LoginActivityView, "Login activity", icon="fa-sign-in", category="Audit")
    _register_privacy_views(appbuilder)
    appbuilder.add_api(AuditEventApi)
    for api in API_CLASSES:
        appbuilder.add_api(api)
    appbuilder.add_api(TeamApi)
    from app.views import api_billing, api_campaigns, api_privacy, api_tenants

    for module in (api_campaigns, api_billing, api_privacy, api_tenants):
        for api in module.API_CLASSES:
            appbuilder.add_api(api)
    appbuilder.add_view_no_menu(MyAccountView)
    _register_openapi_views(appbuilder)


def _register_openapi_views(appbuilder: AppBuilder) -> None:
    """/api/v1/_openapi, describing the caller's APIs only, and FAB's Swagger page."""
    from flask_appbuilder.api.manager import SwaggerView

    from app.views.api_openapi import OpenApi

    appbuilder.add_api(OpenApi)
    appbuilder.add_view_no_menu(SwaggerView)


def _register_privacy_views(appbuilder: AppBuilder) -> None:
    """Compliance > Privacy requests and Compliance holidays (issue 7)."""
    from app.views.privacy import PrivacyRequestsView
    from app.views.privacy_holidays import ComplianceHolidayView

    appbuilder.add_view(
        PrivacyRequestsView,
        "PrivacyRequests",
        label="Privacy requests",
        icon="fa-user-secret",
        category="Compliance",
        category_icon="fa-balance-scale",
    )
    appbuilder.add_view(
        ComplianceHolidayView,
        "PrivacyHolidays",
        label="Compliance holidays",
        icon="fa-calendar",
        category="Compliance",
    )
    from app.views.privacy_downloads import register as register_privacy_downloads

    register_privacy_downloads(appbuilder)  # issue 7: access/portability downloads
    from app.views.registers import register_register_views

    register_register_views(appbuilder)  # issue 7: policy, sub-processors, incidents
