"""UploadLimits: uploads are limited by extension, size and sniffed content (P12)."""

from __future__ import annotations

import io

import pytest
from flask_wtf.file import FileField, MultipleFileField
from werkzeug.datastructures import FileStorage, MultiDict
from wtforms import FileField as PlainFileField
from wtforms import Form

from app.views._forms import UploadLimits

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + b"\x00" * 20
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + b"\x00" * 20
PDF = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n"
CSV = "name,city\nRohan,Bengaluru\nŚrī,Pune\n".encode()


def _upload(content: bytes, filename: str) -> FileStorage:
    return FileStorage(stream=io.BytesIO(content), filename=filename)


def _validate(limits: UploadLimits, *uploads: FileStorage, multiple: bool = False):
    """Validate ``uploads`` in a one-field form; return (ok, errors, form)."""
    field_class = MultipleFileField if multiple else FileField

    class UploadForm(Form):
        document = field_class("Document", validators=[limits])

    form = UploadForm(MultiDict([("document", u) for u in uploads]))
    ok = form.validate()
    return ok, form.document.errors, form


CSV_ONLY = UploadLimits(extensions={"csv"}, max_bytes=1024)
IMAGES_AND_PDF = UploadLimits(extensions={"png", ".JPG", "jpeg", "pdf"}, max_bytes=1024)


@pytest.mark.parametrize(
    ("limits", "content", "filename"),
    [
        (CSV_ONLY, CSV, "contacts.csv"),
        (CSV_ONLY, b"\xef\xbb\xbf" + CSV, "Excel-export.CSV"),  # UTF-8 BOM, upper case
        (IMAGES_AND_PDF, PNG, "logo.png"),
        (IMAGES_AND_PDF, JPEG, "photo.jpg"),
        (IMAGES_AND_PDF, JPEG, "photo.jpeg"),
        (IMAGES_AND_PDF, PDF, "invoice.pdf"),
    ],
)
def test_allowed_files_pass_and_the_stream_is_rewound(limits, content, filename):
    ok, errors, form = _validate(limits, _upload(content, filename))
    assert ok, errors
    assert errors == []
    assert form.document.data.read() == content  # the view can read the whole file


@pytest.mark.parametrize(
    ("limits", "content", "filename", "message"),
    [
        (CSV_ONLY, CSV, "contacts.xlsx", "contacts.xlsx: only CSV files are allowed."),
        (CSV_ONLY, CSV, "contacts", "contacts: only CSV files are allowed."),
        (
            IMAGES_AND_PDF,
            PNG,
            "logo.gif",
            "logo.gif: only JPEG, JPG, PDF, PNG files are allowed.",
        ),
        (
            CSV_ONLY,
            b"name,city\x00\nRohan,Pune\n",
            "contacts.csv",
            "contacts.csv is not UTF-8 text: its content does not match its extension.",
        ),
        (
            CSV_ONLY,
            "name,city\nŚrī,Pune\n".encode("utf-16"),
            "contacts.csv",
            "contacts.csv is not UTF-8 text: its content does not match its extension.",
        ),
        (
            CSV_ONLY,
            "naïve,café\n".encode("latin-1"),
            "contacts.csv",
            "contacts.csv is not UTF-8 text: its content does not match its extension.",
        ),
        (
            CSV_ONLY,
            PNG,
            "renamed.csv",
            "renamed.csv is not UTF-8 text: its content does not match its extension.",
        ),
        (
            IMAGES_AND_PDF,
            PDF,
            "logo.png",
            "logo.png is not a PNG file: its content does not match its extension.",
        ),
        (
            IMAGES_AND_PDF,
            b"<html><script>alert(1)</script>",
            "photo.jpg",
            "photo.jpg is not a JPG file: its content does not match its extension.",
        ),
        (
            IMAGES_AND_PDF,
            PNG,
            "invoice.pdf",
            "invoice.pdf is not a PDF file: its content does not match its extension.",
        ),
        (CSV_ONLY, b"", "empty.csv", "empty.csv is empty."),
        (
            CSV_ONLY,
            b"a,b\n" * 300,
            "big.csv",
            "big.csv is larger than 1 KiB; choose a smaller file.",
        ),
    ],
)
def test_refused_files_get_a_message_naming_the_file(limits, content, filename, message):
    ok, errors, _form = _validate(limits, _upload(content, filename))
    assert not ok
    assert errors == [message]


def test_the_size_limit_is_exact():
    limits = UploadLimits(extensions={"csv"}, max_bytes=10)
    assert _validate(limits, _upload(b"a" * 10, "ten.csv"))[0]
    ok, errors, _form = _validate(limits, _upload(b"a" * 11, "eleven.csv"))
    assert not ok
    assert errors == ["eleven.csv is larger than 10 bytes; choose a smaller file."]


def test_no_file_chosen_passes_so_optional_fields_work():
    ok, errors, form = _validate(CSV_ONLY, _upload(b"", ""))
    assert ok, errors
    assert form.document.data is None


def test_every_file_of_a_multiple_field_is_checked():
    ok, errors, _form = _validate(
        IMAGES_AND_PDF,
        _upload(PNG, "a.png"),
        _upload(b"MZ\x90\x00", "b.pdf"),
        multiple=True,
    )
    assert not ok
    assert errors == ["b.pdf is not a PDF file: its content does not match its extension."]
    ok, errors, _form = _validate(
        IMAGES_AND_PDF, _upload(PNG, "a.png"), _upload(PDF, "b.pdf"), multiple=True
    )
    assert ok, errors


def test_a_bare_filename_instead_of_an_upload_is_refused():
    """A plain WTForms FileField only gets the name: nothing to check, so refuse it."""
    limits = UploadLimits(extensions={"csv"}, max_bytes=1024)

    class Plain(Form):
        document = PlainFileField("Document", validators=[limits])

    form = Plain(MultiDict([("document", "contacts.csv")]))
    assert not form.validate()
    assert form.document.errors == ["Choose a file to upload."]


@pytest.mark.parametrize(
    ("extensions", "max_bytes"),
    [({"exe"}, 10), ({"csv", "docx"}, 10), (set(), 10), ({"csv"}, 0)],
)
def test_limits_without_a_content_check_are_a_programming_error(extensions, max_bytes):
    with pytest.raises(ValueError):
        UploadLimits(extensions=extensions, max_bytes=max_bytes)
