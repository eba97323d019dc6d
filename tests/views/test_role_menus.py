"""Each role sees exactly its menus, and a denied URL answers 403 (or the login page)."""

from __future__ import annotations

import html
import re

import pytest
from sqlalchemy import select

from app.extensions import db
from app.models.user import Role

SECURITY_MENU = {
    "List Users",
    "List Roles",
    "List Groups",
    "User's Statistics",
    "Base Permissions",
    "Views/Menus",
    "Permission on Views/Menus",
}

AUDIT_MENU = {"Audit trail", "Login activity"}
# Tenant users' Business menu (Contacts/Tags: the contacts screens).
CONVERSATION_MENU = {"Conversations", "Messages", "Contacts", "Tags"}
OWNER_MENU = (
    AUDIT_MENU
    | {"Team", "Roles", "API keys", "Imports", "Campaigns", "Templates", "Analytics"}
    | CONVERSATION_MENU
)

# Billing staff's menu (issue 6): labels as shown; permission names differ for some.
BILLING_MENU = {
    "Invoices",
    "Credit notes",
    "Payments",
    "Subscriptions",
    "Plans",
    "Webhook inbox",
    "GSTR-1 export",
}

# Compliance staff's menu (issue 7): the privacy request worklist and its holidays.
COMPLIANCE_MENU = {"Privacy requests", "Compliance holidays"}
# Issue 7 registers: Compliance keeps them; every signed-in role reads the sub-processors
# and the privacy policy.
COMPLIANCE_MENU |= {"Policy versions", "Incidents", "Accounts (age)"}
REGISTERS_MENU = {"Sub-processors", "Privacy policy"}

EXPECTED_MENUS = {
    email: menu | REGISTERS_MENU
    for email, menu in {
        "admin@xigmapro.example": SECURITY_MENU
        | AUDIT_MENU
        | BILLING_MENU
        | COMPLIANCE_MENU
        | {"Tenants", "Usage", "Queues"},
        "billing@xigmapro.example": BILLING_MENU | {"Tenants"},
        "compliance@xigmapro.example": AUDIT_MENU | COMPLIANCE_MENU | {"Tenants"},
        "owner@acme.example": OWNER_MENU | {"Invoices"},
        "agent@acme.example": CONVERSATION_MENU,
        "owner@bharatfoods.example": OWNER_MENU | {"Invoices"},
        "agent@bharatfoods.example": CONVERSATION_MENU,
    }.items()
}


def navbar_items(page: str) -> dict[str, str]:
    """Menu item label -> href of the main navbar (not the user menu on the right)."""
    start = page.index('<ul class="nav navbar-nav">')
    end = page.index('<ul class="nav navbar-nav navbar-right">', start)
    items = {}
    for href, label in re.findall(
        r'<a tabindex="-1" href="([^"]*)">(.*?)</a>', page[start:end], re.S
    ):
        text = html.unescape(re.sub(r"<[^>]+>", "", label)).strip()
        items[text] = href
    return items


@pytest.mark.parametrize("email", sorted(EXPECTED_MENUS))
def test_each_role_sees_exactly_its_menus(client, login, email):
    assert login(email).status_code == 302
    response = client.get("/")
    assert response.status_code == 200
    items = navbar_items(response.get_data(as_text=True))
    assert set(items) == EXPECTED_MENUS[email]


@pytest.mark.parametrize("email", sorted(EXPECTED_MENUS))
def test_every_menu_item_shown_opens(client, login, email):
    """No menu link leads to a refusal: what is shown is allowed."""
    login(email)
    items = navbar_items(client.get("/").get_data(as_text=True))
    for label, href in items.items():
        assert client.get(href).status_code == 200, (label, href)
    assert len(items) == len(EXPECTED_MENUS[email])


def test_platform_admin_does_not_see_the_tenant_team_screen(client, login):
    login("admin@xigmapro.example")
    page = client.get("/").get_data(as_text=True)
    assert "Team" not in navbar_items(page)
    assert 'href="/team/list/"' not in page
    assert client.get("/team/list/").status_code == 403


@pytest.mark.parametrize(
    ("email", "method", "url"),
    [
        ("agent@acme.example", "get", "/team/list/"),
        ("agent@acme.example", "get", "/team/add"),
        ("agent@acme.example", "get", "/tenants/list/"),
        ("agent@acme.example", "get", "/users/list/"),
        ("owner@acme.example", "get", "/tenants/list/"),
        ("owner@acme.example", "get", "/tenants/add"),
        ("owner@acme.example", "get", "/users/list/"),
        ("owner@acme.example", "get", "/roles/list/"),
        ("owner@acme.example", "get", "/userstatschartview/chart/"),
        ("owner@acme.example", "get", "/team/delete/1"),
        ("billing@xigmapro.example", "get", "/tenants/add"),
        ("billing@xigmapro.example", "post", "/tenants/add"),
        ("billing@xigmapro.example", "get", "/users/list/"),
        ("billing@xigmapro.example", "get", "/team/list/"),
        ("compliance@xigmapro.example", "get", "/tenants/add"),
        ("compliance@xigmapro.example", "get", "/roles/list/"),
        ("admin@xigmapro.example", "get", "/team/add"),
        # Billing screens (issue 6): billing staff only; a tenant admin's own invoices.
        ("agent@acme.example", "get", "/my-invoices/list/"),
        ("agent@acme.example", "get", "/invoices/list/"),
        ("owner@acme.example", "get", "/invoices/list/"),
        ("owner@acme.example", "get", "/plans/list/"),
        ("owner@acme.example", "get", "/billing/gstr1/"),
        ("compliance@xigmapro.example", "get", "/invoices/list/"),
        ("compliance@xigmapro.example", "get", "/billing-events/list/"),
        ("billing@xigmapro.example", "get", "/my-invoices/list/"),
        ("admin@xigmapro.example", "get", "/my-invoices/list/"),
        # Privacy requests (issue 7): Compliance (and platform admins) only.
        ("owner@acme.example", "get", "/privacy-requests/list/"),
        ("agent@acme.example", "get", "/privacy-requests/list/"),
        ("billing@xigmapro.example", "get", "/privacy-requests/list/"),
        ("billing@xigmapro.example", "get", "/compliance-holidays/list/"),
        ("owner@acme.example", "get", "/compliance-holidays/add"),
        # REST APIs: agents read contacts, tags, conversations and messages only.
        ("agent@acme.example", "post", "/api/v1/contact/"),
        ("agent@acme.example", "post", "/api/v1/tag/"),
        ("billing@xigmapro.example", "get", "/api/v1/contact/"),
        ("billing@xigmapro.example", "get", "/api/v1/conversation/"),
        ("compliance@xigmapro.example", "get", "/api/v1/message/"),
        ("compliance@xigmapro.example", "get", "/api/v1/tag/"),
    ],
)
def test_a_denied_url_answers_403_when_logged_in(client, login, csrf_token, email, method, url):
    login(email)
    if method == "post":
        response = client.post(url, data={"csrf_token": csrf_token("/account/"), "name": "X"})
    else:
        response = client.get(url)
    assert response.status_code == 403


def test_read_only_staff_can_list_and_show_tenants_but_not_edit(client, login, tenant_a):
    for email in ("billing@xigmapro.example", "compliance@xigmapro.example"):
        login(email)
        assert client.get("/tenants/list/").status_code == 200
        assert client.get(f"/tenants/show/{tenant_a.id}").status_code == 200
        assert client.get(f"/tenants/edit/{tenant_a.id}").status_code == 403
        assert client.get("/tenants/add").status_code == 403
        login.logout()


@pytest.mark.parametrize("url", ["/team/list/", "/tenants/list/", "/tenants/add", "/users/list/"])
def test_a_protected_url_sends_an_anonymous_visitor_to_login(client, url):
    response = client.get(url)
    assert response.status_code == 302
    assert "login" in response.headers["Location"]
    final = client.get(url, follow_redirects=True)
    assert final.request.path == "/login"
    assert final.status_code == 200


API_VIEWS = ("ContactApi", "TagApi", "ConversationApi", "MessageApi")


def api_permissions(role_name: str) -> set[tuple[str, str]]:
    role = db.session.scalars(select(Role).where(Role.name == role_name)).one()
    return {
        (pv.permission.name, pv.view_menu.name)
        for pv in role.permissions
        if pv.view_menu.name in API_VIEWS
    }


def test_api_permissions_follow_the_roles(app):
    """Tenant Admin: everything on the APIs; Agent: reads only; Billing/Compliance: none."""
    admin = api_permissions("Tenant Admin")
    assert {
        ("can_post", "ContactApi"),
        ("can_put", "ContactApi"),
        ("can_consent", "ContactApi"),
    } <= admin
    assert {
        ("can_delete", "TagApi"),
        ("can_put", "ConversationApi"),
        ("can_get", "MessageApi"),
    } <= admin
    reads = {(p, v) for p in ("can_get", "can_info") for v in API_VIEWS}
    assert api_permissions("Agent") == reads
    assert api_permissions("Billing") == set()
    assert api_permissions("Compliance") == set()
    # Platform Admin keeps the same reach as on the Business screens (every tenant).
    assert admin <= api_permissions("Platform Admin")
