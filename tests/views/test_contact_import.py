"""Contact import screens: upload -> preview/mapping -> job on `default` -> progress page,
errors CSV (line numbers, audited), idempotent re-import, size limits, formula-safe
round trip, agent refused, other tenants' imports invisible."""

from __future__ import annotations

import csv
import io
import re

import pytest
from sqlalchemy import func, select

from app.extensions import db
from app.models.audit import AuditEvent
from app.models.contact import ConsentEvent, ConsentState, Contact
from app.models.contact_import import ContactImport, ImportStatus
from app.services import contacts

OWNER = "owner@acme.example"
AGENT = "agent@acme.example"

GOOD = (
    b"Mobile,Name,Email,Tags,Consent\n"
    b"+91 99003 30001,Asha Verma,asha@example.com,vip;imported,yes\n"
    b"099003 30002,Bala Iyer,,imported,no\n"
    b"9900330003,Chitra Rao,,,\n"
)
BAD = (
    b"phone,name,consent\n"
    b"9900330011,Good One,yes\n"
    b"12345,Bad Phone,\n"
    b"+91 99003 30011,Same Again,\n"
    b"9900330012,Maybe,perhaps\n"
    b"9900330013,Good Two,\n"
)


@pytest.fixture
def owner(client, login):
    assert login(OWNER).status_code == 302
    return client


def _imports(tenant_id: int) -> list[ContactImport]:
    return list(
        db.session.scalars(
            select(ContactImport)
            .where(ContactImport.tenant_id == tenant_id)
            .order_by(ContactImport.id)
            .execution_options(skip_tenant_scope=True)
        )
    )


def _contact(tenant_id: int, phone: str) -> Contact | None:
    _e164, wa_id = contacts.normalize_contact_phone(phone)
    return db.session.scalars(
        select(Contact)
        .where(Contact.tenant_id == tenant_id, Contact.wa_id == wa_id)
        .execution_options(skip_tenant_scope=True)
    ).one_or_none()


def _consent_events(tenant_id: int) -> int:
    return db.session.scalar(
        select(func.count(ConsentEvent.id))
        .where(ConsentEvent.tenant_id == tenant_id)
        .execution_options(skip_tenant_scope=True)
    )


def _upload(client, csrf_token, content: bytes, filename: str = "people.csv"):
    token = csrf_token("/contact-imports/upload")
    return client.post(
        "/contact-imports/upload",
        data={"csrf_token": token, "file": (io.BytesIO(content), filename)},
        content_type="multipart/form-data",
    )


def _import_file(client, csrf_token, run_jobs, content: bytes) -> int:
    """The whole flow with the guessed mapping; returns the import's id."""
    response = _upload(client, csrf_token, content)
    assert response.status_code == 302, response.get_data(as_text=True)
    mapping_url = response.headers["Location"]
    pk = int(re.search(r"/contact-imports/(\d+)/mapping", mapping_url).group(1))
    page = client.get(mapping_url).get_data(as_text=True)
    data = {"csrf_token": re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page).group(1)}
    for name, value in re.findall(
        r'<select[^>]*name="(map-\d+)".*?<option value="(\w+)" selected', page, re.S
    ):
        data[name] = value
    response = client.post(mapping_url, data=data)
    assert response.status_code == 302
    assert response.headers["Location"].endswith(f"/contact-imports/show/{pk}")
    assert run_jobs("default") == 1
    return pk


# ---------------------------------------------------------------------- the flow


def test_good_file_upload_preview_mapping_job_and_progress_page(
    owner, csrf_token, run_jobs, tenant_a
):
    page = owner.get("/contacts/list/").get_data(as_text=True)
    assert 'id="contacts-import-csv"' in page and "/contact-imports/upload" in page

    response = _upload(owner, csrf_token, GOOD)
    assert response.status_code == 302
    imp = _imports(tenant_a.id)[-1]
    assert imp.status == ImportStatus.uploaded and imp.content == GOOD
    assert imp.filename == "people.csv" and imp.total_rows == 3

    # Preview: the first rows and a select per column with the guessed field.
    page = owner.get(f"/contact-imports/{imp.id}/mapping").get_data(as_text=True)
    assert "Asha Verma" in page and "Chitra Rao" in page
    assert re.search(r'name="map-0".*?<option value="phone" selected', page, re.S)
    assert re.search(r'name="map-4".*?<option value="consent" selected', page, re.S)

    # A mapping without a phone column is refused on the page.
    token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page).group(1)
    response = owner.post(
        f"/contact-imports/{imp.id}/mapping",
        data={"csrf_token": token, "map-0": "ignore", "map-1": "display_name"},
    )
    assert response.status_code == 200
    assert "Choose the column that holds the phone number." in response.get_data(as_text=True)

    data = {
        "csrf_token": token,
        "map-0": "phone",
        "map-1": "display_name",
        "map-2": "email",
        "map-3": "tags",
        "map-4": "consent",
    }
    response = owner.post(f"/contact-imports/{imp.id}/mapping", data=data)
    assert response.status_code == 302
    db.session.refresh(imp)
    assert imp.status == ImportStatus.queued
    queued = owner.get(f"/contact-imports/show/{imp.id}").get_data(as_text=True)
    assert '<meta http-equiv="refresh" content="2">' in queued and "<progress" in queued

    assert run_jobs("default") == 1
    db.session.refresh(imp)
    assert imp.status == ImportStatus.done
    assert (imp.created_count, imp.updated_count, imp.error_count) == (3, 0, 0)
    page = owner.get(f"/contact-imports/show/{imp.id}").get_data(as_text=True)
    assert 'http-equiv="refresh"' not in page
    assert re.search(r'<progress id="import-progress-bar" max="3" value="3"', page)
    assert '<strong id="import-created">3</strong>' in page
    assert "Download errors CSV" not in page

    asha = _contact(tenant_a.id, "+919900330001")
    assert asha.display_name == "Asha Verma" and asha.consent_state == ConsentState.opted_in
    assert sorted(t.name for t in asha.tags) == ["imported", "vip"]
    assert _contact(tenant_a.id, "+919900330002").consent_state == ConsentState.opted_out
    listing = owner.get("/contact-imports/list/").get_data(as_text=True)
    assert "people.csv" in listing and 'id="contact-import-upload"' in listing


def test_bad_rows_are_in_the_errors_csv_and_good_rows_land(owner, csrf_token, run_jobs, tenant_a):
    pk = _import_file(owner, csrf_token, run_jobs, BAD)
    imp = db.session.get(ContactImport, pk)
    assert (imp.created_count, imp.error_count) == (2, 3)
    page = owner.get(f"/contact-imports/show/{pk}").get_data(as_text=True)
    assert "Download errors CSV" in page

    response = owner.get(f"/contact-imports/{pk}/errors.csv")
    assert response.status_code == 200 and response.mimetype == "text/csv"
    assert "attachment; filename=people-errors.csv" in response.headers["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))
    assert [(r["line"], r["column"], r["value"]) for r in rows] == [
        ("3", "phone", "12345"),
        ("4", "phone", "'+91 99003 30011"),  # "+" starts a formula: escaped
        ("5", "consent", "perhaps"),
    ]
    assert rows[0]["reason"] == "invalid phone number"
    assert "line 2" in rows[1]["reason"]
    assert rows[2]["reason"].startswith("unknown consent value")

    assert _contact(tenant_a.id, "9900330011").display_name == "Good One"
    assert _contact(tenant_a.id, "9900330013").display_name == "Good Two"
    assert _contact(tenant_a.id, "9900330012") is None
    audited = db.session.scalars(
        select(AuditEvent).where(
            AuditEvent.action == "contacts.import_errors_downloaded",
            AuditEvent.object_id == str(pk),
        )
    ).all()
    assert len(audited) == 1 and audited[0].tenant_id == tenant_a.id


def test_the_same_file_twice_changes_nothing_the_second_time(owner, csrf_token, run_jobs, tenant_a):
    first = _import_file(owner, csrf_token, run_jobs, GOOD)
    assert db.session.get(ContactImport, first).created_count == 3
    events = _consent_events(tenant_a.id)
    contacts_before = db.session.scalar(
        select(func.count(Contact.id))
        .where(Contact.tenant_id == tenant_a.id)
        .execution_options(skip_tenant_scope=True)
    )

    second = db.session.get(ContactImport, _import_file(owner, csrf_token, run_jobs, GOOD))
    assert (second.created_count, second.updated_count, second.unchanged_count) == (0, 0, 3)
    assert _consent_events(tenant_a.id) == events
    assert contacts_before == db.session.scalar(
        select(func.count(Contact.id))
        .where(Contact.tenant_id == tenant_a.id)
        .execution_options(skip_tenant_scope=True)
    )
    page = owner.get(f"/contact-imports/show/{second.id}").get_data(as_text=True)
    assert '<strong id="import-created">0</strong>' in page
    assert '<strong id="import-updated">0</strong>' in page


# ------------------------------------------------------------------------ limits


def test_a_50_mb_file_is_refused_cleanly_and_nothing_is_stored(owner, csrf_token, tenant_a):
    before = len(_imports(tenant_a.id))
    big = b"phone,name\n" + b"9900330001,Someone\n" * (50 * 1024 * 1024 // 19)
    response = _upload(owner, csrf_token, big, "big.csv")
    assert response.status_code == 413
    body = response.get_data(as_text=True)
    assert "larger than this site accepts (at most 5 MiB)" in body
    assert len(_imports(tenant_a.id)) == before


def test_a_file_over_the_import_limit_gets_a_form_error(app, owner, csrf_token, tenant_a):
    before = len(_imports(tenant_a.id))
    app.config["CONTACT_IMPORT_MAX_MB"] = 1
    try:
        content = b"phone,name\n" + b"9900330001,Someone\n" * (2 * 1024 * 1024 // 19)
        response = _upload(owner, csrf_token, content, "two-mb.csv")
    finally:
        app.config.pop("CONTACT_IMPORT_MAX_MB")
    assert response.status_code == 200
    assert "two-mb.csv is larger than 1 MiB; choose a smaller file." in response.get_data(
        as_text=True
    )
    assert len(_imports(tenant_a.id)) == before


@pytest.mark.parametrize(
    ("content", "filename", "message"),
    [
        (b"phone\n9900330001\n", "people.xlsx", "only CSV files are allowed"),
        (b"\x00\x01binary", "people.csv", "is not UTF-8 text"),
        (b"a,a\n1,2\n", "people.csv", "Column names must differ"),
    ],
)
def test_unusable_files_get_a_form_error(owner, csrf_token, tenant_a, content, filename, message):
    before = len(_imports(tenant_a.id))
    response = _upload(owner, csrf_token, content, filename)
    assert response.status_code == 200
    assert message in response.get_data(as_text=True)
    assert len(_imports(tenant_a.id)) == before


# -------------------------------------------------------------- formula injection


def test_a_formula_name_is_imported_and_exported_escaped(owner, csrf_token, run_jobs, tenant_a):
    content = b'phone,name\n9900330021,"=HYPERLINK(""http://evil"",""x"")"\n'
    pk = _import_file(owner, csrf_token, run_jobs, content)
    assert db.session.get(ContactImport, pk).created_count == 1
    stored = _contact(tenant_a.id, "9900330021")
    assert stored.display_name == '=HYPERLINK("http://evil","x")'  # kept as typed

    response = owner.get("/contacts/export.csv?q=9900330021")
    rows = {r["wa_id"]: r for r in csv.DictReader(io.StringIO(response.get_data(as_text=True)))}
    assert rows["919900330021"]["display_name"] == '\'=HYPERLINK("http://evil","x")'


# -------------------------------------------------------------------- who may


def test_an_agent_may_not_import(client, login, csrf_token):
    assert login(AGENT).status_code == 302
    assert client.get("/contact-imports/upload").status_code == 403
    assert client.get("/contact-imports/list/").status_code == 403
    assert 'id="contacts-import-csv"' not in client.get("/contacts/list/").get_data(as_text=True)


def test_another_tenants_import_is_invisible(owner, tenant_b):
    imp = ContactImport(
        tenant_id=tenant_b.id,
        filename="bharat-secret.csv",
        content=b"phone\n9900330031\n",
        mapping={"phone": "phone"},
        status=ImportStatus.done,
        total_rows=1,
        errors_csv="line,column,value,reason\n2,phone,x,invalid phone number\n",
    )
    db.session.add(imp)
    db.session.commit()
    for url in (
        f"/contact-imports/show/{imp.id}",
        f"/contact-imports/{imp.id}/mapping",
        f"/contact-imports/{imp.id}/errors.csv",
    ):
        assert owner.get(url).status_code == 404, url
    assert "bharat-secret.csv" not in owner.get("/contact-imports/list/").get_data(as_text=True)
