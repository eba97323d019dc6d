"""Brute-force throttling and login history, from the `login_event` table.

An account is throttled after LOGIN_THROTTLE_MAX_PER_ACCOUNT failures since its last
success within the window; an address after LOGIN_THROTTLE_MAX_PER_IP failures within
the window. Rows live in the database, so every web node sees the same counts.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.models.login_event import LoginEvent
from app.models.mixins import utcnow
from app.services.exceptions import LoginThrottledError
from app.services.identity import hash_identifier


def _failures_since(
    session: Session, column, value: str, since: datetime
) -> tuple[int, datetime | None]:
    row = session.execute(
        select(func.count(LoginEvent.id), func.min(LoginEvent.occurred_at)).where(
            column == value,
            LoginEvent.success.is_(False),
            LoginEvent.outcome != "logout",
            LoginEvent.occurred_at >= since,
        )
    ).one()
    return int(row[0]), row[1]


def check_login_allowed(
    session: Session,
    identity: str,
    ip: str | None,
    *,
    window_seconds: int,
    max_per_account: int,
    max_per_ip: int,
) -> None:
    """Raise if the account or the address has failed too often recently.

    :raises LoginThrottledError: with a message saying when to try again.
    """
    now = utcnow()
    window_start = now - timedelta(seconds=window_seconds)
    identity_hash = hash_identifier(identity)
    last_success = session.execute(
        select(func.max(LoginEvent.occurred_at)).where(
            LoginEvent.identity_hash == identity_hash, LoginEvent.success.is_(True)
        )
    ).scalar()
    since = max(window_start, last_success) if last_success else window_start
    checks = [(LoginEvent.identity_hash, identity_hash, max_per_account, since)]
    if ip:
        checks.append((LoginEvent.ip, ip, max_per_ip, window_start))
    for column, value, limit, start in checks:
        count, oldest = _failures_since(session, column, value, start)
        if count >= limit and oldest is not None:
            retry_at = oldest + timedelta(seconds=window_seconds)
            minutes = max(1, math.ceil((retry_at - now).total_seconds() / 60))
            raise LoginThrottledError(
                "Too many failed sign-in attempts. For your security, sign-in is paused; "
                f"try again in {minutes} minute{'s' if minutes != 1 else ''}, "
                "or reset your password."
            )


def record_login_event(
    session: Session,
    *,
    identity: str,
    ip: str | None,
    user_agent: str | None,
    success: bool,
    outcome: str,
    user_id: int | None = None,
) -> LoginEvent:
    """Append one login attempt (or logout) to the history."""
    event = LoginEvent(
        identity_hash=hash_identifier(identity),
        ip=ip,
        user_agent=(user_agent or "")[:300] or None,
        success=success,
        outcome=outcome,
        user_id=user_id,
    )
    session.add(event)
    return event


def recent_logins(session: Session, user_id: int, limit: int = 20) -> list[LoginEvent]:
    """The user's latest sign-ins, sign-outs and failed attempts, newest first."""
    return list(
        session.scalars(
            select(LoginEvent)
            .where(LoginEvent.user_id == user_id)
            .order_by(LoginEvent.occurred_at.desc(), LoginEvent.id.desc())
            .limit(limit)
        )
    )
