"""Login, logout, wrong password, throttling, login tracking (P3, P5)."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select, update

from app.extensions import db
from app.models import LoginEvent


def test_login_and_logout(client, login, user_by_email):
    response = login("owner@acme.example")
    assert response.status_code == 302
    assert response.headers["Location"] == "/"
    home = client.get("/")
    assert home.status_code == 200
    assert "Welcome, Rohan" in home.get_data(as_text=True)
    user = user_by_email("owner@acme.example")
    assert user.current_login_at is not None
    assert user.current_login_ip == "127.0.0.1"

    client.get("/logout")
    after = client.get("/")
    assert after.status_code == 302
    assert after.headers["Location"].startswith("/login")
    outcomes = db.session.scalars(
        select(LoginEvent.outcome).where(LoginEvent.user_id == user.id)
    ).all()
    assert outcomes.count("ok") == 1 and outcomes.count("logout") == 1


def test_wrong_password_is_refused_without_saying_which_part(client, login):
    response = login("owner@acme.example", "not-the-password")
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert "Invalid" in page or "invalid" in page
    assert client.get("/").status_code == 302


def test_unknown_email_gets_the_same_answer(client, login):
    page_unknown = login("nobody@acme.example", "whatever-pass").get_data(as_text=True)
    page_wrong = login("owner@acme.example", "whatever-pass").get_data(as_text=True)
    assert ("Invalid" in page_unknown) == ("Invalid" in page_wrong)


def test_repeated_failures_throttle_the_account_then_login_works_again(app, client, login):
    limit = app.config["LOGIN_THROTTLE_MAX_PER_ACCOUNT"]
    for _ in range(limit):
        login("agent@acme.example", "wrong-password-1")
    blocked = login("agent@acme.example").get_data(as_text=True)  # right password, too late
    assert "Too many failed sign-in attempts" in blocked
    assert client.get("/").status_code == 302

    # Time passes: move the failures out of the throttle window.
    window = timedelta(seconds=app.config["LOGIN_THROTTLE_WINDOW_SECONDS"] + 1)
    db.session.execute(update(LoginEvent).values(occurred_at=LoginEvent.occurred_at - window))
    db.session.commit()
    response = login("agent@acme.example")
    assert response.status_code == 302
    assert client.get("/").status_code == 200


def test_other_accounts_are_not_throttled_by_one_accounts_failures(app, login, client):
    for _ in range(app.config["LOGIN_THROTTLE_MAX_PER_ACCOUNT"] + 1):
        login("agent@acme.example", "wrong-password-1")
    assert login("owner@acme.example").status_code == 302


def test_failed_attempts_store_no_email(login):
    login("owner@acme.example", "wrong-password-1")
    event = db.session.scalars(select(LoginEvent).order_by(LoginEvent.id.desc())).first()
    assert event.outcome == "bad_password"
    assert "acme" not in event.identity_hash
    assert len(event.identity_hash) == 64


def test_there_is_no_password_only_api_login(client):
    """A password-only API login would bypass two-factor (DESIGN.md): it must not exist."""
    response = client.post(
        "/api/v1/security/login",
        json={"username": "admin@xigmapro.example", "password": "demo-pass-2026", "provider": "db"},
    )
    assert response.status_code == 404
    assert "access_token" not in response.get_data(as_text=True)
