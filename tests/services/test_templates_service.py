"""Template sync against the fake Cloud API over real HTTP, status webhooks, previews."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from sqlalchemy import select

from app.extensions import db
from app.models.campaign import MessageTemplate, TemplateCategory, TemplateStatus
from app.services import whatsapp
from app.services.demo_contacts import DEMO_WHATSAPP, DEMO_WHATSAPP_ACCOUNTS
from app.services.demo_templates import DEMO_LANGUAGE, DEMO_TEMPLATES, demo_body
from app.services.templates import (
    apply_template_status,
    describe_components,
    render_template_text,
    sync_templates,
    template_variables,
    variable_examples,
)
from app.services.whatsapp import WhatsAppError, WhatsAppNotConfiguredError
from tests.fakes.cloud_parts import FakeNumber, FakeTemplate, default_templates
from tests.fakes.whatsapp_cloud import FakeCloudAPI


def demo_number(slug: str) -> FakeNumber:
    phone_id, secret = DEMO_WHATSAPP[slug]
    token, waba = DEMO_WHATSAPP_ACCOUNTS[slug]
    return FakeNumber(phone_id, secret, token, business_account_id=waba)


@contextmanager
def demo_cloud(app, monkeypatch) -> Iterator[FakeCloudAPI]:
    """The fake Cloud API serving both demo WABAs (default templates), as `make run`."""
    with FakeCloudAPI([demo_number("acme"), demo_number("bharatfoods")], seed=5) as server:
        monkeypatch.setitem(app.config, "WHATSAPP_API_BASE", server.base_url)
        yield server
    whatsapp.close_http_clients()


@pytest.fixture
def fake(app, monkeypatch):
    with demo_cloud(app, monkeypatch) as server:
        yield server


def templates_of(tenant) -> dict[tuple[str, str], MessageTemplate]:
    rows = db.session.scalars(
        select(MessageTemplate)
        .where(MessageTemplate.tenant_id == tenant.id)
        .execution_options(skip_tenant_scope=True)
    )
    return {(t.name, t.language): t for t in rows}


def snapshot(tenant) -> dict:
    return {
        key: (t.status, t.wa_template_id, t.synced_at, t.components, t.rejected_reason)
        for key, t in templates_of(tenant).items()
    }


def waba(tenant) -> str:
    return tenant.wa_business_account_id


# -------------------------------------------------------------------------- demo


def test_demo_templates_match_what_the_fake_serves(tenant_a, tenant_b):
    served = {(t.name, t.language, t.category, t.status, t.body) for t in default_templates()}
    seeded = {(n, DEMO_LANGUAGE, c.value, s.value, b) for n, c, s, b in DEMO_TEMPLATES}
    assert seeded == served
    for tenant in (tenant_a, tenant_b):
        rows = templates_of(tenant)
        assert {name for name, _lang in rows} == {n for n, *_ in DEMO_TEMPLATES}
        shipped = rows[("order_shipped", "en_US")]
        assert shipped.components == [demo_body("Hi {{1}}, order {{2}} shipped.")[1]]
        assert rows[("festive_offer", "en_US")].parameter_format == "NAMED"
        assert shipped.synced_at is None  # seeded, never synced
    assert (waba(tenant_a), waba(tenant_b)) == ("200000000000001", "200000000000002")
    assert tenant_a.wa_access_token == DEMO_WHATSAPP_ACCOUNTS["acme"][0]


# -------------------------------------------------------------------------- sync


def test_first_sync_of_the_demo_fills_in_ids_and_times(fake, tenant_a):
    counts = sync_templates(db.session, tenant_a)
    assert counts == {
        "fetched": 5,
        "created": 0,
        "updated": 5,  # the WhatsApp ids were unknown
        "unchanged": 0,
        "deleted": 0,
        "skipped": 0,
    }
    served = {t.name: t for t in fake.templates[waba(tenant_a)]}
    for (name, _lang), row in templates_of(tenant_a).items():
        assert row.wa_template_id == served[name].id
        assert row.synced_at is not None
        assert row.components == served[name].as_graph()["components"]
    assert templates_of(tenant_a)[("old_promo", "en_US")].status == TemplateStatus.paused
    again = sync_templates(db.session, tenant_a)
    assert (again["updated"], again["unchanged"], again["created"]) == (0, 5, 0)


def test_sync_creates_updates_and_marks_deleted(fake, tenant_a, tenant_b):
    b_before = snapshot(tenant_b)
    sync_templates(db.session, tenant_a)
    fake.templates[waba(tenant_a)] = [
        FakeTemplate("order_shipped", body="Hello {{1}}, order {{2}} is on its way."),
        FakeTemplate("order_shipped", language="hi", body="नमस्ते {{1}}, ऑर्डर {{2}} भेजा गया।"),
        FakeTemplate("new_arrivals", category="MARKETING", status="PENDING", body="New {{1}}"),
        FakeTemplate("welcome", category="MARKETING", status="REJECTED", body="Hi {{1}}!"),
    ]

    counts = sync_templates(db.session, tenant_a)

    assert counts == {
        "fetched": 4,
        "created": 2,
        "updated": 2,
        "unchanged": 0,
        "deleted": 3,  # festive_offer, login_code, old_promo
        "skipped": 0,
    }
    rows = templates_of(tenant_a)
    assert rows[("order_shipped", "en_US")].components[0]["text"].startswith("Hello {{1}}")
    assert rows[("order_shipped", "en_US")].status == TemplateStatus.approved
    hindi = rows[("order_shipped", "hi")]
    assert (hindi.category, hindi.status) == (TemplateCategory.utility, TemplateStatus.approved)
    assert rows[("new_arrivals", "en_US")].status == TemplateStatus.pending
    assert rows[("welcome", "en_US")].status == TemplateStatus.rejected
    for name in ("festive_offer", "login_code", "old_promo"):
        gone = rows[(name, "en_US")]
        assert gone.status == TemplateStatus.deleted  # kept: campaigns reference it
        assert gone.components  # its content stays readable
    # Deleted stays deleted without counting again; a template that comes back revives.
    assert sync_templates(db.session, tenant_a)["deleted"] == 0
    fake.templates[waba(tenant_a)].append(FakeTemplate("login_code", category="AUTHENTICATION"))
    counts = sync_templates(db.session, tenant_a)
    assert (counts["updated"], counts["deleted"]) == (1, 0)
    assert templates_of(tenant_a)[("login_code", "en_US")].status == TemplateStatus.approved
    # Tenant B's templates were never touched.
    assert snapshot(tenant_b) == b_before


def test_sync_follows_every_page(fake, tenant_a):
    many = [FakeTemplate(f"promo_{i:03d}", category="MARKETING") for i in range(30)]
    fake.templates[waba(tenant_a)] = many
    counts = sync_templates(db.session, tenant_a, page_size=7)  # 5 pages
    assert (counts["fetched"], counts["created"]) == (30, 30)
    assert {f"promo_{i:03d}" for i in range(30)} <= {n for n, _ in templates_of(tenant_a)}


def test_rejected_reason_and_unreadable_templates(fake, tenant_a):
    rejected = FakeTemplate("welcome", category="MARKETING", status="REJECTED")
    listed = rejected.as_graph()
    rejected.as_graph = lambda: {**listed, "rejected_reason": "PROMOTIONAL"}
    odd = FakeTemplate("order_shipped", status="SOMETHING_NEW")  # unknown status
    fake.templates[waba(tenant_a)] = [*default_templates()[1:2], rejected, odd]

    counts = sync_templates(db.session, tenant_a)

    assert counts["skipped"] == 1
    rows = templates_of(tenant_a)
    assert rows[("welcome", "en_US")].rejected_reason == "PROMOTIONAL"
    # Listed but unreadable: left as it was, not marked deleted.
    assert rows[("order_shipped", "en_US")].status == TemplateStatus.approved
    assert counts["deleted"] == 2  # login_code, old_promo
    # Approval clears the reason.
    fake.templates[waba(tenant_a)] = [FakeTemplate("welcome", category="MARKETING")]
    sync_templates(db.session, tenant_a)
    assert templates_of(tenant_a)[("welcome", "en_US")].rejected_reason is None


def test_a_refused_token_writes_nothing(fake, tenant_a):
    before = snapshot(tenant_a)
    tenant_a.wa_access_token = "not-the-right-token-0123456789"
    with pytest.raises(WhatsAppError) as caught:
        sync_templates(db.session, tenant_a)
    assert caught.value.code == 190
    assert snapshot(tenant_a) == before


def test_a_failure_on_a_later_page_writes_nothing(fake, tenant_a, monkeypatch):
    fake.templates[waba(tenant_a)] = [FakeTemplate(f"t{i}") for i in range(5)]
    before = snapshot(tenant_a)
    calls = {"n": 0}
    real = fake._list_templates

    def second_page_fails(*args):
        calls["n"] += 1
        return real(*args) if calls["n"] == 1 else (503, {"error": {"code": 2}})

    monkeypatch.setattr(fake, "_list_templates", second_page_fails)
    with pytest.raises(WhatsAppError) as caught:
        sync_templates(db.session, tenant_a, page_size=2)
    assert caught.value.retryable
    assert snapshot(tenant_a) == before


def test_missing_settings_are_reported(fake, tenant_a):
    tenant_a.wa_business_account_id = None
    with pytest.raises(WhatsAppNotConfiguredError):
        sync_templates(db.session, tenant_a)
    tenant_a.wa_access_token = None
    with pytest.raises(WhatsAppNotConfiguredError):
        sync_templates(db.session, tenant_a)


# ------------------------------------------------------------------ status webhook


def status_value(event: str, template: MessageTemplate | None = None, **extra) -> dict:
    value = {
        "event": event,
        "message_template_id": int(template.wa_template_id) if template else 1,
        "message_template_name": template.name if template else "x",
        "message_template_language": template.language if template else "en_US",
        "reason": None,
    }
    return {**value, **extra}


def test_status_webhooks_update_status_and_reason(fake, tenant_a):
    sync_templates(db.session, tenant_a)
    welcome = templates_of(tenant_a)[("welcome", "en_US")]

    found = apply_template_status(
        db.session, tenant_a.id, status_value("REJECTED", welcome, reason="INCORRECT_CATEGORY")
    )
    assert found is welcome
    assert (welcome.status, welcome.rejected_reason) == (
        TemplateStatus.rejected,
        "INCORRECT_CATEGORY",
    )
    paused = status_value(
        "PAUSED", welcome, other_info={"title": "FIRST_PAUSE", "description": "Low quality"}
    )
    apply_template_status(db.session, tenant_a.id, paused)
    assert (welcome.status, welcome.rejected_reason) == (TemplateStatus.paused, "Low quality")
    apply_template_status(db.session, tenant_a.id, status_value("REINSTATED", welcome))
    assert (welcome.status, welcome.rejected_reason) == (TemplateStatus.approved, None)
    apply_template_status(db.session, tenant_a.id, status_value("DISABLED", welcome))
    assert welcome.status == TemplateStatus.disabled
    # Not review states: the status stays (the next sync reads the real one).
    assert apply_template_status(db.session, tenant_a.id, status_value("FLAGGED", welcome)) is None
    assert welcome.status == TemplateStatus.disabled


def test_status_webhook_finds_by_name_and_language_and_ignores_unknown(tenant_a):
    # Seeded rows have no WhatsApp id yet; Meta's webhook may write "en-US".
    value = {
        "event": "APPROVED",
        "message_template_id": 999,
        "message_template_name": "old_promo",
        "message_template_language": "en-US",
        "reason": "NONE",
    }
    promo = apply_template_status(db.session, tenant_a.id, value)
    assert promo is not None and promo.status == TemplateStatus.approved
    unknown = {**value, "message_template_name": "never_synced"}
    assert apply_template_status(db.session, tenant_a.id, unknown) is None


def test_status_webhook_never_touches_another_tenant(fake, tenant_a, tenant_b):
    sync_templates(db.session, tenant_b)
    b_welcome = templates_of(tenant_b)[("welcome", "en_US")]
    b_before = snapshot(tenant_b)
    # B's template id, delivered for tenant A: A has no such template (by id or name).
    value = status_value("REJECTED", b_welcome, message_template_name="not_in_a")
    assert apply_template_status(db.session, tenant_a.id, value) is None
    # Same name in both tenants: only A's changes.
    by_name = {**value, "message_template_id": 1, "message_template_name": "welcome"}
    a_welcome = apply_template_status(db.session, tenant_a.id, by_name)
    assert a_welcome.tenant_id == tenant_a.id and a_welcome.status == TemplateStatus.rejected
    assert snapshot(tenant_b) == b_before


# ----------------------------------------------------------------- readable form

RICH = [
    {"type": "HEADER", "format": "TEXT", "text": "Order {{1}}"},
    {
        "type": "BODY",
        "text": "Hi {{2}}, your order ships {{3}}.",
        "example": {"body_text": [["Ana", "today"]]},
    },
    {"type": "FOOTER", "text": "Reply STOP to opt out"},
    {
        "type": "BUTTONS",
        "buttons": [
            {"type": "URL", "text": "Track", "url": "https://shop.example/t/{{4}}"},
            {"type": "PHONE_NUMBER", "text": "Call us", "phone_number": "+912226543210"},
            {"type": "QUICK_REPLY", "text": "Stop promotions"},
        ],
    },
]


def test_components_render_readably_with_placeholders():
    assert template_variables(RICH) == ["1", "2", "3", "4"]
    parts = describe_components(RICH)
    assert [p.kind for p in parts] == ["header", "body", "footer", "buttons"]
    assert parts[3].buttons == [
        "Track → https://shop.example/t/{{4}}",
        "Call us → +912226543210",
        "Stop promotions (quick reply)",
    ]
    assert render_template_text(RICH) == (
        "*Order {{1}}*\n"
        "Hi {{2}}, your order ships {{3}}.\n"
        "Reply STOP to opt out\n"
        "[Track → https://shop.example/t/{{4}}]\n"
        "[Call us → +912226543210]\n"
        "[Stop promotions (quick reply)]"
    )
    assert variable_examples(RICH) == {"2": "Ana", "3": "today"}


def test_named_variables_media_headers_and_odd_components():
    _fmt, body = demo_body("Hi {{customer_name}}, {{discount}} off!")
    components = [
        {"type": "HEADER", "format": "IMAGE"},
        body,
        {"type": "CAROUSEL", "cards": []},
        "junk",
    ]
    assert template_variables(components) == ["customer_name", "discount"]
    assert variable_examples(components) == {
        "customer_name": "example_customer_name",
        "discount": "example_discount",
    }
    assert render_template_text(components) == (
        "*[image]*\nHi {{customer_name}}, {{discount}} off!\n(Carousel)"
    )
    assert describe_components(None) == [] and template_variables(None) == []
