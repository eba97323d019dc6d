"""Set-based writes for imports: many rows per statement, COPY on PostgreSQL.

`insert_rows` writes rows (tuples in the order of ``columns``) into a table;
`insert_with_ids` also gives each row its primary key. On PostgreSQL both stream the
rows with ``COPY ... FROM STDIN`` (ids are drawn from the table's sequence first);
elsewhere (SQLite in ``make run``) they use SQLAlchemy's multi-row INSERT. Both go
through the session's connection, so they are part of its transaction. For callers
that format the rows themselves (the contact import escapes fields in its parser
thread), `next_ids` and `copy_lines` are the two halves of `insert_with_ids`.

These writes bypass the ORM: no flush hooks, so no tenant stamping and no per-row audit
capture. Callers set ``tenant_id`` on every row themselves and record one audit event
for the batch (see `app.services.contact_import`).
"""

from __future__ import annotations

import enum
import functools
import io
import re
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Table, insert
from sqlalchemy.orm import Session

# COPY's text format: these characters are written as backslash escapes.
_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})
_NEEDS_ESCAPE = re.compile(r"[\\\t\n\r]").search


def copy_text(value: Any) -> str:
    """``value`` as a field of COPY's text format."""
    kind = value.__class__
    if kind is str:
        # str.translate looks every character up in a dict: search first (in C).
        if _NEEDS_ESCAPE(value) is None:
            return value
        return value.translate(_COPY_ESCAPES)
    if value is None:
        return "\\N"
    if kind is int:
        return str(value)
    return _copy_other(value)


@functools.lru_cache(maxsize=256)
def _copy_other(value: Any) -> str:
    """Booleans, enum members, datetimes (a batch repeats a few of them: cached)."""
    if value is True or value is False:
        return "t" if value else "f"
    if isinstance(value, enum.Enum):
        return copy_text(value.value)
    if isinstance(value, datetime):
        return value.isoformat(sep=" ")
    return str(value).translate(_COPY_ESCAPES)


def _is_postgresql(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def _copy(session: Session, table: Table, columns: Sequence[str], rows: Sequence[tuple]) -> None:
    buffer = io.StringIO()
    buffer.writelines("\t".join(map(copy_text, row)) + "\n" for row in rows)
    buffer.seek(0)
    names = ", ".join(f'"{c}"' for c in columns)
    dbapi = session.connection().connection.driver_connection
    with dbapi.cursor() as cursor:
        cursor.copy_expert(f'COPY "{table.name}" ({names}) FROM STDIN', buffer)


def uses_copy(session: Session, copy: bool | None = None) -> bool:
    """Whether the writes here use COPY: ``copy`` if given, else on PostgreSQL."""
    return copy if copy is not None else _is_postgresql(session)


def serial_sequence(session: Session, table: Table) -> str:
    """The name of the sequence behind ``table``'s primary key (PostgreSQL)."""
    (pk,) = table.primary_key.columns
    dbapi = session.connection().connection.driver_connection
    with dbapi.cursor() as cursor:
        cursor.execute("SELECT pg_get_serial_sequence(%s, %s)", (table.name, pk.name))
        (sequence,) = cursor.fetchone()
    return sequence


def next_ids(session: Session, table: Table, n: int, sequence: str | None = None) -> list[int]:
    """``n`` new primary keys of ``table`` from its sequence (PostgreSQL), in order.

    Pass ``sequence`` (`serial_sequence`) to save a round trip per call; it is not
    looked up inside the query, where pg_get_serial_sequence() would run for every row.
    """
    sequence = sequence or serial_sequence(session, table)
    dbapi = session.connection().connection.driver_connection
    with dbapi.cursor() as cursor:
        cursor.execute("SELECT nextval(%s::regclass) FROM generate_series(1, %s)", (sequence, n))
        return [new_id for (new_id,) in cursor.fetchall()]


def copy_lines(session: Session, table: Table, columns: Sequence[str], lines: list[str]) -> None:
    """COPY ``lines`` (each one row of COPY's text format, ending in a newline; fields
    escaped with `copy_text`) into ``columns`` of ``table`` (PostgreSQL)."""
    if not lines:
        return
    names = ", ".join(f'"{c}"' for c in columns)
    dbapi = session.connection().connection.driver_connection
    with dbapi.cursor() as cursor:
        cursor.copy_expert(f'COPY "{table.name}" ({names}) FROM STDIN', io.StringIO("".join(lines)))


def insert_rows(
    session: Session,
    table: Table,
    columns: Sequence[str],
    rows: Sequence[tuple],
    copy: bool | None = None,
) -> None:
    """Insert ``rows`` (tuples of values in the order of ``columns``) into ``table``.

    ``copy`` forces (True) or avoids (False) COPY; by default COPY on PostgreSQL.
    """
    if not rows:
        return
    if copy if copy is not None else _is_postgresql(session):
        _copy(session, table, columns, rows)
    else:
        session.execute(insert(table), [dict(zip(columns, row, strict=True)) for row in rows])


def insert_with_ids(
    session: Session,
    table: Table,
    columns: Sequence[str],
    rows: Sequence[tuple],
    copy: bool | None = None,
) -> list[int]:
    """Insert ``rows`` like `insert_rows` and return their new ids, in order."""
    if not rows:
        return []
    (pk,) = table.primary_key.columns
    if copy if copy is not None else _is_postgresql(session):
        ids = next_ids(session, table, len(rows))
        _copy(
            session,
            table,
            [pk.name, *columns],
            [(new_id, *row) for new_id, row in zip(ids, rows, strict=True)],
        )
        return ids
    result = session.execute(
        insert(table).returning(pk, sort_by_parameter_order=True),
        [dict(zip(columns, row, strict=True)) for row in rows],
    )
    return [new_id for (new_id,) in result]
