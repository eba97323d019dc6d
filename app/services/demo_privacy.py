"""Demo privacy requests for `make run` and `flask woffice seed-demo` (idempotent).

Four requests, one per worklist colour and one for four eyes: an overdue access request
(red), a correction due within 2 business days (amber), an in-app portability request
on track, and the deletion of a Bharat Foods contact prepared by
compliance@xigmapro.example and awaiting approval by a SECOND Compliance user,
dpo@xigmapro.example (created here), plus one Compliance holiday.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

from flask_security import hash_password
from sqlalchemy import select

from app.extensions import db
from app.models.mixins import utcnow
from app.models.privacy import (
    ComplianceHoliday,
    PrivacyRequest,
    RequestChannel,
    RequestType,
    SubjectKind,
)
from app.models.user import AppUser, Role
from app.services import business_days, privacy, privacy_intake

DEMO_PASSWORD = "demo-pass-2026"  # noqa: S105 - documented demo credential (README)
DPO_EMAIL = "dpo@xigmapro.example"
COMPLIANCE_EMAIL = "compliance@xigmapro.example"
DEMO_DELETION_CONTACT = ("bharatfoods", "+91 63600 77777")  # Naveen Kumar, no tags
DEMO_MARKER_EMAIL = "naveen.kumar@example.com"  # the demo deletion's requester


def _user(email: str) -> AppUser | None:
    return db.session.scalars(
        select(AppUser).where(AppUser.email == email).execution_options(skip_tenant_scope=True)
    ).first()


def _seed_dpo() -> int:
    """The second Compliance user, so a demo deletion can be approved (four eyes)."""
    if _user(DPO_EMAIL) is not None:
        return 0
    role = db.session.scalars(select(Role).where(Role.name == "Compliance")).one()
    user = AppUser(
        email=DPO_EMAIL,
        username=DPO_EMAIL,
        first_name="Dev",
        last_name="Pillai",
        active=True,
        password=hash_password(DEMO_PASSWORD),
        confirmed_at=utcnow(),
        age_confirmed_at=utcnow(),
        tenant_id=None,
    )
    user.roles = [role]
    db.session.add(user)
    db.session.flush()
    return 1


def _seed_holiday(today: date) -> int:
    day = date(today.year, 12, 24)
    if day <= today:
        day = date(today.year + 1, 12, 24)
    if db.session.scalars(select(ComplianceHoliday).where(ComplianceHoliday.day == day)).first():
        return 0
    db.session.add(ComplianceHoliday(day=day, name="Christmas Eve (Compliance team off)"))
    db.session.flush()
    return 1


def received_for(urgency: str, now: datetime) -> datetime:
    """A receipt time (naive UTC, 10:00 IST on some past day) whose deadline has
    ``urgency`` now."""
    extra = privacy.compliance_holidays()
    for back in range(0, 30):
        day = business_days.ist_date(now) - timedelta(days=back)
        received = business_days.end_of_day_utc(day) - timedelta(hours=9)  # 10:00 IST
        if received > now:
            continue
        due = business_days.deadline(received, extra=extra)
        if business_days.urgency(now, due, extra) == urgency:
            return received
    raise RuntimeError(f"no receipt day gives urgency {urgency}")


def _open(spec: dict[str, Any], subject: Any, created_by: AppUser | None) -> PrivacyRequest:
    return privacy.open_request(
        request_type=spec["type"],
        subject_kind=spec["kind"],
        subject=subject,
        channel=spec["channel"],
        requester_email=spec["email"],
        requester_name=spec.get("name"),
        details=spec.get("details"),
        received_at=spec["received_at"],
        created_by=created_by,
    )


def _deletion_plan(request: PrivacyRequest) -> dict[str, Any]:
    try:
        from app.services.deletion import build_plan
    except ImportError:  # the deletion service is optional for the demo
        return {"subject_label": request.subject_label, "note": "demo plan"}
    return build_plan(request)


def seed_demo_privacy() -> int:
    """Create the demo Compliance user, holiday and requests that do not exist yet."""
    created = _seed_dpo()
    now = utcnow()
    created += _seed_holiday(business_days.ist_date(now))
    compliance, dpo = _user(COMPLIANCE_EMAIL), _user(DPO_EMAIL)
    if compliance is None or dpo is None:
        return created
    marker = select(PrivacyRequest.id).where(PrivacyRequest.requester_email == DEMO_MARKER_EMAIL)
    if db.session.scalars(marker.limit(1)).first() is not None:
        return created  # the demo requests exist already
    acme = privacy_intake.find_tenant("acme")
    bharat = privacy_intake.find_tenant("bharatfoods")
    owner = privacy_intake.find_user(acme, "owner@acme.example")
    agent = privacy_intake.find_user(bharat, "agent@bharatfoods.example")

    overdue = _open(
        {
            "type": RequestType.access,
            "kind": SubjectKind.user,
            "channel": RequestChannel.email,
            "email": agent.email,
            "name": f"{agent.first_name} {agent.last_name}",
            "details": "Please send me a copy of everything you hold about me.",
            "received_at": received_for("overdue", now),
        },
        agent,
        compliance,
    )
    privacy.start(overdue, compliance)

    ravi = privacy_intake.find_contact(acme, "+91 98765 43210")
    due_soon = _open(
        {
            "type": RequestType.correction,
            "kind": SubjectKind.contact,
            "channel": RequestChannel.email,
            "email": "ravi.kumar@example.com",
            "name": "Ravi Kumar",
            "details": "My name is spelt wrongly in Acme's records.",
            "received_at": received_for("due_soon", now),
        },
        ravi,
        compliance,
    )
    privacy.assign(due_soon, compliance, compliance)

    portability = privacy_intake.file_in_app(
        owner,
        request_type=RequestType.portability,
        about=privacy_intake.ABOUT_ME,
        details="An export of my data, please.",
    )
    privacy.assign(portability, dpo, compliance)

    slug, phone = DEMO_DELETION_CONTACT
    naveen = privacy_intake.find_contact(bharat, phone)
    deletion = _open(
        {
            "type": RequestType.deletion,
            "kind": SubjectKind.contact,
            "channel": RequestChannel.email,
            "email": DEMO_MARKER_EMAIL,
            "name": "Naveen Kumar",
            "details": f"Please delete my data held for {slug}.",
            "received_at": received_for("on_track", now - timedelta(hours=2)),
        },
        naveen,
        compliance,
    )
    privacy.start(deletion, compliance)
    privacy.submit_for_approval(deletion, compliance, _deletion_plan(deletion))
    db.session.flush()
    return created + 4
