"""Test fixtures.

Fixture policy (cf. FlexMeasures):

* One PostgreSQL database per run (``woffice_test``), dropped and re-created, whose
  schema is built by running the Alembic migrations (so the migrations are tested too).
  Roles are synced and the demo data is loaded once; they are the committed baseline.
* Every test runs inside an outer transaction: the session is bound to one connection
  with ``join_transaction_mode="create_savepoint"``, so the app's commits become
  savepoints and everything a test writes is rolled back afterwards.
* Redis is real, on its own DB number, flushed before and after each test. Jobs run in
  this process with `run_jobs()` (an RQ SimpleWorker in burst mode): a forked worker
  could not see the test's uncommitted transaction.
* Email goes to a real local SMTP server (aiosmtpd) started once per run; `mailbox`
  holds what it received during the test.
* Names follow flaskr: ``app``, ``client``, ``runner``, ``login``.
"""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from urllib.parse import urlsplit

import psycopg2
import pytest
from aiosmtpd.controller import Controller
from flask import Flask
from flask.testing import FlaskClient
from flask_migrate import upgrade
from rq import SimpleWorker
from rq.serializers import JSONSerializer
from sqlalchemy import select

from app import create_app
from app.extensions import appbuilder, db
from app.jobs import QUEUES, get_queue, redis_connection
from app.models import AppUser, Tenant
from app.services.demo import DEMO_PASSWORD, seed_demo
from app.services.roles import sync_roles
from config import TestingConfig

MIGRATIONS = os.path.join(os.path.dirname(__file__), "..", "migrations")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def recreate_database(url: str) -> None:
    """Drop and create the PostgreSQL database named in ``url``."""
    parts = urlsplit(url.replace("postgresql+psycopg2", "postgresql"))
    name = parts.path.lstrip("/")
    admin = psycopg2.connect(
        host=parts.hostname,
        port=parts.port or 5432,
        user=parts.username or "postgres",
        dbname="postgres",
    )
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
            (name,),
        )
        cur.execute(f'DROP DATABASE IF EXISTS "{name}"')
        cur.execute(f'CREATE DATABASE "{name}"')
    admin.close()


# ---------------------------------------------------------------------------- SMTP


@dataclass
class Mailbox:
    """Messages the local SMTP server received."""

    messages: list[EmailMessage] = field(default_factory=list)

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd API
        self.messages.append(message_from_bytes(envelope.content, policy=policy.default))
        return "250 Message accepted for delivery"

    def to(self, address: str) -> list[EmailMessage]:
        return [m for m in self.messages if address.lower() in str(m["To"]).lower()]

    def last_to(self, address: str) -> EmailMessage:
        found = self.to(address)
        assert found, f"no email to {address}; got {[str(m['To']) for m in self.messages]}"
        return found[-1]

    @staticmethod
    def text(message: EmailMessage) -> str:
        part = message.get_body(preferencelist=("plain", "html"))
        return part.get_content() if part is not None else ""

    def link_in(self, message: EmailMessage, pattern: str) -> str:
        match = re.search(pattern, self.text(message))
        assert match, f"no link matching {pattern!r} in:\n{self.text(message)}"
        return match.group(0)


@pytest.fixture(scope="session")
def smtp_server() -> Iterator[tuple[Mailbox, int]]:
    mailbox = Mailbox()
    port = _free_port()
    controller = Controller(mailbox, hostname="127.0.0.1", port=port)
    controller.start()
    yield mailbox, port
    controller.stop()


@pytest.fixture
def mailbox(smtp_server) -> Mailbox:
    box, _port = smtp_server
    box.messages.clear()
    return box


# ----------------------------------------------------------------------------- app


@pytest.fixture(scope="session")
def app(smtp_server) -> Iterator[Flask]:
    _box, smtp_port = smtp_server

    class SuiteConfig(TestingConfig):
        MAIL_PORT = smtp_port

    recreate_database(SuiteConfig.SQLALCHEMY_DATABASE_URI)
    application = create_app(SuiteConfig)
    with application.app_context():
        upgrade(directory=MIGRATIONS)
        sync_roles(appbuilder, application.config["WOFFICE_ROLES"])
        seed_demo(db.session)
        db.session.commit()
        db.session.remove()
    yield application
    with application.app_context():
        db.engine.dispose()


@pytest.fixture(autouse=True)
def _db_transaction(app: Flask) -> Iterator[None]:
    """Run each test inside an outer transaction that is rolled back afterwards."""
    with app.app_context():
        connection = db.engine.connect()
    # FAB asks `session.get_bind().name` (an Engine attribute) to pick SQL per dialect.
    connection.name = connection.dialect.name
    outer = connection.begin()
    factory = db.session.session_factory
    db.session.remove()
    factory.configure(bind=connection, join_transaction_mode="create_savepoint")
    try:
        yield
    finally:
        db.session.remove()
        outer.rollback()
        connection.close()
        factory.configure(bind=None, join_transaction_mode="conservative_savepoint")


@pytest.fixture(autouse=True)
def _clean_redis(app: Flask) -> Iterator[None]:
    with app.app_context():
        conn = redis_connection()
        conn.flushdb()
        yield
        conn.flushdb()


@pytest.fixture
def run_jobs(app: Flask) -> Callable[..., int]:
    """Run every queued job in this process; returns how many jobs ran."""

    def run(*queues: str) -> int:
        names = queues or QUEUES
        worker = SimpleWorker(
            [get_queue(n) for n in names],
            connection=redis_connection(),
            serializer=JSONSerializer,
        )
        ran = 0
        while any(get_queue(n).count for n in names):
            worker.work(burst=True)
            ran += 1
        return ran

    return run


# ------------------------------------------------------------------------- people


def form_csrf_token(client: FlaskClient, url: str) -> str:
    """The CSRF token of the form at ``url`` (CSRF stays on in the suite)."""
    html = client.get(url).get_data(as_text=True)
    match = re.search(r'name="csrf_token"[^>]*?value="([^"]+)"', html)
    assert match, f"no csrf token on {url}"
    return match.group(1)


TENANT_PARTICULARS = (
    "name",
    "legal_name",
    "slug",
    "contact_email",
    "contact_phone",
    "gstin",
    "address_line1",
    "address_line2",
    "city",
    "state_code",
    "postal_code",
)


def tenant_form_data(tenant: Tenant) -> dict[str, str]:
    """What the tenant edit form submits unchanged: current values, secrets left empty."""
    data = {k: getattr(tenant, k) or "" for k in TENANT_PARTICULARS}
    data.update(
        status=tenant.status.value,
        wa_phone_number_id=tenant.wa_phone_number_id or "",
        wa_business_account_id=tenant.wa_business_account_id or "",
        wa_display_number=tenant.wa_display_number or "",
        wa_messaging_limit_mps=str(tenant.wa_messaging_limit_mps),
        new_wa_access_token="",
        new_wa_app_secret="",
    )
    return data


@dataclass
class LoginHelper:
    client: FlaskClient

    def __call__(self, email: str, password: str = DEMO_PASSWORD, follow: bool = False):
        token = form_csrf_token(self.client, "/login")
        return self.client.post(
            "/login",
            data={"email": email, "password": password, "csrf_token": token},
            follow_redirects=follow,
        )

    def logout(self):
        return self.client.get("/logout")


class RequestContextClient(FlaskClient):
    """A test client giving every request its own app context, as in production.

    pytest-flask keeps one request context pushed for the whole test, so Flask would
    reuse its app context, ``g`` and database session for every request: Flask-Login's
    cached user, FST's per-request state and a refused request's pending changes would
    leak into the next request. After each request the test's own session is expired,
    so what the test reads next comes from the database.
    """

    def open(self, *args, **kwargs):
        with self.application.app_context():
            response = super().open(*args, **kwargs)
        db.session.expire_all()
        return response


@pytest.fixture
def client(app: Flask) -> Iterator[FlaskClient]:
    app.test_client_class = RequestContextClient
    try:
        yield app.test_client()
    finally:
        app.test_client_class = None


@pytest.fixture
def login(client: FlaskClient) -> LoginHelper:
    return LoginHelper(client)


@pytest.fixture
def user_by_email(app: Flask) -> Callable[[str], AppUser]:
    def find(email: str) -> AppUser:
        return db.session.scalars(
            select(AppUser).where(AppUser.email == email).execution_options(skip_tenant_scope=True)
        ).one()

    return find


@pytest.fixture
def tenant_a(app: Flask) -> Tenant:
    return db.session.scalars(select(Tenant).where(Tenant.slug == "acme")).one()


@pytest.fixture
def tenant_b(app: Flask) -> Tenant:
    return db.session.scalars(select(Tenant).where(Tenant.slug == "bharatfoods")).one()


@pytest.fixture
def csrf_token(client: FlaskClient) -> Callable[[str], str]:
    return lambda url: form_csrf_token(client, url)
