"""Settings from environment variables: one class per environment.

``create_app(name)`` picks a class by name ("development", "testing", "production");
``WOFFICE_ENV`` chooses it when no name is given. Production fails fast, naming every
required variable that is missing; development has throwaway defaults so ``make run``
works on a fresh machine.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent
INSTANCE_PATH = Path(os.environ.get("WOFFICE_INSTANCE_DIR", BASE_DIR / "instance"))


def _env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def _env_list(name: str) -> list[str]:
    return [part.strip() for part in os.environ.get(name, "").split(",") if part.strip()]


class ConfigError(RuntimeError):
    """A required setting is missing or invalid."""


# Roles are declared here and synced into FAB's tables by `flask woffice sync-roles`.
# Each entry maps a role to (permission regex, view-menu regex) pairs matched against
# every permission FAB registers; `scope` says who may hold and grant the role.
PLATFORM_ROLES = ("Platform Admin", "Billing", "Compliance")
TENANT_ROLES = ("Tenant Admin", "Agent")

_READ = r"can_list|can_show|menu_access|can_get|can_info"

WOFFICE_ROLES: dict[str, dict] = {
    "Platform Admin": {
        "scope": "platform",
        "description": "Operator staff: everything, every tenant.",
        # Everything except the tenant-side Business screens (platform admins manage
        # every user from Security > List Users; invoices from Billing > Invoices).
        "permissions": [(r".*", r"(?!Team$|Business$|TenantInvoices$|TenantRoles$|ApiKeys$).*")],
    },
    "Billing": {
        "scope": "platform",
        "description": "Operator staff: tenants read-only; plans, payments, invoices.",
        "permissions": [
            (_READ, r"Tenants|TenantApi"),
            (r"menu_access", r"Platform"),
            # The billing screens (app/views/billing*.py) and their "Billing" menu.
            (
                r".*",
                r"Plans|Subscriptions|Payments|Invoices|CreditNotes|BillingEvents"
                r"|GSTR1Export|Billing",
            ),
            # Their REST APIs (app/views/api_billing.py) and the API spec.
            (_READ, r"PlanApi|InvoiceApi|CreditNoteApi|PaymentApi"),
            (r"can_get|can_show", r"OpenApi|SwaggerView|MenuApi"),
            (r".*", r"MyAccountView|My Account"),
            (_READ, r"SubProcessors|Privacy|PrivacyPolicy"),  # P11/P24: everyone reads
        ],
    },
    "Compliance": {
        "scope": "platform",
        "description": "Operator staff: privacy requests, audit, exports, deletions.",
        "permissions": [
            (_READ, r"Tenants|TenantApi"),
            (r"menu_access", r"Platform"),
            (r"can_get|can_show", r"OpenApi|SwaggerView|MenuApi"),  # the API spec (issue 9)
            (r".*", r"Privacy.*|Audit.*|Export.*|Deletion.*|Compliance|SubProcessor.*"),
            (r".*", r"LoginActivity|Login activity"),
            (r".*", r"MyAccountView|My Account"),
        ],
    },
    "Tenant Admin": {
        "scope": "tenant",
        "description": "Runs one business: its team, contacts, conversations, settings.",
        "permissions": [
            (r".*", r"TeamModelView|Team|TeamApi"),
            (r".*", r"TenantRoles"),  # issue 8: the tenant's own roles
            (r".*", r"ApiKeys"),  # issue 9: the tenant's API keys
            (r".*", r"Audit|Audit trail|LoginActivity|Login activity"),
            (r".*", r"Contact.*|Tag.*|Conversation.*|Message.*|Template.*|Campaign.*"),
            (r".*", r"ContactImport.*|Imports"),
            (r".*", r"Analytics"),  # tenant-wide usage: admins only, not agents
            (r".*", r"TenantInvoices|TenantInvoiceApi"),  # their own tenant's invoices
            (r"can_get|can_show", r"OpenApi|SwaggerView|MenuApi"),  # the API spec (issue 9)
            (r".*", r"MyAccountView|My Account|TenantSettingsView|Settings|Business"),
            (_READ, r"SubProcessors|Privacy|PrivacyPolicy"),  # P11/P24: everyone reads
        ],
    },
    "Agent": {
        "scope": "tenant",
        "description": "Answers the conversations assigned to them; reads contacts.",
        "permissions": [
            # Not can_view_all: an agent sees only the conversations assigned to them.
            (r"(?!can_view_all$).*", r"Conversation(?!Api$).*|Message(?!Api$).*"),
            # The APIs (ContactApi, TagApi, ConversationApi, MessageApi): reads only.
            (_READ, r"ConversationApi|MessageApi"),
            (r"menu_access", r"Business"),
            (_READ, r"Contact(?!Import).*|Tag.*"),
            # Their own account and privacy rights; filing for contacts is not theirs.
            (r"can_index|can_privacy_request", r"MyAccountView"),
            (_READ, r"SubProcessors|Privacy|PrivacyPolicy"),  # P11/P24: everyone reads
        ],
    },
}


class DemoSupplier:
    """The demo supplier (issue 6) for development and tests, each value overridable
    from the environment. The GSTIN is valid in format and checksum, not a real one."""

    SUPPLIER_LEGAL_NAME = os.environ.get("SUPPLIER_LEGAL_NAME", "Xigmapro Software Pvt. Ltd.")
    SUPPLIER_ADDRESS = os.environ.get(
        "SUPPLIER_ADDRESS", "4th Floor, 21 Nehru Place, New Delhi, Delhi 110019"
    )
    SUPPLIER_GSTIN = os.environ.get("SUPPLIER_GSTIN", "07AABCX1234K1ZD")
    SUPPLIER_STATE_CODE = os.environ.get("SUPPLIER_STATE_CODE", "07")
    SUPPLIER_PAN = os.environ.get("SUPPLIER_PAN", "AABCX1234K")
    SUPPLIER_SIGNATORY = os.environ.get("SUPPLIER_SIGNATORY", "Meera Iyer, Director")
    DODO_WEBHOOK_SECRET = os.environ.get(
        "DODO_WEBHOOK_SECRET", "whsec_d29mZmljZS1kZW1vLWRvZG8tc2VjcmV0"
    )


class BaseConfig:
    ENV_NAME = "base"
    APP_NAME = "Woffice Back Office"
    APP_ICON = ""
    INSTANCE_DIR = str(INSTANCE_PATH)

    SECRET_KEY = os.environ.get("SECRET_KEY")
    SQLALCHEMY_DATABASE_URI = os.environ.get("DATABASE_URL")
    SQLALCHEMY_ENGINE_OPTIONS = {"pool_pre_ping": True}
    REDIS_URL = os.environ.get("REDIS_URL") or None
    JOB_TIMEOUTS = {"whatsapp": 60, "billing": 300, "privacy": 1800, "mail": 60, "default": 600}

    # --- Flask-AppBuilder ---------------------------------------------------------
    FAB_SECURITY_MANAGER_CLASS = "app.security.AppSecurityManager"
    FAB_CREATE_DB = False  # Alembic owns the schema
    FAB_UPDATE_PERMS = False  # `flask woffice sync-roles` writes permissions at deploy
    FAB_ADD_SECURITY_API = False
    FAB_API_SWAGGER_UI = True  # /swagger/v1 and /api/v1/_openapi (issue 9)
    # Registered by app/views/__init__.py: the spec lists only the caller's APIs.
    FAB_ADD_OPENAPI_VIEWS = False
    FAB_BASE_TEMPLATE = "woffice/base.html"
    FAB_INDEX_VIEW = "app.views.home.HomeView"
    AUTH_ROLE_ADMIN = "Platform Admin"
    AUTH_ROLE_PUBLIC = "Public"
    AUTH_USER_REGISTRATION = False
    WOFFICE_ROLES = WOFFICE_ROLES
    PLATFORM_ROLES = PLATFORM_ROLES
    TENANT_ROLES = TENANT_ROLES
    LANGUAGES = {"en": {"flag": "in", "name": "English"}}
    BABEL_DEFAULT_TIMEZONE = "Asia/Kolkata"
    DISPLAY_TIMEZONE = "Asia/Kolkata"

    # --- sessions, CSRF, headers ---------------------------------------------------
    WTF_CSRF_ENABLED = True
    SESSION_COOKIE_HTTPONLY = True
    SESSION_COOKIE_SAMESITE = "Lax"
    SESSION_COOKIE_SECURE = False
    REMEMBER_COOKIE_HTTPONLY = True
    REMEMBER_COOKIE_SAMESITE = "Lax"
    PERMANENT_SESSION_LIFETIME = timedelta(hours=12)
    HSTS_ENABLED = False

    # --- request limits (P12): larger request bodies are refused with a 413 page ------
    MAX_CONTENT_LENGTH = int(os.environ.get("MAX_CONTENT_LENGTH_MB", "5")) * 1024 * 1024

    # --- Flask-Security-Too ----------------------------------------------------------
    SECURITY_PASSWORD_SALT = os.environ.get("SECURITY_PASSWORD_SALT")
    SECURITY_PASSWORD_HASH = "argon2"
    SECURITY_PASSWORD_LENGTH_MIN = 10
    SECURITY_PASSWORD_COMPLEXITY_CHECKER = None
    SECURITY_USERNAME_ENABLE = False
    SECURITY_RETURN_GENERIC_RESPONSES = True  # no account enumeration at login/reset
    # Same email rules as our user forms: syntax only. FST's default DNS deliverability
    # check made /reset silently send nothing for domains without DNS (e.g. *.example).
    SECURITY_EMAIL_VALIDATOR_ARGS = {"check_deliverability": False}
    SECURITY_TRACKABLE = True
    SECURITY_RECOVERABLE = True
    SECURITY_CHANGEABLE = True
    SECURITY_REGISTERABLE = False
    SECURITY_CONFIRMABLE = False
    SECURITY_TWO_FACTOR = True
    SECURITY_TWO_FACTOR_ENABLED_METHODS = ["authenticator", "email"]
    SECURITY_TWO_FACTOR_RESCUE_EMAIL = True
    SECURITY_TWO_FACTOR_ALWAYS_VALIDATE = True
    SECURITY_MULTI_FACTOR_RECOVERY_CODES = True
    SECURITY_MULTI_FACTOR_RECOVERY_CODES_N = 8
    SECURITY_TOTP_ISSUER = "Woffice"
    SECURITY_TOTP_SECRETS = None
    SECURITY_RESET_PASSWORD_WITHIN = "1 hours"
    SECURITY_EMAIL_SENDER = os.environ.get("MAIL_DEFAULT_SENDER", "no-reply@woffice.example")
    SECURITY_POST_LOGIN_VIEW = "/"
    SECURITY_POST_LOGOUT_VIEW = "/login"
    SECURITY_LOGIN_URL = "/login"
    SECURITY_LOGOUT_URL = "/logout"
    SECURITY_TWO_FACTOR_POST_SETUP_VIEW = "/account/"
    SECURITY_POST_CHANGE_VIEW = "/account/"
    SECURITY_CSRF_IGNORE_UNAUTH_ENDPOINTS = False
    SECURITY_FLASH_MESSAGES = True
    SECURITY_LOGOUT_METHODS = ["GET", "POST"]
    SECURITY_MSG_LOGIN = ("Please log in to open this page.", "info")

    # Woffice auth policy
    REQUIRE_2FA_FOR_STAFF = _env_bool("REQUIRE_2FA_FOR_STAFF", False)
    LOGIN_THROTTLE_WINDOW_SECONDS = int(os.environ.get("LOGIN_THROTTLE_WINDOW_SECONDS", "900"))
    LOGIN_THROTTLE_MAX_PER_ACCOUNT = int(os.environ.get("LOGIN_THROTTLE_MAX_PER_ACCOUNT", "5"))
    LOGIN_THROTTLE_MAX_PER_IP = int(os.environ.get("LOGIN_THROTTLE_MAX_PER_IP", "30"))
    INVITE_EXPIRES_HOURS = int(os.environ.get("INVITE_EXPIRES_HOURS", "72"))
    # P20: access packages and portability exports can be downloaded for this many days.
    PRIVACY_DOWNLOAD_DAYS = int(os.environ.get("PRIVACY_DOWNLOAD_DAYS", "7"))
    # HMAC key for hashed identifiers (failed-login identities, audit); falls back to
    # SECRET_KEY outside production.
    IDENTITY_HASH_KEY = os.environ.get("IDENTITY_HASH_KEY")
    FIELD_ENCRYPTION_KEYS = _env_list("FIELD_ENCRYPTION_KEYS")

    # --- WhatsApp webhooks (reference 4, 6) ------------------------------------------
    WHATSAPP_VERIFY_TOKEN = os.environ.get("WHATSAPP_VERIFY_TOKEN", "woffice-demo-verify")
    WHATSAPP_STOP_KEYWORDS = _env_list("WHATSAPP_STOP_KEYWORDS") or ["STOP", "UNSUBSCRIBE"]
    WHATSAPP_START_KEYWORDS = _env_list("WHATSAPP_START_KEYWORDS") or ["START"]
    # --- WhatsApp Cloud API client (reference 1, 7); the demo points it at tests/fakes ---
    WHATSAPP_API_BASE = os.environ.get("WHATSAPP_API_BASE", "https://graph.facebook.com")
    WHATSAPP_API_VERSION = os.environ.get("WHATSAPP_API_VERSION", "v25.0")
    WHATSAPP_CONNECT_TIMEOUT = float(os.environ.get("WHATSAPP_CONNECT_TIMEOUT", "3"))
    WHATSAPP_READ_TIMEOUT = float(os.environ.get("WHATSAPP_READ_TIMEOUT", "15"))
    # --- campaign sending (app/jobs/campaigns.py, app/services/sending.py) -------------
    # A recipient claimed longer than this without a result goes back to pending (the
    # sweeper), unless a status webhook proved it was sent; keep it far above a chunk's
    # send time and the HTTP read timeout.
    CAMPAIGN_CLAIM_TIMEOUT_S = int(os.environ.get("CAMPAIGN_CLAIM_TIMEOUT_S", "120"))
    CAMPAIGN_131049_RETRY_DAYS = int(os.environ.get("CAMPAIGN_131049_RETRY_DAYS", "3"))
    CAMPAIGN_REPLY_WINDOW_DAYS = int(os.environ.get("CAMPAIGN_REPLY_WINDOW_DAYS", "3"))
    CAMPAIGN_SEND_CONCURRENCY = int(os.environ.get("CAMPAIGN_SEND_CONCURRENCY", "16"))
    CAMPAIGN_CHUNK = int(os.environ.get("CAMPAIGN_CHUNK", "200"))
    # How far ahead of the wire a sending run claims (seconds of sending at the number's
    # rate): the claims and records of chunks happen meanwhile, so a database stall
    # shorter than this (a slow commit, a checkpoint) never leaves the rate unused.
    CAMPAIGN_AHEAD_S = float(os.environ.get("CAMPAIGN_AHEAD_S", "1"))
    CAMPAIGN_MAX_ATTEMPTS = int(os.environ.get("CAMPAIGN_MAX_ATTEMPTS", "8"))
    CAMPAIGN_PAIR_RETRY_S = float(os.environ.get("CAMPAIGN_PAIR_RETRY_S", "6"))
    CAMPAIGN_SWEEP_INTERVAL_S = int(os.environ.get("CAMPAIGN_SWEEP_INTERVAL_S", "30"))

    # --- billing (issue 6): the supplier on every GST invoice, Dodo Payments ----------
    # Validated at start (app/services/supplier.py): GSTIN checksum, its state
    # code and PAN agree with SUPPLIER_STATE_CODE and SUPPLIER_PAN, series prefixes fit
    # the 16-character invoice number. Development and tests use the demo supplier.
    SUPPLIER_LEGAL_NAME = os.environ.get("SUPPLIER_LEGAL_NAME")
    SUPPLIER_ADDRESS = os.environ.get("SUPPLIER_ADDRESS")
    SUPPLIER_GSTIN = os.environ.get("SUPPLIER_GSTIN")
    SUPPLIER_STATE_CODE = os.environ.get("SUPPLIER_STATE_CODE")
    SUPPLIER_PAN = os.environ.get("SUPPLIER_PAN")
    SUPPLIER_SIGNATORY = os.environ.get("SUPPLIER_SIGNATORY")
    SUPPLIER_EMAIL = os.environ.get("SUPPLIER_EMAIL", "billing@xigmapro.example")
    INVOICE_SERIES_PREFIX = os.environ.get("INVOICE_SERIES_PREFIX", "INV")
    CREDIT_NOTE_SERIES_PREFIX = os.environ.get("CREDIT_NOTE_SERIES_PREFIX", "CN")
    # SAC 998315 (hosting and IT infrastructure provisioning, which includes application
    # service provisioning): the reference's most defensible code for hosted SaaS (A.2).
    DEFAULT_SAC_CODE = os.environ.get("DEFAULT_SAC_CODE", "998315")
    DEFAULT_GST_RATE_BP = int(os.environ.get("DEFAULT_GST_RATE_BP", "1800"))
    DODO_WEBHOOK_SECRET = os.environ.get("DODO_WEBHOOK_SECRET")
    # A subscription on hold (failed renewal) suspends its tenant after this many days.
    BILLING_GRACE_DAYS = int(os.environ.get("BILLING_GRACE_DAYS", "7"))
    RENEWAL_REMINDER_DAYS = int(os.environ.get("RENEWAL_REMINDER_DAYS", "7"))
    BILLING_SWEEP_INTERVAL_S = int(os.environ.get("BILLING_SWEEP_INTERVAL_S", "300"))

    # --- mail -----------------------------------------------------------------------
    MAIL_BACKEND = os.environ.get("MAIL_BACKEND", "smtp")
    MAIL_SERVER = os.environ.get("MAIL_SERVER", "127.0.0.1")
    MAIL_PORT = int(os.environ.get("MAIL_PORT", "25"))
    MAIL_USE_TLS = _env_bool("MAIL_USE_TLS", False)
    MAIL_USE_SSL = _env_bool("MAIL_USE_SSL", False)
    MAIL_USERNAME = os.environ.get("MAIL_USERNAME")
    MAIL_PASSWORD = os.environ.get("MAIL_PASSWORD")
    MAIL_TIMEOUT = 10
    MAIL_DEFAULT_SENDER = SECURITY_EMAIL_SENDER
    MAIL_FILE_PATH = os.environ.get("MAIL_FILE_PATH", str(INSTANCE_PATH / "mail"))

    REQUIRED: tuple[str, ...] = ()

    @classmethod
    def validate(cls, config: dict) -> None:
        """Fail fast with one message naming every required setting that is missing."""
        missing = [ENV_NAMES.get(name, name) for name in cls.REQUIRED if not config.get(name)]
        if missing:
            raise ConfigError(
                f"{cls.ENV_NAME} configuration is missing required settings: "
                + ", ".join(missing)
                + ". Set them as environment variables (see README, Configuration)."
            )


class DevelopmentConfig(DemoSupplier, BaseConfig):
    """`make run`: embedded SQLite, jobs inline, mail written to instance/mail/."""

    ENV_NAME = "development"
    SECRET_KEY = os.environ.get("SECRET_KEY", "dev-only-secret-key-not-for-production")
    SQLALCHEMY_DATABASE_URI = os.environ.get(
        "DATABASE_URL", f"sqlite:///{INSTANCE_PATH / 'woffice.db'}"
    )
    SECURITY_PASSWORD_SALT = os.environ.get("SECURITY_PASSWORD_SALT", "dev-only-salt")
    SECURITY_TOTP_SECRETS = {"1": os.environ.get("TOTP_SECRET", "dev-only-totp-secret")}
    MAIL_BACKEND = os.environ.get("MAIL_BACKEND", "file")
    FIELD_ENCRYPTION_KEYS = _env_list("FIELD_ENCRYPTION_KEYS") or [
        "ZGV2LW9ubHkta2V5LWRldi1vbmx5LWtleS1kZXYtMDA="
    ]


class TestingConfig(DemoSupplier, BaseConfig):
    """`make test`: the machine's PostgreSQL and Redis, a local SMTP server."""

    ENV_NAME = "testing"
    TESTING = True
    SECRET_KEY = "testing-secret-key"
    SQLALCHEMY_DATABASE_URI = os.environ.get(
        "TEST_DATABASE_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/woffice_test"
    )
    REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/13")
    SECURITY_PASSWORD_SALT = "testing-salt"
    # Argon2 with the cheapest parameters: the production scheme, fast enough for a
    # suite that logs in hundreds of times (STYLE 25).
    SECURITY_PASSWORD_HASH_PASSLIB_OPTIONS = {
        "argon2__rounds": 1,
        "argon2__memory_cost": 8,
        "argon2__parallelism": 1,
    }
    SECURITY_TOTP_SECRETS = {"1": "testing-totp-secret"}
    MAIL_BACKEND = "smtp"
    MAIL_PORT = int(os.environ.get("TEST_MAIL_PORT", "8025"))
    FIELD_ENCRYPTION_KEYS = ["dGVzdGluZy1rZXktdGVzdGluZy1rZXktdGVzdGluZy0="]


class ProductionConfig(BaseConfig):
    """Real deployments: every secret from the environment, cookies Secure, HSTS on."""

    ENV_NAME = "production"
    # Never echo statement parameters (secrets, personal data) into error messages/logs.
    SQLALCHEMY_ENGINE_OPTIONS = {"pool_pre_ping": True, "hide_parameters": True}
    SESSION_COOKIE_SECURE = True
    REMEMBER_COOKIE_SECURE = True
    HSTS_ENABLED = True
    PREFERRED_URL_SCHEME = "https"
    REQUIRE_2FA_FOR_STAFF = _env_bool("REQUIRE_2FA_FOR_STAFF", True)
    SECURITY_TOTP_SECRETS = {str(i + 1): s for i, s in enumerate(_env_list("TOTP_SECRETS"))} or None
    REQUIRED = (
        "SECRET_KEY",
        "SECURITY_PASSWORD_SALT",
        "SECURITY_TOTP_SECRETS",
        "FIELD_ENCRYPTION_KEYS",
        "SQLALCHEMY_DATABASE_URI",
        "IDENTITY_HASH_KEY",
        "SUPPLIER_LEGAL_NAME",
        "SUPPLIER_ADDRESS",
        "SUPPLIER_GSTIN",
        "SUPPLIER_STATE_CODE",
        "SUPPLIER_PAN",
        "SUPPLIER_SIGNATORY",
        "DODO_WEBHOOK_SECRET",
    )


CONFIGS: dict[str, type[BaseConfig]] = {
    "development": DevelopmentConfig,
    "testing": TestingConfig,
    "production": ProductionConfig,
}

# The environment-variable names behind each required setting, for error messages.
ENV_NAMES = {
    "SQLALCHEMY_DATABASE_URI": "DATABASE_URL",
    "SECURITY_TOTP_SECRETS": "TOTP_SECRETS",
}
