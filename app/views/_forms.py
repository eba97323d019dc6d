"""WTForms glue: validators that call the services, so each rule lives once."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from werkzeug.datastructures import FileStorage
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


# ------------------------------------------------------------------------- uploads

_MAGIC = {
    "png": (b"\x89PNG\r\n\x1a\n",),
    "jpg": (b"\xff\xd8\xff",),
    "jpeg": (b"\xff\xd8\xff",),
    "pdf": (b"%PDF-",),
}
_TEXT = {"csv", "txt"}


def _human_size(size: int) -> str:
    for unit, factor in (("MiB", 1024 * 1024), ("KiB", 1024)):
        if size >= factor:
            return f"{size / factor:g} {unit}"
    return f"{size} bytes"


def _is_utf8_text(content: bytes) -> bool:
    if b"\x00" in content:
        return False
    try:
        content.decode("utf-8-sig")
    except UnicodeDecodeError:
        return False
    return True


class UploadLimits:
    """Validator for a file field: allowed extension, size, and content that matches it.

    The extension is checked against ``extensions`` and the content is sniffed, never
    trusting the browser's Content-Type: CSV/TXT must be UTF-8 text without NUL bytes;
    PNG, JPEG and PDF must start with their magic bytes. The stream is rewound for the
    view. An empty field passes (combine with ``DataRequired`` when a file is required);
    MAX_CONTENT_LENGTH still caps the whole request.
    """

    def __init__(self, extensions: set[str] | frozenset[str], max_bytes: int):
        normalised = {ext.lower().lstrip(".") for ext in extensions}
        unknown = normalised - _TEXT - set(_MAGIC)
        if not normalised or unknown:
            raise ValueError(f"no content check for extensions {sorted(unknown) or '(none)'}")
        if max_bytes <= 0:
            raise ValueError("max_bytes must be positive")
        self.extensions = frozenset(normalised)
        self.max_bytes = max_bytes

    def __call__(self, form: Form, field: Field) -> None:
        files = field.data if isinstance(field.data, list) else [field.data]
        for upload in files:
            if not upload:  # nothing chosen (Flask-WTF's FileField gives None)
                continue
            if not isinstance(upload, FileStorage):  # e.g. a bare filename: fail closed
                raise WTFormsValidationError("Choose a file to upload.")
            self.check(upload)

    def check(self, upload: FileStorage) -> None:
        """Raise a WTForms ValidationError naming what is wrong with ``upload``."""
        name = upload.filename
        ext = name.rsplit(".", 1)[-1].lower() if "." in name else ""
        if ext not in self.extensions:
            allowed = ", ".join(sorted(e.upper() for e in self.extensions))
            raise WTFormsValidationError(f"{name}: only {allowed} files are allowed.")
        stream = upload.stream
        stream.seek(0)
        content = stream.read(self.max_bytes + 1)
        stream.seek(0)
        if len(content) > self.max_bytes:
            raise WTFormsValidationError(
                f"{name} is larger than {_human_size(self.max_bytes)}; choose a smaller file."
            )
        if not content:
            raise WTFormsValidationError(f"{name} is empty.")
        if ext in _TEXT:
            ok = _is_utf8_text(content)
        else:
            ok = content.startswith(_MAGIC[ext])
        if not ok:
            kind = "UTF-8 text" if ext in _TEXT else f"a {ext.upper()} file"
            raise WTFormsValidationError(
                f"{name} is not {kind}: its content does not match its extension."
            )
