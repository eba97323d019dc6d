"""Password reset by email and password change (Flask-Security-Too pages, P3).

Reset: the link goes out through the mail job to a real SMTP server; an unknown email
gets the same generic answer and no mail (no account enumeration). Change: a logged-in
user changes their password at /change; only the new one logs in afterwards.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from app.extensions import db
from app.services.demo import DEMO_PASSWORD

USER = "owner@acme.example"
NEW_PASSWORD = "brand-new-pass-2026"


def flashes(html: str) -> list[str]:
    return re.findall(r'<div class="alert alert-\w+ flashes" role="alert">(.*?)</div>', html)


def masked(html: str, email: str) -> str:
    html = html.replace(email, "EMAIL")
    html = re.sub(r'nonce="[^"]+"', "NONCE", html)  # the CSP nonce is new on every page
    return re.sub(r'name="csrf_token" type="hidden" value="[^"]+"', "CSRF", html)


def test_password_reset_end_to_end_through_smtp(client, login, csrf_token, mailbox, run_jobs):
    """P3: /reset mails a link; the link sets a new password; only the new one works."""
    response = client.post("/reset", data={"email": USER, "csrf_token": csrf_token("/reset")})
    assert response.status_code == 200
    assert any("Instructions to reset your password" in m for m in flashes(response.text))
    assert mailbox.messages == []  # the request only queued the mail

    assert run_jobs("mail") == 1
    message = mailbox.last_to(USER)
    assert str(message["Subject"]) == "Password reset instructions"
    link = mailbox.link_in(message, r"https?://[^\s]+/reset/[^\s]+")
    path = urlsplit(link).path

    form = client.get(path)
    assert form.status_code == 200
    assert 'name="password_confirm"' in form.text
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', form.text).group(1)
    done = client.post(
        path,
        data={"password": NEW_PASSWORD, "password_confirm": NEW_PASSWORD, "csrf_token": token},
    )
    assert done.status_code == 302
    assert done.headers["Location"].startswith("/login")
    assert client.get("/").status_code == 302  # a reset does not log the user in

    # FST also sends a "your password has been reset" notice, through the job too.
    assert run_jobs("mail") == 1
    assert str(mailbox.last_to(USER)["Subject"]) == "Your password has been reset"

    old = login(USER, DEMO_PASSWORD)
    assert old.status_code == 200
    assert client.get("/").status_code == 302
    new = login(USER, NEW_PASSWORD)
    assert new.status_code == 302
    assert client.get("/").status_code == 200

    # The link works once: the password change invalidates it.
    client.get("/logout")
    again = client.get(path)
    assert again.status_code == 302
    assert again.headers["Location"].startswith("/reset")


def test_unknown_email_gets_the_same_answer_and_no_mail(client, csrf_token, mailbox, run_jobs):
    """P3: reset requests never reveal whether an account exists, and mail nobody."""
    known = client.post("/reset", data={"email": USER, "csrf_token": csrf_token("/reset")})
    unknown_email = "nobody-here@acme.example"
    unknown = client.post(
        "/reset", data={"email": unknown_email, "csrf_token": csrf_token("/reset")}
    )
    assert known.status_code == unknown.status_code == 200
    known_flash = [m.replace(USER, "EMAIL") for m in flashes(known.text)]
    unknown_flash = [m.replace(unknown_email, "EMAIL") for m in flashes(unknown.text)]
    assert known_flash == unknown_flash
    assert known_flash and "Instructions to reset your password" in known_flash[0]
    # Whole pages match once the typed email, CSRF token and CSP nonce are masked.
    assert masked(known.text, USER) == masked(unknown.text, unknown_email)

    run_jobs("mail")
    assert mailbox.to(unknown_email) == []
    assert len(mailbox.messages) == 1  # only the real user's reset mail
    assert mailbox.to(USER)


def test_change_password_while_logged_in(
    client, login, csrf_token, mailbox, run_jobs, user_by_email
):
    """P3: /change with the current password sets a new one; the old one stops working."""
    assert login(USER).status_code == 302
    before = user_by_email(USER).password_changed_at

    wrong = client.post(
        "/change",
        data={
            "password": "not-my-password",
            "new_password": NEW_PASSWORD,
            "new_password_confirm": NEW_PASSWORD,
            "csrf_token": csrf_token("/change"),
        },
    )
    assert wrong.status_code == 200
    assert "Invalid password" in wrong.text

    changed = client.post(
        "/change",
        data={
            "password": DEMO_PASSWORD,
            "new_password": NEW_PASSWORD,
            "new_password_confirm": NEW_PASSWORD,
            "csrf_token": csrf_token("/change"),
        },
    )
    assert changed.status_code == 302
    assert changed.headers["Location"] == "/account/"
    db.session.expire_all()
    user = user_by_email(USER)
    assert user.password.startswith("$argon2")
    assert user.password_changed_at is not None and user.password_changed_at != before

    assert run_jobs("mail") == 1
    assert str(mailbox.last_to(USER)["Subject"]) == "Your password has been changed"

    client.get("/logout")
    assert login(USER, DEMO_PASSWORD).status_code == 200
    assert client.get("/").status_code == 302
    assert login(USER, NEW_PASSWORD).status_code == 302
    assert client.get("/").status_code == 200
