"""Lists at scale (issue 4): the row count is capped ("3+") and pagination still works;
below the cap the exact count shows; phone searches are index-friendly conditions."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import func, select

from app.extensions import db
from app.models.contact import Contact
from app.services import contacts
from app.views import _scale
from app.views._scale import CappedCount, count_window

OWNER = "owner@acme.example"
PAGE = "/contacts/list/?psize_ContactModelView=2"


@pytest.fixture
def owner(client, login):
    assert login(OWNER).status_code == 302
    return client


def _count_in_page(html: str) -> str:
    found = re.search(r"Record Count:</strong>\s*([^<\s]+)", html)
    assert found, "no record count on the page"
    return found.group(1)


def _acme_contacts(tenant_id: int, extra: int) -> int:
    """Add ``extra`` contacts to the tenant; return its number of contacts."""
    for i in range(extra):
        contacts.create_contact(db.session, tenant_id, f"+91 90000 {i:05d}", f"Scale {i}")
    db.session.commit()
    return db.session.scalar(
        select(func.count())
        .select_from(Contact)
        .where(Contact.tenant_id == tenant_id)
        .execution_options(skip_tenant_scope=True)
    )


def test_a_count_over_the_cap_shows_cap_plus_and_pagination_continues(owner, tenant_a, monkeypatch):
    total = _acme_contacts(tenant_a.id, 4)
    assert total >= 6
    monkeypatch.setattr(_scale, "COUNT_CAP", 3)

    page = owner.get(PAGE).get_data(as_text=True)
    assert _count_in_page(page) == "3+"
    # 4 counted rows in pages of 2: the pager links page 2 (index 1).
    assert "page_ContactModelView=1" in page
    assert page.count("/contacts/show/") == 2

    second = owner.get(PAGE + "&page_ContactModelView=1").get_data(as_text=True)
    assert second.count("/contacts/show/") == 2
    # The window grows with the page viewed: the next page is offered again.
    assert _count_in_page(second) == "4+"
    assert "page_ContactModelView=2" in second

    # Walking on, the last page shows the exact total and every row was reachable.
    seen, index = set(), 0
    while True:
        html = owner.get(f"{PAGE}&page_ContactModelView={index}").get_data(as_text=True)
        rows = set(re.findall(r"/contacts/show/(\d+)", html))
        if not rows:
            break
        seen |= rows
        index += 1
    assert len(seen) == total
    last = owner.get(f"{PAGE}&page_ContactModelView={index - 1}").get_data(as_text=True)
    assert _count_in_page(last) == str(total)


def test_below_the_cap_the_exact_count_shows(owner, tenant_a, monkeypatch):
    total = _acme_contacts(tenant_a.id, 0)
    monkeypatch.setattr(_scale, "COUNT_CAP", total)
    page = owner.get(PAGE).get_data(as_text=True)
    assert _count_in_page(page) == str(total)


def test_a_capped_search_and_the_other_lists(owner, tenant_a, monkeypatch):
    _acme_contacts(tenant_a.id, 4)
    monkeypatch.setattr(_scale, "COUNT_CAP", 3)
    page = owner.get(PAGE + "&q=Scale").get_data(as_text=True)
    assert _count_in_page(page) == "3+"
    page = owner.get(PAGE + "&q=90000 00002").get_data(as_text=True)
    assert _count_in_page(page) == "1" and "Scale 2" in page
    for url in ("/conversations/list/", "/messages/list/"):
        assert owner.get(url).status_code == 200, url


def test_capped_count_is_an_int_shown_with_a_plus():
    assert CappedCount(10_001, shown=10_000) == 10_001
    assert str(CappedCount(10_001, shown=10_000)) == "10,000+"
    assert str(CappedCount(42)) == "42" and not CappedCount(42).capped
    assert count_window(0, 25) == _scale.COUNT_CAP
    assert count_window(1000, 25) == 25_025


@pytest.mark.parametrize(
    ("typed", "sql"),
    [
        ("+91 98765 43210", "contact.wa_id IN"),
        ("9876543210", "contact.wa_id IN"),
        ("43210", "reverse(contact.wa_id) LIKE"),
        ("Ravi", "lower(contact.display_name) LIKE"),
    ],
)
def test_phone_searches_are_index_friendly(typed, sql):
    condition = str(contacts.search_condition(typed).compile())
    assert sql in condition
    if sql != "lower(contact.display_name) LIKE":
        assert "display_name" not in condition  # no OR with a substring scan


def test_a_short_phone_search_matches_the_end_of_the_number_zeros_included(tenant_a):
    contacts.create_contact(db.session, tenant_a.id, "+91 90000 04321", "Zero Tail")
    db.session.flush()

    def found(typed: str) -> list[str]:
        stmt = select(Contact.display_name).where(
            Contact.tenant_id == tenant_a.id, contacts.search_condition(typed)
        )
        return list(db.session.scalars(stmt))

    assert found("04321") == ["Zero Tail"]
    assert found("0 4321") == ["Zero Tail"]
    assert "Zero Tail" not in found("14321")
    assert found("321") == []  # fewer than MIN_SUFFIX_DIGITS digits: nothing
