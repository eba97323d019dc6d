"""Browser tests: a real HTTP server on 127.0.0.1 and Debian's Chromium via Playwright.

* ``live_server`` (session): re-creates a dedicated PostgreSQL database (named by
  ``E2E_DATABASE_NAME``, default ``<test database>_e2e``, on ``TEST_DATABASE_URL``'s
  server), runs ``flask db upgrade`` and ``flask woffice seed-demo`` as subprocesses,
  then serves the app with ``flask run`` (jobs inline: ``TEST_REDIS_URL`` is empty;
  email to the suite's aiosmtpd server).
* ``whatsapp_fake`` (session): the fake WhatsApp Cloud API (tests/fakes/whatsapp_cloud.py)
  on a free port, serving both demo numbers with the values ``make run`` gives it; the
  live server sends through it (``WHATSAPP_API_BASE``) and it posts signed status
  webhooks back to the live server's /webhooks/whatsapp.
* ``browse`` (per test): opens pages in fresh browser contexts, records every request
  URL (policy P22: everything comes from 127.0.0.1) and saves a screenshot of each
  page's last state into ``test-artifacts/``.
* Chromium missing: the tests FAIL when ``CI`` is true, else they are skipped with
  "NOT RUN: chromium missing" (shown by ``pytest -ra``).

These tests need neither the in-process ``app`` nor Redis: the root conftest's autouse
fixtures are replaced by no-ops below.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import psycopg2
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, sync_playwright

from app.services.demo_contacts import DEMO_WHATSAPP, DEMO_WHATSAPP_ACCOUNTS
from tests.fakes.whatsapp_cloud import FakeCloudAPI, parse_phone
from tests.flask_cli import run_flask

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
FLASK = Path(sys.executable).parent / "flask"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
LOCAL_HOST = "127.0.0.1"
DEFAULT_TEST_DATABASE_URL = "postgresql+psycopg2://postgres@127.0.0.1:5432/woffice_test"


@pytest.fixture(autouse=True)
def _db_transaction() -> None:
    """No in-process database session: the live server owns its own database."""


@pytest.fixture(autouse=True)
def _clean_redis() -> None:
    """No Redis: the live server runs jobs inline."""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((LOCAL_HOST, 0))
        return sock.getsockname()[1]


def _ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


def e2e_database_url() -> str:
    """The live server's database: on TEST_DATABASE_URL's server, its own name."""
    base = urlsplit(os.environ.get("TEST_DATABASE_URL") or DEFAULT_TEST_DATABASE_URL)
    name = os.environ.get("E2E_DATABASE_NAME") or f"{base.path.lstrip('/')}_e2e"
    return urlunsplit(base._replace(path=f"/{name}"))


def _recreate_database(url: str) -> None:
    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    admin = psycopg2.connect(
        host=parts.hostname,
        port=parts.port or 5432,
        user=parts.username or "postgres",
        password=parts.password,
        dbname="postgres",
    )
    admin.autocommit = True
    try:
        with admin.cursor() as cur:
            cur.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                (name,),
            )
            cur.execute(f'DROP DATABASE IF EXISTS "{name}"')
            cur.execute(f'CREATE DATABASE "{name}"')
    finally:
        admin.close()


def _flask(env: dict[str, str], *args: str) -> str:
    """Run one ``flask --app run`` command; fail with its output if it fails."""
    return run_flask(env, *args)


@dataclass
class LiveServer:
    url: str
    mailbox: Any  # tests/conftest.py Mailbox: what the SMTP server received
    log_path: Path
    whatsapp: FakeCloudAPI  # what the live server sent to "WhatsApp"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def wait_until_live(url: str, proc: subprocess.Popen, log_path: Path, timeout: float = 60) -> None:
    """Poll ``url`` + /health/live until it answers 200; fail early if ``proc`` died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"server exited with {proc.returncode}:\n{log_path.read_text()}")
        try:
            if httpx.get(f"{url}/health/live", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    pytest.fail(f"server did not answer /health/live in {timeout}s:\n{log_path.read_text()}")


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


def demo_whatsapp_numbers() -> list[str]:
    """The demo numbers as ``make run`` passes them to the fake (the Makefile's
    DEMO_WA_NUMBERS: phone id, app secret, access token, WABA id)."""
    return [
        ":".join((*DEMO_WHATSAPP[slug], *DEMO_WHATSAPP_ACCOUNTS[slug])) for slug in DEMO_WHATSAPP
    ]


@pytest.fixture(scope="session")
def whatsapp_fake() -> Iterator[FakeCloudAPI]:
    """The fake Cloud API for the whole session; ``live_server`` sets its webhook URL."""
    numbers = [parse_phone(spec) for spec in demo_whatsapp_numbers()]
    # Status webhooks 1 s apart (sent, delivered, read), like a phone answering: the
    # campaign screens must show them as they come.
    with FakeCloudAPI(numbers, host=LOCAL_HOST, status_delay=1.0) as fake:
        yield fake


@pytest.fixture(scope="session")
def live_server(smtp_server, whatsapp_fake, tmp_path_factory) -> Iterator[LiveServer]:
    mailbox, smtp_port = smtp_server
    database_url = e2e_database_url()
    _recreate_database(database_url)
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("FLASK_") and key not in {"DATABASE_URL", "REDIS_URL"}
    }
    env.update(
        WOFFICE_ENV="testing",
        TEST_DATABASE_URL=database_url,
        TEST_REDIS_URL="",  # jobs run inline in the web process
        TEST_MAIL_PORT=str(smtp_port),
        WOFFICE_INSTANCE_DIR=str(tmp_path_factory.mktemp("instance")),
        WHATSAPP_API_BASE=whatsapp_fake.base_url,
        PYTHONUNBUFFERED="1",
    )
    _flask(env, "db", "upgrade")
    _flask(env, "woffice", "seed-demo")

    port = _free_port()
    url = f"http://{LOCAL_HOST}:{port}"
    whatsapp_fake.webhook_url = f"{url}/webhooks/whatsapp"
    log_path = tmp_path_factory.mktemp("live_server") / "server.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [str(FLASK), "--app", "run", "run", "--host", LOCAL_HOST, "--port", str(port)]
            + ["--no-reload"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_until_live(url, proc, log_path)
        yield LiveServer(url=url, mailbox=mailbox, log_path=log_path, whatsapp=whatsapp_fake)
    finally:
        stop(proc)


# ------------------------------------------------------------------------ browser


@pytest.fixture(scope="session")
def chromium_executable() -> str:
    if not CHROMIUM.exists():
        message = f"NOT RUN: chromium missing ({CHROMIUM}); run `make chromium`"
        if _ci():
            pytest.fail(message.replace("NOT RUN", "FAILED"))
        pytest.skip(message)
    return str(CHROMIUM)


@pytest.fixture(scope="session")
def browser(chromium_executable: str) -> Iterator[Browser]:
    playwright = sync_playwright().start()
    try:
        chromium = playwright.chromium.launch(
            executable_path=chromium_executable, headless=True, args=CHROMIUM_ARGS
        )
        yield chromium
        chromium.close()
    finally:
        playwright.stop()


def _is_local(url: str) -> bool:
    parts = urlsplit(url)
    if parts.scheme in {"data", "blob", "about"}:  # never leaves the browser
        return True
    return parts.scheme in {"http", "https"} and parts.hostname == LOCAL_HOST


@dataclass
class Browsing:
    """Pages of one test, each in its own browser context (own cookies)."""

    browser: Browser
    base_url: str
    name: str
    requests: list[str] = field(default_factory=list)
    contexts: list[BrowserContext] = field(default_factory=list)
    pages: list[Page] = field(default_factory=list)

    def new_page(self) -> Page:
        context = self.browser.new_context(
            base_url=self.base_url, viewport={"width": 1280, "height": 900}
        )
        context.set_default_timeout(15_000)
        self.contexts.append(context)
        page = context.new_page()
        page.on("request", lambda request: self.requests.append(request.url))
        self.pages.append(page)
        return page

    def assert_all_requests_local(self) -> None:
        """Policy P22: no CDN, web font or third-party script; only 127.0.0.1."""
        assert self.requests, "the browser made no request at all"
        foreign = sorted({url for url in self.requests if not _is_local(url)})
        assert not foreign, f"requests to hosts other than {LOCAL_HOST}: {foreign}"

    def screenshot(self, page: Page, label: str) -> Path:
        """Save ``page`` as test-artifacts/<test>-<label>.png for a human to look at."""
        ARTIFACTS.mkdir(exist_ok=True)
        path = ARTIFACTS / f"{self.name}-{label}.png"
        page.screenshot(path=path, full_page=True)
        return path

    def close(self) -> None:
        """Screenshot each page's last state (also after a failure), close the contexts."""
        for number, page in enumerate(self.pages, start=1):
            if not page.is_closed():
                self.screenshot(page, f"last-{number}")
        for context in self.contexts:
            context.close()


@pytest.fixture
def browse(browser: Browser, live_server: LiveServer, request) -> Iterator[Browsing]:
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)
    browsing = Browsing(browser=browser, base_url=live_server.url, name=name)
    yield browsing
    browsing.close()
    # Also catches requests made after the test's own check (e.g. late assets).
    browsing.assert_all_requests_local()
