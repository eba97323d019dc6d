"""CSV import of contacts (issue 4): parse, preview with a guessed mapping, run in batches.

No Flask request here and no commit: `run_import` flushes after each batch and calls
``after_batch`` (the job commits there, so the import's page shows the progress).

Rules: phones are normalised; a contact is created or updated by its WhatsApp id, and
only fields that differ are changed (empty cells change nothing), so importing the same
file again is a no-op; tags are added by name (missing tenant tags are created); consent
is recorded (source ``import``) only when the file maps a consent column and the state
would change. A bad row (invalid phone or email, duplicate phone in the file, unknown
consent value...) is skipped and reported in the errors CSV with its line number.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from app.models.contact import ConsentAction, ConsentSource, ConsentState, Contact, Tag
from app.models.contact_import import ContactImport, ImportStatus
from app.models.mixins import utcnow
from app.services.consent import record_consent
from app.services.contacts import normalize_contact_phone
from app.services.exceptions import ValidationError
from app.services.tenants import normalize_email

FIELDS = ("phone", "display_name", "email", "tags", "notes", "consent", "ignore")
FIELD_LABELS = {
    "phone": "Phone",
    "display_name": "Name",
    "email": "Email",
    "tags": "Tags",
    "notes": "Notes",
    "consent": "Consent",
    "ignore": "(ignore this column)",
}
PREVIEW_ROWS = 10
ERROR_COLUMNS = ("line", "column", "value", "reason")
# Spreadsheet programs run cells starting with these as formulas (CSV injection).
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
CONSENT_YES = frozenset({"yes", "y", "true", "1", "opted_in", "opt_in", "opted in"})
CONSENT_NO = frozenset({"no", "n", "false", "0", "opted_out", "opt_out", "opted out"})
TAG_SEPARATORS = re.compile(r"[;,|]")
MAX_NAME, MAX_TAG, MAX_EMAIL = 120, 60, 320

_SYNONYMS = {
    "phone": {
        "phone",
        "phonenumber",
        "mobile",
        "mobilenumber",
        "mobileno",
        "number",
        "whatsapp",
        "whatsappnumber",
        "contactnumber",
        "cell",
        "tel",
        "telephone",
        "waid",
    },
    "display_name": {"name", "fullname", "displayname", "contactname", "customername"},
    "email": {"email", "emailaddress", "mail"},
    "tags": {"tags", "tag", "labels", "label", "groups", "group"},
    "notes": {"notes", "note", "comments", "comment", "remarks"},
    "consent": {
        "consent",
        "optin",
        "optedin",
        "whatsappconsent",
        "marketingconsent",
        "whatsappoptin",
    },
}


class ImportFileError(ValidationError):
    """The file cannot be imported at all (no header, unreadable...)."""


@dataclass
class Preview:
    headers: list[str]
    rows: list[list[str]]
    mapping: dict[str, str]
    total_rows: int


@dataclass
class RowError:
    line: int
    column: str
    value: str
    reason: str


@dataclass
class _Row:
    line: int
    phone: str
    wa_id: str
    values: dict[str, str | None]
    tags: list[str] = field(default_factory=list)
    consent: ConsentAction | None = None


# ------------------------------------------------------------------------- parsing


def _text(content: bytes) -> str:
    try:
        return content.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ImportFileError("The file is not UTF-8 text.", "file") from exc


def read_csv(content: bytes) -> tuple[list[str], Iterator[tuple[int, list[str]]]]:
    """(headers, iterator of (line number, cells)); line 1 is the header."""
    reader = csv.reader(io.StringIO(_text(content), newline=""))
    try:
        headers = [h.strip() for h in next(reader)]
    except StopIteration:
        raise ImportFileError("The file is empty.", "file") from None
    except csv.Error as exc:
        raise ImportFileError(f"The file is not valid CSV: {exc}", "file") from exc
    if not any(headers):
        raise ImportFileError("The first line must name the columns.", "file")
    headers = [h or f"column {i}" for i, h in enumerate(headers, start=1)]
    twice = sorted({h for h in headers if headers.count(h) > 1})
    if twice:
        raise ImportFileError(f"Column names must differ: {', '.join(twice)}.", "file")

    def rows() -> Iterator[tuple[int, list[str]]]:
        start = reader.line_num + 1
        try:
            for cells in reader:
                if any(c.strip() for c in cells):  # blank lines are skipped
                    yield start, cells
                start = reader.line_num + 1
        except csv.Error as exc:
            raise ImportFileError(
                f"The file is not valid CSV near line {start}: {exc}", "file"
            ) from exc

    return headers, rows()


def _key(header: str) -> str:
    return re.sub(r"[^a-z0-9]", "", header.lower())


def guess_mapping(headers: list[str]) -> dict[str, str]:
    """A field for each header from its name; each field is used at most once."""
    mapping: dict[str, str] = {}
    used: set[str] = set()
    for header in headers:
        guess = "ignore"
        for name, synonyms in _SYNONYMS.items():
            if name not in used and _key(header) in synonyms:
                guess = name
                used.add(name)
                break
        mapping[header] = guess
    return mapping


def preview(content: bytes, limit: int = PREVIEW_ROWS) -> Preview:
    """The headers, the first ``limit`` rows, a guessed mapping and the row count."""
    headers, rows = read_csv(content)
    first: list[list[str]] = []
    total = 0
    for _line, cells in rows:
        if total < limit:
            first.append(cells)
        total += 1
    return Preview(headers, first, guess_mapping(headers), total)


def validate_mapping(headers: list[str], mapping: dict[str, str]) -> dict[str, str]:
    """The mapping restricted to ``headers``; exactly one phone column, no field twice."""
    clean = {h: mapping.get(h, "ignore") for h in headers}
    unknown = sorted({v for v in clean.values() if v not in FIELDS})
    if unknown:
        raise ValidationError(f"Unknown field(s): {', '.join(unknown)}.", "mapping")
    chosen = [v for v in clean.values() if v != "ignore"]
    twice = sorted({v for v in chosen if chosen.count(v) > 1})
    if twice:
        labels = ", ".join(FIELD_LABELS[v] for v in twice)
        raise ValidationError(f"Each field may come from one column only: {labels}.", "mapping")
    if "phone" not in chosen:
        raise ValidationError("Choose the column that holds the phone number.", "mapping")
    return clean


def count_rows(content: bytes) -> int:
    _headers, rows = read_csv(content)
    return sum(1 for _ in rows)


# ------------------------------------------------------------------------- running


def csv_safe(value: Any) -> Any:
    """A cell value a spreadsheet will not evaluate as a formula."""
    if value is None:
        return ""
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES):
        return "'" + value
    return value


def errors_csv(errors: list[RowError]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(ERROR_COLUMNS)
    for e in errors:
        writer.writerow([e.line, csv_safe(e.column), csv_safe(e.value), csv_safe(e.reason)])
    return buffer.getvalue()


def _consent(value: str) -> ConsentAction | None:
    v = value.strip().lower()
    if not v:
        return None
    if v in CONSENT_YES:
        return ConsentAction.opt_in
    if v in CONSENT_NO:
        return ConsentAction.opt_out
    raise ValidationError("unknown consent value (use yes or no)", "consent")


def _parse_row(
    line: int,
    cells: list[str],
    headers: list[str],
    mapping: dict[str, str],
    seen: dict[str, int],
) -> tuple[_Row | None, list[RowError]]:
    cols = {
        mapping[h]: (h, cells[i].strip() if i < len(cells) else "") for i, h in enumerate(headers)
    }
    cols.pop("ignore", None)
    errors: list[RowError] = []

    def err(fieldname: str, reason: str) -> None:
        header, value = cols[fieldname]
        errors.append(RowError(line, header, value, reason))

    header, raw_phone = cols["phone"]
    if not raw_phone:
        return None, [RowError(line, header, "", "phone is missing")]
    try:
        phone, wa_id = normalize_contact_phone(raw_phone)
    except ValidationError:
        return None, [RowError(line, header, raw_phone, "invalid phone number")]
    if wa_id in seen:
        reason = f"duplicate in file: same phone as line {seen[wa_id]} (line {line} skipped)"
        return None, [RowError(line, header, raw_phone, reason)]
    seen[wa_id] = line

    values: dict[str, str | None] = {}
    name = cols.get("display_name", ("", ""))[1]
    if len(name) > MAX_NAME:
        err("display_name", f"name longer than {MAX_NAME} characters")
    values["display_name"] = name or None
    email = cols.get("email", ("", ""))[1]
    if email:
        try:
            email = normalize_email(email)
        except ValidationError:
            err("email", "invalid email address")
    values["email"] = email or None
    values["notes"] = cols.get("notes", ("", ""))[1] or None
    tags = []
    for tag in TAG_SEPARATORS.split(cols.get("tags", ("", ""))[1]):
        tag = tag.strip()
        if len(tag) > MAX_TAG:
            err("tags", f"tag longer than {MAX_TAG} characters")
        elif tag and tag.lower() not in {t.lower() for t in tags}:
            tags.append(tag)
    consent = None
    if "consent" in cols:
        try:
            consent = _consent(cols["consent"][1])
        except ValidationError as exc:
            err("consent", str(exc))
    if errors:
        return None, errors
    return _Row(line, phone, wa_id, values, tags, consent), []


@dataclass
class _Run:
    session: Session
    imp: ContactImport
    tags: dict[str, Tag]
    actor_id: int | None

    def tag(self, name: str) -> Tag:
        found = self.tags.get(name.lower())
        if found is None:
            found = Tag(tenant_id=self.imp.tenant_id, name=name)
            self.session.add(found)
            self.tags[name.lower()] = found
        return found

    def apply(self, row: _Row, contact: Contact | None) -> str:
        """Create or update one contact; "created", "updated" or "unchanged"."""
        created = contact is None
        changed = False
        if contact is None:
            contact = Contact(
                tenant_id=self.imp.tenant_id,
                phone=row.phone,
                wa_id=row.wa_id,
                consent_state=ConsentState.unknown,
                marketing_objection=False,
            )
            self.session.add(contact)
        elif contact.phone != row.phone:
            contact.phone, changed = row.phone, True
        for key, value in row.values.items():
            if value is not None and getattr(contact, key) != value:
                setattr(contact, key, value)
                changed = True
        current = {t.name.lower() for t in contact.tags}
        for name in row.tags:
            if name.lower() not in current:
                contact.tags.append(self.tag(name))
                changed = True
        if row.consent is not None:
            target = (
                ConsentState.opted_in
                if row.consent == ConsentAction.opt_in
                else ConsentState.opted_out
            )
            if contact.consent_state != target:
                record_consent(
                    self.session,
                    contact,
                    row.consent,
                    ConsentSource.import_,
                    evidence=f"import {self.imp.filename} line {row.line}",
                    actor_id=self.actor_id,
                )
                changed = True
        if created:
            return "created"
        return "updated" if changed else "unchanged"


def run_import(
    session: Session,
    imp: ContactImport,
    batch_size: int = 1000,
    after_batch: Callable[[], None] | None = None,
) -> dict[str, int]:
    """Import every row of ``imp`` (counters start from zero); returns the counts.

    The import ends ``done`` with its counters and errors CSV set; the caller commits.
    """
    headers, rows = read_csv(imp.content)
    mapping = validate_mapping(headers, imp.mapping or {})
    imp.total_rows = count_rows(imp.content)
    imp.processed_rows = imp.created_count = imp.updated_count = 0
    imp.unchanged_count = imp.error_count = 0
    tenant_tags = session.scalars(select(Tag).where(Tag.tenant_id == imp.tenant_id))
    run = _Run(session, imp, {t.name.lower(): t for t in tenant_tags}, imp.created_by_id)
    seen: dict[str, int] = {}
    errors: list[RowError] = []

    def flush_batch(batch: list[tuple[int, list[str]]]) -> None:
        good: list[_Row] = []
        for line, cells in batch:
            row, row_errors = _parse_row(line, cells, headers, mapping, seen)
            if row_errors:
                errors.extend(row_errors)
                imp.error_count += 1
            elif row is not None:
                good.append(row)
        existing = {}
        if good:
            stmt = (
                select(Contact)
                .where(
                    Contact.tenant_id == imp.tenant_id,
                    Contact.wa_id.in_([r.wa_id for r in good]),
                )
                .options(selectinload(Contact.tags))
            )
            existing = {c.wa_id: c for c in session.scalars(stmt)}
        for row in good:
            outcome = run.apply(row, existing.get(row.wa_id))
            if outcome == "created":
                imp.created_count += 1
            elif outcome == "updated":
                imp.updated_count += 1
            else:
                imp.unchanged_count += 1
        imp.processed_rows += len(batch)
        imp.errors_csv = errors_csv(errors) if errors else None
        session.flush()
        if after_batch is not None:
            after_batch()

    batch: list[tuple[int, list[str]]] = []
    for item in rows:
        batch.append(item)
        if len(batch) >= batch_size:
            flush_batch(batch)
            batch = []
    if batch or imp.processed_rows == 0:
        flush_batch(batch)
    imp.status = ImportStatus.done
    imp.finished_at = utcnow()
    session.flush()
    return {
        "rows": imp.processed_rows,
        "created": imp.created_count,
        "updated": imp.updated_count,
        "unchanged": imp.unchanged_count,
        "errors": imp.error_count,
    }
