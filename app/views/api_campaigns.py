"""Templates, campaigns and campaign recipients over the REST API, read-only (issue 9).

Read-only on purpose: a template is created at Meta and synced, and a campaign is built
and launched on the Campaigns screen, which shows the consent-aware audience preview and
the cost before anything is sent. An API that launched campaigns without that preview
would be the easiest way to message people by mistake.

Tenant admins hold these permissions (the ``Template.*|Campaign.*`` rule of
config.WOFFICE_ROLES); agents do not. Rows are tenant-scoped by `WofficeModelRestApi`.
"""

from __future__ import annotations

from flask_appbuilder.models.sqla.interface import SQLAInterface

from app.models.campaign import Campaign, CampaignRecipient, MessageTemplate
from app.views._scale import CappedCountInterface
from app.views.api_base import WofficeModelRestApi

READ_ONLY = {"get", "get_list", "info"}


class TemplateApi(WofficeModelRestApi):
    """The tenant's WhatsApp message templates as last synced from Meta (read-only)."""

    datamodel = SQLAInterface(MessageTemplate)
    resource_name = "template"
    class_permission_name = "TemplateApi"
    include_route_methods = READ_ONLY
    base_order = ("name", "asc")
    list_columns = [
        "id",
        "name",
        "language",
        "category",
        "status",
        "parameter_format",
        "synced_at",
    ]
    show_columns = [
        *list_columns,
        "wa_template_id",
        "components",
        "rejected_reason",
        "created_at",
        "updated_at",
    ]
    search_columns = ["name", "language", "category", "status", "synced_at"]
    order_columns = ["id", "name", "language", "status", "synced_at"]


class CampaignApi(WofficeModelRestApi):
    """The tenant's campaigns with their audience rules and counts (read-only: they are
    built and launched on the Campaigns screen, after its audience preview)."""

    datamodel = SQLAInterface(Campaign)
    resource_name = "campaign"
    class_permission_name = "CampaignApi"
    include_route_methods = READ_ONLY
    base_order = ("id", "desc")
    list_columns = [
        "id",
        "name",
        "template.id",
        "template.name",
        "status",
        "scheduled_at",
        "launched_at",
        "completed_at",
        "recipient_count",
        "skipped_count",
    ]
    show_columns = [
        *list_columns,
        "parameter_mapping",
        "include_tag_ids",
        "include_mode",
        "exclude_tag_ids",
        "created_by.id",
        "created_at",
        "updated_at",
    ]
    # The creator is lazy-loaded, not joined (as ConversationApi's assignee): the
    # guarantee layer's user criterion does not survive FAB's join through an alias.
    show_select_columns = [c for c in show_columns if not c.startswith("created_by.")]
    show_select_columns.append("created_by_id")
    search_columns = ["name", "status", "template", "scheduled_at", "launched_at", "created_at"]
    order_columns = ["id", "name", "status", "scheduled_at", "launched_at", "created_at"]


class CampaignRecipientApi(WofficeModelRestApi):
    """Each recipient's delivery funnel (read-only; filter by ``campaign`` to get one
    campaign's). Counted with a cap: a campaign can have a million recipients."""

    datamodel = CappedCountInterface(CampaignRecipient)
    resource_name = "campaign_recipient"
    class_permission_name = "CampaignRecipientApi"
    include_route_methods = READ_ONLY
    base_order = ("id", "asc")
    list_columns = [
        "id",
        "campaign.id",
        "contact.id",
        "wa_id",
        "status",
        "skip_reason",
        "attempts",
        "sent_at",
        "delivered_at",
        "read_at",
        "failed_at",
        "replied_at",
    ]
    show_columns = [
        *list_columns,
        "parameters",
        "wa_message_id",
        "next_attempt_at",
        "error_code",
        "error_title",
        "created_at",
    ]
    search_columns = ["campaign", "status", "skip_reason", "sent_at", "replied_at"]
    order_columns = ["id", "status", "sent_at", "delivered_at", "read_at"]


API_CLASSES = (TemplateApi, CampaignApi, CampaignRecipientApi)
