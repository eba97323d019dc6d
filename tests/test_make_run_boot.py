"""`make run` boots on a fresh machine: SQLite, no Redis, mail to .eml files, and the
fake WhatsApp Cloud API.

Does what `make run` does, in a temporary instance directory and on free ports: starts
the fake Cloud API with the Makefile's demo numbers, then drives the real HTTP server
with httpx: sign in, see the home page, invite a teammate, find the .eml file, sync the
demo templates from the fake, and receive a signed webhook from it. Needs neither
PostgreSQL nor Redis: the root conftest's autouse fixtures are replaced by no-ops here.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from email import message_from_bytes, policy
from pathlib import Path

import httpx
import pytest

from app.services.demo import DEMO_PASSWORD
from app.services.demo_contacts import DEMO_WHATSAPP, DEMO_WHATSAPP_ACCOUNTS
from tests.flask_cli import run_flask

ROOT = Path(__file__).resolve().parents[1]
FLASK = Path(sys.executable).parent / "flask"
CSRF = re.compile(r'name="csrf_token" type="hidden" value="([^"]+)"')


@pytest.fixture(autouse=True)
def _db_transaction() -> None:
    """No PostgreSQL session: this test uses its own SQLite file."""


@pytest.fixture(autouse=True)
def _clean_redis() -> None:
    """No Redis: `make run` runs jobs inline."""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def dev_env(tmp_path: Path) -> dict[str, str]:
    """The environment of `make run`, pointed at an empty instance directory."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("FLASK_", "MAIL_"))
        and key not in {"DATABASE_URL", "REDIS_URL", "WOFFICE_ENV", "SECRET_KEY"}
    }
    env.update(
        WOFFICE_ENV="development",
        WOFFICE_INSTANCE_DIR=str(tmp_path),
        MAIL_FILE_PATH=str(tmp_path / "mail"),
        PYTHONUNBUFFERED="1",
    )
    return env


def flask(env: dict[str, str], *args: str) -> str:
    return run_flask(env, *args)


def makefile_demo_numbers() -> list[str]:
    """The ``--phone`` specs `make run` gives the fake Cloud API (DEMO_WA_NUMBERS)."""
    text = (ROOT / "Makefile").read_text().replace("\\\n", " ")
    match = re.search(r"^DEMO_WA_NUMBERS := (.+)$", text, re.M)
    assert match, "no DEMO_WA_NUMBERS in the Makefile"
    return match.group(1).split()


def test_the_makefile_fake_numbers_are_the_seeded_ones():
    expected = [
        f"{phone_id}:{secret}:{DEMO_WHATSAPP_ACCOUNTS[slug][0]}:{DEMO_WHATSAPP_ACCOUNTS[slug][1]}"
        for slug, (phone_id, secret) in DEMO_WHATSAPP.items()
    ]
    assert makefile_demo_numbers() == expected


@pytest.fixture
def fake_cloud(tmp_path: Path) -> Iterator[tuple[str, int]]:
    """The fake Cloud API as `make run` starts it; yields its URL and the app's port."""
    port, app_port = _free_port(), _free_port()
    phones = [arg for number in makefile_demo_numbers() for arg in ("--phone", number)]
    log_path = tmp_path / "fake.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tests.fakes.whatsapp_cloud", "--port", str(port)]
            + ["--webhook-url", f"http://127.0.0.1:{app_port}/webhooks/whatsapp", *phones],
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(proc, f"{url}/_fake/stats", log_path)
        yield url, app_port
    finally:
        stop(proc)


def wait_for(proc: subprocess.Popen, url: str, log_path: Path) -> None:
    deadline = time.monotonic() + 60
    while True:
        if proc.poll() is not None:
            pytest.fail(f"{url}: exited with {proc.returncode}:\n{log_path.read_text()}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            pytest.fail(f"{url} did not start:\n{log_path.read_text()}")
        time.sleep(0.2)


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


@pytest.fixture
def dev_server(
    dev_env: dict[str, str], tmp_path: Path, fake_cloud: tuple[str, int]
) -> Iterator[tuple[str, Path]]:
    """`make run`'s steps; yields the server's URL and its log file."""
    fake_url, port = fake_cloud
    dev_env["WHATSAPP_API_BASE"] = fake_url
    flask(dev_env, "db", "upgrade")
    assert (tmp_path / "woffice.db").is_file()
    first = flask(dev_env, "woffice", "seed-demo")
    created = re.search(r"demo data ready \((\d+) new rows\)", first)
    assert created and int(created.group(1)) > 0, first
    second = flask(dev_env, "woffice", "seed-demo")
    assert "demo data ready (0 new rows)" in second, second  # idempotent

    url = f"http://127.0.0.1:{port}"
    log_path = tmp_path / "server.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [str(FLASK), "--app", "run", "run", "--host", "127.0.0.1", "--port", str(port)]
            + ["--no-reload"],
            cwd=ROOT,
            env=dev_env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for(proc, f"{url}/health/live", log_path)
        yield url, log_path
    finally:
        stop(proc)


def csrf_token(client: httpx.Client, path: str) -> str:
    page = client.get(path)
    assert page.status_code == 200, f"GET {path}: {page.status_code}"
    match = CSRF.search(page.text)
    assert match, f"no csrf_token on {path}"
    return match.group(1)


def log_in(client: httpx.Client, email: str) -> httpx.Response:
    token = csrf_token(client, "/login")
    response = client.post(
        "/login", data={"email": email, "password": DEMO_PASSWORD, "csrf_token": token}
    )
    assert response.status_code == 302, response.text[:2000]
    assert response.headers["Location"] == "/"
    return client.get("/")


def test_make_run_boots_signs_in_mails_an_invitation_and_syncs_templates(
    dev_server, fake_cloud, tmp_path: Path
):
    url, log_path = dev_server
    fake_url, _port = fake_cloud
    assert "background jobs run inline in the web process" in log_path.read_text()

    with httpx.Client(base_url=url, timeout=30) as client:
        home = log_in(client, "admin@xigmapro.example")
        assert home.status_code == 200
        assert "Welcome, Asha" in home.text

        client.get("/logout")
        home = log_in(client, "owner@acme.example")
        assert "Welcome, Rohan" in home.text

        form = client.get("/team/add")
        assert form.status_code == 200
        agent = re.search(r'<option value="(\d+)">Agent</option>', form.text)
        assert agent, "no Agent role on the invite form"
        token = CSRF.search(form.text)
        assert token
        response = client.post(
            "/team/add",
            data={
                "csrf_token": token.group(1),
                "first_name": "Farhan",
                "last_name": "Qureshi",
                "email": "farhan.qureshi@acme.example",
                "phone": "+91 98450 54321",
                "roles": agent.group(1),
            },
        )
        assert response.status_code == 302, response.text[:2000]
        team = client.get("/team/list/")
        assert "farhan.qureshi@acme.example" in team.text

        # Templates: the seeded demo rows, then a sync from the fake (inline job).
        listing = client.get("/templates/list/")
        assert listing.status_code == 200
        assert "order_shipped" in listing.text and "Not synced yet" in listing.text
        token = CSRF.search(listing.text)
        assert token
        synced = client.post(
            "/templates/sync", data={"csrf_token": token.group(1)}, follow_redirects=True
        )
        assert synced.status_code == 200
        assert "Synced 5 templates from WhatsApp: 0 new, 5 updated." in synced.text, synced.text

    # The fake signs webhooks with the seeded app secret and posts them to the app.
    inbound = httpx.post(
        f"{fake_url}/simulate/inbound",
        json={"phone_number_id": "100000000000001", "from": "919812345678", "text": "Hi"},
        timeout=30,
    )
    assert inbound.json()["webhook_status"] == 200, log_path.read_text()

    mails = sorted((tmp_path / "mail").glob("*.eml"))
    assert len(mails) == 1, f"{mails}; server log:\n{log_path.read_text()}"
    message = message_from_bytes(mails[0].read_bytes(), policy=policy.default)
    assert message["To"] == "farhan.qureshi@acme.example"
    body = message.get_body(preferencelist=("plain",)).get_content()
    assert re.search(rf"{re.escape(url)}/invitation/[A-Za-z0-9._-]+", body), body
