"""Configuration: production fails fast on missing secrets; cookies and headers are safe.

Settings come from environment variables read when ``config`` is imported, so the
"fresh environment" cases run Python in a subprocess with exactly the environment
under test; the rest check the config classes and the testing app's responses.
"""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from app import create_app
from config import ConfigError, DevelopmentConfig, ProductionConfig, TestingConfig

ROOT = Path(__file__).resolve().parent.parent
REQUIRED_ENV = (
    "SECRET_KEY",
    "SECURITY_PASSWORD_SALT",
    "TOTP_SECRETS",
    "FIELD_ENCRYPTION_KEYS",
    "DATABASE_URL",
    "IDENTITY_HASH_KEY",
    "SUPPLIER_LEGAL_NAME",
    "SUPPLIER_ADDRESS",
    "SUPPLIER_GSTIN",
    "SUPPLIER_STATE_CODE",
    "SUPPLIER_PAN",
    "SUPPLIER_SIGNATORY",
    "DODO_WEBHOOK_SECRET",
)
SUPPLIER_ENV = {
    "SUPPLIER_LEGAL_NAME": "Xigmapro Software Pvt. Ltd.",
    "SUPPLIER_ADDRESS": "21 Nehru Place, New Delhi 110019",
    "SUPPLIER_GSTIN": "07AABCX1234K1ZD",
    "SUPPLIER_STATE_CODE": "07",
    "SUPPLIER_PAN": "AABCX1234K",
    "SUPPLIER_SIGNATORY": "Meera Iyer, Director",
    "DODO_WEBHOOK_SECRET": "whsec_cHJvZC1kb2RvLXNlY3JldA==",
}
FULL_PRODUCTION_ENV = {
    "SECRET_KEY": "prod-secret-key",
    "SECURITY_PASSWORD_SALT": "prod-salt",
    "TOTP_SECRETS": "totp-one,totp-two",
    "FIELD_ENCRYPTION_KEYS": "a2V5LW9uZS1rZXktb25lLWtleS1vbmUta2V5LW9uZS0=,b3RoZXI=",
    "DATABASE_URL": "postgresql+psycopg2://woffice@db.internal/woffice",
    "IDENTITY_HASH_KEY": "prod-identity-key",
    **SUPPLIER_ENV,
}


def run_python(code: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter whose environment is only ``env``."""
    base = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(ROOT),
        "PYTHONPATH": str(ROOT),
    }
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


# --------------------------------------------------------------------- fail fast


def test_production_without_env_fails_with_one_message_naming_every_missing_setting():
    """create_app("production") in an empty environment raises one ConfigError naming all six."""
    result = run_python(
        "from app import create_app\n"
        "from config import ConfigError\n"
        "try:\n"
        "    create_app('production')\n"
        "except ConfigError as exc:\n"
        "    print('CONFIG-ERROR:', exc)\n"
        "else:\n"
        "    print('STARTED')\n",
        env={},
    )
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stdout.splitlines() if line.startswith("CONFIG-ERROR:")]
    assert len(lines) == 1, result.stdout
    for name in REQUIRED_ENV:
        assert name in lines[0], name
    # Settings are named by their environment variables, not Flask's internal keys.
    assert "SECURITY_TOTP_SECRETS" not in lines[0]
    assert "SQLALCHEMY_DATABASE_URI" not in lines[0]


def test_create_app_production_raises_before_doing_anything(monkeypatch):
    """create_app("production") raises ConfigError (in-process) when secrets are unset."""
    for attr in (
        "SECRET_KEY",
        "SECURITY_PASSWORD_SALT",
        "SECURITY_TOTP_SECRETS",
        "SQLALCHEMY_DATABASE_URI",
        "IDENTITY_HASH_KEY",
    ):
        monkeypatch.setattr(ProductionConfig, attr, None)
    monkeypatch.setattr(ProductionConfig, "FIELD_ENCRYPTION_KEYS", [])
    with pytest.raises(ConfigError) as caught:
        create_app("production")
    message = str(caught.value)
    assert all(name in message for name in REQUIRED_ENV), message


def test_validate_names_only_what_is_missing():
    """ProductionConfig.validate names exactly the missing settings, and passes when complete."""
    complete = {
        "SECRET_KEY": "k",
        "SECURITY_PASSWORD_SALT": "s",
        "SECURITY_TOTP_SECRETS": {"1": "t"},
        "FIELD_ENCRYPTION_KEYS": ["f"],
        "SQLALCHEMY_DATABASE_URI": "postgresql://x/y",
        "IDENTITY_HASH_KEY": "i",
        **SUPPLIER_ENV,
    }
    ProductionConfig.validate(complete)  # no error

    partial = {**complete, "SECRET_KEY": "", "SQLALCHEMY_DATABASE_URI": None}
    with pytest.raises(ConfigError) as caught:
        ProductionConfig.validate(partial)
    message = str(caught.value)
    assert "SECRET_KEY" in message and "DATABASE_URL" in message
    for present in ("SECURITY_PASSWORD_SALT", "TOTP_SECRETS", "FIELD_ENCRYPTION_KEYS"):
        assert present not in message

    with pytest.raises(ConfigError) as caught:
        ProductionConfig.validate({})
    assert all(name in str(caught.value) for name in REQUIRED_ENV)


def test_production_reads_every_secret_from_the_environment():
    """With the six variables set, production validates and maps them onto its settings."""
    result = run_python(
        "import json\n"
        "from config import ProductionConfig as P\n"
        "cfg = {k: getattr(P, k) for k in dir(P) if k.isupper()}\n"
        "P.validate(cfg)\n"
        "print(json.dumps({k: cfg[k] for k in P.REQUIRED + ('REQUIRE_2FA_FOR_STAFF',)}))\n",
        env=FULL_PRODUCTION_ENV,
    )
    assert result.returncode == 0, result.stderr
    values = json.loads(result.stdout.strip().splitlines()[-1])
    assert values["SECRET_KEY"] == "prod-secret-key"
    assert values["SECURITY_PASSWORD_SALT"] == "prod-salt"
    assert values["SECURITY_TOTP_SECRETS"] == {"1": "totp-one", "2": "totp-two"}
    assert len(values["FIELD_ENCRYPTION_KEYS"]) == 2
    assert values["SQLALCHEMY_DATABASE_URI"] == FULL_PRODUCTION_ENV["DATABASE_URL"]
    assert values["IDENTITY_HASH_KEY"] == "prod-identity-key"
    # P15: staff 2FA is required in production unless explicitly turned off.
    assert values["REQUIRE_2FA_FOR_STAFF"] is True


def test_development_and_testing_need_no_environment():
    """`make run` and `make test` start without secrets: nothing is required there."""
    assert DevelopmentConfig.REQUIRED == ()
    assert TestingConfig.REQUIRED == ()
    DevelopmentConfig.validate({})
    TestingConfig.validate({})


# ----------------------------------------------------------------------- cookies


def test_production_cookies_and_hsts():
    """Production cookies are Secure, HttpOnly and SameSite=Lax; HSTS is on."""
    assert ProductionConfig.SESSION_COOKIE_SECURE is True
    assert ProductionConfig.SESSION_COOKIE_HTTPONLY is True
    assert ProductionConfig.SESSION_COOKIE_SAMESITE == "Lax"
    assert ProductionConfig.REMEMBER_COOKIE_SECURE is True
    assert ProductionConfig.REMEMBER_COOKIE_HTTPONLY is True
    assert ProductionConfig.REMEMBER_COOKIE_SAMESITE == "Lax"
    assert ProductionConfig.HSTS_ENABLED is True
    assert ProductionConfig.PREFERRED_URL_SCHEME == "https"
    assert ProductionConfig.WTF_CSRF_ENABLED is True


def test_session_cookie_is_httponly_and_samesite_lax(client, login):
    """The session cookie the app sets carries HttpOnly and SameSite=Lax."""
    response = login("owner@acme.example")
    cookies = [c for c in response.headers.getlist("Set-Cookie") if c.startswith("session=")]
    assert cookies
    assert "HttpOnly" in cookies[-1]
    assert "SameSite=Lax" in cookies[-1]


# ----------------------------------------------------------------------- headers


NONCE_SOURCE = re.compile(r"^'nonce-([A-Za-z0-9_-]{22,})'$")


def _csp_directives(policy: str) -> dict[str, list[str]]:
    directives = {}
    for directive in filter(None, (d.strip() for d in policy.split(";"))):
        name, *sources = directive.split()
        directives[name] = sources
    return directives


def _csp_nonce(response) -> str:
    """The nonce the response's CSP allows for scripts (exactly one)."""
    script_src = _csp_directives(response.headers["Content-Security-Policy"])["script-src"]
    nonces = [m.group(1) for m in map(NONCE_SOURCE.match, script_src) if m]
    assert len(nonces) == 1, script_src
    return nonces[0]


@pytest.mark.parametrize("path", ["/login", "/reset", "/no-such-page"])
def test_security_headers_and_a_self_only_csp(client, path):
    """Every response: nosniff, no framing, and a CSP that names no external host."""
    response = client.get(path)
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["Referrer-Policy"] == "same-origin"
    directives = _csp_directives(response.headers["Content-Security-Policy"])
    assert directives["default-src"] == ["'self'"]
    assert directives["script-src"] == ["'self'", f"'nonce-{_csp_nonce(response)}'"]
    assert directives["style-src"] == ["'self'", "'unsafe-inline'"]  # inline style attributes
    assert directives["img-src"] == ["'self'", "data:"]  # the 2FA QR code
    assert directives["frame-ancestors"] == ["'none'"]
    assert directives["form-action"] == ["'self'"]
    assert directives["base-uri"] == ["'self'"]
    assert directives["object-src"] == ["'none'"]
    allowed = {"'self'", "'none'", "'unsafe-inline'", "data:"}
    external = [
        source
        for sources in directives.values()
        for source in sources
        if source not in allowed and not NONCE_SOURCE.match(source)
    ]
    assert external == [], f"CSP allows external sources: {external}"
    assert "Strict-Transport-Security" not in response.headers  # HSTS off in testing


def test_csp_nonce_is_new_on_every_request_and_matches_the_page(client):
    """Each response has its own random nonce, and the page's scripts carry that one."""
    responses = [client.get("/login") for _ in range(3)]
    nonces = [_csp_nonce(r) for r in responses]
    assert len(set(nonces)) == 3, nonces
    for response, nonce in zip(responses, nonces, strict=True):
        html = response.get_data(as_text=True)
        found = set(re.findall(r'<script[^>]*\snonce="([^"]*)"', html))
        assert found == {nonce}


SCRIPT_TAG = re.compile(r"<script\b([^>]*)>(.*?)</script>", re.DOTALL | re.IGNORECASE)


@pytest.mark.parametrize(
    ("email", "path"),
    [("owner@acme.example", "/team/list/"), ("admin@xigmapro.example", "/tenants/list/")],
)
def test_every_script_on_a_list_page_carries_the_nonce(client, login, email, path):
    """FAB's list page (menus, search, actions): every <script>, inline or not, has the nonce."""
    login(email)
    response = client.get(path)
    assert response.status_code == 200
    nonce = _csp_nonce(response)
    html = response.get_data(as_text=True)
    scripts = SCRIPT_TAG.findall(html)
    inline = [body for attrs, body in scripts if "src=" not in attrs and body.strip()]
    # FAB's own inline scripts: the filter setup (search widget) and list/actions code.
    assert len(inline) >= 2, f"expected FAB's inline scripts on {path}"
    assert "AdminFilters" in "".join(inline)
    for attrs, _body in scripts:
        assert f'nonce="{nonce}"' in attrs, f"script without this request's nonce: {attrs!r}"
    # No inline event handlers or javascript: URLs, which no nonce can allow.
    assert not re.search(r"<[^>]+\son[a-z]+\s*=", html, re.IGNORECASE)
    assert "javascript:" not in html.lower()
    directives = _csp_directives(response.headers["Content-Security-Policy"])
    assert "'unsafe-inline'" not in directives["script-src"]
    assert "'unsafe-eval'" not in directives["script-src"]


FST_TEMPLATES_WE_USE = (
    "login_user.html",
    "forgot_password.html",
    "reset_password.html",
    "change_password.html",
    "two_factor_setup.html",
    "two_factor_verify_code.html",
    "two_factor_select.html",
    "mf_recovery.html",
    "mf_recovery_codes.html",
)
EVENT_HANDLER = re.compile(r"<[^>]*\son[a-z]+\s*=", re.IGNORECASE)


def test_templates_have_no_script_the_csp_would_block():
    """Our templates and FST's pages we show: any <script> carries the nonce; no onclick=."""
    import flask_security

    ours = sorted((ROOT / "app" / "templates").rglob("*.html"))
    fst_dir = Path(flask_security.__file__).parent / "templates" / "security"
    theirs = [fst_dir / name for name in FST_TEMPLATES_WE_USE]
    assert ours and all(path.exists() for path in theirs)
    for path in ours + theirs:
        source = path.read_text()
        for tag in re.findall(r"<script\b[^>]*>", source, re.IGNORECASE):
            assert "csp_nonce()" in tag or "script_nonce()" in tag, f"{path}: {tag}"
        assert not EVENT_HANDLER.search(source), f"{path}: inline event handler"
        assert "javascript:" not in source.lower(), f"{path}: javascript: URL"


def test_hsts_header_when_enabled(app, client, monkeypatch):
    """With HSTS_ENABLED (production), responses carry Strict-Transport-Security."""
    monkeypatch.setitem(app.config, "HSTS_ENABLED", True)
    response = client.get("/login")
    assert response.headers["Strict-Transport-Security"].startswith("max-age=31536000")


# ------------------------------------------------------------------- request size

SIX_MIB = 6 * 1024 * 1024


def test_request_size_limit_defaults_to_5_mib_and_reads_the_environment():
    """MAX_CONTENT_LENGTH is 5 MiB unless MAX_CONTENT_LENGTH_MB says otherwise."""
    assert TestingConfig.MAX_CONTENT_LENGTH == 5 * 1024 * 1024
    assert ProductionConfig.MAX_CONTENT_LENGTH == 5 * 1024 * 1024
    result = run_python(
        "from config import ProductionConfig as P\nprint(P.MAX_CONTENT_LENGTH)\n",
        env={**FULL_PRODUCTION_ENV, "MAX_CONTENT_LENGTH_MB": "2"},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == str(2 * 1024 * 1024)


def test_a_6_mib_post_gets_a_friendly_413_page(client):
    """Too big a body: a 413 page saying what the limit is, not a 500."""
    response = client.post(
        "/login",
        data=b"email=a%40b.example&password=" + b"x" * SIX_MIB,
        content_type="application/x-www-form-urlencoded",
    )
    assert response.status_code == 413
    html = response.get_data(as_text=True)
    assert "413 · Too large" in html
    assert "larger than this site accepts (at most 5 MiB)" in html
    assert "Something went wrong" not in html
    assert "Content-Security-Policy" in response.headers


def test_a_6_mib_upload_gets_a_413_json_message_for_api_clients(client, login):
    """A signed-in multipart upload that is too big: JSON 413 with the same message."""
    login("owner@acme.example")
    response = client.post(
        "/team/add",
        data={"first_name": "Big", "file": (io.BytesIO(b"\0" * SIX_MIB), "big.pdf")},
        content_type="multipart/form-data",
        headers={"Accept": "application/json"},
    )
    assert response.status_code == 413
    assert response.get_json() == {
        "message": "What you sent is larger than this site accepts (at most 5 MiB). "
        "Use a smaller file and try again.",
        "status": 413,
    }


def test_a_too_long_form_field_within_the_limit_says_so(client):
    """Under 5 MiB, one multipart text field over MAX_FORM_MEMORY_SIZE: a 413 saying so."""
    response = client.post(
        "/login",
        data={"email": "a@b.example", "password": "x" * 600_000},
        content_type="multipart/form-data",  # Flask limits in-memory multipart fields
    )
    assert response.status_code == 413
    assert "One of the fields you sent is too long" in response.get_data(as_text=True)
