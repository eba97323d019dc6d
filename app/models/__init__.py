"""SQLAlchemy models, one module per aggregate. Importing this package maps them all."""

from app.models.audit import AuditChainHead, AuditEvent
from app.models.login_event import LoginEvent
from app.models.mixins import TenantOwned
from app.models.tenant import Tenant, TenantStatus
from app.models.user import AppUser, Role

__all__ = [
    "AuditChainHead",
    "AuditEvent",
    "AppUser",
    "LoginEvent",
    "Role",
    "Tenant",
    "TenantOwned",
    "TenantStatus",
]
