"""Compliance > Privacy requests (issue 7, P18-P21): the worklist and its colours, who may
see it, logging an emailed request, the workflow buttons, the account page's in-app
request, an objection that keeps a contact out of campaigns, and the daily digest."""

from __future__ import annotations

import re
from datetime import datetime, timedelta

import pytest
from flask_security import hash_password
from sqlalchemy import select

from app.extensions import db
from app.jobs import redis_connection
from app.jobs.privacy import LOCK_KEY, send_privacy_digest
from app.models.campaign import CampaignRecipient, SkipReason
from app.models.contact import Contact
from app.models.mixins import utcnow
from app.models.privacy import (
    PrivacyRequest,
    RequestChannel,
    RequestStatus,
    RequestType,
    SubjectKind,
)
from app.models.user import AppUser, Role
from app.services import campaigns, privacy, privacy_intake
from app.services.demo_privacy import received_for
from app.tenancy import tenant_scope
from tests.services.test_campaigns_service import make_campaign, make_template

COMPLIANCE = "compliance@xigmapro.example"
LIST = "/privacy-requests/list/"


@pytest.fixture
def compliance(user_by_email) -> AppUser:
    return user_by_email(COMPLIANCE)


@pytest.fixture
def checker(app) -> AppUser:
    """A second Compliance user (four eyes)."""
    role = db.session.scalars(select(Role).where(Role.name == "Compliance")).one()
    user = AppUser(
        email="checker@xigmapro.example",
        username="checker@xigmapro.example",
        first_name="Chitra",
        last_name="Checker",
        active=True,
        password=hash_password("checker-pass-2026"),
    )
    user.roles = [role]
    db.session.add(user)
    db.session.commit()
    return user


def make_request(subject, kind=SubjectKind.user, type_=RequestType.access, **kw):
    req = privacy.open_request(
        request_type=type_,
        subject_kind=kind,
        subject=subject,
        channel=RequestChannel.email,
        requester_email=kw.pop("requester_email", "requester@example.com"),
        **kw,
    )
    db.session.commit()
    return req


def contact_of(tenant, phone: str) -> Contact:
    return privacy_intake.find_contact(tenant, phone)


def post_action(client, csrf_token, req_id: int, action: str, **data):
    token = csrf_token(f"/privacy-requests/show/{req_id}")
    return client.post(
        f"/privacy-requests/{req_id}/act",
        data={"csrf_token": token, "action": action, **data},
        follow_redirects=True,
    )


def row_ids(page: str) -> list[int]:
    return [int(i) for i in re.findall(r'class="privacy-row" data-id="(\d+)"', page)]


# ------------------------------------------------------------------------ access


@pytest.mark.parametrize(
    "email", ["owner@acme.example", "agent@acme.example", "billing@xigmapro.example"]
)
def test_only_compliance_sees_the_worklist(client, login, user_by_email, email):
    req = make_request(user_by_email("agent@acme.example"))
    login(email)
    assert client.get(LIST).status_code == 403
    assert client.get(f"/privacy-requests/show/{req.id}").status_code == 403
    assert client.get("/privacy-requests/log").status_code == 403
    assert client.get("/compliance-holidays/list/").status_code == 403


def test_compliance_and_admin_open_the_worklist(client, login):
    for email in (COMPLIANCE, "admin@xigmapro.example"):
        login(email)
        page = client.get(LIST)
        assert page.status_code == 200
        assert "Privacy requests" in page.get_data(as_text=True)
        login.logout()


# ---------------------------------------------------------------------- worklist


def test_worklist_colours_and_deadline_order(client, login, user_by_email, compliance):
    agent = user_by_email("agent@bharatfoods.example")
    now = utcnow()
    on_track = make_request(agent, received_at=now - timedelta(minutes=5))
    overdue = make_request(agent, received_at=received_for("overdue", now))
    due_soon = make_request(agent, received_at=received_for("due_soon", now))
    privacy.assign(due_soon, compliance, compliance)
    db.session.commit()
    login(COMPLIANCE)
    page = client.get(LIST).get_data(as_text=True)
    ids = [i for i in row_ids(page) if i in {on_track.id, overdue.id, due_soon.id}]
    assert ids == [overdue.id, due_soon.id, on_track.id]

    def row(req):
        return re.search(rf'data-id="{req.id}".*?</tr>', page, re.S).group(0)

    assert "label-danger" in row(overdue) and "overdue by" in row(overdue)
    assert "label-warning" in row(due_soon)
    assert re.search(r"(\d business days? left|due today)", row(due_soon))
    assert "label-success" in row(on_track) and "business days left" in row(on_track)

    mine = row_ids(client.get(LIST + "?show=mine").get_data(as_text=True))
    assert due_soon.id in mine and overdue.id not in mine
    red = row_ids(client.get(LIST + "?show=overdue").get_data(as_text=True))
    assert overdue.id in red and due_soon.id not in red and on_track.id not in red
    amber = row_ids(client.get(LIST + "?show=due_soon").get_data(as_text=True))
    assert due_soon.id in amber and overdue.id not in amber
    typed = row_ids(client.get(LIST + "?type=deletion").get_data(as_text=True))
    assert not {on_track.id, overdue.id, due_soon.id} & set(typed)


def test_closed_filter_lists_completed_and_rejected(client, login, csrf_token, user_by_email):
    req = make_request(user_by_email("agent@acme.example"))
    login(COMPLIANCE)
    page = post_action(client, csrf_token, req.id, "reject", reason="Duplicate of PR-1.")
    assert "Request rejected." in page.get_data(as_text=True)
    assert req.id not in row_ids(client.get(LIST).get_data(as_text=True))
    assert req.id in row_ids(client.get(LIST + "?show=closed").get_data(as_text=True))


# ------------------------------------------------------------------ log by email


def test_log_a_request_received_by_email(client, login, csrf_token, tenant_a, compliance):
    login(COMPLIANCE)
    token = csrf_token("/privacy-requests/log")
    response = client.post(
        "/privacy-requests/log",
        data={
            "csrf_token": token,
            "request_type": "deletion",
            "subject_kind": "contact",
            "tenant": str(tenant_a.id),
            "subject_phone": "98765 43210",
            "requester_email": "ravi@example.com",
            "requester_name": "Ravi Kumar",
            "received_at": "2026-02-04T23:59",
            "details": "Please delete my data.",
        },
    )
    assert response.status_code == 302
    req = db.session.scalars(
        select(PrivacyRequest).where(PrivacyRequest.requester_email == "ravi@example.com")
    ).one()
    assert req.channel == RequestChannel.email
    assert req.status == RequestStatus.identity_pending  # identity box not ticked
    assert req.received_at == datetime(2026, 2, 4, 18, 29)  # 23:59 IST in UTC
    assert req.original_due_at == datetime(2026, 2, 12, 13, 30)  # 19:00 IST, 7 days on
    assert req.subject_contact_id == contact_of(tenant_a, "+919876543210").id
    assert req.created_by_id == compliance.id
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "12 Feb 2026, 19:00 IST" in page
    assert f'id="privacy-subject">Contact #{req.subject_contact_id} of' in page


def test_log_explains_an_unknown_subject_without_a_500(client, login, csrf_token, tenant_b):
    login(COMPLIANCE)
    token = csrf_token("/privacy-requests/log")
    response = client.post(
        "/privacy-requests/log",
        data={
            "csrf_token": token,
            "request_type": "access",
            "subject_kind": "contact",
            "tenant": str(tenant_b.id),
            "subject_phone": "+91 98765 43210",  # an Acme contact, not Bharat Foods'
            "requester_email": "x@example.com",
            "received_at": "2026-02-04T10:00",
        },
    )
    assert response.status_code == 200
    assert "bharatfoods has no contact with that number" in response.get_data(as_text=True)
    future = (datetime.now() + timedelta(days=3)).strftime("%Y-%m-%dT%H:%M")
    response = client.post(
        "/privacy-requests/log",
        data={
            "csrf_token": token,
            "request_type": "access",
            "subject_kind": "tenant",
            "tenant": str(tenant_b.id),
            "requester_email": "x@example.com",
            "received_at": future,
        },
    )
    assert response.status_code == 200
    assert "cannot be in the future" in response.get_data(as_text=True)


# ----------------------------------------------------------------------- actions


def test_actions_confirm_assign_start_extend_and_errors_as_flashes(
    client, login, csrf_token, user_by_email, compliance
):
    req = make_request(user_by_email("agent@acme.example"), identity_verified=False)
    original = req.due_at
    login(COMPLIANCE)
    assert "Start work" not in client.get(f"/privacy-requests/show/{req.id}").get_data(as_text=True)
    post_action(client, csrf_token, req.id, "confirm_identity")
    billing = user_by_email("billing@xigmapro.example")
    page = post_action(client, csrf_token, req.id, "assign", assignee_id=str(billing.id))
    assert "active Compliance user" in page.get_data(as_text=True)
    post_action(client, csrf_token, req.id, "assign", assignee_id=str(compliance.id))
    post_action(client, csrf_token, req.id, "start")
    page = post_action(client, csrf_token, req.id, "extend", days="3", reason="")
    assert "needs a reason" in page.get_data(as_text=True)
    page = post_action(client, csrf_token, req.id, "extend", days="3", reason="Large export")
    text = page.get_data(as_text=True)
    assert "Deadline extended" in text and "Large export" in text
    page = post_action(client, csrf_token, req.id, "reject", reason=" ")
    assert "needs a written reason" in page.get_data(as_text=True)
    page = post_action(client, csrf_token, req.id, "approve")
    assert page.status_code == 200  # a refused move is a flash, never a 500

    db.session.refresh(req)
    assert req.status == RequestStatus.in_progress
    assert req.assignee_id == compliance.id
    assert req.original_due_at == original and req.due_at > original
    page = client.get(f"/privacy-requests/show/{req.id}").get_data(as_text=True)
    original_dd = re.search(r'id="privacy-original-due">([^<]+)<', page).group(1)
    current_dd = re.search(r'id="privacy-due">([^<]+)', page).group(1).strip()
    assert original_dd != current_dd
    assert "identity pending → received" in page and "received → in progress" in page


def test_an_action_needs_the_csrf_token(client, login, user_by_email):
    req = make_request(user_by_email("agent@acme.example"))
    login(COMPLIANCE)
    response = client.post(f"/privacy-requests/{req.id}/act", data={"action": "start"})
    assert response.status_code == 400
    db.session.refresh(req)
    assert req.status == RequestStatus.received


def test_deletion_four_eyes_through_the_screens(
    client, login, csrf_token, tenant_b, compliance, checker, run_jobs
):
    contact = contact_of(tenant_b, "+91 63600 77777")
    contact_id = contact.id
    req = make_request(contact, SubjectKind.contact, RequestType.deletion)
    login(COMPLIANCE)
    page = post_action(client, csrf_token, req.id, "prepare").get_data(as_text=True)
    assert "another Compliance user must approve" in page
    assert 'id="privacy-deletion-plan"' in page
    assert "four eyes" in page  # the preparer gets no approve button
    page = post_action(client, csrf_token, req.id, "approve").get_data(as_text=True)
    assert "Four eyes" in page
    db.session.refresh(req)
    assert req.status == RequestStatus.awaiting_approval and req.approved_by_id is None

    login.logout()
    login(checker.email, "checker-pass-2026")
    page = post_action(client, csrf_token, req.id, "approve").get_data(as_text=True)
    assert "Deletion approved" in page
    run_jobs("privacy")
    db.session.expire_all()
    req = db.session.get(PrivacyRequest, req.id)
    assert req.approved_by_id == checker.id and req.prepared_by_id == compliance.id
    assert req.status == RequestStatus.completed
    assert db.session.get(Contact, contact_id) is None
    page = client.get(f"/privacy-requests/show/{req.id}").get_data(as_text=True)
    assert "deletion-certificate.pdf" in page
    assert 'class="privacy-artifact-link"' in page


def test_correction_records_what_where_and_the_audit_events(
    client, login, csrf_token, tenant_a, compliance
):
    contact = contact_of(tenant_a, "+91 98765 43210")
    req = make_request(contact, SubjectKind.contact, RequestType.correction)
    privacy.start(req, compliance)
    with tenant_scope(tenant_a.id):
        contact.display_name = "Ravi Kumaar"
        db.session.commit()
    login(COMPLIANCE)
    page = client.get(f"/privacy-requests/show/{req.id}").get_data(as_text=True)
    event_ids = re.findall(r'name="event_ids" value="(\d+)"', page)
    assert event_ids, "the contact's edit is offered as an audit event"
    page = post_action(
        client,
        csrf_token,
        req.id,
        "correct",
        where=f"Contact #{contact.id}",
        fields="display_name",
        event_ids=event_ids[0],
    ).get_data(as_text=True)
    assert "Correction recorded" in page
    assert f'href="/audit/show/{event_ids[0]}"' in page
    db.session.refresh(req)
    assert req.status == RequestStatus.completed
    assert "display_name" in req.resolution and f"#{event_ids[0]}" in req.resolution


# --------------------------------------------------------------------- objection


def test_an_objection_stops_campaigns_reaching_the_contact(
    client, login, csrf_token, tenant_a, compliance
):
    contact = contact_of(tenant_a, "+91 98765 43210")  # Ravi Kumar, opted in
    assert contact.messageable
    req = make_request(contact, SubjectKind.contact, RequestType.objection)
    privacy.start(req, compliance)
    db.session.commit()
    login(COMPLIANCE)
    page = post_action(client, csrf_token, req.id, "apply_objection").get_data(as_text=True)
    assert "Marketing campaigns stopped" in page
    assert "objects to marketing" in page  # the flag, shown on the request's subject
    db.session.refresh(contact)
    assert contact.marketing_objection

    with tenant_scope(tenant_a.id):
        template = make_template(tenant_a.id, name="privacy_objection_check")
        campaign = make_campaign(tenant_a.id, template)
        campaigns.launch(db.session, campaign)
        recipient = db.session.scalars(
            select(CampaignRecipient).where(
                CampaignRecipient.campaign_id == campaign.id,
                CampaignRecipient.contact_id == contact.id,
            )
        ).one()
    assert recipient.skip_reason == SkipReason.objecting


def test_a_user_objection_leaves_them_out_of_active_users(
    client, login, csrf_token, user_by_email, tenant_a, compliance
):
    from app.services import analytics

    owner = user_by_email("owner@acme.example")
    owner.current_login_at = utcnow()
    db.session.commit()
    span = analytics.parse_range("7", analytics.today_ist())
    before, _users = analytics.active_users(db.session, tenant_a.id, span)
    req = make_request(owner, type_=RequestType.objection)
    privacy.start(req, compliance)
    db.session.commit()
    login(COMPLIANCE)
    post_action(client, csrf_token, req.id, "apply_objection")
    db.session.refresh(owner)
    assert owner.analytics_objection_at is not None
    after, _users = analytics.active_users(db.session, tenant_a.id, span)
    assert after == before - 1
    login.logout()
    login("owner@acme.example")  # the flag shows on the team screen and the account page
    page = client.get(f"/team/show/{owner.id}").get_data(as_text=True)
    assert "Objects to usage analytics since" in page
    assert 'id="analytics-objection"' in client.get("/account/").get_data(as_text=True)


# ---------------------------------------------------------------- account page


def test_in_app_request_from_the_account_page(client, login, csrf_token, user_by_email):
    agent = user_by_email("agent@acme.example")
    login("agent@acme.example")
    page = client.get("/account/").get_data(as_text=True)
    assert 'id="privacy-request-form"' in page
    assert "Close the account" not in page  # agents ask about themselves only
    token = csrf_token("/account/")
    response = client.post(
        "/account/privacy-request",
        data={"csrf_token": token, "request_type": "access", "about": "me", "details": "All"},
        follow_redirects=True,
    )
    text = response.get_data(as_text=True)
    assert "received; we answer by" in text
    req = db.session.scalars(
        select(PrivacyRequest).where(PrivacyRequest.created_by_id == agent.id)
    ).one()
    assert req.channel == RequestChannel.in_app
    assert req.status == RequestStatus.received  # signed in: identity verified
    assert req.requester_email == agent.email and req.subject_user_id == agent.id
    assert req.reference in text  # listed with its status and deadline
    refused = client.post(
        "/account/privacy-request",
        data={"csrf_token": token, "request_type": "deletion", "about": "account"},
    )
    assert refused.status_code == 200
    assert "Only a Tenant Admin" in refused.get_data(as_text=True)


def test_tenant_admin_requests_closure_and_files_for_a_contact(client, login, csrf_token, tenant_a):
    login("owner@acme.example")
    page = client.get("/account/").get_data(as_text=True)
    assert "Close the account" in page
    token = csrf_token("/account/")
    wrong = client.post(
        "/account/privacy-request",
        data={"csrf_token": token, "request_type": "access", "about": "account"},
    )
    assert "choose deletion" in wrong.get_data(as_text=True)
    client.post(
        "/account/privacy-request",
        data={"csrf_token": token, "request_type": "deletion", "about": "account"},
    )
    client.post(
        "/account/privacy-request",
        data={
            "csrf_token": token,
            "request_type": "objection",
            "about": "contact",
            "contact_phone": "+91 98123 45678",
        },
    )
    mine = db.session.scalars(
        select(PrivacyRequest)
        .where(PrivacyRequest.channel == RequestChannel.in_app)
        .where(PrivacyRequest.tenant_id == tenant_a.id)
        .order_by(PrivacyRequest.id)
    ).all()
    kinds = [(r.request_type, r.subject_kind) for r in mine[-2:]]
    assert kinds == [
        (RequestType.deletion, SubjectKind.tenant),
        (RequestType.objection, SubjectKind.contact),
    ]
    assert mine[-1].subject_contact_id == contact_of(tenant_a, "+919812345678").id


# ------------------------------------------------------------------ holidays


def test_compliance_adds_and_lists_a_holiday(client, login, csrf_token):
    login(COMPLIANCE)
    token = csrf_token("/compliance-holidays/add")
    response = client.post(
        "/compliance-holidays/add",
        data={"csrf_token": token, "day": "2031-02-06", "name": "Offsite"},
        follow_redirects=True,
    )
    assert response.status_code == 200
    assert "Offsite" in client.get("/compliance-holidays/list/").get_data(as_text=True)
    assert date_in(privacy.compliance_holidays(), "2031-02-06")
    sunday = client.post(
        "/compliance-holidays/add",
        data={"csrf_token": token, "day": "2031-02-09", "name": "Sunday"},
        follow_redirects=True,
    )
    assert sunday.status_code == 200
    assert "Sundays are never business days" in sunday.get_data(as_text=True)
    assert not date_in(privacy.compliance_holidays(), "2031-02-09")


def date_in(days, iso: str) -> bool:
    return any(d.isoformat() == iso for d in days)


# -------------------------------------------------------------------- digest


def test_daily_digest_emails_assignees_and_escalates_overdue(
    mailbox, run_jobs, user_by_email, compliance, checker
):
    agent = user_by_email("agent@bharatfoods.example")
    now = utcnow()
    overdue = make_request(agent, received_at=received_for("overdue", now))
    due_soon = make_request(agent, received_at=received_for("due_soon", now))
    quiet = make_request(agent, received_at=now - timedelta(minutes=1))
    for req in (overdue, due_soon, quiet):
        privacy.assign(req, compliance, compliance)
    db.session.commit()

    assert send_privacy_digest(not_before_hour=0)["emails"] >= 2
    run_jobs("mail")
    mine = [m for m in mailbox.to(COMPLIANCE) if "ESCALATION" not in str(m["Subject"])]
    assert len(mine) == 1
    body = mailbox.text(mine[0])
    assert overdue.reference in body and due_soon.reference in body
    assert quiet.reference not in body
    escalation = mailbox.last_to(checker.email)
    assert "ESCALATION" in str(escalation["Subject"])
    assert overdue.reference in mailbox.text(escalation)
    assert due_soon.reference not in mailbox.text(escalation)  # assigned, not overdue

    count = len(mailbox.messages)
    assert send_privacy_digest(not_before_hour=0) == {"emails": 0, "busy": 1}
    redis_connection().delete(LOCK_KEY)  # a later run: the day's record stops it
    assert send_privacy_digest(not_before_hour=0) == {"emails": 0}  # once per IST day
    run_jobs("mail")
    assert len(mailbox.messages) == count


def test_the_digest_waits_for_support_hours(mailbox):
    assert send_privacy_digest(not_before_hour=24) == {"emails": 0, "too_early": 1}


def test_access_request_builds_a_package_then_completes(
    client, login, csrf_token, user_by_email, run_jobs, mailbox
):
    agent = user_by_email("agent@acme.example")
    req = make_request(agent, requester_email=agent.email)
    login(COMPLIANCE)
    post_action(client, csrf_token, req.id, "start")
    page = post_action(client, csrf_token, req.id, "build_package").get_data(as_text=True)
    assert "The package is being built" in page
    run_jobs("privacy", "mail")
    page = client.get(f"/privacy-requests/show/{req.id}").get_data(as_text=True)
    assert 'data-kind="access_package"' in page
    assert req.reference in str(mailbox.last_to(agent.email)["Subject"])
    page = post_action(client, csrf_token, req.id, "complete", reason="Package sent").get_data(
        as_text=True
    )
    assert "Request completed." in page
    db.session.refresh(req)
    assert req.status == RequestStatus.completed and req.resolution == "Package sent"
