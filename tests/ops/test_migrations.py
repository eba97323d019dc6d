"""The CI check that models and migrations agree, run as an operator would run it.

The suite already builds its database by running the migrations in-process
(tests/conftest.py) and `make run`'s test upgrades a SQLite file through its own steps
(tests/test_make_run_boot.py). This adds what neither does: `flask db upgrade` in a
subprocess on an empty PostgreSQL database and on an empty SQLite file, and
`flask db check` (Alembic autogenerate, with migrations/env.py's settings) on the
upgraded PostgreSQL database, which fails on any difference between the models and the
schema the migrations build.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from tests.conftest import recreate_database
from tests.flask_cli import run_flask

ROOT = Path(__file__).resolve().parents[2]
FLASK = Path(sys.executable).parent / "flask"
SUITE_DB = os.environ.get(
    "TEST_DATABASE_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/woffice_test"
)
EMPTY_PG = SUITE_DB.rsplit("/", 1)[0] + "/" + SUITE_DB.rsplit("/", 1)[1] + "_migrations"


@pytest.fixture(autouse=True)
def _db_transaction() -> None:
    """No suite session: these tests build their own databases."""


@pytest.fixture(autouse=True)
def _clean_redis() -> None:
    """No Redis: the commands below need none."""


def flask(database_url: str, tmp_path: Path, *args: str) -> str:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("FLASK_") and key not in {"REDIS_URL", "WOFFICE_ENV", "LOG_FORMAT"}
    }
    env.update(
        WOFFICE_ENV="development",
        DATABASE_URL=database_url,
        WOFFICE_INSTANCE_DIR=str(tmp_path),
        MAIL_FILE_PATH=str(tmp_path / "mail"),
    )
    return run_flask(env, *args, timeout=300)


def test_upgrade_an_empty_postgresql_then_autogenerate_finds_no_difference(tmp_path):
    recreate_database(EMPTY_PG)
    upgraded = flask(EMPTY_PG, tmp_path, "db", "upgrade")
    assert "Running upgrade  -> 0001_foundation" in upgraded
    checked = flask(EMPTY_PG, tmp_path, "db", "check")
    assert "No new upgrade operations detected" in checked


def test_upgrade_an_empty_sqlite_file(tmp_path):
    path = tmp_path / "empty.db"
    upgraded = flask(f"sqlite:///{path}", tmp_path, "db", "upgrade")
    assert "Running upgrade  -> 0001_foundation" in upgraded
    assert path.stat().st_size > 0
    heads = flask(f"sqlite:///{path}", tmp_path, "db", "heads")
    current = flask(f"sqlite:///{path}", tmp_path, "db", "current")
    head = heads.split()[0]
    assert f"{head} (head)" in current
