"""Billing in Chromium (issue 6): staff open an invoice, preview and download its PDF;
another tenant's admin gets 404 for it. Uses the demo invoices (`flask woffice
seed-demo`); without them, an invoice is made by a signed Dodo webhook to the live
server (jobs run inline there)."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.test_browser import log_in
from tests.fakes import dodo as fake_dodo

pytestmark = pytest.mark.e2e

# Chromium's built-in PDF viewer (a component extension shipped inside the browser) loads
# its own UI from the browser binary when the invoice preview frames a PDF. Those are
# not network requests; everything else must still come from 127.0.0.1 (P22).
PDF_VIEWER = ("chrome-extension://mhjfbmdgcfjbbpaeojofohoefgiehjai/", "chrome://resources/")


class WithoutPdfViewer(list):
    """The requests list of `Browsing`, minus the built-in PDF viewer's own files."""

    def append(self, url: str) -> None:
        if not url.startswith(PDF_VIEWER):
            super().append(url)


def acme_invoice_path(page: Page, live_server) -> str:
    """The show URL of a rendered Acme invoice, listed under Billing > Invoices."""
    page.goto("/invoices/list/")
    rows = page.locator("table tr").filter(has_text="Acme Traders").filter(has_text="Ready")
    if rows.count() == 0:  # no demo invoices yet: pay through Dodo's webhook
        response = fake_dodo.deliver(
            f"{live_server.url}/webhooks/dodo", fake_dodo.payment(tenant_slug="acme")
        )
        assert response.status_code == 200, response.text
        page.goto("/invoices/list/")
    row = rows.first
    expect(row).to_be_visible()
    link = row.locator("a[href*='/invoices/show/']").first
    href = link.get_attribute("href")
    assert href
    return re.sub(r"^https?://[^/]+", "", href)


def test_billing_staff_download_an_invoice_another_tenant_gets_404(browse, live_server):
    browse.requests = WithoutPdfViewer(browse.requests)
    page = browse.new_page()
    log_in(page, "billing@xigmapro.example")
    show_path = acme_invoice_path(page, live_server)
    invoice_id = show_path.rstrip("/").rsplit("/", 1)[-1]

    page.goto(show_path)
    expect(page.locator("#invoice-number")).to_have_text(re.compile(r"INV/\d\d-\d\d/\d{6}"))
    number = page.locator("#invoice-number").inner_text()
    expect(page.locator("#pdf-status")).to_have_text("Ready")
    expect(page.locator("#pdf-preview")).to_be_visible()
    browse.screenshot(page, "billing-invoice")

    with page.expect_download() as info:
        page.locator("#invoice-download").click()
    download = info.value
    assert download.suggested_filename == number.replace("/", "-") + ".pdf"
    with open(download.path(), "rb") as fh:
        assert fh.read(5) == b"%PDF-"

    # The accountant's month export opens and offers the CSV.
    page.goto("/billing/gstr1/")
    expect(page.locator("#gstr1-month")).to_be_visible()
    browse.screenshot(page, "billing-gstr1")

    other = browse.new_page()
    log_in(other, "owner@bharatfoods.example")
    for path in (f"/my-invoices/show/{invoice_id}", f"/my-invoices/pdf/{invoice_id}?download=1"):
        response = other.goto(path)
        assert response is not None and response.status == 404, path
        expect(other.locator("#error-title")).to_contain_text("404")
    # Their own invoices are listed, Acme's are not.
    other.goto("/my-invoices/list/")
    expect(other.locator("body")).not_to_contain_text(number)
    browse.screenshot(other, "tenant-invoices")
