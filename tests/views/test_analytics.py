"""Analytics (tenant admins) and Usage (platform staff) pages: who may open them, the
right tenant's figures only, accessible server-side SVG charts with data tables, no
external URL, and a clear error for a bad range."""

from __future__ import annotations

import re
from datetime import date
from html.parser import HTMLParser

import pytest

from app.services import analytics
from tests.services.test_analytics_service import (
    A_CAMPAIGNS,
    A_MESSAGES,
    B_CAMPAIGNS,
    B_MESSAGES,
    seed_tenant,
)

OWNER_A = "owner@acme.example"
OWNER_B = "owner@bharatfoods.example"
ADMIN = "admin@xigmapro.example"
TODAY = date(2025, 3, 3)  # the seeded days are 28 Feb - 4 Mar 2025 (IST)


@pytest.fixture
def seeded(tenant_a, tenant_b, monkeypatch):
    monkeypatch.setattr(analytics, "today_ist", lambda now=None: TODAY)
    seed_tenant(tenant_a.id, 1, A_MESSAGES, A_CAMPAIGNS)
    seed_tenant(tenant_b.id, 2, B_MESSAGES, B_CAMPAIGNS)


def page_of(client, url: str) -> str:
    response = client.get(url)
    assert response.status_code == 200, (url, response.status_code)
    return response.get_data(as_text=True)


def text_of(page: str, element_id: str) -> str:
    match = re.search(rf'id="{re.escape(element_id)}"[^>]*>(.*?)</', page, re.S)
    assert match, f"no element #{element_id}"
    return re.sub(r"<[^>]+>", "", match.group(1)).strip()


class _Urls(HTMLParser):
    """Every URL the page makes the browser fetch or follow."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if name in ("src", "href", "action", "xlink:href", "data", "poster") and value:
                self.urls.append(value)


def external_urls(page: str) -> list[str]:
    parser = _Urls()
    parser.feed(page)
    found = [u for u in parser.urls if re.match(r"^(https?:)?//", u.strip(), re.I)]
    found += re.findall(r"url\(\s*['\"]?((?:https?:)?//[^)'\"]+)", page)
    found += re.findall(r"@import\s+['\"]?((?:https?:)?//[^;'\"]+)", page)
    return [u for u in found if not re.match(r"^(https?:)?//(127\.0\.0\.1|localhost)[:/]", u)]


# ------------------------------------------------------------------------------ tenant


def test_a_tenant_admin_sees_their_own_figures(client, login, seeded):
    login(OWNER_A)
    page = page_of(client, "/analytics/?days=7")
    # 26 Feb - 3 Mar IST: A's messages except the one on 4 Mar.
    assert text_of(page, "kpi-outbound") == "7"
    assert text_of(page, "kpi-inbound") == "3"
    assert text_of(page, "kpi-campaigns") == "3"  # Spring sale, Boundary, Old news
    assert text_of(page, "total-read") == "3" and text_of(page, "total-failed") == "1"
    assert text_of(page, "funnel-recipients") == "11"
    assert text_of(page, "funnel-replied") == "1"
    assert "Spring sale" in page and "Old news" in page and "Never launched" not in page
    # Tenant B's campaign and figures never appear.
    assert "B promo" not in page


def test_the_tenant_page_draws_accessible_svg_charts_with_tables(client, login, seeded):
    login(OWNER_A)
    page = page_of(client, "/analytics/?days=7")
    for chart in ("chart-daily", "chart-funnel"):
        assert re.search(rf'<svg class="woffice-chart" id="{chart}" role="img"', page)
        assert f'aria-labelledby="{chart}-title {chart}-desc"' in page
        assert f'<title id="{chart}-title">' in page and f'<desc id="{chart}-desc">' in page
    assert 'id="daily-table"' in page and 'id="funnel-table"' in page
    assert 'id="day-2025-03-02"' in page
    assert 'data-series="Read" data-value="1"' in page
    assert 'aria-current="page"' in page and 'id="range-90"' in page


def test_a_tenant_page_has_no_external_url(client, login, seeded):
    login(OWNER_A)
    page = page_of(client, "/analytics/")
    assert external_urls(page) == []
    assert "gstatic" not in page and "google" not in page.lower()


def test_the_other_tenant_sees_only_its_own(client, login, seeded):
    login(OWNER_B)
    page = page_of(client, "/analytics/?days=7")
    assert text_of(page, "kpi-outbound") == "3"
    assert text_of(page, "kpi-inbound") == "1"
    assert "B promo" in page
    assert "Spring sale" not in page and "Old news" not in page


def test_a_tenant_cannot_ask_for_another_tenant(client, login, seeded, tenant_b):
    login(OWNER_A)
    page = page_of(client, f"/analytics/?days=7&tenant={tenant_b.id}")
    assert "B promo" not in page and text_of(page, "kpi-outbound") == "7"
    assert client.get(f"/usage/?tenant={tenant_b.id}").status_code == 403


@pytest.mark.parametrize("email", ["agent@acme.example", "agent@bharatfoods.example"])
def test_agents_do_not_get_tenant_wide_analytics(client, login, email):
    login(email)
    assert client.get("/analytics/").status_code == 403
    assert client.get("/usage/").status_code == 403


@pytest.mark.parametrize(
    "email", [OWNER_A, "billing@xigmapro.example", "compliance@xigmapro.example"]
)
def test_usage_is_for_platform_admins_only(client, login, email):
    login(email)
    assert client.get("/usage/").status_code == 403


def test_platform_staff_without_the_permission_cannot_open_analytics(client, login):
    login("billing@xigmapro.example")
    assert client.get("/analytics/").status_code == 403


@pytest.mark.parametrize("url", ["/analytics/", "/usage/"])
def test_anonymous_visitors_are_sent_to_login(client, url):
    response = client.get(url)
    assert response.status_code == 302 and "login" in response.headers["Location"]


@pytest.mark.parametrize("value", ["14", "abc", "-7", "0", "1e9", "7;drop"])
@pytest.mark.parametrize(("email", "url"), [(OWNER_A, "/analytics/"), (ADMIN, "/usage/")])
def test_a_bad_range_is_explained_not_a_server_error(client, login, email, url, value):
    login(email)
    response = client.get(url, query_string={"days": value})
    assert response.status_code == 400
    assert "Choose a range of 7, 30 or 90 days." in response.get_data(as_text=True)


# ---------------------------------------------------------------------------- platform


def test_platform_usage_lists_every_tenant(client, login, seeded, tenant_a, tenant_b):
    login(ADMIN)
    page = page_of(client, "/usage/?days=7")
    a = re.search(rf'<tr id="tenant-{tenant_a.id}".*?</tr>', page, re.S).group(0)
    b = re.search(rf'<tr id="tenant-{tenant_b.id}".*?</tr>', page, re.S).group(0)
    assert 'data-col="outbound">7<' in a and 'data-col="inbound">3<' in a
    assert 'data-col="campaigns">3<' in a and 'data-col="recipients">11<' in a
    assert 'data-col="outbound">3<' in b and 'data-col="replied">3<' in b
    assert 'data-col="active-users">0 <' in a
    # The charts add every tenant up.
    assert text_of(page, "total-read") == "6" and text_of(page, "total-inbound") == "4"
    assert text_of(page, "funnel-recipients") == "14"
    assert external_urls(page) == []


def test_platform_usage_for_one_tenant(client, login, seeded, tenant_b):
    login(ADMIN)
    page = page_of(client, f"/usage/?days=7&tenant={tenant_b.id}")
    assert text_of(page, "total-read") == "3" and text_of(page, "funnel-recipients") == "3"
    assert "B promo" in page and "Spring sale" not in page
    assert f"tenant={tenant_b.id}" in re.search(r'id="range-30"[^>]*', page).group(0)


@pytest.mark.parametrize(("tenant", "status"), [("abc", 400), ("999999", 404)])
def test_platform_usage_refuses_an_unknown_tenant(client, login, tenant, status):
    login(ADMIN)
    assert client.get(f"/usage/?tenant={tenant}").status_code == status


def test_platform_admins_opening_analytics_go_to_usage(client, login):
    login(ADMIN)
    response = client.get("/analytics/?days=7")
    assert response.status_code == 302
    assert response.headers["Location"].endswith("/usage/?days=7")


def test_the_menus_link_the_pages(client, login):
    login(OWNER_A)
    assert 'href="/analytics/"' in page_of(client, "/")
    login.logout()
    login(ADMIN)
    assert 'href="/usage/"' in page_of(client, "/")
