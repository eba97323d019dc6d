"""Helpers shared by the compliance register views: IST form fields, the show page."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from flask import abort
from flask_appbuilder import expose
from flask_appbuilder.security.decorators import has_access
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


class ShowWithActions:
    """FAB's show page (fields and history) plus the row, a CSRF form for the page's
    action buttons and whatever `show_context` adds; put before the ModelView base."""

    def show_title_for(self, row: Any) -> str:
        return self.show_title  # type: ignore[attr-defined]

    def show_context(self, row: Any) -> dict[str, Any]:
        return {}

    @expose("/show/<pk>", methods=["GET"])
    @has_access
    def show(self, pk: Any) -> Any:
        getter = getattr(self, "_get_or_404", None)  # tenant views: 404 outside the tenant
        row = getter(pk) if getter else (self.datamodel.get(pk) or abort(404))
        return self.render_template(
            self.show_template,
            pk=row.id,
            title=self.show_title_for(row),
            widgets=self._show(row.id),
            related_views=self._related_views,
            row=row,
            form=FlaskForm(),
            **self.show_context(row),
        )
