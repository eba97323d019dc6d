"""Contacts screens: CRUD, search by any phone format, bulk actions, consent form, agent
read-only access, CSV/JSON exports (formula-safe, audited) and tenant isolation."""

from __future__ import annotations

import csv
import io
import json
import re
from urllib.parse import quote

import pytest
from sqlalchemy import select

from app.extensions import db
from app.models.audit import AuditEvent
from app.models.contact import (
    ConsentAction,
    ConsentEvent,
    ConsentSource,
    ConsentState,
    Contact,
    Tag,
)
from app.services import contacts
from app.services.contact_export import EXPORT_COLUMNS

OWNER = "owner@acme.example"
AGENT = "agent@acme.example"
RAVI = "+919876543210"  # Acme demo contact "Ravi Kumar"


def _contact(tenant_id: int, phone: str) -> Contact:
    _e164, wa_id = contacts.normalize_contact_phone(phone)
    return db.session.scalars(
        select(Contact)
        .where(Contact.tenant_id == tenant_id, Contact.wa_id == wa_id)
        .execution_options(skip_tenant_scope=True)
    ).one()


def _tags(tenant_id: int) -> dict[str, int]:
    rows = db.session.execute(
        select(Tag.name, Tag.id)
        .where(Tag.tenant_id == tenant_id)
        .execution_options(skip_tenant_scope=True)
    )
    return dict(rows.all())


def _b_names(tenant_b) -> list[str]:
    return list(
        db.session.scalars(
            select(Contact.display_name)
            .where(Contact.tenant_id == tenant_b.id, Contact.display_name.is_not(None))
            .execution_options(skip_tenant_scope=True)
        )
    )


@pytest.fixture
def owner(client, login):
    assert login(OWNER).status_code == 302
    return client


# ------------------------------------------------------------------------------ CRUD


def test_admin_adds_a_contact_with_a_phone_in_any_format(owner, csrf_token, tenant_a):
    token = csrf_token("/contacts/add")
    tags = _tags(tenant_a.id)
    response = owner.post(
        "/contacts/add",
        data={
            "display_name": "Asha Verma",
            "phone": "099887 76655",
            "email": "asha@example.com",
            "notes": "Prefers Hindi",
            "tags": [str(tags["vip"]), str(tags["retail"])],
            "csrf_token": token,
        },
    )
    assert response.status_code == 302
    contact = _contact(tenant_a.id, "+919988776655")
    assert (contact.phone, contact.wa_id) == ("+919988776655", "919988776655")
    assert contact.display_name == "Asha Verma" and contact.email == "asha@example.com"
    assert sorted(t.name for t in contact.tags) == ["retail", "vip"]
    assert contact.consent_state == ConsentState.unknown and not contact.consent_events


def test_a_foreign_number_can_be_added_and_shown(owner, csrf_token, tenant_a):
    token = csrf_token("/contacts/add")
    response = owner.post(
        "/contacts/add",
        data={"display_name": "Tom", "phone": "+44 20 7946 0958", "csrf_token": token},
    )
    assert response.status_code == 302
    contact = _contact(tenant_a.id, "+442079460958")
    page = owner.get(f"/contacts/show/{contact.id}").get_data(as_text=True)
    assert "+442079460958" in page and "Tom" in page


@pytest.mark.parametrize("phone", ["9876543210", "+91 98765 43210", "not a phone", ""])
def test_a_duplicate_or_invalid_phone_is_a_form_error(owner, csrf_token, tenant_a, phone):
    token = csrf_token("/contacts/add")
    before = db.session.scalars(select(Contact.id).where(Contact.tenant_id == tenant_a.id)).all()
    response = owner.post(
        "/contacts/add", data={"display_name": "Dup", "phone": phone, "csrf_token": token}
    )
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    expected = "already exists" if phone[:1] in ("9", "+") else "phone number"
    assert expected in page
    after = db.session.scalars(select(Contact.id).where(Contact.tenant_id == tenant_a.id)).all()
    assert after == before


def test_admin_edits_a_contact_keeping_its_own_number(owner, csrf_token, tenant_a):
    ravi = _contact(tenant_a.id, RAVI)
    token = csrf_token(f"/contacts/edit/{ravi.id}")
    response = owner.post(
        f"/contacts/edit/{ravi.id}",
        data={"display_name": "Ravi K.", "phone": "098765 43210", "csrf_token": token},
    )
    assert response.status_code == 302
    db.session.expire_all()
    ravi = _contact(tenant_a.id, RAVI)
    assert ravi.display_name == "Ravi K." and ravi.phone == RAVI
    # Another contact's number is refused.
    response = owner.post(
        f"/contacts/edit/{ravi.id}",
        data={"display_name": "Ravi", "phone": "+91 98123 45678", "csrf_token": token},
    )
    assert "already exists" in response.get_data(as_text=True)
    db.session.expire_all()
    assert _contact(tenant_a.id, RAVI).display_name == "Ravi K."


def test_the_tag_dropdown_offers_only_the_tenants_tags(owner, tenant_a, tenant_b):
    page = owner.get("/contacts/add").get_data(as_text=True)
    offered = set(re.findall(r'<option value="(\d+)"', page))
    assert {str(i) for i in _tags(tenant_a.id).values()} <= offered
    assert not offered & {str(i) for i in _tags(tenant_b.id).values()}


def test_list_shows_name_phone_tags_consent(owner, tenant_b):
    page = owner.get("/contacts/list/?psize_ContactModelView=100").get_data(as_text=True)
    for text in ("Ravi Kumar", RAVI, "vip", "Opted in", "Opted out", "Deepak Joshi"):
        assert text in page
    assert not [n for n in _b_names(tenant_b) if n in page]


# ---------------------------------------------------------------------------- search


@pytest.mark.parametrize(
    "typed", ["+91 98765 43210", "09876543210", "919876543210", "98765 43210", "ravi kum"]
)
def test_the_search_box_finds_a_phone_in_any_format(owner, typed):
    page = owner.get(f"/contacts/list/?q={quote(typed)}").get_data(as_text=True)
    assert "Ravi Kumar" in page
    assert "Sunita Sharma" not in page and "Deepak Joshi" not in page


def test_list_filters_by_consent_state_and_tag(owner, tenant_a):
    page = owner.get("/contacts/list/?_flt_0_consent_state=opted_out").get_data(as_text=True)
    assert "Deepak Joshi" in page and "Ravi Kumar" not in page
    vip = _tags(tenant_a.id)["vip"]
    page = owner.get(f"/contacts/list/?_flt_0_tags={vip}").get_data(as_text=True)
    assert "Ravi Kumar" in page and "Arvind Menon" in page and "Sunita Sharma" not in page


# ----------------------------------------------------------------------- bulk actions


def test_bulk_opt_out_records_consent_events(owner, csrf_token, tenant_a):
    ravi, neha = _contact(tenant_a.id, RAVI), _contact(tenant_a.id, "+917700012345")
    token = csrf_token("/contacts/list/")
    response = owner.post(
        "/contacts/action_post",
        data={"action": "opt_out", "rowid": [str(ravi.id), str(neha.id)], "csrf_token": token},
    )
    assert response.status_code == 302
    db.session.expire_all()
    for contact in (_contact(tenant_a.id, RAVI), _contact(tenant_a.id, "+917700012345")):
        assert contact.consent_state == ConsentState.opted_out and not contact.messageable
        latest = contact.consent_events[0]
        assert (latest.action, latest.source) == (
            ConsentAction.opt_out,
            ConsentSource.tenant_action,
        )
        assert latest.recorded_by_id is not None


def test_bulk_tag_add_and_remove(owner, csrf_token, tenant_a):
    ravi, sunita = _contact(tenant_a.id, RAVI), _contact(tenant_a.id, "+919812345678")
    retail = _tags(tenant_a.id)["retail"]
    token = csrf_token("/contacts/list/")
    response = owner.post(
        "/contacts/action_post",
        data={"action": "tag", "rowid": [str(ravi.id), str(sunita.id)], "csrf_token": token},
    )
    assert response.status_code == 302 and "/contacts/tag?" in response.headers["Location"]
    form = owner.get(response.headers["Location"]).get_data(as_text=True)
    assert "Ravi Kumar" in form and "Sunita Sharma" in form
    rowids = [str(ravi.id), str(sunita.id)]
    data = {"tag": str(retail), "mode": "add", "rowid": rowids, "csrf_token": token}
    assert owner.post("/contacts/tag", data=data).status_code == 302
    db.session.expire_all()
    assert "retail" in [t.name for t in _contact(tenant_a.id, RAVI).tags]
    assert "retail" in [t.name for t in _contact(tenant_a.id, "+919812345678").tags]
    data["mode"] = "remove"
    assert owner.post("/contacts/tag", data=data).status_code == 302
    db.session.expire_all()
    assert [t.name for t in _contact(tenant_a.id, RAVI).tags] == ["vip"]


# ---------------------------------------------------------------------------- consent


def test_consent_form_needs_evidence_for_an_opt_in(owner, csrf_token, tenant_a):
    farah = _contact(tenant_a.id, "+919930012345")  # consent unknown
    url = f"/contacts/{farah.id}/consent"
    token = csrf_token(url)
    response = owner.post(
        url, data={"action": "opt_in", "source": "in_person", "evidence": "", "csrf_token": token}
    )
    assert response.status_code == 200 and "evidence" in response.get_data(as_text=True)
    db.session.expire_all()
    assert _contact(tenant_a.id, "+919930012345").consent_state == ConsentState.unknown

    data = {
        "action": "opt_in",
        "source": "in_person",
        "evidence": "Signed slip #118 at the Dadar shop",
        "csrf_token": token,
    }
    assert owner.post(url, data=data).status_code == 302
    data = {"action": "objection", "source": "whatsapp", "evidence": "", "csrf_token": token}
    assert owner.post(url, data=data).status_code == 302
    db.session.expire_all()
    farah = _contact(tenant_a.id, "+919930012345")
    assert farah.consent_state == ConsentState.opted_in and farah.marketing_objection
    assert not farah.messageable
    page = owner.get(f"/contacts/show/{farah.id}").get_data(as_text=True)
    assert "Consent history" in page and "Signed slip #118 at the Dadar shop" in page
    assert "Objected to marketing" in page

    data = {"action": "objection_withdrawn", "source": "whatsapp", "csrf_token": token}
    assert owner.post(url, data=data).status_code == 302
    db.session.expire_all()
    assert _contact(tenant_a.id, "+919930012345").messageable


def test_there_is_no_screen_that_edits_or_deletes_consent_events(app):
    rules = [r.rule for r in app.url_map.iter_rules()]
    assert not [r for r in rules if "consentevent" in r.lower()]
    assert not [r for r in rules if r.startswith("/contacts/delete")]


# ------------------------------------------------------------------------------ agent


def test_agent_reads_contacts_but_cannot_change_or_export(client, login, tenant_a):
    assert login(AGENT).status_code == 302
    ravi = _contact(tenant_a.id, RAVI)
    assert client.get("/contacts/list/").status_code == 200
    assert client.get("/tags/list/").status_code == 200
    show = client.get(f"/contacts/show/{ravi.id}")
    assert show.status_code == 200 and "Ravi Kumar" in show.get_data(as_text=True)
    for url in (
        "/contacts/add",
        f"/contacts/edit/{ravi.id}",
        "/contacts/export.csv",
        "/contacts/export.json",
        f"/contacts/{ravi.id}/consent",
        f"/contacts/tag?rowid={ravi.id}",
        "/tags/add",
    ):
        assert client.get(url).status_code == 403, url
    list_page = client.get("/contacts/list/").get_data(as_text=True)
    assert "contacts-export-csv" not in list_page
    token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', list_page)
    token = token.group(1) if token else ""
    client.post(
        "/contacts/action_post",
        data={"action": "opt_out", "rowid": str(ravi.id), "csrf_token": token},
    )
    db.session.expire_all()
    assert _contact(tenant_a.id, RAVI).consent_state == ConsentState.opted_in
    exported = select(AuditEvent).where(AuditEvent.action == "contacts.exported")
    assert db.session.scalars(exported).all() == []


# ----------------------------------------------------------------------------- export


def _exports() -> list[AuditEvent]:
    return list(
        db.session.scalars(
            select(AuditEvent)
            .where(AuditEvent.action == "contacts.exported")
            .order_by(AuditEvent.id)
            .execution_options(skip_tenant_scope=True)
        )
    )


def test_csv_export_is_complete_formula_safe_and_audited(owner, tenant_a, tenant_b):
    evil = contacts.create_contact(
        db.session, tenant_a.id, "+16502530000", display_name='=HYPERLINK("http://evil")'
    )
    evil.notes = "not exported"
    db.session.commit()
    response = owner.get("/contacts/export.csv")
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/csv")
    assert "attachment" in response.headers["Content-Disposition"]
    reader = csv.reader(io.StringIO(response.get_data(as_text=True)))
    header, *rows = list(reader)
    assert tuple(header) == EXPORT_COLUMNS
    records = [dict(zip(header, row, strict=True)) for row in rows]
    count = db.session.scalars(select(Contact.id).where(Contact.tenant_id == tenant_a.id)).all()
    assert len(records) == len(count)
    by_wa = {r["wa_id"]: r for r in records}
    assert by_wa["16502530000"]["display_name"] == '\'=HYPERLINK("http://evil")'
    assert by_wa["16502530000"]["phone"] == "'+16502530000"  # leading + is escaped too
    ravi = by_wa["919876543210"]
    assert ravi["display_name"] == "Ravi Kumar" and ravi["tags"] == "vip"
    assert ravi["consent_state"] == "opted_in" and ravi["marketing_objection"] == "False"
    assert by_wa["919845012345"]["tags"] == "vip;wholesale"
    b_wa = db.session.scalars(
        select(Contact.wa_id)
        .where(Contact.tenant_id == tenant_b.id)
        .execution_options(skip_tenant_scope=True)
    ).all()
    assert b_wa and not set(b_wa) & set(by_wa)
    (event,) = _exports()
    assert event.tenant_id == tenant_a.id
    assert event.details == {"format": "csv", "rows": len(records)}


def test_json_export_follows_the_list_filters_and_is_audited(owner, tenant_a):
    response = owner.get(f"/contacts/export.json?q={quote('98765 43210')}")
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("application/json")
    data = json.loads(response.get_data(as_text=True))
    assert len(data) == 1 and tuple(data[0]) == EXPORT_COLUMNS
    assert data[0]["phone"] == RAVI and data[0]["marketing_objection"] is False
    assert data[0]["consent_state"] == "opted_in" and data[0]["tags"] == "vip"

    response = owner.get("/contacts/export.json?_flt_0_consent_state=opted_out")
    assert [r["display_name"] for r in json.loads(response.get_data(as_text=True))] == [
        "Deepak Joshi"
    ]
    events = _exports()
    assert [e.details for e in events] == [
        {"format": "json", "rows": 1},
        {"format": "json", "rows": 1},
    ]
    assert all(e.tenant_id == tenant_a.id for e in events)


# --------------------------------------------------------------------------- isolation


def test_another_tenants_contacts_are_never_reachable(owner, csrf_token, tenant_a, tenant_b):
    theirs = _contact(tenant_b.id, "+919448011111")  # Bharat Foods' Suresh Gowda
    for url in (
        f"/contacts/show/{theirs.id}",
        f"/contacts/edit/{theirs.id}",
        f"/contacts/{theirs.id}/consent",
        f"/contacts/tag?rowid={theirs.id}",
    ):
        assert owner.get(url).status_code == 404, url
    token = csrf_token("/contacts/list/")
    ours = _contact(tenant_a.id, RAVI)
    for rowids in ([theirs.id], [ours.id, theirs.id]):
        response = owner.post(
            "/contacts/action_post",
            data={"action": "opt_out", "rowid": [str(i) for i in rowids], "csrf_token": token},
        )
        assert response.status_code == 404
    b_tag = _tags(tenant_b.id)["retail"]
    response = owner.post(
        "/contacts/tag",
        data={"tag": str(b_tag), "mode": "add", "rowid": str(ours.id), "csrf_token": token},
    )
    assert response.status_code == 200  # not a choice of the form: nothing happens
    db.session.expire_all()
    assert _contact(tenant_b.id, "+919448011111").consent_state == ConsentState.opted_in
    assert [t.name for t in _contact(tenant_a.id, RAVI).tags] == ["vip"]

    names = _b_names(tenant_b)
    for url in (
        "/contacts/list/?psize_ContactModelView=100",
        "/contacts/list/?q=9448011111",
        "/contacts/list/?q=Suresh",
        "/contacts/export.csv",
        "/contacts/export.json",
    ):
        body = owner.get(url).get_data(as_text=True)
        assert not [n for n in names if n in body], url
        assert "919448011111" not in body, url
    assert db.session.scalars(
        select(ConsentEvent.id).where(ConsentEvent.tenant_id == tenant_b.id)
    ).all()


def test_tags_crud_is_tenant_scoped(owner, csrf_token, tenant_a, tenant_b):
    token = csrf_token("/tags/add")
    assert owner.post("/tags/add", data={"name": "festive", "csrf_token": token}).status_code == 302
    assert "festive" in _tags(tenant_a.id) and "festive" not in _tags(tenant_b.id)
    dup = owner.post("/tags/add", data={"name": "VIP", "csrf_token": token})
    assert dup.status_code == 200 and "already exists" in dup.get_data(as_text=True)
    # Bharat Foods has a "vip" tag too: the name is free per tenant, the row is not ours.
    assert owner.get(f"/tags/edit/{_tags(tenant_b.id)['vip']}").status_code == 404
