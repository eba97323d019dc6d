"""Presentation helpers shared by templates and FAB list formatters."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

IST = ZoneInfo("Asia/Kolkata")
UTC = ZoneInfo("UTC")


def ist(value: datetime | None, fmt: str = "%d %b %Y, %H:%M") -> str:
    """Format a naive-UTC timestamp in Asia/Kolkata ("27 Nov 2026, 21:22 IST")."""
    if value is None:
        return ""
    return value.replace(tzinfo=UTC).astimezone(IST).strftime(fmt) + " IST"


def yes_no(value: object) -> str:
    return "Yes" if value else "No"


USER_FORMATTERS = {
    "current_login_at": ist,
    "last_login_at": ist,
    "created_on": ist,
    "changed_on": ist,
    "analytics_objection_at": ist,  # P20: an objection leaves them out of analytics
    "active": yes_no,
    "two_factor_enabled": yes_no,
}
