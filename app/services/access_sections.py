"""What an access package holds (P20): one `Section` per file pair, per kind of subject.

Each section is a column select (no ORM objects: rows stream from a server-side cursor
in constant memory) filtered explicitly to the subject and its tenant, in a stable
order. Columns are allow-listed: password hashes, TOTP secrets, recovery codes,
``fs_uniquifier``, the tenant's WhatsApp secrets, stored files (import uploads, invoice
PDFs) and internal keyed hashes are never selected.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, or_, select
from sqlalchemy.orm import InstrumentedAttribute

from app.models.billing import Invoice, Payment, Subscription
from app.models.campaign import Campaign, CampaignRecipient, MessageTemplate
from app.models.contact import ConsentEvent, Contact, Tag, contact_tag
from app.models.contact_import import ContactImport
from app.models.conversation import Conversation, Message
from app.models.login_event import LoginEvent
from app.models.privacy import PolicyAcknowledgement, PolicyVersion, PrivacyRequest
from app.models.tenant import Tenant
from app.models.user import AppUser, Role, assoc_user_role

# Never exported, whatever a section lists (checked by `_cols` and by the tests).
SECRET_COLUMNS = frozenset(
    {
        "password",
        "fs_uniquifier",
        "tf_totp_secret",
        "tf_phone_number",
        "mf_recovery_codes",
        "us_totp_secrets",
        "wa_access_token",
        "wa_app_secret",
        "identity_hash",
        "content",
        "errors_csv",
        "pdf",
    }
)

USER_COLUMNS = (
    "id",
    "first_name",
    "last_name",
    "username",
    "email",
    "phone",
    "active",
    "tenant_id",
    "created_on",
    "changed_on",
    "confirmed_at",
    "password_changed_at",
    "tf_primary_method",
    "last_login_at",
    "last_login_ip",
    "current_login_at",
    "current_login_ip",
    "login_count",
    "fail_login_count",
    "age_confirmed_at",
    "minor_flagged_at",
    "analytics_objection_at",
)
CONTACT_COLUMNS = (
    "id",
    "phone",
    "wa_id",
    "display_name",
    "profile_name",
    "email",
    "notes",
    "consent_state",
    "marketing_objection",
    "last_inbound_at",
    "created_at",
    "updated_at",
)
CONSENT_COLUMNS = (
    "id",
    "contact_id",
    "action",
    "source",
    "evidence",
    "occurred_at",
    "recorded_by_id",
)
CONVERSATION_COLUMNS = (
    "id",
    "contact_id",
    "status",
    "assignee_id",
    "created_at",
    "updated_at",
    "last_message_at",
)
MESSAGE_COLUMNS = (
    "id",
    "conversation_id",
    "direction",
    "type",
    "body",
    "status",
    "wa_message_id",
    "campaign_id",
    "created_at",
    "sent_at",
    "delivered_at",
    "read_at",
    "failed_at",
    "error_code",
    "error_title",
)
RECIPIENT_COLUMNS = (
    "id",
    "campaign_id",
    "contact_id",
    "status",
    "skip_reason",
    "wa_id",
    "parameters",
    "wa_message_id",
    "previous_message_ids",
    "attempts",
    "created_at",
    "sent_at",
    "delivered_at",
    "read_at",
    "failed_at",
    "replied_at",
    "error_code",
    "error_title",
)
REQUEST_COLUMNS = (
    "id",
    "request_type",
    "subject_kind",
    "channel",
    "status",
    "received_at",
    "due_at",
    "completed_at",
)
TENANT_COLUMNS = (
    "id",
    "name",
    "legal_name",
    "slug",
    "status",
    "contact_email",
    "contact_phone",
    "billing_email",
    "gstin",
    "address_line1",
    "address_line2",
    "city",
    "state_code",
    "postal_code",
    "wa_phone_number_id",
    "wa_business_account_id",
    "wa_display_number",
    "wa_messaging_limit_mps",
    "created_at",
    "updated_at",
)


@dataclass(frozen=True)
class Section:
    """One table of the package, written as ``<name>.json`` and ``<name>.csv``."""

    name: str
    description: str
    stmt: Select[Any]

    @property
    def headers(self) -> list[str]:
        return [column.key for column in self.stmt.selected_columns]


def _cols(model: type, names: tuple[str, ...]) -> list[Any]:
    """Labelled columns of ``model``; refuses any secret column."""
    leaked = SECRET_COLUMNS.intersection(names)
    if leaked:
        raise ValueError(f"secret columns in an access package: {sorted(leaked)}")
    cols: list[Any] = []
    for name in names:
        attr: InstrumentedAttribute[Any] = getattr(model, name)
        cols.append(attr.label(name))
    return cols


def _requests(criteria: Any) -> Section:
    return Section(
        "privacy_requests",
        "Privacy requests about you and their progress (requester details left out).",
        select(*_cols(PrivacyRequest, REQUEST_COLUMNS)).where(criteria).order_by(PrivacyRequest.id),
    )


def _memberships(criteria: Any) -> Section:
    stmt = (
        select(
            AppUser.id.label("user_id"),
            AppUser.tenant_id.label("tenant_id"),
            Tenant.slug.label("tenant_slug"),
            Tenant.name.label("tenant_name"),
            Role.name.label("role"),
        )
        .join(assoc_user_role, assoc_user_role.c.user_id == AppUser.id)
        .join(Role, Role.id == assoc_user_role.c.role_id)
        .outerjoin(Tenant, Tenant.id == AppUser.tenant_id)
        .where(criteria)
        .order_by(AppUser.id, Role.name)
    )
    return Section("memberships", "The business each account belongs to and its roles.", stmt)


def _logins(criteria: Any, *joins: Any) -> Section:
    stmt = select(
        LoginEvent.user_id.label("user_id"),
        *_cols(LoginEvent, ("occurred_at", "ip", "user_agent", "success", "outcome")),
    )
    for join in joins:
        stmt = stmt.join(*join)
    return Section(
        "logins",
        "Sign-ins, failed sign-in attempts and sign-outs: time (UTC), IP address, browser.",
        stmt.where(criteria).order_by(LoginEvent.id),
    )


def user_sections(user_id: int) -> list[Section]:
    """An account user: account data, memberships, logins, requests, policy notices."""
    acks = (
        select(
            PolicyVersion.version.label("policy_version"),
            PolicyAcknowledgement.acknowledged_at.label("acknowledged_at"),
        )
        .join(PolicyVersion, PolicyVersion.id == PolicyAcknowledgement.policy_version_id)
        .where(PolicyAcknowledgement.user_id == user_id)
        .order_by(PolicyAcknowledgement.id)
    )
    return [
        Section(
            "account",
            "Your account: name, email, phone, status, sign-in and two-factor settings "
            "(the method only; passwords and secrets are never exported).",
            select(*_cols(AppUser, USER_COLUMNS)).where(AppUser.id == user_id),
        ),
        _memberships(AppUser.id == user_id),
        _logins(LoginEvent.user_id == user_id),
        _requests(
            or_(PrivacyRequest.subject_user_id == user_id, PrivacyRequest.created_by_id == user_id)
        ),
        Section("policy_acknowledgements", "Privacy policy versions you acknowledged.", acks),
    ]


def contact_sections(tenant_id: int, contact_id: int) -> list[Section]:
    """A contact of a tenant: record, tags, consent log, conversations, messages."""
    conversation_ids = select(Conversation.id).where(
        Conversation.tenant_id == tenant_id, Conversation.contact_id == contact_id
    )
    return [
        Section(
            "contact",
            "Your contact record as the business holds it.",
            select(*_cols(Contact, CONTACT_COLUMNS)).where(
                Contact.tenant_id == tenant_id, Contact.id == contact_id
            ),
        ),
        Section(
            "tags",
            "Tags the business put on your contact record.",
            select(Tag.name.label("tag"))
            .join(contact_tag, contact_tag.c.tag_id == Tag.id)
            .where(Tag.tenant_id == tenant_id, contact_tag.c.contact_id == contact_id)
            .order_by(Tag.name),
        ),
        Section(
            "consent_log",
            "Every opt-in, opt-out and objection recorded for you, with its source.",
            select(*_cols(ConsentEvent, CONSENT_COLUMNS))
            .where(ConsentEvent.tenant_id == tenant_id, ConsentEvent.contact_id == contact_id)
            .order_by(ConsentEvent.id),
        ),
        Section(
            "conversations",
            "Your WhatsApp conversations with the business.",
            select(*_cols(Conversation, CONVERSATION_COLUMNS))
            .where(Conversation.id.in_(conversation_ids))
            .order_by(Conversation.id),
        ),
        Section(
            "messages",
            "Every message of those conversations, with its text and delivery status.",
            select(*_cols(Message, MESSAGE_COLUMNS))
            .where(Message.tenant_id == tenant_id, Message.conversation_id.in_(conversation_ids))
            .order_by(Message.conversation_id, Message.id),
        ),
        Section(
            "campaign_messages",
            "Campaigns you were included in, what was sent and whether it arrived.",
            select(
                Campaign.name.label("campaign_name"), *_cols(CampaignRecipient, RECIPIENT_COLUMNS)
            )
            .join(Campaign, Campaign.id == CampaignRecipient.campaign_id)
            .where(
                CampaignRecipient.tenant_id == tenant_id,
                CampaignRecipient.contact_id == contact_id,
            )
            .order_by(CampaignRecipient.id),
        ),
        _requests(PrivacyRequest.subject_contact_id == contact_id),
    ]


def _tenant_rows(model: Any, names: tuple[str, ...], tenant_id: int) -> Select[Any]:
    return select(*_cols(model, names)).where(model.tenant_id == tenant_id).order_by(model.id)


def tenant_sections(tenant_id: int) -> list[Section]:
    """A whole tenant: its record, users, contacts, conversations, campaigns, billing."""
    return [
        Section(
            "tenant",
            "The business's record (WhatsApp access token and app secret left out).",
            select(*_cols(Tenant, TENANT_COLUMNS)).where(Tenant.id == tenant_id),
        ),
        Section(
            "users",
            "The team's accounts (passwords and two-factor secrets left out).",
            _tenant_rows(AppUser, USER_COLUMNS, tenant_id),
        ),
        _memberships(AppUser.tenant_id == tenant_id),
        _logins(AppUser.tenant_id == tenant_id, (AppUser, AppUser.id == LoginEvent.user_id)),
        Section("tags", "Contact tags.", _tenant_rows(Tag, ("id", "name"), tenant_id)),
        Section("contacts", "Contacts.", _tenant_rows(Contact, CONTACT_COLUMNS, tenant_id)),
        Section(
            "contact_tags",
            "Which contact has which tag.",
            select(
                contact_tag.c.contact_id.label("contact_id"), contact_tag.c.tag_id.label("tag_id")
            )
            .join(Tag, Tag.id == contact_tag.c.tag_id)
            .where(Tag.tenant_id == tenant_id)
            .order_by(contact_tag.c.contact_id, contact_tag.c.tag_id),
        ),
        Section(
            "consent_log",
            "The contacts' consent log.",
            _tenant_rows(ConsentEvent, CONSENT_COLUMNS, tenant_id),
        ),
        Section(
            "conversations",
            "Conversations.",
            _tenant_rows(Conversation, CONVERSATION_COLUMNS, tenant_id),
        ),
        Section("messages", "Messages.", _tenant_rows(Message, MESSAGE_COLUMNS, tenant_id)),
        Section(
            "message_templates",
            "WhatsApp message templates.",
            _tenant_rows(
                MessageTemplate,
                ("id", "wa_template_id", "name", "language", "category", "status")
                + ("parameter_format", "components", "rejected_reason", "synced_at"),
                tenant_id,
            ),
        ),
        Section(
            "campaigns",
            "Campaigns.",
            _tenant_rows(
                Campaign,
                ("id", "name", "template_id", "parameter_mapping", "include_tag_ids")
                + ("include_mode", "exclude_tag_ids", "status", "scheduled_at", "launched_at")
                + ("completed_at", "created_by_id", "recipient_count", "skipped_count"),
                tenant_id,
            ),
        ),
        Section(
            "campaign_recipients",
            "Campaign recipients and their delivery.",
            _tenant_rows(CampaignRecipient, RECIPIENT_COLUMNS, tenant_id),
        ),
        Section(
            "contact_imports",
            "Contact imports (file name and counts; the uploaded files are not included).",
            _tenant_rows(
                ContactImport,
                ("id", "created_at", "created_by_id", "filename", "status", "total_rows")
                + ("created_count", "updated_count", "unchanged_count", "error_count")
                + ("finished_at",),
                tenant_id,
            ),
        ),
        Section(
            "subscriptions",
            "Subscriptions.",
            _tenant_rows(
                Subscription,
                ("id", "plan_id", "dodo_subscription_id", "status", "current_period_start")
                + ("next_billing_date", "cancel_at_period_end", "tax_id")
                + ("customer_business_name", "created_at"),
                tenant_id,
            ),
        ),
        Section(
            "payments",
            "Payments (no card or UPI details are ever stored).",
            _tenant_rows(
                Payment,
                ("id", "dodo_payment_id", "customer_email", "status", "currency")
                + ("total_amount", "tax_amount", "refunded_amount", "payment_method_type")
                + ("billing_state", "billing_country", "paid_at"),
                tenant_id,
            ),
        ),
        Section(
            "invoices",
            "GST invoices and credit notes (amounts in paise; the PDFs are on the Invoices "
            "screen).",
            _tenant_rows(
                Invoice,
                ("id", "doc_type", "number", "issue_date", "buyer", "buyer_gstin")
                + ("place_of_supply", "lines", "taxable_total", "cgst_total", "sgst_total")
                + ("utgst_total", "igst_total", "round_off", "grand_total", "note"),
                tenant_id,
            ),
        ),
        _requests(PrivacyRequest.tenant_id == tenant_id),
    ]
