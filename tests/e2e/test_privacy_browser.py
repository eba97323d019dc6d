"""Compliance works a deletion request end to end in Chromium (issue 7, P18, P21):
log a request received by email, start it and prepare it for approval from the
worklist; a SECOND Compliance user approves it (four eyes); the deletion job runs
inline in the web process; the request is completed and its certificate downloadable.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from playwright.sync_api import expect

from tests.e2e.conftest import ROOT, e2e_database_url
from tests.e2e.test_browser import ScriptProblems, log_in

pytestmark = pytest.mark.e2e

COMPLIANCE = "compliance@xigmapro.example"
DPO = "dpo@xigmapro.example"  # the demo's second Compliance user (demo_privacy.py)
CONTACT_PHONE = "+91 70190 44444"  # Divya Hegde, a Bharat Foods demo contact without tags


@pytest.fixture(scope="module")
def privacy_demo(live_server) -> None:
    """Make sure the live database has the privacy demo (the second Compliance user).

    `flask woffice seed-demo` seeds it once `seed_demo` calls `seed_demo_privacy`; this
    runs the same idempotent seed against the live server's database either way.
    """
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("FLASK_") and key not in {"DATABASE_URL", "REDIS_URL"}
    }
    env.update(WOFFICE_ENV="testing", TEST_DATABASE_URL=e2e_database_url(), TEST_REDIS_URL="")
    script = (
        "from app import create_app\n"
        "from app.extensions import db\n"
        "from app.services.demo_privacy import seed_demo_privacy\n"
        "app = create_app()\n"
        "with app.app_context():\n"
        "    seed_demo_privacy()\n"
        "    db.session.commit()\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_compliance_deletes_a_contact_with_four_eyes(browse, live_server, privacy_demo):
    page = browse.new_page()
    problems = ScriptProblems(page)
    log_in(page, COMPLIANCE)

    # Compliance -> Privacy requests -> log an emailed request.
    page.get_by_role("link", name="Compliance").click()
    page.get_by_role("link", name=re.compile(r"Privacy requests$")).click()
    expect(page).to_have_url(re.compile(r"/privacy-requests/list/"))
    # The demo's requests: one overdue (red), one due within 2 business days (amber).
    expect(page.locator("#privacy-worklist .privacy-danger").first).to_contain_text("overdue by")
    expect(page.locator("#privacy-worklist .privacy-warning").first).to_be_visible()
    browse.screenshot(page, "0-worklist")
    page.locator("#privacy-log").click()
    page.locator("#request_type").select_option("deletion")
    page.locator("#subject_kind").select_option("contact")
    page.locator("#tenant").select_option(label="Bharat Foods (bharatfoods)")
    page.locator("#subject_phone").fill(CONTACT_PHONE)
    page.locator("#requester_email").fill("divya.hegde@example.com")
    page.locator("#requester_name").fill("Divya Hegde")
    received = datetime.now(ZoneInfo("Asia/Kolkata")) - timedelta(hours=1)
    page.locator("#received_at").fill(received.strftime("%Y-%m-%dT%H:%M"))
    page.locator("#identity_verified").check()
    browse.screenshot(page, "1-log")
    page.get_by_role("button", name="Log the request").click()
    expect(page).to_have_url(re.compile(r"/privacy-requests/show/\d+$"))
    reference = re.search(r"PR-\d{6}", page.locator("h4.panel-title").first.inner_text()).group(0)
    expect(page.locator("#privacy-status")).to_have_text("received")

    # From the worklist: the new request, on track (green), then start and prepare it.
    page.goto("/privacy-requests/list/")
    row = page.locator("#privacy-worklist tr.privacy-row", has_text=reference)
    expect(row.locator(".privacy-urgency")).to_have_class(re.compile(r"label-success"))
    row.get_by_role("link", name=reference).click()
    page.locator("#action-start").click()
    expect(page.locator("#privacy-status")).to_have_text("in progress")
    page.locator("#action-prepare").click()
    expect(page.locator("#privacy-status")).to_have_text("awaiting approval")
    expect(page.locator("#privacy-deletion-plan")).to_be_visible()
    expect(page.locator("#four-eyes-note")).to_be_visible()  # no approve button for me
    expect(page.locator("#action-approve")).to_have_count(0)
    browse.screenshot(page, "2-prepared")
    problems.assert_none("the prepared request")
    url = page.url

    # The second Compliance user approves; the deletion job runs inline.
    other = browse.new_page()
    other_problems = ScriptProblems(other)
    log_in(other, DPO)
    other.goto("/privacy-requests/list/?show=open&status=awaiting_approval")
    other.locator("#privacy-worklist").get_by_role("link", name=reference).click()
    expect(other).to_have_url(url)
    other.locator("#action-approve").click()
    expect(other.locator(".alert-success")).to_contain_text("Deletion approved")
    other.reload()
    expect(other.locator("#privacy-status")).to_have_text("completed")
    expect(other.locator("#privacy-approved-by")).to_contain_text(DPO)
    expect(other.locator("#privacy-prepared-by")).to_contain_text(COMPLIANCE)
    certificate = other.locator("a.privacy-artifact-link[data-kind='deletion_certificate']")
    expect(certificate).to_be_visible()
    href = certificate.get_attribute("href")
    response = other.request.get(href)
    assert response.status == 200
    assert response.headers["content-type"].startswith("application/pdf")
    assert response.body().startswith(b"%PDF-")
    browse.screenshot(other, "3-completed")
    other_problems.assert_none("the completed request")
