"""One login under FAB permissions: the Flask-Security-Too bridge.

Flask-Security-Too (FST) owns authentication: login, two-factor, password reset and
change, login tracking, its Flask-Login `LoginManager` (users load by
``fs_uniquifier``). Flask-AppBuilder (FAB) owns authorization: `has_access` over its
role and permission tables. `AppSecurityManager` reuses FST's login manager, sends
FAB's login/logout links to FST, and makes every password hash an FST hash, including
FAB's user forms and ``flask fab create-admin``.
"""

from __future__ import annotations

import secrets
from typing import Any

from flask import current_app, flash, g, has_request_context, redirect, request, url_for
from flask_appbuilder import expose
from flask_appbuilder.api import BaseApi
from flask_appbuilder.security.sqla.manager import SecurityManager
from flask_appbuilder.security.sqla.models import assoc_permissionview_role
from flask_appbuilder.security.views import AuthView
from flask_login import current_user, user_logged_out
from flask_security import (
    LoginForm,
    MailUtil,
    SQLAlchemyUserDatastore,
    hash_password,
    user_authenticated,
)
from flask_security.signals import (
    password_changed,
    password_reset,
    reset_password_instructions_sent,
    tf_disabled,
    tf_profile_changed,
)
from sqlalchemy import select

from app.extensions import db, security
from app.jobs import enqueue
from app.models.mixins import utcnow
from app.models.user import AppUser, Role
from app.services import audit, login_throttle
from app.services.exceptions import LoginThrottledError
from app.services.mail import message_payload


class FstAuthView(AuthView):
    """FAB's auth endpoints, kept for FAB's templates, delegating to FST."""

    route_base = "/auth"

    @expose("/login/", methods=["GET", "POST"])
    def login(self):
        return redirect(url_for("security.login", next=request.args.get("next")))

    @expose("/logout/")
    def logout(self):
        return redirect(url_for("security.logout"))


class NoPasswordLoginApi(BaseApi):
    """Stands in for FAB's SecurityApi, whose password-only login (JWT) would bypass
    two-factor authentication: it exposes no endpoint at all."""

    resource_name = "security"


class AppSecurityManager(SecurityManager):
    """FAB's security manager, with FST as the login owner."""

    user_model = AppUser
    authdbview = FstAuthView
    security_api = NoPasswordLoginApi

    def __init__(self, appbuilder: Any) -> None:
        from app.views.platform_user import (
            PlatformUserModelView,
            RoleHistoryModelView,
            UserStatsChartView,
        )

        self.userdbmodelview = PlatformUserModelView
        self.rolemodelview = RoleHistoryModelView
        self.userstatschartview = UserStatsChartView
        super().__init__(appbuilder)

    def _has_view_access(self, user: Any, permission_name: str, view_name: str) -> bool:
        """FAB's check, answered from the user's permissions loaded once per request.

        FAB queries the database for every check (a list page makes ~20: menus, actions,
        buttons); one query per request gives the same answer. Nothing is cached across
        requests, so a removed permission takes effect on the next request.
        """
        if not has_request_context():
            return super()._has_view_access(user, permission_name, view_name)
        cached = g.get("_woffice_permissions")
        if cached is None or cached[0] != user.id:
            role_ids = [role.id for role in self.get_user_roles(user)]
            pv, link = self.permissionview_model, assoc_permissionview_role
            rows = db.session.execute(
                select(self.permission_model.name, self.viewmenu_model.name)
                .select_from(pv)
                .join(self.permission_model, pv.permission_id == self.permission_model.id)
                .join(self.viewmenu_model, pv.view_menu_id == self.viewmenu_model.id)
                .join(link, link.c.permission_view_id == pv.id)
                .where(link.c.role_id.in_(role_ids))
            ).all()
            cached = (user.id, {(perm, view) for perm, view in rows})
            g._woffice_permissions = cached
        return (permission_name, view_name) in cached[1]

    def create_login_manager(self, app: Any) -> Any:
        """Reuse FST's LoginManager (initialised first) instead of creating a second one."""
        return app.login_manager

    def add_user(
        self,
        username,
        first_name,
        last_name,
        email,
        role=None,
        password="",
        hashed_password="",
        groups=None,
        commit=True,
    ):
        """FAB's add_user (used by `flask fab create-admin`), hashing with FST."""
        if not hashed_password:
            hashed_password = hash_password(password or secrets.token_urlsafe(32))
        return super().add_user(
            username,
            first_name,
            last_name,
            email,
            role=role,
            hashed_password=hashed_password,
            groups=groups,
            commit=commit,
        )

    def reset_password(self, userid: int, password: str) -> None:
        """FAB's reset-password forms, hashing with FST."""
        user = self.get_user_by_id(userid)
        user.password = hash_password(password)
        user.password_changed_at = utcnow()
        self.update_user(user)


class ThrottledLoginForm(LoginForm):
    """FST's login form with brute-force throttling and a history of failures."""

    def validate(self, **kwargs: Any) -> bool:
        identity = (self.email.data or "").strip()
        ip = request.remote_addr
        cfg = current_app.config
        try:
            login_throttle.check_login_allowed(
                db.session,
                identity,
                ip,
                window_seconds=cfg["LOGIN_THROTTLE_WINDOW_SECONDS"],
                max_per_account=cfg["LOGIN_THROTTLE_MAX_PER_ACCOUNT"],
                max_per_ip=cfg["LOGIN_THROTTLE_MAX_PER_IP"],
            )
        except LoginThrottledError as exc:
            self.form_errors.append(str(exc))
            _record(identity, success=False, outcome="throttled")
            db.session.commit()
            return False
        if super().validate(**kwargs):
            return True
        if identity:
            if self.user is None:
                outcome = "unknown_user"
            elif self.user_authenticated:
                outcome = "inactive"
            else:
                outcome = "bad_password"
            _record(
                identity,
                success=False,
                outcome=outcome,
                user_id=self.user.id if self.user is not None else None,
            )
            db.session.commit()
        return False


AUTH_ACTIONS = {
    "ok": "auth.login",
    "logout": "auth.logout",
    "throttled": "auth.login_throttled",
}


def _record(identity: str, *, success: bool, outcome: str, user_id: int | None = None) -> None:
    """Append to the login history (throttling, recent sign-ins) and the audit trail."""
    event = login_throttle.record_login_event(
        db.session,
        identity=identity,
        ip=request.remote_addr,
        user_agent=request.headers.get("User-Agent"),
        success=success,
        outcome=outcome,
        user_id=user_id,
    )
    user = db.session.get(AppUser, user_id) if user_id else None
    audit.record(
        AUTH_ACTIONS.get(outcome, "auth.login_failed"),
        user,
        tenant_id=user.tenant_id if user else None,
        outcome=outcome,
        identity_hash=event.identity_hash,
    )


class JobMailUtil(MailUtil):
    """Every FST email (reset, two-factor codes, notices) goes out through the mail job."""

    def send_mail(self, template, subject, recipient, sender, body, html, **kwargs):
        from app.jobs.mail import send_email

        if isinstance(sender, tuple):
            sender = f"{sender[0]} <{sender[1]}>"
        to = recipient[1] if isinstance(recipient, tuple) else recipient
        enqueue(
            "mail",
            send_email,
            message_payload(to=to, subject=str(subject), body=body, html=html, sender=str(sender)),
        )


def _on_login(app: Any, user: AppUser, **_: Any) -> None:
    if request:
        _record(user.email, success=True, outcome="ok", user_id=user.id)


def _on_logout(app: Any, user: AppUser, **_: Any) -> None:
    if request and user is not None and getattr(user, "id", None):
        _record(user.email, success=True, outcome="logout", user_id=user.id)
        db.session.commit()


def _on_password_changed(app: Any, user: AppUser, **_: Any) -> None:
    user.password_changed_at = utcnow()
    audit.record("auth.password_changed", user)


def _on_password_reset(app: Any, user: AppUser, **_: Any) -> None:
    user.password_changed_at = utcnow()
    audit.record("auth.password_reset", user)


def _on_reset_requested(app: Any, user: AppUser, **_: Any) -> None:
    audit.record("auth.password_reset_requested", user)
    db.session.commit()  # FST's forgot-password view writes nothing else, so never commits


def _on_two_factor_changed(app: Any, user: AppUser, method: str | None = None, **_: Any) -> None:
    audit.record("auth.2fa_enabled", user, method=method)


def _on_two_factor_disabled(app: Any, user: AppUser, **_: Any) -> None:
    audit.record("auth.2fa_disabled", user)


STAFF_2FA_OPEN_ENDPOINTS = {
    "security.two_factor_setup",
    "security.two_factor_setup_validate",  # a logged-in user's setup code posts here
    "security.two_factor_token_validation",
    "security.two_factor_rescue",
    "security.logout",
    "security.verify",
    "security.mf_recovery_codes",
    "FstAuthView.logout",
    "static",
    "appbuilder.static",
    "health.live",
}


def enforce_staff_two_factor():
    """before_request: platform staff without 2FA can reach only the 2FA setup page."""
    if not current_app.config.get("REQUIRE_2FA_FOR_STAFF"):
        return None
    if not current_user or not current_user.is_authenticated:
        return None
    if current_user.tenant_id is not None or current_user.tf_primary_method:
        return None
    if request.endpoint in STAFF_2FA_OPEN_ENDPOINTS:
        return None
    flash("Platform staff must set up two-factor authentication before continuing.", "warning")
    return redirect(url_for("security.two_factor_setup"))


def init_security(app: Any) -> None:
    """Initialise FST on the shared user table; must run before AppBuilder."""
    datastore = SQLAlchemyUserDatastore(db, AppUser, Role)
    # FST takes mail_util_cls only in its constructor: init_app ignores that kwarg.
    security._mail_util_cls = JobMailUtil
    security.init_app(app, datastore, login_form=ThrottledLoginForm)
    user_authenticated.connect(_on_login, app)
    user_logged_out.connect(_on_logout, app)
    password_changed.connect(_on_password_changed, app)
    password_reset.connect(_on_password_reset, app)
    reset_password_instructions_sent.connect(_on_reset_requested, app)
    tf_profile_changed.connect(_on_two_factor_changed, app)
    tf_disabled.connect(_on_two_factor_disabled, app)
    app.before_request(enforce_staff_two_factor)
