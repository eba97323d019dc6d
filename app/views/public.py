"""Pages reached without a session: invitation acceptance and health checks."""

from __future__ import annotations

from flask import Blueprint, current_app, flash, redirect, render_template, url_for
from flask_security import login_user
from flask_wtf import FlaskForm
from redis import Redis
from redis.exceptions import RedisError
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
    """Liveness: the process answers (no dependency is checked, so a database outage
    does not make the orchestrator restart every web process)."""
    return {"status": "ok"}


@health.route("/ready")
def ready():
    """Readiness: the database answers, Redis answers (unless jobs run inline) and the
    database is at the migrations head. 503 names what failed, so the load balancer
    sends no traffic to a node that would fail or write to a schema it does not expect.
    """
    checks = {
        "database": _check_database(),
        "redis": _check_redis(),
    }
    checks["migrations"] = _check_migrations() if checks["database"] == "ok" else "not checked"
    failed = [
        name
        for name, result in checks.items()
        if not result.startswith(_HEALTHY) and result != "not checked"
    ]
    body = {"status": "unavailable" if failed else "ok", "checks": checks, "failed": failed}
    return body, 503 if failed else 200


_HEALTHY = ("ok", "inline", "ahead")  # the prefixes of a passing check


def _check_database() -> str:
    try:
        db.session.execute(text("SELECT 1"))
    except Exception as exc:  # noqa: BLE001 - any failure means not ready; name its type
        db.session.rollback()
        return f"error: {type(exc).__name__}"
    return "ok"


def _check_redis() -> str:
    url = current_app.config.get("REDIS_URL")
    if not url:
        return "inline"  # make run: jobs run in the web process, there is no Redis
    clients = current_app.extensions.setdefault("woffice_health", {}).setdefault("redis", {})
    if url not in clients:
        # Its own client with short timeouts: a hung Redis must fail the probe, not hang it.
        clients[url] = Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)
    try:
        clients[url].ping()
    except RedisError as exc:
        return f"error: {type(exc).__name__}"
    return "ok"


def _check_migrations() -> str:
    """The database's revision against this code's: "ok" at the head; "behind: ..." (not
    ready) when it lacks migrations this code needs; "ahead: ..." (still ready) when it
    holds migrations this code does not know.

    Upgrades run the migrations first, then replace web nodes and workers one by one
    (docs/deploy.md); migrations are written to keep the previous release working, so a
    node of the previous release stays in the pool until it is replaced.
    """
    try:
        current = set(db.session.execute(text("SELECT version_num FROM alembic_version")).scalars())
    except Exception as exc:  # noqa: BLE001 - e.g. no alembic_version table yet
        db.session.rollback()
        return f"error: {type(exc).__name__}"
    heads, known = _migration_revisions()
    at = ", ".join(sorted(current)) or "no revision"
    if current == heads:
        return "ok"
    if current and not current & known:
        return f"ahead: database at {at}, which this code does not know (an upgrade?)"
    return f"behind: database at {at}, code at {', '.join(sorted(heads))}"


def _migration_revisions() -> tuple[set[str], set[str]]:
    """The head revisions and all revisions shipped with this code (read once per process)."""
    ext = current_app.extensions.setdefault("woffice_health", {})
    if "revisions" not in ext:
        # Alembic (with Mako and Pygments, ~8 MiB) only when a health check asks.
        from alembic.script import ScriptDirectory

        script = ScriptDirectory(current_app.extensions["migrate"].directory)
        known = {rev.revision for rev in script.walk_revisions()}
        ext["revisions"] = (set(script.get_heads()), known)
    return ext["revisions"]
