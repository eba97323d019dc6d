"""Health endpoints: liveness answers; readiness checks database, Redis and migrations."""

from __future__ import annotations

import socket

from alembic.script import ScriptDirectory
from sqlalchemy import text

from app.extensions import db


def _closed_port() -> int:
    with socket.socket() as sock:  # bound then released: nothing listens there after
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_live_answers(client):
    response = client.get("/health/live")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok"}


def test_ready_when_database_redis_and_migrations_are_fine(client):
    response = client.get("/health/ready")
    assert response.status_code == 200, response.get_json()
    assert response.get_json() == {
        "status": "ok",
        "checks": {"database": "ok", "redis": "ok", "migrations": "ok"},
        "failed": [],
    }


def test_not_ready_when_the_database_is_at_an_older_revision(app, client):
    script = ScriptDirectory(app.extensions["migrate"].directory)
    head = script.get_revision(script.get_current_head())
    db.session.execute(
        text("UPDATE alembic_version SET version_num = :v"), {"v": head.down_revision}
    )
    db.session.commit()  # a savepoint: the test's outer transaction rolls it back

    response = client.get("/health/ready")

    body = response.get_json()
    assert response.status_code == 503
    assert body["status"] == "unavailable"
    assert body["failed"] == ["migrations"]
    assert body["checks"]["migrations"] == (
        f"behind: database at {head.down_revision}, code at {head.revision}"
    )


def test_still_ready_when_the_database_is_ahead_of_this_code(client):
    """Mid-upgrade: the migrations ran, this node still runs the previous release."""
    db.session.execute(text("UPDATE alembic_version SET version_num = 'from_the_next_release'"))
    db.session.commit()

    response = client.get("/health/ready")

    assert response.status_code == 200
    assert response.get_json()["checks"]["migrations"].startswith(
        "ahead: database at from_the_next_release"
    )


def test_not_ready_without_any_revision(client):
    db.session.execute(text("DELETE FROM alembic_version"))
    db.session.commit()

    response = client.get("/health/ready")

    assert response.status_code == 503
    assert response.get_json()["checks"]["migrations"].startswith("behind: database at no revision")


def test_not_ready_when_redis_is_unreachable(app, client, monkeypatch):
    monkeypatch.setitem(app.config, "REDIS_URL", f"redis://127.0.0.1:{_closed_port()}/7")

    response = client.get("/health/ready")

    body = response.get_json()
    assert response.status_code == 503
    assert body["failed"] == ["redis"]
    assert body["checks"]["redis"] == "error: ConnectionError"
    assert body["checks"]["database"] == "ok"


def test_ready_reports_inline_jobs_without_redis(app, client, monkeypatch):
    monkeypatch.setitem(app.config, "REDIS_URL", None)

    response = client.get("/health/ready")

    assert response.status_code == 200
    assert response.get_json()["checks"]["redis"] == "inline"


def test_every_response_carries_a_request_id(client):
    sent = client.get("/health/live", headers={"X-Request-ID": "lb-probe-0001"})
    assert sent.headers["X-Request-ID"] == "lb-probe-0001"
    # Not a plain token (quotes and spaces could bend a log line): replaced.
    forged = client.get("/health/live", headers={"X-Request-ID": 'x", "user_id": 1'})
    assert forged.headers["X-Request-ID"] != 'x", "user_id": 1'
    assert len(forged.headers["X-Request-ID"]) == 32
