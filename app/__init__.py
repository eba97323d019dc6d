"""Application factory (flaskr pattern): nothing happens at import time."""

from __future__ import annotations

import logging
import os

from flask import Flask, g, render_template, request
from flask_login import current_user
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException

from app.logging_setup import configure_logging, install_request_ids
from app.services.supplier import validate_supplier
from config import CONFIGS, BaseConfig


def create_app(config: str | type[BaseConfig] | None = None) -> Flask:
    """Build the app for an environment name ("development", "testing", "production")."""
    config_class = _resolve_config(config)
    app = Flask(__name__, instance_path=config_class.INSTANCE_DIR, instance_relative_config=False)
    app.config.from_object(config_class)
    config_class.validate(app.config)
    validate_supplier(app.config)
    os.makedirs(app.instance_path, exist_ok=True)
    if app.config.get("MAIL_BACKEND") == "file":
        # The class itself: Flask-Mailman only imports dotted names ending "EmailBackend".
        from app.services.mail import EmlFileBackend

        app.config["MAIL_BACKEND"] = EmlFileBackend
    # One JSON object per line in production (LOG_FORMAT), today's text lines elsewhere.
    configure_logging(app)
    install_request_ids(app)  # first before_request hook: the audit trail reuses the id
    # httpx logs every request at INFO: a line per WhatsApp message (1M for a 1M campaign)
    # and measurable CPU at 1,000 sends/s. Failures are logged by the sending code.
    logging.getLogger("httpx").setLevel(logging.WARNING)

    from app import (
        api_auth,
        jobs,
        models,  # noqa: F401  (maps every model before anything queries)
    )
    from app.cli import register_cli
    from app.extensions import appbuilder, csrf, db, mail, migrate
    from app.security import init_security
    from app.services import audit
    from app.tenancy import enter_request_scope, install_orm_guards, leave_request_scope
    from app.views import register_views
    from app.views.audit import register_audit_hooks
    from app.views.public import health, invitation

    db.init_app(app)
    migrate.init_app(app, db, directory=os.path.join(os.path.dirname(__file__), "..", "migrations"))
    mail.init_app(app)
    csrf.init_app(app)
    api_auth.install(app)  # API keys, then CSRF for everything else (before FST and FAB)
    install_orm_guards(db.session.session_factory.class_)
    audit.install(db.session.session_factory.class_)
    with app.app_context():
        jobs.init_app(app)
        init_security(app)  # FST first: FAB reuses its login manager
        appbuilder.init_app(app, db.session)
        register_views(appbuilder)
        appbuilder.post_init()
    app.register_blueprint(invitation)
    from app.views.privacy_public import privacy_public

    app.register_blueprint(privacy_public)
    app.register_blueprint(health)
    csrf.exempt(health)
    from app.views.webhooks import whatsapp_webhooks

    app.register_blueprint(whatsapp_webhooks)
    csrf.exempt(whatsapp_webhooks)
    from app.views.billing_webhooks import dodo_webhooks

    app.register_blueprint(dodo_webhooks)
    csrf.exempt(dodo_webhooks)
    app.before_request(enter_request_scope)
    app.teardown_request(leave_request_scope)
    register_audit_hooks(app)
    from app.views import _actions

    _actions.install(app)  # unknown FAB actions: 404 on every view, not a 500
    _register_template_helpers(app, appbuilder)
    _register_error_pages(app)
    _register_security_headers(app)
    register_cli(app)
    return app


def _resolve_config(config: str | type[BaseConfig] | None) -> type[BaseConfig]:
    if config is None:
        config = os.environ.get("WOFFICE_ENV", "development")
    if isinstance(config, str):
        try:
            return CONFIGS[config]
        except KeyError as exc:
            raise ValueError(
                f"unknown environment {config!r}; use one of {sorted(CONFIGS)}"
            ) from exc
    return config


def _register_template_helpers(app: Flask, appbuilder) -> None:
    from app.views._format import ist

    app.add_template_filter(ist, "ist")

    @app.context_processor
    def inject_appbuilder():
        # FST's pages extend the FAB layout, which needs these.
        return {"appbuilder": appbuilder, "base_template": appbuilder.base_template}


def _register_error_pages(app: Flask) -> None:
    @app.errorhandler(CSRFError)
    def csrf_error(exc: CSRFError):
        return _error_page(
            400,
            "Your form expired or was sent from another page. "
            "Go back, reload the page and try again.",
        )

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        if exc.code is None or exc.code < 400:  # redirects (e.g. trailing slash)
            return exc
        message = _too_large_message(app) if exc.code == 413 else exc.description
        if request.path.startswith("/api/") or request.accept_mimetypes.best == "application/json":
            return {"message": message, "status": exc.code}, exc.code
        return _error_page(exc.code or 500, message or exc.name)

    @app.errorhandler(Exception)
    def unexpected_error(exc: Exception):
        from app.extensions import db

        db.session.rollback()
        app.logger.exception("unhandled error on %s %s", request.method, request.path)
        return _error_page(
            500, "Something went wrong on our side. It has been logged; please try again."
        )


def _too_large_message(app: Flask) -> str:
    limit = app.config.get("MAX_CONTENT_LENGTH")
    sent = request.content_length
    if limit and (sent is None or sent > limit):
        return (
            f"What you sent is larger than this site accepts (at most "
            f"{limit / (1024 * 1024):g} MiB). Use a smaller file and try again."
        )
    # Within MAX_CONTENT_LENGTH, Flask refuses a single text field over MAX_FORM_MEMORY_SIZE.
    return "One of the fields you sent is too long. Shorten it and try again."


def _error_page(code: int, message: str):
    # An error raised before FAB's before_request (e.g. CSRF) leaves g.user unset, which
    # FAB's navbar needs.
    if "user" not in g:
        g.user = current_user
    titles = {
        400: "Bad request",
        403: "Not allowed",
        404: "Not found",
        405: "Not allowed",
        410: "Gone",
        413: "Too large",
        429: "Too many requests",
        500: "Server error",
    }
    return render_template(
        "woffice/error.html", code=code, title=titles.get(code, "Error"), message=message
    ), code


def _register_security_headers(app: Flask) -> None:
    # CSP with a per-request script nonce, nosniff, no framing, Referrer-Policy, HSTS.
    from app.web_security import init_web_security

    init_web_security(app)
