"""The public privacy request form (P21, P22): a request exists only once the code
emailed to the requester is confirmed; rate-limited; no account and no external asset.
"""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from app.extensions import db
from app.models import AuditEvent
from app.models.contact import Contact
from app.models.mixins import utcnow
from app.models.privacy import (
    PrivacyRequest,
    PrivacySubmission,
    RequestChannel,
    RequestStatus,
    SubjectKind,
)
from app.services import business_days, privacy, privacy_submissions
from app.services.identity import hash_identifier
from app.views._format import ist

FORM = "/privacy-request"
CONFIRM = re.compile(r"/privacy-request/confirm/([A-Za-z0-9_-]+)$")


def request_count() -> int:
    return db.session.scalar(select(func.count(PrivacyRequest.id)))


def submission_count() -> int:
    return db.session.scalar(select(func.count(PrivacySubmission.id)))


def form_data(csrf: str, **overrides: str) -> dict[str, str]:
    data = {
        "csrf_token": csrf,
        "request_type": "access",
        "who": "user",
        "business": "",
        "name": "Rohan Mehta",
        "email": "owner@acme.example",
        "phone": "",
        "details": "Please send me a copy of the personal data you hold about me.",
    }
    data.update(overrides)
    return data


def submit(client, csrf_token, **overrides: str):
    return client.post(FORM, data=form_data(csrf_token(FORM), **overrides))


def submit_ok(client, csrf_token, **overrides: str) -> str:
    """Submit the form; return the submission's token."""
    response = submit(client, csrf_token, **overrides)
    assert response.status_code == 302, response.get_data(as_text=True)
    match = CONFIRM.search(response.headers["Location"])
    assert match, response.headers["Location"]
    return match.group(1)


def code_for(mailbox, run_jobs, email: str) -> str:
    run_jobs("mail")
    message = mailbox.last_to(email)
    match = re.search(r"^\s+(\d{6})\s*$", mailbox.text(message), re.M)
    assert match, mailbox.text(message)
    return match.group(1)


def wrong(code: str) -> str:
    return f"{(int(code) + 1) % 10**6:06d}"


def post_code(client, csrf_token, token: str, code: str):
    url = f"/privacy-request/confirm/{token}"
    # Any form page gives the session's token (the code page redirects once confirmed).
    return client.post(url, data={"csrf_token": csrf_token(FORM), "code": code})


def submission(token: str) -> PrivacySubmission:
    return db.session.scalars(
        select(PrivacySubmission).where(PrivacySubmission.token == token)
    ).one()


def audit_actions(prefix: str = "privacy_submission.") -> list[AuditEvent]:
    return list(
        db.session.scalars(
            select(AuditEvent).where(AuditEvent.action.startswith(prefix)).order_by(AuditEvent.id)
        )
    )


# ---------------------------------------------------------------------- journey


def test_public_form_journey_opens_one_request_after_the_code(
    client, csrf_token, mailbox, run_jobs, user_by_email, tenant_a
):
    page = client.get(FORM)
    assert page.status_code == 200
    assert 'name="csrf_token"' in page.get_data(as_text=True)
    before = request_count()
    token = submit_ok(client, csrf_token)

    # No request exists until the code is confirmed; the code is stored only hashed.
    assert request_count() == before
    code = code_for(mailbox, run_jobs, "owner@acme.example")
    row = submission(token)
    assert row.code_hash != code and code not in row.code_hash
    assert code not in str(row.payload)
    assert row.expires_at - row.created_at == timedelta(minutes=30)
    assert row.client_ip_hash == hash_identifier("127.0.0.1")

    # A wrong code is refused and counted.
    refused = post_code(client, csrf_token, token, wrong(code))
    assert refused.status_code == 200
    assert "That code is wrong. 4 attempts left." in refused.get_data(as_text=True)
    assert submission(token).attempts == 1
    assert request_count() == before

    # The right code opens exactly one request; the clock starts at confirmation.
    started = utcnow().replace(microsecond=0)
    confirmed = post_code(client, csrf_token, token, code)
    assert confirmed.status_code == 302
    assert confirmed.headers["Location"].endswith(f"/privacy-request/done/{token}")
    assert request_count() == before + 1
    req = db.session.scalars(select(PrivacyRequest).order_by(PrivacyRequest.id.desc())).first()
    assert req.status == RequestStatus.received
    assert req.channel == RequestChannel.public_form
    assert req.requester_email == "owner@acme.example"
    assert req.requester_name == "Rohan Mehta"
    assert req.subject_kind == SubjectKind.user
    assert req.subject_user_id == user_by_email("owner@acme.example").id
    assert req.tenant_id == tenant_a.id
    assert req.received_at >= started
    assert req.due_at == business_days.deadline(
        req.received_at, extra=privacy.compliance_holidays()
    )
    assert "copy of the personal data" in req.details
    assert submission(token).confirmed_at is not None
    assert submission(token).payload == {"request_id": req.id}

    done = client.get(confirmed.headers["Location"]).get_data(as_text=True)
    assert f"PR-{req.id:06d}" in done
    assert ist(req.due_at) in done  # e.g. "27 Nov 2026, 19:00 IST"
    assert ist(req.due_at).endswith("19:00 IST")  # the end of the business day

    # The requester gets the reference by email too.
    run_jobs("mail")
    receipt = mailbox.last_to("owner@acme.example")
    assert f"PR-{req.id:06d}" in str(receipt["Subject"])

    # A second confirmation of the same token opens nothing.
    again = post_code(client, csrf_token, token, code)
    assert again.status_code == 410
    assert "already confirmed" in again.get_data(as_text=True)
    assert f"PR-{req.id:06d}" in again.get_data(as_text=True)
    assert request_count() == before + 1

    # Audited with hashed identifiers, never the email or the details.
    events = audit_actions()
    assert [e.action for e in events] == [
        "privacy_submission.submitted",
        "privacy_submission.code_failed",
        "privacy_submission.confirmed",
    ]
    for event in events:
        assert event.details["email_hash"] == hash_identifier("owner@acme.example")
        assert "owner@acme.example" not in str(event.details)
        assert "personal data" not in str(event.details)


def test_code_page_requires_a_code(client, csrf_token, mailbox, run_jobs):
    token = submit_ok(client, csrf_token)
    response = post_code(client, csrf_token, token, "")
    assert response.status_code == 200
    assert "Enter the 6-digit code" in response.get_data(as_text=True)
    assert submission(token).attempts == 0  # a malformed code is not an attempt
    assert client.get("/privacy-request/confirm/no-such-token").status_code == 404


def test_expired_code_is_refused(client, csrf_token, mailbox, run_jobs):
    before = request_count()
    token = submit_ok(client, csrf_token)
    code = code_for(mailbox, run_jobs, "owner@acme.example")
    row = submission(token)
    row.expires_at = utcnow() - timedelta(minutes=1)
    db.session.commit()
    response = post_code(client, csrf_token, token, code)
    assert response.status_code == 410
    assert "This code expired at" in response.get_data(as_text=True)
    assert request_count() == before


def test_five_wrong_codes_close_the_submission(client, csrf_token, mailbox, run_jobs):
    before = request_count()
    token = submit_ok(client, csrf_token)
    code = code_for(mailbox, run_jobs, "owner@acme.example")
    for left in (4, 3, 2, 1):
        page = post_code(client, csrf_token, token, wrong(code)).get_data(as_text=True)
        assert f"{left} attempt" in page
    last = post_code(client, csrf_token, token, wrong(code))
    assert last.status_code == 410
    assert "last attempt" in last.get_data(as_text=True)
    # Even the right code no longer works.
    dead = post_code(client, csrf_token, token, code)
    assert dead.status_code == 410
    assert "Too many wrong codes" in dead.get_data(as_text=True)
    assert submission(token).attempts == 5
    assert request_count() == before
    assert len(audit_actions("privacy_submission.code_failed")) == 5


# ------------------------------------------------------------------ rate limits


def test_fourth_submission_from_one_email_within_an_hour_is_refused(
    client, csrf_token, mailbox, run_jobs
):
    for _ in range(3):
        submit_ok(client, csrf_token, email="someone@example.org")
    response = submit(client, csrf_token, email="Someone@EXAMPLE.org")
    assert response.status_code == 429
    page = response.get_data(as_text=True)
    assert "Please try again in 60 minutes" in page
    assert int(response.headers["Retry-After"]) > 3500
    assert submission_count() == 3
    run_jobs("mail")
    assert len(mailbox.to("someone@example.org")) == 3  # no email for the refused one
    limited = audit_actions("privacy_submission.rate_limited")
    assert len(limited) == 1
    assert limited[0].details == {
        "email_hash": hash_identifier("someone@example.org"),
        "limit": "this email address",
    }
    # Another address is not affected; an hour later the email may submit again.
    submit_ok(client, csrf_token, email="other@example.org")
    for row in db.session.scalars(select(PrivacySubmission)):
        row.created_at -= timedelta(minutes=61)
    db.session.commit()
    submit_ok(client, csrf_token, email="someone@example.org")


def test_eleventh_submission_from_one_address_within_an_hour_is_refused(
    client, csrf_token, mailbox
):
    client.environ_base["REMOTE_ADDR"] = "203.0.113.7"
    for n in range(10):
        submit_ok(client, csrf_token, email=f"person{n}@example.org")
    response = submit(client, csrf_token, email="person10@example.org")
    assert response.status_code == 429
    assert "your network address" in response.get_data(as_text=True)
    client.environ_base["REMOTE_ADDR"] = "203.0.113.8"
    submit_ok(client, csrf_token, email="person10@example.org")


# ------------------------------------------------------------ validation, CSRF


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"details": ""}, "Describe your request."),
        ({"details": "   "}, "Describe your request."),
        ({"details": "x" * 5001}, "At most 5000 characters (you wrote 5001)."),
        ({"email": "not-an-email"}, "Invalid email address"),
        ({"email": ""}, "Enter your email address."),
        ({"request_type": "erase-everything"}, "Choose what you are asking for."),
        ({"who": ""}, "Tell us who you are."),
        ({"who": "contact", "business": ""}, "Name the business"),
        ({"phone": "12"}, "is not a valid phone number"),
    ],
)
def test_form_errors_are_shown(client, csrf_token, mailbox, overrides, message):
    response = submit(client, csrf_token, **overrides)
    assert response.status_code == 200
    assert message in response.get_data(as_text=True)
    assert submission_count() == 0


def test_csrf_token_is_required(client):
    data = form_data("")
    del data["csrf_token"]
    assert client.post(FORM, data=data).status_code == 400
    assert submission_count() == 0


def test_pages_use_no_external_resources(client, csrf_token, mailbox, run_jobs):
    token = submit_ok(client, csrf_token)
    code = code_for(mailbox, run_jobs, "owner@acme.example")
    pages = {url: client.get(url) for url in (FORM, f"/privacy-request/confirm/{token}")}
    post_code(client, csrf_token, token, code)
    for url in (f"/privacy-request/done/{token}", "/privacy-policy"):
        pages[url] = client.get(url)
    for url, response in pages.items():
        assert response.status_code == 200, url
        html = response.get_data(as_text=True)
        external = [
            u
            for u in re.findall(r"https?://[^\s\"'<>)]+", html)
            if not re.match(r"https?://(127\.0\.0\.1|localhost)[:/]", u)
        ]
        assert external == [], (url, external)


def test_policy_page_and_links(client):
    policy = client.get("/privacy-policy").get_data(as_text=True)
    assert "Privacy Policy" in policy
    assert 'href="/privacy-request"' in policy
    assert 'href="/privacy-policy"' in client.get(FORM).get_data(as_text=True)


# --------------------------------------------------------------- subject match


def test_contact_is_matched_by_phone_in_the_named_business(
    client, csrf_token, mailbox, run_jobs, tenant_a
):
    contact = db.session.scalars(
        select(Contact)
        .where(Contact.tenant_id == tenant_a.id, Contact.phone.is_not(None))
        .order_by(Contact.id)
        .execution_options(skip_tenant_scope=True)
    ).first()
    token = submit_ok(
        client,
        csrf_token,
        who="contact",
        business="Acme Traders",
        email="customer@example.org",
        phone=contact.phone,
        request_type="deletion",
    )
    post_code(client, csrf_token, token, code_for(mailbox, run_jobs, "customer@example.org"))
    req = db.session.get(PrivacyRequest, submission(token).payload["request_id"])
    assert req.subject_kind == SubjectKind.contact
    assert req.subject_contact_id == contact.id
    assert req.tenant_id == tenant_a.id
    assert f"Phone: {contact.phone}" in req.details


@pytest.mark.parametrize(
    ("email", "matched"),
    [("accounts@acme.example", True), ("owner@acme.example", True), ("x@example.org", False)],
)
def test_closure_names_the_tenant_only_for_its_own_email(
    client, csrf_token, mailbox, run_jobs, tenant_a, email, matched
):
    token = submit_ok(
        client, csrf_token, who="closure", business="acme", email=email, request_type="deletion"
    )
    post_code(client, csrf_token, token, code_for(mailbox, run_jobs, email))
    req = db.session.get(PrivacyRequest, submission(token).payload["request_id"])
    assert req.subject_kind == SubjectKind.tenant
    assert req.tenant_id == tenant_a.id
    if matched:
        assert req.subject_label == f"Tenant #{tenant_a.id} (acme)"
    else:
        assert req.subject_label == "Unidentified tenant of acme"


def test_unknown_user_email_opens_an_unidentified_request(client, csrf_token, mailbox, run_jobs):
    token = submit_ok(client, csrf_token, email="nobody@example.org")
    post_code(client, csrf_token, token, code_for(mailbox, run_jobs, "nobody@example.org"))
    req = db.session.get(PrivacyRequest, submission(token).payload["request_id"])
    assert req.subject_user_id is None and req.tenant_id is None
    assert req.subject_label == "Unidentified user"
    assert req.status == RequestStatus.received


def test_old_submissions_are_purged(client, csrf_token, mailbox):
    old, fresh = submit_ok(client, csrf_token), submit_ok(client, csrf_token)
    submission(old).created_at -= timedelta(days=2)
    db.session.flush()
    assert privacy_submissions.purge_submissions() == 1
    assert [s.token for s in db.session.scalars(select(PrivacySubmission))] == [fresh]
