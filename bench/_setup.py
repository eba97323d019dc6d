"""Shared set-up for benchmarks: a migrated, seeded PostgreSQL database of their own."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

from flask import Flask
from flask_migrate import upgrade

from app import create_app
from app.extensions import appbuilder, db
from app.services.demo import seed_demo
from app.services.roles import sync_roles
from config import TestingConfig
from tests.conftest import MIGRATIONS, recreate_database


class BenchConfig(TestingConfig):
    SQLALCHEMY_DATABASE_URI = "postgresql+psycopg2://postgres@127.0.0.1:5432/woffice_bench"
    REDIS_URL = None


def drop_database(database: str = "woffice_bench") -> None:
    """Drop a benchmark's database, ending any session still connected to it."""
    import psycopg2

    admin = psycopg2.connect(host="127.0.0.1", port=5432, user="postgres", dbname="postgres")
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
            (database,),
        )
        cur.execute(f'DROP DATABASE IF EXISTS "{database}"')
    admin.close()


def bench_app(database: str = "woffice_bench") -> Flask:
    """A fresh app on a re-created ``database`` (default ``woffice_bench``) with the demo
    data; benchmarks that may run at the same time as another pass a name of their own."""
    config = BenchConfig
    if database != "woffice_bench":
        uri = BenchConfig.SQLALCHEMY_DATABASE_URI.rsplit("/", 1)[0] + f"/{database}"
        config = type("BenchConfig", (BenchConfig,), {"SQLALCHEMY_DATABASE_URI": uri})
    recreate_database(config.SQLALCHEMY_DATABASE_URI)
    app = create_app(config)
    with app.app_context():
        upgrade(directory=MIGRATIONS)
        sync_roles(appbuilder, app.config["WOFFICE_ROLES"])
        seed_demo(db.session)
        db.session.commit()
    return app


def timed(fn: Callable[[], object], rounds: int) -> list[float]:
    samples = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return samples


def summary(name: str, samples: list[float]) -> float:
    """Print median/p95 and return the median in milliseconds."""
    median = statistics.median(samples) * 1000
    p95 = sorted(samples)[int(len(samples) * 0.95)] * 1000
    print(f"{name:<52} median {median:8.3f} ms   p95 {p95:8.3f} ms   n={len(samples)}")
    return median
