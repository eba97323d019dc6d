"""CSV import of contacts (issue 4): parse, preview with a guessed mapping, run in batches.

No Flask request here: `run_import` flushes after each batch and calls ``after_batch``
(the job commits there, so the import's page shows the progress). The job asks for two
writers: on PostgreSQL the batches are then written by parallel lanes on connections of
their own, each batch still one transaction with its progress and audit event
(`app.services.contact_import_lanes`).

Rules: phones are normalised; a contact is created or updated by its WhatsApp id, and
only fields that differ are changed (empty cells change nothing), so importing the same
file again is a no-op; tags are added by name (missing tenant tags are created); consent
is recorded (source ``import``) only when the file maps a consent column and the state
would change. A bad row (invalid phone or email, duplicate phone in the file, unknown
consent value...) is skipped and reported in the errors CSV with its line number.

Each batch is written with set-based statements (`app.services.contact_import_write`:
one SELECT of the existing contacts, COPY or multi-row INSERTs of the new ones, one
executemany UPDATE, bulk tag links and consent events) and audited as one
``contact_import.batch`` event listing the contacts it created and updated: about 20x
faster than an ORM object per row (docs/benchmarks.md).
"""

from __future__ import annotations

import csv
import io
import itertools
import queue
import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from app.models.contact import ConsentAction, ConsentState, Contact, Tag
from app.models.contact_import import ContactImport, ImportStatus
from app.models.mixins import utcnow
from app.services import bulk
from app.services.contact_import_lanes import Lanes, async_commit, engine_for_lanes
from app.services.contact_import_write import (
    CONSENT_STATE,
    OPTED_OUT,
    BatchWriter,
    ImportTarget,
    ParsedBatch,
    RowError,
    Tally,
    create_tags,
    csv_safe,
    record_batch,
)
from app.services.contact_import_write import Row as _Row
from app.services.contacts import normalize_contact_phone
from app.services.exceptions import ValidationError
from app.services.tenants import normalize_email

__all__ = [  # also the names other modules import from here
    "OPTED_OUT",
    "ImportFileError",
    "Preview",
    "RowError",
    "csv_safe",
    "preview",
    "run_import",
    "validate_mapping",
]

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


# A new contact's consent_state as COPY text, by the file's consent (None: no cell).
_COPY_CONSENT = {
    None: ConsentState.unknown.value,
    **{action: state.value for action, state in CONSENT_STATE.items()},
}


def _copy_fields(row: _Row) -> str:
    """The new contact's phone ... consent_state in COPY's text format.

    The phone (E.164) and WhatsApp id (digits) never need escaping; the free text does.
    """
    copy_text = bulk.copy_text
    return (
        f"{row.phone}\t{row.wa_id}\t{copy_text(row.display_name)}\t{copy_text(row.email)}"
        f"\t{copy_text(row.notes)}\t{_COPY_CONSENT[row.consent]}"
    )


def _parsed_batches(
    rows: Iterator[tuple[int, list[str]]],
    columns: dict[str, tuple[str, int]],
    size: int,
    copy: bool = False,
) -> Iterator[ParsedBatch]:
    seen: dict[str, int] = {}
    while True:
        batch = list(itertools.islice(rows, size))
        if not batch:
            return
        parsed = ParsedBatch(len(batch), (batch[0][0], batch[-1][0]), [], [])
        for line, cells in batch:
            row, row_errors = _parse_row(line, cells, columns, seen)
            if row is not None:
                if copy:
                    row.copy = _copy_fields(row)
                parsed.good.append(row)
            else:
                parsed.errors.append(row_errors)
        yield parsed


# Rows per batch (one transaction each). Per batch the database's fixed costs (the
# existing-contacts lookup, audit event, progress, commit) are paid once: 10,000-row
# batches took 10-15 % less time than 5,000-row ones; the progress bar moves every 10,000.
BATCH_ROWS = 10_000
# Batches parsed ahead of the writing: the parser rarely waits, the memory stays bounded
# (a few batches of rows; the lanes hold a few more).
PARSE_AHEAD = 2
# Batches the job writes at once (`run_import`'s ``writers``): on two cores, one
# PostgreSQL backend per lane while the parser's Python runs (docs/benchmarks.md).
WRITERS = 2
_DONE = object()


class _Parser:
    """Runs ``_parsed_batches`` in a thread, up to ``PARSE_AHEAD`` batches ahead.

    Pure Python, no database: it runs while the writing thread waits on PostgreSQL (the
    GIL is released during each statement). Its exceptions (bad CSV) are re-raised in
    the writing thread; `close` stops it if the writing thread fails first.
    """

    def __init__(self, batches: Iterator[ParsedBatch]) -> None:
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

    def __iter__(self) -> Iterator[ParsedBatch]:
        while (item := self._queue.get()) is not _DONE:
            if isinstance(item, BaseException):
                raise item
            yield item

    def close(self) -> None:
        self._stop.set()
        self._thread.join()


def run_import(
    session: Session,
    imp: ContactImport,
    batch_size: int = BATCH_ROWS,
    after_batch: Callable[[], None] | None = None,
    copy: bool | None = None,
    writers: int = 1,
) -> dict[str, int]:
    """Import every row of ``imp`` (counters start from zero); returns the counts.

    The import ends ``done`` with its counters and errors CSV set; the caller commits.
    Rows are parsed up to ``PARSE_AHEAD`` batches ahead in a helper thread (`_Parser`:
    pure Python, no database) while batches are written, so the parsing runs while the
    database works. On PostgreSQL each batch's transaction commits asynchronously
    (`async_commit` says why that is safe here).

    ``writers`` > 1 (the job's choice) writes that many batches at once on connections of
    their own (`app.services.contact_import_lanes`), each batch committed there with its
    progress and audit event; ``after_batch`` must then commit ``session`` (it is called
    before the lanes start and after new tags are created, so the lanes see them). Lanes
    need PostgreSQL and a session on the engine; otherwise, and with ``writers=1``, every
    batch is written on ``session`` and ``after_batch`` is called after each one.
    Contacts written here bypass the ORM unit of work: contacts and tags the session
    already holds are expired at the end so nobody reads stale values.
    """
    headers, rows = read_csv(imp.content)
    columns = _columns(headers, validate_mapping(headers, imp.mapping or {}))
    if not imp.total_rows:  # else counted at upload (same rules); set exactly at the end
        imp.total_rows = count_rows(imp.content)
    imp.processed_rows = imp.created_count = imp.updated_count = 0
    imp.unchanged_count = imp.error_count = 0
    imp.errors_csv = None
    tenant_tags = session.execute(select(Tag.id, Tag.name).where(Tag.tenant_id == imp.tenant_id))
    target = ImportTarget(
        import_id=imp.id,
        tenant_id=imp.tenant_id,
        filename=imp.filename,
        actor_id=imp.created_by_id,
        copy=bulk.uses_copy(session, copy),
        consent_header=columns.get("consent", ("consent", 0))[0],
        tags={name.lower(): tag_id for tag_id, name in tenant_tags},
    )
    tally = Tally()
    engine = engine_for_lanes(session, target.copy, writers) if after_batch else None
    parser = _Parser(_parsed_batches(rows, columns, batch_size, target.copy))
    try:
        if engine is None:
            _write_here(session, imp, target, tally, parser, after_batch)
        else:
            _write_in_lanes(session, engine, target, tally, parser, after_batch, writers)
    finally:
        parser.close()
    _show(imp, tally, with_errors_csv=True)
    imp.total_rows = tally.processed
    imp.status = ImportStatus.done
    imp.finished_at = utcnow()
    session.flush()
    for obj in list(session.identity_map.values()):
        if isinstance(obj, Contact | Tag):
            session.expire(obj)
    return tally.counts()


def _show(imp: ContactImport, tally: Tally, with_errors_csv: bool) -> None:
    for key, value in tally.values(with_errors_csv).items():
        setattr(imp, key, value)


def _write_here(
    session: Session,
    imp: ContactImport,
    target: ImportTarget,
    tally: Tally,
    batches: Iterator[ParsedBatch],
    after_batch: Callable[[], None] | None,
) -> None:
    """Every batch on ``session``, its progress flushed and ``after_batch`` called."""
    writer = BatchWriter(session, target)
    for parsed in batches:
        if target.copy:
            async_commit(session)
        create_tags(session, target, parsed.good)
        written = writer.write(parsed.good, parsed.lines)
        count = tally.add(parsed.size, parsed.errors, written)
        record_batch(session, imp, written)
        _show(imp, tally, with_errors_csv=count.errors > 0)  # rewritten when it grew
        session.flush()
        if after_batch is not None:
            after_batch()


def _write_in_lanes(
    session: Session,
    engine: Engine,
    target: ImportTarget,
    tally: Tally,
    batches: Iterator[ParsedBatch],
    commit: Callable[[], None],
    writers: int,
) -> None:
    """Every batch on one of ``writers`` lanes; ``session`` only creates the tags."""
    commit()  # the reset progress: the lanes update that row next
    lanes = Lanes(engine, target, tally, writers)
    try:
        for parsed in batches:
            if create_tags(session, target, parsed.good):
                commit()  # before a lane links contacts to them
            lanes.submit(parsed)
        lanes.finish()
    finally:
        lanes.close()
