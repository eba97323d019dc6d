"""The tenant's contact export (P20 portability), streamed in constant memory.

One plain row per contact with its tags and consent state, fetched in batches; CSV cells
are formula-escaped. Used by the contacts screen's Export and by portability requests.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
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


def export_rows(stmt) -> Iterator[dict[str, Any]]:
    """One plain dict per contact, fetched in batches (constant memory)."""
    stmt = stmt.options(selectinload(Contact.tags)).execution_options(yield_per=EXPORT_BATCH)
    for contact in db.session.scalars(stmt):
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


def export_csv(stmt) -> Iterator[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(EXPORT_COLUMNS)
    for row in export_rows(stmt):
        writer.writerow([csv_safe(row[c]) for c in EXPORT_COLUMNS])
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
    yield buffer.getvalue()


def export_json(stmt) -> Iterator[str]:
    yield "["
    first = True
    for row in export_rows(stmt):
        yield ("\n" if first else ",\n") + json.dumps(row, ensure_ascii=False)
        first = False
    yield "\n]\n"
