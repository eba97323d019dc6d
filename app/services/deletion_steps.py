"""What a deletion touches: the steps, in dependency order, and the users rule (issue 7).

`steps_for(request)` lists, for a tenant, a contact or a user, the rows to delete as
`Step`s: a table, a Core condition naming the subject's rows, and the key the batches
advance on. Tenant steps come from the metadata (every table with a ``tenant_id``,
children before parents), so a table added later is deleted with its tenant unless
`RETAINED` says why it stays. Users are deleted, or anonymised when something still
needs the row (`referenced_users`). `app.services.deletion` plans and runs the steps.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from uuid import uuid4

from sqlalchemy import ColumnElement, Table, and_, delete, or_, select, update

from app.extensions import db
from app.models.audit import AuditEvent
from app.models.contact import contact_tag
from app.models.privacy import PrivacyRequest, RequestStatus, SubjectKind
from app.services.exceptions import WofficeError

GST_BASIS = "GST s.36 (CGST Act)"
# An approved deletion runs while its request is open (a rejection stops it).
RUNNABLE = (RequestStatus.awaiting_approval, RequestStatus.in_progress)
DEFAULT_BATCH_SIZE = 5000


class DeletionError(WofficeError):
    """A deletion that cannot run (not a deletion, not approved, subject unknown)."""


# table -> (category, basis); "detach" rows lose their tenant_id, "keep" rows stay.
RETAINED: dict[str, tuple[str, str, str]] = {
    "invoice": ("detach", "Invoices and credit notes", GST_BASIS),
    "payment": ("detach", "Payments", GST_BASIS),
    "subscription": ("detach", "Subscriptions", GST_BASIS + ": cited by the invoices"),
    "billing_event": ("detach", "Payment webhooks", GST_BASIS + ": evidence of payments"),
    "audit_event": (
        "keep",
        "Audit events",
        "Security and accountability record; holds no personal data by construction "
        "(field names and keyed hashes only)",
    ),
    "privacy_request": ("keep", "Privacy requests", "Proof that the request was handled"),
    "incident_tenant": ("keep", "Incident links", "Incident register (CERT-In directions)"),
}
CATEGORIES = {
    "message": "Messages",
    "pending_status": "Pending message statuses",
    "campaign_recipient": "Campaign recipients",
    "consent_event": "Consent log entries",
    "contact_tag": "Contact tags",
    "conversation": "Conversations",
    "campaign": "Campaigns",
    "message_template": "Message templates",
    "contact_import": "Contact imports (uploaded files)",
    "contact": "Contacts",
    "tag": "Tags",
    "webhook_inbox": "Received webhooks",
    "privacy_artifact": "Privacy exports and packages",
    "login_event": "Login history",
    "ab_user_role": "Role grants",
    "tenant_role": "Custom roles",
    "ab_user_group": "Group memberships",
    "ab_api_key": "API keys",
    "policy_acknowledgement": "Policy acknowledgements",
    "ab_user": "User accounts",
}
# Rows that belong to a user and go with the account (deleted or anonymised).
USER_LINK_TABLES = ("login_event", "ab_user_role", "ab_user_group", "ab_api_key")


@dataclass(frozen=True)
class Step:
    """Rows of one table to delete (or detach, or users to delete/anonymise)."""

    name: str
    table: Table
    where: ColumnElement[bool]
    key: str = "id"
    action: str = "delete"  # "delete" | "detach" | "users"

    @property
    def category(self) -> str:
        return CATEGORIES.get(self.name) or RETAINED.get(self.name, ("", self.name))[1]


def table_named(name: str) -> Table:
    return db.Model.metadata.tables[name]


def _tables_in_dependency_order() -> list[Table]:
    """Every table, children before parents (reverse topological order of the FKs)."""
    return list(reversed(db.Model.metadata.sorted_tables))


def _user_link_tables() -> list[Table]:
    """Tables whose rows belong to a user: CASCADE FKs to ab_user, and the login history."""
    found = {
        t.name
        for t in db.Model.metadata.tables.values()
        for fk in t.foreign_keys
        if fk.column.table.name == "ab_user" and fk.ondelete == "CASCADE" and t.name != "ab_user"
    }
    found.update(USER_LINK_TABLES)
    return [t for t in _tables_in_dependency_order() if t.name in found]


def _artifacts_step(request: PrivacyRequest, requests_where: ColumnElement[bool]) -> Step:
    pr, art = table_named("privacy_request"), table_named("privacy_artifact")
    others = select(pr.c.id).where(requests_where, pr.c.id != request.id)
    return Step("privacy_artifact", art, art.c.request_id.in_(others))


def _user_steps(users: Any) -> list[Step]:
    """Link rows of ``users`` (a select of ids), then the users themselves."""
    steps = [Step(t.name, t, t.c.user_id.in_(users)) for t in _user_link_tables()]
    steps.append(
        Step(
            "ab_user",
            table_named("ab_user"),
            table_named("ab_user").c.id.in_(users),
            action="users",
        )
    )
    return steps


def tenant_steps(request: PrivacyRequest) -> list[Step]:
    """Account closure: every tenant-owned table, children first; billing detached."""
    tenant_id = request.tenant_id
    steps: list[Step] = []
    user_table = table_named("ab_user")
    users = select(user_table.c.id).where(user_table.c.tenant_id == tenant_id)
    contacts = select(table_named("contact").c.id).where(
        table_named("contact").c.tenant_id == tenant_id
    )
    for table in _tables_in_dependency_order():
        if table.name == "ab_user":
            steps.append(
                _artifacts_step(request, table_named("privacy_request").c.tenant_id == tenant_id)
            )
            steps.extend(_user_steps(users))
        elif table is contact_tag:
            steps.append(Step("contact_tag", table, table.c.contact_id.in_(contacts), "contact_id"))
        elif table.name == "tenant_role":
            continue  # last, below: once their grants went with the users
        elif "tenant_id" in table.c and RETAINED.get(table.name, ("delete",))[0] != "keep":
            action = RETAINED.get(table.name, ("delete",))[0]
            steps.append(Step(table.name, table, table.c.tenant_id == tenant_id, action=action))
    # The tenant's own roles are FAB roles: deleting their ab_role rows takes the tenant
    # link and the permission rows with them (ON DELETE CASCADE). After the users, so the
    # grants are counted (and certified) as the users' rows.
    role, links = table_named("ab_role"), table_named("tenant_role")
    own = select(links.c.role_id).where(links.c.tenant_id == tenant_id)
    steps.append(Step("tenant_role", role, role.c.id.in_(own)))
    return steps


def contact_steps(request: PrivacyRequest) -> list[Step]:
    """A contact: its conversations, messages, recipients, consent log, tags."""
    tenant_id, contact_id = request.tenant_id, request.subject_contact_id
    msg, conv, rcp = (
        table_named("message"),
        table_named("conversation"),
        table_named("campaign_recipient"),
    )
    pending, consent, contact = (
        table_named("pending_status"),
        table_named("consent_event"),
        table_named("contact"),
    )
    convs = select(conv.c.id).where(conv.c.tenant_id == tenant_id, conv.c.contact_id == contact_id)
    message_ids = select(msg.c.wa_message_id).where(
        msg.c.tenant_id == tenant_id, msg.c.conversation_id.in_(convs)
    )
    recipient_ids = select(rcp.c.wa_message_id).where(rcp.c.contact_id == contact_id)
    mine = {"tenant_id": tenant_id, "contact_id": contact_id}
    return [
        Step(
            "pending_status",
            pending,
            and_(
                pending.c.tenant_id == tenant_id,
                or_(
                    pending.c.wa_message_id.in_(message_ids),
                    pending.c.wa_message_id.in_(recipient_ids),
                ),
            ),
        ),
        Step("message", msg, and_(msg.c.tenant_id == tenant_id, msg.c.conversation_id.in_(convs))),
        Step("campaign_recipient", rcp, _match(rcp, mine)),
        Step("consent_event", consent, _match(consent, mine)),
        Step("contact_tag", contact_tag, contact_tag.c.contact_id == contact_id, "contact_id"),
        Step("conversation", conv, _match(conv, mine)),
        _artifacts_step(request, table_named("privacy_request").c.subject_contact_id == contact_id),
        Step(
            "contact", contact, and_(contact.c.tenant_id == tenant_id, contact.c.id == contact_id)
        ),
    ]


def user_steps(request: PrivacyRequest) -> list[Step]:
    """A user account: its roles, keys and login history, then the account."""
    user_id = request.subject_user_id
    users = select(table_named("ab_user").c.id).where(table_named("ab_user").c.id == user_id)
    pr = table_named("privacy_request")
    return [_artifacts_step(request, pr.c.subject_user_id == user_id), *_user_steps(users)]


def _match(table: Table, values: dict[str, Any]) -> ColumnElement[bool]:
    return and_(*(table.c[k] == v for k, v in values.items()))


def steps_for(request: PrivacyRequest) -> list[Step]:
    """The steps of ``request``'s deletion, in the order they run.

    :raises DeletionError: if the request names no subject to delete.
    """
    kind = request.subject_kind
    if kind == SubjectKind.tenant and request.tenant_id is not None:
        return tenant_steps(request)
    if kind == SubjectKind.contact and request.subject_contact_id and request.tenant_id:
        return contact_steps(request)
    if kind == SubjectKind.user and request.subject_user_id is not None:
        return user_steps(request)
    raise DeletionError("Identify the subject of the request before planning its deletion.")


# ------------------------------------------------------------------------------ users


# A request's link to its subject becomes NULL (the request keeps its label): not a need.
SUBJECT_LINK = ("privacy_request", "subject_user_id")


def _references_to_users() -> list[tuple[Table, str]]:
    """Columns that point at ab_user.id (from the metadata's foreign keys)."""
    return [
        (t, fk.parent.name)
        for t in db.Model.metadata.tables.values()
        for fk in t.foreign_keys
        if fk.column.table.name == "ab_user" and fk.column.name == "id"
    ]


def referenced_users(ids: list[int], skip: set[str]) -> set[int]:
    """Which of ``ids`` something still needs: audit actor ids, rows outside ``skip``.

    A privacy request's link to its subject is not a need (it becomes NULL and the
    request keeps its label).
    """
    if not ids:
        return set()
    found = set(
        db.session.scalars(
            select(AuditEvent.actor_id).where(AuditEvent.actor_id.in_(ids)).distinct()
        )
    )
    for table, column in _references_to_users():
        if table.name in skip or (table.name, column) == SUBJECT_LINK:
            continue
        col = table.c[column]
        query = select(col).where(col.in_(ids)).distinct()
        if table.name == "ab_user":  # an account created by another one being deleted
            query = query.where(table.c.id.not_in(ids))
        found.update(db.session.scalars(query))
    return found


def anonymised_values(user_id: int) -> dict[str, Any]:
    """What an anonymised account keeps: nothing that identifies anyone."""
    return {
        "email": f"deleted-{user_id}@invalid",
        "username": f"deleted-{user_id}",
        "first_name": "",
        "last_name": "",
        "phone": None,
        "password": None,
        "active": False,
        "fs_uniquifier": uuid4().hex,
        "tf_primary_method": None,
        "tf_totp_secret": None,
        "tf_phone_number": None,
        "mf_recovery_codes": None,
        "us_totp_secrets": None,
        "last_login_ip": None,
        "current_login_ip": None,
        "created_by_fk": None,
        "changed_by_fk": None,
    }


def process_users(step: Step, ids: list[int], skip: set[str]) -> dict[str, int]:
    """Delete the users of ``ids`` nothing needs, anonymise the others; roles go."""
    users = step.table
    keep = referenced_users(ids, skip)
    gone = [i for i in ids if i not in keep]
    for table in _user_link_tables():  # roles and keys go either way
        db.session.execute(delete(table).where(table.c.user_id.in_(ids)))
    for user_id in sorted(keep):
        db.session.execute(
            update(users).where(users.c.id == user_id).values(**anonymised_values(user_id))
        )
    if gone:
        db.session.execute(delete(users).where(users.c.id.in_(gone)))
    return {"deleted": len(gone), "anonymised": len(keep)}
