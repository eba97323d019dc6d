"""Access packages and portability exports (issue 7, P20).

`build` writes everything held about a request's subject (a user, a contact or a whole
tenant; see `app.services.access_sections`) into a ZIP: a README, then for each section
``<name>.json`` (a JSON array) and ``<name>.csv``, then ``manifest.json`` with the row
counts. `build_portability` packs the tenant's CRM contact export (the same code path as
Contacts > Export, CSV and JSON) into a ZIP.

Memory stays flat whatever the size: rows stream from a server-side cursor
(``yield_per``) into a ZIP written to a temporary file, and the file is copied into
``PrivacyArtifact.content`` in chunks (PostgreSQL appends each chunk in SQL), so the
process never holds the whole package. The artifact lives in the database, not on one
node's disk (DESIGN: scaling out), and expires after ``PRIVACY_DOWNLOAD_DAYS``.

Services never commit; the job does.
"""

from __future__ import annotations

import csv
import hashlib
import hmac
import io
import json
import shutil
import tempfile
import zipfile
from collections.abc import Iterable, Iterator
from datetime import date, datetime, timedelta
from decimal import Decimal
from enum import Enum
from typing import IO, Any

from flask import current_app
from itsdangerous import BadSignature, URLSafeSerializer
from sqlalchemy import LargeBinary, func, literal, select, update

from app.extensions import db
from app.models.contact import Contact
from app.models.mixins import utcnow
from app.models.privacy import ArtifactKind, PrivacyArtifact, PrivacyRequest, SubjectKind
from app.services.access_sections import (
    Section,
    contact_sections,
    tenant_sections,
    user_sections,
)

# The contact export's own generators (Contacts > Export), reused so that portability
# gives exactly what a tenant admin downloads. They live in the view module today.
from app.services.contact_export import export_csv, export_json
from app.services.exceptions import WofficeError
from app.services.identity import hash_identifier

BATCH = 1000  # rows per fetch from the server-side cursor
# Bytes appended to the artifact per statement: small chunks keep the client's memory
# low (psycopg2 hex-escapes each one, ~3x its size), but every append rewrites the
# stored value, so a large package uses bigger chunks (at most ~32 appends).
STORE_CHUNK = 256 * 1024
STORE_CHUNK_MAX = 4 * 1024 * 1024
STORE_APPENDS = 32
READ_CHUNK = 1024 * 1024  # bytes per piece when a download is streamed
ZIP_TYPE = "application/zip"
TOKEN_SALT = "woffice-privacy-download"  # noqa: S105 - a namespace, not a secret
# Spreadsheet programs run cells starting with these as formulas (CSV injection).
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")

README_INTRO = """\
Your personal data held by Woffice ({reference})
================================================

This package was generated on {generated} (UTC) for {subject}.
The download link stops working on {expires} (UTC).

Each table comes twice, with the same rows: NAME.json (a JSON array of objects, for
programs) and NAME.csv (for spreadsheets). Times are UTC in ISO 8601; money is in paise
(1/100 rupee). manifest.json lists every file with its number of rows.
Passwords, two-factor secrets, recovery codes and access tokens are never included.

Files:
"""
README_PORTABILITY = """\
Contact export of {subject} ({reference})
=========================================

Generated on {generated} (UTC); the download link stops working on {expires} (UTC).
contacts.csv and contacts.json hold the same rows as Contacts > Export in Woffice:
one row per contact with its phone, WhatsApp id, names, email, tags (separated by ";"),
consent state, marketing objection and dates (UTC). Import contacts.csv into another
CRM, or read contacts.json with any program.
"""


class AccessPackageError(WofficeError):
    """The request cannot produce this package (shown to Compliance as is)."""


# ------------------------------------------------------------------------ public API


def expiry(now: datetime | None = None) -> datetime:
    """When an artifact made ``now`` stops being downloadable."""
    days = int(current_app.config.get("PRIVACY_DOWNLOAD_DAYS", 7))
    return (now or utcnow()) + timedelta(days=days)


def current_artifact(
    request: PrivacyRequest, kind: ArtifactKind, now: datetime | None = None
) -> PrivacyArtifact | None:
    """The request's newest unexpired artifact of ``kind``, if any."""
    now = now or utcnow()
    return db.session.scalars(
        select(PrivacyArtifact)
        .where(
            PrivacyArtifact.request_id == request.id,
            PrivacyArtifact.kind == kind,
            (PrivacyArtifact.expires_at.is_(None)) | (PrivacyArtifact.expires_at > now),
        )
        .order_by(PrivacyArtifact.id.desc())
        .limit(1)
    ).first()


def sections_for(request: PrivacyRequest) -> list[Section]:
    """The sections of the request's subject.

    :raises AccessPackageError: when the subject is not identified (or was deleted).
    """
    kind = SubjectKind(request.subject_kind)
    if kind == SubjectKind.user and request.subject_user_id is not None:
        return user_sections(request.subject_user_id)
    if kind == SubjectKind.contact and request.subject_contact_id and request.tenant_id:
        return contact_sections(request.tenant_id, request.subject_contact_id)
    if kind == SubjectKind.tenant and request.tenant_id is not None:
        return tenant_sections(request.tenant_id)
    raise AccessPackageError(
        f"{request.reference}: identify the subject before building an access package."
    )


def build(request: PrivacyRequest, now: datetime | None = None) -> PrivacyArtifact:
    """Write the subject's access package and attach it to ``request``.

    The artifact's ``counts`` attribute (not stored) maps each file to its rows.

    :raises AccessPackageError: when the subject is not identified.
    """
    now = now or utcnow()
    sections = sections_for(request)
    with tempfile.TemporaryFile() as tmp:
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED, allowZip64=True) as zf:
            _write_text(zf, "README.txt", _readme(request, sections, now), now)
            counts = {s.name: _write_section(zf, s, now) for s in sections}
            _write_text(zf, "manifest.json", _manifest(request, counts, now), now)
        artifact = _store(tmp, request, ArtifactKind.access_package, now)
    artifact.counts = counts  # type: ignore[attr-defined]
    return artifact


def build_portability(request: PrivacyRequest, now: datetime | None = None) -> PrivacyArtifact:
    """The tenant's CRM contact export (CSV + JSON, as Contacts > Export) in a ZIP.

    :raises AccessPackageError: when the request names no tenant.
    """
    if request.tenant_id is None:
        raise AccessPackageError(f"{request.reference}: a portability export needs a tenant.")
    now = now or utcnow()
    stmt = select(Contact).where(Contact.tenant_id == request.tenant_id).order_by(Contact.id)
    rows = db.session.scalar(
        select(func.count()).select_from(Contact).where(Contact.tenant_id == request.tenant_id)
    )
    text = README_PORTABILITY.format(
        subject=request.subject_label,
        reference=request.reference,
        generated=_stamp(now),
        expires=_stamp(expiry(now)),
    )
    with tempfile.TemporaryFile() as tmp:
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED, allowZip64=True) as zf:
            _write_text(zf, "README.txt", text, now)
            _write_chunks(zf, "contacts.csv", export_csv(stmt), now)
            _write_chunks(zf, "contacts.json", export_json(stmt), now)
        artifact = _store(tmp, request, ArtifactKind.portability_export, now)
    artifact.counts = {"contacts": rows}  # type: ignore[attr-defined]
    return artifact


def iter_content(artifact_id: int, size: int) -> Iterator[bytes]:
    """An artifact's bytes in pieces: PostgreSQL reads one slice per query, so neither
    the database session nor the web process holds the whole file."""
    if db.session.get_bind().dialect.name != "postgresql":
        yield (
            db.session.scalar(
                select(PrivacyArtifact.content).where(PrivacyArtifact.id == artifact_id)
            )
            or b""
        )
        return
    for start in range(0, size, READ_CHUNK):
        piece = db.session.scalar(
            select(func.substring(PrivacyArtifact.content, start + 1, READ_CHUNK)).where(
                PrivacyArtifact.id == artifact_id
            )
        )
        yield bytes(piece or b"")


def download_token(artifact: PrivacyArtifact, request: PrivacyRequest) -> str:
    """The signed part of the emailed link: the artifact and a hash of the requester's
    email (changing the request's email voids the link). Expiry is the artifact's."""
    return _serializer().dumps({"a": artifact.id, "e": hash_identifier(request.requester_email)})


def read_download_token(token: str) -> tuple[int, str] | None:
    """(artifact id, requester email hash) of a genuine token; None if forged."""
    try:
        data = _serializer().loads(token)
        return int(data["a"]), str(data["e"])
    except (BadSignature, KeyError, TypeError, ValueError):
        return None


def token_matches(request: PrivacyRequest, email_hash: str) -> bool:
    """The token was issued to this request's (current) requester email."""
    return hmac.compare_digest(hash_identifier(request.requester_email), email_hash)


def _serializer() -> URLSafeSerializer:
    return URLSafeSerializer(current_app.config["SECRET_KEY"], salt=TOKEN_SALT)


# ----------------------------------------------------------------------- the writing


def _zipinfo(name: str, now: datetime) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=now.timetuple()[:6])
    info.compress_type = zipfile.ZIP_DEFLATED
    return info


def _write_text(zf: zipfile.ZipFile, name: str, text: str, now: datetime) -> None:
    zf.writestr(_zipinfo(name, now), text.encode("utf-8"))


def _write_chunks(zf: zipfile.ZipFile, name: str, chunks: Iterable[str], now: datetime) -> None:
    with zf.open(_zipinfo(name, now), "w", force_zip64=True) as raw:
        with io.TextIOWrapper(raw, encoding="utf-8", newline="") as out:
            for chunk in chunks:
                out.write(chunk)


def _write_section(zf: zipfile.ZipFile, section: Section, now: datetime) -> int:
    """``<name>.json`` streamed into the ZIP while ``<name>.csv`` spools to a temp file
    (a ZIP takes one open entry at a time): one pass over the rows. Returns the rows."""
    headers = section.headers
    rows = 0
    with tempfile.TemporaryFile("w+", encoding="utf-8", newline="") as spool:
        writer = csv.writer(spool)
        writer.writerow(headers)
        with zf.open(_zipinfo(f"{section.name}.json", now), "w", force_zip64=True) as raw:
            with io.TextIOWrapper(raw, encoding="utf-8", newline="\n") as out:
                out.write("[")
                result = db.session.execute(section.stmt.execution_options(yield_per=BATCH))
                for row in result:
                    values = [_plain(v) for v in row]
                    record = json.dumps(dict(zip(headers, values, strict=True)), ensure_ascii=False)
                    out.write(("\n" if rows == 0 else ",\n") + record)
                    writer.writerow([_cell(v) for v in values])
                    rows += 1
                out.write("\n]\n" if rows else "]\n")
        spool.seek(0)
        _write_chunks(zf, f"{section.name}.csv", iter(lambda: spool.read(1 << 16), ""), now)
    return rows


def _plain(value: Any) -> Any:
    """A JSON-safe value: times as ISO 8601 UTC, enums as their value."""
    if isinstance(value, datetime):
        return value.isoformat() + "Z"
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, Decimal):
        return str(value)
    return value


def _cell(value: Any) -> Any:
    """A CSV cell: structures as JSON, never a spreadsheet formula."""
    if value is None:
        return ""
    if isinstance(value, dict | list):
        value = json.dumps(value, ensure_ascii=False)
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES):
        return "'" + value
    return value


def _stamp(moment: datetime) -> str:
    return moment.strftime("%d %b %Y %H:%M")


def _subject(request: PrivacyRequest) -> str:
    return request.subject_label


def _readme(request: PrivacyRequest, sections: list[Section], now: datetime) -> str:
    text = README_INTRO.format(
        reference=request.reference,
        generated=_stamp(now),
        subject=_subject(request),
        expires=_stamp(expiry(now)),
    )
    lines = [f"  {s.name}.json / {s.name}.csv\n      {s.description}\n" for s in sections]
    lines.append("  manifest.json\n      The files of this package and their row counts.\n")
    return text + "".join(lines)


def _manifest(request: PrivacyRequest, counts: dict[str, int], now: datetime) -> str:
    files = {}
    for name, rows in counts.items():
        files[f"{name}.json"] = rows
        files[f"{name}.csv"] = rows
    body = {
        "reference": request.reference,
        "subject_kind": str(request.subject_kind),
        "generated_at": _plain(now),
        "expires_at": _plain(expiry(now)),
        "files": files,
    }
    return json.dumps(body, indent=2) + "\n"


# ----------------------------------------------------------------------- the storing


def _filename(request: PrivacyRequest, kind: ArtifactKind, now: datetime) -> str:
    what = "data" if kind == ArtifactKind.access_package else "contacts"
    return f"woffice-{what}-{request.reference}-{now:%Y%m%d}.zip"


def _store(
    tmp: IO[bytes], request: PrivacyRequest, kind: ArtifactKind, now: datetime
) -> PrivacyArtifact:
    """Copy the finished ZIP into a new artifact row, chunk by chunk."""
    size = tmp.seek(0, io.SEEK_END)
    tmp.seek(0)
    artifact = PrivacyArtifact(
        request_id=request.id,
        kind=kind,
        filename=_filename(request, kind, now),
        content_type=ZIP_TYPE,
        content=b"",
        size=size,
        sha256="",
        created_at=now,
        expires_at=expiry(now),
        downloads=0,
    )
    db.session.add(artifact)
    db.session.flush()
    digest = hashlib.sha256()
    if db.session.get_bind().dialect.name == "postgresql":
        step = min(max(STORE_CHUNK, size // STORE_APPENDS), STORE_CHUNK_MAX)
        for chunk in iter(lambda: tmp.read(step), b""):
            digest.update(chunk)
            db.session.execute(
                update(PrivacyArtifact)
                .where(PrivacyArtifact.id == artifact.id)
                .values(
                    content=PrivacyArtifact.content.op("||", return_type=LargeBinary)(
                        literal(chunk, LargeBinary)
                    )
                )
                .execution_options(synchronize_session=False)
            )
        db.session.expire(artifact, ["content"])
    else:  # SQLite (make run): small data, one write
        buffer = io.BytesIO()
        shutil.copyfileobj(tmp, buffer)
        digest.update(buffer.getvalue())
        artifact.content = buffer.getvalue()
    artifact.sha256 = digest.hexdigest()
    return artifact
