"""SQLAlchemy models, one module per aggregate. Importing this package maps them all."""

from app.models.audit import AuditChainHead, AuditEvent
from app.models.campaign import (
    Campaign,
    CampaignRecipient,
    CampaignStatus,
    MessageTemplate,
    RecipientStatus,
    SkipReason,
    TemplateCategory,
    TemplateStatus,
)
from app.models.contact import (
    ConsentAction,
    ConsentEvent,
    ConsentSource,
    ConsentState,
    Contact,
    Tag,
    contact_tag,
)
from app.models.contact_import import ContactImport, ImportStatus
from app.models.conversation import (
    Conversation,
    ConversationStatus,
    Message,
    MessageDirection,
    MessageStatus,
    PendingStatus,
    WebhookInbox,
)
from app.models.login_event import LoginEvent
from app.models.mixins import TenantOwned
from app.models.tenant import Tenant, TenantStatus
from app.models.user import AppUser, Role

__all__ = [
    "Campaign",
    "CampaignRecipient",
    "CampaignStatus",
    "MessageTemplate",
    "RecipientStatus",
    "SkipReason",
    "TemplateCategory",
    "TemplateStatus",
    "ConsentAction",
    "ConsentEvent",
    "ConsentSource",
    "ConsentState",
    "Contact",
    "ContactImport",
    "Conversation",
    "ConversationStatus",
    "Message",
    "MessageDirection",
    "MessageStatus",
    "ImportStatus",
    "PendingStatus",
    "Tag",
    "WebhookInbox",
    "contact_tag",
    "AuditChainHead",
    "AuditEvent",
    "AppUser",
    "LoginEvent",
    "Role",
    "Tenant",
    "TenantOwned",
    "TenantStatus",
]
