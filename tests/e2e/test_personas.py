"""Persona journeys in Chromium (issue 9, "proof from outside"): the README's tour.

Each test is one person's errand, start to finish, through the menus and buttons of the
live server (only the first page is typed in): the platform admin onboards a tenant; a
tenant admin imports contacts, builds and launches a campaign and watches its funnel; an
agent answers the conversation assigned to her; billing staff review an invoice;
compliance works a deletion request to its certificate. After each step's checks pass,
`save` writes what the user sees as ``NN-persona-step.png`` (1280x900 viewport): to
``test-artifacts/`` on every run, and to ``docs/screenshots/`` (the images of README.md's
"A tour in screenshots") when ``UPDATE_SCREENSHOTS=1``, so an ordinary test run leaves the
repository clean. Names are stable, and a failed step never overwrites an image with a
picture of an error.

The live database is shared with the other browser tests, so every journey uses data
nobody else relies on: a new tenant, new numbers in a new tag, the demo conversation of
Acme's agent, invoices it only reads, and an Acme contact no other test uses.
"""

from __future__ import annotations

import os
import re
import time
from contextlib import closing
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import psycopg2
import pytest
from playwright.sync_api import Page, expect

from tests.e2e.conftest import ROOT, e2e_database_url
from tests.e2e.test_billing_browser import WithoutPdfViewer
from tests.e2e.test_browser import ACME_NUMBER_ID, ScriptProblems, form_row, log_in
from tests.e2e.test_campaign_browser import pick_tags
from tests.e2e.test_privacy_browser import COMPLIANCE, DPO, privacy_demo  # noqa: F401

pytestmark = pytest.mark.e2e

# The README's images are refreshed on request only (PNG bytes change on every run).
SCREENSHOTS = (
    ROOT / "docs" / "screenshots"
    if os.environ.get("UPDATE_SCREENSHOTS") == "1"
    else ROOT / "test-artifacts" / "screenshots"
)


def save(page: Page, name: str, full_page: bool = False) -> Path:
    """Write the page as <name>.png (see SCREENSHOTS). Called only after the step's
    expectations passed, so the README never shows a broken screen."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=path, full_page=full_page, animations="disabled", caret="hide")
    return path


def menu(page: Page, category: str, entry: str) -> None:
    """Open a navbar dropdown and click one of its entries (whose accessible name starts
    with the icon's glyph). Waits for the page's load first: before Bootstrap's script
    ran, a click on the dropdown does nothing."""
    page.wait_for_load_state("load")
    navbar = page.locator(".navbar")
    navbar.get_by_role("link", name=category).first.click()
    navbar.get_by_role("link", name=re.compile(rf"(^|\W){re.escape(entry)}\s*$")).click()


def acknowledge_policy(page: Page) -> None:
    """A first sign-in shows the privacy-policy notice; the user reads it and closes it."""
    banner = page.locator("#policy-banner")
    if banner.count():
        banner.get_by_role("button", name="I have read it").click()
        expect(page.locator("#policy-banner")).to_have_count(0)


# ------------------------------------------------------------ 1. platform admin

NEW_TENANT = {
    "name": "Konkan Cashews",
    "legal_name": "Konkan Cashews LLP",
    "slug": "konkan-cashews",
    "contact_email": "hello@konkancashews.example",
    "contact_phone": "+91 83220 45678",
    "gstin": "30AABCK4821M1ZQ",  # Goa (30); valid check character
    "address_line1": "7 Rua de Ourem",
    "city": "Panaji",
    "postal_code": "403001",
    "wa_phone_number_id": "100000000000093",
    "wa_business_account_id": "200000000000093",
    "wa_display_number": "+91 83220 45679",
    "new_wa_access_token": "konkan-access-token-2026",
    "new_wa_app_secret": "konkan-app-secret-2026",
}
NEW_OWNER = ("Meera", "Naik", "meera@konkancashews.example", "meera-secret-2026")


def test_platform_admin_onboards_a_tenant(browse):
    page = browse.new_page()
    problems = ScriptProblems(page)
    log_in(page, "admin@xigmapro.example")
    acknowledge_policy(page)
    expect(page.locator("h2")).to_have_text("Welcome, Asha")

    menu(page, "Platform", "Tenants")
    expect(page.locator("table.table-bordered")).to_contain_text("Acme Traders")
    page.get_by_role("link", name="Add").click()
    for field_id, value in NEW_TENANT.items():
        page.locator(f"#{field_id}").fill(value)
    page.locator("#status").select_option("trial")
    page.locator("#state_code").select_option("30")
    page.locator("#name").scroll_into_view_if_needed()
    save(page, "01-platform-admin-new-tenant")
    page.get_by_role("button", name="Save").click()

    expect(page).to_have_url(re.compile(r"/tenants/list/"))
    expect(page.locator("body")).to_contain_text("Tenant created.")
    row = page.locator("table.table-bordered tr", has_text="konkan-cashews")
    expect(row).to_contain_text("Konkan Cashews")
    expect(row).to_contain_text("Goa")
    expect(row).to_contain_text("+918322045679")
    expect(row).not_to_contain_text(NEW_TENANT["new_wa_access_token"])  # masked
    save(page, "02-platform-admin-tenant-created")

    # Its first tenant admin, with a password and the Tenant Admin role.
    menu(page, "Security", "List Users")
    page.get_by_role("link", name="Add").click()
    first, last, email, password = NEW_OWNER
    page.locator("#first_name").fill(first)
    page.locator("#last_name").fill(last)
    page.locator("#email").fill(email)
    tenant = page.locator("#tenant option", has_text="Konkan Cashews").get_attribute("value")
    page.locator("#tenant").select_option(tenant)
    page.locator("#active").check()
    form_row(page, "roles").locator(".select2-search__field").click()
    page.keyboard.type("Tenant Admin")
    page.locator(".select2-results__option", has_text=re.compile(r"^Tenant Admin$")).click()
    page.locator("#password").fill(password)
    page.locator("#conf_password").fill(password)
    page.locator("#age_confirm").check()
    page.get_by_role("button", name="Save").click()
    row = page.locator("table.table-bordered tr", has_text=email)
    expect(row).to_contain_text("Konkan Cashews")
    expect(row).to_contain_text("Tenant Admin")
    save(page, "03-platform-admin-first-user")
    problems.assert_none("the onboarding screens")

    # The new tenant admin signs in to an empty, separate workspace.
    owner = browse.new_page()
    log_in(owner, email, password)
    acknowledge_policy(owner)
    expect(owner.locator("h2")).to_have_text("Welcome, Meera")
    expect(owner.get_by_text(re.compile(r"Konkan Cashews\s*·\s*Tenant Admin"))).to_be_visible()
    save(owner, "04-new-tenant-admin-home")
    menu(owner, "Business", "Contacts")
    expect(owner.locator("body")).not_to_contain_text("Ravi Kumar")  # no Acme data
    menu(owner, "Business", "Team")
    expect(owner.locator("table.table-bordered tbody tr")).to_have_count(1)
    expect(owner.locator("table.table-bordered")).to_contain_text(email)


# ------------------------------------------------------------- 2. tenant admin

TAG, CAMPAIGN = "trade-fair-2026", "Trade fair welcome"
# Visitors of a trade fair stand: three said yes to WhatsApp offers, one said no.
CSV = (
    "Customer,Mobile,Segment,WhatsApp offers,City\n"
    "Anil Desai,+91 93000 40001,trade-fair-2026,yes,Pune\n"
    "Bhavna Patil,09300040002,trade-fair-2026,yes,Nashik\n"
    "Chetan Rao,93000 40003,trade-fair-2026,yes,Mumbai\n"
    "Dinesh Pawar,+919300040004,trade-fair-2026,no,Thane\n"
)
MAPPING = {
    "Customer": "display_name",
    "Mobile": "phone",
    "Segment": "tags",
    "WhatsApp offers": "consent",
    "City": "ignore",
}


def test_tenant_admin_imports_contacts_and_runs_a_campaign(browse, tmp_path):
    csv_path = tmp_path / "trade-fair-visitors.csv"
    csv_path.write_text(CSV)
    page = browse.new_page()
    problems = ScriptProblems(page)
    log_in(page, "owner@acme.example")
    acknowledge_policy(page)

    # Business -> Imports -> Import CSV: upload, map the columns, start.
    menu(page, "Business", "Imports")
    page.locator("#contact-import-upload").click()
    page.locator("#file").set_input_files(csv_path)
    page.get_by_role("button", name="Upload and preview").click()
    expect(page.locator("h2")).to_have_text("Map the columns of trade-fair-visitors.csv")
    for header, field_name in MAPPING.items():
        page.get_by_label(f"Field for column {header}").select_option(field_name)
    expect(page.locator("#contact-import-mapping tbody")).to_contain_text("Bhavna Patil")
    save(page, "05-tenant-admin-import-mapping")
    page.get_by_role("button", name="Import 4 row(s)").click()

    expect(page.locator("body")).to_contain_text("Import started.")
    expect(page.locator("#import-status")).to_have_text("Done", timeout=30_000)
    expect(page.locator("#import-created")).to_have_text("4")
    expect(page.locator("#import-errors")).to_have_text("0")
    save(page, "06-tenant-admin-import-done")

    # Business -> Campaigns -> Add: the welcome template to the new tag.
    menu(page, "Business", "Campaigns")
    page.get_by_role("link", name="Add").click()
    page.locator("#name").fill(CAMPAIGN)
    page.locator("#template_id").select_option(label="welcome (en_US, marketing)")
    pick_tags(page, "include_tag_ids", TAG)
    page.get_by_role("button", name="Save and continue").click()
    expect(page.locator("#campaign-status")).to_have_text("Draft")
    expect(page.locator("#campaign-audience")).to_contain_text(f"contacts tagged {TAG}")
    page.get_by_label("Source of 1").select_option("field")
    page.get_by_label("Contact field for 1").select_option("name")
    page.get_by_label("Fallback for 1").fill("friend")
    page.get_by_role("button", name="Save values").click()

    # The preview: four in the tag, three will receive it, the one who said no is skipped.
    expect(page.locator("#preview-audience")).to_have_text("4")
    expect(page.locator("#preview-will-send")).to_have_text("3")
    expect(page.locator("#skip-opted_out")).to_have_text("1")
    save(page, "07-tenant-admin-campaign-preview")
    page.get_by_role("button", name="Launch now to 3 contact(s)").click()
    expect(page.locator("body")).to_contain_text("Launched: 3 to send, 1 skipped.")

    # The funnel fills in as WhatsApp's reports arrive (the page refreshes itself).
    delivered_seen = watch_funnel(page, "delivered", until=3)
    expect(page.locator("#campaign-status")).to_have_text("Completed")
    expect(page.locator("#funnel-sent")).to_have_text("3")
    expect(page.locator("#funnel-read")).to_have_text("3", timeout=20_000)
    expect(page.locator("#funnel-failed")).to_have_text("0")
    expect(page.locator("#funnel-skipped")).to_have_text("1")
    assert delivered_seen == sorted(delivered_seen), delivered_seen  # only ever grows
    save(page, "08-tenant-admin-campaign-funnel")
    problems.assert_none("the import and campaign screens")


def watch_funnel(page: Page, stage: str, until: int, timeout: float = 30) -> list[int]:
    """The successive values of ``#funnel-<stage>`` until it reaches ``until``."""
    seen: list[int] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        cell = page.locator(f"#funnel-{stage}")
        if cell.count():
            text = cell.inner_text().strip()
            if text.isdigit() and (not seen or seen[-1] != int(text)):
                seen.append(int(text))
            if seen and seen[-1] >= until:
                return seen
        time.sleep(0.25)
    pytest.fail(f"{stage} stayed at {seen} (wanted {until})")


# ------------------------------------------------------------------- 3. agent

CUSTOMER = "Neha Kulkarni"  # the demo conversation assigned to agent@acme.example
QUESTION = "Can you deliver to our Pune shop instead?"
ANSWER = "Yes, Neha: it will reach the Pune shop tomorrow before noon."


def demo_customer_wa_id(name: str, tenant_slug: str) -> str:
    """The WhatsApp id of a demo conversation's contact, read from the live database."""
    with closing(psycopg2.connect(e2e_database_url().replace("+psycopg2", ""))) as conn:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT c.wa_id FROM contact c JOIN tenant t ON t.id = c.tenant_id "
                "WHERE t.slug = %s AND c.profile_name = %s",
                (tenant_slug, name),
            )
            return cur.fetchone()[0]


def test_agent_answers_an_assigned_conversation(browse, live_server):
    # The customer writes in on WhatsApp (the fake Cloud API posts the webhook).
    wa_id = demo_customer_wa_id(CUSTOMER, "acme")
    _wamid, delivery = live_server.whatsapp.simulate_inbound(
        ACME_NUMBER_ID, wa_id, QUESTION, name=CUSTOMER
    )
    assert delivery is not None and delivery.status_code == 200, delivery

    page = browse.new_page()
    problems = ScriptProblems(page)
    log_in(page, "agent@acme.example")
    acknowledge_policy(page)
    expect(page.get_by_text(re.compile(r"Acme Traders\s*·\s*Agent"))).to_be_visible()

    # Only the conversation assigned to her is listed.
    menu(page, "Business", "Conversations")
    rows = page.locator("table.table-bordered tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text(CUSTOMER)
    save(page, "09-agent-conversations")
    rows.first.locator("a[href*='/conversations/show/']").click()

    messages = page.locator("#conversation-messages")
    expect(messages.locator("tr.message-inbound").last).to_contain_text(QUESTION)
    expect(page.locator("#reply-window")).to_contain_text("free-form replies are open")
    page.locator("#reply-text").fill(ANSWER)
    page.locator("#conversation-reply").scroll_into_view_if_needed()
    save(page, "10-agent-answers")
    page.get_by_role("button", name="Send", exact=True).click()
    expect(page.locator("body")).to_contain_text("Message sent to WhatsApp.")
    answer = messages.locator("tr.message-outbound", has_text=ANSWER)
    expect(answer).to_have_count(1)

    # WhatsApp reports it sent, delivered, then read (1 s apart): she reloads to see it.
    deadline = time.monotonic() + 20
    while "read" not in answer.locator("td").nth(4).inner_text() and time.monotonic() < deadline:
        time.sleep(1)
        page.reload()
    expect(answer.locator("td").nth(4)).to_have_text("read")
    save(page, "11-agent-reply-read")
    problems.assert_none("the conversation screens")

    sent = [a.request for a in live_server.whatsapp.accepted if a.to == wa_id]
    assert [r["text"]["body"] for r in sent if r["type"] == "text"] == [ANSWER]


# ----------------------------------------------------------------- 4. billing


def test_billing_staff_review_an_invoice(browse):
    browse.requests = WithoutPdfViewer(browse.requests)  # the PDF preview's own viewer
    page = browse.new_page()
    log_in(page, "billing@xigmapro.example")
    acknowledge_policy(page)

    menu(page, "Billing", "Invoices")
    rows = page.locator("table.table-bordered tbody tr").filter(has_text="Bharat Foods")
    expect(rows.first).to_be_visible()
    save(page, "12-billing-invoices")
    rows.first.locator("a[href*='/invoices/show/']").first.click()

    # Bharat Foods (Karnataka) buys from a Delhi supplier: IGST, on the Starter plan.
    expect(page.locator("#invoice-number")).to_have_text(re.compile(r"INV/\d\d-\d\d/\d{6}"))
    number = page.locator("#invoice-number").inner_text()
    expect(page.locator("#invoice-supplier")).to_contain_text("07AABCX1234K1ZD")
    expect(page.locator("#invoice-buyer")).to_contain_text("Bharat Foods")
    expect(page.locator("#invoice-buyer")).to_contain_text("29-Karnataka")
    expect(page.locator("#invoice-particulars")).to_contain_text("IGST (inter-state)")
    expect(page.locator("#invoice-lines")).to_contain_text("Starter")
    expect(page.locator("#invoice-grand-total")).to_contain_text("Rs. 3,539")
    expect(page.locator("#pdf-status")).to_have_text("Ready")
    expect(page.locator("#pdf-preview")).to_be_visible()
    save(page, "13-billing-invoice")

    with page.expect_download() as info:
        page.locator("#invoice-download").click()
    assert info.value.suggested_filename == number.replace("/", "-") + ".pdf"
    assert Path(info.value.path()).read_bytes().startswith(b"%PDF-")


# -------------------------------------------------------------- 5. compliance

SUBJECT = ("Farah Khan", "+91 99300 12345", "farah.khan@example.com")  # Acme, no other test


def test_compliance_works_a_deletion_request_to_its_certificate(browse, privacy_demo):  # noqa: F811
    name, phone, email = SUBJECT
    page = browse.new_page()
    problems = ScriptProblems(page)
    log_in(page, COMPLIANCE)
    acknowledge_policy(page)

    # Compliance -> Privacy requests -> log the request she emailed.
    menu(page, "Compliance", "Privacy requests")
    expect(page.locator("#privacy-worklist")).to_be_visible()
    page.locator("#privacy-log").click()
    page.locator("#request_type").select_option("deletion")
    page.locator("#subject_kind").select_option("contact")
    page.locator("#tenant").select_option(label="Acme Traders (acme)")
    page.locator("#subject_phone").fill(phone)
    page.locator("#requester_email").fill(email)
    page.locator("#requester_name").fill(name)
    received = datetime.now(ZoneInfo("Asia/Kolkata")) - timedelta(hours=2)
    page.locator("#received_at").fill(received.strftime("%Y-%m-%dT%H:%M"))
    page.locator("#identity_verified").check()
    save(page, "14-compliance-log-request")
    page.get_by_role("button", name="Log the request").click()
    expect(page.locator("#privacy-status")).to_have_text("received")
    reference = re.search(r"PR-\d{6}", page.locator("h4.panel-title").first.inner_text()).group(0)

    # Start it, prepare the deletion plan; the approval needs a second person.
    page.locator("#action-start").click()
    expect(page.locator("#privacy-status")).to_have_text("in progress")
    page.locator("#action-prepare").click()
    expect(page.locator("#privacy-status")).to_have_text("awaiting approval")
    expect(page.locator("#privacy-deletion-plan")).to_be_visible()
    expect(page.locator("#four-eyes-note")).to_be_visible()
    expect(page.locator("#action-approve")).to_have_count(0)
    save(page, "15-compliance-deletion-plan")
    problems.assert_none("the request being prepared")

    # The DPO finds it on the worklist and approves; the deletion runs; the certificate.
    dpo = browse.new_page()
    log_in(dpo, DPO)
    acknowledge_policy(dpo)
    menu(dpo, "Compliance", "Privacy requests")
    dpo.locator("#privacy-worklist").get_by_role("link", name=reference).click()
    expect(dpo.locator("#privacy-status")).to_have_text("awaiting approval")
    expect(dpo.locator("#privacy-prepared-by")).to_contain_text(COMPLIANCE)
    approve = dpo.get_by_role("button", name="Approve the deletion")
    approve.scroll_into_view_if_needed()
    save(dpo, "16-compliance-dpo-approves")
    approve.click()
    expect(dpo.locator(".alert-success")).to_contain_text("Deletion approved")
    dpo.reload()
    expect(dpo.locator("#privacy-status")).to_have_text("completed")
    expect(dpo.locator("#privacy-prepared-by")).to_contain_text(COMPLIANCE)
    expect(dpo.locator("#privacy-approved-by")).to_contain_text(DPO)
    certificate = dpo.locator("a.privacy-artifact-link[data-kind='deletion_certificate']")
    expect(certificate).to_be_visible()
    save(dpo, "17-compliance-certificate", full_page=True)
    response = dpo.request.get(certificate.get_attribute("href"))
    assert response.status == 200
    assert response.body().startswith(b"%PDF-")
