"""Response security headers and the per-request CSP nonce (policies P12 and P22).

The Content-Security-Policy allows only this origin. Scripts additionally need the
request's nonce: FAB's templates already write ``nonce="{{ baselib.get_nonce() }}"`` on
every ``<script>``, which renders ``csp_nonce()`` when such a Jinja global exists (a
global, not a context variable: FAB imports ``baselib.html`` without context). FST's
templates read the same value from ``g`` through ``SECURITY_SCRIPT_NONCE_KEY``.

This is the part of Flask-Talisman we need; HTTPS redirects and cookie flags are the
proxy's and the config's job (``ProductionConfig``).
"""

from __future__ import annotations

import secrets

from flask import Flask, Response, current_app, g

NONCE_KEY = "csp_nonce"  # attribute of flask.g; also FST's SECURITY_SCRIPT_NONCE_KEY
HSTS_VALUE = "max-age=31536000; includeSubDomains"


def csp_nonce() -> str:
    """This request's script nonce: random, made on first use, the same all request."""
    nonce = g.get(NONCE_KEY)
    if nonce is None:
        nonce = secrets.token_urlsafe(18)
        setattr(g, NONCE_KEY, nonce)
    return nonce


def content_security_policy(nonce: str) -> str:
    """The CSP header value: this origin only; inline scripts only with ``nonce``."""
    directives = {
        "default-src": "'self'",
        "script-src": f"'self' 'nonce-{nonce}'",
        # FAB's templates and widgets (select2, datepicker) use inline style attributes;
        # styles cannot run code, so 'unsafe-inline' is accepted for style-src only.
        "style-src": "'self' 'unsafe-inline'",
        "img-src": "'self' data:",  # the 2FA QR code is a data: SVG
        "object-src": "'none'",
        "base-uri": "'self'",
        "form-action": "'self'",
        "frame-ancestors": "'none'",
    }
    return "; ".join(f"{name} {value}" for name, value in directives.items())


def _ensure_nonce() -> None:
    csp_nonce()  # made before any template renders, so FST's `g` lookup finds it


def _set_headers(response: Response) -> Response:
    headers = response.headers
    headers.setdefault("Content-Security-Policy", content_security_policy(csp_nonce()))
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("X-Frame-Options", "DENY")
    headers.setdefault("Referrer-Policy", "same-origin")
    if current_app.config.get("HSTS_ENABLED"):
        headers.setdefault("Strict-Transport-Security", HSTS_VALUE)
    return response


def init_web_security(app: Flask) -> None:
    """Make ``csp_nonce()`` available to templates and add the headers to every response."""
    app.config.setdefault("SECURITY_SCRIPT_NONCE_KEY", NONCE_KEY)
    app.add_template_global(csp_nonce, "csp_nonce")
    app.before_request(_ensure_nonce)
    app.after_request(_set_headers)
