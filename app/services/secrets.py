"""Secrets at rest (P13): where they are, and re-encrypting them under the newest key.

Every column typed `EncryptedText` holds a Fernet token. After a new key is put first
in ``FIELD_ENCRYPTION_KEYS`` (the old ones stay after it), `rotate_secrets` re-encrypts
every stored token with the new key, table by table, in primary-key order and in
batches; the caller commits after each batch. Tokens already under the newest key are
left as they are, so a run that was interrupted can simply be started again. When it
reports nothing left to rotate and nothing unreadable, the old keys can be removed.

Tokens are read and written as raw text (Core statements, the type bypassed): nothing
is decrypted into ORM objects, ``updated_at`` does not move, and no audit row per
tenant is written for what is a key change, not a change of the secrets.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Column, MetaData, Table, Text, or_, select, type_coerce, update
from sqlalchemy.orm import Session

from app.models.types import EncryptedText, KeyRing, key_ring
from app.services.exceptions import SecretDecryptionError

DEFAULT_BATCH_SIZE = 200


@dataclass(frozen=True)
class SecretTable:
    """A table with encrypted columns, and its single-column primary key."""

    table: Table
    pk: Column
    columns: tuple[Column, ...]

    @property
    def name(self) -> str:
        return self.table.name


@dataclass
class RotationBatch:
    """What one batch did: rows read, values re-encrypted, already current, unreadable."""

    table: str
    first_pk: Any
    last_pk: Any
    rows: int = 0
    rotated: int = 0
    current: int = 0
    unreadable: list[tuple[str, str, Any]] = field(default_factory=list)


def secret_tables(metadata: MetaData | None = None) -> list[SecretTable]:
    """Every table with an `EncryptedText` column (found by type, not by a list).

    :raises ValueError: for such a table without a single-column primary key.
    """
    if metadata is None:
        from app.extensions import db

        metadata = db.metadata
    found = []
    for table in metadata.sorted_tables:
        columns = tuple(c for c in table.columns if isinstance(c.type, EncryptedText))
        if not columns:
            continue
        pks = list(table.primary_key.columns)
        if len(pks) != 1:
            raise ValueError(f"{table.name}: encrypted columns need a single-column primary key")
        found.append(SecretTable(table=table, pk=pks[0], columns=columns))
    return found


def rotate_secrets(
    session: Session, batch_size: int = DEFAULT_BATCH_SIZE, tables: list[SecretTable] | None = None
) -> Iterator[RotationBatch]:
    """Re-encrypt every stored secret with the newest key, yielding after each batch.

    The caller commits after each yielded batch (services never commit). A value no
    configured key can open is reported in ``unreadable`` as (table, column, pk) and
    left untouched; the run continues.

    :raises EncryptionKeyError: when FIELD_ENCRYPTION_KEYS is empty or malformed.
    :raises ValueError: for a batch size below 1.
    """
    if batch_size < 1:
        raise ValueError("batch size must be at least 1")
    ring = key_ring()
    for spec in tables if tables is not None else secret_tables():
        after = None
        while True:
            batch = _rotate_batch(session, ring, spec, after, batch_size)
            if batch is None:
                break
            after = batch.last_pk
            yield batch


def _rotate_batch(
    session: Session, ring: KeyRing, spec: SecretTable, after: Any, batch_size: int
) -> RotationBatch | None:
    raw = [type_coerce(c, Text()).label(c.name) for c in spec.columns]
    stmt = (
        select(spec.pk, *raw)
        .where(or_(*(c.is_not(None) for c in spec.columns)))
        .order_by(spec.pk)
        .limit(batch_size)
    )
    if after is not None:
        stmt = stmt.where(spec.pk > after)
    rows = session.execute(stmt).all()
    if not rows:
        return None
    batch = RotationBatch(table=spec.name, first_pk=rows[0][0], last_pk=rows[-1][0])
    # A key change is not an edit: keep ``updated_at`` and other on-update columns as
    # they are (Core UPDATEs apply column onupdate defaults otherwise).
    keep = {c.name: c for c in spec.table.columns if c.onupdate is not None}
    for row in rows:
        batch.rows += 1
        values = {}
        for column in spec.columns:
            token = row._mapping[column.name]
            if token is None:
                continue
            try:
                new_token = ring.rotate(token)
            except SecretDecryptionError:
                batch.unreadable.append((spec.name, column.name, row[0]))
                continue
            if new_token is None:
                batch.current += 1
            else:
                # type_coerce: write the token as it is, not through EncryptedText again.
                values[column.name] = type_coerce(new_token, Text())
                batch.rotated += 1
        if values:
            session.execute(update(spec.table).where(spec.pk == row[0]).values(**keep, **values))
    return batch
