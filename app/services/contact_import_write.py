"""Writing one batch of a contact import (issue 4) with a handful of set-based statements.

`BatchWriter.write` takes the good rows of a batch (parsed by `app.services.contact_import`)
and creates or updates their contacts on its session: one SELECT of the existing
contacts, new contacts, tag links and consent events bulk-inserted (`app.services.bulk`:
COPY on PostgreSQL, multi-row INSERTs elsewhere), one executemany UPDATE of the changed
contacts. It neither counts nor audits: `Tally` keeps the import's counters and
`record_batch` writes the batch's one ``contact_import.batch`` audit event, so the same
writer serves the caller's session and the parallel lanes of
`app.services.contact_import_lanes`, which write on connections of their own.

These writes bypass the ORM (no tenant stamping, no per-row audit capture): every
statement names ``tenant_id`` itself (DESIGN: Core/bulk SQL takes tenant_id explicitly).
"""

from __future__ import annotations

import csv
import io
import threading
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Integer, String, any_, bindparam, cast, select, update
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
from app.models.contact_import import ContactImport
from app.models.mixins import utcnow
from app.services import audit, bulk

ERROR_COLUMNS = ("line", "column", "value", "reason")
# Spreadsheet programs run cells starting with these as formulas (CSV injection).
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
OPTED_OUT = (
    "opted out earlier: an import cannot opt them back in (only the person can); row skipped"
)
CONSENT_STATE = {
    ConsentAction.opt_in: ConsentState.opted_in,
    ConsentAction.opt_out: ConsentState.opted_out,
}


@dataclass
class RowError:
    line: int
    column: str
    value: str
    reason: str


@dataclass(slots=True)
class Row:
    """A good row of the file, normalised."""

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


@dataclass
class ParsedBatch:
    """A batch of the file as the parser hands it over."""

    size: int  # rows read (good and bad)
    lines: tuple[int, int]
    good: list[Row]
    errors: list[list[RowError]]  # one list per bad row


@dataclass
class Written:
    """What `BatchWriter.write` did with one batch."""

    lines: tuple[int, int]
    created_ids: list[int]
    updated_ids: list[int]
    unchanged: int
    consent_events: int
    refused: list[list[RowError]]  # rows skipped while writing (one list per row)


@dataclass
class ImportTarget:
    """The import being written, as plain values: lanes read it from other threads, so it
    holds no ORM object (whose expired attributes would load on the wrong session)."""

    import_id: int
    tenant_id: int
    filename: str
    actor_id: int | None
    copy: bool  # new rows by COPY (PostgreSQL); see app.services.bulk
    consent_header: str
    tags: dict[str, int]  # the tenant's tags by lower-case name (grown by `create_tags`)
    sequence: str | None = None  # contact ids' sequence, looked up once (COPY)


def csv_safe(value: Any) -> Any:
    """A cell value a spreadsheet will not evaluate as a formula."""
    if value is None:
        return ""
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES):
        return "'" + value
    return value


def error_lines(bad: list[list[RowError]]) -> str:
    """Rows of the errors CSV for ``bad`` rows (one list of errors each), without the
    header; cells formula-escaped."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    for row_errors in bad:
        for e in row_errors:
            writer.writerow([e.line, csv_safe(e.column), csv_safe(e.value), csv_safe(e.reason)])
    return buffer.getvalue()


ERRORS_HEADER = ",".join(ERROR_COLUMNS) + "\r\n"  # as csv.writer ends its lines


@dataclass
class BatchCount:
    """One batch's share of the import's counters, and its rows of the errors CSV."""

    rows: int
    created: int
    updated: int
    unchanged: int
    errors: int
    error_lines: str  # "" when the batch had no bad row


class Tally:
    """The import's counters and errors, added to batch by batch. Thread-safe: parallel
    lanes add their batches as they finish, in any order; the errors CSV is put back in
    line order (a batch's lines all come before the next batch's)."""

    def __init__(self) -> None:
        self.processed = self.created = self.updated = self.unchanged = self.errors = 0
        self._error_parts: list[tuple[int, str]] = []  # (batch's first line, its CSV rows)
        self._lock = threading.Lock()

    def add(self, size: int, parse_errors: list[list[RowError]], written: Written) -> BatchCount:
        """Count one batch of ``size`` rows (good and bad); its share."""
        bad = sorted(parse_errors + written.refused, key=lambda errors: errors[0].line)
        count = BatchCount(
            size,
            len(written.created_ids),
            len(written.updated_ids),
            written.unchanged,
            len(bad),
            error_lines(bad) if bad else "",
        )
        with self._lock:
            self.processed += count.rows
            self.created += count.created
            self.updated += count.updated
            self.unchanged += count.unchanged
            self.errors += count.errors
            if bad:
                self._error_parts.append((bad[0][0].line, count.error_lines))
        return count

    def errors_csv(self) -> str | None:
        """The whole errors CSV, rows in line order; None without errors."""
        with self._lock:
            parts = sorted(self._error_parts)
        return ERRORS_HEADER + "".join(text for _line, text in parts) if parts else None

    def values(self, with_errors_csv: bool) -> dict[str, Any]:
        """The ContactImport columns to store (``errors_csv`` only when asked)."""
        values: dict[str, Any] = {
            "processed_rows": self.processed,
            "created_count": self.created,
            "updated_count": self.updated,
            "unchanged_count": self.unchanged,
            "error_count": self.errors,
        }
        if with_errors_csv:
            values["errors_csv"] = self.errors_csv()
        return values

    def counts(self) -> dict[str, int]:
        """What `run_import` returns."""
        return {
            "rows": self.processed,
            "created": self.created,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "errors": self.errors,
        }


def record_batch(session: Session, imp: ContactImport, written: Written) -> None:
    """The batch's one audit event, in ``session``'s transaction: the import, the lines and
    the ids of the contacts created and updated (no personal data)."""
    audit.record(
        "contact_import.batch",
        imp,
        session=session,
        lines=f"{written.lines[0]}-{written.lines[1]}",
        created=len(written.created_ids),
        updated=len(written.updated_ids),
        unchanged=written.unchanged,
        consent_events=written.consent_events,
        created_ids=written.created_ids,
        updated_ids=written.updated_ids,
        refused=len(written.refused),
    )


_CONTACT = Contact.__table__
_EXISTING = (
    _CONTACT.c.id,
    _CONTACT.c.wa_id,
    _CONTACT.c.phone,
    _CONTACT.c.display_name,
    _CONTACT.c.email,
    _CONTACT.c.notes,
    _CONTACT.c.consent_state,
)
# The columns an import may change, in the order of _EXISTING after id and wa_id.
_UPDATABLE = ("phone", "display_name", "email", "notes", "consent_state")
_UPDATE_BINDS = tuple(f"v_{c}" for c in _UPDATABLE)
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


def create_tags(session: Session, target: ImportTarget, rows: list[Row]) -> bool:
    """Create the tags ``rows`` name that the tenant lacks, through the ORM (audited and
    tenant-guarded as usual); True when some were created (and flushed, not committed)."""
    missing: dict[str, Tag] = {}
    for row in rows:
        for name in row.tags:
            key = name.lower()
            if key not in target.tags and key not in missing:
                missing[key] = Tag(tenant_id=target.tenant_id, name=name)
    if not missing:
        return False
    session.add_all(missing.values())
    session.flush()
    target.tags.update({key: tag.id for key, tag in missing.items()})
    return True


@dataclass
class _Plan:
    """What to write for one batch, sorted row by row (`sort`)."""

    target: ImportTarget
    now: datetime
    new: list[Row] = field(default_factory=list)
    changed: list[dict[str, Any]] = field(default_factory=list)  # executemany parameters
    links: list[tuple[Row, int | None]] = field(default_factory=list)  # None: a new contact
    consents: list[tuple[Row, int | None]] = field(default_factory=list)
    linked: set[tuple[int, int]] = field(default_factory=set)
    refused: list[list[RowError]] = field(default_factory=list)
    unchanged: int = 0

    def sort(
        self, rows: list[Row], existing: dict[str, tuple], linked: set[tuple[int, int]]
    ) -> None:
        """New contacts, changes (only fields a cell sets and that differ: an empty
        cell changes nothing), tag links and consent events still missing."""
        self.linked = linked
        tags, now = self.target.tags, self.now
        for row in rows:
            wanted = CONSENT_STATE.get(row.consent)
            found = existing.get(row.wa_id)
            if found is None:
                self.new.append(row)
                if row.tags:
                    self.links.append((row, None))
                if wanted is not None:
                    self.consents.append((row, None))
                continue
            cid, old = found[0], found[2:]  # phone, display_name, email, notes, consent
            if wanted == ConsentState.opted_in and old[4] == ConsentState.opted_out:
                # The person's own opt-out (STOP, WhatsApp settings, a request) outranks
                # a file's claim of consent: only they can opt back in (P9).
                header = self.target.consent_header
                self.refused.append([RowError(row.line, header, "yes", OPTED_OUT)])
                continue
            fresh = (row.phone, row.display_name, row.email, row.notes, wanted)
            merged = fresh if None not in fresh else _merge(fresh, old)
            if merged[4] != old[4]:
                self.consents.append((row, cid))
            new_tags = any((cid, tags[t.lower()]) not in linked for t in row.tags)
            if new_tags:
                self.links.append((row, cid))
            if merged != old:
                values = dict(zip(_UPDATE_BINDS, merged, strict=True))
                self.changed.append({"b_id": cid, "v_updated_at": now, **values})
            elif not new_tags:
                self.unchanged += 1


def _merge(fresh: tuple, old: tuple) -> tuple:
    """``fresh`` where it has a value, else ``old``."""
    return tuple(o if f is None else f for f, o in zip(fresh, old, strict=True))


class BatchWriter:
    """Writes batches of rows on one session (the tags they name must exist)."""

    def __init__(self, session: Session, target: ImportTarget) -> None:
        self.session = session
        self.target = target

    def write(self, rows: list[Row], lines: tuple[int, int]) -> Written:
        """Create or update ``rows`` with a handful of set-based statements.

        One SELECT finds the contacts that exist; new contacts, tag links and consent
        events are bulk-inserted; changed contacts get one executemany UPDATE.
        """
        if not rows:
            return Written(lines, [], [], 0, 0, [])
        existing = self._existing(rows)
        plan = _Plan(self.target, utcnow())
        plan.sort(rows, existing, self._linked(rows, existing))
        if self.target.copy:
            new_ids = self.copy_new(plan.new, plan.links, plan.consents, plan.linked, plan.now)
        else:
            new_ids = self.insert_new(plan.new, plan.links, plan.consents, plan.linked, plan.now)
        if plan.changed:
            self.session.execute(
                _UPDATE_CONTACT.where(_CONTACT.c.tenant_id == self.target.tenant_id),
                plan.changed,
            )
        updated_ids = sorted(
            {c["b_id"] for c in plan.changed} | {cid for _, cid in plan.links if cid}
        )
        return Written(
            lines, new_ids, updated_ids, plan.unchanged, len(plan.consents), plan.refused
        )

    def _existing(self, rows: list[Row]) -> dict[str, tuple]:
        """The tenant's contacts among ``rows`` by WhatsApp id, as plain tuples in the
        order of ``_EXISTING`` (Core columns: no ORM loading; on PostgreSQL one array
        parameter, where an IN list renders one bind per value)."""
        c, wa_ids = _CONTACT.c, [r.wa_id for r in rows]
        known = c.wa_id == any_(cast(wa_ids, ARRAY(String))) if self.target.copy else None
        stmt = select(*_EXISTING).where(
            c.tenant_id == self.target.tenant_id,
            known if known is not None else c.wa_id.in_(wa_ids),
        )
        return {found[1]: tuple(found) for found in self.session.execute(stmt).all()}

    def _linked(self, rows: list[Row], existing: dict[str, tuple]) -> set[tuple[int, int]]:
        """(contact id, tag id) of the existing contacts' tag links, as plain tuples."""
        if not existing or not any(r.tags for r in rows):
            return set()
        link, ids = contact_tag.c, [found[0] for found in existing.values()]
        stmt = select(link.contact_id, link.tag_id).where(
            link.contact_id == any_(cast(ids, ARRAY(Integer)))
            if self.target.copy
            else link.contact_id.in_(ids)
        )
        return {(contact_id, tag_id) for contact_id, tag_id in self.session.execute(stmt).all()}

    def copy_new(
        self,
        new: list[Row],
        links: list[tuple[Row, int | None]],
        consents: list[tuple[Row, int | None]],
        linked: set[tuple[int, int]],
        now: datetime,
    ) -> list[int]:
        """New contacts, tag links and consent events by COPY (PostgreSQL); new ids.

        The rows' fields were escaped by the parser thread (``Row.copy``); here only
        the ids, tenant and timestamps are added, so this thread spends its time
        waiting on the database (the GIL free for the parser).
        """
        session, target = self.session, self.target
        tenant_id = target.tenant_id
        if new and target.sequence is None:
            target.sequence = bulk.serial_sequence(session, _CONTACT)
        new_ids = bulk.next_ids(session, _CONTACT, len(new), target.sequence) if new else []
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
        tags = target.tags
        lines = []
        for row, contact_id in links:
            cid = contact_id or created_ids[row.wa_id]
            for name in row.tags:
                tag_id = tags[name.lower()]
                if (cid, tag_id) not in linked:
                    lines.append(f"{cid}\t{tag_id}\n")
        bulk.copy_lines(session, contact_tag, ("contact_id", "tag_id"), lines)
        evidence = bulk.copy_text(f"import {target.filename} line ")
        tail = f"\t{stamp}\t{bulk.copy_text(target.actor_id)}\n"
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
        new: list[Row],
        links: list[tuple[Row, int | None]],
        consents: list[tuple[Row, int | None]],
        linked: set[tuple[int, int]],
        now: datetime,
    ) -> list[int]:
        """`copy_new` with multi-row INSERTs (SQLite, or ``copy=False``); new ids."""
        session, target = self.session, self.target
        tenant_id = target.tenant_id
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
                    CONSENT_STATE.get(row.consent, ConsentState.unknown),
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
                tag_id = target.tags[name.lower()]
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
                    f"import {target.filename} line {row.line}",
                    now,
                    target.actor_id,
                )
                for row, contact_id in consents
            ],
            False,
        )
        return new_ids
