"""Taking privacy requests in (issue 7, P20, P21): finding the subject, in-app requests.

Compliance logs requests received by email ("Privacy Request" subject) and names the
subject by its tenant plus the user's email or the contact's phone; a signed-in tenant
user files one from their account page. Compliance is platform staff (unscoped), yet the
lookups filter by tenant explicitly and skip the ORM tenant scope, so they give the same
answer wherever they run.

Services never commit; the request does.
"""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from sqlalchemy import func, or_, select

from app.extensions import db
from app.models.contact import Contact
from app.models.privacy import PrivacyRequest, RequestChannel, RequestType, SubjectKind
from app.models.tenant import Tenant
from app.models.user import AppUser, Role
from app.services import privacy
from app.services.contacts import normalize_contact_phone
from app.services.exceptions import ValidationError

IST = ZoneInfo("Asia/Kolkata")
COMPLIANCE_ROLE = "Compliance"
TENANT_ADMIN_ROLE = "Tenant Admin"
# What a signed-in user's request is about (the account page's choices).
ABOUT_ME, ABOUT_ACCOUNT, ABOUT_CONTACT = "me", "account", "contact"


def ist_to_utc(local: datetime) -> datetime:
    """A naive IST time typed in a form -> naive UTC, as stored."""
    return local.replace(tzinfo=IST).astimezone(UTC).replace(tzinfo=None)


def find_tenant(value: str | int | None) -> Tenant:
    """A tenant by id or slug.

    :raises ValidationError: when there is no such tenant.
    """
    text = str(value or "").strip()
    stmt = select(Tenant).execution_options(skip_tenant_scope=True)
    if text.isdigit():
        tenant = db.session.scalars(stmt.where(Tenant.id == int(text))).first()
    else:
        tenant = db.session.scalars(stmt.where(Tenant.slug == text.lower())).first()
    if tenant is None:
        raise ValidationError("Choose the tenant concerned.", "tenant")
    return tenant


def find_user(tenant: Tenant | None, email: str) -> AppUser:
    """The user of ``tenant`` (None: platform staff) with this email.

    :raises ValidationError: when no such user exists.
    """
    email = (email or "").strip().lower()
    if not email:
        raise ValidationError("Enter the user's email.", "subject_email")
    stmt = (
        select(AppUser)
        .where(func.lower(AppUser.email) == email)
        .where(AppUser.tenant_id == tenant.id if tenant else AppUser.tenant_id.is_(None))
        .execution_options(skip_tenant_scope=True)
    )
    user = db.session.scalars(stmt).first()
    if user is None:
        where = f"tenant {tenant.slug}" if tenant else "the platform staff"
        raise ValidationError(f"No user with that email in {where}.", "subject_email")
    return user


def find_contact(tenant: Tenant, phone: str) -> Contact:
    """The contact of ``tenant`` with this phone number (any format).

    :raises ValidationError: when the number is invalid or not a contact of the tenant.
    """
    if not (phone or "").strip():
        raise ValidationError("Enter the contact's phone number.", "subject_phone")
    try:
        e164, wa_id = normalize_contact_phone(phone)
    except ValidationError as exc:
        raise ValidationError(str(exc), "subject_phone") from exc
    stmt = (
        select(Contact)
        .where(Contact.tenant_id == tenant.id, or_(Contact.phone == e164, Contact.wa_id == wa_id))
        .execution_options(skip_tenant_scope=True)
    )
    contact = db.session.scalars(stmt).first()
    if contact is None:
        raise ValidationError(f"{tenant.slug} has no contact with that number.", "subject_phone")
    return contact


def find_subject(
    kind: SubjectKind | str, tenant: Tenant | None, *, email: str = "", phone: str = ""
) -> AppUser | Tenant | Contact:
    """The subject named by a tenant plus a user's email or a contact's phone.

    :raises ValidationError: when the subject cannot be found.
    """
    kind = SubjectKind(kind)
    if kind == SubjectKind.user:
        return find_user(tenant, email)
    if tenant is None:
        raise ValidationError("Choose the tenant concerned.", "tenant")
    if kind == SubjectKind.tenant:
        return tenant
    return find_contact(tenant, phone)


def check_type_for_subject(request_type: RequestType | str, kind: SubjectKind | str) -> None:
    """An objection stops processing of a person (a user or a contact), not of a tenant.

    :raises ValidationError: for an objection about a whole tenant.
    """
    if RequestType(request_type) == RequestType.objection and SubjectKind(kind) == (
        SubjectKind.tenant
    ):
        raise ValidationError(
            "An objection concerns a user or a contact, not a whole tenant.", "subject_kind"
        )


def compliance_users(active_only: bool = True) -> list[AppUser]:
    """The platform users holding the Compliance role (the possible assignees)."""
    stmt = (
        select(AppUser)
        .join(AppUser.roles)
        .where(Role.name == COMPLIANCE_ROLE, AppUser.tenant_id.is_(None))
        .order_by(AppUser.first_name, AppUser.last_name, AppUser.id)
        .execution_options(skip_tenant_scope=True)
    )
    if active_only:
        stmt = stmt.where(AppUser.active.is_(True))
    return list(db.session.scalars(stmt).unique())


def is_compliance(user: AppUser | None) -> bool:
    return user is not None and any(r.name == COMPLIANCE_ROLE for r in user.roles)


def is_tenant_admin(user: AppUser) -> bool:
    return user.tenant_id is not None and any(r.name == TENANT_ADMIN_ROLE for r in user.roles)


def file_in_app(
    user: AppUser,
    *,
    request_type: RequestType | str,
    about: str,
    contact_phone: str = "",
    details: str = "",
    may_file_for_contacts: bool = False,
) -> PrivacyRequest:
    """A signed-in tenant user's own request (identity verified by the sign-in).

    A Tenant Admin may also close the whole account (a tenant deletion); a member whose
    role grants "file requests about contacts" (``may_file_for_contacts``, decided by
    the caller from FAB's permissions) may file on behalf of a contact of their tenant.

    :raises ValidationError: when the user may not file this request.
    """
    if user.tenant_id is None or user.tenant is None:
        raise ValidationError("Platform staff have no tenant account to make a request about.")
    request_type = RequestType(request_type)
    if about not in (ABOUT_ME, ABOUT_ACCOUNT, ABOUT_CONTACT):
        raise ValidationError("Choose what the request is about.", "about")
    if about == ABOUT_ACCOUNT and not is_tenant_admin(user):
        raise ValidationError("Only a Tenant Admin can close the account.", "about")
    if about == ABOUT_CONTACT and not may_file_for_contacts:
        raise ValidationError("Your role does not let you file requests for contacts.", "about")
    subject: AppUser | Tenant | Contact
    if about == ABOUT_ME:
        kind, subject = SubjectKind.user, user
    elif about == ABOUT_ACCOUNT:
        if request_type != RequestType.deletion:
            raise ValidationError(
                "For the whole account, choose deletion (closing the account).", "request_type"
            )
        kind, subject = SubjectKind.tenant, user.tenant
    else:
        kind, subject = SubjectKind.contact, find_contact(user.tenant, contact_phone)
    check_type_for_subject(request_type, kind)
    name = f"{user.first_name or ''} {user.last_name or ''}".strip() or None
    return privacy.open_request(
        request_type=request_type,
        subject_kind=kind,
        subject=subject,
        channel=RequestChannel.in_app,
        requester_email=user.email,
        requester_name=name,
        details=details,
        created_by=user,
        identity_verified=True,
    )


def requests_of(user: AppUser, limit: int = 50) -> list[PrivacyRequest]:
    """The requests ``user`` filed or that are about them, newest first."""
    return list(
        db.session.scalars(
            select(PrivacyRequest)
            .where(
                or_(
                    PrivacyRequest.created_by_id == user.id,
                    PrivacyRequest.subject_user_id == user.id,
                )
            )
            .order_by(PrivacyRequest.received_at.desc(), PrivacyRequest.id.desc())
            .limit(limit)
        )
    )


def assign_compliance(
    request: PrivacyRequest, assignee_id: int | str | None, actor: AppUser
) -> AppUser | None:
    """Assign the request to an active Compliance user (empty: unassign).

    :raises ValidationError: when the assignee is not an active Compliance user.
    """
    assignee = None
    if str(assignee_id or "").strip():
        wanted = int(assignee_id) if str(assignee_id).isdigit() else -1
        assignee = next((u for u in compliance_users() if u.id == wanted), None)
        if assignee is None:
            raise ValidationError("Assign the request to an active Compliance user.", "assignee")
    privacy.assign(request, assignee, actor)
    return assignee
