"""Privacy policy versions, notice and acknowledgements (P24).

A version is drafted, then published: publishing is the notice. A *material* version
cannot take effect sooner than `NOTICE_DAYS` after its notice, so saving a draft that
would (counting from now) or publishing one that now would is refused with the earliest
allowed time. Publishing emails every active Tenant Admin (through the mail queue, after
commit: the caller enqueues the returned messages) and every signed-in user sees a
banner until they acknowledge the latest published version. A published version is
immutable: a change is a new version.

Services never commit; the request or job does.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from app.extensions import db
from app.models.mixins import utcnow
from app.models.privacy import PolicyAcknowledgement, PolicyVersion
from app.models.tenant import Tenant, TenantStatus
from app.models.user import AppUser, Role
from app.services import audit
from app.services.business_days import IST
from app.services.exceptions import ValidationError, WofficeError
from app.services.mail import message_payload

NOTICE_DAYS = 7
TENANT_ADMIN = "Tenant Admin"


def ist(value: datetime, fmt: str = "%d %b %Y, %H:%M") -> str:
    """A naive-UTC time as IST text ("04 Dec 2026, 21:53 IST")."""
    return value.replace(tzinfo=UTC).astimezone(IST).strftime(fmt) + " IST"


class PolicyNoticeError(ValidationError):
    """A material version would take effect less than 7 days after its notice."""


class PolicyPublishedError(WofficeError):
    """A published version cannot be changed, deleted or published again."""


def earliest_effective(notice_at: datetime) -> datetime:
    """The earliest time a material version noticed at ``notice_at`` may take effect.

    Rounded up to the next whole minute, so the time shown (minutes) is itself allowed.
    """
    earliest = notice_at + timedelta(days=NOTICE_DAYS)
    if earliest.second or earliest.microsecond:
        earliest = earliest.replace(second=0, microsecond=0) + timedelta(minutes=1)
    return earliest


def check_notice(material: bool, effective_at: datetime | None, notice_at: datetime) -> None:
    """Refuse a material change taking effect < 7 days after ``notice_at``.

    :raises ValidationError: without an effective time.
    :raises PolicyNoticeError: naming the earliest allowed time (IST).
    """
    if effective_at is None:
        raise ValidationError("Enter when this version takes effect.", "effective_at")
    if material and effective_at < notice_at + timedelta(days=NOTICE_DAYS):
        raise PolicyNoticeError(
            f"A material change needs {NOTICE_DAYS} days' notice: it can take effect "
            f"on {ist(earliest_effective(notice_at))} at the earliest.",
            "effective_at",
        )


def validate(version: PolicyVersion, now: datetime | None = None) -> None:
    """Check a version before it is saved: text present, the notice rule kept.

    Notice counts from the publication time, or from now for a draft (it cannot be
    published earlier than now).

    :raises ValidationError: a required field is empty.
    :raises PolicyNoticeError: see `check_notice`.
    """
    for field, label in (("version", "a version"), ("summary", "a summary")):
        if not (getattr(version, field) or "").strip():
            raise ValidationError(f"Enter {label}.", field)
    if not (version.full_text or "").strip():
        raise ValidationError("Enter the full text of the policy.", "full_text")
    check_notice(
        bool(version.material), version.effective_at, version.published_at or now or utcnow()
    )


def check_editable(version: PolicyVersion) -> None:
    """:raises PolicyPublishedError: when ``version`` was published (it is immutable)."""
    if version.published_at is not None:
        raise PolicyPublishedError(
            f"Version {version.version} was published on {ist(version.published_at)} and "
            "cannot change. Add a new version instead."
        )


def active_tenant_admins() -> list[AppUser]:
    """Active users holding Tenant Admin in a tenant that is not deleted."""
    return list(
        db.session.scalars(
            select(AppUser)
            .join(AppUser.roles)
            .join(Tenant, Tenant.id == AppUser.tenant_id)
            .where(
                Role.name == TENANT_ADMIN,
                AppUser.active.is_(True),
                Tenant.status != TenantStatus.deleted,
            )
            .order_by(AppUser.id)
        ).unique()
    )


def notice_email(version: PolicyVersion, user: AppUser, policy_url: str) -> dict[str, Any]:
    """The notice of ``version`` for one Tenant Admin (JSON-safe mail payload)."""
    kind = "a material change to" if version.material else "an update to"
    body = (
        f"Hello {user.first_name},\n\n"
        f"We have published {kind} the BizSenti Woffice privacy policy: version "
        f"{version.version}. It takes effect on {ist(version.effective_at)}.\n\n"
        f"What changes:\n{version.summary}\n\n"
        f"Read the full text: {policy_url}\n\n"
        "Continued use after the effective date constitutes acceptance. Questions: "
        'sales@xigmapro.com (subject "Privacy Request").\n\n'
        "Xigmapro Software Pvt. Ltd.\n"
    )
    return message_payload(
        to=user.email,
        subject=(
            f"Privacy policy {version.version}: "
            f"takes effect {ist(version.effective_at, '%d %b %Y')}"
        ),
        body=body,
    )


def publish(
    version: PolicyVersion, actor: AppUser | None, policy_url: str, now: datetime | None = None
) -> list[dict[str, Any]]:
    """Publish ``version`` now (the notice) and return one notice email per Tenant Admin.

    The caller enqueues the emails once its transaction commits.

    :raises PolicyPublishedError: it was published already.
    :raises PolicyNoticeError: a material version takes effect < 7 days from now.
    """
    check_editable(version)
    now = now or utcnow()
    check_notice(bool(version.material), version.effective_at, now)
    version.published_at = now
    emails = [notice_email(version, admin, policy_url) for admin in active_tenant_admins()]
    audit.record(
        "policy.published",
        version,
        version=version.version,
        material=bool(version.material),
        effective_at=version.effective_at.isoformat(),
        recipients=len(emails),
        actor_id=actor.id if actor else None,
    )
    return emails


def _published() -> Any:
    return select(PolicyVersion).where(PolicyVersion.published_at.is_not(None))


def current_policy(now: datetime | None = None) -> PolicyVersion | None:
    """The version in force: the published one that took effect last."""
    now = now or utcnow()
    return db.session.scalars(
        _published()
        .where(PolicyVersion.effective_at <= now)
        .order_by(PolicyVersion.effective_at.desc(), PolicyVersion.published_at.desc())
        .limit(1)
    ).first()


def upcoming_policy(now: datetime | None = None) -> PolicyVersion | None:
    """A published version that has not taken effect yet (the one under notice)."""
    now = now or utcnow()
    return db.session.scalars(
        _published()
        .where(PolicyVersion.effective_at > now)
        .order_by(PolicyVersion.effective_at.desc())
        .limit(1)
    ).first()


def latest_published() -> PolicyVersion | None:
    """The most recently published version (in force or announced)."""
    return db.session.scalars(
        _published().order_by(PolicyVersion.published_at.desc()).limit(1)
    ).first()


def published_version(label: str) -> PolicyVersion | None:
    """A published version by its label ("1.0"); drafts are not public."""
    return db.session.scalars(_published().where(PolicyVersion.version == label)).first()


def has_acknowledged(user_id: int, version_id: int) -> bool:
    return (
        db.session.scalar(
            select(PolicyAcknowledgement.id).where(
                PolicyAcknowledgement.user_id == user_id,
                PolicyAcknowledgement.policy_version_id == version_id,
            )
        )
        is not None
    )


def acknowledgement_count(version: PolicyVersion) -> int:
    """How many users acknowledged ``version``."""
    return db.session.scalar(
        select(func.count(PolicyAcknowledgement.id)).where(
            PolicyAcknowledgement.policy_version_id == version.id
        )
    )


def needs_acknowledgement(user: AppUser) -> PolicyVersion | None:
    """The latest published version if ``user`` has not acknowledged it, else None."""
    latest = latest_published()
    if latest is None or has_acknowledged(user.id, latest.id):
        return None
    return latest


def acknowledge(user: AppUser, version: PolicyVersion, now: datetime | None = None) -> bool:
    """Record that ``user`` read ``version``; True if recorded now, False if already.

    :raises ValidationError: the version is not published.
    """
    if version.published_at is None:
        raise ValidationError("Only a published policy can be acknowledged.")
    if has_acknowledged(user.id, version.id):
        return False
    nested = db.session.begin_nested()
    db.session.add(
        PolicyAcknowledgement(
            policy_version_id=version.id, user_id=user.id, acknowledged_at=now or utcnow()
        )
    )
    try:
        db.session.flush()
    except IntegrityError:  # a concurrent click by the same user won the unique index
        nested.rollback()
        return False
    nested.commit()
    return True
