"""A tenant admin builds a role with the matrix and assigns it; the member's menu shows
exactly what was granted (issue 8), in Chromium against the live server.

Bharat Foods is used so the Acme journeys of the other browser tests keep their agent.
"""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.test_browser import ScriptProblems, form_row, log_in

pytestmark = pytest.mark.e2e

OWNER, MEMBER = "owner@bharatfoods.example", "agent@bharatfoods.example"
GRANTED = ["contacts-list", "templates-list", "campaigns-add", "campaigns-launch"]


def business_menu(page: Page) -> list[str]:
    """The entries of the navbar's Business dropdown, as the member sees them."""
    page.get_by_role("link", name="Business").click()
    menu = page.locator("li.dropdown", has=page.get_by_role("link", name="Business"))
    expect(menu.locator("ul.dropdown-menu")).to_be_visible()
    return [t.strip() for t in menu.locator("ul.dropdown-menu a").all_inner_texts() if t.strip()]


def test_owner_builds_a_role_assigns_it_and_the_member_sees_only_that(browse):
    page = browse.new_page()
    problems = ScriptProblems(page)
    log_in(page, OWNER)

    # Build "Campaign Manager" from the matrix.
    page.get_by_role("link", name="Business").click()
    page.get_by_role("link", name=re.compile(r"\bRoles$")).click()
    expect(page).to_have_url(re.compile(r"/team-roles/$"))
    expect(page.locator("#roles-table")).to_contain_text("Tenant Admin")
    page.locator("#role-new").click()
    page.locator("#label").fill("Campaign Manager")
    page.locator("#description").fill("Contacts and campaigns; no team or billing")
    for cell in GRANTED:
        page.locator(f"#perm-{cell}").check()
    browse.screenshot(page, "matrix")
    page.locator("#role-save").click()
    expect(page.locator("body")).to_contain_text("Role “Campaign Manager” created")
    matrix = page.locator("#role-matrix")
    expect(matrix.locator("#matrix-campaigns")).to_contain_text("Launch campaigns")
    # "Add" on campaigns brought "list / show" with it; nothing on the team row.
    expect(matrix.locator("#matrix-campaigns .fa-check")).to_have_count(2)
    expect(matrix.locator("#matrix-team .fa-check")).to_have_count(0)
    problems.assert_none("the role pages")

    # Give it to the member on the Team screen (select2: drop Agent, pick the new role).
    page.get_by_role("link", name="Business").click()
    page.get_by_role("link", name=re.compile(r"\bTeam$")).click()
    row = page.locator("table.table-bordered tr", has_text=MEMBER)
    row.locator("a[href*='/team/edit/']").click()
    roles = form_row(page, "roles")
    roles.locator(".select2-selection__choice", has_text="Agent").locator(
        ".select2-selection__choice__remove"
    ).click()
    roles.locator(".select2-search__field").click()
    page.keyboard.type("Campaign")
    page.locator(".select2-results__option", has_text=re.compile(r"^Campaign Manager$")).click()
    page.get_by_role("button", name="Save").click()
    expect(page.locator("body")).to_contain_text("Team member saved")
    expect(page.locator("table.table-bordered tr", has_text=MEMBER)).to_contain_text(
        "Campaign Manager"
    )

    # The member's menu: exactly the granted Business entries.
    member = browse.new_page()
    member_problems = ScriptProblems(member)
    log_in(member, MEMBER)
    assert business_menu(member) == ["Contacts", "Templates", "Campaigns"]
    browse.screenshot(member, "member-menu")
    assert member.goto("/campaigns/add").status == 200
    member_problems.assert_none("the member's pages")
    # Screens outside the role answer 403 (the browser logs those as console errors).
    assert member.goto("/team/list/").status == 403
    assert member.goto("/conversations/list/").status == 403

    # The owner takes "launch" away and grants Tags: the member's next page shows it.
    page.goto("/team-roles/")
    page.locator("tr.role-custom", has_text="Campaign Manager").get_by_role(
        "link", name="Edit"
    ).click()
    page.locator("#perm-tags-list").check()
    page.locator("#perm-campaigns-launch").uncheck()
    page.locator("#role-save").click()
    expect(page.locator("body")).to_contain_text("1 permission(s) added, 1 removed")
    expect(page.locator("#role-history")).to_contain_text("campaigns.launch")
    member.goto("/")
    assert business_menu(member) == ["Contacts", "Tags", "Templates", "Campaigns"]
