"""Team management by a tenant admin: invite, accept, roles, deactivate (P1, P2, P4)."""

from __future__ import annotations

import re
import time
from urllib.parse import urlsplit

import pytest
from itsdangerous import TimestampSigner
from sqlalchemy import select

from app.extensions import db
from app.models import AppUser
from app.models.user import Role
from app.services import users

NEW_PASSWORD = "fresh-agent-pass-2026"
PLATFORM_ROLES = ("Platform Admin", "Billing", "Compliance")


# ----------------------------------------------------------------------------- helpers


def role_id(name: str) -> int:
    return db.session.scalars(select(Role.id).where(Role.name == name)).one()


def option_value(page: str, label: str) -> str:
    """The value of the <option> showing ``label`` in a rendered form."""
    match = re.search(rf'<option[^>]*value="([^"]+)"[^>]*>\s*{re.escape(label)}\s*</option>', page)
    assert match, f"no option {label!r} in the form"
    return match.group(1)


def csrf_in(page: str) -> str:
    match = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page)
    assert match, "no csrf token in the page"
    return match.group(1)


def find_user(email: str) -> AppUser | None:
    db.session.expire_all()
    return db.session.scalars(
        select(AppUser).where(AppUser.email == email).execution_options(skip_tenant_scope=True)
    ).first()


def role_names(email: str) -> list[str]:
    return sorted(r.name for r in find_user(email).roles)


def invite(client, email: str, role: str = "Agent", first: str = "Neha", last: str = "Joshi"):
    page = client.get("/team/add").get_data(as_text=True)
    return client.post(
        "/team/add",
        data={
            "first_name": first,
            "last_name": last,
            "email": email,
            "phone": "",
            "roles": option_value(page, role),
            "csrf_token": csrf_in(page),
        },
    )


def invitation_path(mailbox, run_jobs, email: str) -> str:
    run_jobs()
    message = mailbox.last_to(email)
    link = mailbox.link_in(message, r"https?://\S+/invitation/\S+")
    return urlsplit(link).path


def accept(client, path: str, password: str = NEW_PASSWORD):
    page = client.get(path).get_data(as_text=True)
    return client.post(
        path,
        data={
            "password": password,
            "password_confirm": password,
            "age_confirm": "y",
            "csrf_token": csrf_in(page),
        },
    )


def team_member(client, login, mailbox, run_jobs, email: str, role: str, first: str = "Neha"):
    """Invite ``email`` as owner@acme, accept it, and leave the client logged out."""
    login("owner@acme.example")
    assert invite(client, email, role, first=first).status_code == 302
    path = invitation_path(mailbox, run_jobs, email)
    login.logout()
    assert accept(client, path).status_code == 302
    login.logout()
    return find_user(email)


def post_action(client, name: str, *ids: int):
    page = client.get("/team/list/").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page) or re.search(
        r'name="csrf_token" type="hidden" value="([^"]+)"', page
    )
    assert token, "no csrf token on the team list"
    return client.post(
        "/team/action_post",
        data={"action": name, "rowid": [str(i) for i in ids], "csrf_token": token.group(1)},
    )


def post_edit(client, user: AppUser, *role_values: int | str, first_name: str | None = None):
    token = csrf_in(client.get(f"/team/edit/{user.id}").get_data(as_text=True))
    return client.post(
        f"/team/edit/{user.id}",
        data={
            "first_name": first_name or user.first_name,
            "last_name": user.last_name,
            "phone": user.phone or "",
            "roles": [str(v) for v in role_values],
            "csrf_token": token,
        },
    )


def platform_roles_in_tenants() -> list[tuple[str, str]]:
    rows = db.session.execute(
        select(AppUser.email, Role.name)
        .join(AppUser.roles)
        .where(AppUser.tenant_id.is_not(None), Role.name.in_(PLATFORM_ROLES))
        .execution_options(skip_tenant_scope=True)
    )
    return [tuple(row) for row in rows]


# ------------------------------------------------------------------------- invitations


def test_owner_invites_an_agent_who_sets_a_password_and_signs_in(
    client, login, mailbox, run_jobs, tenant_a, csrf_token
):
    login("owner@acme.example")
    response = invite(client, "neha@acme.example")
    assert response.status_code == 302
    assert "Invitation sent to neha@acme.example" in client.get(
        response.headers["Location"]
    ).get_data(as_text=True)

    user = find_user("neha@acme.example")
    assert user.tenant_id == tenant_a.id
    assert role_names("neha@acme.example") == ["Agent"]
    assert user.password is None

    path = invitation_path(mailbox, run_jobs, "neha@acme.example")
    login.logout()
    form_page = client.get(path)
    assert form_page.status_code == 200
    assert "neha@acme.example" in form_page.get_data(as_text=True)

    accepted = accept(client, path)
    assert accepted.status_code == 302
    assert accepted.headers["Location"] == "/"
    home = client.get("/")
    assert home.status_code == 200
    assert "Welcome, Neha" in home.get_data(as_text=True)
    assert find_user("neha@acme.example").age_confirmed_at is not None

    login.logout()
    assert client.get("/").status_code == 302
    signed_in = login("neha@acme.example", NEW_PASSWORD)
    assert signed_in.status_code == 302
    assert client.get("/").status_code == 200
    # An agent has no team screen.
    assert client.get("/team/list/").status_code == 403

    login.logout()
    reused = client.get(path)
    assert reused.status_code == 410
    assert "already been used" in reused.get_data(as_text=True)
    again = client.post(
        path,
        data={
            "password": "other-pass-2026",
            "password_confirm": "other-pass-2026",
            "age_confirm": "y",
            "csrf_token": csrf_token("/login"),
        },
    )
    assert again.status_code == 410
    assert login("neha@acme.example", "other-pass-2026").status_code == 200  # refused


def test_an_expired_invitation_is_refused_with_a_clear_message(
    app, client, login, monkeypatch, csrf_token
):
    login("owner@acme.example")
    assert invite(client, "late@acme.example").status_code == 302
    login.logout()
    # The invitation was signed longer ago than INVITE_EXPIRES_HOURS.
    signed_at = int(time.time()) - app.config["INVITE_EXPIRES_HOURS"] * 3600 - 60
    with monkeypatch.context() as patch:
        patch.setattr(TimestampSigner, "get_timestamp", lambda self: signed_at)
        path = f"/invitation/{users.invitation_token(find_user('late@acme.example'))}"

    response = client.get(path)
    assert response.status_code == 410
    page = response.get_data(as_text=True)
    assert "This invitation has expired" in page
    assert "Ask your administrator to send a new one" in page
    assert 'id="invitation-form"' not in page
    posted = client.post(
        path,
        data={
            "password": NEW_PASSWORD,
            "password_confirm": NEW_PASSWORD,
            "age_confirm": "y",
            "csrf_token": csrf_token("/login"),
        },
    )
    assert posted.status_code == 410
    assert "This invitation has expired" in posted.get_data(as_text=True)
    assert find_user("late@acme.example").password is None


def test_a_tampered_invitation_link_is_refused(client, login, mailbox, run_jobs):
    login("owner@acme.example")
    invite(client, "tamper@acme.example")
    path = invitation_path(mailbox, run_jobs, "tamper@acme.example")
    login.logout()
    response = client.get(path[:-3] + ("aaa" if not path.endswith("aaa") else "bbb"))
    assert response.status_code == 410
    assert "not valid" in response.get_data(as_text=True)


# ---------------------------------------------------------------------- role grants


@pytest.mark.parametrize("forbidden", PLATFORM_ROLES)
def test_a_tenant_admin_cannot_invite_with_a_platform_role(client, login, csrf_token, forbidden):
    login("owner@acme.example")
    page = client.get("/team/add").get_data(as_text=True)
    assert f">{forbidden}<" not in page.replace("\n", "")  # not offered
    for roles in ([role_id(forbidden)], [role_id("Agent"), role_id(forbidden)]):
        response = client.post(
            "/team/add",
            data={
                "first_name": "Evil",
                "last_name": "Twin",
                "email": "evil@acme.example",
                "phone": "",
                "roles": [str(r) for r in roles],
                "csrf_token": csrf_token("/team/add"),
            },
        )
        assert response.status_code == 200  # the form again, with an error
        assert "Not a valid choice" in response.get_data(as_text=True)
        assert find_user("evil@acme.example") is None
    assert platform_roles_in_tenants() == []


@pytest.mark.parametrize("forbidden", PLATFORM_ROLES)
def test_a_tenant_admin_cannot_grant_a_platform_role_by_editing(
    client, login, user_by_email, forbidden
):
    agent = user_by_email("agent@acme.example")
    login("owner@acme.example")
    for roles in ([role_id(forbidden)], [role_id("Agent"), role_id(forbidden)]):
        response = post_edit(client, agent, *roles, first_name="Changed")
        assert response.status_code == 200
        assert "Not a valid choice" in response.get_data(as_text=True)
    assert role_names("agent@acme.example") == ["Agent"]
    assert find_user("agent@acme.example").first_name == "Priya"
    assert platform_roles_in_tenants() == []


def test_a_tenant_admin_grants_tenant_roles_by_editing(client, login, user_by_email):
    agent = user_by_email("agent@acme.example")
    login("owner@acme.example")
    response = post_edit(client, agent, role_id("Tenant Admin"), role_id("Agent"))
    assert response.status_code == 302
    assert role_names("agent@acme.example") == ["Agent", "Tenant Admin"]


# -------------------------------------------------------------------- other tenants


def test_a_tenant_admin_cannot_see_or_edit_other_tenants_or_platform_users(
    client, login, user_by_email, csrf_token
):
    login("owner@acme.example")
    listing = client.get("/team/list/").get_data(as_text=True)
    assert "agent@acme.example" in listing
    for email in (
        "owner@bharatfoods.example",
        "agent@bharatfoods.example",
        "admin@xigmapro.example",
        "billing@xigmapro.example",
    ):
        assert email not in listing
        other = user_by_email(email)
        assert client.get(f"/team/show/{other.id}").status_code == 404
        assert client.get(f"/team/edit/{other.id}").status_code == 404
        response = client.post(
            f"/team/edit/{other.id}",
            data={
                "first_name": "Hijacked",
                "last_name": "X",
                "roles": str(role_id("Agent")),
                "csrf_token": csrf_token("/team/add"),
            },
        )
        assert response.status_code == 404
        assert find_user(email).first_name != "Hijacked"
    assert client.get("/users/list/").status_code == 403
    assert client.get("/users/show/1").status_code == 403


# ----------------------------------------------------------------- last tenant admin


def test_the_last_tenant_admin_cannot_demote_themselves(client, login, user_by_email):
    owner = user_by_email("owner@acme.example")
    login("owner@acme.example")
    response = post_edit(client, owner, role_id("Agent"))
    assert response.status_code == 302
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "last active Tenant Admin" in page
    assert role_names("owner@acme.example") == ["Tenant Admin"]
    assert client.get("/team/list/").status_code == 200


def test_the_last_tenant_admin_cannot_be_deactivated(client, login, user_by_email):
    owner = user_by_email("owner@acme.example")
    login("owner@acme.example")
    response = post_action(client, "deactivate", owner.id)
    assert response.status_code == 302
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "You cannot deactivate your own account" in page
    assert find_user("owner@acme.example").active is True
    assert client.get("/team/list/").status_code == 200


def test_with_a_second_tenant_admin_demoting_and_deactivating_work(
    client, login, mailbox, run_jobs
):
    second = team_member(client, login, mailbox, run_jobs, "deputy@acme.example", "Tenant Admin")
    assert role_names("deputy@acme.example") == ["Tenant Admin"]

    # The deputy deactivates the owner (allowed: the deputy stays) ...
    login("deputy@acme.example", NEW_PASSWORD)
    owner = find_user("owner@acme.example")
    assert post_action(client, "deactivate", owner.id).status_code == 302
    assert find_user("owner@acme.example").active is False
    # ... and is now the last one: cannot leave the tenant without an admin.
    deputy = find_user("deputy@acme.example")
    assert post_edit(client, deputy, role_id("Agent")).status_code == 302
    assert role_names("deputy@acme.example") == ["Tenant Admin"]

    assert post_action(client, "reactivate", owner.id).status_code == 302
    assert find_user("owner@acme.example").active is True
    login.logout()

    # Two active admins again: the owner may now step down to Agent.
    login("owner@acme.example")
    owner = find_user("owner@acme.example")
    response = post_edit(client, owner, role_id("Agent"))
    assert response.status_code == 302
    assert role_names("owner@acme.example") == ["Agent"]
    assert client.get("/team/list/").status_code == 403
    assert second.id == find_user("deputy@acme.example").id


# -------------------------------------------------------------- deactivate, reactivate


def test_deactivated_users_cannot_sign_in_and_reactivated_users_can(client, login, user_by_email):
    agent = user_by_email("agent@acme.example")
    login("owner@acme.example")
    assert post_action(client, "deactivate", agent.id).status_code == 302
    assert find_user("agent@acme.example").active is False
    login.logout()

    refused = login("agent@acme.example")
    assert refused.status_code == 200
    # The generic answer of a wrong password: no account enumeration.
    assert "identity or password/passcode invalid" in refused.get_data(as_text=True)
    assert client.get("/").status_code == 302

    login("owner@acme.example")
    assert post_action(client, "reactivate", agent.id).status_code == 302
    assert find_user("agent@acme.example").active is True
    login.logout()

    assert login("agent@acme.example").status_code == 302
    assert client.get("/").status_code == 200
