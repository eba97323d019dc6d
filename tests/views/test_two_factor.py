"""Two-factor authentication through Flask-Security-Too's own pages (P15, P5).

P15: every user may turn on TOTP two-factor authentication (authenticator app), with
recovery codes and a rescue code by email; platform staff must have it when
``REQUIRE_2FA_FOR_STAFF`` is on. P5: a login only counts (and is tracked) once the
second factor is given.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import struct
import time

from sqlalchemy import select

from app.extensions import db
from app.models import AuditEvent, LoginEvent

TENANT_USER = "agent@acme.example"
STAFF_USER = "compliance@xigmapro.example"


# ------------------------------------------------------------------------ helpers


def totp(pretty_key: str, at: float | None = None) -> str:
    """The RFC 6238 code (SHA-1, 6 digits, 30 s) an authenticator app would show."""
    key32 = pretty_key.replace("-", "").replace(" ", "").upper()
    key = base64.b32decode(key32 + "=" * (-len(key32) % 8))
    counter = int((time.time() if at is None else at) // 30)
    digest = hmac.new(key, struct.pack(">Q", counter), hashlib.sha1).digest()
    offset = digest[-1] & 0x0F
    value = struct.unpack(">I", digest[offset : offset + 4])[0] & 0x7FFFFFFF
    return f"{value % 1_000_000:06d}"


def wrong_code(pretty_key: str) -> str:
    """A six-digit code that matches no time step near now."""
    now = time.time()
    near = {totp(pretty_key, now + step * 30) for step in range(-6, 7)}
    return next(c for c in ("000000", "111111", "123456", "999999") if c not in near)


def page_csrf(html: str) -> str:
    match = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', html)
    assert match, "no csrf token on the page"
    return match.group(1)


def start_authenticator_setup(client) -> tuple[str, str, str]:
    """Choose "authenticator" at /tf-setup; returns (page, manual key, verify URL)."""
    page = client.get("/tf-setup").get_data(as_text=True)
    response = client.post(
        "/tf-setup", data={"setup": "authenticator", "csrf_token": page_csrf(page)}
    )
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    key = re.search(r"<div>([A-Z2-7]{4}(?:-[A-Z2-7]{4})+)</div>", page)
    assert key, "no manual-entry key on the setup page"
    action = re.search(
        r'<form action="([^"]+)" method="post" name="two_factor_verify_code_form"', page
    )
    assert action, "no code form on the setup page"
    return page, key.group(1), action.group(1)


def set_up_authenticator(client, login, email: str) -> str:
    """Log in, turn on authenticator 2FA, log out; returns the manual key."""
    assert login(email).status_code == 302
    page, key, action = start_authenticator_setup(client)
    done = client.post(action, data={"code": totp(key), "csrf_token": page_csrf(page)})
    assert done.status_code == 302
    client.get("/logout")
    return key


def password_step(client, login, email: str):
    """Give the right password; 2FA users land on the code step, not logged in."""
    response = login(email)
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/tf-validate")
    assert client.get("/").headers["Location"].startswith("/login")
    return client.get("/tf-validate")


def fresh(user):
    db.session.expire_all()
    return db.session.get(type(user), user.id)


# -------------------------------------------------------------------------- setup


def test_tenant_user_sets_up_authenticator_with_a_local_qr_code(app, client, login, user_by_email):
    """P15: a tenant user turns on TOTP at /tf-setup; the QR code never leaves the server."""
    assert login(TENANT_USER).status_code == 302
    page, key, action = start_authenticator_setup(client)

    qr = re.search(r'<img[^>]*id="qrcode"[^>]*src="([^"]+)"', page)
    assert qr, "no QR code image on the setup page"
    assert qr.group(1).startswith("data:image/svg+xml;base64,")
    svg = base64.b64decode(qr.group(1).split(",", 1)[1]).decode()
    assert "<svg" in svg
    assert not re.search(r'(src|href)="(https?:)?//', page), "setup page loads an external URL"

    user = user_by_email(TENANT_USER)
    assert user.tf_primary_method is None  # nothing stored before the code is confirmed

    assert action.startswith("/tf-setup/")
    refused = client.post(action, data={"code": wrong_code(key), "csrf_token": page_csrf(page)})
    assert refused.status_code == 302
    assert fresh(user).tf_primary_method is None

    done = client.post(action, data={"code": totp(key), "csrf_token": page_csrf(page)})
    assert done.status_code == 302
    assert done.headers["Location"] == "/account/"
    user = fresh(user)
    assert user.tf_primary_method == "authenticator"
    assert user.tf_totp_secret
    # The key the page showed is the secret FST stored: both give the same code now.
    factory = app.extensions["security"].totp_factory
    now = time.time()
    assert factory.generate_totp_password(user.tf_totp_secret) in {
        totp(key, now),
        totp(key, now + 30),
    }


def test_login_with_two_factor_needs_the_right_code(client, login, user_by_email):
    """P15 + P5: after the password a 2FA user must give a TOTP code; a wrong one is refused."""
    key = set_up_authenticator(client, login, TENANT_USER)
    user = user_by_email(TENANT_USER)
    events_before = db.session.scalars(
        select(LoginEvent.id).where(LoginEvent.user_id == user.id, LoginEvent.outcome == "ok")
    ).all()

    step = password_step(client, login, TENANT_USER)
    assert step.status_code == 200
    html = step.get_data(as_text=True)
    assert 'name="code"' in html

    wrong = client.post(
        "/tf-validate", data={"code": wrong_code(key), "csrf_token": page_csrf(html)}
    )
    assert wrong.status_code == 200
    assert "Invalid code" in wrong.get_data(as_text=True)
    assert client.get("/").status_code == 302

    right = client.post("/tf-validate", data={"code": totp(key), "csrf_token": page_csrf(html)})
    assert right.status_code == 302
    assert right.headers["Location"] == "/"
    assert client.get("/").status_code == 200
    events_after = db.session.scalars(
        select(LoginEvent.id).where(LoginEvent.user_id == user.id, LoginEvent.outcome == "ok")
    ).all()
    assert len(events_after) == len(events_before) + 1


# ----------------------------------------------------------------- recovery codes


def test_recovery_code_replaces_the_totp_once(client, login, user_by_email):
    """P15: a recovery code from /mf-recovery-codes logs in at /mf-recovery, only once."""
    key = set_up_authenticator(client, login, TENANT_USER)
    html = password_step(client, login, TENANT_USER).get_data(as_text=True)
    logged_in = client.post("/tf-validate", data={"code": totp(key), "csrf_token": page_csrf(html)})
    assert logged_in.status_code == 302

    codes_page = client.get("/mf-recovery-codes").get_data(as_text=True)
    generated = client.post(
        "/mf-recovery-codes",
        data={"generate_new_codes": "Generate", "csrf_token": page_csrf(codes_page)},
    )
    assert generated.status_code == 200
    codes = re.findall(
        r'<li class="fs-div">([0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4})</li>',
        generated.get_data(as_text=True),
    )
    assert len(codes) == 8
    assert len(set(codes)) == 8
    client.get("/logout")

    # Log in with a recovery code instead of the TOTP.
    step = password_step(client, login, TENANT_USER).get_data(as_text=True)
    assert 'value="recovery_code"' in step  # offered as a rescue option
    page = client.get("/mf-recovery").get_data(as_text=True)
    used = client.post("/mf-recovery", data={"code": codes[0], "csrf_token": page_csrf(page)})
    assert used.status_code == 302
    assert used.headers["Location"] == "/"
    assert client.get("/").status_code == 200
    user = fresh(user_by_email(TENANT_USER))
    assert len(user.mf_recovery_codes) == 7
    assert codes[0] not in user.mf_recovery_codes
    client.get("/logout")

    # The same code a second time: refused, not logged in.
    password_step(client, login, TENANT_USER)
    page = client.get("/mf-recovery").get_data(as_text=True)
    again = client.post("/mf-recovery", data={"code": codes[0], "csrf_token": page_csrf(page)})
    assert again.status_code == 200
    assert "Recovery code invalid" in again.get_data(as_text=True)
    assert client.get("/").status_code == 302
    # An unused code still works.
    other = client.post("/mf-recovery", data={"code": codes[1], "csrf_token": page_csrf(page)})
    assert other.status_code == 302
    assert client.get("/").status_code == 200


# ------------------------------------------------------------------ rescue by email


def test_rescue_code_by_email_logs_in(client, login, mailbox, run_jobs):
    """P15: a user without their authenticator gets a code by email and logs in with it."""
    key = set_up_authenticator(client, login, TENANT_USER)
    html = password_step(client, login, TENANT_USER).get_data(as_text=True)
    assert 'value="email"' in html  # "Send code via email" is offered

    rescue = client.post("/tf-rescue", data={"help_setup": "email", "csrf_token": page_csrf(html)})
    assert rescue.status_code == 200
    assert "sent to your email address" in rescue.get_data(as_text=True)
    assert client.get("/").status_code == 302  # asking for a code does not log in

    assert mailbox.to(TENANT_USER) == []  # sent by the mail job, not in the request
    assert run_jobs("mail") >= 1
    message = mailbox.last_to(TENANT_USER)
    match = re.search(r"following code: (\d{6})", mailbox.text(message))
    assert match, mailbox.text(message)
    code = match.group(1)
    now = time.time()  # a code of the user's own TOTP secret (this or the previous step)
    assert code in {totp(key, now), totp(key, now - 30)}

    done = client.post("/tf-validate", data={"code": code, "csrf_token": page_csrf(html)})
    assert done.status_code == 302
    assert done.headers["Location"] == "/"
    assert client.get("/").status_code == 200


# -------------------------------------------------------------- forced for staff


def test_platform_staff_without_2fa_are_sent_to_setup_until_done(
    app, client, login, monkeypatch, user_by_email
):
    """P15: with REQUIRE_2FA_FOR_STAFF, platform staff reach nothing until 2FA is set up."""
    monkeypatch.setitem(app.config, "REQUIRE_2FA_FOR_STAFF", True)
    assert user_by_email(STAFF_USER).tf_primary_method is None
    assert login(STAFF_USER).status_code == 302

    for url in ("/", "/tenants/list/", "/account/"):
        response = client.get(url)
        assert response.status_code == 302, url
        assert response.headers["Location"] == "/tf-setup", url
    assert client.get("/tf-setup").status_code == 200

    page, key, action = start_authenticator_setup(client)
    done = client.post(action, data={"code": totp(key), "csrf_token": page_csrf(page)})
    assert done.status_code == 302
    assert done.headers["Location"] == "/account/"
    assert fresh(user_by_email(STAFF_USER)).tf_primary_method == "authenticator"

    for url in ("/", "/tenants/list/", "/account/"):
        assert client.get(url).status_code == 200, url


def test_tenant_users_are_not_forced_into_2fa(app, client, login, monkeypatch, user_by_email):
    """P15: 2FA stays optional for tenant users even when it is required for staff."""
    monkeypatch.setitem(app.config, "REQUIRE_2FA_FOR_STAFF", True)
    assert user_by_email(TENANT_USER).tf_primary_method is None
    assert login(TENANT_USER).status_code == 302
    for url in ("/", "/account/"):
        assert client.get(url).status_code == 200, url


def test_staff_are_not_forced_when_the_policy_is_off(app, client, login, monkeypatch):
    """P15: REQUIRE_2FA_FOR_STAFF off (the testing default) leaves staff 2FA optional."""
    monkeypatch.setitem(app.config, "REQUIRE_2FA_FOR_STAFF", False)
    assert login(STAFF_USER).status_code == 302
    assert client.get("/").status_code == 200


def test_enabling_and_removing_two_factor_are_audited(client, login, user_by_email):
    """P3/P15: turning two-factor on and off are audit events of that user."""
    key = set_up_authenticator(client, login, TENANT_USER)
    user = user_by_email(TENANT_USER)
    enabled = db.session.scalars(
        select(AuditEvent).where(
            AuditEvent.action == "auth.2fa_enabled", AuditEvent.object_id == str(user.id)
        )
    ).all()
    assert [e.details["method"] for e in enabled] == ["authenticator"]
    assert enabled[0].tenant_id == user.tenant_id and enabled[0].ip == "127.0.0.1"
    assert key not in str(enabled[0].details)

    page = password_step(client, login, TENANT_USER).get_data(as_text=True)
    done = client.post("/tf-validate", data={"code": totp(key), "csrf_token": page_csrf(page)})
    assert done.status_code == 302
    page = client.get("/tf-setup").get_data(as_text=True)
    assert 'value="disable"' in page
    client.post("/tf-setup", data={"setup": "disable", "csrf_token": page_csrf(page)})
    assert fresh(user).tf_primary_method is None
    disabled = db.session.scalars(
        select(AuditEvent).where(
            AuditEvent.action == "auth.2fa_disabled", AuditEvent.object_id == str(user.id)
        )
    ).all()
    assert len(disabled) == 1
