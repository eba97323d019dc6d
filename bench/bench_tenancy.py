"""Cost of the tenancy guarantee layer on ORM reads.

Baseline: the same SELECT run unscoped (no loader criteria). Measured: the SELECT run
inside ``tenant_scope`` (with_loader_criteria added by the do_orm_execute hook), and a
FAB list page rendered for a tenant admin vs a platform admin.

Run: ``.venv/bin/python -m bench.bench_tenancy`` (PostgreSQL on 127.0.0.1; it creates
and drops its own database ``woffice_bench``).
"""

from __future__ import annotations

import statistics
import time

from flask_migrate import upgrade
from sqlalchemy import select

from app import create_app
from app.extensions import appbuilder, db
from app.models import AppUser, Tenant
from app.services.demo import seed_demo
from app.services.roles import sync_roles
from app.tenancy import tenant_scope
from config import TestingConfig
from tests.conftest import MIGRATIONS, LoginHelper, recreate_database

USERS_PER_TENANT = 200
ROUNDS = 2000


class BenchConfig(TestingConfig):
    SQLALCHEMY_DATABASE_URI = "postgresql+psycopg2://postgres@127.0.0.1:5432/woffice_bench"
    REDIS_URL = None


def _time(fn, rounds: int) -> list[float]:
    samples = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return samples


def _summary(name: str, samples: list[float]) -> float:
    median = statistics.median(samples) * 1000
    p95 = sorted(samples)[int(len(samples) * 0.95)] * 1000
    print(f"{name:<48} median {median:7.3f} ms   p95 {p95:7.3f} ms   n={len(samples)}")
    return median


def main() -> None:
    recreate_database(BenchConfig.SQLALCHEMY_DATABASE_URI)
    app = create_app(BenchConfig)
    with app.app_context():
        upgrade(directory=MIGRATIONS)
        sync_roles(appbuilder, app.config["WOFFICE_ROLES"])
        seed_demo(db.session)
        tenants = db.session.scalars(select(Tenant)).all()
        for tenant in tenants:
            for i in range(USERS_PER_TENANT):
                email = f"bench{i}@{tenant.slug}.example"
                db.session.add(
                    AppUser(
                        email=email,
                        username=email,
                        first_name="B",
                        last_name=str(i),
                        active=True,
                        tenant_id=tenant.id,
                    )
                )
        db.session.commit()
        tenant_id = tenants[0].id

        def unscoped():
            db.session.scalars(
                select(AppUser).where(AppUser.tenant_id == tenant_id).limit(50)
            ).all()
            db.session.expunge_all()

        def scoped():
            with tenant_scope(tenant_id):
                db.session.scalars(select(AppUser).limit(50)).all()
            db.session.expunge_all()

        for fn in (unscoped, scoped):
            _time(fn, 200)  # warm up statement caches
        base = _summary("SELECT 50 users, explicit filter (baseline)", _time(unscoped, ROUNDS))
        guarded = _summary("SELECT 50 users, tenant scope (ORM guard)", _time(scoped, ROUNDS))
        print(f"ratio guard/baseline: {guarded / base:.2f}x")

    client = app.test_client()
    login = LoginHelper(client)
    for email, label in (
        ("admin@xigmapro.example", "platform admin, /users/list/"),
        ("owner@acme.example", "tenant admin, /team/list/"),
    ):
        client.get("/logout")
        login(email)
        url = "/users/list/" if "xigmapro" in email else "/team/list/"
        _time(lambda url=url: client.get(url), 20)
        _summary(f"GET list page: {label}", _time(lambda url=url: client.get(url), 200))


if __name__ == "__main__":
    main()
