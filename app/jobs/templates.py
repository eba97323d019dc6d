"""Message template jobs (queue ``default``)."""

from __future__ import annotations

from typing import Any

from rq import get_current_job

from app.extensions import db
from app.jobs import release_coalesced
from app.jobs._runtime import job
from app.models.tenant import Tenant
from app.services import audit
from app.services.exceptions import SecretDecryptionError
from app.services.templates import (
    SYNC_DONE,
    SYNC_FAILED,
    failure_message,
    sync_templates,
)
from app.services.whatsapp import WhatsAppError, WhatsAppNotConfiguredError


def sync_coalesce_key(tenant_id: int) -> str:
    """One queued sync per tenant at a time (double clicks cost one job)."""
    return f"templates-sync:{int(tenant_id)}"


@job
def sync_tenant_templates(
    tenant_id: int | None = None, actor_id: int | None = None
) -> dict[str, Any]:
    """Sync the tenant's templates from its WABA; the outcome is audited either way.

    A missing setting, a refused token (190) or any permanent Cloud API error ends the
    job with a ``templates.sync_failed`` event the Templates screen shows. A transient
    failure (network, 5xx, rate limit) is raised while RQ has retries left, so it backs
    off and tries again, and recorded like the others on the last attempt (or inline).
    """
    if tenant_id is None:
        return {"outcome": "no_tenant"}
    release_coalesced(sync_coalesce_key(tenant_id))
    tenant = db.session.get(Tenant, tenant_id)
    if tenant is None:
        return {"outcome": "no_tenant"}
    try:
        counts = sync_templates(db.session, tenant)
    except (WhatsAppNotConfiguredError, SecretDecryptionError) as exc:
        return _failed(tenant_id, "not_configured", failure_message(exc))
    except WhatsAppError as exc:
        if exc.retryable and _retries_left():
            raise
        return _failed(tenant_id, "failed", failure_message(exc), code=exc.code)
    audit.record(SYNC_DONE, tenant_id=tenant_id, **counts)
    return {"outcome": "synced", **counts}


def _failed(tenant_id: int, outcome: str, message: str, code: int | None = None) -> dict:
    db.session.rollback()  # nothing of a failed sync is kept
    audit.record(SYNC_FAILED, tenant_id=tenant_id, outcome=outcome, code=code, message=message)
    return {"outcome": outcome, "code": code}


def _retries_left() -> bool:
    rq_job = get_current_job()
    return bool(rq_job is not None and rq_job.retries_left)
