"""Access packages and portability exports (queue ``privacy``; issue 7, P20).

`schedule_package` is what a view calls (before its commit); the job builds the
request's package once (an unexpired artifact of that kind means done), records an
audit event with sizes and row counts only, and emails the requester a signed link.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from flask import current_app, has_request_context
from flask import request as http_request
from sqlalchemy import func, select

from app.extensions import db
from app.jobs import enqueue_after_commit
from app.jobs._runtime import job
from app.jobs.mail import send_email
from app.models.privacy import ArtifactKind, PrivacyRequest, RequestStatus, RequestType
from app.services import access_package, audit, mail
from app.tenancy import assignee_scope

KINDS = {
    RequestType.access: ArtifactKind.access_package,
    RequestType.portability: ArtifactKind.portability_export,
}
# A package is not built for a requester whose identity is unconfirmed, nor after a
# rejection.
REFUSED = (RequestStatus.identity_pending, RequestStatus.rejected)
# The emailed link's route (app/views/privacy_downloads.py).
TOKEN_ENDPOINT = "PrivacyDownloadView.by_token"  # noqa: S105 - an endpoint, not a secret


def schedule_package(request_id: int, base_url: str | None = None) -> None:
    """Build the request's package once the current transaction commits.

    ``base_url`` roots the emailed link (default: this request's URL root, else
    ``SERVER_NAME``).
    """
    request = db.session.get(PrivacyRequest, request_id)
    if request is None or request.request_type not in KINDS:
        raise ValueError(f"privacy request {request_id} is not an access or portability request")
    if base_url is None and has_request_context():
        base_url = http_request.url_root
    enqueue_after_commit(
        "privacy", build_package, request_id, base_url=base_url, tenant_id=request.tenant_id
    )


@job
def build_package(
    request_id: int, base_url: str | None = None, tenant_id: int | None = None
) -> dict[str, Any]:
    """Build (once) the access package or portability export, then email the link."""
    request = db.session.get(PrivacyRequest, request_id)
    if request is None:
        return {"skipped": 1}
    kind = KINDS[request.request_type]
    if request.status in REFUSED:
        return {"skipped": 1}
    if not _lock(request_id) or access_package.current_artifact(request, kind) is not None:
        return {"skipped": 1}  # another run holds it, or it is already built
    with assignee_scope(None):  # the whole subject, whoever queued the job
        if kind == ArtifactKind.access_package:
            artifact = access_package.build(request)
        else:
            artifact = access_package.build_portability(request)
    counts: dict[str, int] = artifact.counts  # type: ignore[attr-defined]
    audit.record(
        "privacy_artifact.created",
        request,
        tenant_id=request.tenant_id,
        artifact_id=artifact.id,
        kind=str(kind),
        bytes=artifact.size,
        sha256=artifact.sha256,
        rows=sum(counts.values()),
        row_counts=[f"{name}:{n}" for name, n in counts.items()],  # audit keeps lists
        expires_at=artifact.expires_at.isoformat() if artifact.expires_at else None,
    )
    token = access_package.download_token(artifact, request)
    link = external_url(TOKEN_ENDPOINT, base_url, token=token)
    enqueue_after_commit("mail", send_email, ready_email(request, artifact, link))
    return {"artifact_id": artifact.id, "bytes": artifact.size, "rows": sum(counts.values())}


def ready_email(request: PrivacyRequest, artifact: Any, link: str) -> dict[str, Any]:
    """The "your data is ready" message (JSON-safe payload for the mail job)."""
    what = (
        "a copy of the personal data we hold"
        if artifact.kind == ArtifactKind.access_package
        else "the contact export"
    )
    body = (
        "Hello,\n\n"
        f"As you asked in privacy request {request.reference}, {what} is ready:\n"
        f"{link}\n\n"
        f"The link works until {artifact.expires_at:%d %b %Y %H:%M} UTC. It is meant for "
        "you alone: do not forward this email.\n\n"
        "The ZIP file opens on any computer; README.txt inside explains each file.\n\n"
        "Woffice Privacy\n"
    )
    return mail.message_payload(
        to=request.requester_email,
        subject=f"Your privacy request {request.reference}: your download is ready",
        body=body,
    )


def _lock(request_id: int) -> bool:
    """One build per request at a time (PostgreSQL advisory lock until the commit)."""
    if db.session.get_bind().dialect.name != "postgresql":
        return True
    key = 0x70726976 * 1_000_000 + request_id  # "priv" + the id: apart from other locks
    return bool(db.session.scalar(select(func.pg_try_advisory_xact_lock(key))))


def external_url(endpoint: str, base_url: str | None, **values: Any) -> str:
    """An absolute URL outside any HTTP request, rooted at ``base_url``."""
    if not base_url:
        scheme = current_app.config.get("PREFERRED_URL_SCHEME", "http")
        base_url = f"{scheme}://{current_app.config.get('SERVER_NAME') or 'localhost'}/"
    parts = urlsplit(base_url)
    adapter = current_app.url_map.bind(
        parts.netloc, script_name=parts.path.rstrip("/") or "/", url_scheme=parts.scheme
    )
    return adapter.build(endpoint, values, force_external=True)
