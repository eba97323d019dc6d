"""Parallel writing lanes for a contact import on PostgreSQL (issue 4).

One connection gives PostgreSQL one core, and an import of new contacts spends most of
its time there (COPY into a table with six indexes, a foreign key check per contact,
three per consent event, two per tag link). So `Lanes` writes with ``n`` connections of
their own, each one batch at a time: batch k+1's statements run while batch k's do.

What stays as with one connection:

* **Each batch is one transaction** with its contacts, tag links, consent events, its
  ``contact_import.batch`` audit event and its share of the import's progress (the
  counters are incremented, its rows of the errors CSV appended), committed or rolled
  back together; the progress bar moves as batches commit.
* **A failure stops the import**: the failing lane rolls back, the other lanes roll
  back the batch they hold instead of committing it, and the error reaches the caller
  (the job marks the import failed; running it again completes it, idempotently).

Batches commit in the order they finish, not strictly in file order: a lane never waits
for another lane, so every wait is a lock wait inside PostgreSQL, where its deadlock
detector sees it (a lane waiting in Python for a batch before it, while holding its own
rows, could hang with an outside transaction in an undetectable cycle). Two lanes never
want the same row lock anyway: a file names each WhatsApp id once (the parser refuses
repeats), tags are created and committed by the caller before a batch that names them
is handed over, and each lane takes the audit chain's lock before the import's row, so
the batches' ends queue there one after the other. The caller rewrites the errors CSV
in line order at the end.

The lanes' sessions are plain SQLAlchemy sessions on the engine: they run Core
statements that name ``tenant_id`` themselves (no ORM object is flushed there), in
copies of the caller's context (tenant scope, job, app context) for the audit events.
"""

from __future__ import annotations

import contextvars
import queue
import threading
from typing import Any

from sqlalchemy import func, text, update
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from app.models.contact_import import ContactImport
from app.services.contact_import_write import (
    ERRORS_HEADER,
    BatchCount,
    BatchWriter,
    ImportTarget,
    ParsedBatch,
    Tally,
    record_batch,
)

_ASYNC_COMMIT = text("SET LOCAL synchronous_commit = off")
_IMPORT = ContactImport.__table__
_POLL_S = 0.1
_END = None  # a lane's last item


def async_commit(session: Session) -> None:
    """Let this batch's transaction commit without waiting for its WAL flush.

    ``SET LOCAL``: this transaction only, so nothing else of the session or the app
    commits asynchronously. Safe here because an import is re-runnable and idempotent:
    a PostgreSQL crash can lose only the last fraction of a second of committed batches
    (never corrupt or half-apply one: each batch and its progress counters and audit
    event commit or vanish together), the import then shows fewer processed rows and is
    still ``running``, and importing the file again creates what was lost and leaves the
    rest unchanged. The final commit (status ``done``) is synchronous and flushes the WAL
    of every batch before it (the WAL is flushed in order), so a finished import is
    durable. Nothing outside the database acts on a batch commit (no job is enqueued per
    batch).
    """
    session.execute(_ASYNC_COMMIT)


def engine_for_lanes(session: Session, copy: bool, n: int) -> Engine | None:
    """The engine to open ``n`` lanes on, or None to write on ``session`` alone: lanes
    need PostgreSQL (COPY) and a session on the engine, not one joined to an outer
    transaction on a single connection (the lanes could not see its rows)."""
    bind = session.get_bind()
    return bind if n > 1 and copy and isinstance(bind, Engine) else None


def _progress(target: ImportTarget, count: BatchCount) -> Any:
    """The import's row, incremented by one batch (lanes commit in any order)."""
    c = _IMPORT.c
    values: dict[str, Any] = {
        c.processed_rows: c.processed_rows + count.rows,
        c.created_count: c.created_count + count.created,
        c.updated_count: c.updated_count + count.updated,
        c.unchanged_count: c.unchanged_count + count.unchanged,
        c.error_count: c.error_count + count.errors,
    }
    if count.error_lines:
        values[c.errors_csv] = func.coalesce(c.errors_csv, ERRORS_HEADER) + count.error_lines
    return (
        update(_IMPORT)
        .where(c.id == target.import_id, c.tenant_id == target.tenant_id)
        .values(values)
    )


class _Stopped(Exception):
    """Another lane failed, or the caller gave up: this batch is rolled back."""


class Lanes:
    """``n`` threads, each writing batches on a connection of its own (module docstring).

    `submit` the batches in file order, then `finish` (waits for the last commit, raises
    a lane's error); `close` in a ``finally`` stops the lanes whatever happened.
    """

    def __init__(self, bind: Engine, target: ImportTarget, tally: Tally, n: int) -> None:
        self._bind = bind
        self._target = target
        self._tally = tally
        self._work: queue.Queue[ParsedBatch | None] = queue.Queue(maxsize=n)
        self._error: BaseException | None = None
        self._stop = threading.Event()
        # Each thread runs in its own copy of the caller's context (a Context can be
        # entered by one thread at a time).
        self._threads = [
            threading.Thread(
                target=contextvars.copy_context().run,
                args=(self._run,),
                name=f"import-lane-{i}",
                daemon=True,
            )
            for i in range(n)
        ]
        for thread in self._threads:
            thread.start()

    def submit(self, batch: ParsedBatch) -> None:
        """Hand the next batch of the file to a free lane (raises a lane's error)."""
        self._put(batch)

    def finish(self) -> None:
        """Wait until every submitted batch is committed; raises a lane's error."""
        for _thread in self._threads:
            self._put(_END)
        for thread in self._threads:
            thread.join()
        self._raise_error()

    def close(self) -> None:
        """Stop the lanes (rolling back what they have not committed) and join them."""
        self._stop.set()
        for thread in self._threads:
            thread.join()

    def _put(self, item: ParsedBatch | None) -> None:
        while True:
            self._raise_error()
            try:
                self._work.put(item, timeout=_POLL_S)
                return
            except queue.Full:
                continue

    def _raise_error(self) -> None:
        if self._error is not None:
            raise self._error

    def _next(self) -> ParsedBatch | None:
        while not self._stop.is_set() and self._error is None:
            try:
                return self._work.get(timeout=_POLL_S)
            except queue.Empty:
                continue
        return _END

    def _run(self) -> None:
        target = self._target
        session = Session(bind=self._bind, expire_on_commit=False)
        try:
            # The import as this session's object: the audit events' subject.
            imp = session.get(ContactImport, target.import_id)
            session.commit()
            writer = BatchWriter(session, target)
            while (batch := self._next()) is not _END:
                async_commit(session)
                written = writer.write(batch.good, batch.lines)
                count = self._tally.add(batch.size, batch.errors, written)
                record_batch(session, imp, written)  # the chain's lock, then the row's
                session.execute(_progress(target, count))
                if self._stop.is_set() or self._error is not None:
                    raise _Stopped
                session.commit()
        except _Stopped:
            session.rollback()
        except BaseException as exc:  # handed to the caller's thread, raised there
            session.rollback()
            if self._error is None:
                self._error = exc
        finally:
            session.close()
