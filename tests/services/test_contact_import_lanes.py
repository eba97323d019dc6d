"""Parallel lanes of the contact import (PostgreSQL, the job's ``writers``): batches written
on connections of their own, each committed whole with its progress and audit event; a
failure rolls back what is not committed and reaches the caller.

Lanes cannot see a test's outer transaction, so these tests commit for real on a
session of their own (in Acme's scope, as the job runs) and remove what they wrote
afterwards (the audit tables are emptied, as tests/services/test_audit.py does).
"""

from __future__ import annotations

import csv
import io
import threading
from collections.abc import Iterator

import pytest
from sqlalchemy import delete, func, select, text

from app.extensions import db
from app.models.audit import AuditEvent
from app.models.contact import ConsentEvent, ConsentSource, ConsentState, Contact, Tag
from app.models.contact_import import ContactImport, ImportStatus
from app.models.tenant import Tenant
from app.services import audit
from app.services import contact_import as imports
from app.tenancy import tenant_scope

FILENAME = "lanes.csv"
TAG = "lane-tag"


def _phone(i: int) -> str:
    return f"99005{i:05d}"


def _wa_id(i: int) -> str:
    return f"91{_phone(i)}"


@pytest.fixture
def committed(app) -> Iterator[tuple]:
    """(session on the engine, Acme's id): what the session commits is real."""
    session = db.session.session_factory.class_(db=db, bind=db.engine)
    tenant_id = session.scalars(select(Tenant.id).where(Tenant.slug == "acme")).one()
    token = audit.set_job_context("test-lanes", None)
    try:
        with tenant_scope(tenant_id):
            yield session, tenant_id
    finally:
        audit.reset_job_context(token)
        session.rollback()
        session.close()
        contact, tag = Contact.__table__, Tag.__table__
        with db.engine.begin() as conn:  # committed for real: remove it
            conn.execute(
                delete(contact).where(
                    contact.c.tenant_id == tenant_id, contact.c.wa_id.like(_wa_id(0)[:7] + "%")
                )
            )  # tag links and consent events go with their contacts (ON DELETE CASCADE)
            conn.execute(delete(tag).where(tag.c.tenant_id == tenant_id, tag.c.name == TAG))
            conn.execute(delete(ContactImport.__table__).where(ContactImport.filename == FILENAME))
            conn.execute(text("TRUNCATE audit_event, audit_chain_head"))


def _import(session, tenant_id: int, content: str) -> ContactImport:
    found = imports.preview(content.encode())
    imp = ContactImport(
        tenant_id=tenant_id,
        filename=FILENAME,
        content=content.encode(),
        mapping=found.mapping,
        total_rows=found.total_rows,
        status=ImportStatus.running,
    )
    session.add(imp)
    session.commit()
    return imp


def _run(session, imp: ContactImport) -> dict[str, int]:
    counts = imports.run_import(session, imp, batch_size=3, after_batch=session.commit, writers=2)
    session.commit()
    assert not [t for t in threading.enumerate() if t.name.startswith("import-lane")]
    return counts


def _file() -> str:
    lines = ["phone,name,tags,consent"]
    for i in range(20):
        if i == 4:
            lines.append("12345,Bad Phone,,")  # line 6
        elif i == 13:
            lines.append(f"{_phone(1)},Again,,")  # line 15: duplicate of line 3
        else:
            tags = TAG if i % 2 else ""
            lines.append(f"{_phone(i)},Lane {i},{tags},{'yes' if i % 3 == 0 else ''}")
    return "\n".join(lines) + "\n"


def test_lanes_commit_every_batch_in_file_order_and_a_second_run_changes_nothing(committed):
    session, tenant_id = committed
    imp = _import(session, tenant_id, _file())
    counts = _run(session, imp)
    assert counts == {"rows": 20, "created": 18, "updated": 0, "unchanged": 0, "errors": 2}

    session.expire_all()
    stored = session.get(ContactImport, imp.id)
    assert stored.status == ImportStatus.done
    assert (stored.processed_rows, stored.total_rows, stored.created_count) == (20, 20, 18)
    errors = list(csv.DictReader(io.StringIO(stored.errors_csv)))
    assert [e["line"] for e in errors] == ["6", "15"]
    contacts = session.scalars(
        select(Contact).where(Contact.tenant_id == tenant_id, Contact.wa_id.like("9199005%"))
    ).all()
    assert len(contacts) == 18
    by_wa_id = {c.wa_id: c for c in contacts}
    assert by_wa_id[_wa_id(3)].display_name == "Lane 3"
    assert [t.name for t in by_wa_id[_wa_id(3)].tags] == [TAG]
    assert by_wa_id[_wa_id(2)].tags == []
    assert by_wa_id[_wa_id(0)].consent_state == ConsentState.opted_in
    assert by_wa_id[_wa_id(1)].consent_state == ConsentState.unknown
    events = session.scalars(
        select(ConsentEvent).where(ConsentEvent.contact_id == by_wa_id[_wa_id(6)].id)
    ).all()
    assert [(e.source, e.evidence) for e in events] == [
        (ConsentSource.import_, f"import {FILENAME} line 8")
    ]
    # One audit event per batch (chained as the batches committed), naming what it created.
    batches = session.scalars(
        select(AuditEvent)
        .where(AuditEvent.action == "contact_import.batch")
        .where(AuditEvent.object_id == str(imp.id))
        .order_by(AuditEvent.seq)
    ).all()
    assert sorted(e.details["lines"] for e in batches) == sorted(
        [*(f"{n}-{n + 2}" for n in range(2, 18, 3)), "20-21"]
    )
    assert all(e.tenant_id == tenant_id and e.job_id == "test-lanes" for e in batches)
    created = sorted(i for e in batches for i in e.details["created_ids"])
    assert created == sorted(c.id for c in contacts)
    _checked, problems = audit.verify_chains(session)
    assert problems == []

    again = _run(session, _import(session, tenant_id, _file()))
    assert again == {"rows": 20, "created": 0, "updated": 0, "unchanged": 18, "errors": 2}


def test_a_failing_batch_stops_the_lanes_and_only_whole_batches_are_committed(
    committed, monkeypatch
):
    session, tenant_id = committed
    content = "phone,name\n" + "".join(f"{_phone(i)},P {i}\n" for i in range(15))
    imp = _import(session, tenant_id, content)
    write = imports.BatchWriter.write

    def fail_on_line_8(self, rows, lines):
        if lines[0] == 8:  # the third batch (rows 6-8)
            raise RuntimeError("database gone")
        return write(self, rows, lines)

    monkeypatch.setattr(imports.BatchWriter, "write", fail_on_line_8)
    with pytest.raises(RuntimeError, match="database gone"):
        imports.run_import(session, imp, batch_size=3, after_batch=session.commit, writers=2)
    session.rollback()
    assert not [t for t in threading.enumerate() if t.name.startswith("import-")]

    landed = session.scalars(
        select(Contact.wa_id).where(Contact.tenant_id == tenant_id, Contact.wa_id.like("9199005%"))
    ).all()
    batches = {i // 3 for i in range(15) if _wa_id(i) in landed}
    assert 2 not in batches
    assert sorted(landed) == [_wa_id(i) for i in range(15) if i // 3 in batches]  # whole
    stored = session.get(ContactImport, imp.id)
    session.refresh(stored)
    assert stored.processed_rows == stored.created_count == len(landed)
    assert session.scalar(
        select(func.count(AuditEvent.id)).where(
            AuditEvent.action == "contact_import.batch", AuditEvent.object_id == str(imp.id)
        )
    ) == len(batches)

    # Running the file again (as "retry" does) completes it: the rest lands, nothing twice.
    monkeypatch.setattr(imports.BatchWriter, "write", write)
    again = _run(session, _import(session, tenant_id, content))
    assert again["created"] == 15 - len(landed) and again["unchanged"] == len(landed)
    assert (
        session.scalar(
            select(func.count(Contact.id)).where(
                Contact.tenant_id == tenant_id, Contact.wa_id.like("9199005%")
            )
        )
        == 15
    )
