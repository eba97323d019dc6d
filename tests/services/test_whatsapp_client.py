"""The Cloud API client against the local fake over real HTTP (reference 1, 2, 3, 5)."""

from __future__ import annotations

import logging
import socket

import httpx
import pytest

from app.extensions import db
from app.services import whatsapp, whatsapp_http
from app.services.whatsapp import (
    ERROR_RULES,
    RetryClass,
    WhatsAppClient,
    WhatsAppError,
    WhatsAppNotConfiguredError,
    campaign_callback_data,
    classify,
    client_for_tenant,
    parse_campaign_callback_data,
)
from tests.fakes.cloud_parts import FakeNumber, FakeTemplate, Fault
from tests.fakes.whatsapp_cloud import FakeCloudAPI

NUMBER = "100000000000077"
WABA = "200000000000077"
TOKEN = "EAAGfakeAccessToken0123456789abcdefXYZ"
USER = "919876543210"
SOON, PAIR, TOMORROW, NEVER = (
    RetryClass.soon,
    RetryClass.recipient_later,
    RetryClass.tomorrow,
    RetryClass.permanent,
)


@pytest.fixture
def fake():
    with FakeCloudAPI([FakeNumber(NUMBER, "app-secret", TOKEN)], seed=1) as server:
        yield server
    whatsapp.close_http_clients()  # each fake has its own port, hence its own pool


@pytest.fixture
def wa(fake) -> WhatsAppClient:
    return WhatsAppClient(TOKEN, NUMBER, business_account_id=WABA, base_url=fake.base_url)


def raised(call) -> WhatsAppError:
    with pytest.raises(WhatsAppError) as caught:
        call()
    return caught.value


# ------------------------------------------------------------------------ sending


def test_positional_template_returns_the_wamid_and_sends_the_reference_body(fake, wa):
    tag = campaign_callback_data(12, 345)
    result = wa.send_template(
        "+91 98765 43210", "order_shipped", "en_US", body=["Ana", "#42"], callback_data=tag
    )
    assert result.wamid.startswith("wamid.")
    assert (result.wa_id, result.input, result.message_status) == (USER, USER, "accepted")
    sent = fake.accepted[-1]
    assert sent.wamid == result.wamid and sent.request == {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": USER,
        "type": "template",
        "template": {
            "name": "order_shipped",
            "language": {"code": "en_US"},
            "components": [
                {
                    "type": "body",
                    "parameters": [
                        {"type": "text", "text": "Ana"},
                        {"type": "text", "text": "#42"},
                    ],
                }
            ],
        },
        "biz_opaque_callback_data": "campaign:12:recipient:345",
    }
    assert fake.count(USER, 12) == 1
    assert parse_campaign_callback_data(tag) == (12, 345)


def test_named_template_parameters(fake, wa):
    params = {"customer_name": "Ana", "discount": "20%"}
    result = wa.send_template(USER, "festive_offer", "en_US", body=params)
    body = fake.accepted[-1].request["template"]["components"][0]["parameters"]
    assert body[0] == {"type": "text", "parameter_name": "customer_name", "text": "Ana"}
    assert result.wamid == fake.accepted[-1].wamid
    # A name the template does not have: Meta's 132000, never retried.
    error = raised(lambda: wa.send_template(USER, "festive_offer", "en_US", body={"name": "x"}))
    assert (error.code, error.retry) == (132000, NEVER)


def test_text_with_preview_and_reply_context(fake, wa):
    fake.open_window(NUMBER, USER)
    result = wa.send_text(USER, "See https://ex.com", preview_url=True, reply_to="wamid.IN1")
    request = fake.accepted[-1].request
    assert request["text"] == {"preview_url": True, "body": "See https://ex.com"}
    assert request["context"] == {"message_id": "wamid.IN1"}
    assert result.message_status is None  # only template replies carry it
    with pytest.raises(ValueError):
        wa.send_text(USER, "x" * 4097)
    with pytest.raises(ValueError):
        wa.send_text("not a number", "hi")


def test_mark_as_read(fake, wa):
    assert wa.mark_as_read("wamid.HBgLMTU1NTEyMzQ1NjcVAgASGBQzQTdG") is True
    error = raised(lambda: wa.mark_as_read("garbage"))
    assert (error.code, error.retry) == (100, NEVER)
    assert fake.accepted == []  # a read receipt is not a message


# ------------------------------------------------------------------------- errors

RETRY_CASES = [
    (130429, SOON),
    (4, SOON),
    (80007, SOON),
    (131000, SOON),
    (131016, SOON),
    (1, SOON),
    (2, SOON),
    (131057, SOON),
    (131056, PAIR),
    (131049, TOMORROW),
    (131026, NEVER),
    (131047, NEVER),
    (131050, NEVER),
    (131048, NEVER),
    (132000, NEVER),
    (132001, NEVER),
    (132015, NEVER),
    (100, NEVER),
    (190, NEVER),
    (368, NEVER),
    (10, NEVER),
]


@pytest.mark.parametrize(("code", "retry"), RETRY_CASES)
def test_each_error_code_maps_to_its_class(fake, wa, code, retry):
    fake.inject(Fault(code))
    error = raised(lambda: wa.send_template(USER, "order_shipped", "en_US", body=["A", "B"]))
    assert (error.code, error.retry, error.retryable) == (code, retry, retry is not NEVER)
    assert error.fbtrace_id and error.details and error.title
    assert error.http_status == fake_http_status(code)
    assert error.ambiguous is False  # a reply came back: nothing was sent
    assert fake.accepted == []


def fake_http_status(code: int) -> int:
    from tests.fakes.cloud_parts import ERRORS

    return ERRORS[code][0]


def test_class_depends_on_the_code_not_the_http_status(fake, wa):
    # 130429 answered with 400 (one copy of Meta's table) is still a throughput error.
    fake.inject(Fault(130429, http_status=400))
    error = raised(lambda: wa.send_template(USER, "order_shipped", "en_US", body=["A", "B"]))
    assert (error.http_status, error.retry, error.retry_after) == (400, SOON, 1.0)


def test_the_table_covers_families_and_unknown_codes():
    assert classify(132777).retry is NEVER  # every 132xxx: template problem
    assert classify(250).retry is NEVER  # 200-299: permission
    assert classify(131056).retry_after == 6.0
    assert classify(131049).retry_after == 24 * 3600
    # Unknown codes: permanent, unless the server failed or Meta flags them transient.
    assert classify(987654, http_status=400).retry is NEVER
    assert classify(987654, http_status=503).retry is SOON
    assert classify(987654, http_status=400, is_transient=True).retry is SOON
    # No parsable error: 408, 429 and 5xx retry, other statuses do not.
    assert [classify(None, http_status=s).retry for s in (500, 502, 429, 408, 404, 403)] == [
        SOON,
        SOON,
        SOON,
        SOON,
        NEVER,
        NEVER,
    ]
    assert all(rule.meaning for rule in ERROR_RULES.values())


@pytest.mark.parametrize(("status", "retry"), [(502, SOON), (503, SOON), (404, NEVER)])
def test_a_reply_without_a_graph_error_is_classified_by_status(fake, wa, status, retry):
    fake.inject(Fault(None, http_status=status))
    error = raised(lambda: wa.send_template(USER, "order_shipped", "en_US", body=["A", "B"]))
    assert (error.code, error.http_status, error.retry) == (None, status, retry)


def test_failed_status_webhook_errors_use_the_same_table():
    item = {"code": 131049, "title": "Healthy ecosystem", "error_data": {"details": "Later"}}
    error = WhatsAppError.from_webhook(item)
    assert (error.code, error.retry, error.title, error.details) == (
        131049,
        TOMORROW,
        "Healthy ecosystem",
        "Later",
    )
    assert WhatsAppError.from_webhook({"code": 131047}).retry is NEVER


def test_throughput_bucket_answers_130429(fake, wa):
    fake.add_number(FakeNumber(NUMBER, "app-secret", TOKEN, mps=0.1, burst=5))
    results = []
    for n in range(8):
        try:
            wa.send_template(f"9198000000{n:02d}", "order_shipped", "en_US", body=["A", "B"])
            results.append("ok")
        except WhatsAppError as error:
            results.append((error.code, error.retry, error.http_status))
    assert results[:5] == ["ok"] * 5
    assert results[5:] == [(130429, SOON, 429)] * 3
    assert fake.max_in_window(NUMBER, accepted_only=True) == 5


def test_pair_limit_holds_back_only_that_recipient(fake, wa):
    fake.pair_burst = 2
    send = lambda to: wa.send_template(to, "order_shipped", "en_US", body=["A", "B"])  # noqa: E731
    send(USER)
    send(USER)
    error = raised(lambda: send(USER))
    assert (error.code, error.retry, error.retry_after) == (131056, PAIR, 6.0)
    assert send("919812345678").wamid  # another recipient is unaffected


def test_bad_bearer_token_is_190_and_permanent(fake):
    for token in ("wrong-token", "EAAGsomeoneElsesToken"):
        bad = WhatsAppClient(token, NUMBER, base_url=fake.base_url)
        error = raised(lambda b=bad: b.send_template(USER, "order_shipped", "en_US"))
        assert (error.code, error.http_status, error.retry) == (190, 401, NEVER)
    assert fake.accepted == []


def test_template_paging_gets_every_template(fake, wa):
    extra = [FakeTemplate(f"promo_{n:02d}", body="Hi {{1}}") for n in range(40)]
    fake.add_number(FakeNumber(NUMBER, "app-secret", TOKEN), templates=extra)
    templates = wa.list_templates(limit=7)  # 6 pages
    assert [t["name"] for t in templates] == [f"promo_{n:02d}" for n in range(40)]
    assert set(templates[0]) >= {"id", "name", "status", "category", "language", "components"}
    assert len({t["id"] for t in templates}) == 40


def test_timeouts_are_retry_soon_and_flagged_ambiguous(fake):
    fake.latency = (0.3, 0.3)
    slow = WhatsAppClient(
        TOKEN, NUMBER, base_url=fake.base_url, timeout=httpx.Timeout(0.05, connect=1.0)
    )
    error = raised(lambda: slow.send_template(USER, "order_shipped", "en_US", body=["A", "B"]))
    assert (error.code, error.retry, error.retry_after) == (None, SOON, 1.0)
    # The fake got the request before the client gave up: a blind retry may send twice.
    assert error.ambiguous is True


def test_connection_refused_is_retry_soon_and_not_ambiguous():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    dead = WhatsAppClient(TOKEN, NUMBER, base_url=f"http://127.0.0.1:{port}")
    error = raised(lambda: dead.send_text(USER, "hi"))
    assert (error.retry, error.ambiguous) == (SOON, False)


def mock_client(handler) -> WhatsAppClient:
    http = httpx.Client(base_url="https://graph.test", transport=httpx.MockTransport(handler))
    return WhatsAppClient(TOKEN, NUMBER, base_url="https://graph.test", http=http)


def test_retry_after_header_overrides_the_hint():
    body = {"error": {"code": 130429, "message": "(#130429) Rate limit hit"}}
    client = mock_client(lambda r: httpx.Response(429, json=body, headers={"Retry-After": "7"}))
    error = raised(lambda: client.send_text(USER, "hi"))
    assert (error.retry, error.retry_after, error.title) == (SOON, 7.0, "Rate limit hit")


def test_a_200_without_a_message_id_is_not_retried():
    client = mock_client(lambda r: httpx.Response(200, json={"messaging_product": "whatsapp"}))
    error = raised(lambda: client.send_text(USER, "hi"))
    assert (error.retry, error.ambiguous) == (NEVER, True)


def test_paging_never_follows_next_to_another_host():
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if "after" in request.url.params:
            return httpx.Response(200, json={"data": [{"id": "2"}], "paging": {}})
        paging = {"cursors": {"after": "C1"}, "next": "https://evil.test/x?access_token=leak"}
        return httpx.Response(200, json={"data": [{"id": "1"}], "paging": paging})

    client = mock_client(handler)
    assert [t["id"] for t in client.list_templates(WABA)] == ["1", "2"]
    assert {r.url.host for r in seen} == {"graph.test"}
    assert seen[1].url.params["after"] == "C1"


# ----------------------------------------------------------- secrets, pool, tenant


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(f"{record.getMessage()} {record.args!r}")


def test_the_token_never_reaches_logs_reprs_or_errors(fake, wa, monkeypatch):
    # A handler on the loggers themselves: other tests' logging set-up (propagation,
    # disabled loggers) cannot hide a record from this test.
    records = _Records()
    for name in ("httpx", "httpcore", whatsapp.__name__):
        logger = logging.getLogger(name)
        monkeypatch.setattr(logger, "disabled", False)
        monkeypatch.setattr(logger, "level", logging.DEBUG)
        logger.addHandler(records)
    try:
        wa.send_template(USER, "order_shipped", "en_US", body=["A", "B"])
        errors = [raised(lambda: wa.send_template(USER, "missing", "en_US"))]
        fake.latency = (0.2, 0.2)
        slow = WhatsAppClient(TOKEN, NUMBER, base_url=fake.base_url, timeout=httpx.Timeout(0.02))
        errors.append(raised(lambda: slow.send_text(USER, "hi")))
    finally:
        for name in ("httpx", "httpcore", whatsapp.__name__):
            logging.getLogger(name).removeHandler(records)
    assert records.lines  # httpx/httpcore and the client did log
    assert all(TOKEN not in line for line in records.lines)
    for error in errors:
        assert TOKEN not in f"{error} {error!r} {error.details}"
        assert error.__cause__ is None
    assert TOKEN not in repr(wa)


def test_connections_are_pooled_per_process_and_base_url(fake, monkeypatch):
    first = WhatsAppClient(TOKEN, NUMBER, base_url=fake.base_url)
    second = WhatsAppClient("other-token", "1234567", base_url=fake.base_url + "/")
    assert first._http is second._http is whatsapp.http_client(fake.base_url)
    assert whatsapp.http_client("http://127.0.0.1:1") is not first._http
    # A forked work horse (another pid) never reuses its parent's sockets (the pool
    # lives in whatsapp_http, under the client's wire).
    monkeypatch.setattr(whatsapp_http.os, "getpid", lambda: -1)
    assert whatsapp.http_client(fake.base_url) is not first._http
    assert first._wire is not None and first._wire is first._http.wire


def test_client_for_tenant_uses_the_encrypted_token_and_app_config(app, fake, tenant_a):
    tenant_a.wa_phone_number_id, tenant_a.wa_access_token = NUMBER, TOKEN
    tenant_a.wa_business_account_id = WABA
    db.session.commit()
    config = {**app.config, "WHATSAPP_API_BASE": fake.base_url, "WHATSAPP_READ_TIMEOUT": 2}
    client = client_for_tenant(tenant_a, config)
    assert (client.version, client.timeout.read) == ("v25.0", 2.0)
    assert client.send_template(USER, "order_shipped", "en_US", body=["A", "B"]).wamid
    assert len(client.list_templates()) == 5


def test_client_for_tenant_without_a_token(app, tenant_b):
    tenant_b.wa_access_token = None
    with pytest.raises(WhatsAppNotConfiguredError, match="access token"):
        client_for_tenant(tenant_b)


def test_version_setting_is_normalised(app):
    assert app.config["WHATSAPP_API_VERSION"] == "v25.0"
    assert app.config["WHATSAPP_API_BASE"] == "https://graph.facebook.com"
    assert [whatsapp.normalize_version(v) for v in ("25", "24.0", "v26.0")] == [
        "v25.0",
        "v24.0",
        "v26.0",
    ]
