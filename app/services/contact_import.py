"""CSV import of contacts (issue 4): parse, preview with a guessed mapping, run in batches.

No Flask request here and no commit: `run_import` flushes after each batch and calls
``after_batch`` (the job commits there, so the import's page shows the progress).

Rules: phones are normalised; a contact is created or updated by its WhatsApp id, and
only fields that differ are changed (empty cells change nothing), so importing the same
file again is a no-op; tags are added by name (missing tenant tags are created); consent
is recorded (source ``import``) only when the file maps a consent column and the state
would change. A bad row (invalid phone or email, duplicate phone in the file, unknown
consent value...) is skipped and reported in the errors CSV with its line number.

Each batch is written with set-based statements (one SELECT of the existing contacts,
one multi-row INSERT, one executemany UPDATE, bulk tag links and consent events) and
audited as one ``contact_import.batch`` event listing the contacts it created and
updated: about 20x faster than an ORM object per row (docs/benchmarks.md).
"""

from __future__ import annotations

import csv
import io
import itertools
import queue
import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import String, any_, bindparam, cast, select, text, update
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session

from app.models.contact import (
    ConsentAction,
    ConsentEvent,
    ConsentSource,
    ConsentState,
    Contact,
    Tag,
    contact_tag,
)
from app.models.contact_import import ContactImport, ImportStatus
from app.models.mixins import utcnow
from app.services import audit, bulk
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
OPTED_OUT = (
    "opted out earlier: an import cannot opt them back in (only the person can); row skipped"
)
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


@dataclass(slots=True)
class _Row:
    line: int
    phone: str
    wa_id: str
    display_name: str | None
    email: str | None
    notes: str | None
    tags: list[str] = field(default_factory=list)
    consent: ConsentAction | None = None
    # phone ... consent_state of a new contact as COPY text (built by the parser thread)
    copy: str = ""


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
                if "".join(cells).strip():  # blank lines (only spaces, commas) are skipped
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


class ErrorsWriter:
    """The errors CSV, appended to batch after batch (formula-escaped cells)."""

    def __init__(self) -> None:
        self._buffer = io.StringIO()
        self._writer = csv.writer(self._buffer)
        self._writer.writerow(ERROR_COLUMNS)
        self.count = 0

    def add(self, errors: list[RowError]) -> None:
        for e in errors:
            self._writer.writerow(
                [e.line, csv_safe(e.column), csv_safe(e.value), csv_safe(e.reason)]
            )
        self.count += len(errors)

    def value(self) -> str | None:
        return self._buffer.getvalue() if self.count else None


def _consent(value: str) -> ConsentAction | None:
    v = value.strip().lower()
    if not v:
        return None
    if v in CONSENT_YES:
        return ConsentAction.opt_in
    if v in CONSENT_NO:
        return ConsentAction.opt_out
    raise ValidationError("unknown consent value (use yes or no)", "consent")


def _columns(headers: list[str], mapping: dict[str, str]) -> dict[str, tuple[str, int]]:
    """Field -> (header, cell index) for every mapped field."""
    return {mapping[h]: (h, i) for i, h in enumerate(headers) if mapping[h] != "ignore"}


# (header, index) of a field no column holds: an index no row reaches.
_UNMAPPED = ("", 1 << 30)


def _parse_row(
    line: int,
    cells: list[str],
    columns: dict[str, tuple[str, int]],
    seen: dict[str, int],
) -> tuple[_Row | None, list[RowError]]:
    """One CSV row as a `_Row`, or the reasons it cannot be imported.

    ``seen`` maps the WhatsApp ids of the rows accepted so far to their lines: the same
    number twice in a file is an error on its second line. (Runs once per row: cells are
    read inline rather than through a helper.)
    """
    width = len(cells)
    phone_header, at = columns["phone"]
    raw_phone = cells[at].strip() if at < width else ""
    if not raw_phone:
        return None, [RowError(line, phone_header, "", "phone is missing")]
    try:
        phone, wa_id = normalize_contact_phone(raw_phone)
    except ValidationError:
        return None, [RowError(line, phone_header, raw_phone, "invalid phone number")]
    if wa_id in seen:
        reason = f"duplicate in file: same phone as line {seen[wa_id]} (line {line} skipped)"
        return None, [RowError(line, phone_header, raw_phone, reason)]

    errors: list[RowError] = []
    header, at = columns.get("display_name", _UNMAPPED)
    name = cells[at].strip() if at < width else ""
    if len(name) > MAX_NAME:
        errors.append(RowError(line, header, name, f"name longer than {MAX_NAME} characters"))
    header, at = columns.get("email", _UNMAPPED)
    email = cells[at].strip() if at < width else ""
    if email:
        try:
            email = normalize_email(email)
        except ValidationError:
            errors.append(RowError(line, header, email, "invalid email address"))
    tags: list[str] = []
    header, at = columns.get("tags", _UNMAPPED)
    raw_tags = cells[at].strip() if at < width else ""
    if raw_tags:
        lowered: set[str] = set()
        for tag in TAG_SEPARATORS.split(raw_tags):
            tag = tag.strip()
            if len(tag) > MAX_TAG:
                reason = f"tag longer than {MAX_TAG} characters"
                errors.append(RowError(line, header, raw_tags, reason))
            elif tag and tag.lower() not in lowered:
                lowered.add(tag.lower())
                tags.append(tag)
    consent = None
    if "consent" in columns:
        header, at = columns["consent"]
        raw_consent = cells[at].strip() if at < width else ""
        try:
            consent = _consent(raw_consent)
        except ValidationError as exc:
            errors.append(RowError(line, header, raw_consent, str(exc)))
    if errors:
        return None, errors
    seen[wa_id] = line
    _header, at = columns.get("notes", _UNMAPPED)
    notes = cells[at].strip() if at < width else ""
    return _Row(line, phone, wa_id, name or None, email or None, notes or None, tags, consent), []


_CONTACT = Contact.__table__
_EXISTING = (
    Contact.id,
    Contact.wa_id,
    Contact.phone,
    Contact.display_name,
    Contact.email,
    Contact.notes,
    Contact.consent_state,
)
_ASYNC_COMMIT = text("SET LOCAL synchronous_commit = off")
_UPDATABLE = ("phone", "display_name", "email", "notes", "consent_state")
# One executemany UPDATE for every changed contact of a batch (bind names may not be
# column names in an UPDATE, hence the prefixes).
_UPDATE_CONTACT = (
    update(_CONTACT)
    .where(_CONTACT.c.id == bindparam("b_id"))
    .values({c: bindparam(f"v_{c}") for c in (*_UPDATABLE, "updated_at")})
)
_INSERT_COLUMNS = (
    "tenant_id",
    "phone",
    "wa_id",
    "display_name",
    "email",
    "notes",
    "consent_state",
    "marketing_objection",
    "created_at",
    "updated_at",
)
_CONSENT_COLUMNS = (
    "tenant_id",
    "contact_id",
    "action",
    "source",
    "evidence",
    "occurred_at",
    "recorded_by_id",
)
_CONSENT_STATE = {
    ConsentAction.opt_in: ConsentState.opted_in,
    ConsentAction.opt_out: ConsentState.opted_out,
}


@dataclass
class _Run:
    """One import's state across batches: tenant tags by lower-case name, counters."""

    session: Session
    imp: ContactImport
    tags: dict[str, int]
    actor_id: int | None
    copy: bool = False  # new rows by COPY (PostgreSQL); see app.services.bulk
    consent_header: str = "consent"
    sequence: str | None = None  # contact ids' sequence, looked up once (COPY)

    def tag_ids(self, rows: list[_Row]) -> None:
        """Create the tags the rows name that the tenant lacks (ORM: audited as usual)."""
        missing: dict[str, Tag] = {}
        for row in rows:
            for name in row.tags:
                key = name.lower()
                if key not in self.tags and key not in missing:
                    missing[key] = Tag(tenant_id=self.imp.tenant_id, name=name)
        if missing:
            self.session.add_all(missing.values())
            self.session.flush()
            self.tags.update({key: tag.id for key, tag in missing.items()})

    def write(self, rows: list[_Row], lines: tuple[int, int]) -> list[list[RowError]]:
        """Create or update ``rows`` with a handful of set-based statements.

        One SELECT finds the contacts that exist; new contacts, tag links and consent
        events are bulk-inserted (`app.services.bulk`: COPY on PostgreSQL); changed
        contacts get one executemany UPDATE. The per-row audit capture of an ORM flush
        is replaced by one ``contact_import.batch`` event naming the import, the lines
        and the ids of the contacts created and updated.
        """
        imp, session, tenant_id = self.imp, self.session, self.imp.tenant_id
        refused: list[list[RowError]] = []
        if not rows:
            return refused
        wa_ids = [r.wa_id for r in rows]
        # PostgreSQL: one array parameter (an IN list renders one bind per row).
        known = Contact.wa_id == any_(cast(wa_ids, ARRAY(String))) if self.copy else None
        existing = {
            found.wa_id: found
            for found in session.execute(
                select(*_EXISTING).where(
                    Contact.tenant_id == tenant_id,
                    known if known is not None else Contact.wa_id.in_(wa_ids),
                )
            )
        }
        self.tag_ids(rows)
        linked: set[tuple[int, int]] = set()
        if existing and any(r.tags for r in rows):
            linked = set(
                session.execute(
                    select(contact_tag.c.contact_id, contact_tag.c.tag_id).where(
                        contact_tag.c.contact_id.in_([c.id for c in existing.values()])
                    )
                ).tuples()
            )
        now = utcnow()
        new: list[_Row] = []
        changed: list[dict[str, Any]] = []
        links: list[tuple[_Row, int | None]] = []  # (row, contact id; None = new contact)
        consents: list[tuple[_Row, int | None]] = []
        unchanged = 0
        for row in rows:
            target = _CONSENT_STATE.get(row.consent)
            found = existing.get(row.wa_id)
            if found is None:
                new.append(row)
                if row.tags:
                    links.append((row, None))
                if target is not None:
                    consents.append((row, None))
                continue
            if target == ConsentState.opted_in and found.consent_state == ConsentState.opted_out:
                # The person's own opt-out (STOP, WhatsApp settings, a request) outranks
                # a file's claim of consent: only they can opt back in (P9).
                refused.append([RowError(row.line, self.consent_header, "yes", OPTED_OUT)])
                continue
            values = {
                "phone": row.phone,
                "display_name": row.display_name,
                "email": row.email,
                "notes": row.notes,
                "consent_state": target,
            }
            update = {
                key: value
                for key, value in values.items()
                if value is not None and getattr(found, key) != value
            }
            if "consent_state" in update:
                consents.append((row, found.id))
            new_tags = any((found.id, self.tags[t.lower()]) not in linked for t in row.tags)
            if new_tags:
                links.append((row, found.id))
            if update:
                merged = {k: getattr(found, k) for k in _UPDATABLE} | update
                changed.append(
                    {"b_id": found.id, "v_updated_at": now}
                    | {f"v_{k}": v for k, v in merged.items()}
                )
            elif not new_tags:
                unchanged += 1
        if self.copy:
            new_ids = self.copy_new(new, links, consents, linked, now)
        else:
            new_ids = self.insert_new(new, links, consents, linked, now)
        if changed:
            session.execute(_UPDATE_CONTACT.where(_CONTACT.c.tenant_id == tenant_id), changed)
        updated_ids = sorted({c["b_id"] for c in changed} | {cid for _, cid in links if cid})
        imp.created_count += len(new)
        imp.updated_count += len(updated_ids)
        imp.unchanged_count += unchanged
        audit.record(
            "contact_import.batch",
            imp,
            session=session,
            lines=f"{lines[0]}-{lines[1]}",
            created=len(new),
            updated=len(updated_ids),
            unchanged=unchanged,
            consent_events=len(consents),
            created_ids=new_ids,
            updated_ids=updated_ids,
            refused=len(refused),
        )
        return refused

    def copy_new(
        self,
        new: list[_Row],
        links: list[tuple[_Row, int | None]],
        consents: list[tuple[_Row, int | None]],
        linked: set[tuple[int, int]],
        now: datetime,
    ) -> list[int]:
        """New contacts, tag links and consent events by COPY (PostgreSQL); new ids.

        The rows' fields were escaped by the parser thread (``_Row.copy``); here only
        the ids, tenant and timestamps are added, so this thread spends its time
        waiting on the database (the GIL free for the parser).
        """
        session, tenant_id = self.session, self.imp.tenant_id
        if new and self.sequence is None:
            self.sequence = bulk.serial_sequence(session, _CONTACT)
        new_ids = bulk.next_ids(session, _CONTACT, len(new), self.sequence) if new else []
        stamp = bulk.copy_text(now)
        bulk.copy_lines(
            session,
            _CONTACT,
            ("id", *_INSERT_COLUMNS),
            [
                f"{cid}\t{tenant_id}\t{row.copy}\tf\t{stamp}\t{stamp}\n"
                for row, cid in zip(new, new_ids, strict=True)
            ],
        )
        created_ids = dict(zip([row.wa_id for row in new], new_ids, strict=True))
        tags = self.tags
        lines = []
        for row, contact_id in links:
            cid = contact_id or created_ids[row.wa_id]
            for name in row.tags:
                tag_id = tags[name.lower()]
                if (cid, tag_id) not in linked:
                    lines.append(f"{cid}\t{tag_id}\n")
        bulk.copy_lines(session, contact_tag, ("contact_id", "tag_id"), lines)
        evidence = bulk.copy_text(f"import {self.imp.filename} line ")
        tail = f"\t{stamp}\t{bulk.copy_text(self.actor_id)}\n"
        source = bulk.copy_text(ConsentSource.import_)
        bulk.copy_lines(
            session,
            ConsentEvent.__table__,
            _CONSENT_COLUMNS,
            [
                f"{tenant_id}\t{contact_id or created_ids[row.wa_id]}\t"
                f"{bulk.copy_text(row.consent)}\t{source}\t{evidence}{row.line}{tail}"
                for row, contact_id in consents
            ],
        )
        return new_ids

    def insert_new(
        self,
        new: list[_Row],
        links: list[tuple[_Row, int | None]],
        consents: list[tuple[_Row, int | None]],
        linked: set[tuple[int, int]],
        now: datetime,
    ) -> list[int]:
        """`copy_new` with multi-row INSERTs (SQLite, or ``copy=False``); new ids."""
        session, tenant_id = self.session, self.imp.tenant_id
        new_ids = bulk.insert_with_ids(
            session,
            _CONTACT,
            _INSERT_COLUMNS,
            [
                (
                    tenant_id,
                    row.phone,
                    row.wa_id,
                    row.display_name,
                    row.email,
                    row.notes,
                    _CONSENT_STATE.get(row.consent, ConsentState.unknown),
                    False,
                    now,
                    now,
                )
                for row in new
            ],
            copy=False,
        )
        created_ids = {row.wa_id: cid for row, cid in zip(new, new_ids, strict=True)}
        link_rows = []
        for row, contact_id in links:
            cid = contact_id or created_ids[row.wa_id]
            for name in row.tags:
                tag_id = self.tags[name.lower()]
                if (cid, tag_id) not in linked:
                    link_rows.append((cid, tag_id))
        bulk.insert_rows(session, contact_tag, ("contact_id", "tag_id"), link_rows, False)
        bulk.insert_rows(
            session,
            ConsentEvent.__table__,
            _CONSENT_COLUMNS,
            [
                (
                    tenant_id,
                    contact_id or created_ids[row.wa_id],
                    row.consent,
                    ConsentSource.import_,
                    f"import {self.imp.filename} line {row.line}",
                    now,
                    self.actor_id,
                )
                for row, contact_id in consents
            ],
            False,
        )
        return new_ids


def _copy_fields(row: _Row) -> str:
    """The new contact's phone ... consent_state in COPY's text format."""
    copy_text = bulk.copy_text
    return "\t".join(
        (
            copy_text(row.phone),
            copy_text(row.wa_id),
            copy_text(row.display_name),
            copy_text(row.email),
            copy_text(row.notes),
            _CONSENT_STATE.get(row.consent, ConsentState.unknown).value,
        )
    )


@dataclass
class _ParsedBatch:
    size: int  # rows read (good and bad)
    lines: tuple[int, int]
    good: list[_Row]
    errors: list[list[RowError]]  # one list per bad row


def _parsed_batches(
    rows: Iterator[tuple[int, list[str]]],
    columns: dict[str, tuple[str, int]],
    size: int,
    copy: bool = False,
) -> Iterator[_ParsedBatch]:
    seen: dict[str, int] = {}
    while True:
        batch = list(itertools.islice(rows, size))
        if not batch:
            return
        parsed = _ParsedBatch(len(batch), (batch[0][0], batch[-1][0]), [], [])
        for line, cells in batch:
            row, row_errors = _parse_row(line, cells, columns, seen)
            if row is not None:
                if copy:
                    row.copy = _copy_fields(row)
                parsed.good.append(row)
            else:
                parsed.errors.append(row_errors)
        yield parsed


# Batches parsed ahead of the writing thread: the parser rarely waits, the memory stays
# bounded (a few batches of rows).
PARSE_AHEAD = 4
_DONE = object()


class _Parser:
    """Runs ``_parsed_batches`` in a thread, up to ``PARSE_AHEAD`` batches ahead.

    Pure Python, no database: it runs while the writing thread waits on PostgreSQL (the
    GIL is released during each statement). Its exceptions (bad CSV) are re-raised in
    the writing thread; `close` stops it if the writing thread fails first.
    """

    def __init__(self, batches: Iterator[_ParsedBatch]) -> None:
        self._batches = batches
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=PARSE_AHEAD)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="import-parse", daemon=True)
        self._thread.start()

    def _put(self, item: Any) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _run(self) -> None:
        try:
            for parsed in self._batches:
                if not self._put(parsed):
                    return
        except BaseException as exc:  # handed over to the writing thread, re-raised there
            self._put(exc)
            return
        self._put(_DONE)

    def __iter__(self) -> Iterator[_ParsedBatch]:
        while (item := self._queue.get()) is not _DONE:
            if isinstance(item, BaseException):
                raise item
            yield item

    def close(self) -> None:
        self._stop.set()
        self._thread.join()


def _async_commit(session: Session) -> None:
    """Let this batch's transaction commit without waiting for its WAL flush.

    ``SET LOCAL``: this transaction only, so nothing else of the session or the app
    commits asynchronously. Safe here because an import is re-runnable and idempotent:
    a PostgreSQL crash can lose only the last fraction of a second of committed batches
    (never corrupt or half-apply one: each batch and its progress counters and audit
    event commit or vanish together), the import then shows fewer processed rows and is
    still ``running``, and importing the file again creates what was lost and leaves the
    rest unchanged. The final commit (status ``done``) is synchronous and flushes the WAL
    of every batch before it, so a finished import is durable. Nothing outside the
    database acts on a batch commit (no job is enqueued per batch).
    """
    session.execute(_ASYNC_COMMIT)


def run_import(
    session: Session,
    imp: ContactImport,
    batch_size: int = 5000,
    after_batch: Callable[[], None] | None = None,
    copy: bool | None = None,
) -> dict[str, int]:
    """Import every row of ``imp`` (counters start from zero); returns the counts.

    The import ends ``done`` with its counters and errors CSV set; the caller commits.
    Rows are parsed up to ``PARSE_AHEAD`` batches ahead in a helper thread (`_Parser`:
    pure Python, no database) while this thread writes: the parsing runs while the
    database works. On PostgreSQL each batch's transaction commits asynchronously
    (`_async_commit` says why that is safe here).
    Contacts written here bypass the ORM unit of work: contacts and tags the session
    already holds are expired at the end so nobody reads stale values.
    """
    headers, rows = read_csv(imp.content)
    columns = _columns(headers, validate_mapping(headers, imp.mapping or {}))
    imp.total_rows = count_rows(imp.content)
    imp.processed_rows = imp.created_count = imp.updated_count = 0
    imp.unchanged_count = imp.error_count = 0
    imp.errors_csv = None
    tenant_tags = session.execute(select(Tag.id, Tag.name).where(Tag.tenant_id == imp.tenant_id))
    run = _Run(
        session,
        imp,
        {name.lower(): tag_id for tag_id, name in tenant_tags},
        imp.created_by_id,
        bulk.uses_copy(session, copy),
        columns.get("consent", ("consent", 0))[0],
    )
    error_lines = ErrorsWriter()
    parser = _Parser(_parsed_batches(rows, columns, batch_size, run.copy))
    try:
        for parsed in parser:
            if run.copy:
                _async_commit(session)
            bad = parsed.errors + run.write(parsed.good, parsed.lines)
            bad.sort(key=lambda errors: errors[0].line)
            for row_errors in bad:
                error_lines.add(row_errors)
            imp.error_count += len(bad)
            imp.processed_rows += parsed.size
            if bad:  # the CSV is rewritten only when it grew
                imp.errors_csv = error_lines.value()
            session.flush()
            if after_batch is not None:
                after_batch()
    finally:
        parser.close()
    imp.status = ImportStatus.done
    imp.finished_at = utcnow()
    session.flush()
    for obj in list(session.identity_map.values()):
        if isinstance(obj, Contact | Tag):
            session.expire(obj)
    return {
        "rows": imp.processed_rows,
        "created": imp.created_count,
        "updated": imp.updated_count,
        "unchanged": imp.unchanged_count,
        "errors": imp.error_count,
    }
