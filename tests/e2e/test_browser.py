"""End-to-end journeys in Chromium against the live server (P22: only 127.0.0.1)."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import time

import httpx
import pytest
from playwright.sync_api import Page, expect

from app.services.demo import DEMO_PASSWORD

pytestmark = pytest.mark.e2e

INVITATION_LINK = r"http://127\.0\.0\.1:\d+/invitation/[A-Za-z0-9._-]+"


def log_in(page: Page, email: str, password: str = DEMO_PASSWORD) -> None:
    page.goto("/login")
    page.get_by_label("Email Address").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Login").click()
    expect(page).to_have_url(re.compile(r"/$"))
    page.wait_for_load_state()  # the menus need their scripts


def form_row(page: Page, field_id: str):
    """The row of a FAB form that holds the input ``#field_id`` (label, input, errors)."""
    return page.locator("#model_form tr").filter(has=page.locator(f"#{field_id}"))


def wait_for_mail(mailbox, address: str, timeout: float = 10):
    deadline = time.monotonic() + timeout
    while not mailbox.to(address) and time.monotonic() < deadline:
        time.sleep(0.1)
    return mailbox.last_to(address)


def test_tenant_admin_invites_an_agent_who_sets_a_password(browse, live_server):
    page = browse.new_page()
    log_in(page, "owner@acme.example")
    expect(page.locator("body")).to_contain_text("Welcome, Rohan")

    page.get_by_role("link", name="Business").click()
    page.get_by_role("link", name=re.compile(r"\bTeam$")).click()
    expect(page).to_have_url(re.compile(r"/team/list/"))
    expect(page.locator("table.table-bordered")).to_contain_text("agent@acme.example")

    page.get_by_role("link", name="Add").click()
    expect(page).to_have_url(re.compile(r"/team/add$"))
    expect(page.locator(".panel-title, .panel-heading").first).to_contain_text(
        "Invite a team member"
    )
    page.locator("#first_name").fill("Neha")
    page.locator("#last_name").fill("Kulkarni")
    page.locator("#email").fill("neha.kulkarni@acme.example")
    page.locator("#phone").fill("+91 98450 12345")
    # Roles is a select2 widget: type into its search box and pick the match.
    form_row(page, "roles").locator(".select2-search__field").click()
    page.keyboard.type("Agent")
    page.locator(".select2-results__option", has_text=re.compile(r"^Agent$")).click()
    expect(page.locator("#roles")).to_have_values(
        [page.locator("#roles option", has_text="Agent").get_attribute("value")]
    )
    page.get_by_role("button", name="Save").click()

    expect(page).to_have_url(re.compile(r"/team/list/"))
    expect(page.locator("body")).to_contain_text("Invitation sent to neha.kulkarni@acme.example")
    row = page.locator("table.table-bordered tr", has_text="neha.kulkarni@acme.example")
    expect(row).to_contain_text("Neha")
    expect(row).to_contain_text("Kulkarni")
    expect(row).to_contain_text("Agent")

    message = wait_for_mail(live_server.mailbox, "neha.kulkarni@acme.example")
    assert "Acme Traders" in str(message["Subject"])
    link = live_server.mailbox.link_in(message, INVITATION_LINK)
    assert link.startswith(live_server.url + "/invitation/")

    # The invitee opens the link in a browser that has never signed in.
    invitee = browse.new_page()
    invitee.goto(link)
    expect(invitee.locator("h1")).to_have_text("Welcome to Woffice")
    expect(invitee.locator("body")).to_contain_text("neha.kulkarni@acme.example")
    expect(invitee.locator("body")).to_contain_text("Acme Traders")
    invitee.locator("#password").fill("neha-secret-2026")
    invitee.locator("#password_confirm").fill("neha-secret-2026")
    invitee.locator("#age_confirm").check()
    invitee.get_by_role("button", name="Set password and sign in").click()

    expect(invitee).to_have_url(re.compile(r"/$"))
    expect(invitee.locator("body")).to_contain_text("Your password is set")
    expect(invitee.locator("body")).to_contain_text("Welcome, Neha")
    expect(invitee.get_by_text(re.compile(r"^\s*Acme Traders\s*·\s*Agent\s*$"))).to_be_visible()
    expect(invitee.locator(".navbar")).to_contain_text("Neha Kulkarni")
    browse.screenshot(invitee, "invitee-signed-in")

    # The link works once.
    invitee.goto(link)
    expect(invitee.locator("#invitation-error")).to_be_visible()

    browse.assert_all_requests_local()


TENANT = {
    "name": "Karnataka Spices",
    "legal_name": "Karnataka Spices Private Limited",
    "slug": "karnataka-spices",
    "contact_email": "accounts@karnatakaspices.example",
    "contact_phone": "+91 98765 43210",
    "gstin": "29AABCA1234F1Z5",
    "address_line1": "42 Residency Road",
    "address_line2": "Ashok Nagar",
    "city": "Bengaluru",
    "postal_code": "560025",
}


def test_platform_admin_creates_a_tenant_and_sees_gstin_state_errors(browse):
    page = browse.new_page()
    log_in(page, "admin@xigmapro.example")
    expect(page.locator("body")).to_contain_text("Welcome, Asha")

    page.goto("/tenants/list/")
    page.get_by_role("link", name="Add").click()
    expect(page).to_have_url(re.compile(r"/tenants/add$"))
    for field_id, value in TENANT.items():
        page.locator(f"#{field_id}").fill(value)
    page.locator("#status").select_option("active")
    page.locator("#state_code").select_option("27")  # Maharashtra: not the GSTIN's state
    page.get_by_role("button", name="Save").click()

    # Refused: the error sits next to the GSTIN field and nothing typed is lost.
    expect(page).to_have_url(re.compile(r"/tenants/add$"))
    gstin_row = form_row(page, "gstin")
    expect(gstin_row).to_contain_text(
        "GSTIN 29AABCA1234F1Z5 is registered in state 29 (Karnataka), "
        "but the billing state is 27 (Maharashtra)."
    )
    expect(form_row(page, "name")).not_to_contain_text("registered in state")
    for field_id, value in TENANT.items():
        if field_id == "contact_phone":  # shown as stored, same number
            expect(page.locator("#contact_phone")).to_have_value(
                re.compile(r"^\+91 ?98765 ?43210$")
            )
        else:
            expect(page.locator(f"#{field_id}")).to_have_value(value)
    expect(page.locator("#status")).to_have_value("active")
    expect(page.locator("#state_code")).to_have_value("27")
    browse.screenshot(page, "gstin-state-error")

    page.locator("#state_code").select_option("29")  # Karnataka
    page.get_by_role("button", name="Save").click()

    expect(page).to_have_url(re.compile(r"/tenants/list/"))
    row = page.locator("table.table-bordered tr", has_text="karnataka-spices")
    expect(row).to_contain_text("Karnataka Spices")
    expect(row).to_contain_text("Karnataka")
    expect(row).to_contain_text("accounts@karnatakaspices.example")
    expect(row).to_contain_text(re.compile("active", re.IGNORECASE))

    browse.assert_all_requests_local()


# ------------------------------------------------------------- CSP (P12, P22)

# Runs before any page script: records every CSP violation the page reports.
RECORD_CSP_VIOLATIONS = """
window.__cspViolations = [];
document.addEventListener('securitypolicyviolation', (e) => {
    window.__cspViolations.push(`${e.violatedDirective} blocked ${e.blockedURI || 'inline'}`);
});
"""

MENU_PAGES = {
    "admin@xigmapro.example": [
        "/",
        "/tenants/list/",
        "/tenants/add",
        "/users/list/",
        "/account/",
        "/tf-setup",
        "/change",
        # issues 5-7: usage charts, billing, compliance (P22 on every screen)
        "/usage/",
        "/invoices/list/",
        "/plans/add",
        "/billing-events/list/",
        "/billing/gstr1/",
        "/privacy-requests/list/",
        "/privacy-requests/log",
        "/policy-versions/list/",
        "/incidents/list/",
        "/sub-processors/list/",
    ],
    "owner@acme.example": [
        "/",
        "/team/list/",
        "/team/add",
        "/team-roles/",
        "/team-roles/new",
        "/team-roles/builtin/agent",
        "/api-keys/",
        "/account/",
        "/tf-setup",
        "/change",
        "/analytics/",
        "/campaigns/list/",
        "/campaigns/add",
        "/my-invoices/list/",
    ],
}


class ScriptProblems:
    """Console errors, CSP reports and uncaught exceptions of one page."""

    def __init__(self, page: Page):
        self.page = page
        self.messages: list[str] = []
        page.add_init_script(RECORD_CSP_VIOLATIONS)
        page.on("console", self._console)
        page.on("pageerror", lambda exc: self.messages.append(f"pageerror: {exc}"))

    def _console(self, message) -> None:
        text = message.text
        if message.type == "error" or "Content Security Policy" in text or "Refused to" in text:
            self.messages.append(f"console {message.type}: {text} ({message.location['url']})")

    def assert_none(self, where: str) -> None:
        violations = self.page.evaluate("window.__cspViolations || []")
        assert violations == [], f"CSP violations on {where}: {violations}"
        assert self.messages == [], f"script problems on {where}: {self.messages}"


def assert_fab_scripts_ran(page: Page) -> None:
    """FAB's scripts (loaded with the nonce) are there: jQuery, Bootstrap, select2, ab.js."""
    loaded = page.evaluate(
        "() => ({jquery: typeof window.jQuery, bootstrap: typeof jQuery.fn.dropdown,"
        " select2: typeof jQuery.fn.select2, filters: typeof window.AdminFilters})"
    )
    assert loaded == {
        "jquery": "function",
        "bootstrap": "function",
        "select2": "function",
        "filters": "function",
    }


@pytest.mark.parametrize("email", list(MENU_PAGES))
def test_every_menu_page_works_under_the_csp(browse, email):
    """Every menu page: no CSP violation, no JS error, FAB's widgets work, only 127.0.0.1."""
    page = browse.new_page()
    problems = ScriptProblems(page)
    page.goto("/login")
    problems.assert_none("/login")
    log_in(page, email)

    for path in MENU_PAGES[email]:
        response = page.goto(path)
        assert response is not None and response.status == 200, path
        page.wait_for_load_state("load")
        csp = response.headers["content-security-policy"]
        assert "'unsafe-inline'" not in csp.split("script-src")[1].split(";")[0]
        assert_fab_scripts_ran(page)
        problems.assert_none(path)

    # The navbar dropdowns (Bootstrap's JS) open.
    page.goto("/")
    page.locator("#user-menu").click()
    expect(page.locator("#logout-link")).to_be_visible()
    problems.assert_none("the user menu")

    if email == "admin@xigmapro.example":
        search_tenants_by_name(page)
        problems.assert_none("the tenant search")
        show_the_authenticator_qr_code(page)
        problems.assert_none("the 2FA QR code")
    else:
        open_the_roles_select2(page)
        problems.assert_none("the roles box")

    # The CSP really is enforced and a violation would be seen: a script without the
    # nonce does not run, and the page reports it.
    ran = page.evaluate(
        "() => { const s = document.createElement('script');"
        " s.textContent = 'window.__injected = true'; document.head.appendChild(s);"
        " return window.__injected === true; }"
    )
    assert ran is False
    page.wait_for_function("window.__cspViolations.length > 0")
    assert page.evaluate("window.__cspViolations")[0].startswith("script-src")

    browse.assert_all_requests_local()


def search_tenants_by_name(page: Page) -> None:
    """FAB's search: open the accordion, add a Name filter (a select2 operator), search."""
    page.goto("/tenants/list/")
    page.locator("a.accordion-toggle", has_text="Search").click()
    page.get_by_role("button", name="Add Filter").click()
    page.locator("#filter_form a.filter[name='name']").click()
    row = page.locator("#filter_form table.filters tr").first
    expect(row).to_contain_text("Business name")
    row.locator(".select2-selection").click()  # the operator is a select2 box
    page.locator(".select2-results__option", has_text=re.compile(r"^Contains$")).click()
    expect(row.locator(".select2-selection")).to_contain_text("Contains")
    row.locator("input.filter_val").fill("cme Trad")
    page.locator("#filter_form button[type='submit']").click()
    expect(page).to_have_url(re.compile(r"_flt_2_name=cme(\+|%20)Trad"))
    rows = page.locator("table.table-bordered tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("Acme Traders")


def show_the_authenticator_qr_code(page: Page) -> None:
    """/tf-setup with the authenticator: the QR code (a data: image) is shown."""
    page.goto("/tf-setup")
    page.locator("input[name='setup'][value='authenticator']").check()
    page.locator("form[name='two_factor_setup_form'] [type='submit']").click()
    qrcode = page.locator("#qrcode")
    expect(qrcode).to_be_visible()
    assert qrcode.get_attribute("src").startswith("data:image/svg+xml")
    assert qrcode.evaluate("img => img.complete && img.naturalWidth > 0")


def open_the_roles_select2(page: Page) -> None:
    """/team/add: the roles select2 box opens and lists the tenant roles."""
    page.goto("/team/add")
    form_row(page, "roles").locator(".select2-selection").click()
    options = page.locator(".select2-results__option")
    expect(options.filter(has_text=re.compile(r"^Agent$"))).to_be_visible()
    expect(options.filter(has_text=re.compile(r"^Tenant Admin$"))).to_be_visible()


# ------------------------------------------------- untrusted WhatsApp text (P14)

XSS_NAME = "<img src=x onerror=alert(1)>"
XSS_BODY = "<script>alert(2)</script><img src=x onerror=alert(3)>"
ACME_NUMBER_ID, ACME_APP_SECRET = "100000000000001", "acme-demo-app-secret"
XSS_WA_ID = "447700900777"


def deliver_whatsapp_text(base_url: str, wa_id: str, name: str, body: str) -> None:
    """POST a signed WhatsApp webhook (one text message) to the live server."""
    now = int(time.time())
    payload = {
        "object": "whatsapp_business_account",
        "entry": [
            {
                "id": "WABA",
                "changes": [
                    {
                        "field": "messages",
                        "value": {
                            "messaging_product": "whatsapp",
                            "metadata": {
                                "display_phone_number": "15550001111",
                                "phone_number_id": ACME_NUMBER_ID,
                            },
                            "contacts": [{"profile": {"name": name}, "wa_id": wa_id}],
                            "messages": [
                                {
                                    "from": wa_id,
                                    "id": f"wamid.e2e-xss-{now}",
                                    "timestamp": str(now),
                                    "type": "text",
                                    "text": {"body": body},
                                }
                            ],
                        },
                    }
                ],
            }
        ],
    }
    raw = json.dumps(payload).encode()
    signature = hmac.new(ACME_APP_SECRET.encode(), raw, hashlib.sha256).hexdigest()
    response = httpx.post(
        f"{base_url}/webhooks/whatsapp",
        content=raw,
        headers={"Content-Type": "application/json", "X-Hub-Signature-256": f"sha256={signature}"},
        timeout=30,
    )
    assert response.status_code == 200, response.text


def test_whatsapp_names_and_messages_are_shown_as_text_never_run(browse, live_server):
    """A profile name and a message body full of HTML: shown as text on every screen,
    no script runs, no <img src=x> exists, no console error or CSP report."""
    deliver_whatsapp_text(live_server.url, XSS_WA_ID, XSS_NAME, XSS_BODY)

    page = browse.new_page()
    dialogs: list[str] = []

    def on_dialog(dialog) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", on_dialog)
    problems = ScriptProblems(page)
    log_in(page, "owner@acme.example")

    def check(where: str, *texts: str) -> None:
        page.wait_for_load_state("load")
        for text in texts:
            expect(page.get_by_text(text, exact=True).first).to_be_visible()
        assert page.locator("img[src='x']").count() == 0, where
        injected = "[...document.scripts].some(s => s.textContent.includes('alert('))"
        assert page.evaluate(injected) is False, where
        assert dialogs == [], f"a dialog opened on {where}: {dialogs}"
        problems.assert_none(where)

    # The contacts list, found by its number typed in another format.
    page.goto("/contacts/list/?q=" + "%2B44%207700%20900777")
    row = page.locator("table.table-bordered tbody tr", has_text=XSS_NAME)
    expect(row).to_have_count(1)
    check("the contacts list", XSS_NAME)
    browse.screenshot(page, "xss-contacts-list")

    row.locator("a[href*='/contacts/show/']").click()
    expect(page).to_have_url(re.compile(r"/contacts/show/\d+$"))
    check("the contact's page", XSS_NAME)

    page.goto("/conversations/list/")
    row = page.locator("table.table-bordered tbody tr", has_text=XSS_NAME)
    expect(row).to_have_count(1)
    check("the conversations list", XSS_NAME)
    row.locator("a[href*='/conversations/show/']").click()
    expect(page).to_have_url(re.compile(r"/conversations/show/\d+$"))
    expect(page.locator("#conversation-messages .message-body")).to_contain_text(XSS_BODY)
    check("the conversation's page", XSS_BODY)
    browse.screenshot(page, "xss-conversation")

    page.goto("/messages/list/")
    check("the messages list", XSS_BODY)

    assert dialogs == []
    browse.assert_all_requests_local()
