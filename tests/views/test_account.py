"""My account: profile, security summary and recent sign-ins (P1, P5)."""

from __future__ import annotations

from app.extensions import db
from app.models import AppUser
from tests.conftest import form_csrf_token


def test_my_account_shows_recent_sign_ins_with_ip_and_browser(client, login):
    login("owner@acme.example", "wrong-password-1")
    login("owner@acme.example")
    page = client.get(
        "/account/",
        headers={"User-Agent": "Mozilla/5.0 (X11; Linux x86_64) Chrome/156.0 Safari/537.36"},
    ).get_data(as_text=True)
    assert "owner@acme.example" in page
    assert "Acme Traders" in page
    assert "signed in" in page
    assert "bad password" in page
    assert "127.0.0.1" in page
    assert " IST" in page


def test_profile_update_validates_and_normalises_the_phone(client, login, user_by_email):
    login("agent@acme.example")
    token = form_csrf_token(client, "/account/")
    bad = client.post(
        "/account/",
        data={"first_name": "Priya", "last_name": "Patil", "phone": "123", "csrf_token": token},
    )
    assert bad.status_code == 200
    assert "not a valid phone number" in bad.get_data(as_text=True)
    good = client.post(
        "/account/",
        data={
            "first_name": "Priya",
            "last_name": "Patil-Rao",
            "phone": "098765 43210",
            "csrf_token": token,
        },
    )
    assert good.status_code == 302
    user = user_by_email("agent@acme.example")
    assert user.last_name == "Patil-Rao"
    assert user.phone == "+919876543210"


def test_every_role_can_open_my_account(client, login):
    for email in (
        "admin@xigmapro.example",
        "billing@xigmapro.example",
        "compliance@xigmapro.example",
        "owner@acme.example",
        "agent@acme.example",
    ):
        login(email)
        assert client.get("/account/").status_code == 200, email
        client.get("/logout")


def test_team_list_shows_invited_members_as_invited(client, login, tenant_a):
    db.session.add(
        AppUser(
            email="new@acme.example",
            username="new@acme.example",
            first_name="New",
            last_name="Person",
            active=True,
            tenant_id=tenant_a.id,
        )
    )
    db.session.commit()
    login("owner@acme.example")
    page = client.get("/team/list/").get_data(as_text=True)
    assert "new@acme.example" in page
    assert "Invited" in page
