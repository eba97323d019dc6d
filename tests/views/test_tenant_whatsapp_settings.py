"""Platform admins set a tenant's WhatsApp Cloud API settings; secrets never come back (P13)."""

from __future__ import annotations

import re

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import select, text

from app.extensions import db
from app.models import Tenant
from tests.conftest import form_csrf_token, tenant_form_data

TOKEN = "EAAGtestAccessTokenQWERTY0123456789abcdefXYZ1a2B"
NEW_TOKEN = "EAAGrotatedAccessToken9876543210zyxwvuZZ9c3D"
APP_SECRET = "0123456789abcdef0123456789ab4e5f"
PHONE_NUMBER_ID = "106540352242922"
WABA_ID = "102290129340398"
PLATFORM_ADMIN = "admin@xigmapro.example"


def edit_url(tenant: Tenant) -> str:
    return f"/tenants/edit/{tenant.id}"


def post_edit(client, tenant: Tenant, **fields):
    """Submit the edit form as the browser would: the tenant's current values + ``fields``."""
    url = edit_url(tenant)
    data = {**tenant_form_data(tenant), **fields}
    data = {k: v for k, v in data.items() if v is not None}  # unticked boxes are absent
    data["csrf_token"] = form_csrf_token(client, url)
    return client.post(url, data=data, follow_redirects=False)


def raw_token(tenant_id: int) -> str | None:
    return db.session.execute(
        text("SELECT wa_access_token FROM tenant WHERE id=:id"), {"id": tenant_id}
    ).scalar_one()


def reload(tenant: Tenant) -> Tenant:
    db.session.expire_all()
    return db.session.get(Tenant, tenant.id)


@pytest.fixture
def admin(client, login):
    login(PLATFORM_ADMIN)
    return client


def test_admin_sets_the_settings_and_only_a_mask_is_ever_shown(admin, tenant_a, app):
    response = post_edit(
        admin,
        tenant_a,
        wa_phone_number_id=PHONE_NUMBER_ID,
        wa_business_account_id=WABA_ID,
        wa_display_number="98765 43210",
        wa_messaging_limit_mps="250",
        new_wa_access_token=TOKEN,
        new_wa_app_secret=APP_SECRET,
    )
    assert response.status_code == 302
    tenant = reload(tenant_a)
    assert tenant.wa_access_token == TOKEN
    assert tenant.wa_app_secret == APP_SECRET
    assert tenant.wa_phone_number_id == PHONE_NUMBER_ID
    assert tenant.wa_business_account_id == WABA_ID
    assert tenant.wa_display_number == "+919876543210"
    assert tenant.wa_messaging_limit_mps == 250
    # Encrypted at rest with the configured key.
    stored = raw_token(tenant_a.id)
    assert TOKEN not in stored
    key = app.config["FIELD_ENCRYPTION_KEYS"][0]
    assert Fernet(key).decrypt(stored.encode()).decode() == TOKEN

    show = admin.get(f"/tenants/show/{tenant_a.id}").get_data(as_text=True)
    listing = admin.get("/tenants/list/").get_data(as_text=True)
    edit = admin.get(edit_url(tenant_a)).get_data(as_text=True)
    for page in (show, listing, edit):
        assert TOKEN not in page and APP_SECRET not in page
        assert TOKEN[:20] not in page and stored not in page
    assert "WhatsApp Cloud API" in show
    assert "•••• 1a2B" in show and "•••• 4e5f" in show
    assert "•••• 1a2B" in listing
    assert PHONE_NUMBER_ID in show and "+919876543210" in show and "250" in show
    # The edit form: empty password inputs that say what is stored.
    for name in ("new_wa_access_token", "new_wa_app_secret"):
        field = re.search(rf'<input[^>]*name="{name}"[^>]*>', edit).group(0)
        assert 'type="password"' in field
        assert "value=" not in field or 'value=""' in field
        assert 'autocomplete="new-password"' in field
    assert "Currently: •••• 1a2B. Leave empty to keep the current value." in edit


def test_billing_staff_see_the_mask_only(client, login, tenant_a):
    tenant_a.wa_access_token = TOKEN
    db.session.commit()
    login("billing@xigmapro.example")
    show = client.get(f"/tenants/show/{tenant_a.id}").get_data(as_text=True)
    assert "•••• 1a2B" in show
    assert TOKEN not in show


def test_an_empty_secret_input_keeps_the_stored_value(admin, tenant_a):
    tenant_a.wa_access_token = TOKEN
    tenant_a.wa_app_secret = APP_SECRET
    db.session.commit()
    stored = raw_token(tenant_a.id)

    response = post_edit(admin, tenant_a, city="Navi Mumbai")
    assert response.status_code == 302
    tenant = reload(tenant_a)
    assert tenant.city == "Navi Mumbai"
    assert tenant.wa_access_token == TOKEN
    assert tenant.wa_app_secret == APP_SECRET
    assert raw_token(tenant_a.id) == stored  # not even re-encrypted


def test_a_new_value_replaces_the_stored_one(admin, tenant_a):
    tenant_a.wa_access_token = TOKEN
    db.session.commit()
    response = post_edit(admin, tenant_a, new_wa_access_token=f"  {NEW_TOKEN} ")
    assert response.status_code == 302
    assert reload(tenant_a).wa_access_token == NEW_TOKEN
    show = admin.get(f"/tenants/show/{tenant_a.id}").get_data(as_text=True)
    assert "•••• 9c3D" in show


def test_remove_clears_the_secret(admin, tenant_a):
    tenant_a.wa_access_token = TOKEN
    tenant_a.wa_app_secret = APP_SECRET
    db.session.commit()
    response = post_edit(admin, tenant_a, clear_wa_access_token="y")
    assert response.status_code == 302
    tenant = reload(tenant_a)
    assert tenant.wa_access_token is None
    assert raw_token(tenant_a.id) is None
    assert tenant.wa_app_secret == APP_SECRET  # the other secret is untouched
    show = admin.get(f"/tenants/show/{tenant_a.id}").get_data(as_text=True)
    assert "not set" in show and "•••• 4e5f" in show


def test_a_new_value_and_remove_together_are_refused(admin, tenant_a):
    tenant_a.wa_access_token = TOKEN
    db.session.commit()
    response = post_edit(admin, tenant_a, new_wa_access_token=NEW_TOKEN, clear_wa_access_token="y")
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert "Either enter a new access token or tick remove, not both." in page
    assert NEW_TOKEN not in page
    assert reload(tenant_a).wa_access_token == TOKEN


def test_invalid_settings_are_explained_and_nothing_typed_is_lost(admin, tenant_a):
    tenant_a.wa_access_token = TOKEN
    db.session.commit()
    response = post_edit(
        admin,
        tenant_a,
        city="Thane",
        wa_phone_number_id="+91 98765 43210",
        wa_business_account_id=WABA_ID,
        wa_display_number="12345",
        wa_messaging_limit_mps="5000",
        new_wa_access_token=NEW_TOKEN,
    )
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert "between 1 and 1000 messages per second" in page
    assert "not a valid phone number" in page
    assert "not the phone number itself" in page
    # What was typed is still there, except the secret, which is asked for again.
    assert 'value="Thane"' in page
    assert f'value="{WABA_ID}"' in page
    assert 'value="5000"' in page
    assert NEW_TOKEN not in page
    assert "Not kept after an error, for safety: enter it again." in page
    tenant = reload(tenant_a)
    assert tenant.city != "Thane"
    assert tenant.wa_messaging_limit_mps == 80
    assert tenant.wa_access_token == TOKEN


@pytest.mark.parametrize(
    ("mps", "message"),
    [("0", "between 1 and 1000"), ("abc", "whole number"), ("", "whole number")],
)
def test_messaging_limit_must_be_1_to_1000(admin, tenant_a, mps, message):
    response = post_edit(admin, tenant_a, wa_messaging_limit_mps=mps)
    assert response.status_code == 200
    assert message in response.get_data(as_text=True)


def test_a_malformed_secret_is_explained(admin, tenant_a):
    before = reload(tenant_a).wa_app_secret  # the demo tenant's secret
    response = post_edit(admin, tenant_a, new_wa_app_secret="has a space in it 0123456789")
    assert response.status_code == 200
    assert "cannot contain spaces or line breaks" in response.get_data(as_text=True)
    assert reload(tenant_a).wa_app_secret == before


def test_a_phone_number_id_belongs_to_one_tenant(admin, tenant_a, tenant_b):
    tenant_b.wa_phone_number_id = PHONE_NUMBER_ID
    db.session.commit()
    response = post_edit(admin, tenant_a, wa_phone_number_id=PHONE_NUMBER_ID)
    assert response.status_code == 200
    assert "Another tenant already uses this phone number id." in response.get_data(as_text=True)
    # Saving tenant B with its own id again is fine.
    assert post_edit(admin, tenant_b, city="Mysuru").status_code == 302


def test_a_new_tenant_can_be_created_with_its_whatsapp_settings(admin):
    url = "/tenants/add"
    page = admin.get(url).get_data(as_text=True)
    assert "WhatsApp Cloud API" in page and 'value="80"' in page
    assert "clear_wa_access_token" not in page  # nothing to remove yet
    data = {
        "name": "Chennai Silks",
        "legal_name": "Chennai Silks Private Limited",
        "slug": "chennai-silks",
        "status": "trial",
        "contact_email": "owner@chennaisilks.example",
        "contact_phone": "044 2345 6789",
        "gstin": "",
        "address_line1": "1 Anna Salai",
        "address_line2": "",
        "city": "Chennai",
        "state_code": "33",
        "postal_code": "600002",
        "wa_phone_number_id": PHONE_NUMBER_ID,
        "wa_business_account_id": "",
        "wa_display_number": "",
        "wa_messaging_limit_mps": "80",
        "new_wa_access_token": TOKEN,
        "new_wa_app_secret": "",
        "csrf_token": form_csrf_token(admin, url),
    }
    response = admin.post(url, data=data)
    assert response.status_code == 302
    tenant = db.session.scalars(select(Tenant).where(Tenant.slug == "chennai-silks")).one()
    assert tenant.wa_access_token == TOKEN
    assert tenant.wa_app_secret is None
    assert tenant.wa_business_account_id is None
    assert TOKEN not in raw_token(tenant.id)


def test_a_secret_no_key_opens_is_reported_and_can_be_entered_again(
    admin, tenant_a, app, monkeypatch
):
    tenant_a.wa_access_token = TOKEN
    tenant_a.wa_app_secret = None  # the only secret stored: the token
    db.session.commit()
    stored = raw_token(tenant_a.id)
    # The key that encrypted it is gone (e.g. retired before rotate-keys had run).
    monkeypatch.setitem(app.config, "FIELD_ENCRYPTION_KEYS", [Fernet.generate_key().decode()])

    for url in ("/tenants/list/", f"/tenants/show/{tenant_a.id}", edit_url(tenant_a)):
        response = admin.get(url)
        assert response.status_code == 200, url
        page = response.get_data(as_text=True)
        assert "cannot be decrypted (check FIELD_ENCRYPTION_KEYS)" in page
        assert stored not in page

    assert post_edit(admin, tenant_a, new_wa_access_token=NEW_TOKEN).status_code == 302
    assert reload(tenant_a).wa_access_token == NEW_TOKEN


def test_the_audit_trail_never_holds_the_secret(admin, tenant_a):
    post_edit(admin, tenant_a, new_wa_access_token=TOKEN, new_wa_app_secret=APP_SECRET)
    assert reload(tenant_a).wa_access_token == TOKEN
    rows = db.session.execute(text("SELECT * FROM audit_event")).all()
    dump = "\n".join(str(tuple(row)) for row in rows)
    assert TOKEN not in dump and APP_SECRET not in dump
    assert TOKEN[-8:] not in dump
