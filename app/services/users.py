"""Users and teams: invitations, role grants, activation, with the grant policy.

Policy: platform admins grant platform roles to platform users and tenant roles to
tenant users; tenant admins grant only tenant roles, only to users of their own tenant;
a tenant always keeps at least one active Tenant Admin.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from flask import current_app
from flask_security import hash_password
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.models.mixins import utcnow
from app.models.user import AppUser, Role, assoc_user_role
from app.services import audit, tenant_roles
from app.services.exceptions import (
    InvitationInvalidError,
    LastTenantAdminError,
    RoleGrantError,
    UserValidationError,
)
from app.services.mail import message_payload
from app.services.phones import normalize_phone
from app.services.tenants import TenantValidationError, normalize_email

TENANT_ADMIN = "Tenant Admin"
PLATFORM_ADMIN = "Platform Admin"
_INVITE_SALT = "woffice-invitation"


def tenant_role_names() -> tuple[str, ...]:
    return tuple(current_app.config["TENANT_ROLES"])


def platform_role_names() -> tuple[str, ...]:
    return tuple(current_app.config["PLATFORM_ROLES"])


def stored_role_names(session: Session, user_id: int) -> set[str]:
    """The role names ``user_id`` holds in the database (ignoring unflushed changes)."""
    with session.no_autoflush:
        return set(
            session.scalars(
                select(Role.name)
                .join(assoc_user_role, assoc_user_role.c.role_id == Role.id)
                .where(assoc_user_role.c.user_id == user_id)
            )
        )


def stored_role_ids(session: Session, user_id: int) -> list[int]:
    """The ids of the roles ``user_id`` holds in the database."""
    with session.no_autoflush:
        return list(
            session.scalars(
                select(assoc_user_role.c.role_id).where(assoc_user_role.c.user_id == user_id)
            )
        )


def assignable_here() -> list[str]:
    """Roles the current tenant's members may hold (the Team screen's role choices)."""
    from app.extensions import db
    from app.tenancy import current_tenant_id

    return tenant_roles.assignable_role_names(db.session, current_tenant_id())


def grantable_role_names(
    actor: AppUser,
    target_tenant_id: int | None,
    actor_roles: set[str] | None = None,
    session: Session | None = None,
) -> tuple[str, ...]:
    """The roles ``actor`` may grant to a user of ``target_tenant_id`` (None: platform).

    Platform admins grant platform roles to staff and any role of a tenant to its users;
    a Tenant Admin grants every role of their own tenant (built-in or custom); another
    member with access to the Team screen grants only the roles of their tenant whose
    permissions they hold themselves (issue 8: no climbing through a role).
    ``actor_roles`` defaults to the actor's loaded roles; pass the stored ones when the
    actor object may carry unsaved role changes (e.g. an admin editing themselves).
    """
    if session is None:
        from app.extensions import db

        session = db.session
    if actor_roles is None:
        actor_roles = {role.name for role in actor.roles}
    # A form may have put a new, not yet added user on the roles: no autoflush here.
    with session.no_autoflush:
        if actor.tenant_id is None and PLATFORM_ADMIN in actor_roles:
            if target_tenant_id is None:
                return platform_role_names()
            return tuple(tenant_roles.assignable_role_names(session, target_tenant_id))
        if actor.tenant_id is None or actor.tenant_id != target_tenant_id:
            return ()
        names = tenant_roles.assignable_role_names(session, target_tenant_id)
        if TENANT_ADMIN in actor_roles:
            return tuple(names)
        if not tenant_roles.manages_members(session, actor):
            return ()
        beyond = set(tenant_roles.roles_beyond(session, actor, find_roles(session, names)))
        return tuple(n for n in names if n not in beyond)


def check_roles_grantable(
    actor: AppUser,
    target_tenant_id: int | None,
    roles: Iterable[Role],
    actor_roles: set[str] | None = None,
) -> None:
    """:raises RoleGrantError: when any of ``roles`` is outside what ``actor`` may grant."""
    allowed = set(grantable_role_names(actor, target_tenant_id, actor_roles))
    refused = sorted(
        tenant_roles.display_name(role.name) for role in roles if role.name not in allowed
    )
    if refused:
        raise RoleGrantError(f"You cannot grant the role(s): {', '.join(refused)}.")


def find_roles(session: Session, names: Iterable[str]) -> list[Role]:
    """Roles by name, in the order given.

    :raises RoleGrantError: for an unknown role name.
    """
    wanted = list(dict.fromkeys(names))
    found = {r.name: r for r in session.scalars(select(Role).where(Role.name.in_(wanted)))}
    unknown = [n for n in wanted if n not in found]
    if unknown:
        raise RoleGrantError(f"Unknown role(s): {', '.join(unknown)}.")
    return [found[n] for n in wanted]


def count_active_tenant_admins(
    session: Session, tenant_id: int, exclude_user_id: int | None = None
) -> int:
    """Active Tenant Admins of the tenant who have set a password (an invited admin who
    never signed in does not count), optionally ignoring one user."""
    stmt = (
        select(func.count(AppUser.id))
        .join(AppUser.roles)
        .where(
            AppUser.tenant_id == tenant_id,
            AppUser.active.is_(True),
            AppUser.password.is_not(None),
            Role.name == TENANT_ADMIN,
        )
    )
    if exclude_user_id is not None:
        stmt = stmt.where(AppUser.id != exclude_user_id)
    return int(session.execute(stmt).scalar() or 0)


def _ensure_admin_remains(session: Session, user: AppUser, *, loses_admin: bool) -> None:
    if user.tenant_id is None or not loses_admin:
        return
    # Compare against what is stored: the caller may already have changed the object.
    with session.no_autoflush:
        others = count_active_tenant_admins(session, user.tenant_id, user.id)
        stored_admins = count_active_tenant_admins(session, user.tenant_id)
    was_admin = stored_admins > others
    if was_admin and others == 0:
        raise LastTenantAdminError(
            "This is the tenant's last active Tenant Admin: make someone else a Tenant Admin first."
        )


def email_taken(session: Session, email: str, exclude_id: int | None = None) -> bool:
    """True when any user (of any tenant) already has ``email``; emails are global logins."""
    stmt = (
        select(AppUser.id)
        .where(func.lower(AppUser.email) == email.lower())
        .execution_options(skip_tenant_scope=True)
    )
    if exclude_id is not None:
        stmt = stmt.where(AppUser.id != exclude_id)
    return session.execute(stmt).first() is not None


def validate_person(
    email: str, first_name: str, last_name: str, phone: str | None
) -> dict[str, Any]:
    """Normalised person fields (P1).

    :raises UserValidationError: naming the first invalid field.
    """
    try:
        email_n = normalize_email(email, "email")
    except TenantValidationError as exc:
        raise UserValidationError(str(exc), "email") from exc
    first, last = (first_name or "").strip(), (last_name or "").strip()
    if not first:
        raise UserValidationError("Enter a first name.", "first_name")
    if not last:
        raise UserValidationError("Enter a last name.", "last_name")
    phone_n = normalize_phone(phone, field="phone") if (phone or "").strip() else None
    return {"email": email_n, "first_name": first, "last_name": last, "phone": phone_n}


def invite_user(
    session: Session,
    actor: AppUser,
    tenant_id: int | None,
    *,
    email: str,
    first_name: str,
    last_name: str,
    role_names: Iterable[str],
    phone: str | None = None,
) -> AppUser:
    """Create a user without a password; the invitation email lets them set one.

    :raises UserValidationError: for invalid or duplicate details.
    :raises RoleGrantError: when ``actor`` may not grant the roles.
    """
    fields = validate_person(email, first_name, last_name, phone)
    if email_taken(session, fields["email"]):
        raise UserValidationError("A user with this email already exists.", "email")
    roles = find_roles(session, role_names)
    if not roles:
        raise RoleGrantError("Choose at least one role.")
    check_roles_grantable(actor, tenant_id, roles)
    user = AppUser(
        username=fields["email"],
        tenant_id=tenant_id,
        active=True,
        password=None,
        created_by_fk=actor.id,
        changed_by_fk=actor.id,
        **fields,
    )
    user.roles = roles
    session.add(user)
    session.flush()
    return user


def set_roles(session: Session, actor: AppUser, user: AppUser, role_names: Iterable[str]) -> None:
    """Replace ``user``'s roles.

    :raises RoleGrantError: when ``actor`` may not grant them.
    :raises LastTenantAdminError: when it would leave the tenant without an admin.
    """
    # Decide on what is stored: the caller (a FAB form) may already have put the new
    # roles on ``user``, and ``actor`` may be ``user``.
    with session.no_autoflush:
        roles = find_roles(session, role_names)
        if not roles:
            raise RoleGrantError("Choose at least one role.")
        # Granting or taking away a role both need the right to grant it; roles kept
        # as they were do not (a member may rename someone holding a bigger role).
        before = {
            r.id: r
            for r in session.scalars(
                select(Role).where(
                    Role.id.in_(stored_role_ids(session, user.id) if user.id else [])
                )
            )
        }
        after = {r.id: r for r in roles}
        changed = [after.get(i) or before[i] for i in set(before) ^ set(after)]
        check_roles_grantable(actor, user.tenant_id, changed, stored_role_names(session, actor.id))
        loses_admin = not any(r.name == TENANT_ADMIN for r in roles)
        _ensure_admin_remains(session, user, loses_admin=loses_admin)
    user.roles = roles
    user.changed_by_fk = actor.id


def set_active(session: Session, actor: AppUser, user: AppUser, active: bool) -> None:
    """Deactivate or reactivate ``user``.

    :raises UserValidationError: when deactivating oneself.
    :raises LastTenantAdminError: when deactivating the last active Tenant Admin.
    """
    if not active and user.id == actor.id:
        raise UserValidationError("You cannot deactivate your own account.", "active")
    with session.no_autoflush:
        # Only someone who could grant all of a member's roles may switch them off.
        held = find_roles(session, stored_role_names(session, user.id))
        check_roles_grantable(actor, user.tenant_id, held, stored_role_names(session, actor.id))
    if not active:
        _ensure_admin_remains(session, user, loses_admin=True)
    if user.active != active:
        audit.record("user.reactivated" if active else "user.deactivated", user, session=session)
    user.active = active
    user.changed_by_fk = actor.id


# ----------------------------------------------------------------------- invitations


def invitation_email(user: AppUser, inviter: AppUser, accept_url: str) -> dict[str, Any]:
    """The invitation message (JSON-safe payload for the mail job)."""
    business = user.tenant.name if user.tenant else "the Woffice platform team"
    hours = current_app.config["INVITE_EXPIRES_HOURS"]
    body = (
        f"Hello {user.first_name},\n\n"
        f"{inviter.first_name} {inviter.last_name} has invited you to join {business} "
        "on Woffice.\n\n"
        f"Set your password here (the link works once and expires in {hours} hours):\n"
        f"{accept_url}\n\n"
        "If you did not expect this invitation, ignore this email.\n\n"
        "Woffice Back Office\n"
    )
    return message_payload(
        to=user.email, subject=f"You're invited to {business} on Woffice", body=body
    )


def _serializer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt=_INVITE_SALT)


def invitation_token(user: AppUser) -> str:
    """A signed, expiring token naming the invited user."""
    return _serializer().dumps({"u": user.fs_uniquifier})


def user_for_invitation(session: Session, token: str) -> AppUser:
    """The invited user behind a valid, unused token.

    :raises InvitationInvalidError: when the link is tampered, expired or already used.
    """
    max_age = current_app.config["INVITE_EXPIRES_HOURS"] * 3600
    try:
        data = _serializer().loads(token, max_age=max_age)
    except SignatureExpired as exc:
        raise InvitationInvalidError(
            "This invitation has expired. Ask your administrator to send a new one."
        ) from exc
    except BadSignature as exc:
        raise InvitationInvalidError("This invitation link is not valid.") from exc
    user = session.scalars(select(AppUser).where(AppUser.fs_uniquifier == data.get("u"))).first()
    if user is None or not user.active:
        raise InvitationInvalidError("This invitation link is not valid.")
    if user.password:
        raise InvitationInvalidError(
            "This invitation has already been used. Sign in, or reset your password."
        )
    return user


def accept_invitation(session: Session, token: str, password: str) -> AppUser:
    """Set the invited user's password (validated by FST's password rules).

    :raises InvitationInvalidError: for a bad token.
    :raises UserValidationError: for a password FST rejects.
    """
    user = user_for_invitation(session, token)
    security = current_app.extensions["security"]
    errors, normalized = security.password_util.validate(password, False, user=user)
    if errors:
        raise UserValidationError(" ".join(str(e) for e in errors), "password")
    user.password = hash_password(normalized)
    user.confirmed_at = utcnow()
    user.password_changed_at = utcnow()
    return user
