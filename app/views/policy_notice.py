"""The in-app policy notice (P24) and the age attestation prompt (P23).

Every signed-in page (``woffice/base.html``) includes ``woffice/_policy_banner.html``,
which asks `policy_notice()` what to show: the latest published policy version until
the user acknowledges it ("I have read it", a POST), and, for an account that never
attested its age (created outside the invitation flow), "I am 18 or older".

Public: ``/privacy-policy/versions/<label>`` shows any published version, including one
that is announced but not in force yet (the notice email links to it). The policy in
force is ``/privacy-policy`` (`app.views.privacy_public`).
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Flask, abort, flash, g, redirect, render_template, request
from flask_login import current_user, login_required
from flask_wtf import FlaskForm
from sqlalchemy.exc import SQLAlchemyError

from app.extensions import db
from app.models.mixins import utcnow
from app.models.privacy import PolicyVersion
from app.services import minors, policy
from app.services.exceptions import WofficeError

policy_notice = Blueprint("policy_notice", __name__)


def _back() -> str:
    """Where to return after a banner POST: a local path only."""
    target = request.form.get("next") or "/"
    return target if target.startswith("/") and not target.startswith("//") else "/"


def notice_for_current_user() -> dict[str, Any] | None:
    """What the banner shows the signed-in user (cached per request), or None."""
    if not getattr(current_user, "is_authenticated", False):
        return None
    if "_policy_notice" not in g:
        try:
            version = policy.needs_acknowledgement(current_user)
        except SQLAlchemyError:  # an error page after a failed transaction: no banner
            db.session.rollback()
            version = None
        g._policy_notice = {
            "version": version,
            "upcoming": bool(version and version.effective_at > utcnow()),
            "age_missing": current_user.age_confirmed_at is None,
        }
    notice = g._policy_notice
    return notice if notice["version"] is not None or notice["age_missing"] else None


@policy_notice.route("/policy/acknowledge", methods=["POST"])
@login_required
def acknowledge():
    """ "I have read it": record the acknowledgement of a published version."""
    if not FlaskForm().validate_on_submit():
        abort(400, description="The form expired; reload the page and try again.")
    version = db.session.get(PolicyVersion, request.form.get("version_id", type=int) or 0)
    if version is None or version.published_at is None:
        abort(404)
    policy.acknowledge(current_user, version)
    db.session.commit()
    flash(f"Thank you: privacy policy {version.version} acknowledged.", "success")
    return redirect(_back())


@policy_notice.route("/policy/confirm-age", methods=["POST"])
@login_required
def confirm_age():
    """ "I am 18 or older": the user's own attestation."""
    if not FlaskForm().validate_on_submit():
        abort(400, description="The form expired; reload the page and try again.")
    if request.form.get("age_confirm") != "y":
        flash("Tick the box to confirm that you are 18 or older.", "danger")
        return redirect(_back())
    try:
        minors.confirm_age(current_user)
    except WofficeError as exc:
        flash(str(exc), "danger")
        return redirect(_back())
    db.session.commit()
    flash("Thank you: your age is confirmed.", "success")
    return redirect(_back())


@policy_notice.route("/privacy-policy/versions/<label>")
def version(label: str):
    """A published version's full text (public, also before it takes effect)."""
    found = policy.published_version(label)
    if found is None:
        abort(404)
    return render_template(
        "woffice/policy_version_public.html",
        version=found,
        in_force=policy.current_policy(),
        title=f"Privacy policy {found.version}",
    )


def install(app: Flask) -> None:
    """Register the notice routes and the banner's template helper."""
    app.register_blueprint(policy_notice)
    app.add_template_global(notice_for_current_user, "policy_notice")
