"""Structured logs over a scripted run: every line JSON, ids on it, no personal data.

The run: a tenant admin signs in, adds a contact (known name, phone, email), invites a
teammate (the email job whose argument is the rendered email), the contact writes in on
WhatsApp (a signed webhook and its processing job), and two jobs fail with the phone as
their argument (one bare, one wearing the job decorator). Everything logged meanwhile
goes through the production JSON handler into a buffer.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from app.jobs import enqueue, get_queue
from app.jobs.mail import send_email
from app.logging_setup import CONTEXT_FIELDS, configure_logging, log_format
from app.services.mail import message_payload
from app.views.webhooks import clear_tenant_cache
from tests.ops._jobs import fail_in_job, fail_on_purpose
from tests.views.test_whatsapp_webhook import numbers, post, text_message  # noqa: F401

OWNER = "owner@acme.example"
NAME, PHONE, EMAIL = "Zaheera Quintanilla", "+917000412358", "zaheera.q@example.com"
BODY = "my order 4471 never arrived, call me"
INVITEE_EMAIL, INVITEE_FIRST, INVITEE_LAST = "ottoline.b@example.com", "Ottoline", "Brackenbury"
PERSONAL = [
    OWNER,
    NAME,
    "Zaheera",
    "Quintanilla",
    PHONE,
    PHONE[1:],  # the WhatsApp id
    PHONE[3:],  # the national number
    EMAIL,
    BODY,
    INVITEE_EMAIL,
    INVITEE_FIRST,
    INVITEE_LAST,
]


@pytest.fixture
def json_log(app) -> Iterator[io.StringIO]:
    """The JSON handler, writing to a buffer, for the duration of the test.

    The suite's session fixture runs the migrations in this process, and Alembic's
    logging config (migrations/alembic.ini) disables every logger that existed before
    and sets the root to WARN; a worker or web process never does that, so both are
    undone here (and restored after), or the run would log nothing to check.
    """
    root = logging.getLogger()
    level = root.level
    loggers = [
        lg for lg in logging.Logger.manager.loggerDict.values() if isinstance(lg, logging.Logger)
    ]
    disabled = [lg for lg in loggers if lg.disabled]
    for lg in disabled:
        lg.disabled = False
    buffer = io.StringIO()
    handler = configure_logging(app, fmt="json", stream=buffer)
    # The suite's SMTP server (aiosmtpd, logger "mail.log") runs in this process and logs
    # each recipient; it stands for the mail provider, not for the product.
    handler.addFilter(lambda record: not record.name.startswith("mail.log"))
    try:
        yield buffer
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
        app.extensions["woffice_logging"] = {"format": log_format(app)}
        for lg in disabled:
            lg.disabled = True


def _scripted_run(client, login, csrf_token, run_jobs, tenant) -> list[str]:
    """The sequence; returns the X-Request-ID of every response."""
    ids = []

    def track(response):
        ids.append(response.headers["X-Request-ID"])
        return response

    assert track(login(OWNER)).status_code == 302
    token = csrf_token("/contacts/add")
    added = client.post(
        "/contacts/add",
        data={
            "display_name": NAME,
            "phone": "070004 12358",
            "email": EMAIL,
            "notes": "",
            "csrf_token": token,
        },
    )
    assert track(added).status_code == 302
    # What inviting a teammate enqueues (app/views/team.py): the rendered email.
    invitation = message_payload(
        to=INVITEE_EMAIL, subject="Join us", body=f"Hello {INVITEE_FIRST} {INVITEE_LAST}"
    )
    enqueue("mail", send_email, invitation)
    clear_tenant_cache()
    message = text_message("wamid.LOGTEST1", BODY, wa_id=PHONE[1:], name=NAME)
    assert track(post(client, message)).status_code == 200
    get_queue("default").enqueue(fail_on_purpose, PHONE)
    get_queue("default").enqueue(fail_in_job, PHONE, tenant_id=tenant.id)
    run_jobs()
    assert get_queue("default").failed_job_registry.count == 2
    assert track(client.get("/contacts/list/")).status_code == 200
    return ids


def test_a_scripted_run_logs_json_lines_with_ids_and_no_personal_data(
    app,
    client,
    login,
    csrf_token,
    run_jobs,
    numbers,  # noqa: F811 - the webhook tests' fixture
    mailbox,
    user_by_email,
    tenant_a,
    json_log,
):
    request_ids = _scripted_run(client, login, csrf_token, run_jobs, tenant_a)
    assert mailbox.to(INVITEE_EMAIL)  # the mail job ran
    text = json_log.getvalue()
    lines = [json.loads(line) for line in text.splitlines()]  # every line is one JSON object

    assert len(lines) >= 10
    for line in lines:
        assert set(line) >= {"time", "level", "logger", "message", *CONTEXT_FIELDS}, line
    for value in PERSONAL:
        assert value not in text, f"{value!r} is in the logs"

    access = [line for line in lines if line["logger"] == "woffice.access"]
    access_ids = [line["request_id"] for line in access]
    assert all(access_ids) and len(set(access_ids)) == len(access_ids)  # one id per request
    assert set(request_ids) <= set(access_ids)  # the id each response echoed
    # Once signed in (the login request itself starts anonymous, hence no tenant yet).
    contacts = [line for line in access if " /contacts/" in line["message"]]
    assert len(contacts) == 3  # the add form, its post, the list
    owner_id = user_by_email(OWNER).id
    assert {(line["user_id"], line["tenant_id"]) for line in contacts} == {(owner_id, tenant_a.id)}
    assert any(line["message"].startswith("POST /contacts/add 302 ") for line in access)

    # RQ's job descriptions are cut to the function name.
    worker = [line for line in lines if line["logger"] == "rq.worker"]
    assert any("tests.ops._jobs.fail_on_purpose(...)" in line["message"] for line in worker)
    # Inside the job decorator, lines carry the RQ job id and the job's tenant.
    failed = [line for line in lines if line["message"] == "job fail_in_job failed"]
    assert len(failed) == 1 and failed[0]["job_id"] and failed[0]["tenant_id"] == tenant_a.id
    assert "RuntimeError: the wrapped job failed on purpose" in failed[0]["exc"]


def test_json_is_the_production_default_and_text_elsewhere(app, monkeypatch):
    monkeypatch.delenv("LOG_FORMAT", raising=False)
    monkeypatch.setitem(app.config, "ENV_NAME", "production")
    assert log_format(app) == "json"
    monkeypatch.setitem(app.config, "ENV_NAME", "testing")
    assert log_format(app) == "text"
    monkeypatch.setenv("LOG_FORMAT", "JSON")
    assert log_format(app) == "json"
    monkeypatch.setenv("LOG_FORMAT", "yaml")
    with pytest.raises(ValueError, match="json or text"):
        log_format(app)
