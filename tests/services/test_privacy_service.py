"""Privacy request workflow (issue 7, P18, P20, P21): statuses move only along the
allowed transitions, each move is audited with who and when, a rejection needs a
reason, an extension keeps the original deadline, and a deletion needs four eyes."""

from __future__ import annotations

from datetime import timedelta

import pytest
from flask_security import hash_password
from sqlalchemy import select

from app.extensions import db
from app.models.audit import AuditEvent
from app.models.contact import Contact
from app.models.mixins import utcnow
from app.models.privacy import (
    ComplianceHoliday,
    PrivacyRequest,
    RequestChannel,
    RequestStatus,
    RequestType,
    SubjectKind,
)
from app.models.user import AppUser, Role
from app.services import business_days, privacy, privacy_intake, privacy_resolutions
from app.services.exceptions import ValidationError
from app.services.privacy import PrivacyWorkflowError

S = RequestStatus


@pytest.fixture
def compliance(user_by_email) -> AppUser:
    return user_by_email("compliance@xigmapro.example")


@pytest.fixture
def second_compliance(app) -> AppUser:
    role = db.session.scalars(select(Role).where(Role.name == "Compliance")).one()
    user = AppUser(
        email="second-compliance@xigmapro.example",
        username="second-compliance@xigmapro.example",
        first_name="Second",
        last_name="Checker",
        active=True,
        password=hash_password("second-pass-2026"),
    )
    user.roles = [role]
    db.session.add(user)
    db.session.flush()
    return user


def open_for(subject, kind=SubjectKind.user, type_=RequestType.access, **kw) -> PrivacyRequest:
    return privacy.open_request(
        request_type=type_,
        subject_kind=kind,
        subject=subject,
        channel=kw.pop("channel", RequestChannel.email),
        requester_email=kw.pop("requester_email", "someone@example.com"),
        **kw,
    )


def events(req: PrivacyRequest, action: str | None = None) -> list[AuditEvent]:
    stmt = select(AuditEvent).where(
        AuditEvent.object_type == "privacy_request", AuditEvent.object_id == str(req.id)
    )
    if action:
        stmt = stmt.where(AuditEvent.action == action)
    return list(db.session.scalars(stmt.order_by(AuditEvent.id)))


def test_opening_sets_the_deadline_and_audits(user_by_email, compliance):
    owner = user_by_email("owner@acme.example")
    received = utcnow() - timedelta(hours=3)
    req = open_for(owner, received_at=received, created_by=compliance)
    assert req.status == S.received
    assert (
        req.due_at
        == req.original_due_at
        == business_days.deadline(received, extra=privacy.compliance_holidays())
    )
    assert req.subject_label == f"User #{owner.id} of acme"
    assert req.tenant_id == owner.tenant_id
    opened = events(req, "privacy_request.opened")
    assert len(opened) == 1 and opened[0].details["channel"] == "email"


def test_identity_pending_until_confirmed(user_by_email, compliance):
    req = open_for(user_by_email("agent@acme.example"), identity_verified=False)
    assert req.status == S.identity_pending
    with pytest.raises(PrivacyWorkflowError):
        privacy.start(req, compliance)
    privacy.confirm_identity(req, compliance)
    assert req.status == S.received


@pytest.mark.parametrize(
    ("start", "to", "allowed"),
    [
        (S.received, S.in_progress, True),
        (S.received, S.completed, False),
        (S.received, S.awaiting_approval, False),
        (S.in_progress, S.completed, True),
        (S.awaiting_approval, S.in_progress, True),
        (S.completed, S.in_progress, False),
        (S.rejected, S.received, False),
        (S.identity_pending, S.in_progress, False),
    ],
)
def test_transitions(user_by_email, compliance, start, to, allowed):
    req = open_for(user_by_email("agent@acme.example"))
    req.status = start
    if allowed:
        privacy.move(req, to, compliance)
        assert req.status == to
    else:
        with pytest.raises(PrivacyWorkflowError):
            privacy.move(req, to, compliance)
        assert req.status == start


def test_each_status_change_is_audited_with_who_and_when(user_by_email, compliance):
    req = open_for(user_by_email("agent@acme.example"))
    before = utcnow()
    privacy.start(req, compliance)
    privacy.complete(req, compliance, resolution="Sent the copy.")
    db.session.flush()
    moves = events(req, "privacy_request.status")
    assert [(e.details["before"], e.details["after"]) for e in moves] == [
        ("received", "in_progress"),
        ("in_progress", "completed"),
    ]
    assert all(e.details["actor_id"] == compliance.id for e in moves)
    assert all(e.occurred_at >= before - timedelta(seconds=1) for e in moves)
    assert req.completed_at is not None
    assert req.assignee_id == compliance.id  # starting it takes it


def test_a_rejection_needs_a_reason(user_by_email, compliance):
    req = open_for(user_by_email("agent@acme.example"))
    with pytest.raises(ValidationError, match="reason"):
        privacy.reject(req, "   ", compliance)
    assert req.status == S.received
    privacy.reject(req, "Could not verify the requester.", compliance)
    assert req.status == S.rejected
    assert req.rejection_reason == "Could not verify the requester."
    with pytest.raises(PrivacyWorkflowError):
        privacy.start(req, compliance)


def test_an_extension_needs_a_reason_and_keeps_the_original(user_by_email, compliance):
    req = open_for(user_by_email("agent@acme.example"))
    original = req.due_at
    with pytest.raises(ValidationError):
        privacy.extend(req, 5, "", compliance)
    privacy.extend(req, 5, "Data spread over several systems.", compliance)
    assert req.original_due_at == original
    assert req.due_at == business_days.extend(original, 5, privacy.compliance_holidays())
    assert req.extended_by_id == compliance.id
    event = events(req, "privacy_request.extended")[-1]
    assert event.details["days"] == 5 and event.details["actor_id"] == compliance.id


def test_a_compliance_holiday_moves_new_deadlines(user_by_email, compliance):
    received = utcnow() - timedelta(minutes=5)
    plain = business_days.deadline(received, extra=privacy.compliance_holidays())
    first = business_days.add_business_days(business_days.ist_date(received), 1)
    db.session.add(ComplianceHoliday(day=first, name="Team offsite"))
    db.session.flush()
    req = open_for(user_by_email("agent@acme.example"), received_at=received)
    assert req.due_at > plain


def test_four_eyes_for_deletion(tenant_a, compliance, second_compliance):
    contact = db.session.scalars(select(Contact).where(Contact.tenant_id == tenant_a.id)).first()
    req = open_for(contact, SubjectKind.contact, RequestType.deletion)
    privacy.start(req, compliance)
    with pytest.raises(PrivacyWorkflowError):
        privacy.complete(req, compliance)  # not before approval
    privacy.submit_for_approval(req, compliance, {"delete": []})
    assert req.status == S.awaiting_approval and req.prepared_by_id == compliance.id
    with pytest.raises(PrivacyWorkflowError, match="Four eyes"):
        privacy.approve(req, compliance)
    assert req.approved_by_id is None
    privacy.approve(req, second_compliance)
    assert req.approved_by_id == second_compliance.id
    approved = events(req, "privacy_request.approved")[-1]
    assert approved.details == {
        "actor_id": second_compliance.id,
        "prepared_by_id": compliance.id,
    }


def test_only_deletions_go_for_approval(user_by_email, compliance):
    req = open_for(user_by_email("agent@acme.example"))
    privacy.start(req, compliance)
    with pytest.raises(PrivacyWorkflowError):
        privacy.submit_for_approval(req, compliance, {})


def test_assignees_are_active_compliance_users(user_by_email, compliance):
    req = open_for(user_by_email("agent@acme.example"))
    with pytest.raises(ValidationError):
        privacy_intake.assign_compliance(
            req, user_by_email("billing@xigmapro.example").id, compliance
        )
    assert privacy_intake.assign_compliance(req, compliance.id, compliance) == compliance
    assert req.assignee_id == compliance.id
    assert privacy_intake.assign_compliance(req, "", compliance) is None
    assert req.assignee_id is None


def test_subject_lookups_are_tenant_scoped(tenant_a, tenant_b):
    user = privacy_intake.find_subject(SubjectKind.user, tenant_a, email="OWNER@acme.example")
    assert user.email == "owner@acme.example"
    with pytest.raises(ValidationError):
        privacy_intake.find_subject(SubjectKind.user, tenant_b, email="owner@acme.example")
    contact = privacy_intake.find_subject(SubjectKind.contact, tenant_a, phone="098765 43210")
    assert contact.tenant_id == tenant_a.id
    with pytest.raises(ValidationError):
        privacy_intake.find_subject(SubjectKind.contact, tenant_b, phone="+91 98765 43210")
    assert privacy_intake.find_subject(SubjectKind.tenant, tenant_b) is tenant_b
    with pytest.raises(ValidationError):
        privacy_intake.check_type_for_subject(RequestType.objection, SubjectKind.tenant)


def test_objection_of_a_user_stops_analytics(user_by_email, compliance):
    agent = user_by_email("agent@acme.example")
    req = open_for(agent, type_=RequestType.objection)
    with pytest.raises(PrivacyWorkflowError):
        privacy_resolutions.apply_objection(req, compliance)  # not started
    privacy.start(req, compliance)
    privacy_resolutions.apply_objection(req, compliance)
    assert agent.analytics_objection_at is not None
    assert req.status == S.completed and "analytics" in req.resolution


def test_worklist_orders_by_deadline_with_urgency(user_by_email, compliance):
    agent = user_by_email("agent@acme.example")
    now = utcnow()
    late = open_for(agent, received_at=now - timedelta(days=20))
    fresh = open_for(agent, received_at=now - timedelta(minutes=1))
    rows = [(r.id, u) for r, u, _left in privacy.worklist(now=now)]
    ids = [i for i, _u in rows]
    assert ids.index(late.id) < ids.index(fresh.id)
    assert dict(rows)[late.id] == "overdue"
    assert dict(rows)[fresh.id] == "on_track"


def test_the_demo_has_every_colour_and_a_deletion_awaiting_a_second_person(app):
    from app.services.demo_privacy import DEMO_MARKER_EMAIL, DPO_EMAIL, seed_demo_privacy

    seed_demo_privacy()
    assert seed_demo_privacy() == 0  # idempotent
    dpo = privacy_intake.find_user(None, DPO_EMAIL)
    assert privacy_intake.is_compliance(dpo)
    deletion = db.session.scalars(
        select(PrivacyRequest).where(PrivacyRequest.requester_email == DEMO_MARKER_EMAIL)
    ).one()
    assert deletion.status == S.awaiting_approval
    assert (
        deletion.prepared_by_id == privacy_intake.find_user(None, "compliance@xigmapro.example").id
    )
    assert deletion.deletion_plan
    urgencies = {u for _r, u, _left in privacy.worklist()}
    assert {"overdue", "due_soon", "on_track"} <= urgencies
    assert privacy.compliance_holidays()
