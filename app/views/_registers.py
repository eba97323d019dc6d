"""Form helpers shared by the compliance register views (times are typed in IST)."""

from __future__ import annotations

from datetime import datetime

from flask import abort
from flask_wtf import FlaskForm
from wtforms import DateTimeLocalField
from wtforms.validators import DataRequired, Optional

from app.services.privacy_intake import ist_to_utc
from app.views._format import IST, UTC

IST_FORMAT = "%Y-%m-%dT%H:%M"


def to_ist(value: datetime | None) -> datetime | None:
    """Stored naive UTC -> naive IST for a form field."""
    return value.replace(tzinfo=UTC).astimezone(IST).replace(tzinfo=None) if value else None


def from_ist(value: datetime | None) -> datetime | None:
    """A naive IST form value -> naive UTC for storage."""
    return ist_to_utc(value) if value else None


def ist_field(
    label: str, description: str, required: bool = True, extra: tuple = ()
) -> DateTimeLocalField:
    """A date-and-time input typed in IST (``extra``: more validators)."""
    first = DataRequired(f"Enter the {label.lower()}.") if required else Optional()
    return DateTimeLocalField(
        label, format=IST_FORMAT, description=description, validators=[first, *extra]
    )


def checked_form() -> None:
    """400 unless the POST carries this session's CSRF token."""
    if not FlaskForm().validate_on_submit():
        abort(400, description="The form expired; reload the page and try again.")
