"""Demo contacts, tags, consent and WhatsApp settings of the demo tenants (idempotent)."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.models.contact import ConsentAction, ConsentSource, Contact, Tag
from app.models.contact_import import ContactImport, ImportStatus
from app.models.mixins import utcnow
from app.models.tenant import Tenant
from app.services.consent import record_consent
from app.services.contacts import create_contact, normalize_contact_phone

# slug -> (phone number id, app secret): demo values, documented in the README.
DEMO_WHATSAPP = {
    "acme": ("100000000000001", "acme-demo-app-secret"),
    "bharatfoods": ("100000000000002", "bharat-demo-app-secret"),
}
# slug -> (access token, WABA id): what `make run`'s fake Cloud API accepts and serves
# (the Makefile's DEMO_WA_NUMBERS; tests/test_make_run_boot.py checks they agree).
DEMO_WHATSAPP_ACCOUNTS = {
    "acme": ("acme-demo-access-token-2026", "200000000000001"),
    "bharatfoods": ("bharat-demo-access-token-2026", "200000000000002"),
}
DEMO_TAGS = ("vip", "wholesale", "retail")

_OPT_IN_FORM = (ConsentAction.opt_in, ConsentSource.web_form)
_STOP = (ConsentAction.opt_out, ConsentSource.stop_keyword)
_OBJECTION = (ConsentAction.objection, ConsentSource.whatsapp)

# (phone, name, tags, consent events, hours since last inbound or None)
DEMO_CONTACTS = {
    "acme": [
        ("+91 98765 43210", "Ravi Kumar", ["vip"], [_OPT_IN_FORM], 2),
        ("+91 98123 45678", "Sunita Sharma", ["wholesale"], [_OPT_IN_FORM], 30),
        ("+91 98450 12345", "Arvind Menon", ["vip", "wholesale"], [_OPT_IN_FORM], None),
        ("+91 99300 12345", "Farah Khan", [], [], 5),
        ("+91 98220 12345", "Deepak Joshi", ["retail"], [_OPT_IN_FORM, _STOP], 48),
        ("+91 94440 12345", "Lakshmi Iyer", ["retail"], [_OPT_IN_FORM, _OBJECTION], None),
        ("+91 88888 12345", "Manoj Verma", ["wholesale"], [], None),
        ("+91 77000 12345", "Neha Kapoor", [], [_OPT_IN_FORM], 1),
    ],
    "bharatfoods": [
        ("+91 94480 11111", "Suresh Gowda", ["vip"], [_OPT_IN_FORM], 3),
        ("+91 99000 22222", "Kavya Reddy", ["wholesale"], [_OPT_IN_FORM], 20),
        ("+91 80500 33333", "Imran Pasha", ["retail"], [_OPT_IN_FORM, _STOP], None),
        ("+91 70190 44444", "Divya Hegde", [], [], 6),
        ("+91 97310 55555", "Ramesh Shetty", ["wholesale", "vip"], [_OPT_IN_FORM], None),
        ("+91 90080 66666", "Pooja Rao", ["retail"], [_OPT_IN_FORM, _OBJECTION], 72),
        ("+91 63600 77777", "Naveen Kumar", [], [], None),
        ("+91 98860 88888", "Shruti Bhat", ["vip"], [_OPT_IN_FORM], 12),
    ],
}


def _evidence(source: ConsentSource, name: str) -> str | None:
    if source == ConsentSource.web_form:
        return f"Website signup form, 'Send me offers on WhatsApp' ticked by {name} (demo)"
    if source == ConsentSource.stop_keyword:
        return "Inbound message: STOP"
    return None


def apply_demo_whatsapp(tenant: Tenant) -> None:
    """The demo phone number id, app secret, access token and WABA id of a demo tenant,
    where they are unset."""
    whatsapp = DEMO_WHATSAPP.get(tenant.slug)
    if whatsapp is None:
        return
    if not tenant.wa_phone_number_id:
        tenant.wa_phone_number_id = whatsapp[0]
    if not tenant.wa_app_secret:
        tenant.wa_app_secret = whatsapp[1]
    token, waba_id = DEMO_WHATSAPP_ACCOUNTS[tenant.slug]
    if not tenant.wa_access_token:
        tenant.wa_access_token = token
    if not tenant.wa_business_account_id:
        tenant.wa_business_account_id = waba_id


def seed_demo_contacts(session: Session, tenant: Tenant) -> int:
    """Tags and contacts (with their consent log) of one demo tenant."""
    created = 0
    tags: dict[str, Tag] = {}
    for name in DEMO_TAGS:
        tag = session.scalars(
            select(Tag).where(Tag.tenant_id == tenant.id, Tag.name == name)
        ).first()
        if tag is None:
            tag = Tag(tenant_id=tenant.id, name=name)
            session.add(tag)
            created += 1
        tags[name] = tag
    session.flush()
    now = utcnow()
    for phone, name, tag_names, events, hours in DEMO_CONTACTS.get(tenant.slug, []):
        _e164, wa_id = normalize_contact_phone(phone)
        exists = session.scalars(
            select(Contact.id).where(Contact.tenant_id == tenant.id, Contact.wa_id == wa_id)
        ).first()
        if exists:
            continue
        contact = create_contact(
            session, tenant.id, phone, display_name=name, tags=[tags[t] for t in tag_names]
        )
        contact.last_inbound_at = now - timedelta(hours=hours) if hours is not None else None
        for action, source in events:
            record_consent(session, contact, action, source, evidence=_evidence(source, name))
        created += 1
    if not session.scalars(
        select(ContactImport.id).where(ContactImport.tenant_id == tenant.id)
    ).first():
        session.add(_demo_import(tenant))  # a finished CSV import, with one bad row
    session.flush()
    return created


def _demo_import(tenant: Tenant) -> ContactImport:
    rows = [(p, n) for p, n, *_ in DEMO_CONTACTS.get(tenant.slug, [])[:2]]
    lines = ["phone,name", *(f"{p},{n}" for p, n in rows), "12345,Wrong Number"]
    bad = len(lines)
    return ContactImport(
        tenant_id=tenant.id,
        filename="demo-contacts.csv",
        content=("\n".join(lines) + "\n").encode(),
        mapping={"phone": "phone", "name": "display_name"},
        status=ImportStatus.done,
        total_rows=len(rows) + 1,
        processed_rows=len(rows) + 1,
        unchanged_count=len(rows),
        error_count=1,
        errors_csv=f"line,column,value,reason\r\n{bad},phone,12345,invalid phone number\r\n",
        finished_at=utcnow(),
    )
