"""A tenant admin runs a campaign end to end in Chromium (issue 5): create it from the
demo data, map the template's values, read the consent-aware preview, launch it, watch
the progress reach 100 %, then open the recipients behind the "Delivered" number.

Sending really goes through the fake WhatsApp Cloud API (``live_server.whatsapp``),
whose signed status webhooks move the recipients to delivered and read.
"""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.test_browser import ScriptProblems, log_in

pytestmark = pytest.mark.e2e

CAMPAIGN = "Diwali wholesale offer"
# Acme's demo contacts tagged "wholesale" or "retail" (app/services/demo_contacts.py):
# two opted in, one never opted in, one who sent STOP, one who objects to marketing.
WILL_RECEIVE = {"Sunita Sharma": "919812345678", "Arvind Menon": "919845012345"}
SKIPPED = {"not_opted_in": 1, "opted_out": 1, "objecting": 1}  # Manoj, Deepak, Lakshmi


def pick_tags(page: Page, select_id: str, *names: str) -> None:
    """Choose tags in a select2 box: type each name into its search field, click it."""
    box = page.locator(".form-group").filter(has=page.locator(f"#{select_id}"))
    for name in names:
        box.locator(".select2-search__field").click()
        page.keyboard.type(name)
        page.locator(".select2-results__option", has_text=re.compile(rf"^{name}$")).click()
    chosen = page.locator(f"#{select_id} option:checked").all_inner_texts()
    assert sorted(chosen) == sorted(names)


def test_tenant_admin_runs_a_campaign_and_opens_its_delivered_recipients(browse, live_server):
    fake = live_server.whatsapp
    page = browse.new_page()
    problems = ScriptProblems(page)
    log_in(page, "owner@acme.example")

    # Business -> Campaigns -> add.
    page.get_by_role("link", name="Business").click()
    page.get_by_role("link", name=re.compile(r"\bCampaigns$")).click()
    expect(page).to_have_url(re.compile(r"/campaigns/list/"))
    page.get_by_role("link", name="Add").click()
    expect(page).to_have_url(re.compile(r"/campaigns/add$"))
    expect(page.locator("h2")).to_have_text("New campaign")
    template_options = page.locator("#template_id option").all_inner_texts()
    assert not any("old_promo" in option for option in template_options)  # paused: not listed
    page.locator("#name").fill(CAMPAIGN)
    page.locator("#template_id").select_option(label="festive_offer (en_US, marketing)")
    pick_tags(page, "include_tag_ids", "wholesale", "retail")
    page.locator("input[name='include_mode'][value='any']").check()
    browse.screenshot(page, "1-new-campaign")
    problems.assert_none("the new campaign form")
    page.get_by_role("button", name="Save and continue").click()

    # Step 2: the template's values; no preview until every variable is mapped.
    expect(page).to_have_url(re.compile(r"/campaigns/show/\d+$"))
    campaign_id = int(page.url.rsplit("/", 1)[1])
    expect(page.locator("body")).to_contain_text("Campaign saved as a draft")
    expect(page.locator("#campaign-status")).to_have_text("Draft")
    expect(page.locator("#mapping-error")).to_be_visible()
    expect(page.locator("#campaign-launch")).to_have_count(0)
    expect(page.locator("#campaign-audience")).to_contain_text(
        "contacts tagged retail or wholesale"
    )
    expect(page.locator("#campaign-summary")).to_contain_text(
        "Hi {{customer_name}}, {{discount}} off this week only!"
    )
    page.get_by_label("Source of customer_name").select_option("field")
    page.get_by_label("Contact field for customer_name").select_option("name")
    page.get_by_label("Fallback for customer_name").fill("there")
    page.get_by_label("Source of discount").select_option("text")
    page.get_by_label("Fixed text for discount").fill("20%")
    # What a variable's source does not use is greyed out.
    expect(page.get_by_label("Contact field for discount")).to_be_disabled()
    expect(page.get_by_label("Fixed text for customer_name")).to_be_disabled()
    page.get_by_role("button", name="Save values").click()

    # Step 3: the preview: audience size and who is skipped, by reason.
    expect(page.locator("body")).to_contain_text("Template values saved")
    expect(page.locator("#preview-audience")).to_have_text("5")
    expect(page.locator("#preview-will-send")).to_have_text(str(len(WILL_RECEIVE)))
    expect(page.locator("#preview-skipped")).to_have_text(str(sum(SKIPPED.values())))
    for reason, count in SKIPPED.items():
        expect(page.locator(f"#skip-{reason}")).to_have_text(str(count))
    preview = page.locator("#campaign-preview")
    expect(preview).to_contain_text("not opted in")
    expect(preview).to_contain_text("opted out")
    expect(preview).to_contain_text("objects to marketing")
    # The values survive the round trip.
    expect(page.get_by_label("Fixed text for discount")).to_have_value("20%")
    expect(page.get_by_label("Contact field for customer_name")).to_have_value("name")
    browse.screenshot(page, "2-preview")

    # Launch; the page follows the sending until every message has an outcome.
    page.get_by_role("button", name=f"Launch now to {len(WILL_RECEIVE)} contact(s)").click()
    expect(page.locator("body")).to_contain_text(
        f"Launched: {len(WILL_RECEIVE)} to send, {sum(SKIPPED.values())} skipped."
    )
    expect(page.locator("#campaign-percent")).to_have_text("100", timeout=30_000)
    expect(page.locator("#campaign-progress-bar")).to_have_attribute("value", "100")
    expect(page.locator("#campaign-status")).to_have_text("Completed")
    expect(page.locator("#funnel-sent")).to_have_text(str(len(WILL_RECEIVE)))
    expect(page.locator("#funnel-skipped")).to_have_text(str(sum(SKIPPED.values())))
    expect(page.locator("#funnel-failed")).to_have_text("0")
    # The delivery reports (webhooks, 1 s apart from the fake) land after sending
    # ended: the page says so and refreshes itself until they are in.
    if page.locator("#funnel-delivered").inner_text().strip() != str(len(WILL_RECEIVE)):
        expect(page.locator("body")).to_contain_text("Waiting for delivery reports")
        browse.screenshot(page, "3-awaiting-delivery-reports")
    expect(page.locator("#funnel-delivered")).to_have_text(str(len(WILL_RECEIVE)), timeout=20_000)
    expect(page.locator("#funnel-read")).to_have_text(str(len(WILL_RECEIVE)), timeout=20_000)
    browse.screenshot(page, "4-completed")

    # The "Delivered" number opens the recipients behind it.
    page.locator("#funnel-delivered").click()
    expect(page).to_have_url(re.compile(rf"/campaigns/{campaign_id}/recipients\?stage=delivered"))
    expect(page.locator("h2")).to_contain_text(f"{CAMPAIGN}: Delivered")
    expect(page.locator("#recipient-stages li.active")).to_contain_text("Delivered")
    expect(page.locator("#stage-hint")).to_contain_text("including messages since read")
    rows = page.locator("#campaign-recipients tbody tr")
    expect(rows).to_have_count(len(WILL_RECEIVE))
    for name, wa_id in WILL_RECEIVE.items():
        row = rows.filter(has_text=name)
        expect(row).to_have_count(1)
        expect(row).to_contain_text(f"+{wa_id}")
    for name in ("Manoj Verma", "Deepak Joshi", "Lakshmi Iyer", "Ravi Kumar"):
        expect(page.locator("#campaign-recipients")).not_to_contain_text(name)
    browse.screenshot(page, "5-delivered-recipients")
    problems.assert_none("the campaign pages")

    # WhatsApp's side: each recipient got the template exactly once, nobody else did.
    sent = {to: n for (to, campaign), n in fake.counts().items() if campaign == str(campaign_id)}
    assert sent == {wa_id: 1 for wa_id in WILL_RECEIVE.values()}
    requests = [a.request for a in fake.accepted if a.campaign == str(campaign_id)]
    assert {r["template"]["name"] for r in requests} == {"festive_offer"}
    parameters = {
        r["to"]: {
            p["parameter_name"]: p["text"] for p in r["template"]["components"][0]["parameters"]
        }
        for r in requests
    }
    assert parameters == {
        "919812345678": {"customer_name": "Sunita Sharma", "discount": "20%"},
        "919845012345": {"customer_name": "Arvind Menon", "discount": "20%"},
    }

    browse.assert_all_requests_local()
