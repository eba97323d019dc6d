"""The daily privacy digest (issue 7, P18, P20): who must act on which request today.

Each assignee gets one email listing their requests due within 2 business days and
their overdue ones; overdue requests (and open requests nobody is assigned to that are
due soon) are escalated to every active Compliance user. Emails name requests by
reference, type and a non-personal subject label, never the requester.

Once per IST day: the send is recorded as a ``privacy.digest_sent`` audit event for the
day, checked before building (no extra table). Services never commit; the job does.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from sqlalchemy import select

from app.extensions import db
from app.models.audit import AuditEvent
from app.models.mixins import utcnow
from app.models.privacy import PrivacyRequest
from app.models.user import AppUser
from app.services import audit, business_days, mail, privacy
from app.services.privacy_intake import compliance_users

DIGEST_ACTION = "privacy.digest_sent"
SHOW_PATH = "/privacy-requests/show/{id}"


@dataclass
class Line:
    request: PrivacyRequest
    urgency: str
    left: int

    def text(self) -> str:
        r = self.request
        due = f"{business_days.ist_date(r.due_at):%d %b %Y}"
        if self.urgency == "overdue":
            state = f"OVERDUE by {-self.left} business day(s)"
        else:
            state = f"due in {self.left} business day(s)" if self.left else "due TODAY"
        return (
            f"- {r.reference} {r.request_type} ({r.subject_label}), "
            f"{str(r.status).replace('_', ' ')}: {state}, deadline {due} 19:00 IST. "
            f"{SHOW_PATH.format(id=r.id)}"
        )


@dataclass
class Digest:
    by_assignee: dict[int, list[Line]] = field(default_factory=lambda: defaultdict(list))
    escalated: list[Line] = field(default_factory=list)


def already_sent(day: date) -> bool:
    """True when the digest of IST ``day`` was sent already."""
    events = db.session.scalars(
        select(AuditEvent.details)
        .where(AuditEvent.action == DIGEST_ACTION)
        .order_by(AuditEvent.id.desc())
        .limit(10)
        .execution_options(skip_tenant_scope=True)
    )
    return any((d or {}).get("day") == day.isoformat() for d in events)


def collect(now: datetime) -> Digest:
    """Due-soon and overdue requests per assignee, and the ones to escalate."""
    digest = Digest()
    for request, urgency, left in privacy.worklist(now=now):
        if urgency == "on_track":
            continue
        line = Line(request, urgency, left)
        if request.assignee_id is not None:
            digest.by_assignee[request.assignee_id].append(line)
        if urgency == "overdue" or request.assignee_id is None:
            digest.escalated.append(line)
    return digest


def _body(greeting: str, intro: str, lines: list[Line]) -> str:
    overdue = [ln.text() for ln in lines if ln.urgency == "overdue"]
    due = [ln.text() for ln in lines if ln.urgency != "overdue"]
    parts = [greeting, "", intro, ""]
    if overdue:
        parts += ["Overdue:", *overdue, ""]
    if due:
        parts += ["Due within 2 business days:", *due, ""]
    parts += ["Open Compliance > Privacy requests to work them.", ""]
    return "\n".join(parts)


def payloads(digest: Digest, day: date) -> list[dict[str, Any]]:
    """The emails of ``digest`` (mail job payloads)."""
    out: list[dict[str, Any]] = []
    for user_id, lines in sorted(digest.by_assignee.items()):
        user = db.session.get(AppUser, user_id)
        if user is None or not user.active or not user.email:
            continue
        overdue = sum(1 for ln in lines if ln.urgency == "overdue")
        subject = f"Privacy requests for {day:%d %b %Y}: {len(lines)} due"
        if overdue:
            subject += f", {overdue} overdue"
        body = _body(
            f"Dear {user.first_name or 'colleague'},",
            "These privacy requests assigned to you need attention.",
            lines,
        )
        out.append(mail.message_payload(to=user.email, subject=subject, body=body))
    if digest.escalated:
        overdue = sum(1 for ln in digest.escalated if ln.urgency == "overdue")
        subject = (
            f"ESCALATION {day:%d %b %Y}: {overdue} overdue privacy request(s)"
            if overdue
            else f"Privacy requests for {day:%d %b %Y}: unassigned and due soon"
        )
        body = _body(
            "Dear Compliance team,",
            "These privacy requests are overdue or due soon without an assignee.",
            digest.escalated,
        )
        for user in compliance_users():
            if user.email:
                out.append(mail.message_payload(to=user.email, subject=subject, body=body))
    return out


def build_digest(now: datetime | None = None, *, force: bool = False) -> list[dict[str, Any]]:
    """Today's digest emails, recording today as sent; [] when already sent today."""
    now = now or utcnow()
    day = business_days.ist_date(now)
    if not force and already_sent(day):
        return []
    digest = collect(now)
    emails = payloads(digest, day)
    audit.record(
        DIGEST_ACTION,
        day=day.isoformat(),
        emails=len(emails),
        assignees=len(digest.by_assignee),
        escalated=len(digest.escalated),
    )
    return emails
