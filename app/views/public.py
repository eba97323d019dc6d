"""Pages reached without a session: invitation acceptance and health checks."""

from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, url_for
from flask_security import login_user
from flask_wtf import FlaskForm
from sqlalchemy import text
from wtforms import BooleanField, PasswordField, SubmitField
from wtforms.validators import DataRequired, EqualTo

from app.extensions import db
from app.models.mixins import utcnow
from app.services import users
from app.services.exceptions import InvitationInvalidError, UserValidationError

invitation = Blueprint("invitation", __name__, url_prefix="/invitation")
health = Blueprint("health", __name__, url_prefix="/health")


class AcceptInvitationForm(FlaskForm):
    password = PasswordField("New password", validators=[DataRequired()])
    password_confirm = PasswordField(
        "Repeat the password",
        validators=[DataRequired(), EqualTo("password", message="The passwords differ.")],
    )
    age_confirm = BooleanField(
        "I confirm that I am 18 years of age or older.",
        validators=[DataRequired(message="Woffice accounts are for adults (18+) only.")],
    )
    submit = SubmitField("Set password and sign in")


@invitation.route("/<token>", methods=["GET", "POST"])
def accept(token: str):
    """Show the invited user a set-password form; on success sign them in."""
    try:
        user = users.user_for_invitation(db.session, token)
    except InvitationInvalidError as exc:
        return render_template("woffice/invitation.html", error=str(exc), title="Invitation"), 410
    form = AcceptInvitationForm()
    if form.validate_on_submit():
        try:
            users.accept_invitation(db.session, token, form.password.data)
        except UserValidationError as exc:
            form.password.errors.append(str(exc))
        else:
            user.age_confirmed_at = utcnow()
            login_user(user, authn_via=["invitation"])
            db.session.commit()
            flash("Your password is set. Welcome to Woffice!", "success")
            return redirect(url_for("HomeView.index"))
    return render_template(
        "woffice/invitation.html", form=form, user=user, error=None, title="Set your password"
    )


@health.route("/live")
def live():
    """Liveness: the process answers."""
    return {"status": "ok"}


@health.route("/ready")
def ready():
    """Readiness: the database answers."""
    try:
        db.session.execute(text("SELECT 1"))
    except Exception as exc:  # noqa: BLE001 - report any database failure as not ready
        return {"status": "unavailable", "database": type(exc).__name__}, 503
    return {"status": "ok", "database": "ok"}
