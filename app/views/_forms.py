"""WTForms glue: validators that call the services, so each rule lives once."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from wtforms import Form
from wtforms.fields import Field
from wtforms.validators import ValidationError as WTFormsValidationError

from app.services.exceptions import ValidationError


class ServiceValidator:
    """Run a service normaliser on the field; show its message, keep its result."""

    def __init__(
        self, normalise: Callable[..., Any], *, optional: bool = False, with_form: bool = False
    ):
        self.normalise = normalise
        self.optional = optional
        self.with_form = with_form

    def __call__(self, form: Form, field: Field) -> None:
        if self.optional and not (field.data or "").strip():
            field.data = None
            return
        try:
            value = (
                self.normalise(field.data, form) if self.with_form else self.normalise(field.data)
            )
        except ValidationError as exc:
            raise WTFormsValidationError(str(exc)) from exc
        field.data = value
