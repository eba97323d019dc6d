"""The team over the REST API, read-only (issue 8: the Team permission covers its API).

Invitations, role changes and deactivation stay on the Team screen, where the grant
rules and the last-admin rule are explained to the person making the change.
"""

from __future__ import annotations

from flask_appbuilder.models.sqla.interface import SQLAInterface

from app.models.user import AppUser
from app.views.api_base import WofficeModelRestApi


class TeamApi(WofficeModelRestApi):
    """Members of the caller's tenant (platform staff see every user)."""

    datamodel = SQLAInterface(AppUser)
    resource_name = "team"
    class_permission_name = "TeamApi"
    include_route_methods = {"get", "get_list", "info"}
    base_order = ("id", "asc")
    list_columns = show_columns = [
        "id",
        "first_name",
        "last_name",
        "email",
        "active",
        "roles.id",
        "roles.name",
        "last_login",
    ]
    search_columns = ["first_name", "last_name", "email", "active"]
    order_columns = ["id", "first_name", "last_name", "email"]
