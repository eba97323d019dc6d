"""The Templates screen: list, filters, show, sync (queued and inline), roles, tenancy."""

from __future__ import annotations

import html
import re

import pytest
from sqlalchemy import select

from app.extensions import db
from app.jobs import get_queue
from app.models.audit import AuditEvent
from app.models.campaign import MessageTemplate, TemplateStatus
from app.services.templates import SYNC_DONE, SYNC_REQUESTED
from tests.fakes.cloud_parts import FakeTemplate
from tests.services.test_templates_service import demo_cloud, templates_of, waba
from tests.views.test_role_menus import navbar_items

OWNER, AGENT = "owner@acme.example", "agent@acme.example"


@pytest.fixture
def fake(app, monkeypatch):
    """The fake Cloud API serving both demo WABAs."""
    with demo_cloud(app, monkeypatch) as server:
        yield server


def page(response) -> str:
    return html.unescape(response.get_data(as_text=True))


def template_id(tenant, name: str) -> int:
    return templates_of(tenant)[(name, "en_US")].id


def list_names(text: str) -> set[str]:
    return set(
        re.findall(
            r"<td>\s*((?:order_shipped|festive_offer|welcome|login_code|old_promo|new_one))\s*</td>",
            text,
        )
    )


def requested(tenant) -> int:
    stmt = select(AuditEvent).where(
        AuditEvent.tenant_id == tenant.id, AuditEvent.action == SYNC_REQUESTED
    )
    return len(db.session.scalars(stmt).all())


@pytest.fixture
def inline_jobs(app, monkeypatch):
    """`make run`'s mode: no Redis, jobs run in the web process."""
    monkeypatch.setitem(app.extensions["woffice_jobs"], "redis", None)


# --------------------------------------------------------------------------- list


def test_owner_lists_the_tenants_templates_with_labels(client, login, tenant_a):
    login(OWNER)
    assert "Templates" in navbar_items(client.get("/").get_data(as_text=True))
    response = client.get("/templates/list/")
    assert response.status_code == 200
    text = page(response)
    assert list_names(text) == {
        "order_shipped",
        "festive_offer",
        "welcome",
        "login_code",
        "old_promo",
    }
    assert '<span class="label label-success template-status">Approved</span>' in text
    assert '<span class="label label-warning template-status">Paused</span>' in text
    assert "Marketing" in text and "Authentication" in text and "Not synced yet" in text
    assert "WhatsApp Manager" in text  # managed in Meta: no add button
    assert 'href="/templates/add"' not in text
    assert 'id="template-sync"' in text and 'name="csrf_token"' in text


def test_search_by_name_and_filters(client, login, tenant_a):
    login(OWNER)
    assert list_names(page(client.get("/templates/list/?q=ORDER"))) == {"order_shipped"}
    assert list_names(page(client.get("/templates/list/?q=%25"))) == set()  # % is literal
    by_status = page(client.get("/templates/list/?_flt_0_status=PAUSED"))
    assert list_names(by_status) == {"old_promo"}
    by_category = page(client.get("/templates/list/?_flt_0_category=AUTHENTICATION"))
    assert list_names(by_category) == {"login_code"}
    by_language = page(client.get("/templates/list/?_flt_0_language=en_US"))
    assert len(list_names(by_language)) == 5
    assert list_names(page(client.get("/templates/list/?_flt_0_language=hi"))) == set()


# --------------------------------------------------------------------------- show


def test_show_renders_components_and_variables(client, login, tenant_a):
    tpl = templates_of(tenant_a)[("festive_offer", "en_US")]
    tpl.components = [
        {"type": "HEADER", "format": "TEXT", "text": "Diwali <sale>"},
        *tpl.components,
        {"type": "FOOTER", "text": "Reply STOP to opt out"},
        {"type": "BUTTONS", "buttons": [{"type": "QUICK_REPLY", "text": "Stop offers"}]},
    ]
    db.session.commit()
    login(OWNER)
    response = client.get(f"/templates/show/{tpl.id}")
    assert response.status_code == 200
    raw = response.get_data(as_text=True)
    assert "Diwali &lt;sale&gt;" in raw  # template text is escaped
    text = page(response)
    assert "Hi {{customer_name}}, {{discount}} off this week only!" in text
    assert "Reply STOP to opt out" in text and "Stop offers (quick reply)" in text
    variables = re.findall(
        r'<tr class="template-variable"><td><code>(.*?)</code></td><td>(.*?)</td>', text
    )
    assert variables == [
        ("{{customer_name}}", "example_customer_name"),
        ("{{discount}}", "example_discount"),
    ]
    assert "Named ({{name}})" in text and "WhatsApp Manager" in text
    assert 'id="audit-history"' in text


def test_no_add_edit_or_delete(client, login, csrf_token, tenant_a):
    login(OWNER)
    pk = template_id(tenant_a, "welcome")
    assert client.get("/templates/add").status_code == 404
    assert client.get(f"/templates/edit/{pk}").status_code == 404
    token = csrf_token("/templates/list/")
    assert client.post(f"/templates/delete/{pk}", data={"csrf_token": token}).status_code == 404
    assert template_id(tenant_a, "welcome") == pk


def test_another_tenants_template_is_404(client, login, tenant_b):
    login(OWNER)
    for name in ("welcome", "old_promo"):
        assert client.get(f"/templates/show/{template_id(tenant_b, name)}").status_code == 404
    assert client.get("/templates/show/999999999").status_code == 404
    assert client.get("/templates/show/not-a-number").status_code == 404


# --------------------------------------------------------------------------- sync


def test_sync_is_queued_after_commit_then_shown(
    client, login, csrf_token, fake, run_jobs, tenant_a
):
    fake.templates[waba(tenant_a)].append(FakeTemplate("new_one", body="Hi {{1}}"))
    login(OWNER)
    token = csrf_token("/templates/list/")
    response = client.post("/templates/sync", data={"csrf_token": token})
    assert response.status_code == 302 and response.headers["Location"].endswith("/templates/list/")
    assert get_queue("default").count == 1
    listing = page(client.get("/templates/list/"))
    assert "Sync from WhatsApp started" in listing
    assert "waiting for a worker" in listing
    # A second click while the first is queued costs no second job.
    client.post("/templates/sync", data={"csrf_token": token})
    assert get_queue("default").count == 1

    run_jobs("default")
    listing = page(client.get("/templates/list/"))
    assert "Synced 6 templates from WhatsApp: 1 new, 5 updated." in listing
    assert "new_one" in list_names(listing)
    assert "Not synced yet" not in listing
    assert templates_of(tenant_a)[("new_one", "en_US")].status == TemplateStatus.approved


def test_inline_sync_shows_the_result_at_once(
    client, login, csrf_token, fake, inline_jobs, tenant_a, tenant_b
):
    login(OWNER)
    response = client.post(
        "/templates/sync",
        data={"csrf_token": csrf_token("/templates/list/")},
        follow_redirects=True,
    )
    assert response.status_code == 200
    text = page(response)
    assert "Synced 5 templates from WhatsApp: 0 new, 5 updated." in text
    assert 'class="text-success"' in text
    assert all(t.synced_at for t in templates_of(tenant_a).values())
    assert all(t.synced_at is None for t in templates_of(tenant_b).values())
    done = db.session.scalars(select(AuditEvent).where(AuditEvent.action == SYNC_DONE)).all()
    assert [e.tenant_id for e in done] == [tenant_a.id]


def test_inline_sync_with_a_bad_token_says_so(
    client, login, csrf_token, fake, inline_jobs, tenant_a
):
    tenant_a.wa_access_token = "revoked-token-0123456789abcdef"
    db.session.commit()
    login(OWNER)
    response = client.post(
        "/templates/sync",
        data={"csrf_token": csrf_token("/templates/list/")},
        follow_redirects=True,
    )
    assert response.status_code == 200
    text = page(response)
    assert "Sync failed" in text and "(error 190)" in text
    assert "access token is invalid or expired" in text


def test_inline_sync_without_settings_says_so(client, login, csrf_token, inline_jobs, tenant_a):
    tenant_a.wa_business_account_id = None
    db.session.commit()
    login(OWNER)
    response = client.post(
        "/templates/sync",
        data={"csrf_token": csrf_token("/templates/list/")},
        follow_redirects=True,
    )
    assert response.status_code == 200
    assert "WhatsApp is not set up for this business" in page(response)


def test_sync_needs_the_csrf_token(client, login, tenant_a):
    login(OWNER)
    response = client.post("/templates/sync", data={})
    assert response.status_code == 400
    response = client.post("/templates/sync", data={"csrf_token": "forged"})
    assert response.status_code == 400
    assert client.get("/templates/sync").status_code == 405
    assert get_queue("default").count == 0
    assert requested(tenant_a) == 0


def test_platform_staff_sync_nothing(client, login, csrf_token):
    login("admin@xigmapro.example")
    response = client.post(
        "/templates/sync", data={"csrf_token": csrf_token("/account/")}, follow_redirects=True
    )
    assert response.status_code == 200
    assert "sign in as its tenant admin" in page(response)
    assert get_queue("default").count == 0


# -------------------------------------------------------------------------- roles


def test_agents_have_no_templates_screen(client, login, csrf_token, tenant_a):
    login(AGENT)
    assert "Templates" not in navbar_items(client.get("/").get_data(as_text=True))
    pk = template_id(tenant_a, "welcome")
    assert client.get("/templates/list/").status_code == 403
    assert client.get(f"/templates/show/{pk}").status_code == 403
    token = csrf_token("/account/")
    assert client.post("/templates/sync", data={"csrf_token": token}).status_code == 403
    assert get_queue("default").count == 0


def test_the_screen_never_errors_on_odd_rows(client, login, tenant_a):
    odd = MessageTemplate(
        tenant_id=tenant_a.id,
        name="odd",
        language="en_US",
        category="UTILITY",
        status=TemplateStatus.deleted,
        components=[{"type": "BODY"}, {"weird": True}, {"type": "BUTTONS", "buttons": None}],
    )
    db.session.add(odd)
    db.session.commit()
    login(OWNER)
    assert client.get("/templates/list/").status_code == 200
    shown = client.get(f"/templates/show/{odd.id}")
    assert shown.status_code == 200
    assert '<span class="label label-default template-status">Deleted</span>' in shown.get_data(
        as_text=True
    )
