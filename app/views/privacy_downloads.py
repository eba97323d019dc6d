"""Downloads of access packages and portability exports (issue 7, P20).

Three ways in, nothing else:

* the emailed link ``/privacy/download/<token>``: a signed token naming the artifact
  and a hash of the requester's email, for whoever holds that email;
* ``/privacy/downloads/<id>`` for a signed-in user who filed the request (in-app, or a
  tenant admin on behalf of a contact or the tenant), listed on their account page;
* the same URL for Compliance (the ``can_download`` permission on ``PrivacyDownloads``),
  linked from the request's page through `download_url`.

Anyone else gets 404, never 403, so an id reveals nothing. An expired artifact (or one
the retention purge removed) answers **410 Gone** with a page saying the link expired:
only someone who already holds a genuine link or may see the request gets that far, so
saying "expired" reveals nothing, and 410 is the status that means "this was here and
is gone for good". Each download is audited and counted; nothing is cached.
"""

from __future__ import annotations

from typing import Any

from flask import (
    Response,
    abort,
    current_app,
    g,
    redirect,
    request,
    stream_with_context,
    url_for,
)
from flask_appbuilder import AppBuilder, BaseView, expose
from flask_login import current_user
from sqlalchemy import select

from app.extensions import db
from app.models.mixins import utcnow
from app.models.privacy import PrivacyArtifact, PrivacyRequest
from app.services import access_package, audit

EXPIRED = (
    "This download link has expired. Downloads are kept for a limited time to protect "
    "your data: ask us again (reply to our email or file a new privacy request) and we "
    "will prepare a fresh copy."
)
PERMISSION = ("can_download", "PrivacyDownloads")


def download_url(artifact: PrivacyArtifact) -> str:
    """The signed-in download URL of an artifact (requester's account page, Compliance)."""
    return url_for("PrivacyDownloadView.artifact", artifact_id=artifact.id)


def is_requester(user: Any, req: PrivacyRequest) -> bool:
    """``user`` filed ``req``: about themselves, or for a contact or their own tenant."""
    if not getattr(user, "is_authenticated", False) or req.created_by_id != user.id:
        return False
    if req.subject_user_id == user.id:
        return True
    return user.tenant_id is not None and user.tenant_id == req.tenant_id


def downloads_for(user: Any) -> list[dict[str, Any]]:
    """The unexpired artifacts of requests ``user`` filed, newest first (account page)."""
    if not getattr(user, "is_authenticated", False):
        return []
    now = utcnow()
    rows = db.session.execute(
        select(PrivacyArtifact, PrivacyRequest)
        .join(PrivacyRequest, PrivacyRequest.id == PrivacyArtifact.request_id)
        .where(
            PrivacyRequest.created_by_id == user.id,
            (PrivacyArtifact.expires_at.is_(None)) | (PrivacyArtifact.expires_at > now),
        )
        .order_by(PrivacyArtifact.created_at.desc(), PrivacyArtifact.id.desc())
        .limit(20)
    ).all()
    return [
        {"artifact": artifact, "request": req, "url": download_url(artifact)}
        for artifact, req in rows
        if is_requester(user, req)
    ]


def _expired(artifact: PrivacyArtifact) -> bool:
    return artifact.expires_at is not None and artifact.expires_at <= utcnow()


class PrivacyDownloadView(BaseView):
    """Serves privacy artifacts to exactly the people allowed (see the module doc)."""

    route_base = "/privacy"
    default_view = "artifact"
    class_permission_name = PERMISSION[1]
    base_permissions = [PERMISSION[0]]

    @expose("/download/<token>")
    def by_token(self, token: str):
        """The emailed link: no sign-in, the signed token is the key."""
        parsed = access_package.read_download_token(token)
        if parsed is None:
            abort(404)
        artifact_id, email_hash = parsed
        artifact = db.session.get(PrivacyArtifact, artifact_id)
        if artifact is None:  # purged after expiry: the signature proves we issued it
            abort(410, EXPIRED)
        if not access_package.token_matches(artifact.request, email_hash):
            abort(404)
        return self._send(artifact, "emailed link")

    @expose("/downloads/<int:artifact_id>")
    def artifact(self, artifact_id: int):
        """A signed-in requester or Compliance; anyone else 404."""
        if not current_user.is_authenticated:
            return redirect(url_for("security.login", next=request.full_path))
        artifact = db.session.get(PrivacyArtifact, artifact_id)
        if artifact is None:
            abort(404)
        if self._is_compliance():
            via = "compliance"
        elif is_requester(current_user, artifact.request):
            via = "account"
        else:
            abort(404)
        return self._send(artifact, via)

    def _is_compliance(self) -> bool:
        if "user" not in g:  # FAB's has_access reads g.user
            g.user = current_user
        return bool(self.appbuilder.sm.has_access(*PERMISSION))

    def _send(self, artifact: PrivacyArtifact, via: str) -> Response:
        if _expired(artifact):
            abort(410, EXPIRED)
        req = artifact.request
        artifact.downloads = PrivacyArtifact.downloads + 1  # atomic in SQL
        audit.record(
            "privacy_artifact.downloaded",
            artifact,
            tenant_id=req.tenant_id,
            artifact_id=artifact.id,
            request_id=req.id,
            kind=str(artifact.kind),
            via=via,
        )
        # Plain values for the response: the body streams after this view returns.
        ident, size, filename = artifact.id, artifact.size, artifact.filename
        mimetype = artifact.content_type
        db.session.commit()
        response = Response(
            stream_with_context(access_package.iter_content(ident, size)), mimetype=mimetype
        )
        response.headers["Content-Length"] = str(size)
        response.headers["Content-Disposition"] = f'attachment; filename="{filename}"'
        response.headers["Cache-Control"] = "no-store"
        response.headers["Pragma"] = "no-cache"
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response


def register(appbuilder: AppBuilder) -> None:
    """Add the download view and the account page's list helper (called by the factory)."""
    appbuilder.add_view_no_menu(PrivacyDownloadView)
    current_app.jinja_env.globals["privacy_downloads_for"] = downloads_for
