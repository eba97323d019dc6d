"""Compliance > Compliance holidays: days off besides Sundays and national holidays.

A holiday added here counts for deadlines computed from then on (new requests,
extensions) and for the days-left shown on the worklist; a deadline already set is kept,
as the requester was told it.
"""

from __future__ import annotations

from flask_appbuilder import ModelView
from flask_appbuilder.models.sqla.interface import SQLAInterface

from app.models.privacy import ComplianceHoliday
from app.services import business_days


def _weekday(day) -> str:
    return f"{day:%a %d %b %Y}" if day else ""


class ComplianceHolidayView(ModelView):
    """List, add and delete Compliance holidays (the ORM hook audits each change)."""

    datamodel = SQLAInterface(ComplianceHoliday)
    class_permission_name = "PrivacyHolidays"
    route_base = "/compliance-holidays"
    list_title = "Compliance holidays"
    add_title = "Add a Compliance holiday"
    base_permissions = ["can_list", "can_add", "can_delete"]
    base_order = ("day", "desc")
    list_columns = ["day", "name"]
    add_columns = ["day", "name"]
    label_columns = {"day": "Day", "name": "Name"}
    formatters_columns = {"day": _weekday}
    description_columns = {
        "day": "Sundays and India's national holidays are already excluded.",
    }

    def pre_add(self, item: ComplianceHoliday) -> None:
        item.name = (item.name or "").strip()
        reason = business_days.holiday_name(item.day) if item.day else None
        if reason == "Sunday":
            raise ValueError("Sundays are never business days already.")
