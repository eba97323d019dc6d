"""Configuration: production fails fast on missing secrets; cookies and headers are safe.

Settings come from environment variables read when ``config`` is imported, so the
"fresh environment" cases run Python in a subprocess with exactly the environment
under test; the rest check the config classes and the testing app's responses.
"""

from __future__ import annotations

import json
import os
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
)
FULL_PRODUCTION_ENV = {
    "SECRET_KEY": "prod-secret-key",
    "SECURITY_PASSWORD_SALT": "prod-salt",
    "TOTP_SECRETS": "totp-one,totp-two",
    "FIELD_ENCRYPTION_KEYS": "a2V5LW9uZS1rZXktb25lLWtleS1vbmUta2V5LW9uZS0=,b3RoZXI=",
    "DATABASE_URL": "postgresql+psycopg2://woffice@db.internal/woffice",
    "IDENTITY_HASH_KEY": "prod-identity-key",
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


def _csp_sources(policy: str) -> list[str]:
    sources = []
    for directive in filter(None, (d.strip() for d in policy.split(";"))):
        sources.extend(directive.split()[1:])
    return sources


@pytest.mark.parametrize("path", ["/login", "/reset", "/no-such-page"])
def test_security_headers_and_a_self_only_csp(client, path):
    """Every response: nosniff, no framing, and a CSP that names no external host."""
    response = client.get(path)
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["X-Frame-Options"] == "DENY"
    policy = response.headers["Content-Security-Policy"]
    assert "default-src 'self'" in policy
    assert "frame-ancestors 'none'" in policy
    allowed = {"'self'", "'none'", "'unsafe-inline'", "data:"}
    external = [s for s in _csp_sources(policy) if s not in allowed]
    assert external == [], f"CSP allows external sources: {external}"
    assert "Strict-Transport-Security" not in response.headers  # HSTS off in testing


def test_hsts_header_when_enabled(app, client, monkeypatch):
    """With HSTS_ENABLED (production), responses carry Strict-Transport-Security."""
    monkeypatch.setitem(app.config, "HSTS_ENABLED", True)
    response = client.get("/login")
    assert response.headers["Strict-Transport-Security"].startswith("max-age=31536000")
