"""Contacts service: phone normalisation, search by any phone format, duplicates, and the
consent log (derived state, append-only)."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from sqlalchemy import select

from app.extensions import db
from app.models.contact import (
    ConsentAction,
    ConsentEvent,
    ConsentSource,
    ConsentState,
    Contact,
)
from app.services import contacts
from app.services.consent import ConsentLogError, derive_state, record_consent
from app.services.exceptions import ValidationError
from app.tenancy import tenant_scope


@pytest.mark.parametrize(
    ("typed", "e164"),
    [
        ("+91 98765 43210", "+919876543210"),
        ("09876543210", "+919876543210"),
        ("919876543210", "+919876543210"),
        ("98765 43210", "+919876543210"),
        ("98765-43210", "+919876543210"),
        ("+91-98765-43210", "+919876543210"),
        ("+1 650 253 0000", "+16502530000"),
        ("+44 20 7946 0958", "+442079460958"),
    ],
)
def test_phone_in_any_format_is_stored_e164_with_its_whatsapp_id(typed, e164):
    assert contacts.normalize_contact_phone(typed) == (e164, e164.lstrip("+"))


@pytest.mark.parametrize(
    "typed", ["", "   ", "12345", "not a number", "+91 98765", "+1 650 253", "+999"]
)
def test_invalid_phone_numbers_are_refused(typed):
    with pytest.raises(ValidationError) as info:
        contacts.normalize_contact_phone(typed)
    assert info.value.field == "phone"


def _search(tenant_id: int, text: str) -> list[str]:
    condition = contacts.search_condition(text)
    stmt = select(Contact.phone).where(Contact.tenant_id == tenant_id)
    if condition is not None:
        stmt = stmt.where(condition)
    return list(db.session.scalars(stmt))


@pytest.mark.parametrize(
    "typed",
    ["+91 98765 43210", "09876543210", "919876543210", "98765 43210", "9876543210", "43210"],
)
def test_search_finds_a_contact_by_its_phone_in_any_format(tenant_a, typed):
    # Demo contact of Acme: Ravi Kumar, +919876543210.
    assert _search(tenant_a.id, typed) == ["+919876543210"]


def test_search_by_name_profile_name_and_email(tenant_a):
    contact = contacts.create_contact(
        db.session,
        tenant_a.id,
        "+44 20 7946 0958",
        display_name="Olivia Brown",
        email="olivia@example.com",
    )
    contact.profile_name = "Liv B"
    db.session.flush()
    assert _search(tenant_a.id, "olivia b") == ["+442079460958"]
    assert _search(tenant_a.id, "LIV") == ["+442079460958"]
    assert _search(tenant_a.id, "olivia@example") == ["+442079460958"]
    assert _search(tenant_a.id, "+1 650 253 0000") == []
    assert _search(tenant_a.id, "100%_") == []  # LIKE wildcards are literal
    assert contacts.search_condition("   ") is None


def test_create_stores_normalised_values(tenant_a):
    contact = contacts.create_contact(
        db.session,
        tenant_a.id,
        "+1 (650) 253-0000",
        display_name="  Sam  ",
        email=" Sam@Example.COM ",
        notes="  ",
    )
    assert (contact.phone, contact.wa_id) == ("+16502530000", "16502530000")
    assert contact.display_name == "Sam"
    assert contact.email == "Sam@example.com"
    assert contact.notes is None
    assert contact.consent_state == ConsentState.unknown
    assert not contact.messageable


def test_duplicate_phone_within_a_tenant_is_refused_in_any_format(tenant_a):
    with pytest.raises(ValidationError, match="already exists") as info:
        contacts.create_contact(db.session, tenant_a.id, "098765 43210")
    assert info.value.field == "phone"


def test_same_phone_in_another_tenant_is_allowed(tenant_b):
    contact = contacts.create_contact(db.session, tenant_b.id, "+91 98765 43210", "Ravi (B)")
    assert contact.tenant_id == tenant_b.id


def test_update_refuses_another_contacts_phone_but_keeps_its_own(tenant_a):
    one = contacts.create_contact(db.session, tenant_a.id, "+16502530000", "One")
    contacts.update_contact(db.session, one, "+1 650 253 0000", "One renamed")
    assert one.display_name == "One renamed"
    with pytest.raises(ValidationError, match="already exists"):
        contacts.update_contact(db.session, one, "9876543210", "One")


# --------------------------------------------------------------------------- consent


def _ev(action, minutes, id_=None):
    return ConsentEvent(
        action=action,
        source=ConsentSource.web_form,
        occurred_at=datetime(2026, 1, 1) + timedelta(minutes=minutes),
        id=id_,
    )


@pytest.mark.parametrize(
    ("actions", "state", "objection", "messageable"),
    [
        ([], ConsentState.unknown, False, False),
        ([ConsentAction.opt_in], ConsentState.opted_in, False, True),
        ([ConsentAction.opt_in, ConsentAction.opt_out], ConsentState.opted_out, False, False),
        (
            [ConsentAction.opt_in, ConsentAction.opt_out, ConsentAction.resume],
            ConsentState.opted_in,
            False,
            True,
        ),
        ([ConsentAction.opt_in, ConsentAction.objection], ConsentState.opted_in, True, False),
        (
            [ConsentAction.opt_in, ConsentAction.objection, ConsentAction.objection_withdrawn],
            ConsentState.opted_in,
            False,
            True,
        ),
        ([ConsentAction.objection, ConsentAction.opt_in], ConsentState.opted_in, True, False),
        ([ConsentAction.opt_out], ConsentState.opted_out, False, False),
    ],
)
def test_derive_state_replays_the_log(actions, state, objection, messageable):
    events = [_ev(a, i, i + 1) for i, a in enumerate(actions)]
    derived = derive_state(reversed(events))  # order of the input does not matter
    assert (derived.state, derived.marketing_objection, derived.messageable) == (
        state,
        objection,
        messageable,
    )


def test_record_consent_appends_and_updates_the_contact(tenant_a, user_by_email):
    owner = user_by_email("owner@acme.example")
    contact = contacts.create_contact(db.session, tenant_a.id, "+16502530000", "Pat")
    record_consent(
        db.session, contact, "opt_in", "web_form", evidence="form #42", actor_id=owner.id
    )
    assert contact.consent_state == ConsentState.opted_in and contact.messageable
    record_consent(db.session, contact, ConsentAction.opt_out, ConsentSource.stop_keyword)
    assert contact.consent_state == ConsentState.opted_out and not contact.messageable
    record_consent(db.session, contact, ConsentAction.resume, ConsentSource.whatsapp)
    assert contact.messageable
    record_consent(db.session, contact, ConsentAction.objection, ConsentSource.whatsapp)
    assert contact.consent_state == ConsentState.opted_in
    assert contact.marketing_objection and not contact.messageable
    log = contact.consent_events
    assert [e.action for e in log] == [
        ConsentAction.objection,
        ConsentAction.resume,
        ConsentAction.opt_out,
        ConsentAction.opt_in,
    ]
    assert log[-1].evidence == "form #42" and log[-1].recorded_by_id == owner.id
    assert all(e.tenant_id == tenant_a.id for e in log)


def test_opt_in_needs_evidence(tenant_a):
    contact = contacts.create_contact(db.session, tenant_a.id, "+16502530000")
    with pytest.raises(ValidationError, match="evidence"):
        record_consent(db.session, contact, ConsentAction.opt_in, ConsentSource.web_form, " ")
    assert contact.consent_state == ConsentState.unknown


def test_the_consent_log_is_append_only(tenant_a):
    contact = contacts.create_contact(db.session, tenant_a.id, "+16502530000")
    event = record_consent(db.session, contact, ConsentAction.opt_out, ConsentSource.api)
    event.action = ConsentAction.opt_in
    with pytest.raises(ConsentLogError):
        db.session.flush()
    db.session.rollback()
    event = db.session.scalars(select(ConsentEvent).order_by(ConsentEvent.id.desc())).first()
    db.session.delete(event)
    with pytest.raises(ConsentLogError):
        db.session.flush()
    db.session.rollback()


def test_demo_contacts_have_consent_from_the_log(tenant_a, tenant_b):
    for tenant in (tenant_a, tenant_b):
        with tenant_scope(tenant.id):
            found = db.session.scalars(select(Contact)).all()
            assert len(found) >= 8
            for contact in found:
                derived = derive_state(contact.consent_events)
                assert derived.state == contact.consent_state
                assert derived.marketing_objection == contact.marketing_objection
            states = {c.consent_state for c in found}
            assert {ConsentState.opted_in, ConsentState.opted_out} <= states
            stop = [
                e for c in found for e in c.consent_events if e.source == ConsentSource.stop_keyword
            ]
            assert stop and all(e.action == ConsentAction.opt_out for e in stop)
    assert tenant_a.wa_phone_number_id == "100000000000001"
    assert tenant_a.wa_app_secret == "acme-demo-app-secret"
    assert tenant_b.wa_phone_number_id == "100000000000002"
    assert tenant_b.wa_app_secret == "bharat-demo-app-secret"
