"""The tenant's contact export (P20 portability), streamed in constant memory.

One plain row per contact with its tags and consent state, fetched in batches; CSV cells
are formula-escaped. Used by the contacts screen's Export and by portability requests.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

from sqlalchemy.orm import selectinload

from app.extensions import db
from app.models.contact import Contact
from app.services.contact_import import csv_safe

EXPORT_COLUMNS = (
    "phone",
    "wa_id",
    "display_name",
    "profile_name",
    "email",
    "tags",
    "consent_state",
    "marketing_objection",
    "last_inbound_at",
    "created_at",
)
EXPORT_BATCH = 500


Guard = Callable[[], None]


def export_rows(stmt, guard: Guard | None = None) -> Iterator[dict[str, Any]]:
    """One plain dict per contact, fetched in batches (constant memory).

    ``guard`` is called before each batch and raises to stop the export mid-stream,
    e.g. when the exporting member's role loses "export contacts" (issue 8).
    """
    stmt = stmt.options(selectinload(Contact.tags)).execution_options(yield_per=EXPORT_BATCH)
    for n, contact in enumerate(db.session.scalars(stmt)):
        if guard is not None and n % EXPORT_BATCH == 0:
            guard()
        yield {
            "phone": contact.phone,
            "wa_id": contact.wa_id,
            "display_name": contact.display_name,
            "profile_name": contact.profile_name,
            "email": contact.email,
            "tags": ";".join(t.name for t in contact.tags),
            "consent_state": str(contact.consent_state),
            "marketing_objection": bool(contact.marketing_objection),
            "last_inbound_at": _iso(contact.last_inbound_at),
            "created_at": _iso(contact.created_at),
        }
        db.session.expunge(contact)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() + "Z" if value else None


def export_csv(stmt, guard: Guard | None = None) -> Iterator[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(EXPORT_COLUMNS)
    for row in export_rows(stmt, guard):
        writer.writerow([csv_safe(row[c]) for c in EXPORT_COLUMNS])
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
    yield buffer.getvalue()


def export_json(stmt, guard: Guard | None = None) -> Iterator[str]:
    yield "["
    first = True
    for row in export_rows(stmt, guard):
        yield ("\n" if first else ",\n") + json.dumps(row, ensure_ascii=False)
        first = False
    yield "\n]\n"
