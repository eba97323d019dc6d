"""The fake Cloud API keeps the contract of reference/whatsapp-cloud-api.md (§1-§6), and
the app's real webhook endpoint accepts what it sends."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from app.extensions import db
from app.models.contact import Contact
from app.models.conversation import Conversation, Message, MessageDirection, MessageStatus
from app.services import whatsapp
from app.services.demo_contacts import DEMO_WHATSAPP
from app.services.whatsapp import WhatsAppClient, campaign_callback_data, client_for_tenant
from app.tenancy import tenant_scope
from tests.fakes.cloud_parts import FakeNumber
from tests.fakes.webhooks import SIGNATURE_HEADER, WebhookRecorder, verify
from tests.fakes.whatsapp_cloud import FakeCloudAPI

ROOT = Path(__file__).resolve().parents[2]
NUMBER, SECRET = "100000000000088", "fake-app-secret"
WABA = "200000000000088"
TOKEN = "EAAGfakeToken-for-the-fake-tests"
USER = "919876500001"
HOUR = 3600


@pytest.fixture
def recorder():
    with WebhookRecorder() as receiver:
        yield receiver


@pytest.fixture
def fake(recorder):
    number = FakeNumber(NUMBER, SECRET, TOKEN, display_phone_number="919999900000")
    with FakeCloudAPI([number], webhook_url=recorder.url, seed=7) as server:
        yield server
    whatsapp.close_http_clients()


@pytest.fixture
def wa(fake) -> WhatsAppClient:
    return WhatsAppClient(TOKEN, NUMBER, business_account_id=WABA, base_url=fake.base_url)


def settle(fake: FakeCloudAPI) -> None:
    assert fake.wait_for_webhooks(5), "the fake's webhooks did not drain"


def statuses_of(recorder: WebhookRecorder, wamid: str) -> list[dict]:
    return [s for s in recorder.statuses() if s["id"] == wamid]


# ----------------------------------------------------------------- webhook shape


def test_status_webhooks_are_signed_and_shaped_as_meta_sends_them(fake, wa, recorder):
    tag = campaign_callback_data(3, 4)
    wamid = wa.send_template(USER, "order_shipped", "en_US", body=["A", "B"], callback_data=tag)
    settle(fake)
    assert len(recorder.received) == 3
    for request in recorder.received:
        assert verify(request.body, request.headers[SIGNATURE_HEADER], SECRET)
        assert not verify(request.body, request.headers[SIGNATURE_HEADER], "another-secret")
        payload = json.loads(request.body)
        assert payload["object"] == "whatsapp_business_account"
        entry = payload["entry"][0]
        assert entry["id"] == WABA
        change = entry["changes"][0]
        assert change["field"] == "messages"
        assert change["value"]["messaging_product"] == "whatsapp"
        assert change["value"]["metadata"] == {
            "display_phone_number": "919999900000",
            "phone_number_id": NUMBER,
        }
    items = statuses_of(recorder, wamid.wamid)
    assert sorted(i["status"] for i in items) == ["delivered", "read", "sent"]
    for item in items:
        assert item["recipient_id"] == USER and item["biz_opaque_callback_data"] == tag
        assert isinstance(item["timestamp"], str) and item["timestamp"].isdigit()
    sent = next(i for i in items if i["status"] == "sent")
    assert sent["pricing"] == {
        "billable": True,
        "pricing_model": "PMP",
        "category": "utility",
        "type": "regular",
    }
    assert sent["conversation"]["origin"] == {"type": "utility"}


def test_duplicated_and_reordered_statuses(recorder):
    number = FakeNumber(NUMBER, SECRET, TOKEN)
    with FakeCloudAPI(
        [number], webhook_url=recorder.url, duplicate_rate=1.0, reorder=True, seed=3
    ) as fake:
        wa = WhatsAppClient(TOKEN, NUMBER, base_url=fake.base_url)
        orders = []
        for n in range(5):
            result = wa.send_template(
                f"9198765000{n:02d}", "order_shipped", "en_US", body=["A", "B"]
            )
            orders.append([s["status"] for s in fake.status_log if s["id"] == result.wamid])
        settle(fake)
    assert all(sorted(o) == ["delivered"] * 2 + ["read"] * 2 + ["sent"] * 2 for o in orders)
    assert any(o[0] != "sent" for o in orders)  # some arrive out of order
    assert len(recorder.received) == 30


def test_a_refused_webhook_is_retried_with_backoff(fake, wa, recorder):
    recorder.status = 500
    fake.statuses = ("sent",)
    fake.sender.backoff = 0.02
    wa.send_template(USER, "order_shipped", "en_US", body=["A", "B"])
    settle(fake)
    assert [d.attempt for d in fake.deliveries] == [1, 2, 3, 4]  # 1 + webhook_retries
    assert len({d.body for d in fake.deliveries}) == 1  # the same bytes each time


# ------------------------------------------------------------ window and opt-out


def test_free_form_text_outside_the_window_fails_by_webhook_with_131047(fake, wa, recorder):
    never = wa.send_text(USER, "hello?")  # accepted: 200 and a wamid
    fake.open_window(NUMBER, "919876500002", at=time.time() - 25 * HOUR)
    expired = wa.send_text("919876500002", "hello again")
    _wamid, inbound = fake.simulate_inbound(NUMBER, "919876500003", "hi there", name="Ana")
    inside = wa.send_text("919876500003", "how can we help?")
    template = wa.send_template(USER, "order_shipped", "en_US", body=["A", "B"])
    settle(fake)
    for result in (never, expired):
        [failed] = statuses_of(recorder, result.wamid)
        assert failed["status"] == "failed" and failed["errors"][0]["code"] == 131047
        assert "24 hours" in failed["errors"][0]["error_data"]["details"]
    assert inbound is not None and inbound.status_code == 200
    sent = next(s for s in statuses_of(recorder, inside.wamid) if s["status"] == "sent")
    assert sent["pricing"]["type"] == "free_customer_service"
    assert {s["status"] for s in statuses_of(recorder, template.wamid)} == {
        "sent",
        "delivered",
        "read",
    }


def test_marketing_to_an_opted_out_user_fails_with_131050(fake, wa, recorder):
    delivery = fake.simulate_opt_out(NUMBER, USER)
    assert delivery is not None and verify(
        delivery.body, delivery.headers[SIGNATURE_HEADER], SECRET
    )
    preference = json.loads(delivery.body)["entry"][0]["changes"][0]
    assert preference["field"] == "user_preferences"
    assert preference["value"]["user_preferences"][0]["value"] == "stop"

    marketing = wa.send_template(USER, "welcome", "en_US", body=["Ana"])
    utility = wa.send_template(USER, "order_shipped", "en_US", body=["A", "B"])
    settle(fake)
    [failed] = statuses_of(recorder, marketing.wamid)
    assert (failed["status"], failed["errors"][0]["code"]) == ("failed", 131050)
    assert "read" in {s["status"] for s in statuses_of(recorder, utility.wamid)}

    fake.optout_async = False  # the synchronous variant answers 131050 directly
    with pytest.raises(whatsapp.WhatsAppError) as caught:
        wa.send_template(USER, "welcome", "en_US", body=["Ana"])
    assert caught.value.code == 131050
    fake.simulate_opt_out(NUMBER, USER, "resume")
    assert wa.send_template(USER, "welcome", "en_US", body=["Ana"]).wamid


def test_undeliverable_recipients_fail_by_webhook_with_131026(fake, wa, recorder):
    fake.undeliverable.add(USER)
    result = wa.send_template(USER, "order_shipped", "en_US", body=["A", "B"])
    settle(fake)
    [failed] = statuses_of(recorder, result.wamid)
    assert failed["errors"][0]["code"] == 131026


def test_templates_checked_against_the_registry(fake, wa):
    for name, code in (("missing", 132001), ("old_promo", 132015)):
        with pytest.raises(whatsapp.WhatsAppError) as caught:
            wa.send_template(USER, name, "en_US", body=["x"])
        assert caught.value.code == code
    with pytest.raises(whatsapp.WhatsAppError) as caught:
        wa.send_template(USER, "order_shipped", "en_US", body=["only one"])
    assert caught.value.code == 132000


# ------------------------------------------------------------ counts and limits


def test_counts_every_accepted_send_per_recipient_and_campaign(fake, wa):
    for recipient_id, to in enumerate(("919800000001", "919800000002", "919800000003"), 1):
        tag = campaign_callback_data(9, recipient_id)
        wa.send_template(to, "order_shipped", "en_US", body=["A", "B"], callback_data=tag)
    other = campaign_callback_data(10, 1)
    wa.send_template("919800000002", "order_shipped", "en_US", body=["A", "B"], callback_data=other)
    wa.send_template("919800000001", "order_shipped", "en_US", body=["A", "B"])
    assert fake.count("919800000001", 9) == 1
    assert (fake.count("919800000002", 9), fake.count("919800000002", 10)) == (1, 1)
    assert fake.count("919800000001") == 1  # outside any campaign
    assert fake.duplicates() == {}
    wa.send_template("919800000003", "order_shipped", "en_US", body=["A", "B"], callback_data=tag)
    assert fake.duplicates() == {("919800000003", "9"): 2}
    stats = httpx.get(f"{fake.base_url}/_fake/stats").json()
    assert stats["accepted"] == 6 and stats["outcomes"] == {"ok": 6}
    assert stats["max_attempts_per_second"] == {NUMBER: 6}


def test_bucket_refusals_are_http_429_with_code_130429(fake):
    fake.add_number(FakeNumber(NUMBER, SECRET, TOKEN, mps=0.1, burst=3))
    body = {"messaging_product": "whatsapp", "to": USER, "type": "text", "text": {"body": "x"}}
    headers = {"Authorization": f"Bearer {TOKEN}"}
    url = f"{fake.base_url}/v25.0/{NUMBER}/messages"
    replies = [httpx.post(url, json=body, headers=headers) for _ in range(5)]
    assert [r.status_code for r in replies] == [200, 200, 200, 429, 429]
    assert replies[-1].json()["error"]["code"] == 130429
    assert (fake.max_in_window(NUMBER), fake.max_in_window(NUMBER, accepted_only=True)) == (5, 3)


def test_missing_bearer_token_is_meta_s_401_body(fake):
    reply = httpx.get(f"{fake.base_url}/v24.0/{WABA}/message_templates")
    error = reply.json()["error"]
    assert reply.status_code == 401
    assert (error["code"], error["type"]) == (190, "OAuthException")
    assert error["fbtrace_id"] and error["message"].startswith("Invalid OAuth access token")


def test_template_pages_follow_the_graph_cursor_pattern(fake):
    headers = {"Authorization": f"Bearer {TOKEN}"}
    url = f"{fake.base_url}/v25.0/{WABA}/message_templates?limit=2&fields=name,status"
    pages = []
    while url:
        page = httpx.get(url, headers=headers).json()
        pages.append(page)
        url = page["paging"].get("next")
    assert [len(p["data"]) for p in pages] == [2, 2, 1]
    assert "previous" not in pages[0]["paging"] and "previous" in pages[1]["paging"]
    assert set(pages[0]["data"][0]) == {"id", "name", "status"}


# ------------------------------------------------------------------- standalone


def test_runs_standalone_from_the_command_line():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    phone_id, secret = DEMO_WHATSAPP["acme"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.fakes.whatsapp_cloud", "--port", str(port)]
        + ["--phone", f"{phone_id}:{secret}:demo-token"],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        banner = proc.stdout.readline().decode()
        assert f"127.0.0.1:{port}" in banner
        wa = WhatsAppClient("demo-token", phone_id, base_url=f"http://127.0.0.1:{port}")
        assert wa.send_template(USER, "order_shipped", "en_US", body=["A", "B"]).wamid
        assert len(wa.list_templates("200000000000001")) == 5
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=5)
        proc.stdout.close()
        whatsapp.close_http_clients()


# ----------------------------------------------------- into the app's real endpoint


def replay(client, received) -> list[int]:
    """Post captured webhooks, raw bytes and signature untouched, to the app."""
    codes = []
    for request in received:
        response = client.post(
            "/webhooks/whatsapp",
            data=request.body,
            headers={SIGNATURE_HEADER: request.headers[SIGNATURE_HEADER]},
            content_type=request.headers["Content-Type"],
        )
        codes.append(response.status_code)
    return codes


def test_the_app_accepts_the_fakes_webhooks_and_updates_messages(
    app, client, run_jobs, recorder, tenant_a
):
    phone_id, secret = DEMO_WHATSAPP["acme"]  # what the demo seeds for Acme
    assert tenant_a.wa_phone_number_id == phone_id
    tenant_a.wa_access_token = TOKEN
    db.session.commit()
    customer, stranger = "919811100001", "919811100002"
    with FakeCloudAPI([FakeNumber(phone_id, secret, TOKEN)], webhook_url=recorder.url) as fake:
        wa = client_for_tenant(tenant_a, {**app.config, "WHATSAPP_API_BASE": fake.base_url})
        inbound_id, _ = fake.simulate_inbound(phone_id, customer, "Is my order out?")
        assert replay(client, recorder.received) == [200]
        run_jobs("default")
        reply = wa.send_text(customer, "Yes, it shipped today.", reply_to=inbound_id)
        late = wa.send_text(stranger, "Still interested?")  # no window: 131047
        with tenant_scope(tenant_a.id):
            # What the sending pipeline will do: store each sent message with its wamid.
            conversation = _message(inbound_id).conversation
            other = Conversation(contact=Contact(wa_id=stranger, phone=f"+{stranger}"))
            db.session.add(_outbound(conversation, reply.wamid))
            db.session.add(_outbound(other, late.wamid))
            db.session.commit()
        settle(fake)
    statuses = recorder.received[1:]
    assert len(statuses) == 4  # sent, delivered, read; failed
    assert replay(client, statuses) == [200] * 4
    run_jobs("default")
    with tenant_scope(tenant_a.id):
        read = _message(reply.wamid)
        assert read.status == MessageStatus.read
        assert read.sent_at and read.delivered_at and read.read_at
        failed = _message(late.wamid)
        assert (failed.status, failed.error_code) == (MessageStatus.failed, 131047)
        assert failed.error_title == "Re-engagement message"
    # The same endpoint refuses a body altered after signing.
    request = next(r for r in statuses if b'"failed"' in r.body)
    tampered = client.post(
        "/webhooks/whatsapp",
        data=request.body.replace(b"failed", b"read"),
        headers={SIGNATURE_HEADER: request.headers[SIGNATURE_HEADER]},
        content_type="application/json",
    )
    assert tampered.status_code == 403


def _outbound(conversation: Conversation, wamid: str) -> Message:
    return Message(
        conversation=conversation,
        direction=MessageDirection.outbound,
        body="(sent by the test)",
        wa_message_id=wamid,
        status=MessageStatus.accepted,
    )


def _message(wamid: str) -> Message:
    return db.session.scalars(select(Message).where(Message.wa_message_id == wamid)).one()
