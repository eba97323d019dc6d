"""Cost of the tenancy guarantee layer on ORM reads.

Baseline: the same SELECT run unscoped (no loader criteria). Measured: the SELECT run
inside ``tenant_scope`` (with_loader_criteria added by the do_orm_execute hook), and a
FAB list page rendered for a tenant admin vs a platform admin.

Run: ``.venv/bin/python -m bench.bench_tenancy`` (PostgreSQL on 127.0.0.1; it creates
and drops its own database ``woffice_bench``).
"""

from __future__ import annotations

from sqlalchemy import select

from app.extensions import db
from app.models import AppUser, Tenant
from app.tenancy import tenant_scope
from bench._setup import bench_app, summary, timed
from tests.conftest import LoginHelper

USERS_PER_TENANT = 200
ROUNDS = 2000


def main() -> None:
    app = bench_app()
    with app.app_context():
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
            timed(fn, 200)  # warm up statement caches
        base = summary("SELECT 50 users, explicit filter (baseline)", timed(unscoped, ROUNDS))
        guarded = summary("SELECT 50 users, tenant scope (ORM guard)", timed(scoped, ROUNDS))
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
        timed(lambda url=url: client.get(url), 20)
        summary(f"GET list page: {label}", timed(lambda url=url: client.get(url), 200))


if __name__ == "__main__":
    main()
