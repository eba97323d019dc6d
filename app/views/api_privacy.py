"""Privacy requests over the REST API, read-only, for Compliance (issue 9).

Read-only on purpose: logging, extending, approving and completing a request are the
steps of the Privacy requests screen, where each is explained, checked against the
deadline rules and audited. The API lets Compliance pull the worklist into its own
tracker. Artifacts (exports, certificates) are not in the JSON: their downloads are
audited on the screen. The deletion plan and progress stay internal.

Only Compliance and platform admins hold ``PrivacyRequestApi`` (the ``Privacy.*`` rule
of config.WOFFICE_ROLES); tenant users never do.
"""

from __future__ import annotations

from flask_appbuilder.models.sqla.interface import SQLAInterface

from app.models.privacy import PrivacyRequest
from app.views.api_base import WofficeModelRestApi


class PrivacyRequestApi(WofficeModelRestApi):
    """Data-subject requests with their statutory deadlines (read-only)."""

    datamodel = SQLAInterface(PrivacyRequest)
    resource_name = "privacy_request"
    class_permission_name = "PrivacyRequestApi"
    include_route_methods = {"get", "get_list", "info"}
    base_order = ("id", "desc")
    list_columns = [
        "id",
        "request_type",
        "subject_kind",
        "tenant.id",
        "subject_label",
        "channel",
        "status",
        "received_at",
        "due_at",
        "assignee.id",
        "completed_at",
    ]
    show_columns = [
        *list_columns,
        "requester_name",
        "requester_email",
        "details",
        "original_due_at",
        "extension_reason",
        "extended_at",
        "approved_at",
        "rejection_reason",
        "resolution",
        "created_at",
        "updated_at",
    ]
    search_columns = ["request_type", "subject_kind", "status", "channel", "due_at", "received_at"]
    order_columns = ["id", "status", "received_at", "due_at"]


API_CLASSES = (PrivacyRequestApi,)
