"""The workflow buttons of a privacy request (issue 7): one handler per action, each a
service call. A handler returns the flash message; a refusal raises `WofficeError`.
Jobs are scheduled by their modules' ``schedule_*`` helpers, which enqueue once the
request's transaction commits.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from werkzeug.routing import BuildError

from app.jobs.access import schedule_package
from app.jobs.deletion import schedule_deletion
from app.models.privacy import PrivacyRequest, RequestStatus, RequestType
from app.models.user import AppUser
from app.services import privacy, privacy_intake, privacy_resolutions
from app.services.deletion import build_plan
from app.services.exceptions import ValidationError, WofficeError
from app.views._format import ist
from app.views.privacy_downloads import download_url

# --------------------------------------------------------------------- handlers
# Each takes (request, actor, form data) and returns the flash message.

Result = str


def _confirm(req: PrivacyRequest, actor: AppUser, data: Any) -> Result:
    privacy.confirm_identity(req, actor)
    return "Identity confirmed: the request is received."


def _assign(req: PrivacyRequest, actor: AppUser, data: Any) -> Result:
    assignee = privacy_intake.assign_compliance(req, data.get("assignee_id", ""), actor)
    if assignee is None:
        return "Unassigned."
    return f"Assigned to {assignee.first_name} {assignee.last_name}."


def _start(req: PrivacyRequest, actor: AppUser, data: Any) -> Result:
    privacy.start(req, actor)
    return "Request in progress."


def _extend(req: PrivacyRequest, actor: AppUser, data: Any) -> Result:
    try:
        days = int(data.get("days", ""))
    except ValueError as exc:
        raise ValidationError("Extend by a whole number of business days.", "days") from exc
    privacy.extend(req, days, data.get("reason", ""), actor)
    return f"Deadline extended to {ist(req.due_at)}."


def _reject(req: PrivacyRequest, actor: AppUser, data: Any) -> Result:
    privacy.reject(req, data.get("reason", ""), actor)
    return "Request rejected."


def _prepare(req: PrivacyRequest, actor: AppUser, data: Any) -> Result:
    if req.status == RequestStatus.received:
        privacy.start(req, actor)
    privacy.submit_for_approval(req, actor, build_plan(req))
    return "Deletion prepared: another Compliance user must approve it."


def _approve(req: PrivacyRequest, actor: AppUser, data: Any) -> Result:
    privacy.approve(req, actor)
    schedule_deletion(req.id)  # enqueued when this approval commits
    return "Deletion approved: the deletion job is running."


def _return(req: PrivacyRequest, actor: AppUser, data: Any) -> Result:
    if req.approved_by_id is not None:
        raise WofficeError("An approved deletion cannot be sent back.")
    privacy.move(req, RequestStatus.in_progress, actor)
    return "Sent back to in progress."


def _package(req: PrivacyRequest, actor: AppUser, data: Any) -> Result:
    if req.request_type not in (RequestType.access, RequestType.portability):
        raise WofficeError("Only access and portability requests produce a package.")
    if req.status != RequestStatus.in_progress:
        raise WofficeError("Start the request before building its package.")
    schedule_package(req.id)  # enqueued when this transaction commits
    return "The package is being built; the requester is emailed a link when it is ready."


def _correct(req: PrivacyRequest, actor: AppUser, data: Any) -> Result:
    privacy_resolutions.record_correction(
        req,
        actor,
        where=data.get("where", ""),
        fields=data.get("fields", "").split(","),
        event_ids=[int(i) for i in data.getlist("event_ids") if str(i).isdigit()],
        note=data.get("note", ""),
    )
    return "Correction recorded; the request is completed."


def _object(req: PrivacyRequest, actor: AppUser, data: Any) -> Result:
    return privacy_resolutions.apply_objection(req, actor) + " Request completed."


def _complete(req: PrivacyRequest, actor: AppUser, data: Any) -> Result:
    if req.request_type in (RequestType.correction, RequestType.objection):
        raise WofficeError(f"Complete a {req.request_type} with its own form.")
    privacy.complete(req, actor, resolution=data.get("reason", ""))
    return "Request completed."


ACTIONS: dict[str, Callable[[PrivacyRequest, AppUser, Any], Result]] = {
    "confirm_identity": _confirm,
    "assign": _assign,
    "start": _start,
    "extend": _extend,
    "reject": _reject,
    "prepare": _prepare,
    "approve": _approve,
    "return": _return,
    "build_package": _package,
    "correct": _correct,
    "apply_objection": _object,
    "complete": _complete,
}


def artifact_url(artifact: Any) -> str | None:
    """The download link of a request's file (app/views/privacy_downloads.py)."""
    try:
        return download_url(artifact)
    except BuildError:  # the downloads view is not registered
        return None
