"""Contact import service: parsing, guessed mapping, create/update by phone, tags, consent
only from a consent column, bad rows reported by line, idempotent re-import, batches."""

from __future__ import annotations

import csv
import io
import threading

import pytest
from sqlalchemy import func, select

from app.extensions import db
from app.models.audit import AuditEvent
from app.models.contact import ConsentEvent, ConsentSource, ConsentState, Contact, Tag
from app.models.contact_import import ContactImport, ImportStatus
from app.services import contact_import as imports
from app.services.exceptions import ValidationError
from app.tenancy import tenant_scope

GOOD = (
    "Mobile,Full Name,E-mail,Tags,Consent,City\n"
    "+91 99001 10001,Asha Verma,asha@example.com,vip;import-new,yes,Pune\n"
    "099001 10002,Bala Iyer,,import-new,no,Chennai\n"
    "9900110003,Chitra Rao,,,,Mumbai\n"
)


def _import(tenant_id: int, text: str, mapping: dict | None = None, **kw) -> ContactImport:
    content = text.encode()
    found = imports.preview(content)
    imp = ContactImport(
        tenant_id=tenant_id,
        filename=kw.get("filename", "people.csv"),
        content=content,
        mapping=mapping or found.mapping,
        total_rows=found.total_rows,
        status=ImportStatus.queued,
    )
    db.session.add(imp)
    db.session.flush()
    return imp


def _contact(tenant_id: int, wa_id: str) -> Contact | None:
    return db.session.scalars(
        select(Contact).where(Contact.tenant_id == tenant_id, Contact.wa_id == wa_id)
    ).one_or_none()


def _events(tenant_id: int) -> int:
    return db.session.scalar(
        select(func.count(ConsentEvent.id)).where(ConsentEvent.tenant_id == tenant_id)
    )


def _errors(imp: ContactImport) -> list[dict]:
    return list(csv.DictReader(io.StringIO(imp.errors_csv or "")))


def test_preview_shows_the_first_rows_and_guesses_the_mapping():
    rows = "".join(f"9900{i:06d},Name {i}\n" for i in range(25))
    found = imports.preview(("\ufeffPhone Number,Name\n" + rows).encode())
    assert found.headers == ["Phone Number", "Name"]
    assert len(found.rows) == 10 and found.total_rows == 25
    assert found.mapping == {"Phone Number": "phone", "Name": "display_name"}
    assert imports.preview(GOOD.encode()).mapping == {
        "Mobile": "phone",
        "Full Name": "display_name",
        "E-mail": "email",
        "Tags": "tags",
        "Consent": "consent",
        "City": "ignore",
    }


@pytest.mark.parametrize(
    ("mapping", "message"),
    [
        ({"a": "display_name", "b": "ignore"}, "phone"),
        ({"a": "phone", "b": "phone"}, "one column only"),
        ({"a": "phone", "b": "password"}, "Unknown field"),
    ],
)
def test_a_bad_mapping_is_refused(mapping, message):
    with pytest.raises(ValidationError, match=message):
        imports.validate_mapping(["a", "b"], mapping)


@pytest.mark.parametrize(
    ("content", "message"),
    [(b"", "empty"), (b"a,a\n1,2\n", "differ"), (b"\xff\xfe", "UTF-8")],
)
def test_unusable_files_are_refused(content, message):
    with pytest.raises(ValidationError, match=message):
        imports.preview(content)


def test_good_file_creates_contacts_with_tags_and_consent(tenant_a):
    with tenant_scope(tenant_a.id):
        before = _events(tenant_a.id)
        imp = _import(tenant_a.id, GOOD)
        counts = imports.run_import(db.session, imp)
        assert counts == {"rows": 3, "created": 3, "updated": 0, "unchanged": 0, "errors": 0}
        assert imp.status == ImportStatus.done and imp.finished_at is not None
        assert imp.processed_rows == imp.total_rows == 3 and imp.errors_csv is None
        asha = _contact(tenant_a.id, "919900110001")
        assert asha.phone == "+919900110001" and asha.display_name == "Asha Verma"
        assert asha.email == "asha@example.com"
        assert sorted(t.name for t in asha.tags) == ["import-new", "vip"]
        assert asha.consent_state == ConsentState.opted_in
        event = asha.consent_events[0]
        assert event.source == ConsentSource.import_
        assert event.evidence == "import people.csv line 2"
        assert _contact(tenant_a.id, "919900110002").consent_state == ConsentState.opted_out
        assert _contact(tenant_a.id, "919900110003").consent_state == ConsentState.unknown
        assert _events(tenant_a.id) == before + 2
        # The missing tag was created once, in this tenant.
        assert (
            db.session.scalar(
                select(func.count(Tag.id)).where(
                    Tag.tenant_id == tenant_a.id, Tag.name == "import-new"
                )
            )
            == 1
        )


def test_without_a_consent_column_no_consent_is_recorded(tenant_a):
    with tenant_scope(tenant_a.id):
        before = _events(tenant_a.id)
        imp = _import(
            tenant_a.id,
            "phone,name,opt in\n9900110004,Dev,yes\n",
            mapping={"phone": "phone", "name": "display_name", "opt in": "ignore"},
        )
        imports.run_import(db.session, imp)
        assert _contact(tenant_a.id, "919900110004").consent_state == ConsentState.unknown
        assert _events(tenant_a.id) == before


def test_bad_rows_are_reported_with_line_numbers_and_good_rows_land(tenant_a):
    text = (
        "phone,name,consent\n"  # line 1
        "9900110011,Good One,yes\n"  # 2
        "12345,Bad Phone,\n"  # 3
        "\n"  # 4: blank, skipped
        "+91 99001 10011,Same Again,\n"  # 5: duplicate of line 2
        "9900110012,Maybe,perhaps\n"  # 6: unknown consent value
        ",No Phone,\n"  # 7
        "9900110013,Good Two,\n"  # 8
        '"=HYPERLINK(""http://evil"",""x"")",Formula,\n'  # 9
    )
    with tenant_scope(tenant_a.id):
        imp = _import(tenant_a.id, text)
        counts = imports.run_import(db.session, imp, batch_size=2)
        assert counts["created"] == 2 and counts["errors"] == 5
        errors = _errors(imp)
        assert [(e["line"], e["column"]) for e in errors] == [
            ("3", "phone"),
            ("5", "phone"),
            ("6", "consent"),
            ("7", "phone"),
            ("9", "phone"),
        ]
        assert errors[0]["reason"] == "invalid phone number"
        assert "line 2" in errors[1]["reason"] and "line 5" in errors[1]["reason"]
        assert errors[2]["reason"].startswith("unknown consent value")
        assert errors[2]["value"] == "perhaps"
        assert errors[3]["reason"] == "phone is missing"
        assert errors[4]["value"] == '\'=HYPERLINK("http://evil","x")'  # formula-escaped
        assert _contact(tenant_a.id, "919900110011").display_name == "Good One"
        assert _contact(tenant_a.id, "919900110013") is not None
        assert _contact(tenant_a.id, "919900110012") is None
        assert imp.processed_rows == imp.total_rows == 7  # the blank line is skipped


# COPY is PostgreSQL's path; the multi-row INSERTs and IN lists are the portable one
# (SQLite in `make run`): both must create, update and leave alone the same way.
BOTH_PATHS = pytest.mark.parametrize("copy", [True, False], ids=["copy", "portable"])


@BOTH_PATHS
def test_same_file_twice_changes_nothing_the_second_time(tenant_a, copy):
    with tenant_scope(tenant_a.id):
        first = imports.run_import(db.session, _import(tenant_a.id, GOOD), copy=copy)
        assert first["created"] == 3
        events = _events(tenant_a.id)
        second = imports.run_import(db.session, _import(tenant_a.id, GOOD), copy=copy)
        assert second == {"rows": 3, "created": 0, "updated": 0, "unchanged": 3, "errors": 0}
        assert _events(tenant_a.id) == events


@BOTH_PATHS
def test_existing_contacts_are_updated_by_phone_only_where_the_file_differs(tenant_a, copy):
    with tenant_scope(tenant_a.id):
        imports.run_import(db.session, _import(tenant_a.id, GOOD), copy=copy)
        changed = (
            "phone,name,email,consent\n"
            "+919900110001,Asha V.,,yes\n"  # new name; empty email keeps the old one
            "+919900110002,Bala Iyer,,\n"  # nothing new
            "+919900110003,Chitra Rao,,yes\n"  # consent changes
        )
        events = _events(tenant_a.id)
        counts = imports.run_import(db.session, _import(tenant_a.id, changed), copy=copy)
        assert (counts["created"], counts["updated"], counts["unchanged"]) == (0, 2, 1)
        asha = _contact(tenant_a.id, "919900110001")
        assert asha.display_name == "Asha V." and asha.email == "asha@example.com"
        assert _contact(tenant_a.id, "919900110003").consent_state == ConsentState.opted_in
        assert _events(tenant_a.id) == events + 1  # Asha was already opted in


def test_progress_is_reported_after_each_batch(tenant_a):
    text = "phone\n" + "".join(f"99002{i:05d}\n" for i in range(7))
    seen: list[int] = []
    with tenant_scope(tenant_a.id):
        imp = _import(tenant_a.id, text)
        imports.run_import(
            db.session, imp, batch_size=3, after_batch=lambda: seen.append(imp.processed_rows)
        )
        assert seen == [3, 6, 7]
        assert imp.created_count == 7


def test_a_csv_error_after_the_first_batches_fails_the_import_and_stops_the_parser(
    tenant_a, monkeypatch
):
    """The parser thread's error reaches the caller (the job marks the import failed)."""
    # The row count would meet the error first, on this thread: skip it.
    monkeypatch.setattr(imports, "count_rows", lambda content: 0)
    good = "".join(f"99003{i:05d}\n" for i in range(8))
    text = "phone,name\n" + good + "9900399999," + "x" * 200_000 + "\n"  # > csv's field limit
    with tenant_scope(tenant_a.id):
        imp = _import(tenant_a.id, "phone,name\n" + good)
        imp.content = text.encode()
        with pytest.raises(imports.ImportFileError, match="not valid CSV near line 10"):
            imports.run_import(db.session, imp, batch_size=3, copy=True)
    assert not [t for t in threading.enumerate() if t.name == "import-parse"]


def test_a_failing_write_stops_the_parser_thread(tenant_a, monkeypatch):
    text = "phone\n" + "".join(f"99004{i:05d}\n" for i in range(40))

    def fail(*args, **kwargs):
        raise RuntimeError("database gone")

    monkeypatch.setattr(imports.BatchWriter, "write", fail)
    monkeypatch.setattr(imports, "PARSE_AHEAD", 1)  # the parser blocks on a full queue
    with tenant_scope(tenant_a.id):
        imp = _import(tenant_a.id, text)
        with pytest.raises(RuntimeError, match="database gone"):
            imports.run_import(db.session, imp, batch_size=2)
    assert not [t for t in threading.enumerate() if t.name == "import-parse"]


def test_contacts_of_another_tenant_are_not_touched(tenant_a, tenant_b):
    with tenant_scope(tenant_b.id):
        imports.run_import(db.session, _import(tenant_b.id, "phone,name\n9900110031,B Person\n"))
    with tenant_scope(tenant_a.id):
        imp = _import(tenant_a.id, "phone,name\n9900110031,A Person\n")
        assert imports.run_import(db.session, imp)["created"] == 1
    with tenant_scope(tenant_b.id):
        assert _contact(tenant_b.id, "919900110031").display_name == "B Person"


def test_each_batch_is_audited_once_with_the_contacts_it_wrote(tenant_a):
    text = "phone,name\n" + "".join(f"99003{i:05d},P {i}\n" for i in range(5))
    with tenant_scope(tenant_a.id):
        imp = _import(tenant_a.id, text)
        imports.run_import(db.session, imp, batch_size=3)
        events = db.session.scalars(
            select(AuditEvent)
            .where(AuditEvent.action == "contact_import.batch")
            .where(AuditEvent.object_id == str(imp.id))
            .order_by(AuditEvent.id)
        ).all()
        assert [e.details["lines"] for e in events] == ["2-4", "5-6"]
        assert [e.details["created"] for e in events] == [3, 2]
        created = [cid for e in events for cid in e.details["created_ids"]]
        ids = db.session.scalars(
            select(Contact.id).where(
                Contact.tenant_id == tenant_a.id, Contact.wa_id.like("9199003%")
            )
        ).all()
        assert sorted(created) == sorted(ids) and len(ids) == 5
        assert all(e.tenant_id == tenant_a.id for e in events)
        # Nothing personal in the details: counts, lines and ids only.
        assert "P 1" not in str([e.details for e in events])


def test_an_import_cannot_opt_back_in_someone_who_opted_out(tenant_a):
    with tenant_scope(tenant_a.id):
        imports.run_import(db.session, _import(tenant_a.id, GOOD))  # Bala opted out
        events = _events(tenant_a.id)
        imp = _import(tenant_a.id, "phone,name,consent\n099001 10002,Bala I.,yes\n")
        counts = imports.run_import(db.session, imp)
        assert counts["errors"] == 1 and counts["updated"] == 0
        bala = _contact(tenant_a.id, "919900110002")
        assert bala.consent_state == ConsentState.opted_out
        assert bala.display_name == "Bala Iyer"  # the whole row was skipped
        assert _events(tenant_a.id) == events
        (error,) = _errors(imp)
        assert error["line"] == "2" and error["column"] == "consent"
        assert error["reason"] == imports.OPTED_OUT


@pytest.mark.parametrize("copy", [True, False], ids=["copy", "multi-row insert"])
def test_both_write_paths_store_the_same_values_with_awkward_text(tenant_a, copy):
    text = (
        "phone,name,notes,tags,consent\n"
        '9900110041,"Tab\there","back\\\\slash \\N and ""quotes""",vip,yes\n'
        '9900110042,"Line\nbreak",,,no\n'
    )
    with tenant_scope(tenant_a.id):
        imp = _import(tenant_a.id, text)
        counts = imports.run_import(db.session, imp, copy=copy)
        assert counts["created"] == 2 and counts["errors"] == 0
        first = _contact(tenant_a.id, "919900110041")
        assert first.display_name == "Tab\there"
        assert first.notes == 'back\\\\slash \\N and "quotes"'
        assert [t.name for t in first.tags] == ["vip"]
        assert first.consent_state == ConsentState.opted_in
        assert first.consent_events[0].evidence == "import people.csv line 2"
        second = _contact(tenant_a.id, "919900110042")
        assert second.display_name == "Line\nbreak"
        assert second.notes is None and second.consent_state == ConsentState.opted_out
        assert second.created_at is not None and second.marketing_objection is False


def test_contacts_already_loaded_in_the_session_show_the_imported_values(tenant_a):
    with tenant_scope(tenant_a.id):
        imports.run_import(db.session, _import(tenant_a.id, GOOD))
        chitra = _contact(tenant_a.id, "919900110003")
        assert chitra.display_name == "Chitra Rao"
        imports.run_import(db.session, _import(tenant_a.id, "phone,name\n9900110003,Chitra R\n"))
        assert chitra.display_name == "Chitra R"


@BOTH_PATHS
def test_a_new_tag_in_a_later_file_is_linked_to_existing_contacts(tenant_a, copy):
    with tenant_scope(tenant_a.id):
        imports.run_import(db.session, _import(tenant_a.id, GOOD), copy=copy)
        later = "phone,tags\n+919900110001,vip;import-later\n+919900110003,import-later\n"
        counts = imports.run_import(db.session, _import(tenant_a.id, later), copy=copy)
        assert (counts["updated"], counts["unchanged"]) == (2, 0)
        asha = _contact(tenant_a.id, "919900110001")
        assert sorted(t.name for t in asha.tags) == ["import-later", "import-new", "vip"]
        chitra = _contact(tenant_a.id, "919900110003")
        assert [t.name for t in chitra.tags] == ["import-later"]


def test_the_whole_import_runs_on_sqlite():
    """`make run` uses SQLite: no COPY and no lanes there (``writers`` is ignored), the
    multi-row INSERTs create, tag, record consent and leave a second run unchanged."""
    from sqlalchemy import create_engine
    from sqlalchemy.orm import Session

    from app.models.audit import AuditChainHead
    from app.models.contact import contact_tag

    engine = create_engine("sqlite://")
    models = (Contact, Tag, ConsentEvent, ContactImport, AuditEvent, AuditChainHead)
    tables = [m.__table__ for m in models] + [contact_tag]
    db.metadata.create_all(engine, tables=tables)
    with Session(engine) as session, tenant_scope(1):
        runs = []
        for _ in range(2):
            imp = ContactImport(tenant_id=1, filename="people.csv", content=GOOD.encode())
            imp.mapping = imports.preview(imp.content).mapping
            session.add(imp)
            session.commit()
            runs.append(
                imports.run_import(
                    session, imp, batch_size=2, after_batch=session.commit, writers=2
                )
            )
            session.commit()
        assert runs[0] == {"rows": 3, "created": 3, "updated": 0, "unchanged": 0, "errors": 0}
        assert runs[1] == {"rows": 3, "created": 0, "updated": 0, "unchanged": 3, "errors": 0}
        asha = session.scalars(select(Contact).where(Contact.wa_id == "919900110001")).one()
        assert sorted(t.name for t in asha.tags) == ["import-new", "vip"]
        assert asha.consent_state == ConsentState.opted_in
        assert session.scalar(select(func.count(ConsentEvent.id))) == 2
        assert imp.status == ImportStatus.done and imp.processed_rows == imp.total_rows == 3
    engine.dispose()
