"""List pages run a fixed number of SQL statements whatever the page holds (issue 9's
load bench found one lazy load per row: 25 extra queries on a contacts page)."""

from __future__ import annotations

import pytest
from sqlalchemy import event

from app.extensions import db
from app.models import Contact, Tag
from app.models.conversation import Conversation
from app.tenancy import tenant_scope


def statements_for(client, url: str) -> int:
    seen: list[str] = []

    def count(conn, cursor, statement, *args):
        seen.append(statement)

    engine = db.engine
    event.listen(engine, "before_cursor_execute", count)
    try:
        assert client.get(url).status_code == 200
    finally:
        event.remove(engine, "before_cursor_execute", count)
    return len(seen)


def add_contacts(tenant_id: int, n: int, start: int) -> None:
    with tenant_scope(tenant_id):
        tag = Tag(tenant_id=tenant_id, name=f"q-{start}")
        for i in range(n):
            number = f"99700{start + i:05d}"
            contact = Contact(
                tenant_id=tenant_id, phone="+91" + number, wa_id="91" + number, tags=[tag]
            )
            db.session.add(contact)
            db.session.add(Conversation(tenant_id=tenant_id, contact=contact))
        db.session.commit()


@pytest.mark.parametrize("url", ["/contacts/list/", "/conversations/list/", "/messages/list/"])
def test_a_fuller_page_costs_no_extra_queries(client, login, tenant_a, url):
    assert login("owner@acme.example").status_code == 302
    client.get(url)  # warm caches (permissions, menus)
    before = statements_for(client, url)
    add_contacts(tenant_a.id, 30, 0)
    after = statements_for(client, url)
    assert after <= before + 1, (before, after)
